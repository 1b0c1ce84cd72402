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

use crate::value::{Value, ValueMut, ValueRef};

/// Keys are owned, compact copies (never slices of a request buffer, which would pin it in memory).
pub type Key = Box<[u8]>;

type Hasher = ahash::RandomState;

/// One key's value, its absolute expiry in unix milliseconds (0: none) and its access clock.
///
/// This is the owned form (what [`Db::remove`] hands back and [`Db::insert_entry`] takes); a
/// key table stores a string's bytes in its own node and lends entries out as [`EntryRef`] and
/// [`EntryMut`] (see `keytable.rs`). `repr(C)`: the word comes first, as in a string node.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct Entry {
    /// Expiry, a string's encoding [`Mark`] and the access clock packed in one word (see
    /// [`Word`]), so access tracking costs no memory.
    pub(crate) expire_at: u64,
    pub value: Value,
}

/// A stored key's entry, borrowed: the value's view and a copy of the entry word.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    pub value: ValueRef<'a>,
    pub(crate) word: u64,
}

/// A stored key's entry, mutably borrowed: containers change in place, strings are replaced
/// through [`Db::insert`]; the word changes through `Db` (expiry, marks, clock).
#[derive(Debug)]
pub struct EntryMut<'a> {
    pub value: ValueMut<'a>,
    pub(crate) word: &'a mut u64,
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
    /// A COPY of a small integer: encoded as its bytes imply, but its own object, not one of
    /// Redis's shared integers (OBJECT REFCOUNT 1).
    Copy,
}

/// Layout of the entry word. Three forms, told apart by bits 62..64:
///
/// * narrow (bits 62, 63 clear): bits 60..62 the [`Mark`] (0 none, 1 raw, 2 text, 3 copy), bits 36..60
///   the 24-bit access clock (Redis's `robj.lru`: LRU seconds or LFU minutes+counter), bits
///   0..36 the expiry as milliseconds after [`clock::base_ms`] (0: no expiry). The base is the
///   server's start, so the window covers expiries up to ~2.2 years after it; an expiry at or
///   before the base is stored as base + 1 ms (already past, so the key is just as expired and
///   is never reported).
/// * wide (bit 62 set, bit 63 clear): bits 60..62 the mark, bits 0..60 the exact expiry (below
///   2^60 ms, 36 million years).
/// * huge (bit 63 set): bits 0..63 the exact expiry (Redis allows up to `i64::MAX` ms), no mark
///   (the key reports the encoding its bytes imply).
///
/// Wide and huge keys keep no access clock: they read as accessed "now" (idle 0, LFU counter as
/// new) — a documented approximation for keys expiring years ahead.
const WIDE: u64 = 1 << 62;
const HUGE: u64 = 1 << 63;
const WIDE_EXP: u64 = (1 << MARK_SHIFT) - 1;
const MARK_SHIFT: u32 = 60;
const CLOCK_SHIFT: u32 = 36;
const CLOCK_MASK: u64 = (1 << 24) - 1;
const EXP_MASK: u64 = (1 << CLOCK_SHIFT) - 1;

struct Word {
    expire: u64,
    mark: Mark,
    /// `None` for the wide form (no clock kept).
    clock: Option<u32>,
}

fn mark_of(code: u64) -> Mark {
    match code & 3 {
        1 => Mark::Raw,
        2 => Mark::Text,
        3 => Mark::Copy,
        _ => Mark::None,
    }
}

fn mark_code(mark: Mark) -> u64 {
    match mark {
        Mark::None => 0,
        Mark::Raw => 1,
        Mark::Text => 2,
        Mark::Copy => 3,
    }
}

fn split(word: u64) -> Word {
    if word & HUGE != 0 {
        return Word {
            expire: word & !HUGE,
            mark: Mark::None,
            clock: None,
        };
    }
    let mark = mark_of(word >> MARK_SHIFT);
    if word & WIDE != 0 {
        return Word {
            expire: word & WIDE_EXP,
            mark,
            clock: None,
        };
    }
    let f = word & EXP_MASK;
    Word {
        expire: if f == 0 { 0 } else { clock::base_ms() + f },
        mark,
        clock: Some(((word >> CLOCK_SHIFT) & CLOCK_MASK) as u32),
    }
}

fn join(expire: u64, mark: Mark, clock: u32) -> u64 {
    let f = if expire == 0 {
        0
    } else {
        let base = clock::base_ms();
        if expire <= base {
            1
        } else if expire - base > EXP_MASK {
            if expire <= WIDE_EXP {
                return WIDE | (mark_code(mark) << MARK_SHIFT) | expire;
            }
            return HUGE | expire.min(i64::MAX as u64);
        } else {
            expire - base
        }
    };
    (mark_code(mark) << MARK_SHIFT) | ((clock as u64 & CLOCK_MASK) << CLOCK_SHIFT) | f
}

