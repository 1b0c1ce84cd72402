//! Codis's migration commands, source side: SLOTSMGRT{ONE,TAGONE,SLOT,TAGSLOT} (sync), their
//! `-ASYNC` forms (batched, pipelined), SLOTSMGRT-ASYNC-{FENCE,CANCEL,STATUS} and
//! SLOTSMGRT-EXEC-WRAPPER. The target side (SLOTSRESTORE, SLOTSRESTORE-ASYNC) is in `cmd/slots.rs`.
//!
//! A migration step, run by the connection that asked for it:
//! 1. on the core owning the slot: pick the keys (a tag group moves together), serialise each as a
//!    Redis DUMP payload with its remaining TTL, and mark them *in flight* (EXEC-WRAPPER then refuses
//!    writes to them with code 1);
//! 2. send them to the target over a cached connection (`AUTH`, `SELECT`, then one pipelined batch)
//!    and wait for every acknowledgement;
//! 3. on the owning core again: delete each key whose entry is still exactly what was sent, clear the
//!    in-flight marks. A key changed meanwhile by a direct write is sent again (bounded retries).
//!
//! So a key is deleted at the source only after the target acknowledged it, and nothing is lost if
//! either side dies in between: the key then exists on both, and the next step moves it again
//! (SLOTSRESTORE overwrites).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use resp::command::{self, CommandSpec, WRITE};
use resp::{encode, Args, Frame};

use crate::cmd::err;
use crate::conn::Session;
use crate::core::Core;
use crate::db::Entry;
use crate::shard::{Cmd, Shard};
use crate::value::{Hash, Set, ValueRef, ZSet};

/// Whether the connection layer must hand this command to [`run`].
pub fn handles(name: &str) -> bool {
    matches!(
        name,
        "slotsmgrtone"
            | "slotsmgrttagone"
            | "slotsmgrtslot"
            | "slotsmgrttagslot"
            | "slotsmgrtone-async"
            | "slotsmgrttagone-async"
            | "slotsmgrtslot-async"
            | "slotsmgrttagslot-async"
            | "slotsmgrt-async-fence"
            | "slotsmgrt-async-cancel"
            | "slotsmgrt-async-status"
            | "slotsmgrt-exec-wrapper"
            | "slotsrestore-async-auth"
            | "slotsrestore-async-select"
            | "slotsrestore-async-ack"
    )
}

/// One key ready to travel.
struct Item {
    key: Bytes,
    /// Remaining TTL in ms (0: none; at least 1 when set, as Codis does).
    ttl: u64,
    body: Body,
}

/// How a key travels.
enum Body {
    /// One DUMP payload, already encoded in the batch's [`Wire`]; `snapshot` is the entry sent,
    /// compared before deleting at the source.
    Object { snapshot: Entry },
    /// A big collection, sent as `SLOTSRESTORE-ASYNC <kind> key ttl hint elements…` chunks of at
    /// most `maxbulks` elements, a window of at most `maxbytes` per round trip, produced on the
    /// owning shard window by window (so no command waits on one huge payload). `version` is the
    /// key's modification count when it was picked (the key is watched while it travels).
    Chunked {
        kind: Kind,
        len: usize,
        version: u64,
    },
}

/// Keys per `SLOTSRESTORE` a migration sends: bounds the work of one command on the target
/// (the target lets its other clients in between the commands of a batch, see
/// `conn::run_batch`) and its argument count (a stock codis-server takes at most 1,048,576
/// arguments per command).
const RESTORE_KEYS: usize = SLICE_KEYS;

/// The restore of a batch's [`Body::Object`] keys, encoded on the owning shard while the keys
/// are read: `key ttl payload` triples, sent as `SLOTSRESTORE` commands of at most
/// [`RESTORE_KEYS`] keys each, whose headers [`send`] adds.
///
/// Both modes send the small keys this way; the async mode's `SLOTSRESTORE-ASYNC` is kept for
/// what needs it (a big collection's chunks, `delete`, `expire`). Codis 3.2's async source sends
/// one `SLOTSRESTORE-ASYNC object` per key and reads one acknowledgement per key; a batch acked
/// as a whole is what the driver needs anyway (any failure fails the batch, whose keys stay at
/// the source), and one command for many keys spares both servers a command dispatch and a
/// 42-byte reply per key. Every codis-server (3.2's too) accepts `SLOTSRESTORE` triples.
struct Wire {
    buf: BytesMut,
    keys: usize,
    /// Where each command's triples start in `buf` (one per [`RESTORE_KEYS`] keys).
    starts: Vec<usize>,
    /// A payload being built (reused from key to key).
    scratch: Vec<u8>,
}

impl Wire {
    fn new(keys: usize) -> Wire {
        Wire {
            buf: BytesMut::with_capacity(keys.min(4096) * 96),
            keys: 0,
            starts: Vec::new(),
            scratch: Vec::with_capacity(256),
        }
    }

    /// Append the restore of `key` (TTL `ttl` ms, 0: none) with the DUMP payload of `v`.
    fn add(&mut self, key: &[u8], ttl: u64, v: ValueRef<'_>) {
        if self.keys % RESTORE_KEYS == 0 {
            self.starts.push(self.buf.len());
        }
        self.scratch.clear();
        crate::dump::migration_payload_into(v, &mut self.scratch);
        encode::bulk(&mut self.buf, key);
        encode::bulk(&mut self.buf, itoa::Buffer::new().format(ttl).as_bytes());
        encode::bulk(&mut self.buf, &self.scratch);
        self.keys += 1;
    }

    /// Append the `SLOTSRESTORE` commands to `req`; returns how many (one reply each).
    fn encode(&self, req: &mut BytesMut) -> usize {
        req.reserve(self.buf.len() + 32 * self.starts.len());
        for (i, &start) in self.starts.iter().enumerate() {
            let end = self.starts.get(i + 1).copied().unwrap_or(self.buf.len());
            let keys = RESTORE_KEYS.min(self.keys - i * RESTORE_KEYS);
            encode::array(req, 1 + 3 * keys);
            encode::bulk(req, b"SLOTSRESTORE");
            req.extend_from_slice(&self.buf[start..end]);
        }
        self.starts.len()
    }
}

/// The collection kinds of the chunked restore forms.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    List,
    Hash,
    Set,
    ZSet,
}

