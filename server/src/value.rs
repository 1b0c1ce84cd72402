//! Values stored under keys. Each data type family (`cmd/*.rs`) works on its own variant.
//!
//! Small containers live in a [`Pack`] (lists) or a [`PairPack`] (hashes, sorted sets): one
//! contiguous heap buffer of length-prefixed entries (the listpack idea), so a small hash costs one
//! allocation, not one per field. Past the thresholds
//! below (Redis 7.0's defaults, reported by `CONFIG GET`) a container converts to a hash table,
//! a deque or a B-tree, and never converts back (as in Redis).

use std::cmp::Ordering;
use std::collections::BTreeSet;

use hashbrown::hash_map::RawEntryMut;
use hashbrown::HashMap;

pub use crate::intset::IntSet;
pub use crate::quicklist::{List, Pack, LIST_MAX_PACK_ENTRIES, LIST_MAX_PACK_VALUE};
pub use crate::smallbytes::Member;

/// Encoding thresholds (`hash-max-listpack-entries` and friends). Process-wide and changed by
/// `CONFIG SET` on any core; read with relaxed loads where a value grows (a value already converted
/// stays converted, as in Redis).
pub mod limits {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    /// `hash-max-listpack-entries` (alias `hash-max-ziplist-entries`): 512, redis-server's built-in
    /// default (the sample redis.conf sets 128).
    pub static HASH_MAX_LISTPACK_ENTRIES: AtomicUsize = AtomicUsize::new(512);
    /// `hash-max-listpack-value` (alias `hash-max-ziplist-value`).
    pub static HASH_MAX_LISTPACK_VALUE: AtomicUsize = AtomicUsize::new(64);
    /// `set-max-intset-entries`.
    pub static SET_MAX_INTSET_ENTRIES: AtomicUsize = AtomicUsize::new(512);
    /// `zset-max-listpack-entries` (alias `zset-max-ziplist-entries`).
    pub static ZSET_MAX_LISTPACK_ENTRIES: AtomicUsize = AtomicUsize::new(128);
    /// `zset-max-listpack-value` (alias `zset-max-ziplist-value`).
    pub static ZSET_MAX_LISTPACK_VALUE: AtomicUsize = AtomicUsize::new(64);
    /// `hll-sparse-max-bytes`: a sparse HyperLogLog growing past it turns dense.
    pub static HLL_SPARSE_MAX_BYTES: AtomicUsize = AtomicUsize::new(3000);

    pub(crate) fn hash_entries() -> usize {
        HASH_MAX_LISTPACK_ENTRIES.load(Relaxed)
    }
    pub(crate) fn hash_value() -> usize {
        HASH_MAX_LISTPACK_VALUE.load(Relaxed)
    }
    pub(crate) fn set_entries() -> usize {
        SET_MAX_INTSET_ENTRIES.load(Relaxed)
    }
    pub(crate) fn zset_entries() -> usize {
        ZSET_MAX_LISTPACK_ENTRIES.load(Relaxed)
    }
    pub(crate) fn zset_value() -> usize {
        ZSET_MAX_LISTPACK_VALUE.load(Relaxed)
    }
    pub(crate) fn hll_sparse_max() -> usize {
        HLL_SPARSE_MAX_BYTES.load(Relaxed)
    }
}

type Hasher = ahash::RandomState;

/// The table form of a hash: field -> value.
pub type FieldMap = HashMap<Member, Box<[u8]>, Hasher>;

/// The table form of a set: members as the keys of a map of `()`.
pub type MemberMap = HashMap<Member, (), Hasher>;

fn prefetch_in<V>(t: &HashMap<Member, V, Hasher>, m: &[u8]) {
    let h = t.hasher().hash_one(m);
    let _ = t.raw_entry().from_hash(h, |k| {
        crate::keytable::prefetch_line((k as *const Member).cast());
        false
    });
}

/// A stored value.
#[derive(Debug, Clone)]
pub enum Value {
    /// A string (binary-safe).
    Str(Box<[u8]>),
    /// A string edited in place: APPEND, SETRANGE, SETBIT and BITFIELD on a string of
    /// [`Value::EDIT_IN_PLACE`] bytes or more move it here once (`Db::str_buf`), with spare
    /// capacity as Redis's sds keeps, so that appending is amortised O(1) and a bit write O(1)
    /// instead of a copy of the whole string per command. Reads see it as any string.
    Buf(Box<Vec<u8>>),
    /// A hash.
    Hash(Hash),
    /// A list.
    List(List),
    /// A set.
    Set(Set),
    /// A sorted set.
    ZSet(ZSet),
}

