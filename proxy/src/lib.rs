//! codis-proxy: the stateless RESP proxy in front of codis-server groups, thread per core.
//!
//! Clients speak Redis to any core (one SO_REUSEPORT listener each); a core routes each request
//! by its key's slot (`crc32(tag) % 1024`) to the master of the slot's group over ONE pipelined
//! connection per backend server and database, shared by all the sessions of that core, and
//! writes replies back in request order with one write per batch. A control thread (tokio)
//! watches the coordinator and pushes immutable slot tables to the cores.
//!
//! # Layout
//! - [`config`]: defaults, `proxy.toml`, `config.ini`, the settings every part reads.
//! - [`runtime`]: executors, listeners (port probe + SO_REUSEPORT), accept loops, table intake.
//! - [`core`]: one core's state: slot table copy, backend connections, applying a new table.
//! - [`session`]: one client: parse a batch, dispatch, wait, write replies in order.
//! - [`commands`]: the proxy's view of the command table (answered here, blocked, split,
//!   forwarded; hash key; CROSSSLOT check).
//! - [`router`]: the target of one request (master, replica, migrating source → target).
//! - [`multikey`]: MGET/MSET/DEL/EXISTS/TOUCH/UNLINK split per backend and merged.
//! - [`scan`]: `SCAN` over the whole cluster, one slot's `SLOTSSCAN` page per call.
//! - [`dial`]: reaching a server, over TCP or its Unix socket.
//! - [`backend`]: the pipelined backend connection (handshake, FIFO replies, keepalive,
//!   failure and reconnection).
//! - [`slots`]: the slot table built from a topology snapshot (states, locks, replicas).
//! - [`local`]: replies the proxy writes itself (INFO, HELLO, SLOTSMAPPING).
//! - [`clients`]: the proxy's clients (`CLIENT ID/SETNAME/SETINFO/INFO/LIST/KILL`, `HELLO`).
//! - [`sync`]: single-core rendezvous (`Event`, the reply `Batch`).
//! - [`stats`]: counters, latency histograms, slow log.
//! - [`control`]: coordinator watch, registration, liveness, acknowledgements.
//! - [`admin`]: admin HTTP (JSON overview, Codis admin API, Prometheus `/metrics`).
//! - [`identity`]: token, xauth, the Codis `Proxy` model.
//! - [`scripts`]: scripts seen by a core, so EVALSHA runs on any group.
//! - [`pubsub`]: pub/sub on one home server; a subscribed session's own connection to it.
//! - [`blocking`]: blocking pops (BLPOP…) on a session's own connection, following migrations.
//! - [`private`]: a session's own backend connection (subscriptions, WATCH and its EXEC).

pub mod admin;
pub mod backend;
pub mod blocking;
pub mod clients;
pub mod commands;
pub mod config;
pub mod control;
pub mod core;
pub mod dial;
pub mod identity;
pub mod local;
pub mod multikey;
pub mod private;
pub mod pubsub;
pub mod router;
pub mod runtime;
pub mod scan;
pub mod scripts;
pub mod session;
pub mod slots;
pub mod stats;
pub mod sync;

use std::sync::Arc;

pub use config::Config;

/// Runs the proxy until it is told to stop (signal or admin `shutdown`).
pub fn run(cfg: Config) -> Result<(), String> {
    let proxy_addr = runtime::probe(&cfg.proxy_addr)?;
    let admin = std::net::TcpListener::bind(&cfg.admin_addr)
        .map_err(|e| format!("cannot listen on {} (admin HTTP): {e}", cfg.admin_addr))?;
    admin.set_nonblocking(true).map_err(|e| e.to_string())?;
    let mut cfg = cfg;
    cfg.proxy_addr = proxy_addr.to_string();
    if let Ok(a) = admin.local_addr() {
        cfg.admin_addr = a.to_string();
    }
    let cfg = Arc::new(cfg);
    let token = identity::token(&cfg);
    let shared = stats::Shared::new(cfg.clone(), token.clone());
    let model = identity::model(&cfg, &token, shared.start_unix);
    let xauth = identity::xauth(&cfg, &token);
    let (ack_tx, ack_rx) = futures::channel::mpsc::unbounded();
    let (cores, _executors) = runtime::start(shared.clone(), proxy_addr, ack_tx)?;
    tracing::info!(
        "codis-proxy {} serving {} on {} ({} cores), admin HTTP on {}",
        env!("CARGO_PKG_VERSION"),
        cfg.product_name,
        proxy_addr,
        cores.len(),
        cfg.admin_addr
    );
    let ctl = control::Control::new(shared.clone(), model, xauth, cores);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        // Coordinator file I/O only: a few threads suffice (each thread's allocator heap costs
        // resident memory; tokio's default allows 512).
        .max_blocking_threads(4)
        .thread_name("proxy-control")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the control runtime: {e}"))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(admin).map_err(|e| e.to_string())?;
        tokio::spawn(admin::serve(ctl.clone(), listener));
        tokio::spawn(control::run(ctl.clone(), ack_rx));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, shutting down"),
            _ = term.recv() => tracing::info!("terminated, shutting down"),
            _ = ctl.shutdown.notified() => tracing::info!("shutdown requested over the admin API"),
        }
        shared
            .closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        ctl.unregister().await;
        Ok::<(), String>(())
    })?;
    // Executors run accept loops forever; leaving the process ends them.
    std::process::exit(0)
}

/// Helpers for the unit tests of several modules.
#[cfg(test)]
pub(crate) mod testutil {
    use bytes::Bytes;

    /// A request's arguments from words.
    pub fn args(s: &[&str]) -> Vec<Bytes> {
        s.iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }
}
