//! Lists: a [`Pack`] while small, else a [`QuickList`] (Redis's quicklist idea): a deque of
//! chunks, each one contiguous buffer of entries bounded by `list-max-listpack-size` (default -2:
//! 8 KB per chunk), so a big list costs about its bytes plus two or three bytes per element, not a
//! heap allocation per element.
//!
//! Both forms share one entry encoding: the element's length as LEB128, the element, then the
//! length again with its LEB128 bytes in reverse order, so entries can be walked from either end
//! (listpack's back-length). A chunk keeps free room at both ends of its buffer, so pushes and
//! pops at either end of the list touch only the end chunk: O(1) amortized, no per-element
//! allocation; index lookups skip whole chunks by their counts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

/// A list stays packed while it has at most this many entries, each at most
/// [`LIST_MAX_PACK_VALUE`] bytes (Redis 7.0 always reports `quicklist` for lists).
pub const LIST_MAX_PACK_ENTRIES: usize = 128;
/// See [`LIST_MAX_PACK_ENTRIES`].
pub const LIST_MAX_PACK_VALUE: usize = 64;

/// `list-max-listpack-size` (alias `list-max-ziplist-size`): negative -1..-5 bound a chunk to
/// 4, 8, 16, 32 or 64 KB; positive values bound its entry count (with an 8 KB safety limit, as in
/// Redis). Read with a relaxed load when a chunk fills up.
pub static LIST_MAX_LISTPACK_SIZE: AtomicI64 = AtomicI64::new(-2);

/// Redis's `SIZE_SAFETY_LIMIT`: the byte bound of a chunk under a positive (count) fill.
const SIZE_SAFETY_LIMIT: usize = 8192;

/// The current chunk bounds: (bytes, entries).
fn chunk_limits() -> (usize, usize) {
    #[cfg(test)]
    let fill = tests::FILL
        .with(|f| f.get())
        .unwrap_or_else(|| LIST_MAX_LISTPACK_SIZE.load(Relaxed));
    #[cfg(not(test))]
    let fill = LIST_MAX_LISTPACK_SIZE.load(Relaxed);
    if fill >= 0 {
        let n = usize::try_from(fill).unwrap_or(usize::MAX).max(1);
        (SIZE_SAFETY_LIMIT, n)
    } else {
        let level = (-fill).clamp(1, 5) as u32;
        (4096 << (level - 1), usize::MAX)
    }
}

// ---------------------------------------------------------------------------------------------
// Entry encoding

fn varint_len(mut n: usize) -> usize {
    let mut k = 1;
    while n >= 0x80 {
        n >>= 7;
        k += 1;
    }
    k
}

/// Bytes one entry takes.
#[inline]
fn entry_size(n: usize) -> usize {
    if n < 0x80 {
        n + 2
    } else {
        n + 2 * varint_len(n)
    }
}

/// Write `e`'s entry into `dst`, which is exactly [`entry_size`] long.
#[inline]
fn encode(dst: &mut [u8], e: &[u8]) {
    let n = e.len();
    if n < 0x80 {
        dst[0] = n as u8;
        dst[1..1 + n].copy_from_slice(e);
        dst[1 + n] = n as u8;
        return;
    }
    let k = varint_len(n);
    let mut m = n;
    for i in 0..k {
        let b = (m & 0x7f) as u8;
        m >>= 7;
        let b = if i + 1 < k { b | 0x80 } else { b };
        dst[i] = b;
        dst[k + n + k - 1 - i] = b;
    }
    dst[k..k + n].copy_from_slice(e);
}

/// The first entry of `s`: (element, entry size).
#[inline]
fn first(s: &[u8]) -> (&[u8], usize) {
    let b = s[0];
    if b < 0x80 {
        let n = b as usize;
        return (&s[1..1 + n], n + 2);
    }
    let (mut n, mut shift, mut k) = (0usize, 0, 0);
    loop {
        let b = s[k];
        k += 1;
        n |= ((b & 0x7f) as usize) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    (&s[k..k + n], n + 2 * k)
}

/// The last entry of `s`: (element, entry size).
#[inline]
fn last(s: &[u8]) -> (&[u8], usize) {
    let end = s.len();
    let b = s[end - 1];
    if b < 0x80 {
        let n = b as usize;
        return (&s[end - 1 - n..end - 1], n + 2);
    }
    let (mut n, mut shift, mut k) = (0usize, 0, 0);
    loop {
        let b = s[end - 1 - k];
        k += 1;
        n |= ((b & 0x7f) as usize) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    (&s[end - k - n..end - k], n + 2 * k)
}

/// Entries of an encoded buffer, in order.
fn entries(mut s: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if s.is_empty() {
            return None;
        }
        let (e, sz) = first(s);
        s = &s[sz..];
        Some(e)
    })
}