/// A borrowed view of a stored value: what a key table hands out (a string's bytes may live in
/// the table's own node rather than in a [`Value`], see `keytable.rs`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// A string's bytes.
    Str(&'a [u8]),
    /// A hash.
    Hash(&'a Hash),
    /// A list.
    List(&'a List),
    /// A set.
    Set(&'a Set),
    /// A sorted set.
    ZSet(&'a ZSet),
}

/// A mutable view of a stored value. A string is read-only in place (its bytes may sit in the
/// table's node, sized for them): a changed string is stored anew with `Db::insert`.
#[derive(Debug)]
pub enum ValueMut<'a> {
    /// A string's bytes.
    Str(&'a [u8]),
    /// A hash.
    Hash(&'a mut Hash),
    /// A list.
    List(&'a mut List),
    /// A set.
    Set(&'a mut Set),
    /// A sorted set.
    ZSet(&'a mut ZSet),
}

impl Value {
    /// The borrowed view.
    #[inline]
    pub fn view(&self) -> ValueRef<'_> {
        match self {
            Value::Str(s) => ValueRef::Str(s),
            Value::Buf(b) => ValueRef::Str(b),
            Value::Hash(h) => ValueRef::Hash(h),
            Value::List(l) => ValueRef::List(l),
            Value::Set(s) => ValueRef::Set(s),
            Value::ZSet(z) => ValueRef::ZSet(z),
        }
    }

    /// The mutable view.
    #[inline]
    pub fn view_mut(&mut self) -> ValueMut<'_> {
        match self {
            Value::Str(s) => ValueMut::Str(s),
            Value::Buf(b) => ValueMut::Str(b),
            Value::Hash(h) => ValueMut::Hash(h),
            Value::List(l) => ValueMut::List(l),
            Value::Set(s) => ValueMut::Set(s),
            Value::ZSet(z) => ValueMut::ZSet(z),
        }
    }

    /// The name `TYPE` reports.
    pub fn type_name(&self) -> &'static str {
        self.view().type_name()
    }

    /// The encoding `OBJECT ENCODING` reports, as Redis 7.0 would.
    pub fn encoding(&self) -> &'static str {
        self.view().encoding()
    }
}

impl Value {
    /// Strings at least this long are edited in place (see [`Value::Buf`]); shorter ones are
    /// copied and stored anew, which costs less than a buffer's own allocation.
    pub const EDIT_IN_PLACE: usize = 512;
}

/// Values compare by content: a string is equal whether it is stored as [`Value::Str`] or as
/// [`Value::Buf`].
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.view() == other.view()
    }
}

/// Make room in `buf` for `need` bytes in all, as Redis's `sdsMakeRoomFor` does: twice the
/// need up to 1 MB, the need plus 1 MB beyond.
pub fn reserve_greedy(buf: &mut Vec<u8>, need: usize) {
    if need > buf.capacity() {
        let want = if need < 1 << 20 {
            need * 2
        } else {
            need + (1 << 20)
        };
        buf.reserve_exact(want - buf.len());
    }
}

impl PartialEq<Value> for ValueRef<'_> {
    fn eq(&self, other: &Value) -> bool {
        *self == other.view()
    }
}

impl<'a> ValueMut<'a> {
    /// The read-only view of the same value.
    pub fn view(&self) -> ValueRef<'_> {
        match self {
            ValueMut::Str(s) => ValueRef::Str(s),
            ValueMut::Hash(h) => ValueRef::Hash(h),
            ValueMut::List(l) => ValueRef::List(l),
            ValueMut::Set(s) => ValueRef::Set(s),
            ValueMut::ZSet(z) => ValueRef::ZSet(z),
        }
    }
}

