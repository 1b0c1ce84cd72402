//! Server configuration: command-line flags, a redis.conf-syntax file, and `CONFIG GET/SET`.
//!
//! Every key the server reports through `CONFIG GET` is a key it honours; `CONFIG SET` on a key that
//! cannot change at run time is refused with Redis's error rather than silently ignored.

use std::collections::BTreeMap;
use std::path::Path;

/// Parsed configuration. Values are kept as text (as Redis shows them) plus typed copies of what
/// the hot path reads.
#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub bind: Vec<String>,
    pub cores: usize,
    pub requirepass: Option<Vec<u8>>,
    pub maxclients: usize,
    pub dir: String,
    /// RDB file name inside `dir`.
    pub dbfilename: String,
    /// `save <seconds> <changes>` rules.
    pub save: Vec<(u64, u64)>,
    /// `appendonly yes`.
    pub appendonly: bool,
    /// `appendfsync`: always, everysec or no.
    pub appendfsync: String,
    /// AOF file name inside `dir`.
    pub appendfilename: String,
    /// Load an AOF whose last command was cut short (and truncate it).
    pub aof_load_truncated: bool,
    pub databases: usize,
    pub proto_max_bulk_len: usize,
    pub client_query_buffer_limit: usize,
    /// Idle client timeout in seconds (0: never).
    pub timeout: u64,
    /// `disable-thp yes`: no transparent huge pages for this process (Redis's default).
    pub disable_thp: bool,
    /// `daemonize yes`: fork into the background at start-up.
    pub daemonize: bool,
    /// Log file (`""`: standard error, or nowhere once daemonized).
    pub logfile: String,
    /// The absolute path of the config file the server started with (`""`: none), for INFO.
    pub config_file: String,
    /// File to write the process id into at start-up (`""`: none); removed at shutdown.
    pub pidfile: String,
    /// Unix socket path to listen on as well (`""`: none); removed at shutdown.
    pub unixsocket: String,
    /// Permission bits of the Unix socket file (0: leave the umask's).
    pub unixsocketperm: u32,
    /// Directives of a redis.conf that codis-server accepts without acting on them (see
    /// [`IGNORED`]), as `file:line: directive`, for one warning at start-up.
    pub ignored: Vec<String>,
    /// Every key and its text value, for CONFIG GET.
    values: BTreeMap<&'static str, String>,
}

/// Why a config value was refused. `Display` is Redis's text.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("ERR Unknown option or number of arguments for CONFIG SET - '{0}'")]
    Unknown(String),
    #[error("ERR CONFIG SET failed (possibly related to argument '{0}') - {1}")]
    Invalid(String, String),
    #[error(
        "ERR CONFIG SET failed (possibly related to argument '{0}') - can't set immutable config"
    )]
    Immutable(String),
}

struct Key {
    name: &'static str,
    default: &'static str,
    mutable: bool,
}

