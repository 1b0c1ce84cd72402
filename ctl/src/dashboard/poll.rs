//! The once-a-second poller: `INFO` of every group server, admin stats of every proxy, an
//! ops/s history for the page's chart, and a check that the product lock is still ours.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::AppState;
use crate::stats::ServerStatus;
use crate::topom::groups::servers_status;
use crate::topom::now_string;

/// Samples kept for the ops/s chart (10 minutes at 1 Hz).
pub const HISTORY: usize = 600;

/// One proxy's health.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProxyHealth {
    pub id: u32,
    pub token: String,
    pub proxy_addr: String,
    pub admin_addr: String,
    pub alive: bool,
    pub registered: bool,
    pub acked_version: u64,
    /// `ok`, `TIMEOUT`, or the error.
    pub status: String,
    pub ops_per_sec: u64,
    pub sessions: u64,
    /// The raw stats JSON the proxy served.
    pub stats: Option<Value>,
}

/// What the poller last saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StatsSnapshot {
    pub updated: String,
    pub servers: Vec<ServerStatus>,
    pub proxies: Vec<ProxyHealth>,
    pub ops_per_sec: u64,
    pub keys: u64,
    pub memory: u64,
    pub sessions: u64,
    /// `[unix time, ops/s]` samples, oldest first.
    pub history: VecDeque<(u64, u64)>,
}

/// The latest snapshot.
#[derive(Default)]
pub struct StatsCell(RwLock<StatsSnapshot>);

impl StatsCell {
    /// A copy of the latest snapshot.
    pub fn get(&self) -> StatsSnapshot {
        self.0.read().map(|s| s.clone()).unwrap_or_default()
    }
    fn set(&self, s: StatsSnapshot) {
        if let Ok(mut w) = self.0.write() {
            *w = s;
        }
    }
}

fn pick(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(n) => cur = n,
            None => return 0,
        }
    }
    cur.as_u64().unwrap_or(0)
}

async fn proxy_health(state: &AppState) -> Vec<ProxyHealth> {
    let views = match state.ctx.proxy_list().await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("proxy list: {e}");
            return Vec::new();
        }
    };
    let polls = views.into_iter().map(|p| async move {
        let mut h = ProxyHealth {
            id: p.id,
            token: p.token,
            proxy_addr: p.proxy_addr,
            admin_addr: p.admin_addr.clone(),
            alive: p.alive,
            registered: p.registered,
            acked_version: p.acked_version,
            ..Default::default()
        };
        if p.admin_addr.is_empty() {
            h.status = "no admin address".into();
            return h;
        }
        let r = crate::http::request(
            &p.admin_addr,
            "GET",
            "/api/proxy/stats",
            None,
            Duration::from_secs(1),
        )
        .await;
        match r {
            Ok(r) if r.status == 200 => match serde_json::from_slice::<Value>(&r.body) {
                Ok(v) => {
                    h.ops_per_sec = pick(&v, &["ops", "qps"]);
                    h.sessions = pick(&v, &["sessions", "alive"]);
                    h.status = "ok".into();
                    h.stats = Some(v);
                }
                Err(e) => h.status = format!("bad stats: {e}"),
            },
            Ok(r) => h.status = format!("HTTP {}", r.status),
            Err(crate::http::HttpError::Timeout) => h.status = "TIMEOUT".into(),
            Err(e) => h.status = e.to_string(),
        }
        h
    });
    futures::future::join_all(polls).await
}

/// Polls forever, once a second.
pub async fn run(state: Arc<AppState>) {
    let mut history: VecDeque<(u64, u64)> = VecDeque::new();
    loop {
        let ctx = &state.ctx;
        // Is the lock still ours? (A ZooKeeper session can expire under us.)
        match ctx.store.load_topom().await {
            Ok(Some(t)) if t.token == state.topom.token => {}
            Ok(other) => {
                tracing::error!(
                    "the product lock is no longer ours (now: {:?}); stopping the dashboard",
                    other.map(|t| t.admin_addr)
                );
                state.request_shutdown();
                return;
            }
            Err(e) => tracing::warn!("cannot check the product lock: {e}"),
        }
        let servers = match ctx.store.topology().await {
            Ok(t) => servers_status(&t, &ctx.cfg.product_auth, Duration::from_secs(1)).await,
            Err(e) => {
                tracing::warn!("topology: {e}");
                Vec::new()
            }
        };
        let proxies = proxy_health(&state).await;
        let masters = servers.iter().filter(|s| s.expected_role == "master");
        let server_ops: u64 = masters.clone().map(|s| s.ops_per_sec).sum();
        let proxy_ops: u64 = proxies.iter().map(|p| p.ops_per_sec).sum();
        let ops = if proxies.iter().any(|p| p.status == "ok") {
            proxy_ops
        } else {
            server_ops
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        history.push_back((now, ops));
        while history.len() > HISTORY {
            history.pop_front();
        }
        let snap = StatsSnapshot {
            updated: now_string(),
            ops_per_sec: ops,
            keys: masters.clone().map(|s| s.keys).sum(),
            memory: servers.iter().map(|s| s.used_memory).sum(),
            sessions: proxies.iter().map(|p| p.sessions).sum(),
            servers,
            proxies,
            history: history.clone(),
        };
        state.stats.set(snap);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