impl<'a> ValueRef<'a> {
    /// An owned copy.
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Str(s) => Value::Str(s.into()),
            ValueRef::Hash(h) => Value::Hash(h.clone()),
            ValueRef::List(l) => Value::List(l.clone()),
            ValueRef::Set(s) => Value::Set(s.clone()),
            ValueRef::ZSet(z) => Value::ZSet(z.clone()),
        }
    }

    /// Where a read of the value goes first, for a prefetch hint: a compact container's buffer
    /// (None for strings, empty containers and tables, whose first touch depends on the field
    /// looked up).
    #[inline]
    pub fn heap_ptr(self) -> Option<*const u8> {
        let b: &[u8] = match self {
            ValueRef::Hash(Hash::Pack(p)) | ValueRef::ZSet(ZSet::Pack(p)) => &p.0,
            ValueRef::List(List::Pack(p)) => p.as_bytes(),
            _ => return None,
        };
        (!b.is_empty()).then_some(b.as_ptr())
    }

    /// Warm the cache for looking `m` up in a set's or hash's table (the control bytes and the
    /// bucket its hash leads to; a short member is compared right there, see [`Member`]). Other
    /// values: nothing. Reads no bucket, so it does not wait for the misses it starts.
    #[inline]
    pub fn prefetch_member(self, m: &[u8]) {
        match self {
            ValueRef::Set(Set::Map(t)) => prefetch_in(t, m),
            ValueRef::Hash(Hash::Map(t)) => prefetch_in(t, m),
            _ => {}
        }
    }

    /// The name `TYPE` reports.
    pub fn type_name(self) -> &'static str {
        match self {
            ValueRef::Str(_) => "string",
            ValueRef::Hash(_) => "hash",
            ValueRef::List(_) => "list",
            ValueRef::Set(_) => "set",
            ValueRef::ZSet(_) => "zset",
        }
    }

    /// The encoding `OBJECT ENCODING` reports, as Redis 7.0 would.
    pub fn encoding(self) -> &'static str {
        match self {
            ValueRef::Str(s) => {
                if s.len() <= 20 && canonical_i64(s).is_some() {
                    "int"
                } else if s.len() <= 44 {
                    "embstr"
                } else {
                    "raw"
                }
            }
            ValueRef::Hash(Hash::Pack(_)) => "listpack",
            ValueRef::Hash(Hash::Map(_)) => "hashtable",
            ValueRef::List(_) => "quicklist",
            ValueRef::Set(Set::Ints(_)) => "intset",
            ValueRef::Set(Set::Map(_)) => "hashtable",
            ValueRef::ZSet(ZSet::Pack(_)) => "listpack",
            ValueRef::ZSet(ZSet::Tree(_)) => "skiplist",
        }
    }
}

/// Approximate bytes a value holds (MEMORY USAGE, DEBUG OBJECT).
pub fn approx_size(v: ValueRef<'_>) -> usize {
    match v {
        ValueRef::Str(s) => s.len(),
        ValueRef::Hash(Hash::Pack(p)) | ValueRef::ZSet(ZSet::Pack(p)) => p.bytes(),
        ValueRef::List(l) => l.bytes(),
        ValueRef::Hash(Hash::Map(m)) => m.iter().map(|(k, v)| k.len() + v.len() + 48).sum(),
        ValueRef::Set(Set::Ints(v)) => v.encoded_len(),
        ValueRef::Set(Set::Map(m)) => m.keys().map(|k| k.len() + 24).sum(),
        ValueRef::ZSet(ZSet::Tree(t)) => t.dict.iter().map(|(k, _)| 2 * k.len() + 80).sum(),
    }
}

/// An integer in Redis's canonical text (what `string2ll` accepts and prints back identically).
pub fn canonical_i64(b: &[u8]) -> Option<i64> {
    let v = resp::parse_i64(b)?;
    (b != b"-0").then_some(v)
}

// ---------------------------------------------------------------------------------------------
// PairPack

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Pairs of byte strings (a hash's field and value, a sorted set's member and score) in one
/// contiguous buffer. Each pair starts with one header byte whose high nibble is the first
/// string's length and low nibble the second's when that length is below 15; a nibble of 15 says
/// the length follows as LEB128 (first string's, then second's). Then the two strings' bytes. So
/// a pair of short strings (<= 14 bytes each, the common case of small hashes and sorted sets)
/// pays one byte of framing instead of one per string.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PairPack(Box<[u8]>);

/// Iterator over a pair pack's pairs with their byte spans.
pub struct PairIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn get_len(buf: &[u8], pos: &mut usize) -> Option<usize> {
    let mut n = 0usize;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        n |= ((b & 0x7f) as usize) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
}

impl<'a> Iterator for PairIter<'a> {
    /// `(start, end, first, second)`: the pair with its header spans `start..end` of the buffer.
    type Item = (usize, usize, &'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let start = self.pos;
        let h = *self.buf.get(start)?;
        self.pos += 1;
        let na = match (h >> 4) as usize {
            15 => get_len(self.buf, &mut self.pos)?,
            n => n,
        };
        let nb = match (h & 15) as usize {
            15 => get_len(self.buf, &mut self.pos)?,
            n => n,
        };
        let a = self.buf.get(self.pos..self.pos + na)?;
        self.pos += na;
        let b = self.buf.get(self.pos..self.pos + nb)?;
        self.pos += nb;
        Some((start, self.pos, a, b))
    }
}