/// The per-key access clock (Redis's `LRU_CLOCK()` / LFU fields), fed by a coarse process-wide
/// time that the shards' timers refresh (like Redis's `server.lruclock`): an access costs one
/// relaxed load and one store into the entry word, no syscall.
pub mod clock {
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

    /// Unix seconds, refreshed by [`tick`].
    static NOW_S: AtomicU32 = AtomicU32::new(0);
    /// Whether the maxmemory policy is an LFU one (`robj.lru` holds minutes << 8 | counter).
    static LFU: AtomicBool = AtomicBool::new(false);
    static LOG_FACTOR: AtomicU32 = AtomicU32::new(10);
    static DECAY_TIME: AtomicU32 = AtomicU32::new(1);
    /// See [`super::Entry`]'s word layout; 0 until [`init`] (unit tests use small times).
    static BASE_MS: AtomicU64 = AtomicU64::new(0);

    /// Redis's `LRU_CLOCK_MAX`.
    pub const LRU_MAX: u32 = (1 << 24) - 1;
    /// Redis's `LFU_INIT_VAL`.
    pub const LFU_INIT: u32 = 5;

    /// Once at start-up, before any key exists: fix the expiry window's base (now) and start the
    /// clock.
    pub fn init(now_ms: u64) {
        BASE_MS.store(now_ms, Relaxed);
        tick(now_ms);
    }

    /// Refresh the coarse clock (every shard's 100 ms timer).
    pub fn tick(now_ms: u64) {
        NOW_S.store((now_ms / 1000) as u32, Relaxed);
    }

    #[inline]
    pub(crate) fn base_ms() -> u64 {
        BASE_MS.load(Relaxed)
    }

    /// Select LFU (true) or LRU (false) tracking (`maxmemory-policy`).
    pub fn set_lfu(on: bool) {
        LFU.store(on, Relaxed);
    }

    /// Whether an LFU policy is selected.
    #[inline]
    pub fn lfu() -> bool {
        LFU.load(Relaxed)
    }

    /// `lfu-log-factor` and `lfu-decay-time`.
    pub fn set_lfu_params(log_factor: Option<u32>, decay_time: Option<u32>) {
        if let Some(f) = log_factor {
            LOG_FACTOR.store(f, Relaxed);
        }
        if let Some(d) = decay_time {
            DECAY_TIME.store(d, Relaxed);
        }
    }

    /// Redis's `LRU_CLOCK()` (seconds resolution, 24 bits).
    #[inline]
    pub fn lru_now() -> u32 {
        NOW_S.load(Relaxed) & LRU_MAX
    }

    /// Redis's `LFUGetTimeInMinutes()`.
    #[inline]
    fn minutes() -> u32 {
        (NOW_S.load(Relaxed) / 60) & 0xFFFF
    }

    /// The clock of a key created now (Redis's `createObject`).
    #[inline]
    pub fn fresh() -> u32 {
        if lfu() {
            (minutes() << 8) | LFU_INIT
        } else {
            lru_now()
        }
    }

    /// The clock after an access (Redis's `lookupKey`: `updateLFU` or `LRU_CLOCK()`).
    #[inline]
    pub fn accessed(old: u32) -> u32 {
        if lfu() {
            let c = log_incr(decayed(old));
            (minutes() << 8) | c
        } else {
            lru_now()
        }
    }

    /// Seconds since the last access (Redis's `estimateObjectIdleTime` / 1000).
    pub fn idle_secs(lru: u32) -> u64 {
        let now = lru_now();
        if now >= lru {
            (now - lru) as u64
        } else {
            (now + (LRU_MAX - lru)) as u64
        }
    }

    /// The LFU counter after decay (Redis's `LFUDecrAndReturn`).
    pub fn decayed(lru: u32) -> u32 {
        let ldt = lru >> 8;
        let counter = lru & 255;
        let now = minutes();
        let elapsed = if now >= ldt {
            now - ldt
        } else {
            65535 - ldt + now
        };
        let decay = DECAY_TIME.load(Relaxed);
        let periods = if decay == 0 { 0 } else { elapsed / decay };
        counter.saturating_sub(periods)
    }

    /// Redis's `LFULogIncr`: logarithmic, probabilistic increment.
    fn log_incr(counter: u32) -> u32 {
        if counter >= 255 {
            return 255;
        }
        let r = (rand() >> 11) as f64 / (1u64 << 53) as f64;
        let base = counter.saturating_sub(LFU_INIT) as f64;
        let p = 1.0 / (base * LOG_FACTOR.load(Relaxed) as f64 + 1.0);
        if r < p {
            counter + 1
        } else {
            counter
        }
    }

