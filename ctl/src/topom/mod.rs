//! The topology manager ("topom", as Codis calls it): every operation on one product, applied
//! to the coordinator by whoever holds the product lock (the dashboard, or the CLI itself when
//! no dashboard runs). Each operation validates first and writes only when everything checks,
//! so bad input changes nothing.
//!
//! - [`slots`]: init, set, range-set, migrate (creating actions), cancel, rebalance, info.
//! - [`groups`]: groups and their servers (SLAVEOF on add), server status.
//! - [`proxies`]: proxy registrations and liveness.
//! - [`dump`]: `config dump` / `config restore`.

pub mod dump;
pub mod groups;
pub mod proxies;
pub mod slots;

use std::sync::Arc;
use std::time::Duration;

use coord::{Store, Topom};
use serde_json::{json, Value};

use crate::config::CtlConfig;
use crate::error::{CtlError, Result};
use crate::executor::Control;
use crate::request::Request;

/// Shared state of whoever applies operations.
pub struct Ctx {
    /// The product's store.
    pub store: Store,
    /// Configuration (product auth, migration settings).
    pub cfg: CtlConfig,
    /// Serializes read-check-write sequences (API calls, executor transitions, promotion).
    pub write: tokio::sync::Mutex<()>,
    /// Executor control: pause, delay, progress.
    pub control: Arc<Control>,
    /// True inside the dashboard daemon (pause/resume only make sense there).
    pub dashboard: bool,
    /// Timeout of one Redis call for checks and status.
    pub redis_timeout: Duration,
}

/// `{"msg": "OK", "ret": 0}`.
pub fn ok() -> Value {
    json!({"msg": "OK", "ret": 0})
}

/// `{"msg": "OK", "ret": 0, key: value}`.
pub fn ok_with(key: &str, value: Value) -> Value {
    let mut v = ok();
    v[key] = value;
    v
}

/// The dashboard API token of a product: derived from the product *and* its auth, so knowing
/// the product name is not enough (Codis 3.2 used the name only).
pub fn xauth(product: &str, product_auth: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"codis-rs-dashboard\0");
    h.update(product.as_bytes());
    h.update(b"\0");
    h.update(product_auth.as_bytes());
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A proxy's admin API credential, as Codis' `rpc.NewXAuth(product, product_auth, token)`:
/// hex of the first 16 bytes of SHA-256(`Codis-XAuth-[product]-[auth]-[token]`).
pub fn proxy_xauth(product: &str, product_auth: &str, token: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"Codis-XAuth");
    for s in [product, product_auth, token] {
        h.update(b"-[");
        h.update(s.as_bytes());
        h.update(b"]");
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A lock record for this process (`admin_addr` empty for a CLI acting directly).
pub fn topom_record(product: &str, admin_addr: &str) -> Topom {
    let token: u128 = rand::random();
    Topom {
        token: format!("{token:032x}"),
        start_time: now_string(),
        admin_addr: admin_addr.to_string(),
        product_name: product.to_string(),
        pid: std::process::id(),
        pwd: std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        sys: hostname(),
    }
}

/// Seconds since the epoch, as text.
pub fn now_string() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}")
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Describes a lock holder from the raw lock contents.
pub fn describe_holder(holder: &str) -> String {
    match serde_json::from_str::<Topom>(holder) {
        Ok(t) if !t.admin_addr.is_empty() => format!(
            "the dashboard at {} (pid {} on {}, started at unix time {})",
            t.admin_addr, t.pid, t.sys, t.start_time
        ),
        Ok(t) => format!("a codisctl command (pid {} on {})", t.pid, t.sys),
        Err(_) => holder.to_string(),
    }
}

impl Ctx {
    /// A context over `store`.
    pub fn new(store: Store, cfg: CtlConfig, dashboard: bool) -> Arc<Self> {
        Arc::new(Ctx {
            store,
            cfg,
            write: tokio::sync::Mutex::new(()),
            control: Arc::new(Control::default()),
            dashboard,
            redis_timeout: Duration::from_secs(2),
        })
    }

    /// Applies one mutating operation.
    pub async fn apply(self: &Arc<Self>, req: Request) -> Result<Value> {
        tracing::info!("apply {req:?}");
        match req {
            Request::SlotInit { force } => self.slot_init(force).await,
            Request::SlotSet { slot, gid, status } => self.slot_set(slot, gid, &status).await,
            Request::SlotRangeSet {
                from,
                to,
                gid,
                status,
            } => self.slot_range_set(from, to, gid, &status).await,
            Request::SlotMigrate {
                from,
                to,
                gid,
                delay_ms,
            } => self.slot_migrate(from, to, gid, delay_ms).await,
            Request::SlotRebalance { confirm } => self.slot_rebalance(confirm).await,
            Request::SlotActionPause | Request::SlotActionResume => {
                if !self.dashboard {
                    return Err(CtlError::invalid(
                        "no dashboard is running: migrations only run inside `codisctl dashboard` or a `slot migrate` command",
                    ));
                }
                let pause = matches!(req, Request::SlotActionPause);
                self.control.set_paused(pause);
                Ok(ok_with("paused", json!(pause)))
            }
            Request::SlotActionCancel { slot } => self.slot_cancel(slot).await,
            Request::ServerAdd { gid, addr, role } => self.server_add(gid, &addr, role).await,
            Request::ServerRemove { gid, addr } => self.server_remove(gid, &addr).await,
            Request::ServerPromote { gid, addr } => crate::promote::promote(self, gid, &addr).await,
            Request::GroupCreate { gid } => self.group_create(gid).await,
            Request::GroupRemove { gid } => self.group_remove(gid).await,
            Request::ProxyOnline { addr } => self.proxy_online(&addr).await,
            Request::ProxyOffline { id } => self.proxy_offline(&id).await,
            Request::ConfigRestore { config, force } => self.config_restore(config, force).await,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn xauth_depends_on_auth() {
        let a = super::xauth("demo", "");
        assert_eq!(a.len(), 32);
        assert_ne!(a, super::xauth("demo", "secret"));
        assert_ne!(a, super::xauth("demo2", ""));
    }
}
