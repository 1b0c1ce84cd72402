//! Proxy registrations (`/codis3/{p}/proxy/proxy-{token}`) with their liveness and
//! acknowledgements; `proxy online` registers a proxy from its admin API model, `proxy
//! offline` removes a registration.

use std::sync::Arc;
use std::time::Duration;

use coord::Proxy;
use serde::Serialize;
use serde_json::{json, Value};

use super::{ok, ok_with, Ctx};
use crate::error::{CtlError, Result};

/// A registered (or only live) proxy.
#[derive(Clone, Debug, Serialize)]
pub struct ProxyView {
    pub id: u32,
    pub token: String,
    pub proxy_addr: String,
    pub admin_addr: String,
    /// Its ephemeral liveness node exists.
    pub alive: bool,
    /// The topology version it acknowledged (0 = none).
    pub acked_version: u64,
    /// Registered in `/proxy` (a live proxy may not be registered yet).
    pub registered: bool,
}

impl Ctx {
    /// `proxy list`.
    pub async fn proxy_list(self: &Arc<Self>) -> Result<Vec<ProxyView>> {
        let proxies = self.store.proxies().await?;
        let alive = self.store.alive().await?;
        let acks = self.store.acks().await?;
        let mut out: Vec<ProxyView> = proxies
            .values()
            .map(|p| ProxyView {
                id: p.id,
                token: p.token.clone(),
                proxy_addr: p.proxy_addr.clone(),
                admin_addr: p.admin_addr.clone(),
                alive: alive.contains_key(&p.token),
                acked_version: acks.get(&p.token).map_or(0, |a| a.topology_version),
                registered: true,
            })
            .collect();
        for a in alive.values().filter(|a| !proxies.contains_key(&a.token)) {
            out.push(ProxyView {
                id: 0,
                token: a.token.clone(),
                proxy_addr: a.proxy_addr.clone(),
                admin_addr: a.admin_addr.clone(),
                alive: true,
                acked_version: acks.get(&a.token).map_or(0, |k| k.topology_version),
                registered: false,
            });
        }
        Ok(out)
    }

    /// `proxy online <admin-addr>`: reads the proxy's `/api/proxy/model` and registers it.
    pub async fn proxy_online(self: &Arc<Self>, addr: &str) -> Result<Value> {
        crate::redis::split_addr(addr)?;
        let r = crate::http::request(
            addr,
            "GET",
            "/api/proxy/model",
            None,
            Duration::from_secs(3),
        )
        .await
        .map_err(|e| CtlError::invalid(format!("proxy admin {addr}: {e}")))?;
        if r.status != 200 {
            return Err(CtlError::invalid(format!(
                "proxy admin {addr}: /api/proxy/model answered HTTP {}",
                r.status
            )));
        }
        let mut p: Proxy = serde_json::from_slice(&r.body).map_err(|e| {
            CtlError::invalid(format!("proxy admin {addr}: not a proxy model: {e}"))
        })?;
        if p.token.is_empty() {
            return Err(CtlError::invalid(format!(
                "proxy admin {addr}: model has no token"
            )));
        }
        if p.product_name != self.store.product() {
            return Err(CtlError::invalid(format!(
                "proxy {addr} belongs to product {:?}, not {:?}",
                p.product_name,
                self.store.product()
            )));
        }
        let _w = self.write.lock().await;
        let proxies = self.store.proxies().await?;
        p.id = match proxies.get(&p.token) {
            Some(old) if old.id != 0 => old.id,
            _ => proxies.values().map(|p| p.id).max().unwrap_or(0) + 1,
        };
        self.store.update_proxy(&p).await?;
        Ok(ok_with("proxy", json!(p)))
    }

    /// `proxy offline <id|token|addr>`: removes the registration and its acknowledgement.
    pub async fn proxy_offline(self: &Arc<Self>, id: &str) -> Result<Value> {
        let _w = self.write.lock().await;
        let proxies = self.store.proxies().await?;
        let p = proxies
            .values()
            .find(|p| {
                p.token == id
                    || p.proxy_addr == id
                    || p.admin_addr == id
                    || id.parse::<u32>().is_ok_and(|n| n == p.id && n != 0)
            })
            .ok_or_else(|| CtlError::invalid(format!("no registered proxy matches {id:?}")))?;
        self.store.delete_proxy(&p.token).await?;
        self.store.delete_ack(&p.token).await?;
        Ok(ok())
    }
}