/// Entries with their byte spans `start..end` in `s`.
fn spans(s: &[u8]) -> impl Iterator<Item = (usize, usize, &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= s.len() {
            return None;
        }
        let (e, sz) = first(&s[pos..]);
        let start = pos;
        pos += sz;
        Some((start, pos, e))
    })
}

fn encode_all<'a>(items: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    for e in items {
        let at = out.len();
        out.resize(at + entry_size(e.len()), 0);
        encode(&mut out[at..], e);
    }
}

// ---------------------------------------------------------------------------------------------
// Pack

/// A small list: its entries in one exact-size heap buffer.
#[derive(Debug, Clone, Default)]
pub struct Pack(Box<[u8]>);

impl Pack {
    /// A pack of the given entries.
    pub fn from_items<T: AsRef<[u8]>>(items: impl IntoIterator<Item = T>) -> Pack {
        let mut v = Vec::new();
        for it in items {
            encode_all([it.as_ref()], &mut v);
        }
        Pack(v.into_boxed_slice())
    }

    /// The encoded buffer.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Entries in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        entries(&self.0)
    }

    /// Number of entries (a scan).
    pub fn len(&self) -> usize {
        entries(&self.0).count()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes of the buffer.
    pub fn bytes(&self) -> usize {
        self.0.len()
    }

    /// Replace bytes `start..end` (entry boundaries) with `items`.
    fn splice(&mut self, start: usize, end: usize, items: &[&[u8]]) {
        let add: usize = items.iter().map(|i| entry_size(i.len())).sum();
        let mut v = Vec::with_capacity(self.0.len() - (end - start) + add);
        v.extend_from_slice(&self.0[..start]);
        encode_all(items.iter().copied(), &mut v);
        v.extend_from_slice(&self.0[end..]);
        self.0 = v.into_boxed_slice();
    }
}

// ---------------------------------------------------------------------------------------------
// Chunk

/// One node of a [`QuickList`]: entries in `buf[start..end]`, with free room on both sides.
#[derive(Debug, Clone)]
struct Chunk {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    count: usize,
}

impl Chunk {
    /// An empty chunk of capacity `cap` whose room is on the `front` side (or the back).
    fn new(cap: usize, front: bool) -> Chunk {
        let p = if front { cap } else { 0 };
        Chunk {
            buf: vec![0u8; cap].into_boxed_slice(),
            start: p,
            end: p,
            count: 0,
        }
    }

    /// A chunk of capacity at least `cap` holding the given entries, centred in the buffer.
    fn with_items(cap: usize, items: &[&[u8]]) -> Chunk {
        let bytes: usize = items.iter().map(|e| entry_size(e.len())).sum();
        let cap = cap.max(bytes);
        let mut c = Chunk::new(cap, false);
        let mut at = (cap - bytes) / 2;
        c.start = at;
        for e in items {
            let sz = entry_size(e.len());
            encode(&mut c.buf[at..at + sz], e);
            at += sz;
        }
        c.end = at;
        c.count = items.len();
        c
    }

