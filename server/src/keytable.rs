//! The table of one slot's keys: a hash table of thin pointers, each to one allocation holding a
//! key's entry word, its value and the key's bytes.
//!
//! Two node layouts, told apart by the low bit of the pointer (allocations are 8-aligned):
//!
//! * string node (bit set): `[word: u64][value length: u32][key length: 1 or 5 bytes][key][value]`
//!   — a string key is one allocation holding everything behind a 12-byte header (a [`Value`]
//!   in the node takes 24 bytes and the string a second allocation).
//! * value node (bit clear): `[Entry][key length: 1 or 5 bytes][key]` — containers, and strings
//!   of 4 GiB or more (whose length does not fit the u32).
//!
//! Per key this costs one 8-byte bucket (plus hashbrown's control byte) and the node. With 1M
//! `key:N` keys of 32-byte strings a node is 12 + 1 + 10 + 32 = 55 bytes (a 64-byte mimalloc
//! block), where `[Entry][key]` plus a boxed string took 48 + 32. A string goes into a value
//! node with a boxed string instead when that takes fewer bytes of blocks (see
//! [`Node::embeds`]: past 64 bytes the size classes are a quarter apart). A lookup dereferences one
//! pointer, to compare the key, and finds the entry and a string's bytes next to it. Entries are
//! lent out as [`EntryRef`] / [`EntryMut`]: a string is read in place and replaced as a whole
//! (same length: copied over the old bytes; otherwise a new node).

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;
use std::sync::OnceLock;

use hashbrown::hash_table::{Entry as TableEntry, HashTable};

use crate::db::{Entry, EntryMut, EntryRef};
use crate::value::{Value, ValueMut, ValueRef};

/// Where a value node's key length starts (right after the entry).
const LEN_AT: usize = std::mem::size_of::<Entry>();
/// Where a string node's value length (u32) starts; its key length follows at [`SKEY_AT`].
const SLEN_AT: usize = 8;
const SKEY_AT: usize = 12;
const ALIGN: usize = std::mem::align_of::<Entry>();
/// A first length byte of this value means: the length follows as 4 bytes, little-endian.
const LONG: u8 = u8::MAX;
/// The pointer tag of a string node.
const STR_TAG: usize = 1;

// Both layouts start with the entry word (Entry is repr(C) with the word first), and nodes are
// aligned enough for the word and for the tag bit.
const _: () = assert!(std::mem::offset_of!(Entry, expire_at) == 0);
const _: () = assert!(ALIGN >= 8);

/// One process-wide hasher (random keys per process, as `ahash::RandomState::new()` gives).
fn hasher() -> &'static ahash::RandomState {
    static H: OnceLock<ahash::RandomState> = OnceLock::new();
    H.get_or_init(ahash::RandomState::new)
}

/// The hash a table uses for `key` (to hash once for [`KeyTable::prefetch_hashed`]).
#[inline]
pub fn hash(key: &[u8]) -> u64 {
    hasher().hash_one(key)
}

fn len_bytes(klen: usize) -> usize {
    if klen < LONG as usize {
        1
    } else {
        5
    }
}

/// What a new node stores.
enum New<'a> {
    Entry(Entry),
    /// A string's bytes and the entry word.
    Str(&'a [u8], u64),
}

impl New<'_> {
    /// The bytes of a string that goes into a string node (shorter than u32::MAX).
    fn str_bytes(&self) -> Option<&[u8]> {
        let s: &[u8] = match self {
            New::Entry(Entry {
                value: Value::Str(s),
                ..
            }) => s,
            New::Str(s, _) => s,
            New::Entry(_) => return None,
        };
        (s.len() < u32::MAX as usize).then_some(s)
    }

    fn word(&self) -> u64 {
        match self {
            New::Entry(e) => e.expire_at,
            New::Str(_, w) => *w,
        }
    }
}

/// One key: a thin owning pointer to a string node or a value node (module docs), the string
/// node's pointer tagged with [`STR_TAG`].
struct Node(NonNull<u8>);

// SAFETY: a Node owns its allocation exclusively, like a Box<(Entry, [u8])>; Entry is Send + Sync.
unsafe impl Send for Node {}
unsafe impl Sync for Node {}

impl Node {
    fn value_layout(klen: usize) -> Layout {
        // Keys are at most 512 MB (the protocol's bulk limit; `new` asserts u32), so none of
        // these sizes overflow.
        Layout::from_size_align(LEN_AT + len_bytes(klen) + klen, ALIGN)
            .unwrap_or_else(|_| handle_alloc_error(Layout::new::<Entry>()))
    }

    fn str_layout(klen: usize, vlen: usize) -> Layout {
        Layout::from_size_align(SKEY_AT + len_bytes(klen) + klen + vlen, ALIGN)
            .unwrap_or_else(|_| handle_alloc_error(Layout::new::<Entry>()))
    }

