//! `codisctl`: thin binary over the `ctl` library.

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