impl Kind {
    fn word(self) -> &'static [u8] {
        match self {
            Kind::List => b"list",
            Kind::Hash => b"hash",
            Kind::Set => b"dict",
            Kind::ZSet => b"zset",
        }
    }
}

/// `maxbulks` / `maxbytes` of an async migration (sync migration never chunks).
#[derive(Debug, Clone, Copy)]
struct Limits {
    maxbulks: usize,
    maxbytes: usize,
}

impl Limits {
    const NEVER: Limits = Limits {
        maxbulks: usize::MAX,
        maxbytes: usize::MAX,
    };
}

/// Whether `v` travels in chunks, and as what.
fn chunk_kind(v: ValueRef<'_>, lim: Limits) -> Option<(Kind, usize)> {
    let (kind, len, packed) = match v {
        ValueRef::Str(_) => return None,
        ValueRef::List(l) => (Kind::List, l.len(), l.packed_bytes()),
        ValueRef::Hash(h) => (
            Kind::Hash,
            h.len(),
            match h {
                Hash::Pack(p) => p.bytes(),
                Hash::Map(_) => 0,
            },
        ),
        ValueRef::Set(st) => (Kind::Set, st.len(), 0),
        ValueRef::ZSet(z) => (
            Kind::ZSet,
            z.len(),
            match z {
                ZSet::Pack(p) => p.bytes(),
                ZSet::Tree(_) => 0,
            },
        ),
    };
    (len > lim.maxbulks || packed > lim.maxbytes).then_some((kind, len))
}

/// Builds the chunk commands of one window.
struct Chunker {
    head: [Bytes; 5],
    maxbulks: usize,
    maxbytes: usize,
    cmds: Vec<Vec<Bytes>>,
    cur: Vec<Bytes>,
    elems: usize,
    bytes: usize,
    taken: usize,
}

impl Chunker {
    /// Add one element (one or two parts); true when the window is full.
    fn add(&mut self, parts: &[&[u8]]) -> bool {
        if self.cur.is_empty() {
            self.cur.extend(self.head.iter().cloned());
        }
        for p in parts {
            self.bytes += p.len() + 16;
            self.cur.push(Bytes::copy_from_slice(p));
        }
        self.elems += 1;
        self.taken += 1;
        if self.elems >= self.maxbulks {
            self.close();
        }
        self.bytes >= self.maxbytes
    }

    fn close(&mut self) {
        if !self.cur.is_empty() {
            self.cmds.push(std::mem::take(&mut self.cur));
        }
        self.elems = 0;
    }
}

/// On the owning shard: the next window of chunk commands of a big key from element `pos`, and
/// how many elements it holds. `None` when the key changed (or vanished) since it was picked.
#[allow(clippy::too_many_arguments)]
fn window(
    sh: &mut Shard,
    db: usize,
    key: &Bytes,
    kind: Kind,
    version: u64,
    hint: usize,
    pos: usize,
    lim: Limits,
    tmp_ttl: u64,
    now: u64,
) -> Option<(Vec<Vec<Bytes>>, usize)> {
    let d = &mut sh.dbs[db];
    if d.watch_version(key, now) != Some(version) {
        return None;
    }
    let e = d.get(key, now)?;
    let mut c = Chunker {
        head: [
            Bytes::from_static(b"SLOTSRESTORE-ASYNC"),
            Bytes::from_static(kind.word()),
            key.clone(),
            Bytes::from(tmp_ttl.to_string()),
            Bytes::from(hint.to_string()),
        ],
        maxbulks: lim.maxbulks,
        maxbytes: lim.maxbytes,
        cmds: Vec::new(),
        cur: Vec::new(),
        elems: 0,
        bytes: 0,
        taken: 0,
    };
    let mut num = itoa::Buffer::new();
    match (e.value, kind) {
        (ValueRef::List(l), Kind::List) => {
            for x in l.iter().skip(pos) {
                if c.add(&[x]) {
                    break;
                }
            }
        }
        (ValueRef::Hash(h), Kind::Hash) => {
            for (f, v) in h.iter().skip(pos) {
                if c.add(&[f, v]) {
                    break;
                }
            }
        }
        (ValueRef::Set(Set::Ints(v)), Kind::Set) => {
            for i in v.iter().skip(pos) {
                if c.add(&[num.format(i).as_bytes()]) {
                    break;
                }
            }
        }
        (ValueRef::Set(Set::Map(m)), Kind::Set) => {
            for x in m.keys().skip(pos) {
                if c.add(&[x.as_slice()]) {
                    break;
                }
            }
        }
        (ValueRef::ZSet(z), Kind::ZSet) => {
            for (m, score) in z.iter().skip(pos) {
                if c.add(&[m, &score.to_bits().to_le_bytes()]) {
                    break;
                }
            }
        }
        _ => return None,
    }
    c.close();
    Some((c.cmds, c.taken))
}

/// A cached connection to a migration target.
struct Target {
    /// TCP, or the target's Unix socket when it runs on this host ([`unix_link`]).
    stream: crate::conn::Stream,
    rbuf: BytesMut,
    /// Read buffer (allocated once per connection).
    chunk: Vec<u8>,
    db: Option<usize>,
    last_used: Instant,
}

thread_local! {
    static POOL: RefCell<HashMap<String, Vec<Target>>> = RefCell::new(HashMap::new());
    static RUNNING: RefCell<Option<Running>> = const { RefCell::new(None) };
}

/// The migration currently running on this core (SLOTSMGRT-ASYNC-STATUS).
#[derive(Clone)]
struct Running {
    host: String,
    port: u16,
    timeout: u64,
    keys: usize,
    started: Instant,
}

const IDLE: Duration = Duration::from_secs(15);

fn io_err(e: impl std::fmt::Display) -> String {
    format!("IOERR error or timeout writing to target: {e}")
}