    /// Whether a string of `vlen` bytes under a key of `klen` bytes goes into a string node:
    /// when that one allocation's size class is no larger than the two of a value node and a
    /// boxed string. Size classes grow by a quarter past 64 bytes, so one block for everything
    /// can cost more than two well-fitting ones (a 512-byte value: 640 against 48 + 512).
    #[inline]
    fn embeds(klen: usize, vlen: usize) -> bool {
        let one = SKEY_AT + len_bytes(klen) + klen + vlen;
        // Up to 64 bytes the classes are at most 16 bytes apart, and the value node alone
        // is 20 bytes larger than a string node's header: embedding never loses there.
        one <= 64 || {
            let good = crate::alloc::good_size;
            good(one) <= good(LEN_AT + len_bytes(klen) + klen) + good(vlen)
        }
    }

    fn new(key: &[u8], new: New<'_>) -> Node {
        let klen = key.len();
        assert!(klen <= u32::MAX as usize, "key of {klen} bytes");
        if let Some(v) = new.str_bytes().filter(|v| Self::embeds(klen, v.len())) {
            let layout = Self::str_layout(klen, v.len());
            // SAFETY: the layout is at least 13 bytes, 8-aligned; the writes stay inside it: the
            // word at 0, the u32 at 8, the key length at 12, the key and the value after it.
            // Tagging adds 1 to an address inside the allocation (kept as a pointer, so
            // provenance is preserved) and `base` takes it off again.
            unsafe {
                let p = alloc(layout);
                if p.is_null() {
                    handle_alloc_error(layout)
                }
                p.cast::<u64>().write(new.word());
                p.add(SLEN_AT)
                    .copy_from_nonoverlapping((v.len() as u32).to_le_bytes().as_ptr(), 4);
                let at = write_klen(p.add(SKEY_AT), klen);
                std::ptr::copy_nonoverlapping(key.as_ptr(), at, klen);
                std::ptr::copy_nonoverlapping(v.as_ptr(), at.add(klen), v.len());
                return Node(NonNull::new_unchecked(p.wrapping_add(STR_TAG)));
            }
        }
        let entry = match new {
            New::Entry(e) => e,
            New::Str(v, w) => Entry::from_word(Value::Str(v.into()), w),
        };
        let layout = Self::value_layout(klen);
        // SAFETY: the layout has a non-zero size (it holds an Entry); the writes below stay
        // inside it: the entry at 0 (aligned), the length at LEN_AT, the key after it.
        unsafe {
            let p = alloc(layout);
            if p.is_null() {
                handle_alloc_error(layout)
            }
            p.cast::<Entry>().write(entry);
            let at = write_klen(p.add(LEN_AT), klen);
            std::ptr::copy_nonoverlapping(key.as_ptr(), at, klen);
            Node(NonNull::new_unchecked(p))
        }
    }

    #[inline]
    fn is_str(&self) -> bool {
        self.0.as_ptr().addr() & STR_TAG != 0
    }

    /// The allocation's start (the tag taken off).
    #[inline]
    fn base(&self) -> *mut u8 {
        if self.is_str() {
            self.0.as_ptr().wrapping_sub(STR_TAG)
        } else {
            self.0.as_ptr()
        }
    }

    /// (offset of the key bytes, key length, value length for a string node).
    #[inline]
    fn spans(&self) -> (usize, usize, usize) {
        let b = self.base();
        // SAFETY: the headers were written by `new` and live as long as the node.
        unsafe {
            if self.is_str() {
                let mut l = [0u8; 4];
                std::ptr::copy_nonoverlapping(b.add(SLEN_AT), l.as_mut_ptr(), 4);
                let (h, klen) = read_klen(b.add(SKEY_AT));
                (SKEY_AT + h, klen, u32::from_le_bytes(l) as usize)
            } else {
                let (h, klen) = read_klen(b.add(LEN_AT));
                (LEN_AT + h, klen, 0)
            }
        }
    }

    fn layout(&self) -> Layout {
        let (_, klen, vlen) = self.spans();
        if self.is_str() {
            Self::str_layout(klen, vlen)
        } else {
            Self::value_layout(klen)
        }
    }

    #[inline]
    fn key(&self) -> &[u8] {
        let (at, len, _) = self.spans();
        // SAFETY: `len` bytes at `at` were initialised by `new`.
        unsafe { std::slice::from_raw_parts(self.base().add(at), len) }
    }

    /// A string node's value bytes.
    ///
    /// # Safety
    /// `self` must be a string node.
    #[inline]
    unsafe fn str_value(&self) -> &[u8] {
        let (at, klen, vlen) = self.spans();
        // SAFETY: in a string node `vlen` initialised bytes follow the key.
        unsafe { std::slice::from_raw_parts(self.base().add(at + klen), vlen) }
    }