impl PairPack {
    /// Pairs with their spans.
    pub fn spans(&self) -> PairIter<'_> {
        PairIter {
            buf: &self.0,
            pos: 0,
        }
    }

    /// Pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.spans().map(|(_, _, a, b)| (a, b))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.spans().count()
    }

    /// Whether there is no pair.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes of the buffer.
    pub fn bytes(&self) -> usize {
        self.0.len()
    }

    /// Replace bytes `start..end` (pair boundaries) with `pairs`.
    pub fn splice(&mut self, start: usize, end: usize, pairs: &[(&[u8], &[u8])]) {
        let add: usize = pairs.iter().map(|(a, b)| a.len() + b.len() + 1).sum();
        let mut v = Vec::with_capacity(self.0.len() - (end - start) + add + 8);
        v.extend_from_slice(&self.0[..start]);
        for (a, b) in pairs {
            let nib = |n: usize| if n < 15 { n as u8 } else { 15 };
            v.push(nib(a.len()) << 4 | nib(b.len()));
            if a.len() >= 15 {
                put_len(&mut v, a.len());
            }
            if b.len() >= 15 {
                put_len(&mut v, b.len());
            }
            v.extend_from_slice(a);
            v.extend_from_slice(b);
        }
        v.extend_from_slice(&self.0[end..]);
        self.0 = v.into_boxed_slice();
    }
}

// ---------------------------------------------------------------------------------------------
// Hash

/// A hash: a pair pack of (field, value) (insertion order, as a listpack) or a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Hash {
    Pack(PairPack),
    Map(Box<FieldMap>),
}

impl Default for Hash {
    fn default() -> Self {
        Hash::Pack(PairPack::default())
    }
}

impl Hash {
    /// Number of fields.
    pub fn len(&self) -> usize {
        match self {
            Hash::Pack(p) => p.len(),
            Hash::Map(m) => m.len(),
        }
    }

    /// Whether the hash has no field.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A field's value.
    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match self {
            Hash::Pack(p) => p.iter().find(|(f, _)| *f == field).map(|(_, v)| v),
            Hash::Map(m) => m.get(field).map(|v| &**v),
        }
    }

    /// Fields and values (pack order, or the table's order).
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&[u8], &[u8])> + '_> {
        match self {
            Hash::Pack(p) => Box::new(p.iter()),
            Hash::Map(m) => Box::new(m.iter().map(|(k, v)| (&**k, &**v))),
        }
    }

    fn convert(&mut self) {
        let m = match self {
            Hash::Pack(p) => {
                let mut m = FieldMap::default();
                for (f, v) in p.iter() {
                    m.insert(Member::new(f), v.into());
                }
                m
            }
            Hash::Map(_) => return,
        };
        *self = Hash::Map(Box::new(m));
    }

    /// Set a field; true when it is new.
    pub fn set(&mut self, field: &[u8], value: &[u8]) -> bool {
        if let Hash::Pack(p) = self {
            let max_value = limits::hash_value();
            if field.len() > max_value || value.len() > max_value {
                self.convert();
            } else {
                let mut n = 0;
                for (ps, pe, f, _) in p.spans() {
                    if f == field {
                        p.splice(ps, pe, &[(field, value)]);
                        return false;
                    }
                    n += 1;
                }
                if n >= limits::hash_entries() {
                    self.convert();
                } else {
                    let end = p.bytes();
                    p.splice(end, end, &[(field, value)]);
                    return true;
                }
            }
        }
        match self {
            // One probe, and no allocation for the field when it exists (the common overwrite);
            // a value of the same length is copied over the old one.
            Hash::Map(m) => match m.raw_entry_mut().from_key(field) {
                RawEntryMut::Occupied(mut o) => {
                    let v = o.get_mut();
                    if v.len() == value.len() {
                        v.copy_from_slice(value);
                    } else {
                        *v = value.into();
                    }
                    false
                }
                RawEntryMut::Vacant(e) => {
                    e.insert(Member::new(field), value.into());
                    true
                }
            },
            Hash::Pack(_) => false,
        }
    }

    /// Remove a field; true when it existed.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            Hash::Pack(p) => match p.spans().find(|(_, _, f, _)| *f == field) {
                Some((ps, pe, _, _)) => {
                    p.splice(ps, pe, &[]);
                    true
                }
                None => false,
            },
            Hash::Map(m) => m.remove(field).is_some(),
        }
    }

    /// A hash holding `pairs` (later duplicates overwrite), encoded as their sizes require.
    pub fn from_pairs<A: AsRef<[u8]>, B: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (A, B)>,
    ) -> Hash {
        let mut h = Hash::default();
        for (f, v) in pairs {
            h.set(f.as_ref(), v.as_ref());
        }
        h
    }
}

