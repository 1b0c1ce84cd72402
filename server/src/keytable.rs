//! The table of one slot's keys: a hash table of thin pointers, each to one allocation holding
//! a key's [`Entry`] (value and expiry) followed by the key's bytes.
//!
//! Per key this costs one 8-byte bucket (plus hashbrown's control byte) and one allocation of
//! `size_of::<Entry>()` + a 1-byte (or, for keys of 255 bytes and more, 5-byte) length + the key.
//! The previous layout, `HashMap<Box<[u8]>, Entry>`, paid a 48-byte bucket and a separate key
//! allocation; with hashbrown's power-of-two sizing a table sits between 44% and 87% full, so the
//! bucket dominated. A lookup still dereferences one pointer (to compare the key) and then finds
//! the entry next to it, as before with the boxed key.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;
use std::sync::OnceLock;

use hashbrown::hash_table::{Entry as TableEntry, HashTable};

use crate::db::Entry;

/// Where the key's length starts in a node (right after the entry).
const LEN_AT: usize = std::mem::size_of::<Entry>();
const ALIGN: usize = std::mem::align_of::<Entry>();
/// A first length byte of this value means: the length follows as 4 bytes, little-endian.
const LONG: u8 = u8::MAX;

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

/// One key: a thin owning pointer to `[Entry][len: 1 or 5 bytes][key bytes]`.
struct Node(NonNull<u8>);

// SAFETY: a Node owns its allocation exclusively, like a Box<(Entry, [u8])>; Entry is Send + Sync.
unsafe impl Send for Node {}
unsafe impl Sync for Node {}

impl Node {
    fn len_bytes(klen: usize) -> usize {
        if klen < LONG as usize {
            1
        } else {
            5
        }
    }

    fn layout(klen: usize) -> Layout {
        let size = LEN_AT + Self::len_bytes(klen) + klen;
        // Keys are at most 512 MB (the protocol's bulk limit), so this cannot overflow.
        Layout::from_size_align(size, ALIGN)
            .unwrap_or_else(|_| handle_alloc_error(Layout::new::<Entry>()))
    }

    fn new(key: &[u8], entry: Entry) -> Node {
        let klen = key.len();
        assert!(klen <= u32::MAX as usize, "key of {klen} bytes");
        let layout = Self::layout(klen);
        // SAFETY: the layout has a non-zero size (it holds an Entry); the writes below stay
        // inside it: the entry at 0 (aligned), the length at LEN_AT, the key after it.
        unsafe {
            let p = alloc(layout);
            let Some(p) = NonNull::new(p) else {
                handle_alloc_error(layout)
            };
            p.as_ptr().cast::<Entry>().write(entry);
            let mut at = p.as_ptr().add(LEN_AT);
            if klen < LONG as usize {
                at.write(klen as u8);
                at = at.add(1);
            } else {
                at.write(LONG);
                std::ptr::copy_nonoverlapping((klen as u32).to_le_bytes().as_ptr(), at.add(1), 4);
                at = at.add(5);
            }
            std::ptr::copy_nonoverlapping(key.as_ptr(), at, klen);
            Node(p)
        }
    }

    /// (offset of the key bytes, key length).
    #[inline]
    fn key_span(&self) -> (usize, usize) {
        // SAFETY: the length header was written by `new` and lives as long as the node.
        unsafe {
            let at = self.0.as_ptr().add(LEN_AT);
            let b = *at;
            if b != LONG {
                (LEN_AT + 1, b as usize)
            } else {
                let mut l = [0u8; 4];
                std::ptr::copy_nonoverlapping(at.add(1), l.as_mut_ptr(), 4);
                (LEN_AT + 5, u32::from_le_bytes(l) as usize)
            }
        }
    }

    #[inline]
    fn key(&self) -> &[u8] {
        let (at, len) = self.key_span();
        // SAFETY: `len` bytes at `at` were initialised by `new`.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().add(at), len) }
    }

    #[inline]
    fn entry(&self) -> &Entry {
        // SAFETY: an initialised, aligned Entry sits at offset 0 for the node's lifetime.
        unsafe { &*self.0.as_ptr().cast::<Entry>() }
    }

    #[inline]
    fn entry_mut(&mut self) -> &mut Entry {
        // SAFETY: as `entry`, and `&mut self` gives exclusive access.
        unsafe { &mut *self.0.as_ptr().cast::<Entry>() }
    }

    /// Both halves at once (for `iter_mut`-style callers).
    #[inline]
    fn parts_mut(&mut self) -> (&[u8], &mut Entry) {
        let (at, len) = self.key_span();
        // SAFETY: the key bytes and the entry do not overlap; both live as long as `self`.
        unsafe {
            (
                std::slice::from_raw_parts(self.0.as_ptr().add(at), len),
                &mut *self.0.as_ptr().cast::<Entry>(),
            )
        }
    }

