//! The dashboard daemon: holds the product lock, runs the migration executor, polls every
//! server (`INFO`) and proxy (admin stats) each second, and serves the HTTP API and web page.
//!
//! - [`api`]: the axum routes (`/api/topom/...`), token check, JSON errors.
//! - [`poll`]: the once-a-second poller and its stats snapshot (with an ops/s history).
//! - `index.html`: the web page, embedded.

pub mod api;
pub mod poll;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use coord::{Store, Topom};
use tokio::sync::Notify;

use crate::config::CtlConfig;
use crate::error::{CtlError, Result};
use crate::executor::Executor;
use crate::topom::{describe_holder, topom_record, xauth, Ctx};

/// Shared state of the daemon's tasks and routes.
pub struct AppState {
    pub ctx: Arc<Ctx>,
    pub topom: Topom,
    pub xauth: String,
    pub coordinator: String,
    pub stats: poll::StatsCell,
    pub shutdown: Notify,
    pub stopping: AtomicBool,
}

impl AppState {
    /// Asks the daemon to stop.
    pub fn request_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.shutdown.notify_waiters();
        self.shutdown.notify_one();
    }
}

/// A running dashboard.
pub struct Dashboard {
    /// The address the HTTP API listens on.
    pub addr: SocketAddr,
    state: Arc<AppState>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Takes the product lock or explains who holds it.
pub async fn acquire(store: &Store, topom: &Topom) -> Result<()> {
    match store.acquire(topom).await {
        Ok(()) => Ok(()),
        Err(coord::Error::LockHeld { holder, .. }) => Err(CtlError::Locked(format!(
            "product {:?} is locked by {}; only one may hold it (a crashed holder's lock vanishes by itself; `codisctl remove-lock` forces it)",
            store.product(),
            describe_holder(&holder)
        ))),
        Err(e) => Err(e.into()),
    }
}

impl Dashboard {
    /// Binds `listen`, takes the product lock and starts the executor, poller and API.
    pub async fn start(cfg: CtlConfig, listen: &str) -> Result<Dashboard> {
        let cc = cfg.coord.clone().ok_or_else(|| {
            CtlError::invalid(
                "the dashboard needs a coordinator: -c config.ini or --coordinator/--zk",
            )
        })?;
        let coordinator = format!("{} {}", cc.kind, cc.addr);
        let store = Store::new(coord::connect(&cc).await?, &cfg.product)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| CtlError::io(format!("bind {listen}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| CtlError::io("local_addr", e))?;
        let topom = topom_record(&cfg.product, &addr.to_string());
        acquire(&store, &topom).await?;
        if cfg.product_auth.is_empty() {
            tracing::warn!("product_auth is empty: the API token derives from the product name alone; set product_auth");
        }
        let xauth = xauth(&cfg.product, &cfg.product_auth);
        let ctx = Ctx::new(store, cfg, true);
        let state = Arc::new(AppState {
            ctx: ctx.clone(),
            topom,
            xauth,
            coordinator,
            stats: poll::StatsCell::default(),
            shutdown: Notify::new(),
            stopping: AtomicBool::new(false),
        });
        let mut tasks = Vec::new();
        let exec = Executor::redis(ctx.clone());
        tasks.push(tokio::spawn(async move { exec.run_forever().await }));
        let st = state.clone();
        tasks.push(tokio::spawn(async move { poll::run(st).await }));
        tasks.push(tokio::spawn(trim_heap_forever()));
        let app = api::router(state.clone());
        let st = state.clone();
        tasks.push(tokio::spawn(async move {
            let stop = async move {
                while !st.stopping.load(Ordering::SeqCst) {
                    st.shutdown.notified().await;
                }
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!("dashboard http: {e}");
            }
        }));
        tracing::info!(
            "dashboard of product {:?} on http://{addr}/ (lock taken)",
            state.ctx.store.product()
        );
        Ok(Dashboard { addr, state, tasks })
    }

    /// The shared state (for tests and the CLI).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Waits until shutdown is requested (API `shutdown`, lost lock) or `signal` completes,
    /// then stops and releases the lock.
    pub async fn run_until<F: std::future::Future<Output = ()>>(self, signal: F) -> Result<()> {
        let st = self.state.clone();
        let asked = async move {
            while !st.stopping.load(Ordering::SeqCst) {
                st.shutdown.notified().await;
            }
        };
        tokio::select! {
            _ = signal => {}
            _ = asked => {}
        }
        self.stop().await
    }

    /// Stops every task and releases the lock.
    pub async fn stop(self) -> Result<()> {
        self.state.request_shutdown();
        for t in &self.tasks {
            t.abort();
        }
        let store = &self.state.ctx.store;
        // Release only our own lock: after a lost session another dashboard may hold it.
        let res = match store.load_topom().await {
            Ok(Some(t)) if t.token == self.state.topom.token => store.release().await,
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        store.coordinator().close().await;
        tracing::info!("dashboard stopped, lock released");
        res.map_err(Into::into)
    }
}

/// Hand freed heap pages back to the system every 30 s. The dashboard keeps the system
/// allocator (see main.rs), and glibc keeps what a burst freed in its per-thread arenas: each
/// migration plan allocates ~30 MB briefly on whichever tokio worker runs it, and the soak saw
/// ~1.5 MB stay resident per migration. `malloc_trim(0)` releases free pages of every arena
/// (madvise), which glibc does on its own only at the top of the main heap.
async fn trim_heap_forever() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only walks and trims glibc's own arenas, under their locks.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