const KEYS: &[Key] = &[
    // Replication (repl/): the master to follow and how.
    Key {
        name: "replicaof",
        default: "",
        mutable: false,
    },
    Key {
        name: "masterauth",
        default: "",
        mutable: true,
    },
    Key {
        name: "replica-read-only",
        default: "yes",
        mutable: true,
    },
    Key {
        name: "repl-backlog-size",
        default: "1048576",
        mutable: true,
    },
    Key {
        name: "repl-ping-replica-period",
        default: "10",
        mutable: true,
    },
    Key {
        name: "port",
        default: "6379",
        mutable: false,
    },
    Key {
        name: "bind",
        default: "127.0.0.1",
        mutable: false,
    },
    Key {
        name: "unixsocket",
        default: "",
        mutable: false,
    },
    Key {
        name: "unixsocketperm",
        default: "0",
        mutable: false,
    },
    Key {
        name: "cores",
        default: "0",
        mutable: false,
    },
    Key {
        name: "requirepass",
        default: "",
        mutable: true,
    },
    Key {
        name: "maxclients",
        default: "10000",
        mutable: true,
    },
    Key {
        name: "dir",
        default: ".",
        mutable: true,
    },
    Key {
        name: "databases",
        default: "16",
        mutable: false,
    },
    Key {
        name: "proto-max-bulk-len",
        default: "536870912",
        mutable: true,
    },
    Key {
        name: "client-query-buffer-limit",
        default: "1073741824",
        mutable: true,
    },
    Key {
        name: "timeout",
        default: "0",
        mutable: true,
    },
    Key {
        name: "hz",
        default: "10",
        mutable: true,
    },
    Key {
        name: "notify-keyspace-events",
        default: "",
        mutable: true,
    },
    Key {
        name: "client-output-buffer-limit",
        default: "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
        mutable: true,
    },
    Key {
        name: "lua-time-limit",
        default: "5000",
        mutable: true,
    },
    Key {
        name: "save",
        default: "",
        mutable: true,
    },
    Key {
        name: "appendonly",
        default: "no",
        mutable: true,
    },
    Key {
        name: "appendfsync",
        default: "everysec",
        mutable: true,
    },
    Key {
        name: "appendfilename",
        default: "appendonly.aof",
        mutable: false,
    },
    Key {
        name: "aof-load-truncated",
        default: "yes",
        mutable: true,
    },
    Key {
        name: "dbfilename",
        default: "dump.rdb",
        mutable: true,
    },
    // Eviction (evict.rs); the policy also selects LRU or LFU access tracking.
    Key {
        name: "maxmemory",
        default: "0",
        mutable: true,
    },
    Key {
        name: "maxmemory-samples",
        default: "5",
        mutable: true,
    },
    Key {
        name: "maxmemory-policy",
        default: "noeviction",
        mutable: true,
    },
    Key {
        name: "lfu-log-factor",
        default: "10",
        mutable: true,
    },
    Key {
        name: "lfu-decay-time",
        default: "1",
        mutable: true,
    },
    Key {
        name: "daemonize",
        default: "no",
        mutable: false,
    },
    Key {
        name: "client-core-affinity",
        default: "yes",
        mutable: true,
    },
    Key {
        name: "migration-nice",
        default: "10",
        mutable: true,
    },
    Key {
        name: "slowlog-log-slower-than",
        default: "10000",
        mutable: true,
    },
    Key {
        name: "latency-monitor-threshold",
        default: "0",
        mutable: true,
    },
    Key {
        name: "slowlog-max-len",
        default: "128",
        mutable: true,
    },
    Key {
        name: "logfile",
        default: "",
        mutable: false,
    },
    Key {
        name: "pidfile",
        default: "",
        mutable: false,
    },
    Key {
        name: "loglevel",
        default: "notice",
        mutable: true,
    },
    Key {
        name: "tcp-keepalive",
        default: "300",
        mutable: false,
    },
    Key {
        name: "hash-max-listpack-entries",
        default: "512",
        mutable: true,
    },
    Key {
        name: "hash-max-listpack-value",
        default: "64",
        mutable: true,
    },
    Key {
        name: "hash-max-ziplist-entries",
        default: "512",
        mutable: true,
    },
    Key {
        name: "hash-max-ziplist-value",
        default: "64",
        mutable: true,
    },
    Key {
        name: "set-max-intset-entries",
        default: "512",
        mutable: true,
    },
    Key {
        name: "hll-sparse-max-bytes",
        default: "3000",
        mutable: true,
    },
    Key {
        name: "zset-max-listpack-entries",
        default: "128",
        mutable: true,
    },
    Key {
        name: "zset-max-listpack-value",
        default: "64",
        mutable: true,
    },
    Key {
        name: "zset-max-ziplist-entries",
        default: "128",
        mutable: true,
    },
    Key {
        name: "zset-max-ziplist-value",
        default: "64",
        mutable: true,
    },
    Key {
        name: "list-max-listpack-size",
        default: "-2",
        mutable: true,
    },
    Key {
        name: "list-max-ziplist-size",
        default: "-2",
        mutable: true,
    },
    Key {
        name: "list-compress-depth",
        default: "0",
        mutable: false,
    },
    // Redis 6.2+: turn transparent huge pages off for this process (see `runtime::disable_thp`).
    Key {
        name: "disable-thp",
        default: "yes",
        mutable: false,
    },
];