    #[inline]
    fn entry(&self) -> EntryRef<'_> {
        let b = self.base();
        if self.is_str() {
            // SAFETY: a string node; its word is initialised at offset 0 (8-aligned).
            unsafe {
                EntryRef {
                    value: ValueRef::Str(self.str_value()),
                    word: b.cast::<u64>().read(),
                }
            }
        } else {
            // SAFETY: an initialised, aligned Entry sits at offset 0 of a value node.
            unsafe { (*b.cast::<Entry>()).view() }
        }
    }

    /// Both halves at once; the key is a separate borrow from the entry (they do not overlap).
    #[inline]
    fn parts_mut(&mut self) -> (&[u8], EntryMut<'_>) {
        let b = self.base();
        let (at, klen, vlen) = self.spans();
        // SAFETY: the key bytes, the word, the value bytes and the Entry's value do not overlap;
        // all live as long as `self`, which is borrowed mutably.
        unsafe {
            let key = std::slice::from_raw_parts(b.add(at), klen);
            if self.is_str() {
                let v = std::slice::from_raw_parts(b.add(at + klen), vlen);
                let e = EntryMut {
                    value: ValueMut::Str(v),
                    word: &mut *b.cast::<u64>(),
                };
                (key, e)
            } else {
                let e = &mut *b.cast::<Entry>();
                let e = EntryMut {
                    value: e.value.view_mut(),
                    word: &mut e.expire_at,
                };
                (key, e)
            }
        }
    }

    #[inline]
    fn entry_mut(&mut self) -> EntryMut<'_> {
        self.parts_mut().1
    }

    /// The entry word.
    #[inline]
    fn word(&self) -> u64 {
        // SAFETY: both layouts keep an initialised word at offset 0 (8-aligned).
        unsafe { self.base().cast::<u64>().read() }
    }

    /// Overwrite a string node's value with `v` of the same length and set its word; false
    /// (nothing changed) when this is not a string node of that length.
    fn overwrite_str(&mut self, v: &[u8], word: u64) -> bool {
        if !self.is_str() {
            return false;
        }
        let (at, klen, vlen) = self.spans();
        if vlen != v.len() {
            return false;
        }
        let b = self.base();
        // SAFETY: a string node with exactly `vlen` value bytes after the key; `&mut self`
        // gives exclusive access, and `v` (borrowed from elsewhere) cannot overlap it.
        unsafe {
            b.cast::<u64>().write(word);
            std::ptr::copy_nonoverlapping(v.as_ptr(), b.add(at + klen), vlen);
        }
        true
    }

    /// The key (copied out) and the entry (moved out); the node's memory is freed.
    fn into_parts(self) -> (Box<[u8]>, Entry) {
        let key: Box<[u8]> = self.key().into();
        (key, self.into_entry())
    }

    /// The entry (moved out, a string node's bytes copied into a boxed string); the node's
    /// memory is freed.
    fn into_entry(self) -> Entry {
        let layout = self.layout();
        let b = self.base();
        let e = if self.is_str() {
            // SAFETY: a string node (checked), read before the memory is freed below.
            let v = unsafe { self.str_value() };
            Entry::from_word(Value::Str(v.into()), self.word())
        } else {
            // SAFETY: the entry is read out exactly once (the node is forgotten below, so Drop
            // will not drop it again).
            unsafe { b.cast::<Entry>().read() }
        };
        std::mem::forget(self);
        // SAFETY: the allocation is freed once, with the layout it was made with.
        unsafe { dealloc(b, layout) };
        e
    }
}

/// Write a key length header at `at`; returns where the key goes.
///
/// # Safety
/// `at` must be valid for `len_bytes(klen)` bytes of writes, and `klen` at most u32::MAX.
unsafe fn write_klen(at: *mut u8, klen: usize) -> *mut u8 {
    // SAFETY: per the contract, the header's 1 or 5 bytes are writable.
    unsafe {
        if klen < LONG as usize {
            at.write(klen as u8);
            at.add(1)
        } else {
            at.write(LONG);
            std::ptr::copy_nonoverlapping((klen as u32).to_le_bytes().as_ptr(), at.add(1), 4);
            at.add(5)
        }
    }
}