async fn connect(addr: &str, timeout: Duration) -> Result<Target, String> {
    if let Some(t) = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let v = p.get_mut(addr)?;
        while let Some(t) = v.pop() {
            if t.last_used.elapsed() < IDLE {
                return Some(t);
            }
        }
        None
    }) {
        return Ok(t);
    }
    let dial = || async {
        let tcp = glommio::timer::timeout(timeout, async {
            TcpStream::connect(addr)
                .await
                .map_err(|e| glommio::GlommioError::IoError(std::io::Error::other(e.to_string())))
        })
        .await
        .map_err(io_err)?;
        let _ = tcp.set_nodelay(true);
        Ok::<_, String>(tcp)
    };
    let mut tcp = dial().await?;
    let stream: crate::conn::Stream = match unix_link(&mut tcp, addr, timeout).await {
        Ok(Some(u)) => Box::new(u),
        Ok(None) => Box::new(tcp),
        // The question over TCP was cut short: its reply may still come, and must never be
        // taken for a restore's acknowledgement. A fresh connection instead.
        Err(()) => Box::new(dial().await?),
    };
    Ok(Target {
        stream,
        rbuf: BytesMut::with_capacity(4096),
        chunk: vec![0u8; 16 * 1024],
        db: None,
        last_used: Instant::now(),
    })
}

/// The target's Unix socket, when the target runs on this host and listens on one
/// (`unixsocket`): the migration stream then skips loopback TCP, as codis-proxy's connections
/// do. The path is asked over `tcp` (`CONFIG GET unixsocket`) and the server behind it checked
/// (`CONFIG GET port`), so that a path another server holds is never used. `Ok(None)`: keep
/// `tcp` (another host, no socket, a target that wants AUTH first); `Err`: the question over
/// `tcp` got no whole answer, so `tcp` must not be used.
async fn unix_link(
    tcp: &mut TcpStream,
    addr: &str,
    timeout: Duration,
) -> Result<Option<glommio::net::UnixStream>, ()> {
    let here = matches!((tcp.local_addr(), tcp.peer_addr()), (Ok(l), Ok(p)) if l.ip() == p.ip());
    let Some(port) = addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
    else {
        return Ok(None);
    };
    if !here {
        return Ok(None);
    }
    const ASK_SOCKET: &[u8] = b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$10\r\nunixsocket\r\n";
    const ASK_PORT: &[u8] = b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nport\r\n";
    let reply = glommio::timer::timeout(timeout, async { Ok(ask_one(tcp, ASK_SOCKET).await) })
        .await
        .ok()
        .flatten()
        .ok_or(())?;
    let Some(path) = resp::frame::config_value(&reply).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let link = async {
        let mut u = glommio::net::UnixStream::connect(&path).await.ok()?;
        let reply = ask_one(&mut u, ASK_PORT).await?;
        match resp::frame::expect_port(&reply, port) {
            Ok(()) => Some(u),
            Err(e) => {
                tracing::warn!(target = addr, socket = %path, "migration keeps TCP: {e}");
                None
            }
        }
    };
    Ok(glommio::timer::timeout(timeout, async { Ok(link.await) })
        .await
        .ok()
        .flatten())
}

/// Send `req` and read back exactly one reply frame.
async fn ask_one(
    s: &mut (impl futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin),
    req: &[u8],
) -> Option<Vec<u8>> {
    s.write_all(req).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        if let Ok(Some(n)) = resp::frame::frame_len(&buf) {
            buf.truncate(n);
            return Some(buf);
        }
        let k = s.read(&mut chunk).await.ok()?;
        if k == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..k]);
    }
}

fn give_back(addr: &str, mut t: Target) {
    t.last_used = Instant::now();
    POOL.with(|p| p.borrow_mut().entry(addr.to_string()).or_default().push(t));
}

/// The acknowledgement of a restored key, as every target writes it (codis-server 3.2 too):
/// recognised without building a [`Frame`].
const ACK_OK: &[u8] = b"*3\r\n$22\r\nSLOTSRESTORE-ASYNC-ACK\r\n$1\r\n0\r\n$2\r\nOK\r\n";

impl Target {
    /// Write `req`, then read `n` replies. Fails with the first error reply or non-zero
    /// SLOTSRESTORE-ASYNC-ACK (see [`reply_error`]), once all `n` are read.
    async fn round_trip(&mut self, req: &[u8], n: usize, timeout: Duration) -> Result<(), String> {
        let Target {
            stream,
            rbuf,
            chunk,
            ..
        } = self;
        let fut = async {
            stream
                .write_all(req)
                .await
                .map_err(|e| glommio::GlommioError::IoError(e))?;
            let mut seen = 0;
            let mut failed = None;
            while seen < n {
                if rbuf.starts_with(ACK_OK) {
                    bytes::Buf::advance(rbuf, ACK_OK.len());
                    seen += 1;
                    continue;
                }
                match Frame::parse(rbuf) {
                    Ok(Some(f)) => {
                        if failed.is_none() {
                            failed = reply_error(&f);
                        }
                        seen += 1;
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Err(glommio::GlommioError::IoError(std::io::Error::other(
                            e.to_string(),
                        )))
                    }
                }
                let k = stream
                    .read(chunk)
                    .await
                    .map_err(glommio::GlommioError::IoError)?;
                if k == 0 {
                    return Err(glommio::GlommioError::IoError(std::io::Error::other(
                        "target closed the connection",
                    )));
                }
                rbuf.extend_from_slice(&chunk[..k]);
            }
            Ok(failed)
        };
        match glommio::timer::timeout(timeout, fut).await {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(e),
            Err(e) => Err(format!("IOERR error or timeout reading from target: {e}")),
        }
    }
}

/// Why a restore round trip's reply means failure: an error reply, or a non-zero
/// SLOTSRESTORE-ASYNC-ACK.
fn reply_error(f: &Frame) -> Option<String> {
    if let Frame::Error(e) = f {
        let e = String::from_utf8_lossy(e);
        return Some(format!("ERR error on slotsrestore, migration failed: {e}"));
    }
    if let Frame::Array(a) = f {
        // SLOTSRESTORE-ASYNC-ACK errno msg
        if let Some(Frame::Bulk(code)) = a.get(1) {
            if code.as_ref() != b"0" {
                let msg = match a.get(2) {
                    Some(Frame::Bulk(m)) => String::from_utf8_lossy(m).to_string(),
                    other => format!("{other:?}"),
                };
                return Some(format!(
                    "ERR error on slotsrestore-async, migration failed: {msg}"
                ));
            }
        }
    }
    None
}

/// Parse `maxbulks maxbytes` (args 4 and 5 of the async forms), with Codis's defaults for 0:
/// 200 elements per chunk (at most 512K) and 512 KB per window.
fn async_limits(args: &Args) -> Result<Limits, String> {
    let maxbulks = match resp::parse_i64(&args[4]) {
        Some(0) => 200,
        Some(n) if (1..=512 * 1024).contains(&n) => n as usize,
        _ => return Err("ERR invalid value of maxbulks".into()),
    };
    let maxbytes = match resp::parse_i64(&args[5]) {
        Some(0) => 512 * 1024,
        Some(n) if n > 0 => n as usize,
        _ => return Err("ERR invalid value of maxbytes".into()),
    };
    Ok(Limits { maxbulks, maxbytes })
}