impl Default for Config {
    fn default() -> Self {
        let mut c = Config {
            port: 6379,
            bind: vec!["127.0.0.1".into()],
            cores: 0,
            requirepass: None,
            maxclients: 10000,
            dir: ".".into(),
            dbfilename: "dump.rdb".into(),
            save: Vec::new(),
            appendonly: false,
            appendfsync: "everysec".into(),
            appendfilename: "appendonly.aof".into(),
            aof_load_truncated: true,
            databases: 16,
            proto_max_bulk_len: 512 * 1024 * 1024,
            client_query_buffer_limit: 1024 * 1024 * 1024,
            timeout: 0,
            disable_thp: true,
            daemonize: false,
            logfile: String::new(),
            config_file: String::new(),
            pidfile: String::new(),
            unixsocket: String::new(),
            unixsocketperm: 0,
            ignored: Vec::new(),
            values: BTreeMap::new(),
        };
        for k in KEYS {
            c.values.insert(k.name, k.default.to_string());
        }
        c
    }
}

/// Redis 7.0 directives a redis.conf may hold that codis-server accepts without acting on them:
/// tuning of Redis's own internals (defragmentation, lazy freeing, I/O threads, diskless
/// replication, process titles…) whose absence changes no reply and loses no data. With
/// `Some(v)`, only that value is accepted (anything else would change behaviour). Directives that
/// change what clients see or who may connect (`rename-command`, `user`, `tls-*`,
/// `loadmodule`…) stay errors.
pub const IGNORED: &[(&str, Option<&str>)] = &[
    ("acllog-max-len", None),
    ("active-defrag-cycle-max", None),
    ("active-defrag-cycle-min", None),
    ("active-defrag-ignore-bytes", None),
    ("active-defrag-max-scan-fields", None),
    ("active-defrag-threshold-lower", None),
    ("active-defrag-threshold-upper", None),
    ("active-expire-effort", None),
    ("activedefrag", None),
    ("activerehashing", None),
    ("always-show-logo", None),
    ("aof-disable-auto-gc", None),
    ("aof-rewrite-incremental-fsync", None),
    ("aof-timestamp-enabled", Some("no")),
    ("aof-use-rdb-preamble", None),
    ("aof_rewrite_cpulist", None),
    ("appenddirname", None),
    ("auto-aof-rewrite-min-size", None),
    ("auto-aof-rewrite-percentage", None),
    ("bgsave_cpulist", None),
    ("bio_cpulist", None),
    ("busy-reply-threshold", None),
    ("cluster-enabled", Some("no")),
    ("crash-log-enabled", None),
    ("crash-memcheck-enabled", None),
    ("dynamic-hz", None),
    ("enable-debug-command", None),
    ("enable-module-command", None),
    ("enable-protected-configs", None),
    ("io-threads", None),
    ("io-threads-do-reads", None),
    ("jemalloc-bg-thread", None),
    ("latency-tracking", None),
    ("latency-tracking-info-percentiles", None),
    ("lazyfree-lazy-eviction", None),
    ("lazyfree-lazy-expire", None),
    ("lazyfree-lazy-server-del", None),
    ("lazyfree-lazy-user-del", None),
    ("lazyfree-lazy-user-flush", None),
    ("maxmemory-clients", Some("0")),
    ("maxmemory-eviction-tenacity", None),
    ("min-replicas-max-lag", None),
    ("min-replicas-to-write", Some("0")),
    ("min-slaves-max-lag", None),
    ("min-slaves-to-write", Some("0")),
    ("no-appendfsync-on-rewrite", None),
    ("oom-score-adj", None),
    ("oom-score-adj-values", None),
    ("proc-title-template", None),
    ("protected-mode", None),
    ("rdb-del-sync-files", None),
    ("rdb-save-incremental-fsync", None),
    ("rdbchecksum", None),
    ("rdbcompression", None),
    ("repl-backlog-ttl", None),
    ("repl-disable-tcp-nodelay", None),
    ("repl-diskless-load", None),
    ("repl-diskless-sync", None),
    ("repl-diskless-sync-delay", None),
    ("repl-diskless-sync-max-replicas", None),
    ("repl-timeout", None),
    ("replica-announce-ip", None),
    ("replica-announce-port", None),
    ("replica-announced", None),
    ("replica-ignore-maxmemory", None),
    ("replica-lazy-flush", None),
    ("replica-priority", None),
    ("replica-serve-stale-data", None),
    ("sanitize-dump-payload", None),
    ("server_cpulist", None),
    ("set-proc-title", None),
    ("shutdown-on-sigint", Some("default")),
    ("shutdown-on-sigterm", Some("default")),
    ("shutdown-timeout", None),
    ("slave-announce-ip", None),
    ("slave-announce-port", None),
    ("slave-ignore-maxmemory", None),
    ("slave-lazy-flush", None),
    ("slave-priority", None),
    ("slave-serve-stale-data", None),
    ("stop-writes-on-bgsave-error", None),
    ("stream-node-max-bytes", None),
    ("stream-node-max-entries", None),
    ("supervised", None),
    ("syslog-enabled", Some("no")),
    ("syslog-facility", None),
    ("syslog-ident", None),
    ("tcp-backlog", None),
    ("tracking-table-max-keys", None),
];

