//! The keyspace of one shard: per database, one table per owned slot (like codis-server's
//! `hash_slots[1024]`), so slot-wide work touches only that slot.
//!
//! Expiry lives in each [`Entry`]; it is lazy on access (every read goes through [`Db::get`] or
//! [`Db::get_mut`], which drop an expired key) plus an active cycle ([`Db::active_expire`]) that sweeps
//! slots holding volatile keys a few at a time.

use bytes::Bytes;
use hashbrown::HashMap;

pub use crate::keytable::KeyTable;
use resp::MAX_SLOTS;

use crate::value::Value;

/// Keys are owned, compact copies (never slices of a request buffer, which would pin it in memory).
pub type Key = Box<[u8]>;

type Hasher = ahash::RandomState;

/// One key's value and its absolute expiry in unix milliseconds (0: none).
#[derive(Debug, Clone)]
pub struct Entry {
    pub value: Value,
    /// The expiry, plus a string's encoding [`Mark`] (see [`join`]).
    expire_at: u64,
}

/// A string's encoding mark, kept in `Entry::expire_at` so it costs no memory.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mark {
    /// Encoding follows from the bytes (`int`, `embstr`, `raw` by length), as after SET.
    None,
    /// Modified in place (APPEND, SETRANGE, SETBIT): Redis reports `raw` whatever the length.
    Raw,
    /// Built as text (INCRBYFLOAT's result): `embstr` up to 44 bytes, else `raw`, never `int`.
    Text,
}

/// Layout of a marked word: bit 63 set, bit 62 = Text (else Raw), bits 0..62 the expiry. Redis
/// expiries fit in 63 bits; a mark is kept only while the expiry is below 2^62 ms (year ~146
/// million) — past that the key just reports the encoding its bytes imply.
const MARKED: u64 = 1 << 63;
const TEXT: u64 = 1 << 62;
const MARK_EXPIRE: u64 = TEXT - 1;

fn split(word: u64) -> (u64, Mark) {
    if word & MARKED == 0 {
        (word, Mark::None)
    } else if word & TEXT != 0 {
        (word & MARK_EXPIRE, Mark::Text)
    } else {
        (word & MARK_EXPIRE, Mark::Raw)
    }
}

fn join(expire: u64, mark: Mark) -> u64 {
    match mark {
        _ if expire > MARK_EXPIRE => expire.min(i64::MAX as u64),
        Mark::None => expire,
        Mark::Raw => MARKED | expire,
        Mark::Text => MARKED | TEXT | expire,
    }
}

impl Entry {
    /// A value without expiry.
    pub fn new(value: Value) -> Entry {
        Entry {
            value,
            expire_at: 0,
        }
    }

    /// Absolute expiry in unix ms, 0 when the key is persistent.
    pub fn expire_at(&self) -> u64 {
        split(self.expire_at).0
    }

    /// The encoding `OBJECT ENCODING` reports, as Redis 7.0 would.
    pub fn encoding(&self) -> &'static str {
        match &self.value {
            Value::Str(_) if split(self.expire_at).1 == Mark::Raw => "raw",
            Value::Str(s) if split(self.expire_at).1 == Mark::Text => {
                if s.len() <= 44 {
                    "embstr"
                } else {
                    "raw"
                }
            }
            v => v.encoding(),
        }
    }

    /// Set the expiry word directly (tests of the key table).
    #[cfg(test)]
    pub(crate) fn set_expire_raw(&mut self, at: u64) {
        self.expire_at = join(at, Mark::None);
    }

    fn expired(&self, now: u64) -> bool {
        let at = self.expire_at();
        at != 0 && at <= now
    }
}

/// The keys of one slot of one database.
#[derive(Debug, Default, Clone)]
pub struct SlotTable {
    /// Keys and entries: thin pointers to one allocation per key (see [`KeyTable`]).
    pub map: KeyTable,
    /// How many entries carry an expiry (the active cycle skips slots with none).
    volatile: usize,
}

impl SlotTable {
    /// Number of keys (expired ones not yet collected included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the slot holds no key.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Number of keys with an expiry.
    pub fn volatile(&self) -> usize {
        self.volatile
    }
}