/// Parse `host port timeout` (args 1..=3). Timeout 0 means Codis's default.
fn target_args(args: &Args, default_ms: u64) -> Result<(String, u16, Duration), String> {
    let host = String::from_utf8_lossy(&args[1]).to_string();
    let port = resp::parse_i64(&args[2])
        .filter(|p| (1..65536).contains(p))
        .ok_or_else(|| "ERR invalid port".to_string())?;
    let t = resp::parse_i64(&args[3])
        .filter(|t| *t >= 0)
        .ok_or_else(|| "ERR invalid timeout".to_string())?;
    let ms = if t == 0 { default_ms } else { t as u64 };
    Ok((host, port as u16, Duration::from_millis(ms)))
}

/// On the owning shard: collect `keys` (expanded to their tag groups when `tags`), serialise them
/// (the small ones into the returned [`Wire`]) and mark them in flight.
fn collect(
    sh: &mut Shard,
    db: usize,
    seeds: Vec<Bytes>,
    tags: bool,
    lim: Limits,
    now: u64,
) -> (Vec<Item>, Wire) {
    let mut items = Vec::with_capacity(seeds.len());
    let mut wire = Wire::new(seeds.len());
    collect_into(sh, db, seeds, tags, lim, now, &mut items, &mut wire);
    (items, wire)
}

/// [`collect`] appending to `items` and `wire`.
#[allow(clippy::too_many_arguments)]
fn collect_into(
    sh: &mut Shard,
    db: usize,
    seeds: Vec<Bytes>,
    tags: bool,
    lim: Limits,
    now: u64,
    items: &mut Vec<Item>,
    wire: &mut Wire,
) {
    // Each key once (a set, not a scan of the list: a call carries hundreds of seeds), in the
    // order first seen; each tag's group expanded once.
    let mut keys: Vec<Bytes> = Vec::with_capacity(seeds.len());
    let mut seen: std::collections::HashSet<Bytes, ahash::RandomState> =
        std::collections::HashSet::with_capacity_and_hasher(seeds.len(), Default::default());
    let mut tags_done: std::collections::HashSet<Vec<u8>, ahash::RandomState> = Default::default();
    for k in seeds {
        if seen.contains(&k) {
            continue;
        }
        if tags && resp::slot::has_tag(&k) {
            let tag = resp::slot::hash_tag(&k).to_vec();
            if tags_done.contains(&tag) {
                continue;
            }
            let slot = resp::slot(&k) as usize;
            if let Some(t) = sh.dbs[db].slot(slot) {
                for other in t.map.keys() {
                    if resp::slot::has_tag(other) && resp::slot::hash_tag(other) == tag.as_slice() {
                        let o = Bytes::copy_from_slice(other);
                        // A member already travelling (taken by an earlier slice of this call,
                        // before the group grew) is not sent twice.
                        if !sh.in_flight.contains(&(db, o.clone())) && seen.insert(o.clone()) {
                            keys.push(o);
                        }
                    }
                }
            }
            tags_done.insert(tag);
        } else {
            seen.insert(k.clone());
            keys.push(k);
        }
    }
    for key in keys {
        let Some(e) = sh.dbs[db].get(&key, now) else {
            continue;
        };
        let ttl = if e.expire_at() == 0 {
            0
        } else {
            e.expire_at().saturating_sub(now).max(1)
        };
        let body = match chunk_kind(e.value, lim) {
            Some((kind, len)) => Body::Chunked {
                kind,
                len,
                version: sh.dbs[db].watch(&key, now),
            },
            None => {
                wire.add(&key, ttl, e.value);
                Body::Object {
                    snapshot: e.to_entry(),
                }
            }
        };
        sh.in_flight.insert((db, key.clone()));
        items.push(Item { key, ttl, body });
    }
}

/// On the owning shard: the next `n` live keys of the picked slot not in `batch.taken`,
/// serialised, marked in flight and appended to `batch.items` and `batch.wire`, each read once
/// (what [`collect`] does for seeds, reading the slot's table instead of looking each key up).
/// A key with a hash tag, when `pick.tags`, goes through [`collect`]'s expansion to its group.
/// Every key appended goes into `batch.taken` (by hash: a collision only leaves a key for the
/// next call). Returns how many of the slot's keys were looked at: fewer than `n` when the slot
/// has no more.
fn collect_slot_into(sh: &mut Shard, pick: Pick, n: usize, batch: &mut Batch) -> usize {
    let _low = crate::lowprio::enter();
    let Pick {
        db,
        slot,
        tags,
        lim,
        now,
    } = pick;
    let Some(t) = sh.dbs[db].slot(slot) else {
        return 0;
    };
    let Batch { items, wire, taken } = batch;
    let first = items.len();
    let mut tagged = Vec::new();
    let mut chunked = Vec::new();
    // The keys in one buffer, handed out as slices of it (one allocation, not one per key).
    let mut buf = Vec::new();
    let mut spans = Vec::with_capacity(n.min(t.len()));
    let skip = !taken.is_empty();
    let mut seen = 0;
    for (k, e) in t
        .map
        .iter_prefetched()
        .filter(|(k, e)| !e.expired(now) && !(skip && taken.contains(&crate::keytable::hash(k))))
        .take(n)
    {
        seen += 1;
        if tags && resp::slot::has_tag(k) {
            tagged.push(Bytes::copy_from_slice(k));
            continue;
        }
        let ttl = if e.expire_at() == 0 {
            0
        } else {
            e.expire_at().saturating_sub(now).max(1)
        };
        let body = match chunk_kind(e.value, lim) {
            Some((kind, len)) => {
                chunked.push(items.len());
                Body::Chunked {
                    kind,
                    len,
                    version: 0,
                }
            }
            None => {
                wire.add(k, ttl, e.value);
                Body::Object {
                    snapshot: e.to_entry(),
                }
            }
        };
        spans.push(buf.len()..buf.len() + k.len());
        buf.extend_from_slice(k);
        items.push(Item {
            key: Bytes::new(),
            ttl,
            body,
        });
    }
    let all = Bytes::from(buf);
    for (it, span) in items[first..].iter_mut().zip(spans) {
        it.key = all.slice(span);
    }
    for i in chunked {
        let v = sh.dbs[db].watch(&items[i].key, now);
        if let Body::Chunked { version, .. } = &mut items[i].body {
            *version = v;
        }
    }
    sh.in_flight.reserve(items.len() - first);
    for it in &items[first..] {
        sh.in_flight.insert((db, it.key.clone()));
    }
    if !tagged.is_empty() {
        collect_into(sh, db, tagged, tags, lim, now, items, wire);
    }
    // A later slice of the same call must not take these again (their groups included).
    taken.reserve(items.len() - first);
    for it in &items[first..] {
        taken.insert(crate::keytable::hash(&it.key));
    }
    seen
}

