//! RDB persistence: forkless point-in-time snapshots, loading, SAVE/BGSAVE, save rules.
//!
//! # Snapshots without fork
//! [`snapshot_rdb`] holds every shard at once (no command runs anywhere), marks every non-empty
//! (database, slot) of every shard *pending* in a [`DbSnap`], and releases. Each core then
//! serialises its pending slots a little at a time ([`step`]), going back to its executor between
//! steps so it keeps serving. A modification of a slot that is still pending first serialises
//! that slot as it is (copy-on-write at slot granularity): the hooks live in [`crate::db::Db`]'s
//! mutators, which every write path (commands, MULTI/EXEC, multi-core write-back, scripts,
//! blocking pops, migration, expiry, FLUSH*) goes through. Flushed tables are kept whole until
//! serialised; SWAPDB swaps the databases with their snapshot state, which remembers its
//! database index. Keys whose expiry is before the snapshot instant are left out.
//!
//! The per-core parts are concatenated into one file with one SELECTDB/RESIZEDB section per
//! database ([`rdb::file`]).

use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdb::file::{write_key_header, FileError, FileReader, Item};
use rdb::length::write_len;
use rdb::object::{TYPE_HASH, TYPE_LIST, TYPE_SET, TYPE_STRING, TYPE_ZSET_2};
use rdb::string::write_string;
use resp::MAX_SLOTS;

use crate::core::Core;
use crate::db::SlotTable;
use crate::shard::Shard;
use crate::shared::now_ms;
use crate::value::{Value, ValueRef};

/// Why a snapshot, a save or a load failed.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Rdb(#[from] FileError),
    #[error("bad value for key '{key}' in RDB: {source}")]
    Value {
        key: String,
        #[source]
        source: rdb::DumpError,
    },
    #[error("RDB has a key in database {db}, but this server has only {databases} databases")]
    DbRange { db: u64, databases: usize },
    #[error("the snapshot was interrupted")]
    Interrupted,
    #[error("cannot load a library of functions from the RDB: {0}")]
    Function(String),
}

/// How long one serialisation step may run before its core goes back to serving clients. A step
/// can stop inside a slot (see [`DbSnap`]'s cursor), so this bounds what a client waits behind it.
const STEP_BUDGET: Duration = Duration::from_micros(200);
/// When clients kept the core busy since the previous step, the next step waits this long after
/// it: the snapshot then takes about a third of a busy core and client work the rest (on an
/// idle core it runs back to back). Checksumming, writing and fsync happen on a writer thread
/// that is not pinned to the executor's CPU.
const BUSY_PAUSE: Duration = Duration::from_micros(400);
/// Tasks run on a core since its previous step above which it counts as busy (the snapshot's own
/// message and timer tasks stay under it).
const BUSY_TASKS: u64 = 8;
/// Keys serialised between two looks at the clock within a step.
const CLOCK_EVERY: usize = 16;
/// Serialised keys are kept in chunks of about this size: the buffer never grows by copying
/// (a reallocation of a large buffer would stall the core), and the chunks go to the file or
/// the replica's socket as they are.
const CHUNK: usize = 1 << 20;
/// Keys per cross-core batch when loading.
const LOAD_BATCH: usize = 2048;

/// One database's part of a snapshot in progress on one shard.
#[derive(Debug)]
pub struct DbSnap {
    /// The database index at the snapshot instant (SWAPDB moves this state with the data).
    pub db_index: usize,
    start_ms: u64,
    pending: Vec<u64>,
    npending: usize,
    /// The pending slot being serialised across steps and how many of its keys (in the table's
    /// iteration order) are written. The table cannot change in between without the
    /// copy-on-write hook finishing the slot first, so the order is stable.
    cur: Option<(usize, usize)>,
    /// Tables emptied (FLUSH*) before they were serialised, with how many keys are written.
    frozen: Vec<(usize, SlotTable, usize)>,
    /// Full chunks of serialised keys (`[FC ms] type key value` each).
    chunks: Vec<Vec<u8>>,
    /// The chunk being filled.
    out: Vec<u8>,
    pub keys: u64,
    pub expires: u64,
}

impl DbSnap {
    /// A snapshot of database `db_index` taken at `start_ms`, needing `slots`.
    pub fn new(db_index: usize, start_ms: u64, slots: impl Iterator<Item = usize>) -> DbSnap {
        let mut pending = vec![0u64; MAX_SLOTS.div_ceil(64)];
        let mut npending = 0;
        for s in slots {
            pending[s / 64] |= 1 << (s % 64);
            npending += 1;
        }
        DbSnap {
            db_index,
            start_ms,
            pending,
            npending,
            cur: None,
            frozen: Vec::new(),
            chunks: Vec::new(),
            out: Vec::new(),
            keys: 0,
            expires: 0,
        }
    }

    /// Whether `slot` still has to be serialised.
    #[inline]
    pub fn is_pending(&self, slot: usize) -> bool {
        self.pending
            .get(slot / 64)
            .is_some_and(|w| w & (1 << (slot % 64)) != 0)
    }

