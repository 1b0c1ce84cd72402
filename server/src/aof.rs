//! The append-only file: every write effect of the propagation log ([`crate::repl::prop`]), in
//! RESP, appended to `dir/appendfilename` (one file, Redis ≤ 6 layout, optionally starting with
//! an RDB preamble after a rewrite).
//!
//! - A dedicated thread reads the log and writes the file; `appendfsync always` fsyncs every
//!   write and replies wait ([`before_reply`]) until the effects they acknowledge are on disk;
//!   `everysec` fsyncs once a second; `no` leaves it to the kernel.
//! - Start-up replays the file into a standalone all-slot shard before the cores run. A last
//!   command cut short (a crash mid-write) is dropped and the file truncated when
//!   `aof-load-truncated yes` (the default), as Redis does; anything else that does not parse
//!   stops the server.
//! - BGREWRITEAOF: a forkless snapshot ([`crate::persist::snapshot`]) whose instant also opens a
//!   new log reader; the writer thread writes the snapshot as an RDB preamble to a temporary file,
//!   appends what the new reader collected meanwhile, fsyncs, renames it over the AOF and
//!   continues there. No write is lost or doubled: the reader starts exactly at the snapshot.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use resp::command::{lookup, COMMANDS};
use resp::request::RequestParser;
use resp::Proto;

use crate::config::Config;
use crate::core::Core;
use crate::persist::{LoadItem, PersistError};
use crate::repl::prop::{log, Reader};
use crate::shard::{Cmd, Shard};
use crate::shared::now_ms;

/// `appendfsync` policies.
pub const FSYNC_NO: u8 = 0;
pub const FSYNC_EVERYSEC: u8 = 1;
pub const FSYNC_ALWAYS: u8 = 2;

static ENABLED: AtomicBool = AtomicBool::new(false);
static POLICY: AtomicU8 = AtomicU8::new(FSYNC_EVERYSEC);
/// Log offset up to which the file is written (and synced, under `always`).
static SYNCED: AtomicU64 = AtomicU64::new(0);
static REWRITING: AtomicBool = AtomicBool::new(false);
static LAST_REWRITE_OK: AtomicBool = AtomicBool::new(true);
static LAST_WRITE_OK: AtomicBool = AtomicBool::new(true);
static CHANNEL: Mutex<Option<Sender<Msg>>> = Mutex::new(None);

enum Msg {
    /// Switch to a rewritten file: the snapshot, then the reader opened at its instant.
    Rewrite {
        rdb: Vec<u8>,
        reader: Reader,
        done: futures::channel::oneshot::Sender<Result<(), String>>,
    },
    /// Write and fsync what is pending, then answer.
    Flush(std::sync::mpsc::Sender<()>),
    /// `CONFIG SET appendonly no`: write and fsync what is pending, then stop.
    Stop,
}

/// A switch on at run time (`CONFIG SET appendonly yes`) is under way.
static STARTING: AtomicBool = AtomicBool::new(false);

/// Whether `appendonly yes` is in effect.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Parse an `appendfsync` value.
pub fn parse_policy(v: &str) -> Option<u8> {
    match v.to_ascii_lowercase().as_str() {
        "always" => Some(FSYNC_ALWAYS),
        "everysec" => Some(FSYNC_EVERYSEC),
        "no" => Some(FSYNC_NO),
        _ => None,
    }
}

/// Change `appendfsync` at run time.
pub fn set_policy(p: u8) {
    POLICY.store(p, Ordering::Relaxed);
}

/// Under `appendfsync always`: wait until every effect recorded so far is on disk, so a reply
/// never acknowledges a write that a crash could lose.
pub async fn before_reply() {
    if !enabled() || POLICY.load(Ordering::Relaxed) != FSYNC_ALWAYS {
        return;
    }
    let target = log().offset();
    let start = Instant::now();
    while SYNCED.load(Ordering::Acquire) < target {
        if start.elapsed() > Duration::from_secs(10) {
            tracing::warn!("AOF fsync is taking more than 10 seconds; replying anyway");
            return;
        }
        glommio::timer::sleep(Duration::from_micros(100)).await;
    }
}