    #[inline]
    fn live(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    #[inline]
    fn bytes(&self) -> usize {
        self.end - self.start
    }

    /// Make room for `need` bytes on one side, within the bounds `max` bytes and `maxn`
    /// entries (an empty chunk takes anything). False when the chunk is full.
    #[inline]
    fn reserve(&mut self, need: usize, front: bool, max: usize, maxn: usize) -> bool {
        let live = self.bytes();
        if self.count > 0 && (live + need > max || self.count >= maxn) {
            return false;
        }
        let room = if front {
            self.start
        } else {
            self.buf.len() - self.end
        };
        if room >= need {
            return true;
        }
        self.make_room(need, front, max)
    }

    #[cold]
    fn make_room(&mut self, need: usize, front: bool, max: usize) -> bool {
        let live = self.bytes();
        let cap = self.buf.len();
        let want = live + need;
        let place = |cap: usize| {
            let slack = cap - want;
            if front {
                need + slack / 2
            } else {
                slack / 2
            }
        };
        if want + cap / 4 <= cap {
            // Enough slack: move the entries so both sides get some (no ping-pong when both
            // ends of a one-chunk list grow).
            let off = place(cap);
            self.buf.copy_within(self.start..self.end, off);
            self.start = off;
            self.end = off + live;
            return true;
        }
        let ncap = (cap * 2).min(max).max(want);
        if ncap <= cap && self.count > 0 {
            return false;
        }
        let ncap = ncap.max(cap);
        let off = place(ncap);
        let mut nb = vec![0u8; ncap].into_boxed_slice();
        nb[off..off + live].copy_from_slice(self.live());
        self.buf = nb;
        self.start = off;
        self.end = off + live;
        true
    }

    /// Add an entry at one end; room was reserved.
    #[inline]
    fn put(&mut self, e: &[u8], front: bool) {
        let sz = entry_size(e.len());
        if front {
            self.start -= sz;
            encode(&mut self.buf[self.start..self.start + sz], e);
        } else {
            encode(&mut self.buf[self.end..self.end + sz], e);
            self.end += sz;
        }
        self.count += 1;
    }

    /// Remove the entry at one end; returns the element's span in `buf`.
    #[inline]
    fn take(&mut self, front: bool) -> (usize, usize) {
        self.count -= 1;
        if front {
            let (e, sz) = first(self.live());
            let s = self.start + (sz - e.len()) / 2;
            let r = (s, s + e.len());
            self.start += sz;
            r
        } else {
            let (e, sz) = last(self.live());
            let s = self.end - sz + (sz - e.len()) / 2;
            let r = (s, s + e.len());
            self.end -= sz;
            r
        }
    }

    /// Drop `n` (< count) entries from one end.
    fn drop_n(&mut self, n: usize, front: bool) {
        for _ in 0..n {
            self.take(front);
        }
    }

    /// Remove up to `limit` entries equal to `el`, the first ones or (`from_back`) the last ones.
    fn remove_matching(&mut self, el: &[u8], limit: usize, from_back: bool) -> usize {
        let spans: Vec<(usize, usize, bool)> = spans(self.live())
            .map(|(s, e, x)| (s, e, x == el))
            .collect();
        let mut drop = vec![false; spans.len()];
        let mut removed = 0;
        let order: Box<dyn Iterator<Item = usize>> = if from_back {
            Box::new((0..spans.len()).rev())
        } else {
            Box::new(0..spans.len())
        };
        for i in order {
            if removed >= limit {
                break;
            }
            if spans[i].2 {
                drop[i] = true;
                removed += 1;
            }
        }
        if removed == 0 {
            return 0;
        }
        let base = self.start;
        let mut w = base;
        for (i, &(s, e, _)) in spans.iter().enumerate() {
            if !drop[i] {
                self.buf.copy_within(base + s..base + e, w);
                w += e - s;
            }
        }
        self.end = w;
        self.count -= removed;
        removed
    }
}

// ---------------------------------------------------------------------------------------------
// QuickList

/// A big list: a deque of chunks, none empty; `len` counts all elements.
#[derive(Debug, Clone, Default)]
pub struct QuickList {
    chunks: VecDeque<Chunk>,
    len: usize,
}

impl QuickList {
    /// Push at the head (`front`) or the tail.
    #[inline]
    pub fn push(&mut self, e: &[u8], front: bool) {
        let need = entry_size(e.len());
        let (max, maxn) = chunk_limits();
        let end = if front {
            self.chunks.front_mut()
        } else {
            self.chunks.back_mut()
        };
        if let Some(c) = end {
            if c.reserve(need, front, max, maxn) {
                c.put(e, front);
                self.len += 1;
                return;
            }
        }
        self.push_new_chunk(e, front, need, max);
        self.len += 1;
    }

    #[cold]
    fn push_new_chunk(&mut self, e: &[u8], front: bool, need: usize, max: usize) {
        // The first chunk starts small and grows; later ones serve a list already big.
        let cap = if self.chunks.is_empty() {
            max.min(512).max(need)
        } else {
            max.max(need)
        };
        let mut c = Chunk::new(cap, front);
        c.put(e, front);
        if front {
            self.chunks.push_front(c)
        } else {
            self.chunks.push_back(c)
        }
    }

    /// Pop from one end, handing the element to `f`.
    #[inline]
    pub fn pop_with<R>(&mut self, front: bool, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let c = if front {
            self.chunks.front_mut()?
        } else {
            self.chunks.back_mut()?
        };
        let (s, e) = c.take(front);
        let r = f(&c.buf[s..e]);
        if c.count == 0 {
            if front {
                self.chunks.pop_front();
            } else {
                self.chunks.pop_back();
            }
        }
        self.len -= 1;
        Some(r)
    }

    /// The chunk holding element `i` (< len) and `i`'s index inside it, walking from the nearer
    /// end.
    fn locate(&self, i: usize) -> (usize, usize) {
        if i < self.len / 2 {
            let mut i = i;
            for (ci, c) in self.chunks.iter().enumerate() {
                if i < c.count {
                    return (ci, i);
                }
                i -= c.count;
            }
        } else {
            let mut from_end = self.len - 1 - i;
            for (ci, c) in self.chunks.iter().enumerate().rev() {
                if from_end < c.count {
                    return (ci, c.count - 1 - from_end);
                }
                from_end -= c.count;
            }
        }
        unreachable!("index below len is in a chunk")
    }