/// Read a key length header at `at`: (header bytes, key length).
///
/// # Safety
/// `at` must point at a header written by [`write_klen`].
unsafe fn read_klen(at: *const u8) -> (usize, usize) {
    // SAFETY: per the contract, the header is initialised (1 byte, or 5 after LONG).
    unsafe {
        let b = *at;
        if b != LONG {
            (1, b as usize)
        } else {
            let mut l = [0u8; 4];
            std::ptr::copy_nonoverlapping(at.add(1), l.as_mut_ptr(), 4);
            (5, u32::from_le_bytes(l) as usize)
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let layout = self.layout();
        let b = self.base();
        // SAFETY: a value node's entry is initialised and dropped once (a string node holds only
        // plain bytes); the allocation matches `layout`.
        unsafe {
            if !self.is_str() {
                std::ptr::drop_in_place(b.cast::<Entry>());
            }
            dealloc(b, layout);
        }
    }
}

impl Clone for Node {
    fn clone(&self) -> Node {
        if self.is_str() {
            // SAFETY: a string node (checked).
            let v = unsafe { self.str_value() };
            Node::new(self.key(), New::Str(v, self.word()))
        } else {
            Node::new(self.key(), New::Entry(self.entry().to_entry()))
        }
    }
}

/// Keys of one slot with their entries (see the module docs). Iteration order is the table's
/// (arbitrary, stable while the table is not modified).
#[derive(Default, Clone)]
pub struct KeyTable {
    table: HashTable<Node>,
}

impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, e)| (String::from_utf8_lossy(k), e)))
            .finish()
    }
}

impl KeyTable {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the table holds no key.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// A key's entry.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<EntryRef<'_>> {
        self.table
            .find(hash(key), |n| n.key() == key)
            .map(Node::entry)
    }

    /// [`KeyTable::get`] with the key's [`hash`] already computed.
    #[inline]
    pub fn get_hashed(&self, h: u64, key: &[u8]) -> Option<EntryRef<'_>> {
        self.table.find(h, |n| n.key() == key).map(Node::entry)
    }

    /// A key's entry, mutable.
    #[inline]
    pub fn get_mut(&mut self, key: &[u8]) -> Option<EntryMut<'_>> {
        self.table
            .find_mut(hash(key), |n| n.key() == key)
            .map(Node::entry_mut)
    }

    /// A string key's bytes as a growable buffer ([`Value::Buf`]), for editing in place:
    /// `None` when the key is absent, `Some(Err(()))` when it holds another type. A string held
    /// in a string node or as [`Value::Str`] moves into a buffer first (one copy, or none for a
    /// boxed string); the entry word (expiry, access clock, mark) stays.
    pub fn str_buf(&mut self, key: &[u8]) -> Option<Result<&mut Vec<u8>, ()>> {
        let node = self.table.find_mut(hash(key), |n| n.key() == key)?;
        if node.is_str() {
            // SAFETY: a string node (checked).
            let bytes = unsafe { node.str_value() }.to_vec();
            let e = Entry::from_word(Value::Buf(Box::new(bytes)), node.word());
            *node = Node::new(key, New::Entry(e));
        }
        // SAFETY: not a string node (converted above), so an initialised, aligned Entry sits at
        // offset 0; `node` is borrowed mutably for as long as the result lives.
        let e = unsafe { &mut *node.base().cast::<Entry>() };
        if let Value::Str(s) = &mut e.value {
            let s = std::mem::take(s);
            e.value = Value::Buf(Box::new(s.into_vec()));
        }
        match &mut e.value {
            Value::Buf(b) => Some(Ok(b)),
            _ => Some(Err(())),
        }
    }

    /// Whether the key is present.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Store `entry` under `key`; returns the entry word it replaced (the old value is dropped).
    pub fn insert(&mut self, key: &[u8], entry: Entry) -> Option<u64> {
        self.put(key, New::Entry(entry))
    }

    /// Store the string `value` with the entry `word` under `key` (no intermediate [`Value`]);
    /// returns the entry word it replaced.
    pub fn insert_str(&mut self, key: &[u8], value: &[u8], word: u64) -> Option<u64> {
        if value.len() >= u32::MAX as usize {
            return self.insert(key, Entry::from_word(Value::Str(value.into()), word));
        }
        self.put(key, New::Str(value, word))
    }

    fn put(&mut self, key: &[u8], new: New<'_>) -> Option<u64> {
        match self
            .table
            .entry(hash(key), |n| n.key() == key, |n| hash(n.key()))
        {
            TableEntry::Occupied(mut o) => {
                let node = o.get_mut();
                let old = node.word();
                // A string of the same length goes over the old bytes; anything else is a new
                // node (a string's node is sized for it).
                let done = match new.str_bytes() {
                    Some(v) => node.overwrite_str(v, new.word()),
                    None => false,
                };
                if !done {
                    *node = Node::new(key, new);
                }
                Some(old)
            }
            TableEntry::Vacant(v) => {
                v.insert(Node::new(key, new));
                None
            }
        }
    }

    /// Start loading what a lookup of `key` will touch: the table's control group and bucket
    /// now, the key's node once `warm` is true (call twice: first cold for every key of a batch,
    /// then warm, so the misses of many keys overlap instead of following one another). Only a
    /// hint: nothing is read through the prefetched addresses here.
    #[inline]
    pub fn prefetch(&self, key: &[u8], warm: bool) {
        self.prefetch_hashed(hash(key), key, warm)
    }

    /// [`KeyTable::prefetch`] with the key's [`hash`] already computed.
    pub fn prefetch_hashed(&self, h: u64, key: &[u8], warm: bool) {
        if warm {
            if let Some(n) = self.table.find(h, |n| n.key() == key) {
                let e = n.entry();
                match e.value {
                    // The node's next line, where the bytes of a longer string go on.
                    ValueRef::Str(s) => prefetch_line(s.as_ptr().wrapping_add(s.len() / 2)),
                    v => {
                        if let Some(p) = v.heap_ptr() {
                            prefetch_line(p);
                        }
                    }
                }
            }
        } else {
            // The probe reads control bytes and the candidate buckets; `false` keeps it from
            // dereferencing any node (that is the miss the next pass overlaps).
            let _ = self.table.find(h, |n| {
                prefetch_line(n.0.as_ptr());
                false
            });
        }
    }

    /// Remove a key, returning its entry.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        match self.table.find_entry(hash(key), |n| n.key() == key) {
            Ok(o) => Some(o.remove().0.into_entry()),
            Err(_) => None,
        }
    }

    /// Remove a key, dropping its node as it is (no [`Entry`] made); returns its entry word.
    pub fn delete(&mut self, key: &[u8]) -> Option<u64> {
        match self.table.find_entry(hash(key), |n| n.key() == key) {
            Ok(o) => Some(o.remove().0.word()),
            Err(_) => None,
        }
    }

    /// Remove a key when `f` accepts its entry, with one lookup: `None` when the key is absent,
    /// `Some(Some(word))` when it was removed (its entry word), `Some(None)` when `f` kept it.
    pub fn delete_if(
        &mut self,
        key: &[u8],
        f: impl FnOnce(EntryRef<'_>) -> bool,
    ) -> Option<Option<u64>> {
        let o = self.table.find_entry(hash(key), |n| n.key() == key).ok()?;
        if !f(o.get().entry()) {
            return Some(None);
        }
        Some(Some(o.remove().0.word()))
    }

    /// Keep only the keys for which `f` returns true.
    pub fn retain(&mut self, mut f: impl FnMut(&[u8], EntryRef<'_>) -> bool) {
        self.table.retain(|n| f(n.key(), n.entry()));
    }

    /// Keys with their entries.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], EntryRef<'_>)> + '_ {
        self.table.iter().map(|n| (n.key(), n.entry()))
    }

    /// [`KeyTable::iter`] that asks for each node's first cache line [`AHEAD`] keys before it
    /// yields that key. Nodes lie wherever the allocator put them, so a plain walk that reads
    /// every key (a slot migration serialising a slot) waits for one memory miss per key, one
    /// after the other; this one keeps [`AHEAD`] of them in flight.
    pub fn iter_prefetched(&self) -> Prefetched<'_> {
        Prefetched {
            inner: self.table.iter(),
            ahead: std::collections::VecDeque::with_capacity(AHEAD),
        }
    }

    /// Keys with their entries, mutable (containers change in place).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&[u8], EntryMut<'_>)> + '_ {
        self.table.iter_mut().map(Node::parts_mut)
    }

    /// Keys.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.table.iter().map(Node::key)
    }

    /// Entries.
    pub fn values(&self) -> impl Iterator<Item = EntryRef<'_>> + '_ {
        self.table.iter().map(Node::entry)
    }

    /// Bytes the table itself holds for `n` buckets (the nodes not included), for reports.
    pub fn bucket_bytes(&self) -> usize {
        self.table.capacity() * (std::mem::size_of::<Node>() + 1)
    }
}