/// Keys a migration step handles per slice of work on its shard (collecting, or deleting
/// after the acknowledgement), with [`glommio::yield_to_io`] between slices: the shard's other
/// clients wait for one slice, not for a whole batch of `numkeys` keys.
const SLICE_KEYS: usize = 128;

/// What the slices of one step have collected so far.
struct Batch {
    items: Vec<Item>,
    wire: Wire,
    /// Hashes of the keys in `items` (see [`collect_slot_into`]).
    taken: std::collections::HashSet<u64, ahash::RandomState>,
}

impl Batch {
    fn new(n: usize) -> Batch {
        Batch {
            items: Vec::with_capacity(n.min(4096)),
            wire: Wire::new(n),
            taken: Default::default(),
        }
    }
}

/// Which keys a slot's step collects: those of `slot` in database `db` that are live at `now`,
/// with their tag groups when `tags`, big ones chunked past `lim`.
#[derive(Clone, Copy)]
struct Pick {
    db: usize,
    slot: usize,
    tags: bool,
    lim: Limits,
    now: u64,
}

/// [`collect_slot_into`] for `n` keys, slice by slice.
async fn collect_slot(core: &Rc<Core>, owner: usize, pick: Pick, n: usize) -> (Vec<Item>, Wire) {
    let mut batch = Batch::new(n);
    loop {
        let want = (n - batch.items.len()).min(SLICE_KEYS);
        let last = want == n - batch.items.len();
        let (b, seen) = core
            .run_on(owner, move |sh| {
                let seen = collect_slot_into(sh, pick, want, &mut batch);
                (batch, seen)
            })
            .await;
        if last || seen < want || b.items.len() >= n {
            return (b.items, b.wire);
        }
        batch = b;
        glommio::yield_to_io().await;
    }
}

/// After the target acknowledged: delete what is unchanged, clear in-flight marks. Returns the
/// keys that changed meanwhile (to send again) and the keys left in the slot.
fn finish(
    sh: &mut Shard,
    db: usize,
    items: Vec<Item>,
    now: u64,
    acked: bool,
) -> (usize, Vec<Bytes>, usize) {
    let _low = crate::lowprio::enter();
    let mut moved = 0;
    let mut changed = Vec::new();
    let slot = items.last().map(|it| resp::slot(&it.key) as usize);
    // The keys' nodes left the cache during the round trip: ask for them all before the first
    // lookup, not one miss at a time.
    sh.prefetch(
        items
            .iter()
            .map(|it| (db, &it.key[..], crate::shard::NO_SLOT, None)),
    );
    for it in items {
        sh.in_flight.remove(&(db, it.key.clone()));
        let (same, deleted) = match &it.body {
            Body::Chunked { version, .. } => {
                let v = sh.dbs[db].watch_version(&it.key, now);
                sh.dbs[db].unwatch(&it.key);
                let same = v == Some(*version) && sh.dbs[db].get(&it.key, now).is_some();
                (same, false)
            }
            // Acknowledged and unchanged: checked and deleted in one lookup.
            Body::Object { snapshot } if acked => {
                let same = sh.dbs[db].delete_live_if(&it.key, now, |cur| {
                    cur.value == snapshot.value && cur.expire_at() == snapshot.expire_at()
                }) == Some(true);
                (same, same)
            }
            Body::Object { .. } => (false, false),
        };
        if !acked {
            continue;
        }
        if same {
            if !deleted {
                sh.dbs[db].delete(&it.key);
            }
            if crate::repl::prop::active() {
                let fx = sh.expired_effects();
                sh.emit(fx);
                sh.emit(vec![crate::repl::prop::del(db, &it.key)]);
            }
            moved += 1;
        } else if sh.dbs[db].get(&it.key, now).is_some() {
            changed.push(it.key);
        } else {
            // Deleted meanwhile at the source: the target holds a copy that must go too.
            changed.push(it.key);
            moved += 1;
        }
    }
    let left = slot.and_then(|s| sh.dbs[db].slot(s)).map_or(0, |t| t.len());
    (moved, changed, left)
}

/// [`finish`] [`SLICE_KEYS`] keys at a time, yielding to the shard's other clients between
/// slices.
async fn finish_sliced(
    core: &Rc<Core>,
    owner: usize,
    db: usize,
    items: Vec<Item>,
    now: u64,
    acked: bool,
) -> (usize, Vec<Bytes>, usize) {
    let (mut moved, mut changed, mut left) = (0, Vec::new(), 0);
    let mut rest = items.into_iter().peekable();
    while rest.peek().is_some() {
        let slice: Vec<Item> = rest.by_ref().take(SLICE_KEYS).collect();
        let (m, c, l) = core
            .run_on(owner, move |sh| finish(sh, db, slice, now, acked))
            .await;
        moved += m;
        changed.extend(c);
        left = l;
        if rest.peek().is_some() {
            glommio::yield_to_io().await;
        }
    }
    (moved, changed, left)
}

/// The commands a connection needs before restoring into `db`: `[AUTH pass] [SELECT db]`.
/// Returns (bytes, replies).
fn handshake(t: &Target, db: usize, pass: Option<&[u8]>) -> (BytesMut, usize) {
    let mut b = BytesMut::new();
    let mut n = 0;
    if let Some(p) = pass {
        if t.db.is_none() {
            Frame::command([Bytes::from_static(b"AUTH"), Bytes::copy_from_slice(p)]).encode(&mut b);
            n += 1;
        }
    }
    if t.db != Some(db) {
        Frame::command([Bytes::from_static(b"SELECT"), Bytes::from(db.to_string())]).encode(&mut b);
        n += 1;
    }
    (b, n)
}

