//! Commands answered by the connection itself: PING, ECHO, QUIT, SELECT, AUTH, HELLO, RESET,
//! CLIENT, COMMAND, INFO, CONFIG, TIME, DEBUG, SHUTDOWN, ROLE, LASTSAVE, WAIT, MEMORY, SLOTSHASHKEY.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use resp::command::{self, CommandSpec, COMMANDS};
use resp::{encode, Args, Proto};

use crate::cmd::err;
use crate::conn::{unknown_command, Plan, Session};
use crate::core::Core;
use crate::info;

/// Run a connection-level command, writing its reply in order through `plan`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    core: &Rc<Core>,
    sess: &mut Session,
    spec: &'static CommandSpec,
    idx: usize,
    args: Args,
    now: u64,
    plan: &mut Plan,
    out: &mut BytesMut,
) {
    core.shard.borrow_mut().stats[idx].calls += 1;
    // Commands that need other cores or change how replies are encoded: settle what is pending.
    let needs_flush = matches!(
        spec.name,
        "info"
            | "hello"
            | "debug"
            | "shutdown"
            | "memory"
            | "reset"
            | "wait"
            | "replicaof"
            | "slaveof"
    );
    if needs_flush {
        plan.flush(core, sess.proto, now, out).await;
    }
    let mut buf = BytesMut::new();
    let b = &mut buf;
    match spec.name {
        "ping" => match args.len() {
            1 => encode::simple(b, "PONG"),
            2 => encode::bulk(b, &args[1]),
            _ => encode::error(b, "ERR wrong number of arguments for 'ping' command"),
        },
        "echo" => encode::bulk(b, &args[1]),
        "quit" => {
            encode::ok(b);
            sess.quit = true;
        }
        "select" => match resp::parse_i64(&args[1]) {
            None => encode::error(b, err::NOT_INT),
            Some(n) if n < 0 || n as usize >= core.shard.borrow().dbs.len() => {
                encode::error(b, err::DB_RANGE)
            }
            Some(n) => {
                sess.db = n as usize;
                sess.info.db.store(n as u8, Ordering::Relaxed);
                encode::ok(b)
            }
        },
        "auth" => auth(core, sess, &args, b),
        "hello" => hello(core, sess, &args, b),
        "reset" => {
            sess.db = 0;
            sess.proto = Proto::Resp2;
            sess.info.resp.store(2, Ordering::Relaxed);
            sess.authed = core.shared.config().requirepass.is_none();
            if let Ok(mut n) = sess.info.name.lock() {
                n.clear();
            }
            encode::simple(b, "RESET");
        }
        "client" if args[1].eq_ignore_ascii_case(b"unblock") => {
            client_unblock(core, &args, b).await
        }
        "client" => client(core, sess, &args, b),
        "command" => command_cmd(&args, sess.proto, b),
        "info" => {
            let text = info::render(core, &args[1..]).await;
            encode::verbatim(b, text.as_bytes(), sess.proto);
        }
        "config" => config(core, &args, sess.proto, b),
        "time" => {
            let us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros())
                .unwrap_or(0);
            encode::array(b, 2);
            encode::bulk(b, (us / 1_000_000).to_string().as_bytes());
            encode::bulk(b, (us % 1_000_000).to_string().as_bytes());
        }
        "slowlog" => crate::slowlog::command(&args, b),
        "latency" => crate::latency::command(&args, sess.proto, b),
        "lastsave" => {
            let secs = crate::persist::STATUS.lastsave.load(Ordering::Relaxed);
            encode::int(b, secs as i64);
        }
        "role" => crate::repl::role(b),
        "wait" => match (resp::parse_i64(&args[1]), resp::parse_i64(&args[2])) {
            (Some(n), Some(t)) if t >= 0 => match crate::repl::master::wait(n, t).await {
                Ok(c) => encode::int(b, c),
                Err(e) => encode::error(b, e),
            },
            (Some(_), Some(_)) => encode::error(b, "ERR timeout is negative"),
            _ => encode::error(b, "ERR timeout is not an integer or out of range"),
        },
        "replicaof" | "slaveof" => {
            if args[1].eq_ignore_ascii_case(b"no") && args[2].eq_ignore_ascii_case(b"one") {
                let r = crate::repl::replica::follow(core, None);
                encode::simple(b, r);
            } else {
                match String::from_utf8_lossy(&args[2]).parse::<u16>() {
                    Ok(port) => {
                        let host = String::from_utf8_lossy(&args[1]).to_string();
                        let m = crate::repl::MasterAddr { host, port };
                        let r = crate::repl::replica::follow(core, Some(m));
                        encode::simple(b, r);
                    }
                    Err(_) => encode::error(b, "ERR Invalid master port"),
                }
            }
        }
        "sync" | "psync" => {
            let replid =
                (spec.name == "psync").then(|| String::from_utf8_lossy(&args[1]).to_string());
            let offset = args.get(2).and_then(|a| resp::parse_i64(a)).unwrap_or(-1);
            sess.psync = Some(crate::repl::master::PsyncReq { replid, offset });
        }
        "replconf" => {
            let sub = args
                .get(1)
                .map(|a| a.to_ascii_lowercase())
                .unwrap_or_default();
            match sub.as_slice() {
                b"listening-port" => {
                    match args
                        .get(2)
                        .and_then(|a| String::from_utf8_lossy(a).parse().ok())
                    {
                        Some(p) => {
                            sess.repl_port = p;
                            encode::ok(b)
                        }
                        None => encode::error(b, err::NOT_INT),
                    }
                }
                // ACKs only matter on a replica link; nothing answers them.
                b"ack" | b"getack" => {}
                _ => encode::ok(b),
            }
        }
        "readonly" | "readwrite" => {
            encode::error(b, "ERR This instance has cluster support disabled")
        }
        "debug" => debug(core, sess, &args, b).await,
        "memory" => memory(core, sess, &args, now, b).await,
        "shutdown" => {
            if let Err(e) = shutdown_args(&args) {
                encode::error(b, e);
                let t = plan.target(out);
                let start = t.len();
                t.extend_from_slice(&buf);
                return plan.written(start);
            }
            tracing::warn!("User requested shutdown...");
            if let Err(e) = crate::persist::on_shutdown(core, &args).await {
                encode::error(b, &e);
                let t = plan.target(out);
                let start = t.len();
                t.extend_from_slice(&buf);
                return plan.written(start);
            }
            core.shared.shutdown.store(true, Ordering::Relaxed);
            tracing::warn!("codis-server is now ready to exit, bye bye...");
            crate::runtime::remove_run_files();
            std::process::exit(0);
        }
        "slotshashkey" => {
            encode::array(b, args.len() - 1);
            for k in &args[1..] {
                encode::int(b, resp::slot(k) as i64);
            }
        }
        _ => encode::error(b, &unknown_command(&args)),
    }
    let t = plan.target(out);
    let start = t.len();
    t.extend_from_slice(&buf);
    plan.written(start);
}

