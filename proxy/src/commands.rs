//! What the proxy does with each command, on top of the shared command table (`resp::command`):
//! answer it itself, refuse it (Codis's blocked list), split it across backends, or forward it
//! by its hash key. Computed once per table row, so a request costs one lookup.

use std::sync::LazyLock;

use bytes::Bytes;
use resp::command::{self, CommandSpec, BLOCKING, COMMANDS, MOVABLE, PUBSUB, READONLY, TX};

use crate::scripts::Call;

/// The proxy's handling of one command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Quit,
    Auth,
    Select,
    Ping,
    Echo,
    Info,
    Hello,
    /// `CLIENT …`: answered about the proxy's own clients (`clients`).
    Client,
    /// `CONFIG GET` is read from one backend master; other subcommands are refused.
    Config,
    SlotsInfo,
    SlotsScan,
    /// `SCAN cursor [MATCH p] [COUNT n] [TYPE t]` over the whole cluster, slot by slot (`scan`).
    Scan,
    /// `DBSIZE`: the sum over every group master.
    DbSize,
    /// `SCRIPT LOAD | EXISTS | FLUSH | KILL | HELP`: sent to every group master, replies merged
    /// (`multikey::to_every_master`), so EVALSHA finds a loaded script on every group.
    Script,
    /// `FUNCTION …`: what changes the libraries goes to every group master, so FCALL finds a
    /// library on any group; the rest is read from one master ([`function_route`]).
    Function,
    /// `MULTI`, `EXEC`, `DISCARD`, `UNWATCH`: transactions on one slot (`session`).
    Multi,
    Exec,
    Discard,
    Unwatch,
    SlotsMapping,
    /// `SUBSCRIBE`, `PSUBSCRIBE`, `UNSUBSCRIBE`, `PUNSUBSCRIBE`: a connection of the session's
    /// own to the pub/sub home (`pubsub`).
    Subscribe,
    /// `PUBLISH`, `PUBSUB …`: to the pub/sub home on the shared connections.
    Publish,
    /// `RESET`: the session back to a new connection's state (answered here).
    Reset,
    /// `WATCH key…`: on a connection of the session's own to the keys' master, where the
    /// transaction then runs (`session`).
    Watch,
    /// Refused with `ERR handle request, command 'X' is not allowed`.
    Blocked,
    /// A blocking command (BLPOP…): on the session's own connection (`blocking`).
    Blocking,
    /// Split per backend and merged.
    Split(SplitKind),
    /// Forwarded by its hash key; `multi_key` commands must keep all keys in one slot.
    Forward {
        multi_key: bool,
        hash_arg3: bool,
        /// EVAL, EVALSHA and their `_RO` forms (`scripts`).
        script: Option<Call>,
    },
}

/// The multi-key commands the proxy splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitKind {
    /// `MGET k…`: arrays merged in key order.
    Mget,
    /// `MSET k v…`: `+OK` if every part said so.
    Mset,
    /// `DEL`, `EXISTS`, `TOUCH`, `UNLINK`: integers summed.
    Sum,
    /// Every part must answer the same (`SCRIPT LOAD`'s SHA1, `SCRIPT FLUSH`'s `+OK`).
    Same,
    /// The first part's reply, unless a part answered an error (`FUNCTION LOAD`'s library name,
    /// `FUNCTION DELETE | FLUSH | RESTORE`'s `+OK`).
    First,
    /// Arrays of 0/1 combined element-wise: 1 where every part said 1 (`SCRIPT EXISTS`).
    All,
    /// `+OK` if any part said so, else the first reply that is not `NOTBUSY`, else `NOTBUSY`
    /// (`SCRIPT KILL`, `FUNCTION KILL`: the group that runs the script has the answer).
    Any,
}