/// The tracing filter for a Redis `loglevel` (debug, verbose, notice, warning, nothing).
pub fn tracing_level(redis: &str) -> &'static str {
    match redis.to_ascii_lowercase().as_str() {
        "debug" | "verbose" => "debug",
        "warning" => "warn",
        "nothing" => "off",
        _ => "info",
    }
}

type LogLevelHook = Box<dyn Fn(&str) + Send + Sync>;
static LOG_LEVEL_HOOK: std::sync::OnceLock<LogLevelHook> = std::sync::OnceLock::new();

/// How `CONFIG SET loglevel` changes the log filter (installed by the binary's logging set-up).
pub fn set_log_level_hook(f: LogLevelHook) {
    let _ = LOG_LEVEL_HOOK.set(f);
}

/// `maxmemory-policy` values (Redis 7.0's).
const MAXMEMORY_POLICIES: [&str; 8] = [
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "noeviction",
];

pub fn parse_memory(v: &str) -> Option<usize> {
    let v = v.to_ascii_lowercase();
    let (num, mul) = [
        ("gb", 1 << 30),
        ("mb", 1 << 20),
        ("kb", 1 << 10),
        ("g", 1_000_000_000),
        ("m", 1_000_000),
        ("k", 1000),
        ("b", 1),
    ]
    .iter()
    .find_map(|(suf, mul)| v.strip_suffix(suf).map(|n| (n.to_string(), *mul)))
    .unwrap_or((v.clone(), 1));
    num.parse::<usize>().ok().and_then(|n| n.checked_mul(mul))
}

/// `save` rules: `""` (none) or pairs `<seconds> <changes>`.
fn parse_save(v: &str) -> Option<Vec<(u64, u64)>> {
    let w: Vec<&str> = v.split_whitespace().collect();
    if w.len() % 2 != 0 {
        return None;
    }
    w.chunks(2)
        .map(|p| Some((p[0].parse().ok()?, p[1].parse().ok()?)))
        .collect()
}