    /// Unmark `slot`; returns how many of its keys were already written (`None`: not pending).
    fn unmark(&mut self, slot: usize) -> Option<usize> {
        if !self.is_pending(slot) {
            return None;
        }
        self.pending[slot / 64] &= !(1 << (slot % 64));
        self.npending -= 1;
        match self.cur {
            Some((s, done)) if s == slot => {
                self.cur = None;
                Some(done)
            }
            _ => Some(0),
        }
    }

    fn next_pending(&self) -> Option<usize> {
        if self.npending == 0 {
            return None;
        }
        self.pending
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| i * 64 + w.trailing_zeros() as usize)
    }

    /// Serialise `slot` now (it is about to change, or it is its turn) if it is pending.
    pub fn save_slot(&mut self, slot: usize, table: Option<&SlotTable>) {
        if let Some(from) = self.unmark(slot) {
            if let Some(t) = table {
                self.write_keys(t, from, None);
            }
        }
    }

    /// Keep a table that is being emptied until it is serialised (if its slot is pending).
    pub fn freeze(&mut self, slot: usize, table: SlotTable) {
        if let Some(from) = self.unmark(slot) {
            if !table.is_empty() {
                self.frozen.push((slot, table, from));
            }
        }
    }

    /// Whether every slot has been serialised.
    pub fn is_done(&self) -> bool {
        self.npending == 0 && self.frozen.is_empty()
    }

    /// Serialise the keys of `t` from the `from`-th on, stopping once `deadline` has passed.
    /// Returns how many keys of `t` are written when it stopped early, `None` when it finished.
    fn write_keys(
        &mut self,
        t: &SlotTable,
        from: usize,
        deadline: Option<Instant>,
    ) -> Option<usize> {
        let mut n = from;
        for (k, e) in t.map.iter().skip(from) {
            if let Some(d) = deadline {
                if (n - from) % CLOCK_EVERY == CLOCK_EVERY - 1 && Instant::now() >= d {
                    return Some(n);
                }
            }
            n += 1;
            let at = e.expire_at();
            if at != 0 && at <= self.start_ms {
                continue;
            }
            let exp = (at != 0).then_some(at);
            if self.out.capacity() == 0 {
                self.out.reserve_exact(CHUNK + CHUNK / 8);
            }
            write_entry(&mut self.out, k, exp, e.value);
            self.keys += 1;
            self.expires += exp.is_some() as u64;
            if self.out.len() >= CHUNK {
                self.chunks.push(std::mem::take(&mut self.out));
            }
        }
        None
    }

    /// Every chunk written, in order (consumes the snapshot state).
    fn into_chunks(mut self) -> Vec<Vec<u8>> {
        if !self.out.is_empty() {
            self.chunks.push(std::mem::take(&mut self.out));
        }
        self.chunks
    }
}

/// Append one engine value as an RDB key: strings (type 0), lists (1), sets (2), hashes (4) and
/// zsets with binary scores (5), strings over 20 bytes LZF-compressed.
pub fn write_entry(out: &mut Vec<u8>, key: &[u8], expire_ms: Option<u64>, v: ValueRef<'_>) {
    match v {
        ValueRef::Str(s) => {
            write_key_header(out, expire_ms, TYPE_STRING, key);
            write_string(out, s, true);
        }
        ValueRef::List(l) => {
            write_key_header(out, expire_ms, TYPE_LIST, key);
            write_len(out, l.len() as u64);
            for e in l.iter() {
                write_string(out, e, true);
            }
        }
        ValueRef::Set(s) => {
            write_key_header(out, expire_ms, TYPE_SET, key);
            write_len(out, s.len() as u64);
            for m in s.members() {
                write_string(out, &m, true);
            }
        }
        ValueRef::Hash(h) => {
            write_key_header(out, expire_ms, TYPE_HASH, key);
            write_len(out, h.len() as u64);
            for (f, val) in h.iter() {
                write_string(out, f, true);
                write_string(out, val, true);
            }
        }
        ValueRef::ZSet(z) => {
            write_key_header(out, expire_ms, TYPE_ZSET_2, key);
            write_len(out, z.len() as u64);
            for (m, score) in z.iter() {
                write_string(out, m, true);
                out.extend_from_slice(&score.to_le_bytes());
            }
        }
    }
}

