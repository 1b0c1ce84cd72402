//! `codis-server`: see `codis-server --help`.

use std::path::PathBuf;

use clap::Parser;
use server::config::Config;

#[global_allocator]
static GLOBAL: server::alloc::Counting = server::alloc::Counting;

/// A Redis-compatible, shard-per-core storage engine for Codis clusters.
///
/// Speaks RESP2/RESP3 to any Redis client and serves Redis 7 string and key commands plus Codis's
/// SLOTS* commands. Each core runs its own executor and owns a share of the 1024 Codis slots; every
/// core accepts connections.
///
/// Examples:
///   codis-server --port 6380
///   codis-server /etc/codis/redis.conf --port 7000 --cores 2
///   codis-server --port 6380 --unixsocket /run/codis/6380.sock --unixsocketperm 700
///
/// Needs locked memory for io_uring: run as root or raise `ulimit -l` (e.g. 65536).
#[derive(Parser, Debug)]
#[command(name = "codis-server", version, verbatim_doc_comment)]
struct Args {
    /// A redis.conf-syntax file (`port 7000`, `requirepass secret`, …); flags override it.
    config: Option<PathBuf>,
    /// TCP port to listen on (0 picks a free one).
    #[arg(long)]
    port: Option<u16>,
    /// Addresses to listen on (default 127.0.0.1).
    #[arg(long, num_args = 1..)]
    bind: Option<Vec<String>>,
    /// Executor cores (default: every CPU this process may use).
    #[arg(long)]
    cores: Option<usize>,
    /// Password clients must send with AUTH.
    #[arg(long)]
    requirepass: Option<String>,
    /// Maximum simultaneous clients.
    #[arg(long)]
    maxclients: Option<usize>,
    /// Working directory for data files.
    #[arg(long)]
    dir: Option<String>,
    /// RDB file name inside `--dir` (default dump.rdb).
    #[arg(long)]
    dbfilename: Option<String>,
    /// RDB save rules, `"<seconds> <changes> …"` (`""`: never save automatically).
    #[arg(long)]
    save: Option<String>,
    /// Append-only file: yes or no.
    #[arg(long)]
    appendonly: Option<String>,
    /// AOF fsync policy: always, everysec or no.
    #[arg(long)]
    appendfsync: Option<String>,
    /// Replicate from this master: `--replicaof <host> <port>`.
    #[arg(long, num_args = 2, value_names = ["HOST", "PORT"])]
    replicaof: Option<Vec<String>>,
    /// Password to AUTH with at the master.
    #[arg(long)]
    masterauth: Option<String>,
    /// Log level filter (error, warn, info, debug, trace), or RUST_LOG (default: the config
    /// file's `loglevel`, else info).
    #[arg(long)]
    loglevel: Option<String>,
    /// Fork into the background: yes or no.
    #[arg(long)]
    daemonize: Option<String>,
    /// Write the log to this file instead of standard error.
    #[arg(long)]
    logfile: Option<String>,
    /// Write the process id to this file (removed at shutdown).
    #[arg(long)]
    pidfile: Option<String>,
    /// Also listen on this Unix socket path (as Redis's `unixsocket`; removed at shutdown). A
    /// codis-proxy on the same host uses it instead of TCP (`backend_prefer_unixsocket`).
    #[arg(long)]
    unixsocket: Option<String>,
    /// Permissions of the Unix socket file, in octal (e.g. 700; default: the umask's).
    #[arg(long)]
    unixsocketperm: Option<String>,
}

/// Config keys also accepted as `--key value` flags (as redis-server accepts any config key).
const CONFIG_FLAGS: &[&str] = &[
    "hash-max-listpack-entries",
    "hash-max-listpack-value",
    "hash-max-ziplist-entries",
    "hash-max-ziplist-value",
    "set-max-intset-entries",
    "hll-sparse-max-bytes",
    "zset-max-listpack-entries",
    "zset-max-listpack-value",
    "zset-max-ziplist-entries",
    "zset-max-ziplist-value",
    "list-max-listpack-size",
    "list-max-ziplist-size",
    "disable-thp",
    "client-core-affinity",
    "migration-nice",
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "latency-monitor-threshold",
    "maxmemory",
    "maxmemory-policy",
    "notify-keyspace-events",
    "databases",
    "timeout",
];