/// One database (0..16) of one shard.
#[derive(Debug)]
pub struct Db {
    /// `slots[s]` is `Some` when this shard owns slot `s`.
    slots: Vec<Option<Box<SlotTable>>>,
    /// Keys in all owned slots.
    keys: usize,
    /// Where the active expiry cycle resumes.
    expire_cursor: usize,
    /// A scratch database owns every slot and creates tables on demand (multi-core commands).
    scratch: bool,
    /// Watched keys (WATCH): key → (modifications seen, watchers). Every mutation of a key in here
    /// bumps its count, so EXEC can tell whether a watched key changed.
    watch: HashMap<Key, (u64, u32), Hasher>,
    /// Set while a read-only command runs: its `get_mut` calls (used by readers for lazy
    /// conversions) count neither as modifications for WATCH nor as changes (`dirty`).
    pub quiet: bool,
    /// A point-in-time snapshot in progress (`persist.rs`): slots still to serialise, saved
    /// before their first modification (copy-on-write at slot granularity).
    pub snap: Option<Box<crate::persist::DbSnap>>,
    /// Modifications so far (the `save` rules' change counter).
    pub dirty: u64,
    /// Keys removed by expiry not yet propagated as DEL / notified as `expired` (recorded only
    /// while `repl::prop` or `notify` is active; never in a scratch database).
    expired: Vec<Key>,
}

impl Db {
    /// A database owning the slots for which `owned(slot)` is true.
    pub fn new(owned: impl Fn(usize) -> bool) -> Db {
        Db {
            slots: (0..MAX_SLOTS)
                .map(|s| owned(s).then(Default::default))
                .collect(),
            keys: 0,
            expire_cursor: 0,
            scratch: false,
            watch: HashMap::default(),
            quiet: false,
            snap: None,
            dirty: 0,
            expired: Vec::new(),
        }
    }

    /// A scratch database: owns every slot, allocates tables only for slots it is given keys of.
    pub fn scratch() -> Db {
        Db {
            slots: (0..MAX_SLOTS).map(|_| None).collect(),
            keys: 0,
            expire_cursor: 0,
            scratch: true,
            watch: HashMap::default(),
            quiet: false,
            snap: None,
            dirty: 0,
            expired: Vec::new(),
        }
    }

    /// Total keys in this shard's part of the database.
    pub fn len(&self) -> usize {
        self.keys
    }

    /// Whether this shard's part of the database is empty.
    pub fn is_empty(&self) -> bool {
        self.keys == 0
    }

    /// Keys with an expiry.
    pub fn volatile(&self) -> usize {
        self.slots.iter().flatten().map(|t| t.volatile).sum()
    }

    /// Whether this is a scratch database (multi-core commands, scripts spanning cores).
    pub fn is_scratch(&self) -> bool {
        self.scratch
    }

    /// Whether this shard owns `slot`.
    pub fn owns(&self, slot: usize) -> bool {
        self.scratch || self.slots.get(slot).is_some_and(|s| s.is_some())
    }

    /// The table of an owned slot.
    pub fn slot(&self, slot: usize) -> Option<&SlotTable> {
        self.slots.get(slot)?.as_deref()
    }