/// One step of the snapshot on this shard: serialise pending slots for about `budget`.
/// Returns true when nothing is left to serialise.
pub fn step(sh: &mut Shard, budget: Duration) -> bool {
    let deadline = Instant::now() + budget;
    let mut done = true;
    for db in &mut sh.dbs {
        let (snap, slots) = db.snap_and_slots();
        let Some(sn) = snap else { continue };
        // At least one piece of work per step (a step always makes progress).
        loop {
            if let Some((slot, t, from)) = sn.frozen.pop() {
                if let Some(n) = sn.write_keys(&t, from, Some(deadline)) {
                    sn.frozen.push((slot, t, n));
                }
                continue;
            }
            let (s, from) = match sn.cur {
                Some(c) => c,
                None => match sn.next_pending() {
                    Some(s) => (s, 0),
                    None => break,
                },
            };
            match slots.get(s).and_then(|t| t.as_deref()) {
                Some(t) => match sn.write_keys(t, from, Some(deadline)) {
                    Some(n) => sn.cur = Some((s, n)),
                    None => {
                        sn.unmark(s);
                    }
                },
                None => {
                    sn.unmark(s);
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        done &= sn.is_done();
    }
    done
}

thread_local! {
    /// This core's executed-task count at the end of its previous snapshot step.
    static TASKS_AT_STEP: Cell<u64> = const { Cell::new(0) };
}

/// [`step`] on the core that runs it, telling also whether client work ran on this core since
/// its previous step (then the caller pauses before the next one).
fn step_here(sh: &mut Shard) -> (bool, bool) {
    let tasks = || glommio::executor().executor_stats().tasks_executed();
    let before = tasks();
    let busy = before.saturating_sub(TASKS_AT_STEP.with(|c| c.get())) > BUSY_TASKS;
    let done = step(sh, STEP_BUDGET);
    TASKS_AT_STEP.with(|c| c.set(tasks()));
    (done, busy)
}

/// A finished shard part of one database.
struct Part {
    db: usize,
    chunks: Vec<Vec<u8>>,
    keys: u64,
    expires: u64,
}

fn take_parts(sh: &mut Shard) -> Vec<Part> {
    let mut parts = Vec::new();
    for db in &mut sh.dbs {
        if let Some(sn) = db.snap.take() {
            let (db, keys, expires) = (sn.db_index, sn.keys, sn.expires);
            parts.push(Part {
                db,
                chunks: sn.into_chunks(),
                keys,
                expires,
            });
        }
    }
    parts
}

/// Mark every non-empty slot of every database of this shard pending. Returns the shard's
/// modification count (for `rdb_changes_since_last_save`).
fn begin(sh: &mut Shard, start_ms: u64) -> u64 {
    let mut dirty = 0;
    for (i, db) in sh.dbs.iter_mut().enumerate() {
        dirty += db.dirty;
        let slots: Vec<usize> = db
            .owned_slots()
            .filter(|(_, t)| !t.is_empty())
            .map(|(s, _)| s)
            .collect();
        db.snap = Some(Box::new(DbSnap::new(i, start_ms, slots.into_iter())));
    }
    dirty
}

fn abort(sh: &mut Shard) {
    for db in &mut sh.dbs {
        db.snap = None;
    }
}

/// Sum of every shard's modification counter.
pub async fn dirty_total(core: &Rc<Core>) -> u64 {
    core.broadcast(|s| s.dbs.iter().map(|d| d.dirty).sum::<u64>())
        .await
        .into_iter()
        .sum()
}

/// Clears the shards' snapshot state if a snapshot future is dropped before it finished.
struct AbortGuard {
    core: Rc<Core>,
    armed: bool,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if self.armed {
            let core = self.core.clone();
            glommio::spawn_local(async move {
                core.broadcast(abort).await;
            })
            .detach();
        }
    }
}

/// What a snapshot produced: the file and the modification count at its instant.
pub struct Snapshot {
    pub rdb: Rdb,
    pub dirty: u64,
    pub keys: u64,
}

/// A complete RDB file held as pieces (header, per-database headers, the shards' chunks of
/// serialised keys) followed by EOF and the checksum. Nothing is copied into one buffer: the
/// pieces are written out as they are, and the checksum (over a whole file) is computed off
/// the executors ([`Rdb::crc`] is blocking).
pub struct Rdb {
    pieces: Vec<Vec<u8>>,
    /// Bytes of `pieces` (the file without its 9-byte trailer).
    body: usize,
}

impl Rdb {
    /// The file's length in bytes.
    pub fn len(&self) -> usize {
        self.body + 9
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The file's bytes before EOF and the checksum, in order.
    pub fn pieces(&self) -> &[Vec<u8>] {
        &self.pieces
    }

    /// The checksum over the pieces and EOF (blocking: about 1 ms per 5 MB).
    pub fn crc(&self) -> u64 {
        let mut d = rdb::file::Crc64::new();
        for p in &self.pieces {
            d.update(p);
        }
        d.update(&[rdb::file::OP_EOF]);
        d.finalize()
    }

    /// EOF and the checksum `crc`: the last 9 bytes of the file.
    pub fn trailer(crc: u64) -> [u8; 9] {
        let mut t = [rdb::file::OP_EOF; 9];
        t[1..].copy_from_slice(&crc.to_le_bytes());
        t
    }

    /// Write the whole file to `w` (blocking).
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let mut d = rdb::file::Crc64::new();
        for p in &self.pieces {
            d.update(p);
            w.write_all(p)?;
        }
        d.update(&[rdb::file::OP_EOF]);
        w.write_all(&Self::trailer(d.finalize()))
    }

    /// The whole file in one buffer (blocking: copies everything; run it off the executors).
    pub fn into_vec(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut v);
        v
    }
}

/// A forkless point-in-time snapshot of every database as a complete RDB file.
///
/// `at_start` runs exactly once while every shard is held (no command runs anywhere), so the
/// caller can read state consistent with the snapshot (a replication offset). If another
/// snapshot is in progress this one waits for it to finish first.
pub async fn snapshot_rdb(core: &Rc<Core>, at_start: impl FnOnce()) -> Result<Rdb, PersistError> {
    Ok(snapshot(core, at_start).await?.rdb)
}

/// [`snapshot_rdb`] with the modification count at the snapshot instant.
pub async fn snapshot(core: &Rc<Core>, at_start: impl FnOnce()) -> Result<Snapshot, PersistError> {
    let n = core.ncores();
    let mut at_start = Some(at_start);
    let mut dirty = 0;
    loop {
        let tx = core.new_tx();
        let mut busy = false;
        for c in 0..n {
            busy |= core
                .hold_on(c, tx, |s| s.dbs.iter().any(|d| d.snap.is_some()))
                .await;
        }
        if busy {
            for c in 0..n {
                core.release_on(c, tx, |_| ()).await;
            }
            glommio::timer::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let start_ms = now_ms();
        if let Some(f) = at_start.take() {
            f();
        }
        for c in 0..n {
            dirty += core.release_on(c, tx, move |s| begin(s, start_ms)).await;
        }
        break;
    }
    let mut guard = AbortGuard {
        core: core.clone(),
        armed: true,
    };
    let futs = (0..n).map(|c| {
        let core = core.clone();
        async move {
            loop {
                let (done, busy) = core.run_on(c, step_here).await;
                if done {
                    break;
                }
                // A timer, not a bare yield: the executor must find its run queue empty now
                // and then, or it would not poll the network for its clients' requests. A
                // 1 µs timer fires at the executor's next poll: once per loop iteration when the
                // core is otherwise idle; after client work, a longer pause leaves them the core.
                let pause = if busy {
                    BUSY_PAUSE
                } else {
                    Duration::from_micros(1)
                };
                glommio::timer::sleep(pause).await;
            }
            core.run_on(c, take_parts).await
        }
    });
    let parts: Vec<Part> = futures::future::join_all(futs)
        .await
        .into_iter()
        .flatten()
        .collect();
    guard.armed = false;
    let ndb = core.shard.borrow().dbs.len();
    let (rdb, keys) = assemble(ndb, parts);
    Ok(Snapshot { rdb, dirty, keys })
}

/// Order the parts into a file: header and AUX fields, then per database SELECTDB/RESIZEDB and
/// every shard's chunks (moved, not copied).
fn assemble(ndb: usize, parts: Vec<Part>) -> (Rdb, u64) {
    let mut head = Vec::new();
    rdb::file::write_header(&mut head, rdb::file::FILE_RDB_VERSION);
    let bits = usize::BITS.to_string();
    let ctime = (now_ms() / 1000).to_string();
    let mem = crate::alloc::used_memory().to_string();
    for (k, v) in [
        ("redis-ver", "7.0.15"),
        ("redis-bits", bits.as_str()),
        ("ctime", ctime.as_str()),
        ("used-mem", mem.as_str()),
        ("aof-preamble", "0"),
    ] {
        rdb::file::write_aux(&mut head, k.as_bytes(), v.as_bytes());
    }
    for lib in crate::function::libraries() {
        rdb::file::write_function(&mut head, &lib.code);
    }
    let mut pieces = vec![head];
    let mut per_db: Vec<Vec<Part>> = (0..ndb).map(|_| Vec::new()).collect();
    for p in parts {
        if let Some(d) = per_db.get_mut(p.db) {
            d.push(p);
        }
    }
    let mut total = 0;
    for (db, mine) in per_db.into_iter().enumerate() {
        let keys: u64 = mine.iter().map(|p| p.keys).sum();
        if keys == 0 {
            continue;
        }
        let expires: u64 = mine.iter().map(|p| p.expires).sum();
        let mut sel = Vec::new();
        rdb::file::write_select_db(&mut sel, db as u64);
        rdb::file::write_resize_db(&mut sel, keys, expires);
        pieces.push(sel);
        for p in mine {
            pieces.extend(p.chunks.into_iter().filter(|c| !c.is_empty()));
        }
        total += keys;
    }
    let body = pieces.iter().map(|p| p.len()).sum();
    (Rdb { pieces, body }, total)
}

/// What a load did.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoadStats {
    pub keys: u64,
    /// Keys skipped because their expiry had passed.
    pub expired: u64,
}

/// One key ready for a shard: database, key, value, expiry (0: none).
pub type LoadItem = (usize, Box<[u8]>, Value, u64);

/// Parse an RDB file into per-owner batches, calling `flush(owner, batch)` whenever one fills up
/// and once at the end for each non-empty batch.
fn parse_into(
    mut r: FileReader<'_>,
    databases: usize,
    owner: impl Fn(u16) -> usize,
    ncores: usize,
    batch: usize,
    functions: &mut Vec<bytes::Bytes>,
    mut flush: impl FnMut(usize, Vec<LoadItem>),
) -> Result<LoadStats, PersistError> {
    let now = now_ms();
    let mut stats = LoadStats::default();
    let mut batches: Vec<Vec<LoadItem>> = (0..ncores).map(|_| Vec::new()).collect();
    while let Some(item) = r.next_item()? {
        let e = match item {
            Item::SelectDb(db) if db as usize >= databases => {
                return Err(PersistError::DbRange { db, databases })
            }
            Item::Entry(e) => e,
            Item::Function(code) => {
                functions.push(code);
                continue;
            }
            _ => continue,
        };
        let at = e.expire_ms.unwrap_or(0);
        if at != 0 && at <= now {
            stats.expired += 1;
            continue;
        }
        let value = crate::dump::from_rdb(e.value).map_err(|source| PersistError::Value {
            key: String::from_utf8_lossy(&e.key).into_owned(),
            source,
        })?;
        let c = owner(resp::slot(&e.key));
        batches[c].push((e.db as usize, e.key[..].into(), value, at));
        stats.keys += 1;
        if batches[c].len() >= batch {
            flush(c, std::mem::take(&mut batches[c]));
        }
    }
    for (c, b) in batches.into_iter().enumerate() {
        if !b.is_empty() {
            flush(c, b);
        }
    }
    Ok(stats)
}

/// Insert loaded keys into a shard.
pub fn fill(sh: &mut Shard, items: Vec<LoadItem>) {
    for (db, key, value, at) in items {
        if let Some(d) = sh.dbs.get_mut(db) {
            d.insert(&key, value, at);
        }
    }
}

/// [`fill`] at start-up: the loaded keys are not changes since the last save.
pub fn fill_at_start(sh: &mut Shard, items: Vec<LoadItem>) {
    fill(sh, items);
    for d in &mut sh.dbs {
        d.dirty = 0;
    }
}

/// Empty every database, then load an RDB file's keys into the shards owning their slots.
/// Already-expired keys are skipped. On an error the databases hold what was loaded so far.
///
/// The checksum and the parsing (decompression, building values) run on another thread that
/// hands batches of keys to the owning cores as it goes, so parsing and inserting overlap.
pub async fn load_rdb(core: &Rc<Core>, bytes: Vec<u8>) -> Result<LoadStats, PersistError> {
    use futures::{SinkExt, StreamExt};
    let databases = core.shard.borrow().dbs.len();
    // Keys go to the slots' owners as they are now (the parser thread reads `owner`):
    // no core-to-core slot move meanwhile.
    let _no_moves = crate::slotmove::pin_layout().await;
    let shared = core.shared.clone();
    let ncores = core.ncores();
    // `None` first (the file's header and checksum are good), then the batches.
    let (tx, mut rx) = futures::channel::mpsc::channel::<Option<(usize, Vec<LoadItem>)>>(16);
    let parsed = spawn_thread(move || {
        let mut tx = tx;
        let reader = FileReader::new(&bytes)?;
        if futures::executor::block_on(tx.send(None)).is_err() {
            return Err(PersistError::Interrupted);
        }
        let mut gone = false;
        let mut functions = Vec::new();
        let r = parse_into(
            reader,
            databases,
            |s| shared.owner(s),
            ncores,
            LOAD_BATCH,
            &mut functions,
            |c, b| {
                if !gone {
                    gone = futures::executor::block_on(tx.send(Some((c, b)))).is_err();
                }
            },
        );
        // Free the file here, not on an executor.
        drop(bytes);
        r.map(|st| (st, functions))
    });
    // Refuse a file we cannot read before touching the data.
    if !matches!(rx.next().await, Some(None)) {
        return Err(parsed
            .await
            .unwrap_or(Err(PersistError::Interrupted))
            .err()
            .unwrap_or(PersistError::Interrupted));
    }
    core.broadcast(|s| {
        for d in &mut s.dbs {
            d.clear();
        }
    })
    .await;
    while let Some(Some((c, b))) = rx.next().await {
        core.run_on(c, move |s| fill(s, b)).await;
    }
    let result = parsed
        .await
        .unwrap_or(Err(PersistError::Interrupted))
        .and_then(|(st, functions)| {
            // The file's libraries replace this server's, as its keys replaced the keys.
            crate::script::load_functions(&functions).map_err(PersistError::Function)?;
            Ok(st)
        });
    // The dataset was replaced behind the AOF's back (a replica's full sync): rewrite it.
    if result.is_ok() && crate::aof::enabled() {
        crate::aof::start_rewrite(core);
    }
    result
}

/// Read `path` and load it with [`load_rdb`].
pub async fn load_rdb_file(core: &Rc<Core>, path: &Path) -> Result<LoadStats, PersistError> {
    let bytes = std::fs::read(path)?;
    load_rdb(core, bytes).await
}

/// At start-up, before the cores run: parse `dir/dbfilename` (if it exists) into one batch per
/// core (`owner` as the shards will be built). `Ok(None)` when there is no file.
pub fn load_startup(
    path: &Path,
    databases: usize,
    ncores: usize,
    owner: impl Fn(u16) -> usize,
) -> Result<Option<(Vec<Vec<LoadItem>>, LoadStats)>, PersistError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut per_core: Vec<Vec<LoadItem>> = (0..ncores).map(|_| Vec::new()).collect();
    let mut functions = Vec::new();
    let stats = parse_into(
        FileReader::new(&bytes)?,
        databases,
        owner,
        ncores,
        usize::MAX,
        &mut functions,
        |c, b| per_core[c].extend(b),
    )?;
    crate::script::load_functions(&functions).map_err(PersistError::Function)?;
    Ok(Some((per_core, stats)))
}

