//! The proxy's own view of its clients: `CLIENT ID | GETNAME | SETNAME | SETINFO | INFO | LIST |
//! KILL | NO-EVICT | NO-TOUCH | HELP` and `HELLO`, answered by the proxy about its sessions.
//!
//! Codis 3.2 refused every `CLIENT` subcommand. Client libraries send `CLIENT SETNAME` when the
//! application names its connections and `CLIENT SETINFO` on every connect (redis-py 5, go-redis
//! v9, Jedis 5, node-redis 4.7): refusing them broke named connections and, with
//! `session_break_on_failure`, closed every such connection right after it opened. The
//! subcommands that would change how a backend treats the shared pipelines (REPLY, PAUSE,
//! TRACKING, …) stay refused.

use std::collections::BTreeMap;
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed,
};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::BytesMut;
use resp::command::COMMANDS;
use resp::encode::{self, Proto};

/// One connected client, as `CLIENT LIST` shows it. Shared by the session (its core) and the
/// registry every core reads.
/// One count of [`ClientEntry::set_subs`] (21 bits).
const SUBS_MASK: u64 = (1 << 21) - 1;

pub struct ClientEntry {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    fd: i32,
    created: Instant,
    /// Milliseconds since `created` at the last request.
    last_ms: AtomicU64,
    /// Command table row of the last request (`usize::MAX`: none yet or unknown).
    last_cmd: AtomicUsize,
    pub db: AtomicU32,
    /// The protocol the client speaks (`HELLO 2|3`).
    resp: AtomicU8,
    /// Channels, patterns and shard channels subscribed to, 21 bits each (`set_subs`).
    subs: AtomicU64,
    killed: AtomicBool,
    /// Waiting in a blocking pop (`CLIENT LIST` flag `b`).
    blocked: AtomicBool,
    /// Between MULTI and EXEC/DISCARD (`x`).
    in_multi: AtomicBool,
    names: Mutex<Names>,
}

#[derive(Default, Clone)]
struct Names {
    name: String,
    lib_name: String,
    lib_ver: String,
}

/// Every client of this proxy, by id.
#[derive(Default)]
pub struct Registry {
    clients: Mutex<BTreeMap<u64, Arc<ClientEntry>>>,
}

/// Removes its client from the registry when the session ends, before the socket closes: a
/// `CLIENT KILL` (which shuts the socket down under the registry's lock) never reaches a
/// descriptor the kernel has handed to someone else.
pub struct Registered<'a> {
    registry: &'a Registry,
    pub entry: Arc<ClientEntry>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Ok(mut c) = self.registry.clients.lock() {
            c.remove(&self.entry.id);
        }
    }
}

impl Registry {
    /// Registers a new client; it stays listed while the returned guard lives.
    pub fn register(&self, id: u64, addr: String, laddr: String, fd: i32) -> Registered<'_> {
        let entry = Arc::new(ClientEntry {
            id,
            addr,
            laddr,
            fd,
            created: Instant::now(),
            last_ms: AtomicU64::new(0),
            last_cmd: AtomicUsize::new(usize::MAX),
            db: AtomicU32::new(0),
            resp: AtomicU8::new(2),
            subs: AtomicU64::new(0),
            killed: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
            in_multi: AtomicBool::new(false),
            names: Mutex::new(Names::default()),
        });
        if let Ok(mut c) = self.clients.lock() {
            c.insert(id, entry.clone());
        }
        Registered {
            registry: self,
            entry,
        }
    }

    fn snapshot(&self) -> Vec<Arc<ClientEntry>> {
        self.clients
            .lock()
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Shuts down the sockets of the clients `hit` selects; returns how many. The caller's own
    /// socket (`me`) is only marked: its session replies first, then closes.
    fn kill(&self, me: u64, hit: impl Fn(&ClientEntry) -> bool) -> usize {
        let Ok(c) = self.clients.lock() else {
            return 0;
        };
        let mut n = 0;
        for e in c.values() {
            if !e.killed.load(Relaxed) && hit(e) {
                e.killed.store(true, Relaxed);
                n += 1;
                if e.id == me {
                    continue;
                }
                // SAFETY: shutdown(2) on the session's socket, which stays open while its entry is
                // registered (the entry leaves under this lock before the socket is closed).
                unsafe {
                    libc::shutdown(e.fd, libc::SHUT_RDWR);
                }
            }
        }
        n
    }
}

impl ClientEntry {
    /// Notes a request (its command table row) for `cmd=` in `CLIENT LIST`.
    #[inline]
    pub fn command(&self, index: usize) {
        self.last_cmd.store(index, Relaxed);
    }