impl<'a> IntoIterator for &'a KeyTable {
    type Item = (&'a [u8], EntryRef<'a>);
    type IntoIter = Box<dyn Iterator<Item = (&'a [u8], EntryRef<'a>)> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// How many nodes [`KeyTable::iter_prefetched`] requests ahead of the one it yields.
const AHEAD: usize = 16;

/// The iterator of [`KeyTable::iter_prefetched`].
pub struct Prefetched<'a> {
    inner: hashbrown::hash_table::Iter<'a, Node>,
    ahead: std::collections::VecDeque<&'a Node>,
}

impl<'a> Iterator for Prefetched<'a> {
    type Item = (&'a [u8], EntryRef<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        while self.ahead.len() < AHEAD {
            let Some(n) = self.inner.next() else {
                break;
            };
            // Reading the bucket is not reading the node: only the prefetch touches it here.
            prefetch_line(n.0.as_ptr());
            self.ahead.push_back(n);
        }
        self.ahead.pop_front().map(|n| (n.key(), n.entry()))
    }
}

/// Owned keys and entries of a consumed [`KeyTable`].
pub struct IntoIter(hashbrown::hash_table::IntoIter<Node>);

impl Iterator for IntoIter {
    type Item = (Box<[u8]>, Entry);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(Node::into_parts)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl IntoIterator for KeyTable {
    type Item = (Box<[u8]>, Entry);
    type IntoIter = IntoIter;
    fn into_iter(self) -> IntoIter {
        IntoIter(self.table.into_iter())
    }
}

impl FromIterator<(Box<[u8]>, Entry)> for KeyTable {
    fn from_iter<I: IntoIterator<Item = (Box<[u8]>, Entry)>>(it: I) -> Self {
        let mut t = KeyTable::default();
        for (k, e) in it {
            t.insert(&k, e);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Value, ValueRef};
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn e(v: &[u8], at: u64) -> Entry {
        let mut e = Entry::new(Value::Str(v.into()));
        e.set_expire_raw(at);
        e
    }

    #[test]
    fn node_is_one_thin_pointer() {
        assert_eq!(std::mem::size_of::<Node>(), 8);
        assert_eq!(std::mem::size_of::<Option<Node>>(), 8);
        assert_eq!(
            LEN_AT, 32,
            "a value node's entry: the word and a 24-byte Value"
        );
        assert_eq!(Node::value_layout(10).size(), LEN_AT + 1 + 10);
        assert_eq!(Node::value_layout(300).size(), LEN_AT + 5 + 300);
        // `SET key:N <32 bytes>`: 12 + 1 + 10 + 32 = 55 bytes, one allocation (a 64-byte
        // mimalloc block), where a value node and a boxed string took 48 + 32.
        assert_eq!(Node::str_layout(10, 32).size(), 55);
        assert_eq!(Node::str_layout(300, 0).size(), SKEY_AT + 5 + 300);
        // Embedded when one block is no larger than two: always for short strings, not for a
        // 512-byte value (mimalloc: one 640-byte block against 48 + 512).
        assert!(Node::embeds(10, 32));
        assert!(Node::embeds(10, 0));
        assert!(!Node::embeds(10, 512));
        let mut t = KeyTable::default();
        t.insert_str(b"big", &[b'v'; 512], 0);
        t.insert_str(b"small", &[b'v'; 32], 0);
        assert!(!t
            .table
            .find(hash(b"big"), |n| n.key() == b"big")
            .unwrap()
            .is_str());
        assert!(t
            .table
            .find(hash(b"small"), |n| n.key() == b"small")
            .unwrap()
            .is_str());
        assert_eq!(t.get(b"big").unwrap().value, ValueRef::Str(&[b'v'; 512]));
        t.insert_str(b"big", &[b'w'; 512], 0);
        assert_eq!(t.get(b"big").unwrap().value, ValueRef::Str(&[b'w'; 512]));
    }

    /// `str_buf` turns a string of either layout into an editable buffer, keeps the entry
    /// word, edits stick, and later writes replace the buffer like any value.
    #[test]
    fn strings_become_buffers_in_place() {
        use crate::value::List;
        let mut t = KeyTable::default();
        assert!(t.str_buf(b"missing").is_none());
        t.insert_str(b"node", b"abc", 7);
        t.insert(
            b"boxed",
            Entry::from_word(Value::Str(vec![b'b'; 600].into()), 9),
        );
        t.insert(
            b"list",
            Entry::new(Value::List(List::from_items([&b"x"[..]]))),
        );
        assert_eq!(t.str_buf(b"list"), Some(Err(())));
        for (k, word) in [(&b"node"[..], 7), (b"boxed", 9)] {
            let before = t.get(k).unwrap().value.to_value();
            let b = t.str_buf(k).unwrap().unwrap();
            b.extend_from_slice(b"+tail");
            b[0] = b'Z';
            let e = t.get(k).unwrap();
            assert_eq!(e.word, word);
            let ValueRef::Str(now) = e.value else {
                panic!("{:?}", e.value)
            };
            let now = now.to_vec();
            let ValueRef::Str(was) = before.view() else {
                panic!("{before:?}")
            };
            assert_eq!(now.len(), was.len() + 5);
            assert_eq!(now[0], b'Z');
            assert!(now.ends_with(b"+tail"));
            assert!(!t.table.find(hash(k), |n| n.key() == k).unwrap().is_str());
            // The second call finds the buffer itself, edits included.
            assert!(t.str_buf(k).unwrap().unwrap().ends_with(b"+tail"));
            // Values compare by content, whatever holds the bytes.
            assert_eq!(t.clone().remove(k).unwrap().value, Value::Str(now.into()));
            t.insert_str(k, b"plain", 1);
            assert!(t.table.find(hash(k), |n| n.key() == k).unwrap().is_str());
            assert_eq!(t.get(k).unwrap().value, ValueRef::Str(b"plain"));
        }
    }

    /// Both node kinds through every accessor: strings of all lengths (empty, same-length
    /// overwrites in place, other lengths, long keys) and containers, replacing each other.
    #[test]
    fn string_and_value_nodes() {
        use crate::value::{List, ValueMut, ValueRef};
        let mut t = KeyTable::default();
        let long_key = vec![b'q'; 300];
        for k in [&b"a"[..], b"", &long_key] {
            assert_eq!(t.insert_str(k, b"hello", 7), None);
            assert!(t.table.find(hash(k), |n| n.key() == k).unwrap().is_str());
            assert_eq!(t.get(k).unwrap().value, ValueRef::Str(b"hello"));
            assert_eq!(t.get(k).unwrap().word, 7);
            // Same length: in place.
            assert_eq!(t.insert_str(k, b"world", 8), Some(7));
            assert_eq!(t.get(k).unwrap().value, ValueRef::Str(b"world"));
            // Other lengths, through an owned Value too.
            assert_eq!(t.insert_str(k, b"", 9), Some(8));
            assert_eq!(t.get(k).unwrap().value, ValueRef::Str(b""));
            let mut e = Entry::new(Value::Str(vec![b'z'; 1000].into()));
            e.set_expire_raw(0);
            assert_eq!(t.insert(k, e.clone()).is_some(), true);
            assert_eq!(t.get(k).unwrap().value, e.value);
            // A container replaces the string, and the other way round.
            let l = Value::List(List::from_items([&b"x"[..], b"y"]));
            t.insert(k, Entry::new(l.clone()));
            assert!(!t.table.find(hash(k), |n| n.key() == k).unwrap().is_str());
            match t.get_mut(k).unwrap().value {
                ValueMut::List(l) => l.push(b"z", false),
                other => panic!("{other:?}"),
            }
            assert_eq!(t.get(k).unwrap().value.type_name(), "list");
            let c = t.clone();
            assert_eq!(c.get(k).unwrap().value, t.get(k).unwrap().value);
            assert_eq!(t.insert_str(k, b"again", 1).is_some(), true);
            *t.get_mut(k).unwrap().word = 42;
            assert_eq!(t.get(k).unwrap().word, 42);
            let c = t.clone();
            assert_eq!(c.get(k).unwrap().value, ValueRef::Str(b"again"));
            assert_eq!(c.get(k).unwrap().word, 42);
            let e = t.remove(k).unwrap();
            assert_eq!(e.value, Value::Str((*b"again").into()));
            assert_eq!(e.expire_at, 42);
            assert!(t.get(k).is_none());
            t.insert_str(k, b"kept", 3);
        }
        t.insert(
            b"list",
            Entry::new(Value::List(List::from_items([&b"x"[..]]))),
        );
        let mut all: Vec<(Box<[u8]>, Entry)> = t.clone().into_iter().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].1.value, Value::Str((*b"kept").into()));
        assert_eq!(all[0].1.expire_at, 3);
        let mut n = 0;
        for (_, e) in t.iter_mut() {
            *e.word += 1;
            n += 1;
        }
        assert_eq!(n, 4);
        assert_eq!(t.get(b"a").unwrap().word, 4);
        t.retain(|_, e| e.value.type_name() == "string");
        assert_eq!(t.len(), 3);
    }