/// Carry out a shutdown that SIGTERM or SIGINT scheduled (see `runtime::watch_signals`), on core
/// 0 within 50 ms: SHUTDOWN's steps (flush the AOF, save when save rules are configured), then exit
/// 0. If the save fails the server keeps running, as redis-server does.
pub fn start_signal_shutdown(core: &Rc<Core>) {
    use crate::runtime::{signal_name, SHUTDOWN_SIGNAL};
    let core = core.clone();
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(Duration::from_millis(50)).await;
            let sig = SHUTDOWN_SIGNAL.load(Ordering::Relaxed);
            if sig == 0 {
                continue;
            }
            let args: Args = vec![bytes::Bytes::from_static(b"shutdown")];
            match crate::persist::on_shutdown(&core, &args).await {
                Ok(()) => {
                    core.shared.shutdown.store(true, Ordering::Relaxed);
                    tracing::warn!("codis-server is now ready to exit, bye bye...");
                    crate::runtime::remove_run_files();
                    std::process::exit(0);
                }
                Err(_) => {
                    tracing::warn!(
                        "{} received but errors trying to shut down the server, check the logs for more information",
                        signal_name(sig)
                    );
                    SHUTDOWN_SIGNAL.store(0, Ordering::Relaxed);
                }
            }
        }
    })
    .detach();
}