    /// Replace chunk `ci`'s entries `at..at + remove` with `insert`; the result is split into
    /// balanced chunks when it exceeds the bounds.
    fn splice_chunk(&mut self, ci: usize, at: usize, remove: usize, insert: Option<&[u8]>) {
        let (max, maxn) = chunk_limits();
        let new: Vec<Chunk> = {
            let c = &self.chunks[ci];
            let mut items: Vec<&[u8]> = entries(c.live()).collect();
            items.splice(at..at + remove, insert);
            let total: usize = items.iter().map(|e| entry_size(e.len())).sum();
            if total <= max && items.len() <= maxn || items.len() <= 1 {
                vec![Chunk::with_items(c.buf.len().min(max), &items)]
            } else {
                let k = total.div_ceil(max).max(items.len().div_ceil(maxn));
                let target = total.div_ceil(k);
                let per = items.len().div_ceil(k);
                let mut out = Vec::new();
                let (mut from, mut bytes) = (0, 0);
                for (i, e) in items.iter().enumerate() {
                    let sz = entry_size(e.len());
                    let n = i - from;
                    if n > 0 && (bytes + sz > target || n >= per) {
                        out.push(Chunk::with_items(max, &items[from..i]));
                        from = i;
                        bytes = 0;
                    }
                    bytes += sz;
                }
                out.push(Chunk::with_items(max, &items[from..]));
                out
            }
        };
        self.len = self.len + insert.is_some() as usize - remove;
        self.chunks.remove(ci);
        for (k, c) in new.into_iter().filter(|c| c.count > 0).enumerate() {
            self.chunks.insert(ci + k, c);
        }
    }

    /// Element `i`.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if i >= self.len {
            return None;
        }
        let (ci, j) = self.locate(i);
        entries(self.chunks[ci].live()).nth(j)
    }

    /// Replace element `i` (< len).
    pub fn set(&mut self, i: usize, v: &[u8]) {
        let (ci, j) = self.locate(i);
        let c = &mut self.chunks[ci];
        let same = spans(c.live())
            .nth(j)
            .filter(|(_, _, old)| old.len() == v.len())
            .map(|(s, e, _)| (s, e));
        if let Some((s, e)) = same {
            {
                let base = c.start;
                encode(&mut c.buf[base + s..base + e], v);
                return;
            }
        }
        self.splice_chunk(ci, j, 1, Some(v));
    }

    /// Insert `v` before element `i` (`i == len`: at the tail).
    pub fn insert(&mut self, i: usize, v: &[u8]) {
        if i == 0 || i >= self.len {
            return self.push(v, i == 0);
        }
        let (ci, j) = self.locate(i);
        self.splice_chunk(ci, j, 0, Some(v));
    }

    /// Drop `n` elements from one end (all when `n >= len`).
    pub fn drop_end(&mut self, mut n: usize, front: bool) {
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let c = if front {
                self.chunks.front_mut()
            } else {
                self.chunks.back_mut()
            };
            let Some(c) = c else { break };
            if c.count <= n {
                n -= c.count;
                if front {
                    self.chunks.pop_front();
                } else {
                    self.chunks.pop_back();
                }
            } else {
                c.drop_n(n, front);
                n = 0;
            }
        }
    }

    /// Remove up to `limit` elements equal to `el`, from the head or (`from_back`) the tail.
    pub fn remove_matching(&mut self, el: &[u8], limit: usize, from_back: bool) -> usize {
        let mut removed = 0;
        let n = self.chunks.len();
        for k in 0..n {
            if removed >= limit {
                break;
            }
            let ci = if from_back { n - 1 - k } else { k };
            removed += self.chunks[ci].remove_matching(el, limit - removed, from_back);
        }
        self.chunks.retain(|c| c.count > 0);
        self.len -= removed;
        removed
    }

    /// Bytes held by the chunks' buffers.
    pub fn bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.buf.len()).sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Iteration

enum Src<'a> {
    Pack(&'a [u8]),
    Quick(&'a VecDeque<Chunk>),
}

impl<'a> Src<'a> {
    #[inline]
    fn chunk(&self, i: usize) -> (&'a [u8], usize) {
        match self {
            Src::Pack(_) => unreachable!("a pack is one chunk"),
            Src::Quick(q) => {
                let c = &q[i];
                (c.live(), c.count)
            }
        }
    }
}

/// A list's elements, head first; double-ended, and `nth` skips whole chunks.
pub struct Iter<'a> {
    src: Src<'a>,
    /// Elements not yet yielded from either end.
    left: usize,
    /// Front cursor: chunk index, its unread bytes, and the number of entries in them.
    fc: usize,
    f: &'a [u8],
    fcount: usize,
    /// Back cursor, likewise (bytes before the cursor).
    bc: usize,
    b: &'a [u8],
    bcount: usize,
}