    /// The prefetching walk yields the same keys and entries in the same order as `iter`.
    #[test]
    fn iter_prefetched_yields_what_iter_does() {
        let mut t = KeyTable::default();
        for i in 0..100u32 {
            t.insert(format!("k{i}").as_bytes(), e(&i.to_be_bytes(), 0));
        }
        let plain: Vec<(Vec<u8>, Vec<u8>)> = t
            .iter()
            .map(|(k, v)| (k.to_vec(), format!("{:?}", v.value).into_bytes()))
            .collect();
        let ahead: Vec<(Vec<u8>, Vec<u8>)> = t
            .iter_prefetched()
            .map(|(k, v)| (k.to_vec(), format!("{:?}", v.value).into_bytes()))
            .collect();
        assert_eq!(plain.len(), 100);
        assert_eq!(plain, ahead);
        assert_eq!(t.iter_prefetched().take(7).count(), 7);
        assert_eq!(KeyTable::default().iter_prefetched().count(), 0);
    }

    /// A prefetch is only a hint: present, absent and colliding keys, cold or warm, on an empty
    /// or a full table, leave every entry as it was.
    #[test]
    fn prefetch_changes_nothing() {
        let mut t = KeyTable::default();
        t.prefetch(b"nothing", false);
        t.prefetch(b"nothing", true);
        for i in 0..1000u32 {
            t.insert(
                format!("k{i}").as_bytes(),
                e(&i.to_le_bytes(), u64::from(i)),
            );
        }
        t.insert(b"empty", e(b"", 0));
        for warm in [false, true] {
            for k in ["k0", "k999", "absent", "empty", ""] {
                t.prefetch(k.as_bytes(), warm);
            }
        }
        assert_eq!(t.len(), 1001);
        for i in 0..1000u32 {
            let got = t.get(format!("k{i}").as_bytes()).unwrap();
            assert_eq!(got.value, Value::Str(i.to_le_bytes().into()));
            assert_eq!(got.expire_at(), u64::from(i));
        }
        assert_eq!(t.get(b"empty").unwrap().value.heap_ptr(), None);
    }

