//! `codisctl`: thin binary over the `ctl` library.
//!
//! Unlike codis-server, codis-proxy and codis-bench, codisctl keeps the system allocator (with
//! at most 2 arenas and 4 blocking threads, see `main`): it is
//! off the data path, and in a 4-minute `scripts/soak` with two 128-slot migrations the dashboard
//! held 22-58 MB RSS under mimalloc against 10-15 MB under glibc (2026-11-26, RELIABILITY.md).

use clap::Parser;

fn main() {
    // glibc gives each thread that allocates its own arena (up to 8 per core) and keeps what
    // they freed: two arenas are plenty for a control-plane process.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let cli = ctl::cli::Cli::parse();
    // The dashboard serves its API while the executor and the poller run: worker threads.
    // Every other verb is one task at a time (a migration's waves are futures joined in one
    // task), and on one thread it spends less CPU handing work between threads: a 512-slot
    // `slot migrate` woke the second worker thousands of times for nothing.
    let mut builder = match cli.cmd {
        ctl::cli::Cmd::Dashboard { .. } => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let rt = builder
        // Coordinator file I/O (the filesystem coordinator's blocking calls) needs few threads:
        // tokio's default allows 512, and the dashboard grew 8 -> 22 threads over two
        // migrations in a soak, each warming its own allocator heap.
        .max_blocking_threads(4)
        .enable_all()
        .build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("codisctl: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(run(cli));
    // Exit at once, as before: dropping the runtime would wait for blocking calls in flight.
    std::process::exit(code);
}

async fn run(cli: ctl::cli::Cli) -> i32 {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,ctl=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    ctl::cli::run(cli).await
}