    /// The key (copied out) and the entry (moved out); the node's memory is freed.
    fn into_parts(self) -> (Box<[u8]>, Entry) {
        let key: Box<[u8]> = self.key().into();
        let layout = Self::layout(key.len());
        let p = self.0;
        std::mem::forget(self);
        // SAFETY: the entry is read out exactly once (the node is forgotten, so Drop will not
        // drop it again) and the allocation is freed with the layout it was made with.
        unsafe {
            let e = p.as_ptr().cast::<Entry>().read();
            dealloc(p.as_ptr(), layout);
            (key, e)
        }
    }

    /// The entry (moved out); the node's memory is freed.
    fn into_entry(self) -> Entry {
        let layout = Self::layout(self.key_span().1);
        let p = self.0;
        std::mem::forget(self);
        // SAFETY: as in `into_parts`.
        unsafe {
            let e = p.as_ptr().cast::<Entry>().read();
            dealloc(p.as_ptr(), layout);
            e
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let layout = Self::layout(self.key_span().1);
        // SAFETY: the entry is initialised and dropped once; the allocation matches `layout`.
        unsafe {
            std::ptr::drop_in_place(self.0.as_ptr().cast::<Entry>());
            dealloc(self.0.as_ptr(), layout);
        }
    }
}

impl Clone for Node {
    fn clone(&self) -> Node {
        Node::new(self.key(), self.entry().clone())
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
    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.table
            .find(hash(key), |n| n.key() == key)
            .map(Node::entry)
    }

    /// A key's entry, mutable.
    #[inline]
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.table
            .find_mut(hash(key), |n| n.key() == key)
            .map(Node::entry_mut)
    }

    /// Whether the key is present.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Store `entry` under `key`; returns the entry it replaced.
    pub fn insert(&mut self, key: &[u8], entry: Entry) -> Option<Entry> {
        match self
            .table
            .entry(hash(key), |n| n.key() == key, |n| hash(n.key()))
        {
            TableEntry::Occupied(mut o) => Some(std::mem::replace(o.get_mut().entry_mut(), entry)),
            TableEntry::Vacant(v) => {
                v.insert(Node::new(key, entry));
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
                prefetch_line(n.0.as_ptr());
                if let Some(p) = n.entry().value.heap_ptr() {
                    prefetch_line(p);
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

    /// Keep only the keys for which `f` returns true.
    pub fn retain(&mut self, mut f: impl FnMut(&[u8], &mut Entry) -> bool) {
        self.table.retain(|n| {
            let (k, e) = n.parts_mut();
            f(k, e)
        });
    }

    /// Keys with their entries.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Entry)> + '_ {
        self.table.iter().map(|n| (n.key(), n.entry()))
    }

    /// Keys.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.table.iter().map(Node::key)
    }

    /// Entries.
    pub fn values(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.table.iter().map(Node::entry)
    }

    /// Bytes the table itself holds for `n` buckets (the nodes not included), for reports.
    pub fn bucket_bytes(&self) -> usize {
        self.table.capacity() * (std::mem::size_of::<Node>() + 1)
    }
}

impl<'a> IntoIterator for &'a KeyTable {
    type Item = (&'a [u8], &'a Entry);
    type IntoIter = Box<dyn Iterator<Item = (&'a [u8], &'a Entry)> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
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
    use crate::value::Value;
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
        assert_eq!(Node::layout(10).size(), LEN_AT + 1 + 10);
        assert_eq!(Node::layout(300).size(), LEN_AT + 5 + 300);
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
            t.get(&long).map(|e| e.value.clone()),
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
            let val = |e: &Entry| match &e.value {
                Value::Str(s) => (s.to_vec(), e.expire_at()),
                _ => (Vec::new(), u64::MAX),
            };
            for op in ops {
                match op {
                    Op::Insert(k, v, at) => {
                        let old = t.insert(&key(k), e(&[v; 3], at)).map(|e| val(&e));
                        prop_assert_eq!(old, m.insert(key(k), (vec![v; 3], at)));
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(t.remove(&key(k)).map(|e| val(&e)), m.remove(&key(k)));
                    }
                    Op::Get(k) => {
                        prop_assert_eq!(t.get(&key(k)).map(val), m.get(&key(k)).cloned());
                        prop_assert_eq!(t.contains_key(&key(k)), m.contains_key(&key(k)));
                    }
                    Op::Mutate(k, v) => {
                        if let Some(e) = t.get_mut(&key(k)) {
                            e.value = Value::Str(vec![v; 5].into());
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
                t.into_iter().map(|(k, e)| (k.to_vec(), val(&e))).collect();
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