/// Codis 3.2's `FlagNotAllow` list (reference §2.2), plus every pub/sub or transaction command
/// and blocking command other than the list and sorted-set pops — except what the proxy now
/// answers itself (`classify`): CLIENT, CONFIG GET, DBSIZE, SCAN, MULTI/EXEC/DISCARD/UNWATCH,
/// SCRIPT (Codis refused it; it now goes to every group master), BLPOP, BRPOP, BRPOPLPUSH (on a
/// session's own connection, as every blocking pop: `blocking`).
const BLOCKED: &[&str] = &[
    "asking",
    "bgrewriteaof",
    "bgsave",
    "bitop",
    "cluster",
    "debug",
    "flushall",
    "flushdb",
    "host:",
    "keys",
    "lastsave",
    "latency",
    "migrate",
    "monitor",
    "move",
    "msetnx",
    "object",
    "post",
    "psync",
    "randomkey",
    "readonly",
    "readwrite",
    "rename",
    "renamenx",
    "replconf",
    "restore",
    "restore-asking",
    "save",
    "shutdown",
    "slaveof",
    "replicaof",
    "slowlog",
    "sync",
    "time",
    "wait",
    "swapdb",
    "copy",
    "memory",
    "slotscheck",
    "slotsdel",
    "slotsmgrtone",
    "slotsmgrtslot",
    "slotsmgrttagone",
    "slotsmgrttagslot",
    "slotsmgrtone-async",
    "slotsmgrtslot-async",
    "slotsmgrttagone-async",
    "slotsmgrttagslot-async",
    "slotsmgrt-async-fence",
    "slotsmgrt-async-cancel",
    "slotsmgrt-async-status",
    "slotsmgrt-exec-wrapper",
    "slotsrestore-async",
    "slotsrestore-async-auth",
    "slotsrestore-async-ack",
    "slotsrestore-async-select",
    "slotsmove",
];

/// Reads that must go to the master even when replica reads are on.
const MASTER_ONLY: &[&str] = &["hscan", "sscan", "zscan", "slotsinfo", "slotsscan"];

fn classify(spec: &CommandSpec) -> Kind {
    let n = spec.name;
    match n {
        "quit" => return Kind::Quit,
        "auth" => return Kind::Auth,
        "select" => return Kind::Select,
        "ping" => return Kind::Ping,
        "echo" => return Kind::Echo,
        "info" => return Kind::Info,
        "hello" => return Kind::Hello,
        "client" => return Kind::Client,
        "config" => return Kind::Config,
        "slotsinfo" => return Kind::SlotsInfo,
        "slotsscan" => return Kind::SlotsScan,
        "scan" => return Kind::Scan,
        "dbsize" => return Kind::DbSize,
        "script" => return Kind::Script,
        "function" => return Kind::Function,
        "multi" => return Kind::Multi,
        "exec" => return Kind::Exec,
        "discard" => return Kind::Discard,
        "unwatch" => return Kind::Unwatch,
        "mget" => return Kind::Split(SplitKind::Mget),
        "mset" => return Kind::Split(SplitKind::Mset),
        "del" | "exists" | "touch" | "unlink" => return Kind::Split(SplitKind::Sum),
        "subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe" | "ssubscribe"
        | "sunsubscribe" => return Kind::Subscribe,
        "publish" | "spublish" | "pubsub" => return Kind::Publish,
        "watch" => return Kind::Watch,
        "reset" => return Kind::Reset,
        "blpop" | "brpop" | "brpoplpush" | "blmove" | "blmpop" | "bzpopmin" | "bzpopmax"
        | "bzmpop" => return Kind::Blocking,
        _ => {}
    }
    if BLOCKED.contains(&n) || spec.has(BLOCKING) || spec.has(PUBSUB) || spec.has(TX) {
        return Kind::Blocked;
    }
    let multi_key = spec.has(MOVABLE) || spec.last < 0 || spec.last > spec.first;
    let hash_arg3 = matches!(
        n,
        "zinterstore" | "zunionstore" | "eval" | "evalsha" | "fcall" | "fcall_ro"
    );
    let script = match n {
        "eval" | "eval_ro" => Some(Call::Eval),
        "evalsha" | "evalsha_ro" => Some(Call::EvalSha),
        _ => None,
    };
    Kind::Forward {
        multi_key,
        hash_arg3,
        script,
    }
}

struct Row {
    kind: Kind,
    replica_ok: bool,
}

static ROWS: LazyLock<Vec<Row>> = LazyLock::new(|| {
    COMMANDS
        .iter()
        .map(|c| Row {
            kind: classify(c),
            replica_ok: c.has(READONLY) && !MASTER_ONLY.contains(&c.name),
        })
        .collect()
});