impl<'a> Iter<'a> {
    fn new(src: Src<'a>, len: usize) -> Iter<'a> {
        let (f, fcount, b, bcount, bc) = match &src {
            Src::Pack(p) => (*p, len, *p, len, 0),
            Src::Quick(q) if q.is_empty() => (&[][..], 0, &[][..], 0, 0),
            Src::Quick(q) => {
                let (f, fcount) = src.chunk(0);
                let (b, bcount) = src.chunk(q.len() - 1);
                (f, fcount, b, bcount, q.len() - 1)
            }
        };
        Iter {
            src,
            left: len,
            fc: 0,
            f,
            fcount,
            bc,
            b,
            bcount,
        }
    }

    /// Move the front cursor past whole chunks while they hold at most `n` of the elements to
    /// skip; returns how many remain to skip inside the front chunk.
    fn skip_chunks_front(&mut self, mut n: usize) -> usize {
        while n >= self.fcount {
            n -= self.fcount;
            self.left -= self.fcount;
            self.fc += 1;
            let (f, c) = self.src.chunk(self.fc);
            self.f = f;
            self.fcount = c;
        }
        n
    }

    fn skip_chunks_back(&mut self, mut n: usize) -> usize {
        while n >= self.bcount {
            n -= self.bcount;
            self.left -= self.bcount;
            self.bc -= 1;
            let (b, c) = self.src.chunk(self.bc);
            self.b = b;
            self.bcount = c;
        }
        n
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        if self.fcount == 0 {
            self.skip_chunks_front(0);
        }
        let (e, sz) = first(self.f);
        self.f = &self.f[sz..];
        self.fcount -= 1;
        self.left -= 1;
        Some(e)
    }

    fn nth(&mut self, n: usize) -> Option<&'a [u8]> {
        if n >= self.left {
            self.left = 0;
            return None;
        }
        let n = self.skip_chunks_front(n);
        for _ in 0..n {
            let (_, sz) = first(self.f);
            self.f = &self.f[sz..];
            self.fcount -= 1;
            self.left -= 1;
        }
        self.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<'a> DoubleEndedIterator for Iter<'a> {
    #[inline]
    fn next_back(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        if self.bcount == 0 {
            self.skip_chunks_back(0);
        }
        let (e, sz) = last(self.b);
        self.b = &self.b[..self.b.len() - sz];
        self.bcount -= 1;
        self.left -= 1;
        Some(e)
    }

    fn nth_back(&mut self, n: usize) -> Option<&'a [u8]> {
        if n >= self.left {
            self.left = 0;
            return None;
        }
        let n = self.skip_chunks_back(n);
        for _ in 0..n {
            let (_, sz) = last(self.b);
            self.b = &self.b[..self.b.len() - sz];
            self.bcount -= 1;
            self.left -= 1;
        }
        self.next_back()
    }
}

impl ExactSizeIterator for Iter<'_> {}

// ---------------------------------------------------------------------------------------------
// List

/// A list, head first: a pack while small, else a quicklist (never converted back, as in Redis
/// 7.0).
#[derive(Debug, Clone)]
pub enum List {
    Pack(Pack),
    Quick(Box<QuickList>),
}

impl Default for List {
    fn default() -> Self {
        List::Pack(Pack::default())
    }
}

impl PartialEq for List {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl List {
    /// Number of elements.
    #[inline]
    pub fn len(&self) -> usize {
        match self {
            List::Pack(p) => p.len(),
            List::Quick(q) => q.len,
        }
    }

    /// Whether the list is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        match self {
            List::Pack(p) => p.is_empty(),
            List::Quick(q) => q.len == 0,
        }
    }

