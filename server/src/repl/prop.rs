//! The propagation log: one global, totally ordered stream of the dataset's write *effects*, in
//! RESP, as Redis's replication stream and AOF carry them.
//!
//! # Order
//! A command's effects are appended by the core that executed it, **right after executing it and
//! before that shard runs anything else** (multi-core commands: while their shards are still held;
//! whole-keyspace commands: while every shard is held). Every write to a key runs on the key's
//! owning core, so the log's order is consistent with execution order: replaying it from any point
//! reproduces the dataset.
//!
//! # Content
//! - `SELECT n` whenever the database differs from the previous entry's (and after a sync point,
//!   [`Log::subscribe_now`], so a new reader always starts with one);
//! - for each WRITE command that changed something and did not fail, its arguments, or what its
//!   handler asked to propagate instead ([`crate::cmd::Ctx::propagate_as`]: relative TTLs as
//!   absolute `PEXPIREAT`/`SET … PXAT`, `SPOP` as `SREM`, `INCRBYFLOAT` as `SET … KEEPTTL`, …);
//! - keys removed by expiry as `DEL`; transactions and scripts wrapped in `MULTI`/`EXEC`;
//! - `PUBLISH` / `SPUBLISH` for the replicas only ([`Log::append_repl_only`]: the AOF's reader
//!   skips them, as Redis keeps them out of the AOF).
//!
//! # Cost
//! Nothing is recorded while nobody consumes the stream: [`active`] is one relaxed atomic load and
//! becomes true when a reader subscribes (a replica, the AOF) or the backlog exists (it is created
//! by the first replica and kept, as Redis does).
//!
//! # Readers
//! [`Log::subscribe_now`] / [`Log::subscribe_from`] register a [`Reader`]; every append copies the
//! new bytes into each reader's pending buffer (like a Redis replica's output buffer), and
//! [`Reader::read`] takes them. Readers poll (glommio executors cannot wake each other's tasks):
//! [`Reader::wait`] sleeps [`POLL`] between empty reads. A reader that lets more than its limit
//! accumulate is dropped (`read` returns `None`), like Redis's `client-output-buffer-limit`.
//!
//! # Offsets
//! `offset` is Redis's `master_repl_offset`: the number of stream bytes ever produced (plus the
//! offset the history started at, for a replica or after a promotion). The backlog is a ring of the
//! last `repl-backlog-size` bytes, ending at `offset`, for partial resynchronisation (PSYNC).
//!
//! # Replicas
//! On a replica ([`Log::set_replica`]) local effects are not recorded: the master's stream is
//! appended verbatim with [`Log::append_raw`], so offsets match the master's byte for byte.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use resp::command::{CommandSpec, WRITE};
use resp::encode;

/// Whether anyone consumes the stream (the hot path's only cost: one relaxed load).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// How long a reader sleeps when nothing is pending.
pub const POLL: Duration = Duration::from_millis(1);

/// Default `repl-backlog-size`.
pub const DEFAULT_BACKLOG: usize = 1 << 20;

/// Whether effects must be recorded now.
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// The process's propagation log.
pub fn log() -> &'static Log {
    static LOG: LazyLock<Log> = LazyLock::new(Log::new);
    &LOG
}

/// One command of the stream: its database and its arguments.
pub type Effect = (usize, Vec<Bytes>);

/// Whether a command goes to replicas only, not to the AOF (`PUBLISH`, `SPUBLISH`).
fn repl_only(args: &[Bytes]) -> bool {
    is_named(args, b"publish") || is_named(args, b"spublish")
}

fn is_named(args: &[Bytes], name: &[u8]) -> bool {
    args.first().is_some_and(|n| n.eq_ignore_ascii_case(name))
}

/// A fresh 40-hex-digit replication id.
pub fn new_replid() -> String {
    (0..40)
        .map(|_| format!("{:x}", rand::random::<u8>() % 16))
        .collect()
}

struct ReaderSlot {
    id: u64,
    /// The AOF's reader: it skips what only replicas carry ([`Log::append_repl_only`]).
    aof: bool,
    buf: Vec<u8>,
    /// Largest pending size before the reader is dropped (0: unlimited).
    limit: usize,
    dropped: bool,
}

struct Inner {
    offset: u64,
    cur_db: Option<usize>,
    backlog: Option<VecDeque<u8>>,
    backlog_size: usize,
    readers: Vec<ReaderSlot>,
    next_reader: u64,
    replica: bool,
    replid: String,
    replid2: String,
    second_offset: i64,
}

/// The log (see the module documentation). Cheap to share: all state is behind one mutex.
pub struct Log {
    inner: Mutex<Inner>,
}