/// Write a file to `dir/name` like Redis (`write` fills it): a temporary file, fsync, rename,
/// fsync of the directory. Blocking: run it off the executors.
pub fn write_file_atomic(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = dir.join(format!("temp-{}-{}.rdb", std::process::id(), now_ms()));
    let res = (|| {
        let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        write(&mut f)?;
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, dir.join(name))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Run a blocking closure on a fresh thread and await its result from an executor.
pub async fn off_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    spawn_thread(f).await.ok()
}

/// Lower the calling thread's scheduling priority (nice 10): a background save's writer should
/// not take the CPU from an executor serving clients on the same core.
pub fn background_priority() {
    // SAFETY: setpriority with `who == 0` changes only the calling thread's nice value on Linux.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// Start a blocking closure on a fresh thread now (free to run on any of the process's CPUs, not
/// pinned to the caller's executor CPU); its result arrives through the receiver.
pub fn spawn_thread<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> futures::channel::oneshot::Receiver<R> {
    let (tx, rx) = futures::channel::oneshot::channel();
    std::thread::spawn(move || {
        crate::runtime::unpin_background_thread();
        let _ = tx.send(f());
    });
    rx
}

/// Process-wide persistence status (one server per process).
pub struct Status {
    /// Unix seconds of the last successful save (or of the start).
    pub lastsave: AtomicU64,
    /// The modification count the last successful save covered.
    pub dirty_at_save: AtomicU64,
    pub bgsave_in_progress: AtomicBool,
    pub last_bgsave_ok: AtomicBool,
    /// Seconds the last background save took (-1: none yet), stored as `i64` bits.
    pub last_bgsave_secs: AtomicU64,
    /// Unix ms when the running background save started.
    pub bgsave_started_ms: AtomicU64,
    pub loading: AtomicBool,
    /// Keys loaded at start-up and how long it took (ms).
    pub loaded_keys: AtomicU64,
    pub saves: AtomicU64,
    /// A BGSAVE SCHEDULE waiting for the running one.
    pub scheduled: AtomicBool,
    pub last_error: Mutex<String>,
}

/// The persistence status of this process.
pub static STATUS: Status = Status {
    lastsave: AtomicU64::new(0),
    dirty_at_save: AtomicU64::new(0),
    bgsave_in_progress: AtomicBool::new(false),
    last_bgsave_ok: AtomicBool::new(true),
    last_bgsave_secs: AtomicU64::new(u64::MAX),
    bgsave_started_ms: AtomicU64::new(0),
    loading: AtomicBool::new(false),
    loaded_keys: AtomicU64::new(0),
    saves: AtomicU64::new(0),
    scheduled: AtomicBool::new(false),
    last_error: Mutex::new(String::new()),
};

thread_local! {
    static SAVING_HERE: Cell<bool> = const { Cell::new(false) };
}

/// The configured RDB path.
pub fn rdb_path(core: &Core) -> (PathBuf, String) {
    let cfg = core.shared.config();
    (PathBuf::from(cfg.dir.clone()), cfg.dbfilename.clone())
}

/// Snapshot and write the RDB file (SAVE, BGSAVE, SHUTDOWN, save rules). Returns the keys saved.
pub async fn save(core: &Rc<Core>) -> Result<u64, PersistError> {
    let snap = snapshot(core, || ()).await?;
    let (dir, name) = rdb_path(core);
    let rdb = snap.rdb;
    // Checksum, write, fsync and freeing the buffers all happen on another thread.
    let res = off_thread(move || {
        background_priority();
        write_file_atomic(&dir, &name, |f| rdb.write_to(f))
    })
    .await
    .ok_or(PersistError::Interrupted)?;
    res?;
    STATUS.lastsave.store(now_ms() / 1000, Ordering::Relaxed);
    STATUS.dirty_at_save.store(snap.dirty, Ordering::Relaxed);
    STATUS.saves.fetch_add(1, Ordering::Relaxed);
    tracing::info!("DB saved on disk ({} keys)", snap.keys);
    Ok(snap.keys)
}

/// Start a background save unless one runs. Returns false when one is already in progress.
pub fn bgsave(core: &Rc<Core>) -> bool {
    if STATUS
        .bgsave_in_progress
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    SAVING_HERE.with(|s| s.set(true));
    STATUS.bgsave_started_ms.store(now_ms(), Ordering::Relaxed);
    let core = core.clone();
    glommio::spawn_local(async move {
        tracing::info!("Background saving started");
        let t = Instant::now();
        let r = save(&core).await;
        STATUS
            .last_bgsave_secs
            .store(t.elapsed().as_secs(), Ordering::Relaxed);
        match r {
            Ok(_) => {
                STATUS.last_bgsave_ok.store(true, Ordering::Relaxed);
                tracing::info!("Background saving terminated with success");
            }
            Err(e) => {
                STATUS.last_bgsave_ok.store(false, Ordering::Relaxed);
                tracing::warn!("Background saving error: {e}");
                if let Ok(mut l) = STATUS.last_error.lock() {
                    *l = e.to_string();
                }
            }
        }
        SAVING_HERE.with(|s| s.set(false));
        STATUS.bgsave_in_progress.store(false, Ordering::Release);
        if STATUS.scheduled.swap(false, Ordering::AcqRel) {
            bgsave(&core);
        }
    })
    .detach();
    true
}

/// SAVE and BGSAVE [SCHEDULE] (routed here from `global.rs`).
pub async fn command(core: &Rc<Core>, name: &str, args: &resp::Args, out: &mut bytes::BytesMut) {
    use resp::encode;
    match name {
        "save" => {
            if STATUS.bgsave_in_progress.load(Ordering::Acquire) {
                return encode::error(out, "ERR Background save already in progress");
            }
            match save(core).await {
                Ok(_) => encode::ok(out),
                Err(e) => {
                    tracing::warn!("SAVE failed: {e}");
                    encode::error(out, &format!("ERR {e}"))
                }
            }
        }
        "bgsave" => {
            let schedule = match args.len() {
                1 => false,
                2 if args[1].eq_ignore_ascii_case(b"schedule") => true,
                _ => return encode::error(out, crate::cmd::err::SYNTAX),
            };
            if bgsave(core) {
                encode::simple(out, "Background saving started");
            } else if schedule {
                STATUS.scheduled.store(true, Ordering::Release);
                encode::simple(out, "Background saving scheduled");
            } else {
                encode::error(out, "ERR Background save already in progress");
            }
        }
        _ => encode::error(out, "ERR unknown persistence command"),
    }
}

/// SHUTDOWN's save step: save when SAVE is given, or when save rules are configured and NOSAVE
/// is not. An error means "do not exit" (unless FORCE was given).
pub async fn on_shutdown(core: &Rc<Core>, args: &resp::Args) -> Result<(), String> {
    crate::aof::flush_on_exit();
    let has = |w: &str| {
        args[1..]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(w.as_bytes()))
    };
    let rules = !core.shared.config().save.is_empty();
    if has("nosave") || !(has("save") || rules) {
        return Ok(());
    }
    tracing::info!("Saving the final RDB snapshot before exiting.");
    match save(core).await {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!("Error trying to save the DB, can't exit: {e}");
            if has("force") {
                Ok(())
            } else {
                Err("ERR Errors trying to SHUTDOWN. Check logs.".into())
            }
        }
    }
}