fn aof_path(cfg: &Config) -> PathBuf {
    Path::new(&cfg.dir).join(&cfg.appendfilename)
}

/// Replay RESP commands into `shard`. Returns the length of the valid prefix of `bytes` and
/// whether a command at the end was cut short.
fn replay(shard: &mut Shard, bytes: &[u8]) -> Result<(usize, bool), String> {
    let mut parser = RequestParser::new(usize::MAX);
    let mut buf = BytesMut::from(bytes);
    let total = bytes.len();
    let mut db = 0usize;
    let mut multi: Option<(usize, Vec<Vec<Bytes>>)> = None;
    let mut valid = 0usize;
    let mut out = BytesMut::new();
    let mut n = 0u64;
    loop {
        let at = total - buf.len();
        let args = match parser.parse(&mut buf) {
            Ok(Some(a)) => a,
            Ok(None) => {
                // Clean end, or a command cut short (also an unfinished MULTI block).
                let cut = !buf.is_empty() || parser.pending_len() > 0 || multi.is_some();
                if let Some((start, _)) = multi {
                    valid = start;
                }
                return Ok((valid, cut));
            }
            Err(e) => {
                return Err(format!(
                    "Bad file format reading the append only file at byte {at}: {e}"
                ))
            }
        };
        let end = total - buf.len();
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        match name.as_str() {
            "multi" => multi = Some((at, Vec::new())),
            "exec" => {
                let Some((_, cmds)) = multi.take() else {
                    return Err(format!(
                        "Unexpected EXEC at byte {at} of the append only file"
                    ));
                };
                for c in cmds {
                    apply(shard, &mut db, c, &mut out)?;
                }
                valid = end;
            }
            _ => match &mut multi {
                Some((_, cmds)) => cmds.push(args),
                None => {
                    apply(shard, &mut db, args, &mut out)?;
                    valid = end;
                }
            },
        }
        n += 1;
        if n % 100_000 == 0 {
            tracing::info!("AOF: {n} commands replayed");
        }
    }
}

fn apply(
    shard: &mut Shard,
    db: &mut usize,
    args: Vec<Bytes>,
    out: &mut BytesMut,
) -> Result<(), String> {
    let ndb = shard.dbs.len();
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let int = |i: usize| -> Result<usize, String> {
        args.get(i)
            .and_then(|a| resp::parse_i64(a))
            .filter(|n| (0..ndb as i64).contains(n))
            .map(|n| n as usize)
            .ok_or_else(|| format!("bad database index in AOF command {name}"))
    };
    match name.as_str() {
        "select" => *db = int(1)?,
        "flushall" => shard.dbs.iter_mut().for_each(|d| {
            d.clear();
        }),
        "flushdb" => {
            shard.dbs[*db].clear();
        }
        "swapdb" => {
            let (a, b) = (int(1)?, int(2)?);
            shard.dbs.swap(a, b);
        }
        "function" if args.len() >= 2 => {
            out.clear();
            crate::script::function_cmd(&args, Proto::Resp2, out);
            if out.first() == Some(&b'-') {
                return Err(format!(
                    "FUNCTION {} in the append only file failed: {}",
                    String::from_utf8_lossy(&args[1]),
                    String::from_utf8_lossy(out.trim_ascii_end())
                ));
            }
        }
        _ => {
            let Some(spec) = lookup(&args[0]) else {
                return Err(format!(
                    "Unknown command '{name}' reading the append only file"
                ));
            };
            let idx = COMMANDS
                .iter()
                .position(|c| std::ptr::eq(c, spec))
                .unwrap_or(0);
            out.clear();
            let cmd = Cmd {
                db: *db as u8,
                idx: idx as u16,
                args,
                slot: crate::shard::NO_SLOT,
            };
            // The replay shard owns every slot: the command always runs.
            let _ran = shard.execute(&cmd, Proto::Resp2, now_ms(), out);
        }
    }
    Ok(())
}