fn main() {
    // Pull the plain config flags out before clap sees the rest.
    let mut config_flags: Vec<(String, String)> = Vec::new();
    let mut argv: Vec<String> = Vec::new();
    let mut raw = std::env::args();
    while let Some(a) = raw.next() {
        match a.strip_prefix("--") {
            Some(k) if CONFIG_FLAGS.contains(&k.to_ascii_lowercase().as_str()) => {
                let Some(v) = raw.next() else {
                    eprintln!("*** FATAL CONFIG ERROR *** --{k} needs a value");
                    std::process::exit(1);
                };
                config_flags.push((k.to_string(), v));
            }
            _ => argv.push(a),
        }
    }
    let args = Args::parse_from(argv);
    let mut cfg = Config::default();
    if let Some(path) = &args.config {
        if let Err(e) = cfg.load_file(path) {
            eprintln!("*** FATAL CONFIG FILE ERROR *** {e}");
            std::process::exit(1);
        }
        cfg.config_file = std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.clone())
            .display()
            .to_string();
    }
    let mut set = |k: &str, v: String| {
        if let Err(e) = cfg.set(k, &v, true) {
            eprintln!("*** FATAL CONFIG ERROR *** --{k} {v}: {e}");
            std::process::exit(1);
        }
    };
    for (k, v) in config_flags {
        set(&k, v);
    }
    if let Some(p) = args.port {
        set("port", p.to_string());
    }
    if let Some(b) = args.bind {
        set("bind", b.join(" "));
    }
    if let Some(c) = args.cores {
        set("cores", c.to_string());
    }
    if let Some(p) = args.requirepass {
        set("requirepass", p);
    }
    if let Some(m) = args.maxclients {
        set("maxclients", m.to_string());
    }
    if let Some(d) = args.dir {
        set("dir", d);
    }
    if let Some(f) = args.dbfilename {
        set("dbfilename", f);
    }
    if let Some(r) = args.save {
        set("save", r);
    }
    if let Some(v) = args.appendonly {
        set("appendonly", v);
    }
    if let Some(v) = args.appendfsync {
        set("appendfsync", v);
    }
    if let Some(m) = args.replicaof {
        set("replicaof", m.join(" "));
    }
    if let Some(p) = args.masterauth {
        set("masterauth", p);
    }
    if let Some(v) = args.daemonize {
        set("daemonize", v);
    }
    if let Some(v) = args.logfile {
        set("logfile", v);
    }
    if let Some(v) = args.pidfile {
        set("pidfile", v);
    }
    if let Some(v) = args.unixsocket {
        set("unixsocket", v);
    }
    if let Some(v) = args.unixsocketperm {
        set("unixsocketperm", v);
    }
    if cfg.daemonize {
        daemonize();
    }
    // The flag (any tracing filter) wins over the config file's Redis level.
    let level = args.loglevel.unwrap_or_else(|| {
        let redis = cfg
            .get(b"loglevel")
            .first()
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        server::config::tracing_level(&redis).to_string()
    });
    let filter = tracing_subscriber::EnvFilter::new(std::env::var("RUST_LOG").unwrap_or(level));
    let to_file = !cfg.logfile.is_empty();
    // `CONFIG SET loglevel` swaps the filter at run time.
    macro_rules! init_logging {
        ($builder:expr) => {{
            let builder = $builder.with_filter_reloading();
            let handle = builder.reload_handle();
            server::config::set_log_level_hook(Box::new(move |level: &str| {
                let _ = handle.reload(tracing_subscriber::EnvFilter::new(level));
            }));
            builder.init();
        }};
    }
    if to_file {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.logfile)
            .unwrap_or_else(|e| {
                eprintln!("Can't open the log file {}: {e}", cfg.logfile);
                std::process::exit(1);
            });
        init_logging!(tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false));
    } else {
        init_logging!(tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())));
    }
    // glommio logs through the `log` crate.
    let _ = tracing_log::LogTracer::init();
    if !cfg.ignored.is_empty() {
        tracing::warn!(
            "redis.conf directives that tune Redis internals, accepted and ignored: {}",
            cfg.ignored.join("; ")
        );
    }
    if !cfg.pidfile.is_empty() {
        if let Err(e) = server::runtime::write_pidfile(&cfg.pidfile) {
            tracing::warn!("Failed to write PID file {}: {e}", cfg.pidfile);
        }
    }
    if let Err(e) = server::runtime::run(cfg) {
        if to_file {
            tracing::error!("{e}");
        }
        eprintln!("codis-server: {e}");
        server::runtime::remove_run_files();
        std::process::exit(1);
    }
}

/// `daemonize yes`: fork, let the parent exit, start a new session and point the standard
/// streams at /dev/null, as redis-server does. Called before any thread exists.
fn daemonize() {
    // SAFETY: the process has one thread here, so the child is a complete copy of it.
    match unsafe { libc::fork() } {
        -1 => {
            eprintln!(
                "codis-server: cannot fork: {}",
                std::io::Error::last_os_error()
            );
            std::process::exit(1);
        }
        0 => {}
        _ => std::process::exit(0),
    }
    // SAFETY: setsid, open, dup2 and close on descriptors this process owns.
    unsafe {
        libc::setsid();
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if fd >= 0 {
            libc::dup2(fd, 0);
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
}