/// Check `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]` as Redis 7.0 does. Nothing is saved and no
/// shutdown is ever left pending, so `ABORT` always finds nothing to abort.
fn shutdown_args(args: &Args) -> Result<(), &'static str> {
    let (mut save, mut nosave, mut other, mut abort) = (false, false, false, false);
    for a in &args[1..] {
        match a.to_ascii_lowercase().as_slice() {
            b"nosave" => nosave = true,
            b"save" => save = true,
            b"now" | b"force" => other = true,
            b"abort" => abort = true,
            _ => return Err(err::SYNTAX),
        }
    }
    if (abort && (save || nosave || other)) || (save && nosave) {
        return Err(err::SYNTAX);
    }
    if abort {
        return Err("ERR No shutdown in progress.");
    }
    Ok(())
}

/// Redis 7.0's container commands and the arity of each subcommand (`COMMAND INFO` subcommands).
const SUBCOMMANDS: &[(&str, &[(&str, i32)])] = &[
    (
        "pubsub",
        &[
            ("channels", -2),
            ("help", 2),
            ("numpat", 2),
            ("numsub", -2),
            ("shardchannels", -2),
            ("shardnumsub", -2),
        ],
    ),
    (
        "function",
        &[
            ("delete", 3),
            ("dump", 2),
            ("flush", -2),
            ("help", 2),
            ("kill", 2),
            ("list", -2),
            ("load", -3),
            ("restore", -3),
            ("stats", 2),
        ],
    ),
    (
        "script",
        &[
            ("exists", -3),
            ("flush", -2),
            ("help", 2),
            ("kill", 2),
            ("load", 3),
        ],
    ),
    (
        "slowlog",
        &[("get", -2), ("len", 2), ("reset", 2), ("help", 2)],
    ),
    (
        "latency",
        &[
            ("doctor", 2),
            ("graph", 3),
            ("help", 2),
            ("histogram", -2),
            ("history", 3),
            ("latest", 2),
            ("reset", -2),
        ],
    ),
    (
        "object",
        &[
            ("encoding", 3),
            ("freq", 3),
            ("help", 2),
            ("idletime", 3),
            ("refcount", 3),
        ],
    ),
    (
        "config",
        &[
            ("get", -3),
            ("set", -4),
            ("resetstat", 2),
            ("rewrite", 2),
            ("help", 2),
        ],
    ),
    (
        "client",
        &[
            ("caching", 3),
            ("core", -2),
            ("getname", 2),
            ("getredir", 2),
            ("id", 2),
            ("info", 2),
            ("kill", -3),
            ("list", -2),
            ("no-evict", 3),
            ("pause", -3),
            ("reply", 3),
            ("setname", 3),
            ("tracking", -3),
            ("trackinginfo", 2),
            ("unblock", -3),
            ("unpause", 2),
            ("help", 2),
        ],
    ),
    (
        "command",
        &[
            ("count", 2),
            ("docs", -2),
            ("getkeys", -4),
            ("getkeysandflags", -4),
            ("info", -2),
            ("list", -2),
            ("help", 2),
        ],
    ),
    (
        "memory",
        &[
            ("doctor", 2),
            ("malloc-stats", 2),
            ("purge", 2),
            ("stats", 2),
            ("usage", -3),
            ("help", 2),
        ],
    ),
];

/// For a container command (CONFIG, CLIENT, OBJECT…), Redis's error when the subcommand is unknown
/// or has the wrong number of arguments; `None` when the call is well-formed (or not a container).
pub fn subcommand_error(name: &str, args: &Args) -> Option<String> {
    let (_, subs) = SUBCOMMANDS.iter().find(|(n, _)| *n == name)?;
    let sub = args.get(1)?;
    let Some((sub_name, arity)) = subs
        .iter()
        .find(|(s, _)| sub.eq_ignore_ascii_case(s.as_bytes()))
    else {
        let shown: String = String::from_utf8_lossy(sub).chars().take(128).collect();
        let upper = name.to_ascii_uppercase();
        return Some(format!(
            "ERR unknown subcommand '{shown}'. Try {upper} HELP."
        ));
    };
    let n = args.len() as i32;
    let ok = if *arity >= 0 {
        n == *arity
    } else {
        n >= -arity
    };
    (!ok).then(|| format!("ERR wrong number of arguments for '{name}|{sub_name}' command"))
}