    /// Notes that the client sent something at `now` (`idle=`).
    #[inline]
    pub fn active(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.created).as_millis() as u64;
        self.last_ms.store(ms, Relaxed);
    }

    /// The client's protocol, as `HELLO` set it.
    pub fn proto(&self) -> Proto {
        if self.resp.load(Relaxed) == 3 {
            Proto::Resp3
        } else {
            Proto::Resp2
        }
    }

    pub fn set_proto(&self, p: Proto) {
        self.resp
            .store(if p == Proto::Resp3 { 3 } else { 2 }, Relaxed);
    }

    /// Whether the client waits in a blocking pop.
    pub fn set_blocked(&self, on: bool) {
        self.blocked.store(on, Relaxed);
    }

    /// Whether the client is between MULTI and EXEC/DISCARD.
    pub fn set_multi(&self, on: bool) {
        self.in_multi.store(on, Relaxed);
    }

    /// Notes how many channels, patterns and shard channels the client is subscribed to.
    pub fn set_subs(&self, channels: usize, patterns: usize, shard: usize) {
        let f = |n: usize| (n as u64).min(SUBS_MASK);
        self.subs
            .store(f(channels) << 42 | f(patterns) << 21 | f(shard), Relaxed);
    }

    /// The client's socket descriptor.
    pub fn fd(&self) -> i32 {
        self.fd
    }

    pub fn killed(&self) -> bool {
        self.killed.load(Relaxed)
    }

    fn name(&self) -> String {
        self.names
            .lock()
            .map(|n| n.name.clone())
            .unwrap_or_default()
    }

    pub fn set_name(&self, name: &[u8]) {
        if let Ok(mut n) = self.names.lock() {
            n.name = String::from_utf8_lossy(name).into_owned();
        }
    }

    /// One line of `CLIENT LIST`, in Redis 7's field order. Fields that describe a Redis server's
    /// buffers are reported as 0: the proxy keeps no per-client output list.
    fn line(&self) -> String {
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        let subs = self.subs.load(Relaxed);
        let age = self.created.elapsed();
        let idle = age
            .as_millis()
            .saturating_sub(self.last_ms.load(Relaxed) as u128)
            / 1000;
        let cmd = COMMANDS
            .get(self.last_cmd.load(Relaxed))
            .map_or("NULL", |c| c.name);
        // Redis's flag letters, in its order, N for none.
        let mut flags = String::new();
        for (on, c) in [
            (subs != 0, 'P'),
            (self.in_multi.load(Relaxed), 'x'),
            (self.blocked.load(Relaxed), 'b'),
        ] {
            if on {
                flags.push(c);
            }
        }
        if flags.is_empty() {
            flags.push('N');
        }
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            names.name,
            age.as_secs(),
            idle,
            flags,
            self.db.load(Relaxed),
            subs >> 42,
            (subs >> 21) & SUBS_MASK,
            subs & SUBS_MASK,
            cmd,
            self.resp.load(Relaxed),
            names.lib_name,
            names.lib_ver,
        )
    }
}

/// Redis's rule for client names and library attributes: printable ASCII without spaces.
fn valid_name(v: &[u8]) -> bool {
    v.iter().all(|&c| c > b' ' && c <= b'~')
}

const BAD_NAME: &str = "ERR Client names cannot contain spaces, newlines or special characters.";

/// `CLIENT SETNAME` and `HELLO … SETNAME`: Err is the reply to give instead.
pub fn check_name(v: &[u8]) -> Result<(), &'static str> {
    if valid_name(v) {
        Ok(())
    } else {
        Err(BAD_NAME)
    }
}

/// What a `CLIENT` request became.
pub enum Outcome {
    /// The reply was written.
    Done,
    /// A subcommand the proxy refuses (its upper-case name).
    Refused(String),
}