/// DEBUG RELOAD: save, empty, load the file back.
pub async fn debug_reload(core: &Rc<Core>) -> Result<LoadStats, PersistError> {
    save(core).await?;
    let (dir, name) = rdb_path(core);
    load_rdb_file(core, &dir.join(name)).await
}

/// The `# Persistence` section of INFO.
pub async fn info(core: &Rc<Core>) -> String {
    let dirty = dirty_total(core)
        .await
        .saturating_sub(STATUS.dirty_at_save.load(Ordering::Relaxed));
    let inprog = STATUS.bgsave_in_progress.load(Ordering::Relaxed);
    let cur = if inprog {
        (now_ms().saturating_sub(STATUS.bgsave_started_ms.load(Ordering::Relaxed)) / 1000) as i64
    } else {
        -1
    };
    let last = STATUS.last_bgsave_secs.load(Ordering::Relaxed);
    let last = if last == u64::MAX { -1 } else { last as i64 };
    format!(
        "# Persistence\r\nloading:{}\r\nasync_loading:0\r\ncurrent_cow_peak:0\r\ncurrent_cow_size:0\r\ncurrent_save_keys_processed:0\r\nrdb_changes_since_last_save:{dirty}\r\nrdb_bgsave_in_progress:{}\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:{}\r\nrdb_last_bgsave_time_sec:{last}\r\nrdb_current_bgsave_time_sec:{cur}\r\nrdb_saves:{}\r\n{}\r\n",
        STATUS.loading.load(Ordering::Relaxed) as u8,
        inprog as u8,
        STATUS.lastsave.load(Ordering::Relaxed),
        if STATUS.last_bgsave_ok.load(Ordering::Relaxed) { "ok" } else { "err" },
        STATUS.saves.load(Ordering::Relaxed),
        crate::aof::info(),
    )
}

