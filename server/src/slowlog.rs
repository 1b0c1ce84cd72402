//! SLOWLOG, as Redis 7.0 keeps it: commands whose execution took longer than
//! `slowlog-log-slower-than` microseconds (default 10000; 0 logs every command, a negative value
//! none), the newest `slowlog-max-len` of them (default 128), with their arguments (at most 32,
//! each cut to 128 bytes), the client's address and name.
//!
//! The time is the command's run time on the shard that executed it (what `INFO commandstats`
//! counts), not the time it waited in queues. The per-command cost is one relaxed load and one
//! compare in [`crate::shard::Shard::execute`]; only a slow command takes the log's lock. The
//! threshold is kept in [`crate::ticks`] and converted again every 100 ms, as the tick rate's
//! estimate sharpens.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::{Bytes, BytesMut};
use resp::encode;

use crate::shared::Shared;

/// `slowlog-log-slower-than`, in microseconds.
static SLOWER_THAN_US: AtomicI64 = AtomicI64::new(10_000);
/// The same in ticks (`u64::MAX`: log nothing).
static SLOWER_THAN_TICKS: AtomicU64 = AtomicU64::new(u64::MAX);
/// `slowlog-max-len`.
static MAX_LEN: AtomicUsize = AtomicUsize::new(128);
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
static LOG: Mutex<VecDeque<Entry>> = Mutex::new(VecDeque::new());
static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

thread_local! {
    /// The client whose commands this thread is executing (0: none, e.g. replication or AOF).
    static CLIENT: Cell<u64> = const { Cell::new(0) };
}

/// Redis's limits on what an entry keeps of a command.
const MAX_ARGS: usize = 32;
const MAX_ARG_BYTES: usize = 128;

struct Entry {
    id: u64,
    unix_secs: i64,
    usec: u64,
    args: Vec<Bytes>,
    addr: String,
    name: String,
}

/// Give the log the client registry (for addresses and names) and apply the configured values.
pub fn init(shared: Arc<Shared>) {
    let _ = SHARED.set(shared);
    refresh();
}

/// Set `slowlog-log-slower-than` (µs).
pub fn set_slower_than(us: i64) {
    SLOWER_THAN_US.store(us, Ordering::Relaxed);
    refresh();
}

/// Set `slowlog-max-len`, dropping the oldest entries beyond it.
pub fn set_max_len(n: usize) {
    MAX_LEN.store(n, Ordering::Relaxed);
    let mut log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    log.truncate(n);
}

/// Convert the threshold to ticks again (called every 100 ms by a core's timer).
pub fn refresh() {
    let us = SLOWER_THAN_US.load(Ordering::Relaxed);
    let ticks = if us < 0 {
        u64::MAX
    } else {
        crate::ticks::from_usec(us as u64)
    };
    SLOWER_THAN_TICKS.store(ticks, Ordering::Relaxed);
}

/// The client the following commands on this thread run for.
#[inline]
pub fn set_client(id: u64) {
    CLIENT.with(|c| c.set(id));
}

/// Called with every executed command's run time in ticks.
#[inline]
pub fn check(ticks: u64, args: &[Bytes]) {
    // `>=`: with a threshold of 0 every command is logged, as in Redis.
    if ticks >= SLOWER_THAN_TICKS.load(Ordering::Relaxed) {
        record(crate::ticks::to_usec(ticks), args);
    }
}

#[cold]
fn record(usec: u64, args: &[Bytes]) {
    let max = MAX_LEN.load(Ordering::Relaxed);
    if max == 0 {
        return;
    }
    let mut kept: Vec<Bytes> = Vec::with_capacity(args.len().min(MAX_ARGS));
    // CONFIG SET requirepass/masterauth: the passwords are not kept, as Redis redacts them.
    let config_set = args.len() > 3
        && args[0].eq_ignore_ascii_case(b"config")
        && args[1].eq_ignore_ascii_case(b"set");
    for (i, a) in args.iter().enumerate() {
        if config_set && i > 2 && i % 2 == 1 {
            let key = &args[i - 1];
            if key.eq_ignore_ascii_case(b"requirepass") || key.eq_ignore_ascii_case(b"masterauth") {
                kept.push(Bytes::from_static(b"(redacted)"));
                continue;
            }
        }
        if i == MAX_ARGS - 1 && args.len() > MAX_ARGS {
            kept.push(Bytes::from(format!(
                "... ({} more arguments)",
                args.len() - (MAX_ARGS - 1)
            )));
            break;
        }
        if a.len() > MAX_ARG_BYTES {
            let mut b = BytesMut::with_capacity(MAX_ARG_BYTES + 24);
            b.extend_from_slice(&a[..MAX_ARG_BYTES]);
            b.extend_from_slice(format!("... ({} more bytes)", a.len() - MAX_ARG_BYTES).as_bytes());
            kept.push(b.freeze());
        } else {
            kept.push(a.clone());
        }
    }
    let client = CLIENT.with(|c| c.get());
    let (addr, name) = SHARED
        .get()
        .and_then(|s| {
            let clients = s.clients.lock().ok()?;
            let info = clients.get(&client)?;
            let name = info.name.lock().map(|n| n.clone()).unwrap_or_default();
            Some((info.addr.clone(), name))
        })
        .unwrap_or_default();
    let entry = Entry {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        unix_secs: (crate::shared::now_ms() / 1000) as i64,
        usec,
        args: kept,
        addr,
        name,
    };
    let mut log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    log.push_front(entry);
    log.truncate(max);
}

/// `SLOWLOG GET [count] | LEN | RESET | HELP` (arity checked by the caller).
pub fn command(args: &[Bytes], out: &mut BytesMut) {
    let sub = args[1].to_ascii_lowercase();
    match sub.as_slice() {
        b"get" if args.len() > 3 => encode::error(
            out,
            "ERR unknown subcommand or wrong number of arguments for 'get'. Try SLOWLOG HELP.",
        ),
        b"get" => {
            let count = match args.get(2) {
                None => 10,
                Some(a) => match resp::parse_i64(a) {
                    Some(n) if n >= -1 => n,
                    Some(_) => {
                        return encode::error(
                            out,
                            "ERR count should be greater than or equal to -1",
                        )
                    }
                    None => {
                        return encode::error(out, "ERR value is not an integer or out of range")
                    }
                },
            };
            let log = LOG.lock().unwrap_or_else(|e| e.into_inner());
            let n = if count < 0 {
                log.len()
            } else {
                (count as usize).min(log.len())
            };
            encode::array(out, n);
            for e in log.iter().take(n) {
                encode::array(out, 6);
                encode::int(out, e.id as i64);
                encode::int(out, e.unix_secs);
                encode::int(out, e.usec as i64);
                encode::array(out, e.args.len());
                for a in &e.args {
                    encode::bulk(out, a);
                }
                encode::bulk(out, e.addr.as_bytes());
                encode::bulk(out, e.name.as_bytes());
            }
        }
        b"len" => {
            let n = LOG.lock().unwrap_or_else(|e| e.into_inner()).len();
            encode::int(out, n as i64);
        }
        b"reset" => {
            LOG.lock().unwrap_or_else(|e| e.into_inner()).clear();
            encode::ok(out);
        }
        _ => {
            let lines = [
                "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET [<count>]",
                "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                "    Entries are made of:",
                "    id, timestamp, time in microseconds, arguments array, client IP and port,",
                "    client name",
                "LEN",
                "    Return the length of the slowlog.",
                "RESET",
                "    Reset the slowlog.",
                "HELP",
                "    Print this help.",
            ];
            encode::help(out, &lines);
        }
    }
}