/// `CLIENT <sub> …` for the client `me`.
pub fn client(
    reg: &Registry,
    me: &ClientEntry,
    args: &[bytes::Bytes],
    out: &mut BytesMut,
) -> Outcome {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    match (sub.as_str(), args.len()) {
        ("id", 2) => encode::int(out, me.id as i64),
        ("getname", 2) => {
            let n = me.name();
            if n.is_empty() {
                encode::null(out, me.proto());
            } else {
                encode::bulk(out, n.as_bytes());
            }
        }
        ("setname", 3) => match check_name(&args[2]) {
            Ok(()) => {
                me.set_name(&args[2]);
                encode::ok(out);
            }
            Err(e) => encode::error(out, e),
        },
        ("setinfo", 4) => {
            let attr = String::from_utf8_lossy(&args[2]).to_ascii_lowercase();
            if attr != "lib-name" && attr != "lib-ver" {
                let a = String::from_utf8_lossy(&args[2]);
                encode::error(out, &format!("ERR Unrecognized option '{a}'"));
            } else if !valid_name(&args[3]) {
                encode::error(
                    out,
                    &format!("ERR {attr} cannot contain spaces, newlines or special characters."),
                );
            } else {
                let v = String::from_utf8_lossy(&args[3]).into_owned();
                if let Ok(mut n) = me.names.lock() {
                    if attr == "lib-name" {
                        n.lib_name = v;
                    } else {
                        n.lib_ver = v;
                    }
                }
                encode::ok(out);
            }
        }
        ("info", 2) => encode::verbatim(out, format!("{}\n", me.line()).as_bytes(), me.proto()),
        ("list", _) => list(reg, args, me.proto(), out),
        ("kill", n) if n >= 3 => kill(reg, me, args, out),
        ("no-evict" | "no-touch", 3) => {
            if args[2].eq_ignore_ascii_case(b"on") || args[2].eq_ignore_ascii_case(b"off") {
                encode::ok(out)
            } else {
                encode::error(out, "ERR syntax error")
            }
        }
        ("help", 2) => {
            let lines = [
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are (answered by codis-proxy about its own clients):",
                "ID",
                "GETNAME",
                "SETNAME <name>",
                "SETINFO <LIB-NAME|LIB-VER> <value>",
                "INFO",
                "LIST [ID <id> [<id> ...]]",
                "KILL <ip:port> | ID <id> | ADDR <ip:port> | LADDR <ip:port> | SKIPME <yes|no>",
                "HELP",
            ];
            encode::help(out, &lines);
        }
        (
            "id" | "getname" | "setname" | "setinfo" | "info" | "kill" | "no-evict" | "no-touch"
            | "help",
            _,
        ) => encode::error(
            out,
            &format!("ERR wrong number of arguments for 'client|{sub}' command"),
        ),
        // Redis's other subcommands act on the connection that sends them, which here is a
        // backend pipeline shared by every session: refused.
        (
            "caching" | "getredir" | "pause" | "unpause" | "reply" | "tracking" | "trackinginfo"
            | "unblock",
            _,
        ) => return Outcome::Refused(format!("CLIENT {}", sub.to_ascii_uppercase())),
        _ => {
            let s = String::from_utf8_lossy(&args[1]);
            encode::error(
                out,
                &format!("ERR unknown subcommand '{s}'. Try CLIENT HELP."),
            );
        }
    }
    Outcome::Done
}

/// `CLIENT LIST [TYPE normal|…] [ID id…]`.
fn list(reg: &Registry, args: &[bytes::Bytes], proto: Proto, out: &mut BytesMut) {
    let mut ids: Option<Vec<u64>> = None;
    let mut normal = true;
    let mut i = 2;
    while i < args.len() {
        if args[i].eq_ignore_ascii_case(b"id") && i + 1 < args.len() {
            let mut v = Vec::new();
            for a in &args[i + 1..] {
                match resp::parse_i64(a) {
                    Some(n) => v.push(n.max(0) as u64),
                    None => return encode::error(out, "ERR Invalid client ID"),
                }
            }
            ids = Some(v);
            i = args.len();
        } else if args[i].eq_ignore_ascii_case(b"type") && i + 1 < args.len() {
            let t = String::from_utf8_lossy(&args[i + 1]).to_ascii_lowercase();
            match t.as_str() {
                "normal" => normal = true,
                "master" | "replica" | "slave" | "pubsub" => normal = false,
                _ => return encode::error(out, &format!("ERR Unknown client type '{t}'")),
            }
            i += 2;
        } else {
            return encode::error(out, "ERR syntax error");
        }
    }
    let text: String = reg
        .snapshot()
        .iter()
        .filter(|c| normal && !c.killed() && ids.as_ref().is_none_or(|v| v.contains(&c.id)))
        .map(|c| c.line() + "\n")
        .collect();
    encode::verbatim(out, text.as_bytes(), proto);
}

/// `CLIENT KILL addr` (old form: `+OK` or `ERR No such client`) or `CLIENT KILL <filter> <value>
/// …` (the number killed).
fn kill(reg: &Registry, me: &ClientEntry, args: &[bytes::Bytes], out: &mut BytesMut) {
    if args.len() == 3 {
        let addr = String::from_utf8_lossy(&args[2]).into_owned();
        return if reg.kill(me.id, |c| c.addr == addr) > 0 {
            encode::ok(out)
        } else {
            encode::error(out, "ERR No such client")
        };
    }
    if !args.len().is_multiple_of(2) {
        return encode::error(out, "ERR syntax error");
    }
    let mut skipme = true;
    let mut filters: Vec<(String, String)> = Vec::new();
    for kv in args[2..].chunks(2) {
        let k = String::from_utf8_lossy(&kv[0]).to_ascii_lowercase();
        let v = String::from_utf8_lossy(&kv[1]).into_owned();
        match k.as_str() {
            "id" => match v.parse::<u64>() {
                Ok(n) if n > 0 => filters.push((k, v)),
                _ => return encode::error(out, "ERR client-id should be greater than 0"),
            },
            "addr" | "laddr" | "user" => filters.push((k, v)),
            "type" => match v.to_ascii_lowercase().as_str() {
                "normal" | "master" | "replica" | "slave" | "pubsub" => filters.push((k, v)),
                _ => return encode::error(out, &format!("ERR Unknown client type '{v}'")),
            },
            "skipme" => match v.to_ascii_lowercase().as_str() {
                "yes" => skipme = true,
                "no" => skipme = false,
                _ => return encode::error(out, "ERR syntax error"),
            },
            _ => return encode::error(out, "ERR syntax error"),
        }
    }
    let n = reg.kill(me.id, |c| {
        !(skipme && c.id == me.id)
            && filters.iter().all(|(k, v)| match k.as_str() {
                "id" => v.parse::<u64>().ok() == Some(c.id),
                "addr" => c.addr == *v,
                "laddr" => c.laddr == *v,
                "type" => v.eq_ignore_ascii_case("normal"),
                _ => v == "default",
            })
    });
    encode::int(out, n as i64);
}