/// A request's command, looked up once.
#[derive(Clone, Copy)]
pub struct Cmd {
    /// The table row (`None`: unknown to the table).
    pub spec: Option<&'static CommandSpec>,
    /// Row index (`stats::UNKNOWN_CMD` when unknown).
    pub index: usize,
    pub kind: Kind,
    /// A pure read that a replica may serve.
    pub replica_ok: bool,
}

/// Classifies a request by its name (`args[0]`).
pub fn lookup(name: &[u8]) -> Cmd {
    if let Some(spec) = command::lookup(name) {
        let index = (spec as *const CommandSpec as usize - COMMANDS.as_ptr() as usize)
            / std::mem::size_of::<CommandSpec>();
        let row = &ROWS[index];
        if spec.name == "slotshashkey" {
            return Cmd {
                spec: Some(spec),
                index,
                kind: Kind::Forward {
                    multi_key: false,
                    hash_arg3: false,
                    script: None,
                },
                replica_ok: false,
            };
        }
        return Cmd {
            spec: Some(spec),
            index,
            kind: row.kind,
            replica_ok: row.replica_ok,
        };
    }
    let mut lower = [0u8; 32];
    let kind = if name.len() <= lower.len() && {
        let l = &mut lower[..name.len()];
        l.copy_from_slice(name);
        l.make_ascii_lowercase();
        std::str::from_utf8(l).is_ok_and(|s| BLOCKED.contains(&s) || s == "slotsmapping")
    } {
        if name.eq_ignore_ascii_case(b"slotsmapping") {
            Kind::SlotsMapping
        } else {
            Kind::Blocked
        }
    } else {
        // Codis forwards commands it does not know by argv[1], as may-write.
        Kind::Forward {
            multi_key: false,
            hash_arg3: false,
            script: None,
        }
    };
    Cmd {
        spec: None,
        index: crate::stats::UNKNOWN_CMD,
        kind,
        replica_ok: false,
    }
}

/// Where a `FUNCTION` subcommand goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionRoute {
    /// To every group master, the replies merged by this kind.
    Every(SplitKind),
    /// To one group master (reads, `HELP`, and unknown subcommands, which it refuses as Redis).
    One,
}

/// The route of `FUNCTION sub …`: `LOAD`, `DELETE`, `FLUSH` and `RESTORE` change the libraries
/// of every group (first error, else the first reply); `KILL` stops the function wherever one
/// runs; `LIST`, `DUMP`, `STATS` and `HELP` are answered by one master, whose libraries are
/// every group's when they were loaded through the proxy.
pub fn function_route(sub: &[u8]) -> FunctionRoute {
    const CHANGES: [&[u8]; 4] = [b"load", b"delete", b"flush", b"restore"];
    if CHANGES.iter().any(|c| sub.eq_ignore_ascii_case(c)) {
        FunctionRoute::Every(SplitKind::First)
    } else if sub.eq_ignore_ascii_case(b"kill") {
        FunctionRoute::Every(SplitKind::Any)
    } else {
        FunctionRoute::One
    }
}

/// The key a request is routed by (Codis's `getHashKey`, improved to use the table's first key).
pub fn hash_key<'a>(cmd: &Cmd, args: &'a [Bytes]) -> &'a [u8] {
    let pos = match (cmd.kind, cmd.spec) {
        (
            Kind::Forward {
                hash_arg3: true, ..
            },
            _,
        ) => 3,
        (_, Some(spec)) => spec.first_key(args).unwrap_or(1),
        _ => 1,
    };
    args.get(pos).map_or(&[][..], |a| &a[..])
}