    /// Owned slots, in order, with their tables.
    pub fn owned_slots(&self) -> impl Iterator<Item = (usize, &SlotTable)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((i, t.as_deref()?)))
    }

    /// Before slot `s` changes: save it first if a snapshot still needs it.
    #[inline]
    fn cow(&mut self, s: usize) {
        if let Some(sn) = self.snap.as_deref_mut() {
            if sn.is_pending(s) {
                sn.save_slot(s, self.slots[s].as_deref());
            }
        }
    }

    fn table_mut(&mut self, key: &[u8]) -> Option<&mut SlotTable> {
        let s = resp::slot(key) as usize;
        self.cow(s);
        let t = &mut self.slots[s];
        if t.is_none() && self.scratch {
            *t = Some(Box::default());
        }
        t.as_deref_mut()
    }

    /// Read a live key (an expired one is removed on the way).
    pub fn get(&mut self, key: &[u8], now: u64) -> Option<&Entry> {
        self.live(key, now).map(|e| &*e)
    }

    /// Mutable access to a live key's entry (counts as a modification for WATCH). Changing
    /// `value` is fine; expiry changes go through [`Db::set_expire`].
    pub fn get_mut(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        self.touch(key);
        if self.snap.is_some() {
            self.cow(resp::slot(key) as usize);
        }
        self.live(key, now)
    }

    /// A live entry, read without triggering a snapshot's copy-on-write (only removing an
    /// expired key counts as a change).
    fn live(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        let s = resp::slot(key) as usize;
        if self.slots[s].as_deref()?.map.get(key)?.expired(now) {
            if !self.scratch && (crate::repl::prop::active() || crate::notify::enabled()) {
                self.expired.push(key.into());
            }
            // An expiry is a modification even when a reader finds it.
            let quiet = std::mem::replace(&mut self.quiet, false);
            self.remove(key);
            self.quiet = quiet;
            return None;
        }
        self.slots[s].as_deref_mut()?.map.get_mut(key)
    }

    /// Whether a live key exists.
    pub fn contains(&mut self, key: &[u8], now: u64) -> bool {
        self.get(key, now).is_some()
    }

    /// Store a value with an expiry (0: none), replacing any previous entry. Returns false when this
    /// shard does not own the key's slot (the caller routed it wrongly).
    pub fn insert(&mut self, key: &[u8], value: Value, expire_at: u64) -> bool {
        self.touch(key);
        let Some(t) = self.table_mut(key) else {
            return false;
        };
        let expire_at = join(expire_at, Mark::None);
        let new = Entry { value, expire_at };
        let vol = (expire_at != 0) as usize;
        match t.map.insert(key, new) {
            Some(old) => {
                t.volatile = t.volatile - (old.expire_at() != 0) as usize + vol;
            }
            None => {
                t.volatile += vol;
                self.keys += 1;
            }
        }
        true
    }

    /// Store a value keeping the key's current expiry (SET KEEPTTL, APPEND-style updates).
    pub fn insert_keep_ttl(&mut self, key: &[u8], value: Value, now: u64) {
        let ttl = self.get(key, now).map_or(0, |e| e.expire_at());
        self.insert(key, value, ttl);
    }

    /// Store a whole entry (value, expiry and encoding marks) under `key`, as RENAME, COPY, MOVE
    /// and multi-core write-backs do. Same result as [`Db::insert`].
    pub fn insert_entry(&mut self, key: &[u8], e: Entry) -> bool {
        let (at, mark) = split(e.expire_at);
        let r = self.insert(key, e.value, at);
        if mark != Mark::None {
            self.mark(key, mark);
        }
        r
    }

    /// Mark a string as modified in place (OBJECT ENCODING `raw`, as after Redis's
    /// `dbUnshareStringValue`); the mark goes when the key is next overwritten.
    pub fn mark_raw(&mut self, key: &[u8]) {
        self.mark(key, Mark::Raw);
    }

    /// Mark a string as built from text, never `int`-encoded (INCRBYFLOAT's result).
    pub fn mark_text(&mut self, key: &[u8]) {
        self.mark(key, Mark::Text);
    }

    fn mark(&mut self, key: &[u8], mark: Mark) {
        if let Some(e) = self.table_mut(key).and_then(|t| t.map.get_mut(key)) {
            e.expire_at = join(e.expire_at(), mark);
        }
    }

    /// Remove a key, returning its entry (expired or not).
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        self.touch(key);
        let t = self.table_mut(key)?;
        let e = t.map.remove(key)?;
        t.volatile -= (e.expire_at() != 0) as usize;
        self.keys -= 1;
        Some(e)
    }

    /// Change a live key's expiry (0: persist). Returns false when the key is missing.
    pub fn set_expire(&mut self, key: &[u8], expire_at: u64, now: u64) -> bool {
        if self.get(key, now).is_none() {
            return false;
        }
        self.touch(key);
        let Some(t) = self.table_mut(key) else {
            return false;
        };
        let Some(e) = t.map.get_mut(key) else {
            return false;
        };
        let expire_at = join(expire_at, Mark::None);
        t.volatile = t.volatile - (e.expire_at() != 0) as usize + (expire_at != 0) as usize;
        e.expire_at = join(expire_at, split(e.expire_at).1);
        true
    }

    /// Drop every key of every owned slot. Returns how many were dropped.
    pub fn clear(&mut self) -> usize {
        let n = self.keys;
        self.touch_where(|_| true);
        self.dirty += n as u64;
        for (i, t) in self.slots.iter_mut().enumerate() {
            let Some(t) = t else { continue };
            let old = std::mem::take(&mut **t);
            if let Some(sn) = self.snap.as_deref_mut() {
                sn.freeze(i, old);
            }
        }
        self.keys = 0;
        n
    }

    /// Drop every key of one owned slot. Returns how many were dropped.
    pub fn clear_slot(&mut self, slot: usize) -> usize {
        self.touch_where(|k| resp::slot(k) as usize == slot);
        match self.slots.get_mut(slot).and_then(|t| t.as_deref_mut()) {
            Some(t) => {
                let n = t.map.len();
                self.dirty += n as u64;
                let old = std::mem::take(t);
                if let Some(sn) = self.snap.as_deref_mut() {
                    sn.freeze(slot, old);
                }
                self.keys -= n;
                n
            }
            None => 0,
        }
    }

    /// Hand an owned slot's table over (core-to-core move); the slot is no longer owned here.
    pub fn take_slot(&mut self, slot: usize) -> Option<Box<SlotTable>> {
        self.touch_where(|k| resp::slot(k) as usize == slot);
        if let Some(sn) = self.snap.as_deref_mut() {
            if sn.is_pending(slot) {
                sn.save_slot(slot, self.slots.get(slot).and_then(|t| t.as_deref()));
            }
        }
        let t = self.slots.get_mut(slot)?.take()?;
        self.keys -= t.map.len();
        Some(t)
    }

    /// Take ownership of a slot with its table.
    pub fn put_slot(&mut self, slot: usize, table: Box<SlotTable>) {
        self.keys += table.map.len();
        self.slots[slot] = Some(table);
    }

    /// Modifications so far (compare before/after a command to tell whether it changed anything).
    pub fn dirty(&self) -> u64 {
        self.dirty
    }

    /// Keys removed by expiry since the last call (to propagate as DEL).
    pub fn take_expired(&mut self) -> Vec<Key> {
        std::mem::take(&mut self.expired)
    }

    /// Whether expired keys wait to be propagated.
    pub fn has_expired(&self) -> bool {
        !self.expired.is_empty()
    }

    /// Record a modification of `key` for its watchers.
    fn touch(&mut self, key: &[u8]) {
        if self.quiet {
            return;
        }
        self.dirty += 1;
        if !self.watch.is_empty() {
            if let Some(w) = self.watch.get_mut(key) {
                w.0 += 1;
            }
        }
    }

    fn touch_where(&mut self, f: impl Fn(&[u8]) -> bool) {
        self.dirty += 1;
        for (k, w) in self.watch.iter_mut() {
            if f(k) {
                w.0 += 1;
            }
        }
    }

    /// Every watched key counts as modified (SWAPDB, FLUSHDB).
    pub fn touch_all(&mut self) {
        self.touch_where(|_| true);
    }

    /// Start watching `key` (one more watcher); returns its modification count. An expired key is
    /// dropped first, so its expiry does not count as a later change.
    pub fn watch(&mut self, key: &[u8], now: u64) -> u64 {
        self.live(key, now);
        let w = self.watch.entry(key.into()).or_insert((0, 0));
        w.1 += 1;
        w.0
    }

    /// One watcher fewer for `key`.
    pub fn unwatch(&mut self, key: &[u8]) {
        if let Some(w) = self.watch.get_mut(key) {
            w.1 = w.1.saturating_sub(1);
            if w.1 == 0 {
                self.watch.remove(key);
            }
        }
    }

    /// A watched key's modification count now (a key expiring since counts as a modification).
    pub fn watch_version(&mut self, key: &[u8], now: u64) -> Option<u64> {
        self.live(key, now);
        self.watch.get(key).map(|w| w.0)
    }

    /// The snapshot in progress with the slot tables it reads (`persist.rs`).
    pub fn snap_and_slots(
        &mut self,
    ) -> (
        Option<&mut crate::persist::DbSnap>,
        &[Option<Box<SlotTable>>],
    ) {
        (self.snap.as_deref_mut(), &self.slots)
    }

    /// Live keys of one owned slot, cloned (SCAN, KEYS, SLOTSSCAN).
    pub fn slot_keys(&self, slot: usize, now: u64) -> Vec<Bytes> {
        match self.slot(slot) {
            Some(t) => t
                .map
                .iter()
                .filter(|(_, e)| !e.expired(now))
                .map(|(k, _)| Bytes::copy_from_slice(k))
                .collect(),
            None => Vec::new(),
        }
    }

    /// One step of the active expiry cycle: sweep owned slots holding volatile keys, starting where
    /// the last step stopped, until `budget` entries were examined. Returns keys removed.
    pub fn active_expire(&mut self, now: u64, budget: usize) -> usize {
        let mut examined = 0;
        let mut removed = 0;
        for _ in 0..MAX_SLOTS {
            if examined >= budget {
                break;
            }
            let s = self.expire_cursor;
            self.expire_cursor = (self.expire_cursor + 1) % MAX_SLOTS;
            let Some(t) = self.slots[s].as_deref_mut() else {
                continue;
            };
            if t.volatile == 0 {
                continue;
            }
            if let Some(sn) = self.snap.as_deref_mut() {
                if sn.is_pending(s) {
                    sn.save_slot(s, Some(t));
                }
            }
            examined += t.map.len();
            if !self.scratch && (crate::repl::prop::active() || crate::notify::enabled()) {
                for (k, e) in &t.map {
                    if e.expired(now) {
                        self.expired.push(k.into());
                    }
                }
            }
            if !self.watch.is_empty() {
                for (k, e) in &t.map {
                    if e.expired(now) {
                        if let Some(w) = self.watch.get_mut(k) {
                            w.0 += 1;
                        }
                    }
                }
            }
            let before = t.map.len();
            t.map.retain(|_, e| !e.expired(now));
            let gone = before - t.map.len();
            t.volatile -= gone;
            removed += gone;
        }
        self.keys -= removed;
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::Str(v.as_bytes().into())
    }

    #[test]
    fn insert_get_remove_and_counts() {
        let mut db = Db::new(|_| true);
        assert!(db.insert(b"a", s("1"), 0));
        assert!(db.insert(b"b", s("2"), 1000));
        assert!(db.insert(b"b", s("3"), 0));
        assert_eq!(db.len(), 2);
        assert_eq!(db.volatile(), 0);
        assert!(db.remove(b"a").is_some());
        assert_eq!(db.len(), 1);
    }

    #[test]
    fn lazy_and_active_expiry() {
        let mut db = Db::new(|_| true);
        db.insert(b"x", s("1"), 100);
        db.insert(b"y", s("1"), 100);
        db.insert(b"z", s("1"), 0);
        assert!(db.get(b"x", 50).is_some());
        assert!(db.get(b"x", 100).is_none(), "expired on access");
        assert_eq!(db.len(), 2);
        assert_eq!(db.active_expire(200, 10_000), 1);
        assert_eq!(db.len(), 1);
        assert_eq!(db.volatile(), 0);
    }

    #[test]
    fn unowned_slots_refuse_keys() {
        let mut db = Db::new(|s| s == resp::slot(b"foo") as usize);
        assert!(db.insert(b"foo", s("1"), 0));
        assert!(!db.insert(b"alpha", s("1"), 0));
        let t = db.take_slot(resp::slot(b"foo") as usize).unwrap();
        assert_eq!(db.len(), 0);
        let mut other = Db::new(|_| false);
        other.put_slot(resp::slot(b"foo") as usize, t);
        assert!(other.get(b"foo", 0).is_some());
    }
}