    /// A cheap per-thread xorshift generator (LFU increments, eviction sampling).
    pub fn rand() -> u64 {
        use std::cell::Cell;
        thread_local!(static S: Cell<u64> = const { Cell::new(0) });
        S.with(|s| {
            let mut x = s.get();
            if x == 0 {
                x = ahash::RandomState::new().hash_one(0u8) | 1;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.set(x);
            x
        })
    }

    /// The clock RESTORE / RDB loading give a key (Redis's `objectSetLRUOrLFU` with the
    /// seconds resolution): `freq` under an LFU policy, `idle` seconds under LRU; `None` when
    /// the hint does not apply to the current policy.
    pub fn from_hints(freq: Option<u8>, idle_secs: Option<u64>) -> Option<u32> {
        if lfu() {
            freq.map(|f| (minutes() << 8) | f as u32)
        } else {
            let idle = idle_secs?;
            let now = lru_now() as i64;
            let abs = now - idle.min(i64::MAX as u64 / 2) as i64;
            Some(if abs >= 0 {
                abs as u32
            } else {
                (1 + LRU_MAX as i64 + abs).max(0) as u32 & LRU_MAX
            })
        }
    }
}

/// Absolute expiry in unix ms (0: none) of an entry word.
fn word_expire(w: u64) -> u64 {
    split(w).expire
}

/// The access clock of an entry word; a wide-form key reads as accessed now.
fn word_clock(w: u64) -> u32 {
    split(w).clock.unwrap_or_else(clock::fresh)
}

fn word_expired(w: u64, now: u64) -> bool {
    let at = word_expire(w);
    at != 0 && at <= now
}

/// The word after an access (Redis's `lookupKey` without `LOOKUP_NOTOUCH`).
#[inline]
fn word_accessed(w: u64) -> u64 {
    if w & (WIDE | HUGE) == 0 {
        let old = ((w >> CLOCK_SHIFT) & CLOCK_MASK) as u32;
        let c = clock::accessed(old) as u64;
        (w & !(CLOCK_MASK << CLOCK_SHIFT)) | (c << CLOCK_SHIFT)
    } else {
        w
    }
}

/// The encoding `OBJECT ENCODING` reports for a value with an entry word.
fn word_encoding(w: u64, v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Str(_) if split(w).mark == Mark::Raw => "raw",
        ValueRef::Str(s) if split(w).mark == Mark::Text => {
            if s.len() <= 44 {
                "embstr"
            } else {
                "raw"
            }
        }
        v => v.encoding(),
    }
}

impl Entry {
    /// A value without expiry, accessed now.
    pub fn new(value: Value) -> Entry {
        Entry {
            value,
            expire_at: join(0, Mark::None, clock::fresh()),
        }
    }

    /// An entry from its value and packed word (a key table's string node taken apart).
    pub(crate) fn from_word(value: Value, word: u64) -> Entry {
        Entry {
            value,
            expire_at: word,
        }
    }

    /// The borrowed view.
    pub fn view(&self) -> EntryRef<'_> {
        EntryRef {
            value: self.value.view(),
            word: self.expire_at,
        }
    }

    /// Absolute expiry in unix ms, 0 when the key is persistent.
    pub fn expire_at(&self) -> u64 {
        word_expire(self.expire_at)
    }

    /// The access clock (Redis's `robj.lru`); a wide-form key (expiry years ahead) reads as
    /// accessed now.
    pub fn clock(&self) -> u32 {
        word_clock(self.expire_at)
    }

    /// Set the access clock (RESTORE IDLETIME/FREQ, RDB hints).
    pub fn set_clock(&mut self, c: u32) {
        let w = split(self.expire_at);
        self.expire_at = join(w.expire, w.mark, c);
    }

    /// The encoding `OBJECT ENCODING` reports, as Redis 7.0 would.
    pub fn encoding(&self) -> &'static str {
        word_encoding(self.expire_at, self.value.view())
    }

    /// Set the expiry directly (tests of the key table).
    #[cfg(test)]
    pub(crate) fn set_expire_raw(&mut self, at: u64) {
        self.expire_at = join(at, Mark::None, 0);
    }
}

impl<'a> EntryRef<'a> {
    /// Absolute expiry in unix ms, 0 when the key is persistent.
    pub fn expire_at(&self) -> u64 {
        word_expire(self.word)
    }

    /// The access clock (see [`Entry::clock`]).
    pub fn clock(&self) -> u32 {
        word_clock(self.word)
    }

    /// The encoding `OBJECT ENCODING` reports, as Redis 7.0 would.
    pub fn encoding(&self) -> &'static str {
        word_encoding(self.word, self.value)
    }

    /// Whether Redis would hold this value as one of its shared integers (0..9999, `int`
    /// encoded, not made by COPY); an LRU/LFU maxmemory policy is the caller's to check.
    pub fn shared_int(&self) -> bool {
        split(self.word).mark == Mark::None
            && matches!(self.value, ValueRef::Str(s)
                if resp::parse_i64(s).is_some_and(|n| (0..10_000).contains(&n)))
            && self.encoding() == "int"
    }

    /// An owned copy (value cloned, word as stored).
    pub fn to_entry(&self) -> Entry {
        Entry {
            value: self.value.to_value(),
            expire_at: self.word,
        }
    }

    pub(crate) fn expired(&self, now: u64) -> bool {
        word_expired(self.word, now)
    }
}