fn auth(core: &Rc<Core>, sess: &mut Session, args: &Args, b: &mut BytesMut) {
    if args.len() > 3 {
        return encode::error(b, err::SYNTAX);
    }
    let pass = core.shared.config().requirepass;
    if pass.is_none() && args.len() == 2 {
        return encode::error(
            b,
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        );
    }
    if password_ok(
        pass.as_deref(),
        (args.len() == 3).then(|| &args[1][..]),
        &args[args.len() - 1],
    ) {
        sess.authed = true;
        encode::ok(b)
    } else {
        encode::error(
            b,
            "WRONGPASS invalid username-password pair or user is disabled.",
        )
    }
}

/// Whether `user` (None: the default user) may log in with `given`. The only user is `default`;
/// without `requirepass` it has no password and any password is accepted, as in Redis.
fn password_ok(required: Option<&[u8]>, user: Option<&[u8]>, given: &[u8]) -> bool {
    user.is_none_or(|u| u == b"default") && required.is_none_or(|p| p == given)
}

fn hello(core: &Rc<Core>, sess: &mut Session, args: &Args, b: &mut BytesMut) {
    let mut proto = sess.proto;
    let mut i = 1;
    if args.len() > 1 {
        match resp::parse_i64(&args[1]) {
            Some(2) => proto = Proto::Resp2,
            Some(3) => proto = Proto::Resp3,
            Some(_) => return encode::error(b, "NOPROTO unsupported protocol version"),
            None => {
                return encode::error(b, "ERR Protocol version is not an integer or out of range")
            }
        }
        i = 2;
    }
    let mut authed = sess.authed;
    let mut name = None;
    while i < args.len() {
        if args[i].eq_ignore_ascii_case(b"auth") && i + 2 < args.len() {
            let pass = core.shared.config().requirepass;
            if !password_ok(pass.as_deref(), Some(&args[i + 1]), &args[i + 2]) {
                return encode::error(
                    b,
                    "WRONGPASS invalid username-password pair or user is disabled.",
                );
            }
            authed = true;
            i += 3;
        } else if args[i].eq_ignore_ascii_case(b"setname") && i + 1 < args.len() {
            name = Some(String::from_utf8_lossy(&args[i + 1]).to_string());
            i += 2;
        } else {
            let opt = String::from_utf8_lossy(&args[i]).to_string();
            return encode::error(b, &format!("ERR Syntax error in HELLO option '{opt}'"));
        }
    }
    if !authed {
        return encode::error(
            b,
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        );
    }
    sess.authed = true;
    sess.proto = proto;
    let n = if proto == Proto::Resp3 { 3 } else { 2 };
    sess.info.resp.store(n, Ordering::Relaxed);
    if let Some(n) = name {
        if let Ok(mut cur) = sess.info.name.lock() {
            *cur = n;
        }
    }
    encode::map(b, 7, proto);
    encode::bulk(b, b"server");
    encode::bulk(b, b"redis");
    encode::bulk(b, b"version");
    encode::bulk(b, info::REDIS_VERSION.as_bytes());
    encode::bulk(b, b"proto");
    encode::int(b, if proto == Proto::Resp3 { 3 } else { 2 });
    encode::bulk(b, b"id");
    encode::int(b, sess.info.id as i64);
    encode::bulk(b, b"mode");
    encode::bulk(b, b"standalone");
    encode::bulk(b, b"role");
    encode::bulk(b, b"master");
    encode::bulk(b, b"modules");
    encode::array(b, 0);
}