/// Start-up with `appendonly yes`: replay the AOF (or, when there is none yet, load the RDB and
/// start the AOF with it as a preamble), open the file and start the writer thread. Returns the
/// keys per core as the shards will be built.
pub fn startup(cfg: &Config, ncores: usize) -> Result<Vec<Vec<LoadItem>>, String> {
    POLICY.store(
        parse_policy(&cfg.appendfsync).unwrap_or(FSYNC_EVERYSEC),
        Ordering::Relaxed,
    );
    let path = aof_path(cfg);
    let t = Instant::now();
    let items = match std::fs::read(&path) {
        Ok(bytes) => {
            let mut shard = Shard::new(0, cfg.databases, |_| true);
            let mut rest = &bytes[..];
            let mut base = 0;
            if bytes.starts_with(b"REDIS") {
                let mut r = rdb::file::FileReader::new(&bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let now = now_ms();
                let mut functions = Vec::new();
                while let Some(item) = r
                    .next_item()
                    .map_err(|e| format!("{}: RDB preamble: {e}", path.display()))?
                {
                    if let rdb::file::Item::Function(code) = item {
                        functions.push(code);
                        continue;
                    }
                    if let rdb::file::Item::Entry(e) = item {
                        let at = e.expire_ms.unwrap_or(0);
                        if at != 0 && at <= now {
                            continue;
                        }
                        let v = crate::dump::from_rdb(e.value)
                            .map_err(|e| format!("{}: {e}", path.display()))?;
                        match shard.dbs.get_mut(e.db as usize) {
                            Some(d) => {
                                d.insert(&e.key, v, at);
                            }
                            None => {
                                return Err(format!("{}: key in database {}", path.display(), e.db))
                            }
                        }
                    }
                }
                crate::script::load_functions(&functions)
                    .map_err(|e| format!("{}: RDB preamble: {e}", path.display()))?;
                base = r.position();
                rest = &bytes[base..];
            }
            let (valid, cut) =
                replay(&mut shard, rest).map_err(|e| format!("{}: {e}", path.display()))?;
            if cut {
                if !cfg.aof_load_truncated {
                    return Err(format!(
                        "{}: Unexpected end of file reading the append only file. You can: 1) Make a backup of your AOF file, then use ./redis-check-aof --fix <filename>. 2) Alternatively you can set the 'aof-load-truncated' configuration option to yes and restart the server.",
                        path.display()
                    ));
                }
                tracing::warn!(
                    "!!! Warning: short read while loading the AOF file {}!!! AOF loaded anyway because aof-load-truncated is enabled; truncating it to {} bytes",
                    path.display(),
                    base + valid
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| e.to_string())?;
                f.set_len((base + valid) as u64)
                    .map_err(|e| e.to_string())?;
                f.sync_all().map_err(|e| e.to_string())?;
            }
            let mut per_core: Vec<Vec<LoadItem>> = (0..ncores).map(|_| Vec::new()).collect();
            let mut keys = 0;
            let now = now_ms();
            for (i, d) in shard.dbs.iter_mut().enumerate() {
                for slot in 0..resp::MAX_SLOTS {
                    let Some(t) = d.take_slot(slot) else { continue };
                    for (k, e) in t.map {
                        let at = e.expire_at();
                        if at != 0 && at <= now {
                            continue;
                        }
                        per_core[slot % ncores].push((i, k, e.value, at));
                        keys += 1;
                    }
                }
            }
            tracing::info!(
                "DB loaded from append only file: {keys} keys in {:.3} seconds",
                t.elapsed().as_secs_f64()
            );
            per_core
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let items = crate::persist::startup_load(cfg, ncores)?;
            // Start the AOF with the loaded data as its RDB preamble.
            let bytes = preamble(cfg.databases, &items).map_err(|e| e.to_string())?;
            crate::persist::write_file_atomic(Path::new(&cfg.dir), &cfg.appendfilename, |f| {
                std::io::Write::write_all(f, &bytes)
            })
            .map_err(|e| format!("{}: {e}", path.display()))?;
            items
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| format!("Can't open the append-only file {}: {e}", path.display()))?;
    let reader = log().subscribe_aof();
    SYNCED.store(log().offset(), Ordering::Release);
    let (tx, rx) = std::sync::mpsc::channel();
    if let Ok(mut c) = CHANNEL.lock() {
        *c = Some(tx);
    }
    let dir = PathBuf::from(&cfg.dir);
    let name = cfg.appendfilename.clone();
    std::thread::Builder::new()
        .name("aof-writer".into())
        .spawn(move || {
            crate::runtime::unpin_background_thread();
            writer(file, reader, rx, dir, name)
        })
        .map_err(|e| e.to_string())?;
    ENABLED.store(true, Ordering::Relaxed);
    Ok(items)
}

fn preamble(ndb: usize, items: &[Vec<LoadItem>]) -> std::io::Result<Vec<u8>> {
    let mut w = rdb::file::RdbWriter::new(Vec::new())?;
    w.aux("redis-ver", "7.0.15")?;
    w.aux("aof-preamble", "1")?;
    for lib in crate::function::libraries() {
        w.function(&lib.code)?;
    }
    for db in 0..ndb {
        let mut buf = Vec::new();
        let (mut keys, mut expires) = (0u64, 0u64);
        for (d, k, v, at) in items.iter().flatten() {
            if *d == db {
                let exp = (*at != 0).then_some(*at);
                crate::persist::write_entry(&mut buf, k, exp, v.view());
                keys += 1;
                expires += exp.is_some() as u64;
            }
        }
        if keys > 0 {
            w.select_db(db as u64, keys, expires)?;
            w.raw(&buf)?;
        }
    }
    w.finish()
}

fn writer(mut file: File, mut reader: Reader, rx: Receiver<Msg>, dir: PathBuf, name: String) {
    let mut buf = Vec::new();
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    loop {
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Flush(ack) => {
                    buf.clear();
                    if reader.read(&mut buf).is_some() && !buf.is_empty() {
                        let _ = file.write_all(&buf);
                    }
                    let _ = file.sync_data();
                    let _ = ack.send(());
                }
                Msg::Stop => {
                    buf.clear();
                    if reader.read(&mut buf).is_some() && !buf.is_empty() {
                        let _ = file.write_all(&buf);
                    }
                    let _ = file.sync_data();
                    tracing::info!("AOF stopped (appendonly no)");
                    return;
                }
                Msg::Rewrite {
                    rdb,
                    reader: mut new,
                    done,
                } => {
                    let o = log().offset();
                    let r = rewrite_file(&dir, &name, &rdb, &mut new);
                    match r {
                        Ok(f) => {
                            file = f;
                            reader = new;
                            unsynced = false;
                            SYNCED.store(o, Ordering::Release);
                            let _ = done.send(Ok(()));
                        }
                        Err(e) => {
                            let _ = done.send(Err(e.to_string()));
                        }
                    }
                }
            }
        }
        // Offsets of the log, read *before* taking the pending bytes: everything appended
        // before `o` is in this read or an earlier one. (Comparing log offsets, not the reader's
        // byte count, stays right when a replica's full sync resets the log's offset.)
        let o = log().offset();
        buf.clear();
        let Some(n) = reader.read(&mut buf) else {
            tracing::warn!("AOF: the propagation log dropped the AOF reader; AOF disabled");
            LAST_WRITE_OK.store(false, Ordering::Relaxed);
            ENABLED.store(false, Ordering::Relaxed);
            return;
        };
        let policy = POLICY.load(Ordering::Relaxed);
        if n == 0 {
            if unsynced && (policy == FSYNC_ALWAYS || last_sync.elapsed() >= Duration::from_secs(1))
            {
                let _ = file.sync_data();
                unsynced = false;
                last_sync = Instant::now();
            }
            if !unsynced {
                SYNCED.store(o, Ordering::Release);
            }
            let idle = if policy == FSYNC_ALWAYS { 50 } else { 1000 };
            std::thread::sleep(Duration::from_micros(idle));
            continue;
        }
        // Retry a failed write until it succeeds (as Redis does for `always`, it never skips).
        let write_start = Instant::now();
        loop {
            match file.write_all(&buf) {
                Ok(()) => break,
                Err(e) => {
                    if LAST_WRITE_OK.swap(false, Ordering::Relaxed) {
                        tracing::warn!("Error writing to the AOF file: {e}");
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        LAST_WRITE_OK.store(true, Ordering::Relaxed);
        crate::latency::add_sample_if_needed("aof-write", write_start.elapsed().as_millis() as u64);
        unsynced = true;
        if policy == FSYNC_ALWAYS
            || (policy == FSYNC_EVERYSEC && last_sync.elapsed() >= Duration::from_secs(1))
        {
            let sync_start = Instant::now();
            let _ = file.sync_data();
            if policy == FSYNC_ALWAYS {
                crate::latency::add_sample_if_needed(
                    "aof-fsync-always",
                    sync_start.elapsed().as_millis() as u64,
                );
            }
            last_sync = Instant::now();
            unsynced = false;
            SYNCED.store(o, Ordering::Release);
        }
        if policy != FSYNC_ALWAYS {
            // Let writes gather: one write(2) per millisecond is plenty when nobody waits for
            // the disk, and this thread shares the CPU with the executors.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn rewrite_file(dir: &Path, name: &str, rdb: &[u8], reader: &mut Reader) -> std::io::Result<File> {
    let tmp = dir.join(format!("temp-rewriteaof-{}.aof", std::process::id()));
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(rdb)?;
        let mut buf = Vec::new();
        if reader.read(&mut buf).is_none() {
            return Err(std::io::Error::other(
                "the rewrite's log reader was dropped",
            ));
        }
        f.write_all(&buf)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(f)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// After CONFIG SET: start or stop the AOF to match `appendonly`, as Redis does. Switching on
/// writes a new AOF from a forkless snapshot (a rewrite) and appends from the snapshot's instant
/// on; switching off writes and fsyncs what is pending and stops appending.
pub fn apply_config(core: &Rc<Core>) {
    let want = core.shared.config().appendonly;
    if want && !enabled() {
        start_at_runtime(core);
    } else if !want && enabled() {
        stop();
    }
}

fn stop() {
    ENABLED.store(false, Ordering::Relaxed);
    let tx = CHANNEL.lock().ok().and_then(|mut c| c.take());
    if let Some(tx) = tx {
        let _ = tx.send(Msg::Stop);
    }
}

fn start_at_runtime(core: &Rc<Core>) {
    if STARTING.swap(true, Ordering::AcqRel) {
        return;
    }
    let core = core.clone();
    glommio::spawn_local(async move {
        REWRITING.store(true, Ordering::Release);
        let r = start_with_rewrite(&core).await;
        match &r {
            Ok(()) => tracing::info!("AOF enabled: background append only file rewriting finished"),
            Err(e) => tracing::warn!("Could not enable the AOF: {e}"),
        }
        LAST_REWRITE_OK.store(r.is_ok(), Ordering::Relaxed);
        REWRITING.store(false, Ordering::Release);
        STARTING.store(false, Ordering::Release);
        // The configuration may have changed while the file was written.
        apply_config(&core);
    })
    .detach();
}

async fn start_with_rewrite(core: &Rc<Core>) -> Result<(), PersistError> {
    let mut reader = None;
    let snap = crate::persist::snapshot(core, || reader = Some(log().subscribe_aof())).await?;
    let Some(mut reader) = reader else {
        return Err(PersistError::Interrupted);
    };
    let cfg = core.shared.config();
    let (dir, name) = (PathBuf::from(&cfg.dir), cfg.appendfilename.clone());
    let rdb = snap.rdb;
    let opened = crate::persist::off_thread(move || {
        let bytes = rdb.into_vec();
        let o = log().offset();
        rewrite_file(&dir, &name, &bytes, &mut reader).map(|f| (f, reader, o, dir, name))
    })
    .await
    .ok_or(PersistError::Interrupted)?;
    let (file, reader, o, dir, name) = opened?;
    SYNCED.store(o, Ordering::Release);
    let (tx, rx) = std::sync::mpsc::channel();
    if let Ok(mut c) = CHANNEL.lock() {
        *c = Some(tx);
    }
    std::thread::Builder::new()
        .name("aof-writer".into())
        .spawn(move || {
            crate::runtime::unpin_background_thread();
            writer(file, reader, rx, dir, name)
        })?;
    ENABLED.store(true, Ordering::Relaxed);
    Ok(())
}

/// BGREWRITEAOF.
pub async fn bgrewrite_command(core: &Rc<Core>, out: &mut BytesMut) {
    use resp::encode;
    if !enabled() {
        return encode::error(out, "ERR Background AOF rewrite needs appendonly yes");
    }
    if !start_rewrite(core) {
        return encode::error(
            out,
            "ERR Background append only file rewriting already in progress",
        );
    }
    encode::simple(out, "Background append only file rewriting started");
}

/// Start a background rewrite unless one runs (false then).
pub fn start_rewrite(core: &Rc<Core>) -> bool {
    if !enabled() {
        return false;
    }
    if REWRITING
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    let core = core.clone();
    glommio::spawn_local(async move {
        let r = rewrite(&core).await;
        match &r {
            Ok(()) => tracing::info!("Background AOF rewrite finished successfully"),
            Err(e) => tracing::warn!("Background AOF rewrite failed: {e}"),
        }
        LAST_REWRITE_OK.store(r.is_ok(), Ordering::Relaxed);
        REWRITING.store(false, Ordering::Release);
    })
    .detach();
    true
}

async fn rewrite(core: &Rc<Core>) -> Result<(), PersistError> {
    let mut reader = None;
    let snap = crate::persist::snapshot(core, || reader = Some(log().subscribe_aof())).await?;
    let Some(reader) = reader else {
        return Err(PersistError::Interrupted);
    };
    // One buffer for the AOF thread, built (copied and checksummed) off the executors.
    let rdb = snap.rdb;
    let bytes = crate::persist::off_thread(move || {
        crate::persist::background_priority();
        rdb.into_vec()
    })
    .await
    .ok_or(PersistError::Interrupted)?;
    let (tx, rx) = futures::channel::oneshot::channel();
    let sent = CHANNEL
        .lock()
        .ok()
        .and_then(|c| {
            c.as_ref().map(|s| {
                s.send(Msg::Rewrite {
                    rdb: bytes,
                    reader,
                    done: tx,
                })
                .is_ok()
            })
        })
        .unwrap_or(false);
    if !sent {
        return Err(PersistError::Interrupted);
    }
    match rx.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(PersistError::Io(std::io::Error::other(e))),
        Err(_) => Err(PersistError::Interrupted),
    }
}

/// Before exiting: write and fsync what is pending (waits up to 5 seconds).
pub fn flush_on_exit() {
    if !enabled() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let sent = CHANNEL
        .lock()
        .ok()
        .and_then(|c| c.as_ref().map(|s| s.send(Msg::Flush(tx)).is_ok()))
        .unwrap_or(false);
    if sent {
        let _ = rx.recv_timeout(Duration::from_secs(5));
    }
}

/// INFO persistence's AOF fields.
pub fn info() -> String {
    format!(
        "aof_enabled:{}\r\naof_rewrite_in_progress:{}\r\naof_rewrite_scheduled:0\r\naof_last_rewrite_time_sec:-1\r\naof_current_rewrite_time_sec:-1\r\naof_last_bgrewrite_status:{}\r\naof_last_write_status:{}\r\n",
        enabled() as u8,
        REWRITING.load(Ordering::Relaxed) as u8,
        if LAST_REWRITE_OK.load(Ordering::Relaxed) { "ok" } else { "err" },
        if LAST_WRITE_OK.load(Ordering::Relaxed) { "ok" } else { "err" },
    )
}
