//! The `codis-bench` binary; see the `perf` crate docs for usage.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    perf::init_logging();
    let cli = perf::Cli::parse();
    perf::install_stop_signals();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Err(e) = perf::run(&cli, &mut out) {
        eprintln!("codis-bench: {e}");
        std::process::exit(1);
    }
}