fn client(core: &Rc<Core>, sess: &mut Session, args: &Args, b: &mut BytesMut) {
    let sub = String::from_utf8_lossy(&args[1]).to_lowercase();
    match (sub.as_str(), args.len()) {
        ("id", 2) => encode::int(b, sess.info.id as i64),
        ("getname", 2) => match sess.info.name.lock().map(|n| n.clone()) {
            Ok(n) if !n.is_empty() => encode::bulk(b, n.as_bytes()),
            _ => encode::null(b, sess.proto),
        },
        ("setname", 3) => {
            if args[2].iter().any(|&c| c <= b' ' || c > b'~') {
                return encode::error(
                    b,
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            if let Ok(mut n) = sess.info.name.lock() {
                *n = String::from_utf8_lossy(&args[2]).to_string();
            }
            encode::ok(b)
        }
        ("info", 2) => {
            let line = sess.info.line();
            encode::verbatim(b, format!("{line}\n").as_bytes(), sess.proto)
        }
        ("list", _) => {
            let clients = core
                .shared
                .clients
                .lock()
                .map(|c| c.values().cloned().collect::<Vec<_>>())
                .unwrap_or_default();
            let text: String = clients
                .iter()
                .filter(|c| !c.killed.load(Ordering::Relaxed))
                .map(|c| c.line() + "\n")
                .collect();
            encode::verbatim(b, text.as_bytes(), sess.proto)
        }
        ("kill", n) if n >= 3 => client_kill(core, sess, args, b),
        // codis-rs: the core serving this connection, and moving it to another core (a proxy
        // keeps one connection per core so that no request hops between cores).
        ("core", 2) => encode::int(b, core.id as i64),
        ("core", 3) => {
            let n = match std::str::from_utf8(&args[2])
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
            {
                Some(n) => n,
                None => return encode::error(b, err::NOT_INT),
            };
            if n >= core.ncores() {
                let e = crate::slotmove::MoveError::BadCore(n.to_string(), core.ncores());
                return encode::error(b, &e.to_string());
            }
            if sess.tx.in_multi() || sess.tx.watching() || sess.ps.subscribed() {
                return encode::error(
                    b,
                    "ERR CLIENT CORE is not allowed in a transaction, with watched keys or in subscribed mode",
                );
            }
            sess.pinned = true;
            sess.move_to = (n != core.id).then_some(n);
            encode::ok(b)
        }
        ("pause", 3 | 4) => match crate::pause::parse(args) {
            Ok((end, mode)) => {
                crate::pause::pause(end, mode);
                encode::ok(b)
            }
            Err(e) => encode::error(b, e),
        },
        ("unpause", 2) => {
            crate::pause::unpause();
            encode::ok(b)
        }
        ("setinfo", 4) | ("no-evict", 3) | ("no-touch", 3) => encode::ok(b),
        ("reply", 3) => encode::error(b, "ERR CLIENT REPLY is not supported by codis-server"),
        ("help", 2) => {
            let lines = [
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "ID",
                "GETNAME",
                "SETNAME <name>",
                "INFO",
                "LIST",
                "KILL <ip:port> | ID <id> | ADDR <ip:port>",
                "PAUSE <timeout> [WRITE|ALL]",
                "    Suspend all, or just write, clients for <timeout> milliseconds.",
                "UNPAUSE",
                "    Stop the current client pause, resuming traffic.",
                "UNBLOCK <clientid> [TIMEOUT|ERROR]",
                "    Unblock the specified blocked client.",
                "CORE [<core>]",
                "    Return the core serving this connection, or move the connection to <core>.",
                "HELP",
            ];
            encode::help(b, &lines);
        }
        _ => {
            let s = String::from_utf8_lossy(&args[1]).to_string();
            encode::error(b, &format!("ERR unknown subcommand or wrong number of arguments for '{s}'. Try CLIENT HELP."))
        }
    }
}

/// `CLIENT UNBLOCK client-id [TIMEOUT|ERROR]`: 1 if that client was blocked and now is not.
async fn client_unblock(core: &Rc<Core>, args: &Args, b: &mut BytesMut) {
    if args.len() > 4 {
        return encode::error(
            b,
            "ERR unknown subcommand or wrong number of arguments for 'unblock'. Try CLIENT HELP.",
        );
    }
    let Some(id) = resp::parse_i64(&args[2]) else {
        return encode::error(b, err::NOT_INT);
    };
    let error = match args.get(3) {
        None => false,
        Some(m) if m.eq_ignore_ascii_case(b"timeout") => false,
        Some(m) if m.eq_ignore_ascii_case(b"error") => true,
        Some(_) => {
            return encode::error(b, "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR");
        }
    };
    let done = id >= 0 && crate::blocking::unblock(core, id as u64, error).await;
    encode::int(b, done as i64)
}

fn client_kill(core: &Rc<Core>, sess: &mut Session, args: &Args, b: &mut BytesMut) {
    let clients = core
        .shared
        .clients
        .lock()
        .map(|c| c.values().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    if args.len() == 3 {
        let addr = String::from_utf8_lossy(&args[2]).to_string();
        return match clients
            .iter()
            .find(|c| c.addr == addr && !c.killed.load(Ordering::Relaxed))
        {
            Some(c) => {
                c.kill();
                encode::ok(b)
            }
            None => encode::error(b, "ERR No such client"),
        };
    }
    let mut killed = 0;
    let mut i = 2;
    let mut skipme = true;
    let mut filters: Vec<(String, String)> = Vec::new();
    while i + 1 < args.len() {
        let k = String::from_utf8_lossy(&args[i]).to_lowercase();
        let v = String::from_utf8_lossy(&args[i + 1]).to_string();
        match k.as_str() {
            "id" | "addr" | "laddr" | "type" | "user" => filters.push((k, v)),
            "skipme" => skipme = v.eq_ignore_ascii_case("yes"),
            _ => return encode::error(b, err::SYNTAX),
        }
        i += 2;
    }
    if i != args.len() {
        return encode::error(b, err::SYNTAX);
    }
    for c in &clients {
        if (skipme && c.id == sess.info.id) || c.killed.load(Ordering::Relaxed) {
            continue;
        }
        let hit = filters.iter().all(|(k, v)| match k.as_str() {
            "id" => v.parse::<u64>().ok() == Some(c.id),
            "addr" => &c.addr == v,
            "laddr" => &c.laddr == v,
            "type" => {
                let replica = crate::repl::is_replica_client(c.id);
                if v.eq_ignore_ascii_case("replica") || v.eq_ignore_ascii_case("slave") {
                    replica
                } else {
                    v.eq_ignore_ascii_case("normal") && !replica
                }
            }
            _ => v == "default",
        });
        if hit {
            c.kill();
            killed += 1;
        }
    }
    encode::int(b, killed);
}

fn flag_names(spec: &CommandSpec) -> Vec<&'static str> {
    let mut v = Vec::new();
    for (bit, name) in [
        (command::WRITE, "write"),
        (command::READONLY, "readonly"),
        (command::DENYOOM, "denyoom"),
        (command::ADMIN, "admin"),
        (command::PUBSUB, "pubsub"),
        (command::NOSCRIPT, "noscript"),
        (command::BLOCKING, "blocking"),
        (command::FAST, "fast"),
        (command::MOVABLE, "movablekeys"),
        (command::NOAUTH, "no_auth"),
    ] {
        if spec.has(bit) {
            v.push(name);
        }
    }
    v
}

/// One `COMMAND INFO` entry: flags, ACL categories, tips and key specs are sets in RESP3.
fn command_info(b: &mut BytesMut, spec: &CommandSpec, proto: Proto) {
    encode::array(b, 10);
    encode::bulk(b, spec.name.as_bytes());
    encode::int(b, spec.arity as i64);
    let flags = flag_names(spec);
    encode::set(b, flags.len(), proto);
    for f in flags {
        encode::simple(b, f);
    }
    encode::int(b, spec.first as i64);
    encode::int(b, spec.last as i64);
    encode::int(b, spec.step as i64);
    for _ in 0..3 {
        encode::set(b, 0, proto);
    }
    encode::array(b, 0);
}

fn command_cmd(args: &Args, proto: Proto, b: &mut BytesMut) {
    if args.len() == 1 {
        encode::array(b, COMMANDS.len());
        for c in COMMANDS {
            command_info(b, c, proto);
        }
        return;
    }
    let sub = String::from_utf8_lossy(&args[1]).to_lowercase();
    match sub.as_str() {
        "count" => encode::int(b, COMMANDS.len() as i64),
        "info" => {
            let names: Vec<_> = if args.len() == 2 {
                COMMANDS.iter().map(|c| c.name.as_bytes()).collect()
            } else {
                args[2..].iter().map(|a| a.as_ref()).collect()
            };
            encode::array(b, names.len());
            for n in names {
                match command::lookup(n) {
                    Some(c) => command_info(b, c, proto),
                    None => encode::null(b, proto),
                }
            }
        }
        "docs" => {
            // Documentation text is not shipped; clients (redis-cli) degrade to no hints.
            let names: Vec<&[u8]> = args[2..]
                .iter()
                .map(|a| a.as_ref())
                .filter(|n| command::lookup(n).is_some())
                .collect();
            encode::map(b, names.len(), proto);
            for n in names {
                encode::bulk(b, &n.to_ascii_lowercase());
                encode::map(b, 2, proto);
                encode::bulk(b, b"summary");
                encode::bulk(b, b"");
                encode::bulk(b, b"group");
                encode::bulk(b, b"generic");
            }
        }
        "list" => {
            encode::array(b, COMMANDS.len());
            for c in COMMANDS {
                encode::bulk(b, c.name.as_bytes());
            }
        }
        "getkeys" if args.len() >= 3 => match command::lookup(&args[2]) {
            Some(c) if c.arity_ok(args.len() - 2) => {
                let sub_args: Args = args[2..].to_vec();
                let pos = c.key_positions(&sub_args);
                if pos.is_empty() {
                    return encode::error(b, "ERR The command has no key arguments");
                }
                encode::array(b, pos.len());
                for p in pos {
                    encode::bulk(b, &sub_args[p]);
                }
            }
            Some(_) => encode::error(b, "ERR Invalid number of arguments specified for command"),
            None => encode::error(b, "ERR Invalid command specified"),
        },
        _ => {
            let s = String::from_utf8_lossy(&args[1]).to_string();
            encode::error(b, &format!("ERR unknown subcommand or wrong number of arguments for '{s}'. Try COMMAND HELP."))
        }
    }
}

fn config(core: &Rc<Core>, args: &Args, proto: Proto, b: &mut BytesMut) {
    let sub = String::from_utf8_lossy(&args[1]).to_lowercase();
    match sub.as_str() {
        "get" if args.len() >= 3 => {
            let cfg = core.shared.config();
            let mut pairs = Vec::new();
            for p in &args[2..] {
                for kv in cfg.get(p) {
                    if !pairs.contains(&kv) {
                        pairs.push(kv);
                    }
                }
            }
            encode::map(b, pairs.len(), proto);
            for (k, v) in pairs {
                encode::bulk(b, k.as_bytes());
                encode::bulk(b, v.as_bytes());
            }
        }
        "set" if args.len() >= 4 && args.len().is_multiple_of(2) => {
            let Ok(mut cfg) = core.shared.config.write() else {
                return encode::error(b, "ERR config lock poisoned");
            };
            let mut next = cfg.clone();
            for pair in args[2..].chunks(2) {
                let (k, v) = (
                    String::from_utf8_lossy(&pair[0]).to_string(),
                    String::from_utf8_lossy(&pair[1]).to_string(),
                );
                if let Err(e) = next.set(&k, &v, false) {
                    return encode::error(b, &e.to_string());
                }
            }
            *cfg = next;
            drop(cfg);
            // `appendonly` switches the AOF on (with a rewrite) or off.
            crate::aof::apply_config(core);
            encode::ok(b)
        }
        "set" => encode::error(b, err::SYNTAX),
        "resetstat" if args.len() == 2 => encode::ok(b),
        "rewrite" if args.len() == 2 => {
            encode::error(b, "ERR The server is running without a config file")
        }
        "get" => encode::error(b, "ERR wrong number of arguments for 'config|get' command"),
        _ => {
            let s = String::from_utf8_lossy(&args[1]).to_string();
            encode::error(
                b,
                &format!("ERR unknown subcommand '{s}'. Try CONFIG HELP."),
            )
        }
    }
}

async fn debug(core: &Rc<Core>, sess: &mut Session, args: &Args, b: &mut BytesMut) {
    let sub = String::from_utf8_lossy(&args[1]).to_lowercase();
    match sub.as_str() {
        "sleep" if args.len() == 3 => {
            let secs: f64 = std::str::from_utf8(&args[2])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0.0);
            if secs > 0.0 && secs.is_finite() {
                glommio::timer::sleep(Duration::from_secs_f64(secs.min(3600.0))).await;
            }
            encode::ok(b)
        }
        "object" if args.len() == 3 => {
            let key = args[2].clone();
            let db = sess.db;
            let now = crate::shared::now_ms();
            let found: Option<(&'static str, usize, u32)> = core
                .run_on_slot(resp::slot(&key), move |s| {
                    s.dbs[db]
                        .peek(&key, now)
                        .map(|e| (e.encoding(), crate::value::approx_size(e.value), e.clock()))
                })
                .await;
            match found {
                Some((enc, size, lru)) => {
                    let idle = crate::db::clock::idle_secs(lru);
                    encode::simple(b, &format!("Value at:0x0 refcount:1 encoding:{enc} serializedlength:{size} lru:{lru} lru_seconds_idle:{idle}"))
                }
                None => encode::error(b, "ERR no such key"),
            }
        }
        "populate" if (3..=5).contains(&args.len()) => {
            // Redis's getPositiveLongFromObjectOrReply: one message for both failures.
            let positive = |a: &[u8]| match resp::parse_i64(a) {
                Some(n) if n >= 0 => Ok(n as u64),
                _ => Err("ERR value is out of range, must be positive"),
            };
            let count = match positive(&args[2]) {
                Ok(n) => n,
                Err(e) => return encode::error(b, e),
            };
            let size = match args.get(4).map(|a| positive(a)) {
                Some(Ok(n)) => n as usize,
                Some(Err(e)) => return encode::error(b, e),
                None => 0,
            };
            let prefix = args
                .get(3)
                .cloned()
                .unwrap_or_else(|| Bytes::from_static(b"key"));
            let db = sess.db;
            // Every core creates the keys of the slots it owns; existing keys are left alone (so
            // a run repeated because a slot moved meanwhile changes nothing twice).
            core.broadcast_stable(move |sh| populate(sh, db, &prefix, count, size))
                .await;
            encode::ok(b)
        }
        "reload" => match crate::persist::debug_reload(core).await {
            Ok(_) => encode::ok(b),
            Err(e) => encode::error(b, &format!("ERR Error trying to load the RDB dump: {e}")),
        },
        "help" => {
            let lines = [
                "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "SLEEP <seconds>",
                "OBJECT <key>",
                "POPULATE <count> [<prefix>] [<size>]",
                "RELOAD",
                "HELP",
            ];
            encode::help(b, &lines);
        }
        _ => {
            let s = String::from_utf8_lossy(&args[1]).to_string();
            encode::error(b, &format!("ERR unknown subcommand or wrong number of arguments for '{s}'. Try DEBUG HELP."))
        }
    }
}

/// DEBUG POPULATE on one core: `<prefix>:<n>` = `value:<n>` (cut or zero-padded to `size` bytes
/// when `size` > 0) for every n below `count` whose slot this core owns and that does not exist,
/// as Redis's debug.c writes them (not propagated to replicas, as in Redis).
fn populate(sh: &mut crate::shard::Shard, db: usize, prefix: &[u8], count: u64, size: usize) {
    let now = crate::shared::now_ms();
    let mut key = Vec::with_capacity(prefix.len() + 21);
    let mut val = Vec::new();
    for n in 0..count {
        key.clear();
        key.extend_from_slice(prefix);
        key.extend_from_slice(format!(":{n}").as_bytes());
        if !sh.owns(resp::slot(&key)) || sh.dbs[db].contains(&key, now) {
            continue;
        }
        val.clear();
        val.extend_from_slice(format!("value:{n}").as_bytes());
        if size > 0 {
            val.resize(size, 0);
        }
        sh.dbs[db].insert_str(&key, &val, 0);
    }
}

async fn memory(core: &Rc<Core>, sess: &mut Session, args: &Args, now: u64, b: &mut BytesMut) {
    let sub = String::from_utf8_lossy(&args[1]).to_lowercase();
    match sub.as_str() {
        "usage" if args.len() >= 3 => {
            let key = args[2].clone();
            let db = sess.db;
            let n: Option<usize> = core
                .run_on_slot(resp::slot(&key), move |s| {
                    s.dbs[db]
                        .get(&key, now)
                        .map(|e| key.len() + crate::value::approx_size(e.value) + 48)
                })
                .await;
            match n {
                Some(n) => encode::int(b, n as i64),
                None => encode::null(b, sess.proto),
            }
        }
        _ => {
            let s = String::from_utf8_lossy(&args[1]).to_string();
            encode::error(b, &format!("ERR unknown subcommand or wrong number of arguments for '{s}'. Try MEMORY HELP."))
        }
    }
}
