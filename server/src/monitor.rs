//! MONITOR: every command the server runs, as one line per command, to every client that asked.
//!
//! Any core's connection formats the line once (Redis's `replicationFeedMonitors`:
//! `+<unix seconds>.<µs> [<db> <client address>] "arg" "arg"…`, arguments escaped as
//! `sdscatrepr` does) and appends it to each monitor's feed, a queue shared between threads; the
//! monitor's own core wakes and writes it. With no monitor attached the cost per command is one
//! relaxed load ([`active`]).
//!
//! As in Redis 7.0 (`server/tests/monitor.rs` compares the feeds line for line): administrative
//! commands (CONFIG, DEBUG, CLIENT LIST/KILL, SHUTDOWN…) are not shown; EVAL is, followed by its
//! script's `redis.call`s as `[<db> lua]`; AUTH and `HELLO … AUTH` show their credentials as
//! `"(redacted)"`; a command refused before it runs (unknown, wrong arity, NOAUTH) is not shown;
//! SELECT shows the database it selected; the commands of a transaction appear when EXEC runs
//! them, before the EXEC line. Lines of commands from one client keep their order;
//! across clients on different cores, the order is the order in which their cores saw them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use futures::task::AtomicWaker;

/// Monitors attached, on every core.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static FEEDS: Mutex<Vec<Arc<Feed>>> = Mutex::new(Vec::new());

/// A monitor's output queue is capped like a replica's (Redis's default `client-output-buffer-limit
/// replica 256mb`): a monitor that does not read that much is disconnected.
const LIMIT: usize = 256 << 20;

/// One monitoring client's queue of lines.
pub struct Feed {
    id: u64,
    lines: Mutex<VecDeque<Bytes>>,
    bytes: AtomicUsize,
    closed: AtomicBool,
    waker: AtomicWaker,
}

/// Whether any client monitors (the per-command check).
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed) > 0
}

/// Attach client `id` as a monitor.
pub fn attach(id: u64) -> Arc<Feed> {
    let f = Arc::new(Feed {
        id,
        lines: Mutex::new(VecDeque::new()),
        bytes: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
        waker: AtomicWaker::new(),
    });
    if let Ok(mut all) = FEEDS.lock() {
        all.push(f.clone());
        ACTIVE.store(all.len(), Ordering::Relaxed);
    }
    f
}

/// Detach a monitor (RESET, disconnect).
pub fn detach(f: &Feed) {
    if let Ok(mut all) = FEEDS.lock() {
        all.retain(|x| x.id != f.id);
        ACTIVE.store(all.len(), Ordering::Relaxed);
    }
}