/// Core 0's persistence cron: once a second, start a background save when a `save` rule
/// (`<seconds> <changes>`) is met, as Redis's `serverCron` does.
pub fn start_cron(core: &Rc<Core>) {
    STATUS.lastsave.store(now_ms() / 1000, Ordering::Relaxed);
    let core = core.clone();
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(Duration::from_secs(1)).await;
            let rules = core.shared.config().save;
            if rules.is_empty() || STATUS.bgsave_in_progress.load(Ordering::Acquire) {
                continue;
            }
            let changes = dirty_total(&core)
                .await
                .saturating_sub(STATUS.dirty_at_save.load(Ordering::Relaxed));
            let elapsed = (now_ms() / 1000).saturating_sub(STATUS.lastsave.load(Ordering::Relaxed));
            // After a failed background save, retry no sooner than 5 seconds (as Redis).
            let failed = !STATUS.last_bgsave_ok.load(Ordering::Relaxed);
            let since_try =
                (now_ms().saturating_sub(STATUS.bgsave_started_ms.load(Ordering::Relaxed))) / 1000;
            if failed && since_try < 5 {
                continue;
            }
            if let Some((s, c)) = rules.iter().find(|(s, c)| changes >= *c && elapsed >= *s) {
                tracing::info!("{c} changes in {s} seconds. Saving...");
                bgsave(&core);
            }
        }
    })
    .detach();
}