// ---------------------------------------------------------------------------------------------
// Set

/// A set: sorted integers (intset) or a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Set {
    Ints(IntSet),
    /// Members as the keys of a map of `()` (what a HashSet is inside), so that a random member
    /// can be drawn through the raw entry API ([`Set::random`]); short members are kept inline
    /// in the table's buckets ([`Member`]).
    Map(Box<MemberMap>),
}

impl Default for Set {
    fn default() -> Self {
        Set::Ints(IntSet::default())
    }
}

impl Set {
    /// Number of members.
    pub fn len(&self) -> usize {
        match self {
            Set::Ints(v) => v.len(),
            Set::Map(m) => m.len(),
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Membership.
    pub fn contains(&self, m: &[u8]) -> bool {
        match self {
            Set::Ints(v) => canonical_i64(m).is_some_and(|i| v.contains(i)),
            Set::Map(s) => s.contains_key(m),
        }
    }

    fn convert(&mut self) {
        if let Set::Ints(v) = self {
            let mut s = MemberMap::default();
            s.reserve(v.len() + 1);
            let mut b = itoa::Buffer::new();
            for i in v.iter() {
                s.insert(Member::new(b.format(i).as_bytes()), ());
            }
            *self = Set::Map(Box::new(s));
        }
    }

    /// Add a member; true when new.
    pub fn insert(&mut self, m: &[u8]) -> bool {
        if let Set::Ints(v) = self {
            match canonical_i64(m) {
                Some(i) => match v.binary_search(i) {
                    Ok(_) => return false,
                    Err(_) if v.len() < limits::set_entries() => return v.insert(i),
                    Err(_) => self.convert(),
                },
                None => self.convert(),
            }
        }
        match self {
            // One probe, and no allocation when the member exists.
            Set::Map(s) => match s.raw_entry_mut().from_key(m) {
                RawEntryMut::Occupied(_) => false,
                RawEntryMut::Vacant(e) => {
                    e.insert(Member::new(m), ());
                    true
                }
            },
            Set::Ints(_) => false,
        }
    }

    /// Remove a member; true when it existed.
    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self {
            Set::Ints(v) => canonical_i64(m).is_some_and(|i| v.remove(i)),
            Set::Map(s) => {
                let had = s.remove(m).is_some();
                if had {
                    Self::shrink(s);
                }
                had
            }
        }
    }

    /// Keep the table at least 1/8 full so that [`Set::random`] finds a member in a few probes
    /// (Redis shrinks its dicts below 10% for the same reason).
    fn shrink(s: &mut MemberMap) {
        if s.len() >= 16 && s.len() * 8 < s.capacity() {
            s.shrink_to(s.len() * 2);
        }
    }

    /// Remove and return a member drawn as [`Set::random`] draws it (SPOP): a table gives up the
    /// member it finds at a random hash, without copying it or hashing it again.
    pub fn pop_random(&mut self, rng: &mut impl rand::Rng) -> Option<Box<[u8]>> {
        if let Set::Map(s) = self {
            if s.is_empty() {
                return None;
            }
            for _ in 0..4096 {
                if let RawEntryMut::Occupied(o) = s.raw_entry_mut().from_hash(rng.gen(), |_| true) {
                    let (m, ()) = o.remove_entry();
                    Self::shrink(s);
                    return Some(m.to_boxed());
                }
            }
        }
        let m = self.random(rng)?;
        self.remove(&m);
        Some(m)
    }

    /// A member drawn at random, in O(1) expected time (SPOP, SRANDMEMBER). An intset picks by
    /// index; a table probes at a random hash and takes the first member whose tag matches
    /// there, which every member is equally likely to be (up to probe-chain effects, as in
    /// Redis's `dictGetFairRandomKey`).
    pub fn random(&self, rng: &mut impl rand::Rng) -> Option<Box<[u8]>> {
        match self {
            Set::Ints(v) => {
                let n = v.len();
                let i = v.get(rng.gen_range(0..n.max(1)))?;
                Some(itoa::Buffer::new().format(i).as_bytes().into())
            }
            Set::Map(s) => {
                if s.is_empty() {
                    return None;
                }
                for _ in 0..4096 {
                    if let Some((k, _)) = s.raw_entry().from_hash(rng.gen(), |_| true) {
                        return Some(k.to_boxed());
                    }
                }
                // Unreachable in practice (the table is kept 1/8 full); stay correct anyway.
                s.keys()
                    .nth(rng.gen_range(0..s.len()))
                    .map(Member::to_boxed)
            }
        }
    }

    /// Members (ascending for an intset, table order otherwise), as owned bytes.
    pub fn members(&self) -> Vec<Box<[u8]>> {
        match self {
            Set::Ints(v) => {
                let mut b = itoa::Buffer::new();
                v.iter().map(|i| b.format(i).as_bytes().into()).collect()
            }
            Set::Map(s) => s.keys().map(Member::to_boxed).collect(),
        }
    }

    /// A set of the given members, encoded as Redis would.
    pub fn from_members<T: AsRef<[u8]>>(items: impl IntoIterator<Item = T>) -> Set {
        let mut s = Set::default();
        for m in items {
            s.insert(m.as_ref());
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Sorted set

/// A score ordered as Redis orders them (`-0 == 0`; NaN is never stored).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score(pub f64);

impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Score {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.partial_cmp(&o.0).unwrap_or(Ordering::Equal)
    }
}

/// The big sorted-set form: member -> score, plus (score, member) in order.
#[derive(Debug, Clone, Default)]
pub struct ZTree {
    pub dict: HashMap<Box<[u8]>, f64, Hasher>,
    pub tree: BTreeSet<(Score, Box<[u8]>)>,
}

impl PartialEq for ZTree {
    fn eq(&self, o: &Self) -> bool {
        self.tree == o.tree
    }
}

/// A sorted set: a pair pack of (member, score) in (score, member) order (scores as [`score_bytes`]
/// encodes them), or a tree.
#[derive(Debug, Clone, PartialEq)]
pub enum ZSet {
    Pack(PairPack),
    Tree(Box<ZTree>),
}

impl Default for ZSet {
    fn default() -> Self {
        ZSet::Pack(PairPack::default())
    }
}

/// A score as a pack entry: an integral score of magnitude below 2^53 (exactly an i64) is stored
/// as its shortest two's-complement little-endian bytes (0 to 7 of them; 0 stands for 0), any
/// other score as the 8 bytes of the f64 (listpacks likewise store integral scores as integers).
/// Returns the buffer and how many of its bytes are used.
fn score_bytes(score: f64) -> ([u8; 8], usize) {
    const EXACT: f64 = (1u64 << 53) as f64;
    if score.fract() == 0.0 && score.abs() < EXACT {
        let i = score as i64;
        let b = i.to_le_bytes();
        // Shortest length whose sign extension gives back `i`.
        let fits = |n: usize| {
            if n == 0 {
                i == 0
            } else {
                let sh = 64 - 8 * n as u32;
                (i << sh) >> sh == i
            }
        };
        if let Some(n) = (0..8).find(|&n| fits(n)) {
            return (b, n);
        }
    }
    (score.to_le_bytes(), 8)
}

fn score_of(b: &[u8]) -> f64 {
    match b.len() {
        8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            f64::from_le_bytes(a)
        }
        0 => 0.0,
        n => {
            let mut a = [0u8; 8];
            a[..n].copy_from_slice(b);
            let shift = 64 - 8 * n as u32;
            ((i64::from_le_bytes(a) << shift) >> shift) as f64
        }
    }
}

fn zorder(s1: f64, m1: &[u8], s2: f64, m2: &[u8]) -> Ordering {
    Score(s1).cmp(&Score(s2)).then_with(|| m1.cmp(m2))
}

impl ZSet {
    /// Number of members.
    pub fn len(&self) -> usize {
        match self {
            ZSet::Pack(p) => p.len(),
            ZSet::Tree(t) => t.dict.len(),
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A member's score.
    pub fn score(&self, m: &[u8]) -> Option<f64> {
        match self {
            ZSet::Pack(p) => p.iter().find(|(k, _)| *k == m).map(|(_, s)| score_of(s)),
            ZSet::Tree(t) => t.dict.get(m).copied(),
        }
    }

    /// Members with scores in order (ascending score, then member).
    pub fn iter(&self) -> Box<dyn DoubleEndedIterator<Item = (&[u8], f64)> + '_> {
        match self {
            ZSet::Pack(p) => {
                let v: Vec<(&[u8], f64)> = p.iter().map(|(m, s)| (m, score_of(s))).collect();
                Box::new(v.into_iter())
            }
            ZSet::Tree(t) => Box::new(t.tree.iter().map(|(s, m)| (&**m, s.0))),
        }
    }

    /// Members with score >= `min` in order (a starting point for score ranges).
    pub fn iter_from(&self, min: f64) -> Box<dyn Iterator<Item = (&[u8], f64)> + '_> {
        match self {
            ZSet::Tree(t) if !min.is_nan() => {
                let lo = (Score(min), Box::<[u8]>::default());
                Box::new(t.tree.range(lo..).map(|(s, m)| (&**m, s.0)))
            }
            _ => Box::new(self.iter().skip_while(move |(_, s)| *s < min)),
        }
    }

    fn convert(&mut self) {
        let t = match self {
            ZSet::Pack(p) => {
                let mut t = ZTree::default();
                for (m, s) in p.iter() {
                    let s = score_of(s);
                    t.dict.insert(m.into(), s);
                    t.tree.insert((Score(s), m.into()));
                }
                t
            }
            ZSet::Tree(_) => return,
        };
        *self = ZSet::Tree(Box::new(t));
    }

    /// Set a member's score (adding it when missing); true when new.
    pub fn insert(&mut self, m: &[u8], score: f64) -> bool {
        // A listpack stores -0 as the integer 0; do the same everywhere.
        let score = score + 0.0;
        let existed = self.remove(m);
        if let ZSet::Pack(p) = self {
            if m.len() <= limits::zset_value() && p.len() < limits::zset_entries() {
                let at = p
                    .spans()
                    .find(|(_, _, k, s)| zorder(score, m, score_of(s), k) == Ordering::Less)
                    .map_or(p.bytes(), |(ps, _, _, _)| ps);
                let (sb, sn) = score_bytes(score);
                p.splice(at, at, &[(m, &sb[..sn])]);
                return !existed;
            }
            self.convert();
        }
        if let ZSet::Tree(t) = self {
            t.dict.insert(m.into(), score);
            t.tree.insert((Score(score), m.into()));
        }
        !existed
    }

    /// Remove a member; true when it existed.
    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self {
            ZSet::Pack(p) => match p.spans().find(|(_, _, k, _)| *k == m) {
                Some((ps, pe, _, _)) => {
                    p.splice(ps, pe, &[]);
                    true
                }
                None => false,
            },
            ZSet::Tree(t) => match t.dict.remove(m) {
                Some(s) => {
                    t.tree.remove(&(Score(s), Box::<[u8]>::from(m)));
                    true
                }
                None => false,
            },
        }
    }

    /// 0-based rank of a member in ascending order.
    pub fn rank(&self, m: &[u8]) -> Option<usize> {
        let s = self.score(m)?;
        match self {
            ZSet::Tree(t) => Some(t.tree.range(..(Score(s), Box::<[u8]>::from(m))).count()),
            ZSet::Pack(_) => self.iter().position(|(k, _)| k == m),
        }
    }

    /// A sorted set of the given pairs, encoded as Redis would.
    pub fn from_pairs<T: AsRef<[u8]>>(pairs: impl IntoIterator<Item = (T, f64)>) -> ZSet {
        let mut z = ZSet::default();
        for (m, s) in pairs {
            z.insert(m.as_ref(), s);
        }
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_stays_small() {
        assert!(
            std::mem::size_of::<Value>() <= 24,
            "{}",
            std::mem::size_of::<Value>()
        );
    }

    #[test]
    fn set_stays_16_bytes() {
        assert_eq!(std::mem::size_of::<Set>(), 16);
    }

    #[test]
    fn hash_pack_and_conversion() {
        let mut h = Hash::default();
        assert!(h.set(b"a", b"1"));
        assert!(h.set(b"b", b"2"));
        assert!(!h.set(b"a", b"3"));
        assert_eq!(h.get(b"a"), Some(&b"3"[..]));
        assert_eq!(
            h.iter().map(|(f, _)| f.to_vec()).collect::<Vec<_>>(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert!(h.remove(b"a"));
        assert_eq!(h.len(), 1);
        for i in 0..600 {
            h.set(format!("f{i}").as_bytes(), b"x");
        }
        assert!(matches!(h, Hash::Map(_)));
        assert_eq!(h.len(), 601);
    }

    #[test]
    fn set_intset_and_conversion() {
        let mut s = Set::default();
        assert!(s.insert(b"3"));
        assert!(s.insert(b"-1"));
        assert!(!s.insert(b"3"));
        assert!(matches!(s, Set::Ints(_)));
        assert!(s.insert(b"01"));
        assert!(matches!(s, Set::Map(_)));
        assert!(s.contains(b"3") && s.contains(b"01") && !s.contains(b"1"));
    }

    #[test]
    fn zset_order_and_rank() {
        let mut z = ZSet::default();
        z.insert(b"b", 1.0);
        z.insert(b"a", 1.0);
        z.insert(b"c", 0.5);
        let order: Vec<_> = z.iter().map(|(m, _)| m.to_vec()).collect();
        assert_eq!(order, vec![b"c".to_vec(), b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(z.rank(b"b"), Some(2));
        for i in 0..200 {
            z.insert(format!("m{i}").as_bytes(), i as f64);
        }
        assert!(matches!(z, ZSet::Tree(_)));
        assert_eq!(z.rank(b"c"), Some(1));
        assert!(!z.insert(b"c", 5.0));
        assert_eq!(z.score(b"c"), Some(5.0));
    }

    #[test]
    fn zset_scores_round_trip_compactly() {
        for s in [
            0.0,
            1.0,
            -1.0,
            127.0,
            128.0,
            -128.0,
            -129.0,
            255.0,
            65535.0,
            1e15,
            -1e15,
            9007199254740991.0,
            9007199254740992.0,
            -9007199254740993.0,
            0.5,
            -2.25,
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            i64::MAX as f64,
        ] {
            let (b, n) = score_bytes(s);
            assert_eq!(score_of(&b[..n]).to_bits(), s.to_bits(), "{s}");
        }
        assert_eq!(score_bytes(0.0).1, 0);
        assert_eq!(score_bytes(5.0).1, 1);
        assert_eq!(score_bytes(-128.0).1, 1);
        assert_eq!(score_bytes(128.0).1, 2);
        assert_eq!(score_bytes(0.5).1, 8);
        let z = ZSet::from_pairs([("a", 3.0), ("b", -1e9), ("c", 2.5), ("d", 0.0)]);
        let got: Vec<_> = z.iter().map(|(m, s)| (m.to_vec(), s)).collect();
        assert_eq!(
            got,
            vec![
                (b"b".to_vec(), -1e9),
                (b"d".to_vec(), 0.0),
                (b"c".to_vec(), 2.5),
                (b"a".to_vec(), 3.0)
            ]
        );
    }

    #[test]
    fn pair_pack_lengths_round_trip() {
        let lens = [0usize, 1, 14, 15, 16, 127, 128, 300];
        let strs: Vec<Vec<u8>> = lens.iter().map(|&n| vec![b'x'; n]).collect();
        let mut pairs = Vec::new();
        for a in &strs {
            for b in &strs {
                pairs.push((&a[..], &b[..]));
            }
        }
        let mut p = PairPack::default();
        p.splice(0, 0, &pairs);
        assert_eq!(p.iter().collect::<Vec<_>>(), pairs);
        assert_eq!(p.len(), pairs.len());
        // Short pairs pay one header byte; a long string adds its LEB128 length.
        let mut q = PairPack::default();
        q.splice(0, 0, &[(b"field:0", b"value:00000001")]);
        assert_eq!(q.bytes(), 1 + 7 + 14);
        q.splice(0, 0, &[(&[b'f'; 15][..], b"v")]);
        assert_eq!(q.bytes(), 22 + 2 + 15 + 1);
        // Replace the second pair, then remove the first.
        let (s2, e2) = q
            .spans()
            .nth(1)
            .map(|(s, e, _, _)| (s, e))
            .unwrap_or_default();
        q.splice(s2, e2, &[(b"a", &[b'v'; 200][..])]);
        let (s1, e1) = q
            .spans()
            .next()
            .map(|(s, e, _, _)| (s, e))
            .unwrap_or_default();
        q.splice(s1, e1, &[]);
        assert_eq!(
            q.iter().collect::<Vec<_>>(),
            vec![(&b"a"[..], &[b'v'; 200][..])]
        );
        assert_eq!(q.bytes(), 1 + 2 + 1 + 200);
    }

    #[test]
    fn list_push_pop() {
        let mut l = List::default();
        l.push(b"a", false);
        l.push(b"b", true);
        assert_eq!(
            l.iter().map(|e| e.to_vec()).collect::<Vec<_>>(),
            vec![b"b".to_vec(), b"a".to_vec()]
        );
        assert_eq!(l.pop(false).as_deref(), Some(&b"a"[..]));
        for i in 0..300 {
            l.push(format!("{i}").as_bytes(), false);
        }
        assert!(l.is_quick());
        assert_eq!(l.len(), 301);
    }
}