impl<'a> EntryMut<'a> {
    /// Absolute expiry in unix ms, 0 when the key is persistent.
    pub fn expire_at(&self) -> u64 {
        word_expire(*self.word)
    }

    /// The access clock (see [`Entry::clock`]).
    pub fn clock(&self) -> u32 {
        word_clock(*self.word)
    }

    /// The encoding `OBJECT ENCODING` reports, as Redis 7.0 would.
    pub fn encoding(&self) -> &'static str {
        word_encoding(*self.word, self.value.view())
    }

    fn set_clock(&mut self, c: u32) {
        let w = split(*self.word);
        *self.word = join(w.expire, w.mark, c);
    }

    #[inline]
    fn access(&mut self) {
        *self.word = word_accessed(*self.word);
    }
}

fn into_ref(e: EntryMut<'_>) -> EntryRef<'_> {
    let value = match e.value {
        ValueMut::Str(s) => ValueRef::Str(s),
        ValueMut::Hash(h) => ValueRef::Hash(h),
        ValueMut::List(l) => ValueRef::List(l),
        ValueMut::Set(s) => ValueRef::Set(s),
        ValueMut::ZSet(z) => ValueRef::ZSet(z),
    };
    EntryRef {
        value,
        word: *e.word,
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
    /// The watched keys (every key, in a scratch database) the current command touched, so a
    /// command that turns out to change nothing can take its touches back ([`Db::untouch`]).
    journal: Vec<Key>,
    /// The command ([`begin_command`]) whose touches `journal` holds.
    journal_cmd: u64,
}

thread_local! {
    /// See [`SlotHint`]: (key address, key length, slot); length `usize::MAX` when none.
    static SLOT_HINT: std::cell::Cell<(usize, usize, u16)> =
        const { std::cell::Cell::new((0, usize::MAX, 0)) };
}

/// While alive, [`key_slot`] answers the slot of the command's key (the very bytes it borrows,
/// recognised by address and length) without hashing it again: a GET otherwise hashed its key
/// once to route it, once to check the shard owns it and once more to find its table. The
/// shared borrow keeps those bytes unchanged for the hint's whole life, so no other key can
/// match it. Hints nest (dropping one restores the one before).
pub struct SlotHint<'a> {
    prev: (usize, usize, u16),
    _key: std::marker::PhantomData<&'a [u8]>,
}

impl<'a> SlotHint<'a> {
    /// `slot` must be `resp::slot(key)`.
    #[inline]
    pub fn new(key: &'a [u8], slot: u16) -> Self {
        debug_assert_eq!(slot, resp::slot(key));
        let prev = SLOT_HINT.replace((key.as_ptr() as usize, key.len(), slot));
        SlotHint {
            prev,
            _key: std::marker::PhantomData,
        }
    }
}

impl Drop for SlotHint<'_> {
    #[inline]
    fn drop(&mut self) {
        SLOT_HINT.set(self.prev);
    }
}

/// The slot of `key`, from the live [`SlotHint`] when it is that key.
#[inline]
pub fn key_slot(key: &[u8]) -> usize {
    let (addr, len, slot) = SLOT_HINT.get();
    if addr == key.as_ptr() as usize && len == key.len() {
        slot as usize
    } else {
        resp::slot(key) as usize
    }
}