/// What a migration step starts from.
enum Seeds {
    /// These keys.
    Keys(Vec<Bytes>),
    /// The next `n` keys of this slot.
    Slot { slot: usize, n: usize },
}

/// Move `seeds` (and their tag groups when `tags`) of database `db` to the target. Returns
/// (keys moved, keys left in the slot).
#[allow(clippy::too_many_arguments)]
async fn migrate(
    core: &Rc<Core>,
    db: usize,
    host: &str,
    port: u16,
    timeout: Duration,
    seeds: Seeds,
    tags: bool,
    lim: Limits,
) -> Result<(usize, usize), String> {
    let slot = match &seeds {
        Seeds::Keys(keys) => match keys.first() {
            Some(first) => resp::slot(first),
            None => return Ok((0, 0)),
        },
        Seeds::Slot { slot, .. } => *slot as u16,
    };
    // No core-to-core slot move while this runs (it pins `owner`).
    let _no_moves = crate::slotmove::pin_layout().await;
    let owner = core.shared.owner(slot);
    let addr = format!("{host}:{port}");
    let pass = core.shared.config().requirepass;
    let mut total = 0;
    let mut left = 0;
    let mut seeds = seeds;
    for attempt in 0..5 {
        let now = crate::shared::now_ms();
        let asked = match &seeds {
            Seeds::Keys(keys) if attempt > 0 => keys.clone(),
            _ => Vec::new(),
        };
        let (items, wire) = match seeds {
            Seeds::Keys(keys) => {
                core.run_on(owner, move |sh| collect(sh, db, keys, tags, lim, now))
                    .await
            }
            Seeds::Slot { slot, n } => {
                let pick = Pick {
                    db,
                    slot,
                    tags,
                    lim,
                    now,
                };
                collect_slot(core, owner, pick, n).await
            }
        };
        if attempt > 0 {
            // Keys sent before and deleted at the source since: the target's copies must go too.
            let gone: Vec<Bytes> = asked
                .into_iter()
                .filter(|k| !items.iter().any(|it| &it.key == k))
                .collect();
            if !gone.is_empty() {
                delete_at_target(&addr, &gone, db, pass.as_deref(), timeout).await?;
            }
        }
        if items.is_empty() {
            break;
        }
        RUNNING.with(|r| {
            *r.borrow_mut() = Some(Running {
                host: host.to_string(),
                port,
                timeout: timeout.as_millis() as u64,
                keys: items.len(),
                started: Instant::now(),
            })
        });
        let sent = send(
            core,
            owner,
            &addr,
            &items,
            &wire,
            db,
            pass.as_deref(),
            timeout,
            lim,
        )
        .await;
        drop(wire);
        RUNNING.with(|r| r.borrow_mut().take());
        let acked = sent.is_ok();
        let now = crate::shared::now_ms();
        let (moved, changed, l) = finish_sliced(core, owner, db, items, now, acked).await;
        sent?;
        total += moved;
        left = l;
        if changed.is_empty() {
            return Ok((total, left));
        }
        seeds = Seeds::Keys(changed);
    }
    Ok((total, left))
}

/// Send `items` and wait for every acknowledgement: the small ones in one pipelined batch, then
/// each big one chunk window by chunk window (`delete`, chunks with a temporary TTL of 3×timeout,
/// then `expire` with the real TTL). A big key that changed at the source meanwhile is left
/// incomplete at the target (its temporary TTL cleans it up); `finish` sees the change and the
/// key is sent again.
#[allow(clippy::too_many_arguments)]
async fn send(
    core: &Rc<Core>,
    owner: usize,
    addr: &str,
    items: &[Item],
    wire: &Wire,
    db: usize,
    pass: Option<&[u8]>,
    timeout: Duration,
    lim: Limits,
) -> Result<(), String> {
    let mut t = connect(addr, timeout).await?;
    let (mut req, mut n) = handshake(&t, db, pass);
    n += wire.encode(&mut req);
    if n > 0 {
        // On error the connection is dropped, not returned to the pool.
        t.round_trip(&req, n, timeout).await?;
    }
    t.db = Some(db);
    let tmp_ttl = (timeout.as_millis() as u64).saturating_mul(3).max(1000);
    for it in items {
        let Body::Chunked { kind, len, version } = it.body else {
            continue;
        };
        let mut req = BytesMut::new();
        Frame::command([
            Bytes::from_static(b"SLOTSRESTORE-ASYNC"),
            Bytes::from_static(b"delete"),
            it.key.clone(),
        ])
        .encode(&mut req);
        let mut n = 1;
        let mut pos = 0;
        let mut complete = false;
        loop {
            let key = it.key.clone();
            let now = crate::shared::now_ms();
            let w = core
                .run_on(owner, move |sh| {
                    window(sh, db, &key, kind, version, len, pos, lim, tmp_ttl, now)
                })
                .await;
            let Some((cmds, taken)) = w else {
                break;
            };
            pos += taken;
            for c in cmds {
                Frame::command(c).encode(&mut req);
                n += 1;
            }
            if taken == 0 || pos >= len {
                Frame::command([
                    Bytes::from_static(b"SLOTSRESTORE-ASYNC"),
                    Bytes::from_static(b"expire"),
                    it.key.clone(),
                    Bytes::from(it.ttl.to_string()),
                ])
                .encode(&mut req);
                n += 1;
                complete = true;
            }
            t.round_trip(&req, n, timeout).await?;
            req.clear();
            n = 0;
            if complete {
                break;
            }
        }
        if !complete {
            tracing::debug!(key = ?it.key, "big key changed while migrating, sending it again");
        }
    }
    give_back(addr, t);
    Ok(())
}

/// `DEL` keys at the target (keys deleted at the source while their copies travelled).
async fn delete_at_target(
    addr: &str,
    keys: &[Bytes],
    db: usize,
    pass: Option<&[u8]>,
    timeout: Duration,
) -> Result<(), String> {
    let mut t = connect(addr, timeout).await?;
    let (mut req, mut n) = handshake(&t, db, pass);
    let mut del = vec![Bytes::from_static(b"DEL")];
    del.extend(keys.iter().cloned());
    Frame::command(del).encode(&mut req);
    n += 1;
    t.round_trip(&req, n, timeout).await?;
    t.db = Some(db);
    give_back(addr, t);
    Ok(())
}