/// For multi-key commands: `Some(slot)` if every key hashes to one slot, `None` if they span.
pub fn common_slot(spec: &CommandSpec, args: &[Bytes]) -> Option<Option<u16>> {
    let mut slot = None;
    for p in spec.key_positions(args) {
        let s = resp::slot(&args[p]);
        match slot {
            None => slot = Some(s),
            Some(x) if x != s => return None,
            _ => {}
        }
    }
    Some(slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    #[test]
    fn kinds() {
        assert_eq!(lookup(b"KEYS").kind, Kind::Blocked);
        assert_eq!(lookup(b"blpop").kind, Kind::Blocking);
        assert_eq!(lookup(b"BZMPOP").kind, Kind::Blocking);
        assert_eq!(lookup(b"wait").kind, Kind::Blocked);
        assert_eq!(lookup(b"POST").kind, Kind::Blocked);
        assert_eq!(lookup(b"host:").kind, Kind::Blocked);
        assert_eq!(lookup(b"PSUBSCRIBE").kind, Kind::Subscribe);
        assert_eq!(lookup(b"pubsub").kind, Kind::Publish);
        assert_eq!(lookup(b"SSUBSCRIBE").kind, Kind::Subscribe);
        assert_eq!(lookup(b"spublish").kind, Kind::Publish);
        assert_eq!(lookup(b"mget").kind, Kind::Split(SplitKind::Mget));
        assert_eq!(lookup(b"script").kind, Kind::Script);
        assert_eq!(lookup(b"FUNCTION").kind, Kind::Function);
        assert_eq!(
            function_route(b"Load"),
            FunctionRoute::Every(SplitKind::First)
        );
        assert_eq!(
            function_route(b"RESTORE"),
            FunctionRoute::Every(SplitKind::First)
        );
        assert_eq!(
            function_route(b"kill"),
            FunctionRoute::Every(SplitKind::Any)
        );
        for sub in ["list", "DUMP", "stats", "help", "bogus"] {
            assert_eq!(function_route(sub.as_bytes()), FunctionRoute::One, "{sub}");
        }
        assert!(lookup(b"fcall_ro").replica_ok && !lookup(b"fcall").replica_ok);
        assert_eq!(lookup(b"SlotsMapping").kind, Kind::SlotsMapping);
        assert!(lookup(b"get").replica_ok && !lookup(b"set").replica_ok);
        assert!(!lookup(b"hscan").replica_ok);
        assert!(matches!(
            lookup(b"get").kind,
            Kind::Forward {
                multi_key: false,
                ..
            }
        ));
        assert!(matches!(
            lookup(b"sinter").kind,
            Kind::Forward {
                multi_key: true,
                ..
            }
        ));
        assert!(matches!(
            lookup(b"xadd").kind,
            Kind::Forward {
                multi_key: false,
                ..
            }
        ));
    }

    #[test]
    fn hash_keys() {
        let c = lookup(b"zunionstore");
        assert_eq!(hash_key(&c, &args("ZUNIONSTORE d 2 a b")), b"a");
        // FCALL routes as EVAL: by its first key; keys in two slots are cross-slot.
        for name in ["FCALL", "FCALL_RO"] {
            let c = lookup(name.as_bytes());
            assert_eq!(
                hash_key(&c, &args(&format!("{name} f 2 {{t}}a {{t}}b x"))),
                b"{t}a"
            );
            assert_eq!(hash_key(&c, &args(&format!("{name} f 0"))), b"");
            let spec = c.spec.unwrap();
            assert_eq!(
                common_slot(spec, &args(&format!("{name} f 2 {{t}}a {{t}}b x"))),
                Some(Some(resp::slot(b"t")))
            );
            assert_eq!(common_slot(spec, &args(&format!("{name} f 2 a b"))), None);
            assert!(matches!(
                c.kind,
                Kind::Forward {
                    multi_key: true,
                    hash_arg3: true,
                    script: None
                }
            ));
        }
        let c = lookup(b"object");
        assert_eq!(hash_key(&c, &args("OBJECT ENCODING k")), b"k");
        let c = lookup(b"get");
        assert_eq!(hash_key(&c, &args("GET k")), b"k");
        let c = lookup(b"sinter");
        let spec = c.spec.unwrap();
        assert_eq!(
            common_slot(spec, &args("SINTER {t}a {t}b")),
            Some(Some(resp::slot(b"t")))
        );
        assert_eq!(common_slot(spec, &args("SINTER a b")), None);
        // SORT routes by its key; a STORE destination in another slot is cross-slot.
        let c = lookup(b"sort");
        let spec = c.spec.unwrap();
        assert_eq!(hash_key(&c, &args("SORT k BY nosort STORE d")), b"k");
        assert_eq!(
            common_slot(spec, &args("SORT {t}l BY {t}w_* STORE {t}d")),
            Some(Some(resp::slot(b"t")))
        );
        assert_eq!(common_slot(spec, &args("SORT a LIMIT 0 1 STORE b")), None);
        let c = lookup(b"sort_ro");
        assert_eq!(
            common_slot(c.spec.unwrap(), &args("SORT_RO a STORE b")),
            Some(Some(resp::slot(b"a")))
        );
    }
}