impl Config {
    /// Set one key from text (file, flag or CONFIG SET). `startup` allows immutable keys.
    pub fn set(&mut self, key: &str, value: &str, startup: bool) -> Result<(), ConfigError> {
        let mut lkey = key.to_ascii_lowercase();
        // Redis's old names of the replication keys.
        lkey = match lkey.as_str() {
            "slaveof" => "replicaof".into(),
            "slave-read-only" => "replica-read-only".into(),
            _ => lkey,
        };
        // Encoding thresholds and their old (ziplist) names: one setting shown under both.
        let alias: Option<&'static str> = match lkey.as_str() {
            "hash-max-listpack-entries" => Some("hash-max-ziplist-entries"),
            "hash-max-ziplist-entries" => Some("hash-max-listpack-entries"),
            "hash-max-listpack-value" => Some("hash-max-ziplist-value"),
            "hash-max-ziplist-value" => Some("hash-max-listpack-value"),
            "zset-max-listpack-entries" => Some("zset-max-ziplist-entries"),
            "zset-max-ziplist-entries" => Some("zset-max-listpack-entries"),
            "zset-max-listpack-value" => Some("zset-max-ziplist-value"),
            "zset-max-ziplist-value" => Some("zset-max-listpack-value"),
            "list-max-listpack-size" => Some("list-max-ziplist-size"),
            "list-max-ziplist-size" => Some("list-max-listpack-size"),
            _ => None,
        };
        let value = &*crate::repl::config_value(&lkey, value, !startup)
            .map_err(|why| ConfigError::Invalid(key.to_string(), why))?;
        let Some(spec) = KEYS.iter().find(|k| k.name == lkey) else {
            return Err(ConfigError::Unknown(key.to_string()));
        };
        if !spec.mutable && !startup {
            return Err(ConfigError::Immutable(key.to_string()));
        }
        let bad = |why: &str| ConfigError::Invalid(key.to_string(), why.to_string());
        match spec.name {
            "port" => {
                self.port = value
                    .parse()
                    .map_err(|_| bad("argument couldn't be parsed into an integer"))?
            }
            "bind" => self.bind = value.split_whitespace().map(String::from).collect(),
            "unixsocket" => self.unixsocket = value.to_string(),
            "unixsocketperm" => {
                self.unixsocketperm = u32::from_str_radix(value, 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| bad("argument must be an octal number between 0 and 777"))?
            }
            "cores" => {
                self.cores = value
                    .parse()
                    .map_err(|_| bad("argument couldn't be parsed into an integer"))?
            }
            "requirepass" => {
                self.requirepass = (!value.is_empty()).then(|| value.as_bytes().to_vec())
            }
            "maxclients" => {
                self.maxclients = value
                    .parse()
                    .map_err(|_| bad("argument couldn't be parsed into an integer"))?
            }
            "dir" => {
                if !Path::new(value).is_dir() {
                    return Err(bad("No such file or directory"));
                }
                self.dir = value.to_string()
            }
            "databases" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| bad("argument couldn't be parsed into an integer"))?;
                if !(1..=16).contains(&n) {
                    return Err(bad("argument must be between 1 and 16 inclusive"));
                }
                self.databases = n
            }
            "proto-max-bulk-len" => {
                let n =
                    parse_memory(value).ok_or_else(|| bad("argument must be a memory value"))?;
                if n < 1024 * 1024 {
                    return Err(bad(
                        "argument must be between 1048576 and 9223372036854775807 inclusive",
                    ));
                }
                self.proto_max_bulk_len = n
            }
            "client-query-buffer-limit" => {
                let n =
                    parse_memory(value).ok_or_else(|| bad("argument must be a memory value"))?;
                if n < 1024 * 1024 {
                    return Err(bad(
                        "argument must be between 1048576 and 9223372036854775807 inclusive",
                    ));
                }
                self.client_query_buffer_limit = n
            }
            "timeout" => {
                self.timeout = value
                    .parse()
                    .map_err(|_| bad("argument couldn't be parsed into an integer"))?
            }
            "lua-time-limit" => {
                let ms: u64 = value
                    .parse()
                    .map_err(|_| bad("argument couldn't be parsed into an integer"))?;
                crate::script::LUA_TIME_LIMIT_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
            }
            "hash-max-listpack-entries"
            | "hash-max-ziplist-entries"
            | "set-max-intset-entries"
            | "zset-max-listpack-entries"
            | "zset-max-ziplist-entries"
            | "hash-max-listpack-value"
            | "hash-max-ziplist-value"
            | "zset-max-listpack-value"
            | "zset-max-ziplist-value"
            | "hll-sparse-max-bytes" => {
                use crate::value::limits;
                let memory = spec.name.ends_with("-value") || spec.name.ends_with("-bytes");
                let n: i128 = if memory {
                    // Redis's memtoull takes no sign: a negative size is not a memory value.
                    if value.starts_with('-') {
                        return Err(bad("argument must be a memory value"));
                    }
                    match value.parse::<i128>() {
                        Ok(n) => n,
                        Err(_) => parse_memory(value)
                            .ok_or_else(|| bad("argument must be a memory value"))?
                            as i128,
                    }
                } else {
                    value
                        .parse()
                        .map_err(|_| bad("argument couldn't be parsed into an integer"))?
                };
                if !(0..=i64::MAX as i128).contains(&n) {
                    return Err(bad(
                        "argument must be between 0 and 9223372036854775807 inclusive",
                    ));
                }
                let target = match spec.name {
                    "hash-max-listpack-entries" | "hash-max-ziplist-entries" => {
                        &limits::HASH_MAX_LISTPACK_ENTRIES
                    }
                    "hash-max-listpack-value" | "hash-max-ziplist-value" => {
                        &limits::HASH_MAX_LISTPACK_VALUE
                    }
                    "set-max-intset-entries" => &limits::SET_MAX_INTSET_ENTRIES,
                    "hll-sparse-max-bytes" => &limits::HLL_SPARSE_MAX_BYTES,
                    "zset-max-listpack-entries" | "zset-max-ziplist-entries" => {
                        &limits::ZSET_MAX_LISTPACK_ENTRIES
                    }
                    _ => &limits::ZSET_MAX_LISTPACK_VALUE,
                };
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                target.store(n, std::sync::atomic::Ordering::Relaxed);
                let shown = n.to_string();
                if let Some(a) = alias {
                    self.values.insert(a, shown.clone());
                }
                self.values.insert(spec.name, shown);
                return Ok(());
            }
            "list-max-listpack-size" | "list-max-ziplist-size" => {
                // Lists are always reported as `quicklist` (as Redis 7.0 does); the value bounds
                // a quicklist chunk as it bounds a Redis node (quicklist.rs).
                let n: i32 = value
                    .parse()
                    .map_err(|_| bad("argument couldn't be parsed into an integer"))?;
                crate::quicklist::LIST_MAX_LISTPACK_SIZE
                    .store(i64::from(n), std::sync::atomic::Ordering::Relaxed);
                if let Some(a) = alias {
                    self.values.insert(a, n.to_string());
                }
                self.values.insert(spec.name, n.to_string());
                return Ok(());
            }
            "notify-keyspace-events" => {
                let f = crate::notify::parse(value)
                    .ok_or_else(|| bad("Invalid event class character. Use 'Ag$lshzxeKEtmd'."))?;
                crate::notify::set_flags(f);
            }
            "client-output-buffer-limit" => {
                let limits =
                    crate::pubsub::parse_output_limits(value).ok_or_else(|| bad("Wrong format"))?;
                crate::pubsub::set_output_limits(&limits);
            }
            "hz" | "tcp-keepalive" => {
                value
                    .parse::<u64>()
                    .map_err(|_| bad("argument couldn't be parsed into an integer"))?;
            }
            "maxmemory" => {
                let n =
                    parse_memory(value).ok_or_else(|| bad("argument must be a memory value"))?;
                crate::evict::set_maxmemory(n as u64);
                self.values.insert(spec.name, n.to_string());
                return Ok(());
            }
            "maxmemory-samples" => {
                let n: u64 = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=i32::MAX as i64).contains(n))
                    .map(|n| n as u64)
                    .ok_or_else(|| bad("argument must be between 1 and 2147483647 inclusive"))?;
                crate::evict::set_samples(n);
                self.values.insert(spec.name, n.to_string());
                return Ok(());
            }
            "maxmemory-policy" => {
                let v = value.to_ascii_lowercase();
                if !MAXMEMORY_POLICIES.contains(&v.as_str()) {
                    return Err(bad("argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction"));
                }
                if let Some(p) = crate::evict::Policy::parse(&v) {
                    crate::evict::set_policy(p);
                }
                self.values.insert(spec.name, v);
                return Ok(());
            }
            "lfu-log-factor" | "lfu-decay-time" => {
                let n: u32 = value
                    .parse::<i64>()
                    .ok()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad("argument must be between 0 and 2147483647 inclusive"))?;
                if n > i32::MAX as u32 {
                    return Err(bad("argument must be between 0 and 2147483647 inclusive"));
                }
                if spec.name == "lfu-log-factor" {
                    crate::db::clock::set_lfu_params(Some(n), None);
                } else {
                    crate::db::clock::set_lfu_params(None, Some(n));
                }
                self.values.insert(spec.name, n.to_string());
                return Ok(());
            }
            "save" => {
                let rules = parse_save(value).ok_or_else(|| bad("Invalid save parameters"))?;
                // In a config file, several `save` lines add up (as in redis.conf).
                if startup && !rules.is_empty() {
                    self.save.extend(rules);
                } else {
                    self.save = rules;
                }
            }
            "dbfilename" => {
                if value.is_empty() || value.contains('/') {
                    return Err(bad("dbfilename can't be a path, just a filename"));
                }
                self.dbfilename = value.to_string()
            }
            "appendonly" | "aof-load-truncated" | "disable-thp" => {
                let yes = match value.to_ascii_lowercase().as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(bad("argument must be 'yes' or 'no'")),
                };
                match spec.name {
                    "appendonly" => self.appendonly = yes,
                    "aof-load-truncated" => self.aof_load_truncated = yes,
                    _ => self.disable_thp = yes,
                }
            }
            "appendfsync" => {
                let p = crate::aof::parse_policy(value).ok_or_else(|| {
                    bad("argument(s) must be one of the following: always, everysec, no")
                })?;
                crate::aof::set_policy(p);
                self.appendfsync = value.to_ascii_lowercase();
            }
            "appendfilename" => {
                if value.is_empty() || value.contains('/') {
                    return Err(bad("appendfilename can't be a path, just a filename"));
                }
                self.appendfilename = value.to_string()
            }
            "daemonize" => {
                self.daemonize = match value.to_ascii_lowercase().as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(bad("argument must be 'yes' or 'no'")),
                }
            }
            "client-core-affinity" => crate::conn::CORE_AFFINITY.store(
                match value.to_ascii_lowercase().as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(bad("argument must be 'yes' or 'no'")),
                },
                std::sync::atomic::Ordering::Relaxed,
            ),
            "migration-nice" => crate::lowprio::set_nice(
                value
                    .parse::<i32>()
                    .ok()
                    .filter(|n| (0..=19).contains(n))
                    .ok_or_else(|| bad("argument must be between 0 and 19 inclusive"))?,
            ),
            "slowlog-log-slower-than" => crate::slowlog::set_slower_than(
                value
                    .parse()
                    .map_err(|_| bad("argument couldn't be parsed into an integer"))?,
            ),
            "latency-monitor-threshold" => crate::latency::set_threshold(
                value
                    .parse::<i64>()
                    .map_err(|_| bad("argument couldn't be parsed into an integer"))
                    .and_then(|n| {
                        u64::try_from(n).map_err(|_| {
                            bad("argument must be between 0 and 9223372036854775807 inclusive")
                        })
                    })?,
            ),
            "slowlog-max-len" => crate::slowlog::set_max_len(
                value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| bad("argument couldn't be parsed into an integer"))?
                    as usize,
            ),
            "loglevel" => {
                if !["debug", "verbose", "notice", "warning", "nothing"]
                    .contains(&value.to_ascii_lowercase().as_str())
                {
                    return Err(bad("argument(s) must be one of the following: debug, verbose, notice, warning, nothing"));
                }
                // At start-up the binary sets the filter itself (a --loglevel flag wins).
                if !startup {
                    if let Some(hook) = LOG_LEVEL_HOOK.get() {
                        hook(tracing_level(value));
                    }
                }
            }
            "logfile" => self.logfile = value.to_string(),
            "pidfile" => self.pidfile = value.to_string(),
            _ => {}
        }
        let shown = match spec.name {
            "proto-max-bulk-len" => self.proto_max_bulk_len.to_string(),
            "client-query-buffer-limit" => self.client_query_buffer_limit.to_string(),
            "maxmemory" => "0".into(),
            "notify-keyspace-events" => {
                crate::notify::to_string(crate::notify::parse(value).unwrap_or(0))
            }
            "client-output-buffer-limit" => crate::pubsub::show_output_limits(),
            "loglevel" => value.to_ascii_lowercase(),
            "save" => self
                .save
                .iter()
                .map(|(s, c)| format!("{s} {c}"))
                .collect::<Vec<_>>()
                .join(" "),
            _ => value.to_string(),
        };
        self.values.insert(spec.name, shown);
        Ok(())
    }

    /// Load a redis.conf-syntax file: `key value…` per line, `#` comments, quoted values,
    /// `include other.conf`. Redis directives that only tune Redis internals ([`IGNORED`]) are
    /// accepted and listed in [`Config::ignored`]; any other unknown directive is an error.
    pub fn load_file(&mut self, path: &Path) -> Result<(), String> {
        self.load_file_nested(path, 0)
    }

    fn load_file_nested(&mut self, path: &Path, depth: usize) -> Result<(), String> {
        if depth > 16 {
            return Err(format!("{}: include nested too deeply", path.display()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = || format!("{}:{}: '{}'", path.display(), n + 1, line);
            let args = resp::request::split_args(line.as_bytes())
                .map_err(|_| format!("{}: unbalanced quotes", at()))?;
            let key = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
            let value = args[1..]
                .iter()
                .map(|a| String::from_utf8_lossy(a).to_string())
                .collect::<Vec<_>>()
                .join(" ");
            if key == "include" {
                if args.len() != 2 {
                    return Err(format!("{}: include takes one file", at()));
                }
                self.load_file_nested(Path::new(&value), depth + 1)?;
                continue;
            }
            match IGNORED.iter().find(|(name, _)| *name == key) {
                Some((_, None)) => {
                    self.ignored.push(at());
                    continue;
                }
                Some((_, Some(only))) if value.eq_ignore_ascii_case(only) => {
                    self.ignored.push(at());
                    continue;
                }
                Some((_, Some(only))) => {
                    return Err(format!(
                        "{}: codis-server supports only '{key} {only}'",
                        at()
                    ))
                }
                None => {}
            }
            self.set(&key, &value, true)
                .map_err(|e| format!("{}: {}", at(), e))?;
        }
        Ok(())
    }

    /// `CONFIG GET pattern`: matching (key, value) pairs.
    pub fn get(&self, pattern: &[u8]) -> Vec<(&'static str, String)> {
        self.values
            .iter()
            .filter(|(k, _)| crate::glob::matches(pattern, k.as_bytes(), true))
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_get() {
        let mut c = Config::default();
        c.set("maxclients", "5", false).unwrap();
        assert_eq!(c.maxclients, 5);
        assert!(matches!(
            c.set("port", "1", false),
            Err(ConfigError::Immutable(_))
        ));
        assert!(matches!(
            c.set("nosuch", "1", false),
            Err(ConfigError::Unknown(_))
        ));
        c.set("proto-max-bulk-len", "2mb", false).unwrap();
        assert_eq!(c.proto_max_bulk_len, 2 << 20);
        assert_eq!(c.get(b"max*").len(), 4);
        assert_eq!(c.get(b"port"), vec![("port", "6379".to_string())]);
    }

    /// A memory value that overflows is refused (it panicked in debug builds, wrapped in release).
    #[test]
    fn huge_memory_values_are_errors() {
        let mut c = Config::default();
        assert!(c
            .set("proto-max-bulk-len", "99999999999999999999gb", false)
            .is_err());
        assert!(c
            .set("client-query-buffer-limit", "18446744073709551gb", false)
            .is_err());
        assert_eq!(c.proto_max_bulk_len, 512 * 1024 * 1024);
    }
}