    #[test]
    fn long_and_empty_keys() {
        let mut t = KeyTable::default();
        let long = vec![b'k'; 70_000];
        assert!(t.insert(&long, e(b"v", 0)).is_none());
        assert!(t.insert(b"", e(b"empty", 5)).is_none());
        assert!(t.insert(&[b'x'; 254], e(b"a", 0)).is_none());
        assert!(t.insert(&[b'x'; 255], e(b"b", 0)).is_none());
        assert_eq!(
            t.get(&long).map(|e| e.value.to_value()),
            Some(Value::Str((*b"v").into()))
        );
        assert_eq!(t.get(b"").map(|e| e.expire_at()), Some(5));
        assert_eq!(t.keys().map(|k| k.len()).max(), Some(70_000));
        let c = t.clone();
        let mut all: Vec<(Box<[u8]>, Entry)> = c.into_iter().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(all.len(), 4);
        assert_eq!(&*all[0].0, b"");
        assert!(t.remove(&[b'x'; 255]).is_some());
        assert_eq!(t.len(), 3);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u8, u64),
        Remove(u8),
        Get(u8),
        Mutate(u8, u8),
        Retain(u8),
        Clone,
    }

    fn key(k: u8) -> Vec<u8> {
        // Short keys, and a few long enough for the 5-byte length form.
        if k % 16 == 0 {
            vec![k; 300 + k as usize]
        } else {
            format!("key:{k}").into_bytes()
        }
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u8>(), any::<u8>(), 0u64..3).prop_map(|(k, v, t)| Op::Insert(k, v, t)),
            2 => any::<u8>().prop_map(Op::Remove),
            2 => any::<u8>().prop_map(Op::Get),
            1 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Mutate(k, v)),
            1 => (2u8..8).prop_map(Op::Retain),
            1 => Just(Op::Clone),
        ]
    }

    proptest! {
        #[test]
        fn table_matches_hashmap(ops in proptest::collection::vec(op(), 1..400)) {
            let mut t = KeyTable::default();
            let mut m: HashMap<Vec<u8>, (Vec<u8>, u64)> = HashMap::new();
            let val = |e: EntryRef<'_>| match e.value {
                ValueRef::Str(s) => (s.to_vec(), e.expire_at()),
                _ => (Vec::new(), u64::MAX),
            };
            let oval = |e: &Entry| val(e.view());
            for op in ops {
                match op {
                    Op::Insert(k, v, at) => {
                        // Half through an owned Value, half straight from bytes.
                        let had = t.get(&key(k)).map(val);
                        let new = e(&[v; 3], at);
                        let old = if v % 2 == 0 {
                            t.insert(&key(k), new)
                        } else {
                            t.insert_str(&key(k), &[v; 3], new.expire_at)
                        };
                        prop_assert_eq!(old.is_some(), had.is_some());
                        prop_assert_eq!(had, m.insert(key(k), (vec![v; 3], at)));
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(t.remove(&key(k)).map(|e| oval(&e)), m.remove(&key(k)));
                    }
                    Op::Get(k) => {
                        prop_assert_eq!(t.get(&key(k)).map(val), m.get(&key(k)).cloned());
                        prop_assert_eq!(t.contains_key(&key(k)), m.contains_key(&key(k)));
                    }
                    Op::Mutate(k, v) => {
                        if let Some(old) = t.get(&key(k)) {
                            let w = old.word;
                            t.insert_str(&key(k), &[v; 5], w);
                        }
                        if let Some(x) = m.get_mut(&key(k)) {
                            x.0 = vec![v; 5];
                        }
                    }
                    Op::Retain(d) => {
                        t.retain(|k, _| k.len() % d as usize != 0);
                        m.retain(|k, _| k.len() % d as usize != 0);
                    }
                    Op::Clone => t = t.clone(),
                }
                prop_assert_eq!(t.len(), m.len());
            }
            let mut got: Vec<(Vec<u8>, (Vec<u8>, u64))> =
                t.iter().map(|(k, e)| (k.to_vec(), val(e))).collect();
            got.sort();
            let mut want: Vec<_> = m.clone().into_iter().collect();
            want.sort();
            prop_assert_eq!(&got, &want);
            let mut owned: Vec<(Vec<u8>, (Vec<u8>, u64))> =
                t.into_iter().map(|(k, e)| (k.to_vec(), oval(&e))).collect();
            owned.sort();
            prop_assert_eq!(owned, want);
        }
    }
}

/// Ask the CPU to bring the cache line at `p` in (a no-op where there is no such instruction).
#[inline(always)]
pub fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
