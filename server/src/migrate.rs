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
    payload: Vec<u8>,
    snapshot: Entry,
}

/// A cached connection to a migration target.
struct Target {
    stream: TcpStream,
    rbuf: BytesMut,
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
    let stream = glommio::timer::timeout(timeout, async {
        TcpStream::connect(addr)
            .await
            .map_err(|e| glommio::GlommioError::IoError(std::io::Error::other(e.to_string())))
    })
    .await
    .map_err(io_err)?;
    let _ = stream.set_nodelay(true);
    Ok(Target {
        stream,
        rbuf: BytesMut::with_capacity(4096),
        db: None,
        last_used: Instant::now(),
    })
}

fn give_back(addr: &str, mut t: Target) {
    t.last_used = Instant::now();
    POOL.with(|p| p.borrow_mut().entry(addr.to_string()).or_default().push(t));
}

impl Target {
    /// Write `req`, then read `n` replies (each checked by `ok`).
    async fn round_trip(
        &mut self,
        req: &[u8],
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Frame>, String> {
        let fut = async {
            self.stream
                .write_all(req)
                .await
                .map_err(|e| glommio::GlommioError::IoError(e))?;
            let mut out = Vec::with_capacity(n);
            let mut chunk = vec![0u8; 16 * 1024];
            while out.len() < n {
                match Frame::parse(&mut self.rbuf) {
                    Ok(Some(f)) => {
                        out.push(f);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Err(glommio::GlommioError::IoError(std::io::Error::other(
                            e.to_string(),
                        )))
                    }
                }
                let k = self
                    .stream
                    .read(&mut chunk)
                    .await
                    .map_err(glommio::GlommioError::IoError)?;
                if k == 0 {
                    return Err(glommio::GlommioError::IoError(std::io::Error::other(
                        "target closed the connection",
                    )));
                }
                self.rbuf.extend_from_slice(&chunk[..k]);
            }
            Ok(out)
        };
        glommio::timer::timeout(timeout, fut)
            .await
            .map_err(|e| format!("IOERR error or timeout reading from target: {e}"))
    }
}

fn frame_error(f: &Frame) -> Option<String> {
    match f {
        Frame::Error(e) => Some(String::from_utf8_lossy(e).to_string()),
        _ => None,
    }
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
/// and mark them in flight. At most `limit` keys plus the rest of the last tag group.
fn collect(sh: &mut Shard, db: usize, seeds: Vec<Bytes>, tags: bool, now: u64) -> Vec<Item> {
    let mut keys: Vec<Bytes> = Vec::new();
    for k in seeds {
        if keys.contains(&k) {
            continue;
        }
        if tags && resp::slot::has_tag(&k) {
            let tag = resp::slot::hash_tag(&k).to_vec();
            let slot = resp::slot(&k) as usize;
            if let Some(t) = sh.dbs[db].slot(slot) {
                for other in t.map.keys() {
                    if resp::slot::has_tag(other) && resp::slot::hash_tag(other) == tag.as_slice() {
                        let o = Bytes::copy_from_slice(other);
                        if !keys.contains(&o) {
                            keys.push(o);
                        }
                    }
                }
            }
        } else {
            keys.push(k);
        }
    }
    let mut items = Vec::new();
    for key in keys {
        let Some(e) = sh.dbs[db].get(&key, now).cloned() else {
            continue;
        };
        let ttl = if e.expire_at() == 0 {
            0
        } else {
            e.expire_at().saturating_sub(now).max(1)
        };
        let payload = crate::dump::dump_value(&e.value);
        sh.in_flight.insert((db, key.clone()));
        items.push(Item {
            key,
            ttl,
            payload,
            snapshot: e,
        });
    }
    items
}

/// Keys of `slot` to migrate next: up to `n` keys (a tag group counts as its members).
fn pick(sh: &mut Shard, db: usize, slot: usize, n: usize, now: u64) -> Vec<Bytes> {
    let Some(t) = sh.dbs[db].slot(slot) else {
        return Vec::new();
    };
    t.map
        .iter()
        .filter(|(_, e)| e.expire_at() == 0 || e.expire_at() > now)
        .take(n)
        .map(|(k, _)| Bytes::copy_from_slice(k))
        .collect()
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
    let mut moved = 0;
    let mut changed = Vec::new();
    let mut slot = None;
    for it in items {
        sh.in_flight.remove(&(db, it.key.clone()));
        slot = Some(resp::slot(&it.key) as usize);
        if !acked {
            continue;
        }
        let same = match sh.dbs[db].get(&it.key, now) {
            Some(cur) => {
                cur.value == it.snapshot.value && cur.expire_at() == it.snapshot.expire_at()
            }
            None => false,
        };
        if same {
            sh.dbs[db].remove(&it.key);
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

/// Encode the restore request for `items`: `[AUTH][SELECT] SLOTSRESTORE k ttl payload …` (sync)
/// or one `SLOTSRESTORE-ASYNC object k ttl payload` per key (async). Returns (bytes, replies).
fn restore_request(
    t: &Target,
    items: &[Item],
    db: usize,
    pass: Option<&[u8]>,
    asynch: bool,
    keys_missing: &[Bytes],
) -> (BytesMut, usize) {
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
    if asynch {
        for it in items {
            Frame::command([
                Bytes::from_static(b"SLOTSRESTORE-ASYNC"),
                Bytes::from_static(b"object"),
                it.key.clone(),
                Bytes::from(it.ttl.to_string()),
                Bytes::from(it.payload.clone()),
            ])
            .encode(&mut b);
            n += 1;
        }
        for k in keys_missing {
            Frame::command([
                Bytes::from_static(b"SLOTSRESTORE-ASYNC"),
                Bytes::from_static(b"delete"),
                k.clone(),
            ])
            .encode(&mut b);
            n += 1;
        }
    } else if !items.is_empty() {
        encode::array(&mut b, 1 + 3 * items.len());
        encode::bulk(&mut b, b"SLOTSRESTORE");
        for it in items {
            encode::bulk(&mut b, &it.key);
            encode::bulk(&mut b, it.ttl.to_string().as_bytes());
            encode::bulk(&mut b, &it.payload);
        }
        n += 1;
    }
    (b, n)
}

/// Move `seeds` (and their tag groups when `tags`) of database `db` to the target. Returns
/// (keys moved, keys left in the slot).
async fn migrate(
    core: &Rc<Core>,
    db: usize,
    host: &str,
    port: u16,
    timeout: Duration,
    seeds: Vec<Bytes>,
    tags: bool,
    asynch: bool,
) -> Result<(usize, usize), String> {
    let Some(first) = seeds.first() else {
        return Ok((0, 0));
    };
    let owner = core.shared.owner(resp::slot(first));
    let addr = format!("{host}:{port}");
    let pass = core.shared.config().requirepass;
    let mut total = 0;
    let mut left = 0;
    let mut seeds = seeds;
    for _attempt in 0..5 {
        let now = crate::shared::now_ms();
        let items = core
            .run_on(owner, move |sh| collect(sh, db, seeds, tags, now))
            .await;
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
        let sent = send(&addr, &items, db, pass.as_deref(), asynch, timeout).await;
        RUNNING.with(|r| r.borrow_mut().take());
        let acked = sent.is_ok();
        let now = crate::shared::now_ms();
        let (moved, changed, l) = core
            .run_on(owner, move |sh| finish(sh, db, items, now, acked))
            .await;
        sent?;
        total += moved;
        left = l;
        if changed.is_empty() {
            return Ok((total, left));
        }
        seeds = changed;
    }
    Ok((total, left))
}

async fn send(
    addr: &str,
    items: &[Item],
    db: usize,
    pass: Option<&[u8]>,
    asynch: bool,
    timeout: Duration,
) -> Result<(), String> {
    let mut t = connect(addr, timeout).await?;
    let (req, n) = restore_request(&t, items, db, pass, asynch, &[]);
    let replies = match t.round_trip(&req, n, timeout).await {
        Ok(r) => r,
        Err(e) => return Err(e), // the connection is dropped, not returned to the pool
    };
    for f in &replies {
        if let Some(e) = frame_error(f) {
            return Err(format!("ERR error on slotsrestore, migration failed: {e}"));
        }
        if let Frame::Array(a) = f {
            // SLOTSRESTORE-ASYNC-ACK errno msg
            if let Some(Frame::Bulk(code)) = a.get(1) {
                if code.as_ref() != b"0" {
                    let msg = a.get(2).map(|m| format!("{m:?}")).unwrap_or_default();
                    return Err(format!(
                        "ERR error on slotsrestore-async, migration failed: {msg}"
                    ));
                }
            }
        }
    }
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
    let result = match name {
        "slotsmgrtone" | "slotsmgrttagone" => {
            let key = args[4].clone();
            migrate(core, db, &host, port, timeout, vec![key], tags, false)
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
                match migrate(core, db, &host, port, timeout, ks, tags, true).await {
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
            let owner = core.shared.owner(slot as u16);
            let now = crate::shared::now_ms();
            let seeds = core
                .run_on(owner, move |sh| pick(sh, db, slot, numkeys, now))
                .await;
            if seeds.is_empty() {
                reply_pair(out, 0, 0);
                return;
            }
            migrate(core, db, &host, port, timeout, seeds, tags, asynch)
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
    let owner = core.shared.owner(resp::slot(&hashkey));
    let (code, body): (i64, Vec<u8>) = core
        .run_on(owner, move |sh| {
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
            sh.execute(
                &Cmd {
                    db: db as u8,
                    idx: cidx as u16,
                    args: inner,
                },
                proto,
                now,
                &mut b,
            );
            (2, b.to_vec())
        })
        .await;
    encode::array(out, 2);
    encode::int(out, code);
    out.extend_from_slice(&body);
}
