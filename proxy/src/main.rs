//! `codis-proxy`: see `codis-proxy --help`.

use std::path::PathBuf;

use clap::Parser;
use proxy::Config;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Codis proxy: a stateless Redis-protocol router in front of codis-server groups.
///
/// Clients connect with any Redis client; each key goes to the master of its slot's group
/// (crc32 of the key or of its {hash tag}, modulo 1024). The slot table comes from the
/// coordinator (ZooKeeper, etcd or a local directory), watched continuously; the proxy
/// registers itself there and acknowledges migration steps. Thread per core: one executor per
/// --cpu, each with its own listener and its own pipelined connection per backend.
///
/// Settings are read in order: defaults, --config proxy.toml (Codis 3.2 keys), -c config.ini
/// (coordinator=, zk=, product=, dashboard_addr=, or any proxy.toml key), then flags.
///
/// Listen addresses default to loopback (127.0.0.1:19000 and 127.0.0.1:11000); pass
/// --addr 0.0.0.0:19000 to serve other hosts.
///
/// Example:
///   codis-proxy -c config.ini -L ./log/proxy.log --cpu=8 --addr=0.0.0.0:19000 --http-addr=0.0.0.0:11000
///
/// Needs locked memory for io_uring: run as root or raise `ulimit -l` (e.g. 65536).
#[derive(Parser, Debug)]
#[command(name = "codis-proxy", version, verbatim_doc_comment)]
struct Args {
    /// The seed's config.ini: coordinator=zookeeper|etcd|filesystem, zk=ADDR|DIR, product=NAME,
    /// dashboard_addr=HOST:PORT.
    #[arg(short = 'c', long = "ini", value_name = "config.ini")]
    ini: Option<PathBuf>,
    /// A Codis 3.2 proxy.toml (product_name, product_auth, session_auth, proxy_max_clients,
    /// backend_*, session_*, backend_primary_only, proxy_datacenter, coordinator_name,
    /// coordinator_addr, plus migration_method, slowlog_slower_than, slowlog_max_len, and
    /// backend_core_lanes = true|false: one connection per codis-server core, default true;
    /// backend_prefer_unixsocket = true|false: reach a server on this host through its
    /// `unixsocket`, default true; disable_thp = true|false: no transparent huge pages for
    /// this process, default true, as Redis's `disable-thp`).
    #[arg(long = "config", value_name = "proxy.toml")]
    config: Option<PathBuf>,
    /// Log file (appended); default stderr.
    #[arg(short = 'L', long = "log", value_name = "FILE")]
    log: Option<PathBuf>,
    /// Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter.
    #[arg(long = "log-level", default_value = "info")]
    log_level: String,
    /// Executors (cores) to run, one pinned thread each [default: 1].
    #[arg(long = "cpu", visible_alias = "ncpu", value_name = "N")]
    cpu: Option<usize>,
    /// Client listen address [default: 127.0.0.1:19000].
    #[arg(long = "addr", value_name = "HOST:PORT")]
    addr: Option<String>,
    /// Admin HTTP listen address [default: 127.0.0.1:11000].
    #[arg(long = "http-addr", value_name = "HOST:PORT")]
    http_addr: Option<String>,
    /// Product (cluster) name [default: codis-demo].
    #[arg(long = "product", visible_alias = "product_name")]
    product: Option<String>,
    /// Password for AUTH to every codis-server.
    #[arg(long = "product-auth", visible_alias = "product_auth")]
    product_auth: Option<String>,
    /// Password clients must send with AUTH.
    #[arg(long = "session-auth", visible_alias = "session_auth")]
    session_auth: Option<String>,
    /// Coordinator kind: zookeeper, etcd or filesystem (with --coordinator-addr).
    #[arg(long = "coordinator", value_name = "KIND")]
    coordinator: Option<String>,
    /// Coordinator address: host:port[,host:port] or the filesystem root directory.
    #[arg(long = "coordinator-addr", value_name = "ADDR")]
    coordinator_addr: Option<String>,
    /// This proxy's datacenter (replica reads prefer replicas of the same datacenter).
    #[arg(long = "datacenter")]
    datacenter: Option<String>,
    /// Write the process id to this file.
    #[arg(long = "pidfile", value_name = "FILE")]
    pidfile: Option<PathBuf>,
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("codis-proxy: {msg}");
    std::process::exit(1);
}

fn main() {
    let args = Args::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| args.log_level.clone());
    let builder =
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter));
    match &args.log {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::create_dir_all(dir);
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| fail(format!("cannot open log file {}: {e}", path.display())));
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    // glommio logs through the `log` crate.
    let _ = tracing_log::LogTracer::init();

    let mut cfg = Config::default();
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p)
            .unwrap_or_else(|e| fail(format!("cannot read {}: {e}", p.display())))
    };
    if let Some(p) = &args.config {
        if let Err(e) = cfg.apply_toml(&p.display().to_string(), &read(p)) {
            fail(e);
        }
    }
    if let Some(p) = &args.ini {
        if let Err(e) = cfg.apply_ini(&read(p)) {
            fail(format!("{}: {e}", p.display()));
        }
    }
    let mut set = |k: &str, v: String| {
        if let Err(e) = cfg.set(k, &v) {
            fail(e);
        }
    };
    if let Some(v) = args.product {
        set("product_name", v);
    }
    if let Some(v) = args.product_auth {
        set("product_auth", v);
    }
    if let Some(v) = args.session_auth {
        set("session_auth", v);
    }
    if let Some(v) = args.addr {
        set("proxy_addr", v);
    }
    if let Some(v) = args.http_addr {
        set("admin_addr", v);
    }
    if let Some(v) = args.datacenter {
        set("proxy_datacenter", v);
    }
    if let Some(n) = args.cpu {
        if n == 0 || n > 256 {
            fail("--cpu must be between 1 and 256");
        }
        cfg.ncpu = n;
    }
    if let Some(addr) = args.coordinator_addr {
        let kind = args.coordinator.as_deref().unwrap_or("filesystem");
        let kind: coord::Kind = kind.parse().unwrap_or_else(|e| fail(e));
        cfg.coordinator = Some(coord::CoordConfig::new(kind, &addr, &cfg.product_name));
    } else if args.coordinator.is_some() {
        fail("--coordinator needs --coordinator-addr");
    }
    cfg.finish();
    if cfg.coordinator.is_none() {
        fail("no coordinator configured: pass -c config.ini (coordinator=, zk=, product=), coordinator_name/coordinator_addr in --config, or --coordinator-addr");
    }
    if let Some(p) = &args.pidfile {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            fail(format!("cannot write {}: {e}", p.display()));
        }
    }
    if cfg.disable_thp {
        proxy::runtime::disable_thp();
    }
    if let Err(e) = proxy::run(cfg) {
        fail(e);
    }
}
