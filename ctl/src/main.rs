//! `codisctl`: thin binary over the `ctl` library.
//!
//! Unlike codis-server, codis-proxy and codis-bench, codisctl keeps the system allocator: it is
//! off the data path, and in a 4-minute `scripts/soak` with two 128-slot migrations the dashboard
//! held 22-58 MB RSS under mimalloc against 10-15 MB under glibc (2026-11-26, RELIABILITY.md).

use clap::Parser;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,ctl=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = ctl::cli::Cli::parse();
    let code = ctl::cli::run(cli).await;
    std::process::exit(code);
}