    /// Elements, head first.
    pub fn iter(&self) -> Iter<'_> {
        match self {
            List::Pack(p) => Iter::new(Src::Pack(&p.0), p.len()),
            List::Quick(q) => Iter::new(Src::Quick(&q.chunks), q.len),
        }
    }

    /// Element at a non-negative index.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        match self {
            List::Pack(p) => p.iter().nth(i),
            List::Quick(q) => q.get(i),
        }
    }

    /// Hand elements `start..start + n` (within the list) to `f`, head first: a walk over the
    /// chunks' bytes without the double-ended iterator's bookkeeping (LRANGE).
    pub fn for_range(&self, start: usize, n: usize, mut f: impl FnMut(&[u8])) {
        let mut walk = |mut s: &[u8], mut skip: usize, left: &mut usize| {
            while *left > 0 && !s.is_empty() {
                let (e, sz) = first(s);
                s = &s[sz..];
                if skip > 0 {
                    skip -= 1;
                } else {
                    f(e);
                    *left -= 1;
                }
            }
        };
        let mut left = n;
        match self {
            List::Pack(p) => walk(&p.0, start, &mut left),
            List::Quick(q) => {
                if start >= q.len {
                    return;
                }
                let (ci, j) = q.locate(start);
                let mut skip = j;
                for c in q.chunks.range(ci..) {
                    if left == 0 {
                        break;
                    }
                    walk(c.live(), skip, &mut left);
                    skip = 0;
                }
            }
        }
    }

    fn fits(e: &[u8]) -> bool {
        e.len() <= LIST_MAX_PACK_VALUE
    }

    /// The quicklist form (a pack is converted).
    fn quick(&mut self) -> &mut QuickList {
        if let List::Pack(p) = self {
            let mut q = QuickList::default();
            for e in p.iter() {
                q.push(e, false);
            }
            *self = List::Quick(Box::new(q));
        }
        match self {
            List::Quick(q) => q,
            List::Pack(_) => unreachable!("converted above"),
        }
    }

    /// Push at the head (`left`) or the tail.
    #[inline]
    pub fn push(&mut self, e: &[u8], left: bool) {
        match self {
            List::Quick(q) => q.push(e, left),
            List::Pack(p) => {
                if Self::fits(e) && p.len() < LIST_MAX_PACK_ENTRIES {
                    let at = if left { 0 } else { p.bytes() };
                    p.splice(at, at, &[e]);
                } else {
                    self.quick().push(e, left)
                }
            }
        }
    }

    /// Pop from the head (`left`) or the tail, handing the element to `f` (no copy).
    #[inline]
    pub fn pop_with<R>(&mut self, left: bool, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        match self {
            List::Quick(q) => q.pop_with(left, f),
            List::Pack(p) => {
                if p.is_empty() {
                    return None;
                }
                let (e, sz) = if left { first(&p.0) } else { last(&p.0) };
                let r = f(e);
                let (s, end) = if left {
                    (0, sz)
                } else {
                    (p.bytes() - sz, p.bytes())
                };
                p.splice(s, end, &[]);
                Some(r)
            }
        }
    }

    /// Pop from the head (`left`) or the tail.
    pub fn pop(&mut self, left: bool) -> Option<Box<[u8]>> {
        self.pop_with(left, |e| Box::from(e))
    }

    /// Replace element `i`; false when `i` is out of range.
    pub fn set(&mut self, i: usize, v: &[u8]) -> bool {
        if i >= self.len() {
            return false;
        }
        match self {
            List::Quick(q) => q.set(i, v),
            List::Pack(p) if Self::fits(v) => {
                let at = spans(&p.0).nth(i).map(|(s, e, _)| (s, e));
                if let Some((s, e)) = at {
                    p.splice(s, e, &[v]);
                }
            }
            List::Pack(_) => self.quick().set(i, v),
        }
        true
    }

    /// Insert `v` before element `i` (`i == len`: append).
    pub fn insert(&mut self, i: usize, v: &[u8]) {
        match self {
            List::Quick(q) => q.insert(i, v),
            List::Pack(p) if Self::fits(v) && p.len() < LIST_MAX_PACK_ENTRIES => {
                let at = spans(&p.0).nth(i).map_or(p.bytes(), |(s, _, _)| s);
                p.splice(at, at, &[v]);
            }
            List::Pack(_) => self.quick().insert(i, v),
        }
    }

    /// Keep only elements `start..=stop` (None: keep nothing).
    pub fn trim(&mut self, keep: Option<(usize, usize)>) {
        let len = self.len();
        let (s, e) = keep.unwrap_or((len, len));
        match self {
            List::Quick(q) => {
                q.drop_end(len.saturating_sub(e + 1), false);
                q.drop_end(s, true);
            }
            List::Pack(p) => {
                let sp: Vec<(usize, usize)> = spans(&p.0).map(|(a, b, _)| (a, b)).collect();
                let from = sp.get(s).map_or(p.bytes(), |x| x.0);
                let to = sp.get(e).map_or(p.bytes(), |x| x.1).max(from);
                p.0 = p.0[from..to].into();
            }
        }
    }

    /// LREM: remove up to `limit` elements equal to `el`, from the head or (`from_back`) the
    /// tail; returns how many.
    pub fn remove_matching(&mut self, el: &[u8], limit: usize, from_back: bool) -> usize {
        match self {
            List::Quick(q) => q.remove_matching(el, limit, from_back),
            List::Pack(p) => {
                let items: Vec<&[u8]> = p.iter().collect();
                let mut keep = vec![true; items.len()];
                let mut removed = 0;
                let order: Box<dyn Iterator<Item = usize>> = if from_back {
                    Box::new((0..items.len()).rev())
                } else {
                    Box::new(0..items.len())
                };
                for i in order {
                    if removed >= limit {
                        break;
                    }
                    if items[i] == el {
                        keep[i] = false;
                        removed += 1;
                    }
                }
                if removed > 0 {
                    let np = Pack::from_items(
                        items
                            .iter()
                            .zip(&keep)
                            .filter(|(_, k)| **k)
                            .map(|(e, _)| *e),
                    );
                    *p = np;
                }
                removed
            }
        }
    }

    /// Approximate bytes held (MEMORY USAGE).
    pub fn bytes(&self) -> usize {
        match self {
            List::Pack(p) => p.bytes(),
            List::Quick(q) => q.bytes() + q.chunks.len() * std::mem::size_of::<Chunk>(),
        }
    }

    /// Bytes of the packed form, 0 for a quicklist (SLOTS migration's chunking threshold).
    pub fn packed_bytes(&self) -> usize {
        match self {
            List::Pack(p) => p.bytes(),
            List::Quick(_) => 0,
        }
    }

    /// A list of the given elements, head first.
    pub fn from_items<T: AsRef<[u8]>>(items: impl IntoIterator<Item = T>) -> List {
        let items: Vec<T> = items.into_iter().collect();
        if items.len() <= LIST_MAX_PACK_ENTRIES && items.iter().all(|e| Self::fits(e.as_ref())) {
            List::Pack(Pack::from_items(items.iter().map(|e| e.as_ref())))
        } else {
            let mut q = QuickList::default();
            for e in &items {
                q.push(e.as_ref(), false);
            }
            List::Quick(Box::new(q))
        }
    }

    /// Whether this is the quicklist form (tests).
    pub fn is_quick(&self) -> bool {
        matches!(self, List::Quick(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::Cell;

    thread_local! {
        /// A per-test `list-max-listpack-size` (tests run in parallel threads).
        pub(super) static FILL: Cell<Option<i64>> = const { Cell::new(None) };
    }

    fn elem(kind: u8, tag: u8) -> Vec<u8> {
        let n = match kind % 8 {
            0 => 0,
            1 | 2 | 3 => 3,
            4 => 60,
            5 => 200,
            6 => 1000,
            _ => 20_000,
        };
        let mut v = vec![b'a' + tag % 4; n];
        if let Some(x) = v.first_mut() {
            *x = b'0' + tag % 3;
        }
        v
    }

    fn check(l: &List, m: &VecDeque<Vec<u8>>) {
        assert_eq!(l.len(), m.len());
        assert_eq!(l.is_empty(), m.is_empty());
        assert!(l.iter().eq(m.iter().map(|e| &e[..])));
        assert!(l.iter().rev().eq(m.iter().rev().map(|e| &e[..])));
        assert_eq!(l.iter().len(), m.len());
        if let List::Quick(q) = l {
            assert_eq!(q.chunks.iter().map(|c| c.count).sum::<usize>(), m.len());
            assert!(q.chunks.iter().all(|c| c.count > 0));
            for c in &q.chunks {
                assert_eq!(entries(c.live()).count(), c.count);
            }
        }
        for (s, n) in [
            (0, 3),
            (1, 100),
            (m.len() / 2, 2000),
            (m.len().saturating_sub(1), 5),
        ] {
            let mut got = Vec::new();
            l.for_range(s, n, |e| got.push(e.to_vec()));
            let want: Vec<Vec<u8>> = m.iter().skip(s).take(n).cloned().collect();
            assert_eq!(got, want);
        }
        // Mixed cursors and skips.
        for step in [1usize, 2, 7, 50, 1000] {
            let mut it = l.iter();
            let mut lo = 0usize;
            let mut hi = m.len();
            let mut k = 0;
            loop {
                k += 1;
                if k % 2 == 0 {
                    let got = it.nth(step - 1);
                    let want = (lo + step - 1 < hi).then(|| &m[lo + step - 1][..]);
                    assert_eq!(got, want);
                    if want.is_none() {
                        break;
                    }
                    lo += step;
                } else {
                    let got = it.nth_back(step / 2);
                    let want = (hi >= lo + step / 2 + 1).then(|| &m[hi - 1 - step / 2][..]);
                    assert_eq!(got, want);
                    if want.is_none() {
                        break;
                    }
                    hi -= step / 2 + 1;
                }
                assert_eq!(it.len(), hi - lo);
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(bool, u8, u8),
        PushMany(bool, u16, u8),
        Pop(bool),
        Get(u16),
        Set(u16, u8, u8),
        Insert(u16, u8, u8),
        Trim(u16, u16),
        Rem(u8, u8, bool),
        Fill(i8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (any::<bool>(), any::<u8>(), any::<u8>()).prop_map(|(a, b, c)| Op::Push(a, b, c)),
            2 => (any::<bool>(), 0u16..3000, any::<u8>()).prop_map(|(a, b, c)| Op::PushMany(a, b, c)),
            4 => any::<bool>().prop_map(Op::Pop),
            2 => any::<u16>().prop_map(Op::Get),
            2 => (any::<u16>(), any::<u8>(), any::<u8>()).prop_map(|(a, b, c)| Op::Set(a, b, c)),
            2 => (any::<u16>(), any::<u8>(), any::<u8>()).prop_map(|(a, b, c)| Op::Insert(a, b, c)),
            1 => (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Op::Trim(a, b)),
            1 => (any::<u8>(), 0u8..4, any::<bool>()).prop_map(|(a, b, c)| Op::Rem(a, b, c)),
            1 => prop_oneof![Just(-1i8), Just(-2), Just(-5), Just(1), Just(3), Just(100)].prop_map(Op::Fill),
        ]
    }

    fn run(ops: &[Op]) {
        let mut l = List::default();
        let mut m: VecDeque<Vec<u8>> = VecDeque::new();
        for op in ops {
            match *op {
                Op::Fill(f) => FILL.with(|x| x.set(Some(f.into()))),
                Op::Push(front, k, t) => {
                    let e = elem(k, t);
                    l.push(&e, front);
                    if front {
                        m.push_front(e)
                    } else {
                        m.push_back(e)
                    }
                }
                Op::PushMany(front, n, t) => {
                    for i in 0..n {
                        let e = elem((i % 4) as u8, t.wrapping_add(i as u8));
                        l.push(&e, front);
                        if front {
                            m.push_front(e)
                        } else {
                            m.push_back(e)
                        }
                    }
                }
                Op::Pop(front) => {
                    let want = if front { m.pop_front() } else { m.pop_back() };
                    assert_eq!(l.pop(front).map(|b| b.to_vec()), want);
                }
                Op::Get(i) => {
                    let i = i as usize;
                    assert_eq!(l.get(i), m.get(i).map(|e| &e[..]));
                }
                Op::Set(i, k, t) => {
                    let i = if m.is_empty() {
                        i as usize
                    } else {
                        i as usize % (m.len() + 1)
                    };
                    let e = elem(k, t);
                    assert_eq!(l.set(i, &e), i < m.len());
                    if i < m.len() {
                        m[i] = e;
                    }
                }
                Op::Insert(i, k, t) => {
                    let i = i as usize % (m.len() + 1);
                    let e = elem(k, t);
                    l.insert(i, &e);
                    m.insert(i, e);
                }
                Op::Trim(s, e) => {
                    let len = m.len();
                    let (s, e) = (s as usize % (len + 2), e as usize % (len + 2));
                    let keep = (s <= e && s < len).then(|| (s, e.min(len.saturating_sub(1))));
                    l.trim(keep);
                    match keep {
                        None => m.clear(),
                        Some((s, e)) => {
                            m.truncate(e + 1);
                            m.drain(..s);
                        }
                    }
                }
                Op::Rem(t, limit, back) => {
                    let el = elem(1, t);
                    let limit = if limit == 0 {
                        usize::MAX
                    } else {
                        limit as usize
                    };
                    let mut removed = 0;
                    let idx: Vec<usize> = if back {
                        (0..m.len()).rev().collect()
                    } else {
                        (0..m.len()).collect()
                    };
                    let mut kill = vec![false; m.len()];
                    for i in idx {
                        if removed < limit && m[i] == el {
                            kill[i] = true;
                            removed += 1;
                        }
                    }
                    let mut i = 0;
                    m.retain(|_| {
                        i += 1;
                        !kill[i - 1]
                    });
                    assert_eq!(l.remove_matching(&el, limit, back), removed);
                }
            }
            check(&l, &m);
        }
        FILL.with(|x| x.set(None));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn model(ops in proptest::collection::vec(op(), 1..60)) {
            run(&ops);
        }
    }

    #[test]
    fn codec_both_ends() {
        for n in [0usize, 1, 127, 128, 129, 16_383, 16_384, 70_000] {
            let e = vec![7u8; n];
            let mut buf = vec![0u8; entry_size(n)];
            encode(&mut buf, &e);
            assert_eq!(first(&buf), (&e[..], buf.len()));
            assert_eq!(last(&buf), (&e[..], buf.len()));
        }
    }

    #[test]
    fn big_list_both_ends() {
        let mut l = List::default();
        for i in 0..100_000u32 {
            l.push(&i.to_le_bytes()[..3], i % 2 == 0);
        }
        assert!(l.is_quick());
        assert_eq!(l.len(), 100_000);
        if let List::Quick(q) = &l {
            // Chunks are dense: about 5 bytes per 3-byte element in 8 KB chunks.
            assert!(
                q.chunks.len() < 100_000 * 5 / 8192 + 4,
                "{}",
                q.chunks.len()
            );
        }
        let mut n = 0;
        while let Some(e) = l.pop_with(n % 3 == 0, |e| e.len()) {
            assert_eq!(e, 3);
            n += 1;
        }
        assert_eq!(n, 100_000);
        assert!(l.is_empty());
    }

    #[test]
    fn huge_elements_get_their_own_chunk() {
        let mut l = List::default();
        let big = vec![b'x'; 100_000];
        l.push(b"a", false);
        l.push(&big, false);
        l.push(b"b", false);
        l.push(&big, true);
        assert_eq!(l.len(), 4);
        assert_eq!(l.get(0), Some(&big[..]));
        assert_eq!(l.get(2), Some(&big[..]));
        assert_eq!(l.get(3), Some(&b"b"[..]));
        assert!(l.set(1, &big));
        assert_eq!(l.iter().filter(|e| e.len() == big.len()).count(), 3);
        l.insert(2, &big);
        assert_eq!(l.len(), 5);
        assert_eq!(l.pop(true).as_deref(), Some(&big[..]));
    }
}