/// Start-up: load `dir/dbfilename` if it exists, split per core as the shards will be built
/// (slot `s` on core `s % ncores`). A file that cannot be read stops the server, as in Redis.
pub fn startup_load(
    cfg: &crate::config::Config,
    ncores: usize,
) -> Result<Vec<Vec<LoadItem>>, String> {
    let path = Path::new(&cfg.dir).join(&cfg.dbfilename);
    let t = Instant::now();
    match load_startup(&path, cfg.databases, ncores, |s| s as usize % ncores) {
        Ok(Some((items, st))) => {
            tracing::info!(
                "DB loaded from disk: {} keys ({} expired keys skipped) in {:.3} seconds",
                st.keys,
                st.expired,
                t.elapsed().as_secs_f64()
            );
            STATUS.loaded_keys.store(st.keys, Ordering::Relaxed);
            Ok(items)
        }
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(format!(
            "Fatal error loading the DB from {}: {e}. Exiting.",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    fn s(v: &str) -> Value {
        Value::Str(v.as_bytes().into())
    }

    fn keys_of(snap: &DbSnap) -> Vec<(String, String)> {
        let mut f = Vec::new();
        rdb::file::write_header(&mut f, 9);
        for c in &snap.chunks {
            f.extend_from_slice(c);
        }
        f.extend_from_slice(&snap.out);
        f.push(rdb::file::OP_EOF);
        f.extend_from_slice(&[0; 8]);
        let mut v: Vec<(String, String)> = rdb::file::read_all(&f)
            .unwrap()
            .into_iter()
            .map(|e| {
                let rdb::Value::String(val) = e.value else {
                    panic!("not a string")
                };
                (
                    String::from_utf8_lossy(&e.key).into_owned(),
                    String::from_utf8_lossy(&val).into_owned(),
                )
            })
            .collect();
        v.sort();
        v
    }

    fn start(db: &mut Db, now: u64) {
        let slots: Vec<usize> = db
            .owned_slots()
            .filter(|(_, t)| !t.is_empty())
            .map(|(s, _)| s)
            .collect();
        db.snap = Some(Box::new(DbSnap::new(0, now, slots.into_iter())));
    }

    fn finish(db: &mut Db) -> Box<DbSnap> {
        let mut sh = Shard::new(0, 1, |_| true);
        sh.dbs[0] = std::mem::replace(db, Db::new(|_| true));
        while !step(&mut sh, Duration::from_millis(10)) {}
        let snap = sh.dbs[0].snap.take().unwrap();
        *db = std::mem::replace(&mut sh.dbs[0], Db::new(|_| true));
        snap
    }

    #[test]
    fn writes_after_the_instant_are_not_seen() {
        let mut db = Db::new(|_| true);
        for i in 0..100 {
            db.insert(format!("k{i}").as_bytes(), s("old"), 0);
        }
        db.insert(b"gone", s("soon"), 50);
        start(&mut db, 100);
        db.insert(b"k1", s("new"), 0);
        db.remove(b"k2");
        db.insert(b"fresh", s("x"), 0);
        // A string changes by being stored anew (after a `get_mut`, as APPEND-style updates
        // read it first).
        if db.get_mut(b"k3", 100).is_some() {
            db.insert_keep_ttl(b"k3", s("changed"), 100);
        }
        db.set_expire(b"k4", 10_000, 100);
        db.clear_slot(resp::slot(b"k5") as usize);
        let snap = finish(&mut db);
        let got = keys_of(&snap);
        let want: Vec<(String, String)> = {
            let mut v: Vec<_> = (0..100)
                .map(|i| (format!("k{i}"), "old".to_string()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(got, want, "expired 'gone' left out, later writes invisible");
        assert_eq!(snap.expires, 0);
    }

    #[test]
    fn a_slot_written_in_several_steps_is_finished_by_copy_on_write() {
        let mut db = Db::new(|_| true);
        // One slot (hash tag) with many keys: a 1 µs step stops inside it.
        for i in 0..2000 {
            db.insert(format!("{{t}}k{i}").as_bytes(), s("old"), 0);
        }
        start(&mut db, 1);
        let mut sh = Shard::new(0, 1, |_| true);
        sh.dbs[0] = std::mem::replace(&mut db, Db::new(|_| true));
        assert!(!step(&mut sh, Duration::from_micros(1)));
        {
            let sn = sh.dbs[0].snap.as_deref().unwrap();
            assert!(
                sn.cur.is_some_and(|(_, n)| n > 0 && n < 2000),
                "stopped inside the slot"
            );
        }
        // Writes to the half-written slot: the rest of it is serialised first, as it was.
        sh.dbs[0].insert(b"{t}k7", s("new"), 0);
        sh.dbs[0].insert(b"{t}fresh", s("x"), 0);
        sh.dbs[0].remove(b"{t}k1999");
        db = std::mem::replace(&mut sh.dbs[0], Db::new(|_| true));
        let snap = finish(&mut db);
        let got = keys_of(&snap);
        let mut want: Vec<(String, String)> = (0..2000)
            .map(|i| (format!("{{t}}k{i}"), "old".to_string()))
            .collect();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn flush_during_snapshot_keeps_the_old_tables() {
        let mut db = Db::new(|_| true);
        for i in 0..50 {
            db.insert(format!("k{i}").as_bytes(), s("v"), 0);
        }
        start(&mut db, 1);
        db.clear();
        db.insert(b"after", s("x"), 0);
        let snap = finish(&mut db);
        assert_eq!(keys_of(&snap).len(), 50);
        assert!(snap.is_done());
    }
}