/// A snapshot of the log's replication state (INFO replication, ROLE).
#[derive(Debug, Clone)]
pub struct State {
    pub offset: u64,
    pub replid: String,
    pub replid2: String,
    pub second_offset: i64,
    pub backlog_active: bool,
    pub backlog_size: usize,
    pub backlog_first_byte: u64,
    pub backlog_histlen: u64,
}

/// Why a partial resynchronisation cannot continue from the requested point.
#[derive(Debug, thiserror::Error)]
pub enum PsyncError {
    #[error("replication id mismatch")]
    Replid,
    #[error("offset {0} is outside the backlog")]
    Offset(u64),
}

fn encode_cmd(out: &mut BytesMut, args: &[Bytes]) {
    encode::array(out, args.len());
    for a in args {
        encode::bulk(out, a);
    }
}

impl Log {
    fn new() -> Log {
        Log {
            inner: Mutex::new(Inner {
                offset: 0,
                cur_db: None,
                backlog: None,
                backlog_size: DEFAULT_BACKLOG,
                readers: Vec::new(),
                next_reader: 1,
                replica: false,
                replid: new_replid(),
                replid2: "0".repeat(40),
                second_offset: -1,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update_active(g: &Inner) {
        ACTIVE.store(
            g.backlog.is_some() || !g.readers.is_empty(),
            Ordering::Relaxed,
        );
    }

    /// Append the effects of one command (or of a transaction/script when `wrap`: then inside
    /// `MULTI`/`EXEC`). Nothing happens when inactive, on a replica, or when `effects` is empty.
    /// Returns the offset after the append.
    pub fn append(&self, effects: &[Effect], wrap: bool) -> u64 {
        if effects.is_empty() || !active() {
            return self.offset();
        }
        let wrap = wrap && effects.len() > 1;
        let mut g = self.lock();
        if g.replica {
            return g.offset;
        }
        let mut out = BytesMut::with_capacity(64 * effects.len());
        let mut cur = g.cur_db;
        let emit = |out: &mut BytesMut, cur: &mut Option<usize>, db: usize, args: &[Bytes]| {
            if *cur != Some(db) {
                encode_cmd(
                    out,
                    &[Bytes::from_static(b"SELECT"), Bytes::from(db.to_string())],
                );
                *cur = Some(db);
            }
            encode_cmd(out, args);
        };
        // A script's PUBLISH goes to the replicas in its place among the script's writes, and
        // not to the AOF (as Redis does): the AOF then gets a stream of its own for this append.
        let split = effects.iter().any(|(_, a)| repl_only(a));
        let mut aof = BytesMut::new();
        let mut aof_writes = 0;
        if wrap {
            let multi = [Bytes::from_static(b"MULTI")];
            if split {
                let mut c = cur;
                emit(&mut aof, &mut c, effects[0].0, &multi);
            }
            emit(&mut out, &mut cur, effects[0].0, &multi);
        }
        for (db, args) in effects {
            if split && repl_only(args) {
                // No SELECT: it does not depend on the database, and the AOF's must match.
                encode_cmd(&mut out, args);
                continue;
            }
            if split {
                let mut c = cur;
                emit(&mut aof, &mut c, *db, args);
                if !is_named(args, b"multi") && !is_named(args, b"exec") {
                    aof_writes += 1;
                }
            }
            emit(&mut out, &mut cur, *db, args);
        }
        if wrap {
            let db = cur.unwrap_or(0);
            let exec = [Bytes::from_static(b"EXEC")];
            if split {
                let mut c = cur;
                emit(&mut aof, &mut c, db, &exec);
            }
            emit(&mut out, &mut cur, db, &exec);
        }
        g.cur_db = cur;
        if split {
            // Only messages (in an empty MULTI/EXEC): nothing for the AOF.
            if aof_writes == 0 {
                aof.clear();
            }
            Self::push_to(&mut g, &out, &aof);
        } else {
            Self::push(&mut g, &out, false);
        }
        g.offset
    }

    /// Append a command that replicas run but the AOF does not keep (`PUBLISH`, `SPUBLISH`, as
    /// Redis propagates them to replicas only), with no `SELECT`: it must not depend on the
    /// database. Nothing happens when inactive or on a replica. Returns the offset after it.
    pub fn append_repl_only(&self, args: &[Bytes]) -> u64 {
        if !active() {
            return self.offset();
        }
        let mut g = self.lock();
        if g.replica {
            return g.offset;
        }
        let mut out = BytesMut::with_capacity(64);
        encode_cmd(&mut out, args);
        Self::push(&mut g, &out, true);
        g.offset
    }

    /// Append bytes of the master's stream verbatim (replica side). Returns the new offset.
    pub fn append_raw(&self, bytes: &[u8]) -> u64 {
        let mut g = self.lock();
        Self::push(&mut g, bytes, false);
        g.offset
    }

    /// Add `bytes` to the stream: the offset, the backlog and every reader (but the AOF's when
    /// `repl_only`).
    fn push(g: &mut Inner, bytes: &[u8], repl_only: bool) {
        Self::push_to(g, bytes, if repl_only { &[] } else { bytes });
    }

    /// Add `bytes` to the replication stream (offset, backlog, replicas' readers) and
    /// `aof_bytes`, the same commands less those only replicas carry, to the AOF's reader.
    fn push_to(g: &mut Inner, bytes: &[u8], aof_bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        g.offset += bytes.len() as u64;
        let size = g.backlog_size;
        if let Some(b) = g.backlog.as_mut() {
            if bytes.len() >= size {
                b.clear();
                b.extend(&bytes[bytes.len() - size..]);
            } else {
                let over = (b.len() + bytes.len()).saturating_sub(size);
                b.drain(..over);
                b.extend(bytes);
            }
        }
        for r in g.readers.iter_mut().filter(|r| !r.dropped) {
            r.buf
                .extend_from_slice(if r.aof { aof_bytes } else { bytes });
            if r.limit > 0 && r.buf.len() > r.limit {
                r.dropped = true;
                r.buf = Vec::new();
            }
        }
    }

    /// Current `master_repl_offset`.
    pub fn offset(&self) -> u64 {
        self.lock().offset
    }

    /// Create the backlog (first replica) if there is none. Recording becomes active.
    pub fn ensure_backlog(&self) {
        let mut g = self.lock();
        if g.backlog.is_none() {
            g.backlog = Some(VecDeque::new());
        }
        Self::update_active(&g);
    }

    /// Change `repl-backlog-size` (the oldest bytes are dropped when shrinking).
    pub fn set_backlog_size(&self, size: usize) {
        let mut g = self.lock();
        g.backlog_size = size.max(16 * 1024);
        let size = g.backlog_size;
        if let Some(b) = g.backlog.as_mut() {
            let over = b.len().saturating_sub(size);
            b.drain(..over);
        }
    }

    /// Register a reader starting at the current offset: a sync point. The next entry starts with
    /// `SELECT`. Call it while every shard is held (snapshot start) for a consistent cut.
    pub fn subscribe_now(&'static self, limit: usize) -> Reader {
        self.subscribe_at_now(limit, false)
    }

    /// [`Log::subscribe_now`] for the AOF, which skips [`Log::append_repl_only`]'s commands.
    pub fn subscribe_aof(&'static self) -> Reader {
        self.subscribe_at_now(0, true)
    }

    fn subscribe_at_now(&'static self, limit: usize, aof: bool) -> Reader {
        let mut g = self.lock();
        g.cur_db = None;
        let id = g.next_reader;
        g.next_reader += 1;
        g.readers.push(ReaderSlot {
            id,
            aof,
            buf: Vec::new(),
            limit,
            dropped: false,
        });
        Self::update_active(&g);
        Reader {
            log: self,
            id,
            offset: g.offset,
        }
    }

    /// Register a reader continuing history `replid` at `psync_offset`, the 1-based offset of the
    /// next byte the replica needs (what `PSYNC` carries: its own offset + 1). The reader first gets
    /// the backlog's bytes from there on. Fails when the history differs or the bytes are gone.
    pub fn subscribe_from(
        &'static self,
        replid: &str,
        psync_offset: u64,
        limit: usize,
    ) -> Result<Reader, PsyncError> {
        let mut g = self.lock();
        let known = replid == g.replid
            || (replid == g.replid2
                && g.second_offset >= 0
                && psync_offset <= g.second_offset as u64);
        if !known {
            return Err(PsyncError::Replid);
        }
        let Some(b) = g.backlog.as_ref() else {
            return Err(PsyncError::Offset(psync_offset));
        };
        let first = g.offset + 1 - b.len() as u64;
        if psync_offset < first || psync_offset > g.offset + 1 {
            return Err(PsyncError::Offset(psync_offset));
        }
        let skip = (psync_offset - first) as usize;
        let buf: Vec<u8> = b.iter().skip(skip).copied().collect();
        let id = g.next_reader;
        g.next_reader += 1;
        g.readers.push(ReaderSlot {
            id,
            aof: false,
            buf,
            limit,
            dropped: false,
        });
        Self::update_active(&g);
        Ok(Reader {
            log: self,
            id,
            offset: psync_offset - 1,
        })
    }

    /// Become a replica: local effects are no longer recorded; the master's stream is.
    pub fn set_replica(&self, yes: bool) {
        self.lock().replica = yes;
    }

    /// Whether this log follows a master.
    pub fn is_replica(&self) -> bool {
        self.lock().replica
    }

    /// Adopt the master's history after a full sync: its id and offset, an emptied backlog.
    /// Every reader is dropped (its next [`Reader::read`] is `None`): what it was given belongs
    /// to the old history, so it must resynchronise (sub-replicas: a new full sync; AOF: a rewrite).
    pub fn reset_history(&self, replid: &str, offset: u64) {
        let mut g = self.lock();
        for r in g.readers.iter_mut() {
            r.dropped = true;
            r.buf = Vec::new();
        }
        g.replid = replid.to_string();
        g.replid2 = "0".repeat(40);
        g.second_offset = -1;
        g.offset = offset;
        g.cur_db = None;
        g.backlog = Some(VecDeque::new());
        Self::update_active(&g);
    }

    /// The master switched history (`+CONTINUE <new id>` after its promotion).
    pub fn switch_replid(&self, new_id: &str) {
        let mut g = self.lock();
        if g.replid != new_id {
            g.replid2 = std::mem::replace(&mut g.replid, new_id.to_string());
            g.second_offset = g.offset as i64 + 1;
        }
    }

    /// Promotion (`REPLICAOF NO ONE`): a new history id; the old one stays valid up to here, so
    /// replicas of the old master can continue with PSYNC.
    pub fn promote(&self) {
        let mut g = self.lock();
        g.replica = false;
        g.replid2 = std::mem::replace(&mut g.replid, new_replid());
        g.second_offset = g.offset as i64 + 1;
        g.cur_db = None;
        if g.backlog.is_none() {
            g.backlog = Some(VecDeque::new());
        }
        Self::update_active(&g);
    }

    /// Next entry starts with `SELECT` (the stream's reader lost track of the database).
    pub fn force_select(&self) {
        self.lock().cur_db = None;
    }

    /// The replication state, for INFO and ROLE.
    pub fn state(&self) -> State {
        let g = self.lock();
        let histlen = g.backlog.as_ref().map_or(0, |b| b.len() as u64);
        State {
            offset: g.offset,
            replid: g.replid.clone(),
            replid2: g.replid2.clone(),
            second_offset: g.second_offset,
            backlog_active: g.backlog.is_some(),
            backlog_size: g.backlog_size,
            backlog_first_byte: if g.backlog.is_some() {
                g.offset - histlen + 1
            } else {
                0
            },
            backlog_histlen: histlen,
        }
    }
}

/// A consumer of the stream (a replica link, the AOF). Dropping it unsubscribes.
pub struct Reader {
    log: &'static Log,
    id: u64,
    offset: u64,
}

impl Reader {
    /// Offset of the next byte this reader will get.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Take the pending bytes (appended to `out`). `None`: the reader exceeded its limit and was
    /// dropped; it must resynchronise.
    pub fn read(&mut self, out: &mut Vec<u8>) -> Option<usize> {
        let mut g = self.log.lock();
        let slot = g.readers.iter_mut().find(|r| r.id == self.id)?;
        if slot.dropped {
            return None;
        }
        let n = slot.buf.len();
        if out.is_empty() {
            std::mem::swap(out, &mut slot.buf);
        } else {
            out.append(&mut slot.buf);
        }
        self.offset += n as u64;
        Some(n)
    }

    /// Wait until bytes are pending (polling every [`POLL`]); false when the reader was dropped.
    pub async fn wait(&self) -> bool {
        loop {
            {
                let g = self.log.lock();
                match g.readers.iter().find(|r| r.id == self.id) {
                    Some(r) if r.dropped => return false,
                    Some(r) if !r.buf.is_empty() => return true,
                    Some(_) => {}
                    None => return false,
                }
            }
            glommio::timer::sleep(POLL).await;
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut g = self.log.lock();
        g.readers.retain(|r| r.id != self.id);
        Log::update_active(&g);
    }
}

/// What a command propagates: the handler's override if it set one, else its arguments when it is a
/// WRITE that changed the dataset (`changed`) and did not reply with an error.
pub fn effects(
    spec: &CommandSpec,
    db: usize,
    args: &[Bytes],
    rewrite: Option<Vec<Vec<Bytes>>>,
    changed: bool,
    reply: &[u8],
    into: &mut Vec<Effect>,
) {
    match rewrite {
        Some(cmds) => into.extend(cmds.into_iter().map(|c| (db, c))),
        None => {
            // An error changed nothing; a blocking command that blocked (`\0BLOCK`) neither.
            if spec.has(WRITE) && changed && !matches!(reply.first(), Some(b'-' | 0)) {
                into.push((db, args.to_vec()));
            }
        }
    }
}

/// `DEL key` in database `db` (expired keys, keys migrated away).
pub fn del(db: usize, key: &[u8]) -> Effect {
    (
        db,
        vec![Bytes::from_static(b"DEL"), Bytes::copy_from_slice(key)],
    )
}