thread_local! {
    /// Commands started on this thread ([`begin_command`]).
    static COMMAND: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A command starts: the touches it records can be taken back by [`Db::untouch`] and
/// [`Db::revert_touches`], those of earlier commands no longer.
#[inline]
pub fn begin_command() {
    COMMAND.with(|c| c.set(c.get().wrapping_add(1)));
}

fn current_command() -> u64 {
    COMMAND.with(|c| c.get())
}

/// After a command ran on `dbs`: one that answered an error changed nothing, so its touches are
/// taken back. Not for a script (its error does not undo the writes before it) nor for the
/// Codis slot commands (migration's writes are not rolled back by a later failure).
pub fn end_command(dbs: &mut [Db], spec: &resp::command::CommandSpec, reply: &[u8]) {
    if reply.first() == Some(&b'-')
        && !spec.has(resp::command::SCRIPT)
        && !spec.name.starts_with("slots")
    {
        dbs.iter_mut().for_each(Db::revert_touches);
    }
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
            journal: Vec::new(),
            journal_cmd: 0,
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
            journal: Vec::new(),
            journal_cmd: 0,
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
        let s = key_slot(key);
        self.cow(s);
        let t = &mut self.slots[s];
        if t.is_none() && self.scratch {
            *t = Some(Box::default());
        }
        t.as_deref_mut()
    }

    /// Read a live key (an expired one is removed on the way).
    pub fn get(&mut self, key: &[u8], now: u64) -> Option<EntryRef<'_>> {
        self.live(key, now, true).map(into_ref)
    }

    /// Read a live key without counting an access (Redis's `LOOKUP_NOTOUCH`: OBJECT, TYPE,
    /// EXISTS, TTL…).
    pub fn peek(&mut self, key: &[u8], now: u64) -> Option<EntryRef<'_>> {
        self.live(key, now, false).map(into_ref)
    }

    /// Mutable access to a live key's entry (counts as a modification for WATCH). Changing a
    /// container in place is fine; a string is replaced with [`Db::insert`], expiry changes go
    /// through [`Db::set_expire`].
    pub fn get_mut(&mut self, key: &[u8], now: u64) -> Option<EntryMut<'_>> {
        // A missing key is not modified: its watchers must not see a change (Redis signals
        // only real modifications). Looked up first only when the key is watched, or in a
        // scratch copy (which counts the touches of every key for the write-back).
        if (self.scratch || self.watched(key)) && self.live(key, now, false).is_none() {
            return None;
        }
        self.touch(key);
        if self.snap.is_some() {
            self.cow(key_slot(key));
        }
        self.live(key, now, true)
    }

    /// A live string key's bytes as a buffer edited in place (APPEND, SETRANGE, SETBIT,
    /// BITFIELD on long strings; see [`Value::Buf`]): `None` when the key is missing,
    /// `Some(Err(()))` when it holds another type. A modification for WATCH and snapshots, like
    /// [`Db::get_mut`]; the caller marks the key raw ([`Db::mark_raw`]).
    pub fn str_buf(&mut self, key: &[u8], now: u64) -> Option<Result<&mut Vec<u8>, ()>> {
        self.live(key, now, true)?;
        self.touch(key);
        self.table_mut(key)?.map.str_buf(key)
    }

    /// A live entry, read without triggering a snapshot's copy-on-write (only removing an
    /// expired key counts as a change).
    fn live(&mut self, key: &[u8], now: u64, access: bool) -> Option<EntryMut<'_>> {
        let s = key_slot(key);
        let t: *mut SlotTable = self.slots[s].as_deref_mut()?;
        // One probe for the expiry check and the entry. SAFETY: `t` points at a table owned by
        // `self.slots`; `e` is either returned (keeping `self` borrowed for as long as it lives)
        // or no longer used once `self` is touched below. The borrow checker cannot see that a
        // borrow returned on one path ends on the other (NLL "problem case #3").
        let mut e = unsafe { &mut *t }.map.get_mut(key)?;
        if word_expired(*e.word, now) {
            if !self.scratch && (crate::repl::prop::active() || crate::notify::enabled()) {
                self.expired.push(key.into());
            }
            // An expiry is a modification even when a reader finds it, one the command cannot
            // take back (even if it then fails or changes nothing): out of the journal.
            let quiet = std::mem::replace(&mut self.quiet, false);
            self.delete(key);
            self.quiet = quiet;
            if !self.journal.is_empty() {
                self.journal.retain(|k| **k != *key);
            }
            return None;
        }
        if access {
            e.access();
        }
        Some(e)
    }

    /// The table of `slot`, if this database holds it (for [`crate::shard::Shard::prefetch`]).
    #[inline]
    pub fn slot_table(&self, slot: u16) -> Option<&SlotTable> {
        self.slots.get(slot as usize)?.as_deref()
    }

    /// Prefetch what looking `key` up will touch (see [`KeyTable::prefetch`]).
    #[inline]
    pub fn prefetch(&self, key: &[u8], warm: bool) {
        if let Some(t) = self.slots[key_slot(key)].as_deref() {
            t.map.prefetch(key, warm);
        }
    }

    /// Whether a live key exists (not counted as an access, as Redis's EXISTS).
    pub fn contains(&mut self, key: &[u8], now: u64) -> bool {
        self.peek(key, now).is_some()
    }

    /// Store a value with an expiry (0: none), replacing any previous entry. Returns false when this
    /// shard does not own the key's slot (the caller routed it wrongly).
    pub fn insert(&mut self, key: &[u8], value: Value, expire_at: u64) -> bool {
        self.put(key, expire_at, |t, w| {
            t.insert(key, Entry::from_word(value, w))
        })
    }

    /// [`Db::insert`] of a string given as bytes (SET's path: the bytes go straight into the
    /// key's node, no intermediate boxed string).
    pub fn insert_str(&mut self, key: &[u8], value: &[u8], expire_at: u64) -> bool {
        self.put(key, expire_at, |t, w| t.insert_str(key, value, w))
    }

    fn put(
        &mut self,
        key: &[u8],
        expire_at: u64,
        store: impl FnOnce(&mut KeyTable, u64) -> Option<u64>,
    ) -> bool {
        self.touch(key);
        let Some(t) = self.table_mut(key) else {
            return false;
        };
        let vol = (expire_at != 0) as usize;
        let word = join(expire_at, Mark::None, clock::fresh());
        match store(&mut t.map, word) {
            Some(old) => {
                t.volatile = t.volatile - (word_expire(old) != 0) as usize + vol;
                // An overwrite keeps the LFU counter (Redis's `dbOverwrite`).
                if clock::lfu() {
                    if let Some(mut e) = t.map.get_mut(key) {
                        e.set_clock(word_clock(old));
                    }
                }
            }
            None => {
                t.volatile += vol;
                self.keys += 1;
            }
        }
        true
    }

    /// [`Db::insert_keep_ttl`] of a string given as bytes (SET KEEPTTL, INCRBYFLOAT: a
    /// same-length result is copied over the old bytes, no allocation). INCR and its kin read
    /// the expiry with the value and call [`Db::insert_str`] directly.
    pub fn insert_str_keep_ttl(&mut self, key: &[u8], value: &[u8], now: u64) {
        let ttl = self.get(key, now).map_or(0, |e| e.expire_at());
        self.insert_str(key, value, ttl);
    }

    /// Store a value keeping the key's current expiry (SET KEEPTTL, APPEND-style updates).
    pub fn insert_keep_ttl(&mut self, key: &[u8], value: Value, now: u64) {
        let ttl = self.get(key, now).map_or(0, |e| e.expire_at());
        self.insert(key, value, ttl);
    }

    /// Store a whole entry (value, expiry and encoding marks) under `key`, as RENAME, COPY, MOVE
    /// and multi-core write-backs do. Same result as [`Db::insert`].
    pub fn insert_entry(&mut self, key: &[u8], e: Entry) -> bool {
        let w = split(e.expire_at);
        let r = self.insert(key, e.value, w.expire);
        if let Some(x) = self.table_mut(key).and_then(|t| t.map.get_mut(key)) {
            *x.word = join(w.expire, w.mark, w.clock.unwrap_or_else(clock::fresh));
        }
        r
    }

    /// Set a key's access clock (RESTORE IDLETIME/FREQ, RDB loading hints).
    pub fn set_clock(&mut self, key: &[u8], c: u32) {
        if let Some(mut e) = self.table_mut(key).and_then(|t| t.map.get_mut(key)) {
            e.set_clock(c);
        }
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

    /// Mark a string COPY made: an integer in it is not a shared object (OBJECT REFCOUNT).
    pub fn mark_copy(&mut self, key: &[u8]) {
        self.mark(key, Mark::Copy);
    }

    fn mark(&mut self, key: &[u8], mark: Mark) {
        if let Some(e) = self.table_mut(key).and_then(|t| t.map.get_mut(key)) {
            let w = split(*e.word);
            *e.word = join(w.expire, mark, w.clock.unwrap_or_else(clock::fresh));
        }
    }

    /// Remove a key (expired or not) without handing its entry back: nothing is copied out of
    /// the key's node (a string's [`Db::remove`] makes a value of its bytes, only to drop it
    /// in DEL, expiry, eviction, migration). True when the key was there.
    pub fn delete(&mut self, key: &[u8]) -> bool {
        let Some(t) = self.table_mut(key) else {
            return false;
        };
        let Some(word) = t.map.delete(key) else {
            return false;
        };
        t.volatile -= (split(word).expire != 0) as usize;
        self.keys -= 1;
        self.touch(key);
        true
    }

    /// Delete a live key when `same` accepts its entry, looking it up once (a migration removing
    /// what the target acknowledged, if unchanged). `None` when the key is missing or expired
    /// (an expired key is removed as a read removes it), `Some(true)` when it was deleted,
    /// `Some(false)` when `same` kept it.
    pub fn delete_live_if(
        &mut self,
        key: &[u8],
        now: u64,
        same: impl FnOnce(EntryRef<'_>) -> bool,
    ) -> Option<bool> {
        let s = key_slot(key);
        self.slots[s].as_deref()?;
        self.cow(s);
        let t = self.slots[s].as_deref_mut()?;
        let mut expired = false;
        let gone = t.map.delete_if(key, |e| {
            expired = word_expired(e.word, now);
            !expired && same(e)
        })?;
        if expired {
            return self.peek(key, now).map(|_| false);
        }
        let Some(word) = gone else {
            return Some(false);
        };
        t.volatile -= (split(word).expire != 0) as usize;
        self.keys -= 1;
        self.touch(key);
        Some(true)
    }

    /// Remove a key, returning its entry (expired or not).
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let t = self.table_mut(key)?;
        let e = t.map.remove(key)?;
        t.volatile -= (e.expire_at() != 0) as usize;
        self.keys -= 1;
        self.touch(key);
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
        t.volatile = t.volatile - (e.expire_at() != 0) as usize + (expire_at != 0) as usize;
        let w = split(*e.word);
        *e.word = join(expire_at, w.mark, w.clock.unwrap_or_else(clock::fresh));
        true
    }

    /// Whether `key` is stored here, expired or not (Redis's `dictFind` on the keyspace).
    fn holds(&self, key: &[u8]) -> bool {
        self.slots
            .get(key_slot(key))
            .and_then(|t| t.as_deref())
            .is_some_and(|t| t.map.contains_key(key))
    }

    /// SWAPDB: exchange the keys of `self` and `other`. A WATCH names a database index, so each
    /// keeps its watched keys; those stored in either database count as modified (Redis's
    /// `touchAllWatchedKeysInDb`: a watched key missing from both did not change).
    pub fn swap_keys(&mut self, other: &mut Db) {
        let (touch_here, touch_there): (Vec<Key>, Vec<Key>) = (
            self.watch
                .keys()
                .filter(|k| self.holds(k) || other.holds(k))
                .cloned()
                .collect(),
            other
                .watch
                .keys()
                .filter(|k| self.holds(k) || other.holds(k))
                .cloned()
                .collect(),
        );
        std::mem::swap(self, other);
        std::mem::swap(&mut self.watch, &mut other.watch);
        for (db, keys) in [(&mut *self, touch_here), (&mut *other, touch_there)] {
            db.dirty += 1;
            for k in keys {
                if let Some(w) = db.watch.get_mut(&k) {
                    w.0 += 1;
                }
            }
        }
    }

    /// Drop every key of every owned slot. Returns how many were dropped.
    pub fn clear(&mut self) -> usize {
        let n = self.keys;
        // Only the watched keys that exist change (Redis's `touchAllWatchedKeysInDb`).
        let held: Vec<Key> = self
            .watch
            .keys()
            .filter(|k| self.holds(k))
            .cloned()
            .collect();
        for k in held {
            if let Some(w) = self.watch.get_mut(&k) {
                w.0 += 1;
            }
        }
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

    /// Whether a client WATCHes `key` in this database.
    #[inline]
    pub fn watched(&self, key: &[u8]) -> bool {
        !self.watch.is_empty() && self.watch.contains_key(key)
    }

    /// Record a modification of `key` for its watchers. A scratch database counts the touches
    /// of every key, so the transaction's write-back can signal them ([`Db::touches`]).
    fn touch(&mut self, key: &[u8]) {
        if self.quiet {
            return;
        }
        self.dirty += 1;
        if self.scratch {
            self.watch.entry(key.into()).or_insert((0, 0)).0 += 1;
        } else if self.watch.is_empty() {
            return;
        } else if let Some(w) = self.watch.get_mut(key) {
            w.0 += 1;
        } else {
            return;
        }
        let cur = current_command();
        if self.journal_cmd != cur {
            self.journal.clear();
            self.journal_cmd = cur;
        }
        self.journal.push(key.into());
    }

    /// Take back the current command's touches of `key`, which it did not change after all
    /// (LREM removing no element, SADD of members already there, …): Redis signals a key only
    /// when it really changed, so its watchers must not see one. Does nothing when the current
    /// command did not touch `key` (or `key` is not watched). The change counter (`dirty`) keeps
    /// the touch: a command propagated though it changed nothing is harmless.
    pub fn untouch(&mut self, key: &[u8]) {
        if self.journal.is_empty() || self.journal_cmd != current_command() {
            return;
        }
        let before = self.journal.len();
        self.journal.retain(|k| **k != *key);
        let n = (before - self.journal.len()) as u64;
        if n > 0 {
            if let Some(w) = self.watch.get_mut(key) {
                w.0 = w.0.saturating_sub(n);
            }
        }
    }

    /// Take back every touch of the current command (it failed: a command answering an error
    /// changed nothing).
    pub fn revert_touches(&mut self) {
        if self.journal.is_empty() || self.journal_cmd != current_command() {
            return;
        }
        for k in std::mem::take(&mut self.journal) {
            if let Some(w) = self.watch.get_mut(&k) {
                w.0 = w.0.saturating_sub(1);
            }
        }
    }

    /// Signal `key` as modified even while a read-only command runs (PFCOUNT rewriting the
    /// cached cardinality, which Redis signals).
    pub fn signal(&mut self, key: &[u8]) {
        let quiet = std::mem::replace(&mut self.quiet, false);
        self.touch(key);
        self.quiet = quiet;
    }

    /// Forget the touches counted so far (a scratch database, once the keys are copied in).
    pub fn forget_touches(&mut self) {
        if self.scratch {
            self.watch.clear();
            self.journal.clear();
        }
    }

    /// How many times `key` was touched (a scratch database: counted for every key).
    pub fn touches(&self, key: &[u8]) -> u64 {
        self.watch.get(key).map_or(0, |w| w.0)
    }

    fn touch_where(&mut self, f: impl Fn(&[u8]) -> bool) {
        self.dirty += 1;
        for (k, w) in self.watch.iter_mut() {
            if f(k) {
                w.0 += 1;
            }
        }
    }

    /// Start watching `key` (one more watcher); returns its modification count. An expired key is
    /// dropped first, so its expiry does not count as a later change.
    pub fn watch(&mut self, key: &[u8], now: u64) -> u64 {
        self.live(key, now, false);
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
        self.live(key, now, false);
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

    /// A slot hint answers for its own key only (same bytes, not equal bytes elsewhere), and
    /// nested hints give way to the one before when dropped.
    #[test]
    fn slot_hint_answers_for_its_key_only() {
        let a = Bytes::from_static(b"alpha");
        let b = Bytes::from_static(b"beta");
        let copy = Bytes::copy_from_slice(b"alpha");
        let sa = resp::slot(&a);
        let sb = resp::slot(&b);
        assert_ne!(sa, sb);
        {
            let _h = SlotHint::new(&a, sa);
            assert_eq!(key_slot(&a), sa as usize);
            assert_eq!(key_slot(&copy), sa as usize);
            assert_eq!(key_slot(&b), sb as usize);
            // A prefix of the hinted key is another key.
            assert_eq!(key_slot(&a[..4]), resp::slot(b"alph") as usize);
            {
                let _g = SlotHint::new(&b, sb);
                assert_eq!(key_slot(&b), sb as usize);
                assert_eq!(key_slot(&a), sa as usize);
            }
            assert_eq!(key_slot(&a), sa as usize);
        }
        assert_eq!(SLOT_HINT.get().1, usize::MAX);
    }

    fn s(v: &str) -> Value {
        Value::Str(v.as_bytes().into())
    }

    /// A migration's check-and-delete: kept when the entry differs, deleted (counts included)
    /// when it matches, `None` for a missing key and for an expired one, which goes as a read
    /// would remove it.
    #[test]
    fn delete_live_if_checks_and_deletes_in_one_call() {
        let mut db = Db::new(|_| true);
        db.insert(b"a", s("1"), 0);
        db.insert(b"b", s("2"), 5000);
        db.insert(b"gone", s("3"), 1000);
        assert_eq!(db.volatile(), 2);
        assert_eq!(db.delete_live_if(b"nope", 2000, |_| true), None);
        let same = |want: &'static str| move |e: EntryRef<'_>| e.value == s(want).view();
        assert_eq!(db.delete_live_if(b"a", 2000, same("other")), Some(false));
        assert_eq!(db.len(), 3);
        assert_eq!(db.delete_live_if(b"a", 2000, same("1")), Some(true));
        assert_eq!(db.delete_live_if(b"b", 2000, same("2")), Some(true));
        assert_eq!((db.len(), db.volatile()), (1, 1));
        assert_eq!(db.delete_live_if(b"gone", 2000, |_| true), None);
        assert_eq!((db.len(), db.volatile()), (0, 0));
        assert!(db.get(b"a", 2000).is_none());
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
    fn entry_word_keeps_expiry_exact_and_clock_without_growing() {
        // The access clock shares the expiry word: an entry is still a value and one word.
        assert_eq!(
            std::mem::size_of::<Entry>(),
            std::mem::size_of::<Value>() + 8
        );
        for at in [
            0,
            1,
            5,
            (1 << 36) - 1,
            1 << 36,
            99_999_999_999_999,
            (1 << 60) - 1,
            1 << 60,
            1 << 62,
            i64::MAX as u64,
        ] {
            for mark in [Mark::None, Mark::Raw, Mark::Text, Mark::Copy] {
                let w = split(join(at, mark, 0xABCDEF));
                assert_eq!(w.expire, at, "{at}");
                if at < 1 << 36 {
                    assert_eq!(w.mark, mark);
                    assert_eq!(w.clock, Some(0xABCDEF));
                } else {
                    assert_eq!(w.clock, None, "wide form keeps no clock");
                    if at < 1 << 60 {
                        assert_eq!(w.mark, mark, "{at}");
                    }
                }
            }
        }
        let mut db = Db::new(|_| true);
        db.insert(b"k", s("v"), 1000);
        db.mark_raw(b"k");
        db.set_clock(b"k", 77);
        assert_eq!(db.peek(b"k", 0).map(|e| e.clock()), Some(77));
        assert!(db.set_expire(b"k", 2000, 0));
        let e = db.peek(b"k", 0).expect("k");
        assert_eq!((e.expire_at(), e.encoding()), (2000, "raw"));
        assert_eq!(db.volatile(), 1);
        assert!(db.set_expire(b"k", 0, 0));
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