fn reply_pair(out: &mut BytesMut, a: usize, b: usize) {
    encode::array(out, 2);
    encode::int(out, a as i64);
    encode::int(out, b as i64);
}

/// Run a migration command and append its reply to `out`.
pub async fn run(
    core: &Rc<Core>,
    sess: &mut Session,
    spec: &'static CommandSpec,
    idx: usize,
    args: Args,
    out: &mut BytesMut,
) {
    core.shard.borrow_mut().stats[idx].calls += 1;
    let db = sess.db;
    let name = spec.name;
    match name {
        "slotsmgrt-async-fence" => {
            while RUNNING.with(|r| r.borrow().is_some()) {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            return encode::ok(out);
        }
        "slotsmgrt-async-cancel" => {
            // Steps are not interruptible mid-batch; nothing is queued between calls.
            return encode::int(out, 0);
        }
        "slotsmgrt-async-status" => {
            let r = RUNNING.with(|r| r.borrow().clone());
            return match r {
                None => encode::null_array(out, sess.proto),
                Some(r) => {
                    encode::array(out, 10);
                    for (k, v) in [
                        ("host", r.host.clone()),
                        ("port", r.port.to_string()),
                        ("timeout", r.timeout.to_string()),
                        ("sending_msgs", r.keys.to_string()),
                        ("used_ms", r.started.elapsed().as_millis().to_string()),
                    ] {
                        encode::bulk(out, k.as_bytes());
                        encode::bulk(out, v.as_bytes());
                    }
                }
            };
        }
        "slotsmgrt-exec-wrapper" => return exec_wrapper(core, sess, args, out).await,
        // The async protocol's handshake, target side: answered as SLOTSRESTORE-ASYNC-ACK.
        "slotsrestore-async-auth" => {
            let pass = core.shared.config().requirepass;
            let ok = pass.as_deref().is_none_or(|p| p == args[1].as_ref());
            if ok {
                sess.authed = true;
            }
            return crate::cmd::slots::ack(
                out,
                if ok { 0 } else { 1 },
                if ok { "OK" } else { "invalid password" },
            );
        }
        "slotsrestore-async-select" => {
            let ndb = core.shard.borrow().dbs.len() as i64;
            return match resp::parse_i64(&args[1]) {
                Some(n) if (0..ndb).contains(&n) => {
                    sess.db = n as usize;
                    crate::cmd::slots::ack(out, 0, "OK")
                }
                _ => crate::cmd::slots::ack(out, 1, "invalid DB index"),
            };
        }
        "slotsrestore-async-ack" => return encode::ok(out),
        _ => {}
    }
    let asynch = name.ends_with("-async");
    let tags = name.starts_with("slotsmgrttag");
    let (host, port, timeout) = match target_args(&args, if asynch { 30_000 } else { 100 }) {
        Ok(t) => t,
        Err(e) => return encode::error(out, &e),
    };
    let lim = if asynch {
        match async_limits(&args) {
            Ok(l) => l,
            Err(e) => return encode::error(out, &e),
        }
    } else {
        Limits::NEVER
    };
    let result = match name {
        "slotsmgrtone" | "slotsmgrttagone" => {
            let key = args[4].clone();
            migrate(
                core,
                db,
                &host,
                port,
                timeout,
                Seeds::Keys(vec![key]),
                tags,
                lim,
            )
            .await
            .map(|(n, _)| {
                encode::int(out, n as i64);
            })
        }
        "slotsmgrtone-async" | "slotsmgrttagone-async" => {
            let keys: Vec<Bytes> = args[6..].to_vec();
            let mut total = 0;
            let mut res = Ok(());
            // Keys may live on different cores: move each core's keys in one step.
            let mut by_core: HashMap<usize, Vec<Bytes>> = HashMap::new();
            for k in keys {
                by_core
                    .entry(core.shared.owner(resp::slot(&k)))
                    .or_default()
                    .push(k);
            }
            for (_, ks) in by_core {
                match migrate(core, db, &host, port, timeout, Seeds::Keys(ks), tags, lim).await {
                    Ok((n, _)) => total += n,
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                }
            }
            res.map(|_| encode::int(out, total as i64))
        }
        _ => {
            // slotsmgrtslot / slotsmgrttagslot [-async]
            let slot_at = if asynch { 6 } else { 4 };
            let slot = match resp::parse_i64(&args[slot_at]) {
                Some(s) if (0..resp::MAX_SLOTS as i64).contains(&s) => s as usize,
                Some(s) => return encode::error(out, &format!("ERR invalid slot number = {s}")),
                None => return encode::error(out, err::NOT_INT),
            };
            let numkeys = if asynch {
                match resp::parse_i64(&args[7]) {
                    Some(n) if n >= 0 => {
                        if n == 0 {
                            100
                        } else {
                            n as usize
                        }
                    }
                    _ => return encode::error(out, "ERR invalid numkeys"),
                }
            } else {
                1
            };
            let seeds = Seeds::Slot { slot, n: numkeys };
            migrate(core, db, &host, port, timeout, seeds, tags, lim)
                .await
                .map(|(n, left)| reply_pair(out, n, left))
        }
    };
    if let Err(e) = result {
        tracing::warn!("{name} to {host}:{port} failed: {e}");
        encode::error(out, &e);
    }
}

/// `SLOTSMGRT-EXEC-WRAPPER hashkey cmd args…` → `[code, reply]`.
async fn exec_wrapper(core: &Rc<Core>, sess: &mut Session, args: Args, out: &mut BytesMut) {
    let hashkey = args[1].clone();
    let inner: Args = args[2..].to_vec();
    let Some(spec) = command::lookup(&inner[0]) else {
        encode::array(out, 2);
        encode::int(out, -1);
        encode::error(out, &crate::conn::unknown_command(&inner));
        return;
    };
    let cidx = crate::cmd::index_of(spec);
    if !spec.arity_ok(inner.len()) || crate::cmd::handler(cidx).is_none() {
        encode::array(out, 2);
        encode::int(out, -1);
        encode::error(
            out,
            &format!("ERR wrong number of arguments for '{}' command", spec.name),
        );
        return;
    }
    let db = sess.db;
    let proto = sess.proto;
    let now = crate::shared::now_ms();
    let write = spec.has(WRITE);
    let (code, body): (i64, Vec<u8>) = core
        .run_on_slot(resp::slot(&hashkey), move |sh| {
            if sh.in_flight.contains(&(db, hashkey.clone())) {
                if write {
                    return (
                        1,
                        b"-ERR the key is being migrated, retry later\r\n".to_vec(),
                    );
                }
            } else if sh.dbs[db].get(&hashkey, now).is_none() {
                return (0, b"-ERR the key is not on this node\r\n".to_vec());
            }
            let mut b = BytesMut::new();
            let cmd = Cmd {
                db: db as u8,
                idx: cidx as u16,
                args: inner,
                slot: crate::shard::NO_SLOT,
            };
            if !sh.execute(&cmd, proto, now, &mut b) {
                // Its keys are not all in the hash key's slot, which lives here.
                return (0, b"-ERR the key is not on this node\r\n".to_vec());
            }
            (2, b.to_vec())
        })
        .await;
    encode::array(out, 2);
    encode::int(out, code);
    out.extend_from_slice(&body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn s(v: &str) -> Value {
        Value::Str(v.as_bytes().into())
    }

    /// One slice of up to `n` keys, as [`collect_slot`] takes them.
    fn slice(sh: &mut Shard, slot: usize, n: usize, tags: bool, b: &mut Batch) -> usize {
        let pick = Pick {
            db: 0,
            slot,
            tags,
            lim: Limits::NEVER,
            now: 1_000_000,
        };
        collect_slot_into(sh, pick, n, b)
    }

    fn collect_all(sh: &mut Shard, slot: usize, n: usize) -> (Vec<Item>, Wire) {
        let mut b = Batch::new(n);
        slice(sh, slot, n, false, &mut b);
        (b.items, b.wire)
    }

    /// A step's keys are collected slice by slice: no key is taken twice, the last slice says
    /// the slot has no more, and a tag group that grows between two slices sends only its new
    /// member again (a second copy of a key already travelling would be deleted at the target
    /// as "deleted meanwhile" when the first copy's deletion at the source is seen).
    #[test]
    fn slices_take_each_key_once() {
        let mut sh = Shard::new(0, 1, |_| true);
        for i in 0..10 {
            sh.dbs[0].insert(format!("{{t}}{i}").as_bytes(), s("v"), 0);
        }
        let slot = resp::slot(b"{t}0") as usize;
        let mut b = Batch::new(0);
        let mut seen = Vec::new();
        loop {
            let n = slice(&mut sh, slot, 3, false, &mut b);
            seen.push(n);
            if n < 3 {
                break;
            }
        }
        assert_eq!(seen, [3, 3, 3, 1]);
        let mut keys: Vec<Bytes> = b.items.iter().map(|it| it.key.clone()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 10);
        assert_eq!(b.wire.keys, 10);
        assert_eq!(sh.in_flight.len(), 10);

        // With tags, the first key reached brings its whole group; a member added before the
        // next slice comes alone.
        let mut sh = Shard::new(0, 1, |_| true);
        for i in 0..10 {
            sh.dbs[0].insert(format!("{{t}}{i}").as_bytes(), s("v"), 0);
        }
        let mut b = Batch::new(0);
        assert_eq!(slice(&mut sh, slot, 2, true, &mut b), 2);
        assert_eq!(b.items.len(), 10);
        sh.dbs[0].insert(b"{t}new", s("v"), 0);
        assert_eq!(slice(&mut sh, slot, 2, true, &mut b), 1);
        assert_eq!(b.items.len(), 11);
        assert_eq!(&b.items[10].key[..], b"{t}new");
        assert_eq!(b.wire.keys, 11);
        assert_eq!(sh.in_flight.len(), 11);
        assert_eq!(slice(&mut sh, slot, 2, true, &mut b), 0);
    }

    /// A slot drain's batch is deleted at the source after the acknowledgement only where each
    /// key is still what was sent: a key rewritten, given a new expiry or deleted while it
    /// travelled is reported changed, and nothing stays in flight.
    #[test]
    fn finish_deletes_only_what_is_unchanged() {
        let mut sh = Shard::new(0, 1, |_| true);
        let now = 1_000_000;
        let keys = [
            "{t}same",
            "{t}rewritten",
            "{t}expiry",
            "{t}deleted",
            "{t}hash",
        ];
        for k in &keys[..4] {
            sh.dbs[0].insert(k.as_bytes(), s(&format!("value of {k}")), 0);
        }
        let mut h = Hash::default();
        h.set(b"f", b"v");
        sh.dbs[0].insert(b"{t}hash", Value::Hash(h), 0);
        let slot = resp::slot(b"{t}same") as usize;
        let (items, wire) = collect_all(&mut sh, slot, 100);
        assert_eq!(items.len(), 5);
        assert!(!wire.buf.is_empty());
        assert!(items
            .iter()
            .all(|it| matches!(it.body, Body::Object { .. })));
        assert_eq!(sh.in_flight.len(), 5);
        // Meanwhile, at the source:
        sh.dbs[0].insert(b"{t}rewritten", s("value of {t}same"), 0);
        assert!(sh.dbs[0].set_expire(b"{t}expiry", now + 60_000, now));
        assert!(sh.dbs[0].delete(b"{t}deleted"));
        let (moved, changed, left) = finish(&mut sh, 0, items, now, true);
        // Moved: the unchanged string and hash, and the deleted key (whose copy the caller then
        // deletes at the target, as it is reported changed).
        assert_eq!(moved, 3);
        let mut changed: Vec<&[u8]> = changed.iter().map(|k| &k[..]).collect();
        changed.sort();
        assert_eq!(
            changed,
            [&b"{t}deleted"[..], &b"{t}expiry"[..], &b"{t}rewritten"[..]]
        );
        assert_eq!(left, 2);
        assert!(sh.dbs[0].get(b"{t}same", now).is_none());
        assert!(sh.dbs[0].get(b"{t}hash", now).is_none());
        assert!(sh.dbs[0].get(b"{t}rewritten", now).is_some());
        assert!(sh.in_flight.is_empty());

        // Not acknowledged: nothing is deleted, nothing stays in flight.
        let (items, _) = collect_all(&mut sh, slot, 100);
        assert_eq!(items.len(), 2);
        let (moved, changed, left) = finish(&mut sh, 0, items, now, false);
        assert_eq!((moved, changed.len(), left), (0, 0, 2));
        assert!(sh.in_flight.is_empty());
    }
}