impl Feed {
    fn push(&self, line: &Bytes) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        if self.bytes.fetch_add(line.len(), Ordering::Relaxed) + line.len() > LIMIT {
            tracing::warn!(
                client = self.id,
                "closing MONITOR client over the output buffer limit"
            );
            self.closed.store(true, Ordering::Relaxed);
        } else if let Ok(mut q) = self.lines.lock() {
            q.push_back(line.clone());
        }
        self.waker.wake();
    }

    /// Wait until a line is queued or the feed closed.
    pub async fn ready(&self) {
        std::future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            let pending = self.lines.lock().map_or(false, |q| !q.is_empty());
            if pending || self.closed() {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }

    /// Move every queued line into `out`.
    pub fn drain(&self, out: &mut BytesMut) {
        if let Ok(mut q) = self.lines.lock() {
            for l in q.drain(..) {
                out.extend_from_slice(&l);
            }
        }
        self.bytes.store(0, Ordering::Relaxed);
    }

    /// Whether the feed overflowed (the connection must close).
    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

/// Whether a command is left out of the feed (see the module docs). `admin` is the command
/// table's flag; CLIENT's subcommands carry their own in Redis (GETNAME, ID, INFO, SETNAME,
/// REPLY, TRACKING are shown; KILL, LIST, PAUSE… are not).
pub fn hidden(name: &str, admin: bool, args: &[Bytes]) -> bool {
    if name == "client" {
        let sub = args
            .get(1)
            .map(|a| a.to_ascii_lowercase())
            .unwrap_or_default();
        return matches!(
            &sub[..],
            b"kill" | b"list" | b"no-evict" | b"pause" | b"unblock" | b"unpause"
        );
    }
    admin || name == "monitor"
}

/// Which arguments are shown as `(redacted)`.
fn redacted(args: &[Bytes], i: usize) -> bool {
    let name = &args[0];
    if name.eq_ignore_ascii_case(b"auth") {
        return (1..=2).contains(&i);
    }
    if name.eq_ignore_ascii_case(b"hello") {
        // HELLO [protover [AUTH user pass] [SETNAME name]]
        let mut j = 2;
        while j < args.len() {
            if args[j].eq_ignore_ascii_case(b"auth") && j + 2 < args.len() {
                if i == j + 1 || i == j + 2 {
                    return true;
                }
                j += 3;
            } else {
                j += 1;
            }
        }
    }
    false
}

/// Append `s` quoted as Redis's `sdscatrepr` does.
fn repr(out: &mut BytesMut, s: &[u8]) {
    out.put_u8(b'"');
    for &c in s {
        match c {
            b'\\' => out.put_slice(b"\\\\"),
            b'"' => out.put_slice(b"\\\""),
            b'\n' => out.put_slice(b"\\n"),
            b'\r' => out.put_slice(b"\\r"),
            b'\t' => out.put_slice(b"\\t"),
            7 => out.put_slice(b"\\a"),
            8 => out.put_slice(b"\\b"),
            c if c.is_ascii_graphic() || c == b' ' => out.put_u8(c),
            c => out.put_slice(format!("\\x{c:02x}").as_bytes()),
        }
    }
    out.put_u8(b'"');
}

/// The feed line of one command run in database `db` by `who` (a client address, or `lua`).
pub fn line(db: usize, who: &str, args: &[Bytes]) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut out = BytesMut::with_capacity(48 + args.iter().map(|a| a.len() + 3).sum::<usize>());
    out.put_slice(
        format!(
            "+{}.{:06} [{db} {who}] ",
            now.as_secs(),
            now.subsec_micros()
        )
        .as_bytes(),
    );
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.put_u8(b' ');
        }
        if redacted(args, i) {
            repr(&mut out, b"(redacted)");
        } else {
            repr(&mut out, a);
        }
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

/// Send one command to every monitor.
pub fn feed(db: usize, who: &str, args: &[Bytes]) {
    let l = line(db, who, args);
    if let Ok(all) = FEEDS.lock() {
        for f in all.iter() {
            f.push(&l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn lines_as_redis_writes_them() {
        let l = line(
            3,
            "127.0.0.1:5000",
            &[b("SET"), b("k"), Bytes::from_static(b"a\"b\\\n\x01 c")],
        );
        let s = std::str::from_utf8(&l).unwrap();
        assert!(s.starts_with('+'), "{s}");
        let rest = s.split_once(' ').unwrap().1;
        assert_eq!(
            rest,
            "[3 127.0.0.1:5000] \"SET\" \"k\" \"a\\\"b\\\\\\n\\x01 c\"\r\n"
        );
        let stamp = &s[1..s.find(' ').unwrap()];
        let (secs, micros) = stamp.split_once('.').unwrap();
        assert!(secs.parse::<u64>().unwrap() > 1_600_000_000);
        assert_eq!(micros.len(), 6);
        let auth = line(0, "lua", &[b("auth"), b("u"), b("p")]);
        assert!(std::str::from_utf8(&auth)
            .unwrap()
            .ends_with("[0 lua] \"auth\" \"(redacted)\" \"(redacted)\"\r\n"));
        let hello = line(
            0,
            "x",
            &[
                b("HELLO"),
                b("3"),
                b("AUTH"),
                b("u"),
                b("p"),
                b("SETNAME"),
                b("n"),
            ],
        );
        assert!(std::str::from_utf8(&hello).unwrap().ends_with(
            "\"HELLO\" \"3\" \"AUTH\" \"(redacted)\" \"(redacted)\" \"SETNAME\" \"n\"\r\n"
        ));
    }
}