/// A valid `HELLO`: the protocol it asks for (None: keep the current one), whether it
/// authenticated the client, and the name it gives it.
#[derive(Debug)]
pub struct Hello<'a> {
    pub proto: Option<Proto>,
    pub auth: bool,
    pub name: Option<&'a [u8]>,
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]` as Redis 7 parses it (protocol 2 or 3).
/// `password_ok(user, pass)` checks an `AUTH` option. On success the caller switches the
/// protocol, marks the session authenticated (if `auth`) and names it; Err is the error reply,
/// and changes nothing.
pub fn parse_hello<'a>(
    args: &'a [bytes::Bytes],
    authed: bool,
    password_ok: impl Fn(&[u8], &[u8]) -> bool,
) -> Result<Hello<'a>, String> {
    let mut i = 1;
    let mut proto = None;
    if args.len() > 1 {
        match resp::parse_i64(&args[1]) {
            Some(2) => proto = Some(Proto::Resp2),
            Some(3) => proto = Some(Proto::Resp3),
            Some(_) => return Err("NOPROTO unsupported protocol version".into()),
            None => return Err("ERR Protocol version is not an integer or out of range".into()),
        }
        i = 2;
    }
    let mut auth = false;
    let mut name = None;
    while i < args.len() {
        if args[i].eq_ignore_ascii_case(b"auth") && i + 2 < args.len() {
            if !password_ok(&args[i + 1], &args[i + 2]) {
                return Err("WRONGPASS invalid username-password pair or user is disabled.".into());
            }
            auth = true;
            i += 3;
        } else if args[i].eq_ignore_ascii_case(b"setname") && i + 1 < args.len() {
            name = Some(&args[i + 1][..]);
            i += 2;
        } else {
            let opt = String::from_utf8_lossy(&args[i]);
            return Err(format!("ERR Syntax error in HELLO option '{opt}'"));
        }
    }
    if !authed && !auth {
        return Err("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into());
    }
    if let Some(n) = name {
        check_name(n).map_err(String::from)?;
    }
    Ok(Hello { proto, auth, name })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::args;

    #[test]
    fn hello_authenticates_and_names_only_when_valid() {
        let ok = |u: &[u8], p: &[u8]| u == b"default" && p == b"pw";
        let a = args(&["HELLO", "2", "AUTH", "default", "pw", "SETNAME", "app"]);
        let h = parse_hello(&a, false, ok).unwrap();
        assert!(h.auth);
        assert_eq!(h.name, Some(&b"app"[..]));
        let a = args(&["HELLO", "2", "AUTH", "default", "bad"]);
        assert!(parse_hello(&a, false, ok)
            .unwrap_err()
            .starts_with("WRONGPASS"));
        let a = args(&["HELLO", "2"]);
        assert!(parse_hello(&a, false, ok)
            .unwrap_err()
            .starts_with("NOAUTH HELLO"));
        assert!(parse_hello(&a, true, ok).is_ok());
        let a = args(&["HELLO", "3"]);
        assert_eq!(parse_hello(&a, true, ok).unwrap().proto, Some(Proto::Resp3));
        assert_eq!(
            parse_hello(&args(&["HELLO"]), true, ok).unwrap().proto,
            None
        );
        for v in ["1", "4"] {
            assert_eq!(
                parse_hello(&args(&["HELLO", v]), true, ok).unwrap_err(),
                "NOPROTO unsupported protocol version"
            );
        }
        let a = args(&["HELLO", "2", "SETNAME", "a b"]);
        assert_eq!(parse_hello(&a, true, ok).unwrap_err(), BAD_NAME);
        let a = args(&["HELLO", "2", "BOGUS"]);
        assert_eq!(
            parse_hello(&a, true, ok).unwrap_err(),
            "ERR Syntax error in HELLO option 'BOGUS'"
        );
    }
}
