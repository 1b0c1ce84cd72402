//! Groups and their servers: create, remove, add (checking the server and configuring
//! replication with SLAVEOF), remove, and the live server list.

use std::sync::Arc;

use coord::{Group, GroupServer, IndexState, Topology};
use serde_json::Value;

use super::slots::check_gid;
use super::{ok, Ctx};
use crate::error::{CtlError, Result};
use crate::redis::{split_addr, RedisConn};
use crate::request::Role;
use crate::stats::{server_status, ServerStatus};

fn no_group(gid: u32) -> CtlError {
    CtlError::invalid(format!(
        "group {gid} does not exist (create it with `codisctl group create {gid}`)"
    ))
}

/// Slots that belong to or migrate to `gid`.
pub fn slots_using(t: &Topology, gid: u32) -> usize {
    t.slots()
        .iter()
        .filter(|m| m.group_id == gid || m.action.target_id == gid)
        .count()
}

impl Ctx {
    /// `group create <gid>`.
    pub async fn group_create(self: &Arc<Self>, gid: u32) -> Result<Value> {
        check_gid(gid)?;
        let _w = self.write.lock().await;
        if self.store.group(gid).await?.is_some() {
            return Err(CtlError::conflict(format!("group {gid} already exists")));
        }
        self.store
            .update_group(&Group {
                id: gid,
                ..Default::default()
            })
            .await?;
        Ok(ok())
    }

    /// `group remove <gid>`: the group must have no servers and no slots.
    pub async fn group_remove(self: &Arc<Self>, gid: u32) -> Result<Value> {
        check_gid(gid)?;
        let _w = self.write.lock().await;
        let t = self.store.topology().await?;
        let g = t.group(gid).ok_or_else(|| no_group(gid))?;
        if !g.servers.is_empty() {
            return Err(CtlError::conflict(format!(
                "group {gid} still has {} server(s); remove them first",
                g.servers.len()
            )));
        }
        let n = slots_using(&t, gid);
        if n > 0 {
            return Err(CtlError::conflict(format!(
                "group {gid} still serves {n} slot(s); move them away first"
            )));
        }
        self.store.delete_group(gid).await?;
        Ok(ok())
    }

    /// `server add <gid> <addr> master|slave`: checks that `addr` is a reachable Redis server in
    /// no group, configures replication (SLAVEOF the group's master, or NO ONE for a master that
    /// was a replica), then records it. Nothing is recorded if any step fails.
    pub async fn server_add(self: &Arc<Self>, gid: u32, addr: &str, role: Role) -> Result<Value> {
        check_gid(gid)?;
        split_addr(addr)?;
        let _w = self.write.lock().await;
        let t = self.store.topology().await?;
        let mut g = t.group(gid).cloned().ok_or_else(|| no_group(gid))?;
        if let Some(other) = t
            .groups()
            .values()
            .find(|g| g.servers.iter().any(|s| s.addr == addr))
        {
            return Err(CtlError::conflict(format!(
                "server {addr} is already in group {}",
                other.id
            )));
        }
        if !g.promoting.state.is_empty() {
            return Err(CtlError::conflict(format!(
                "group {gid} is promoting a server; retry when it is done"
            )));
        }
        let master = g.master().map(str::to_string);
        match (role, &master) {
            (Role::Master, Some(m)) => {
                return Err(CtlError::conflict(format!(
                    "group {gid} already has master {m}; add {addr} as slave, then promote it"
                )))
            }
            (Role::Slave, None) => {
                return Err(CtlError::invalid(format!(
                    "group {gid} has no master yet; add a master first"
                )))
            }
            _ => {}
        }
        let auth = &self.cfg.product_auth;
        let mut c = RedisConn::connect(addr, auth, self.redis_timeout).await?;
        c.ping().await?;
        let info = c.info(Some("replication")).await?;
        match (role, master.as_deref()) {
            (Role::Master, _) => {
                if info.get("role").map(String::as_str) == Some("slave") {
                    c.slaveof(None, auth).await?;
                }
            }
            (Role::Slave, Some(m)) => c.slaveof(Some(m), auth).await.map_err(|e| {
                CtlError::redis(
                    addr,
                    format!("cannot make it a replica of {m} (SLAVEOF refused): {e}"),
                )
            })?,
            (Role::Slave, None) => {}
        }
        g.servers.push(GroupServer {
            addr: addr.to_string(),
            action: IndexState {
                index: 0,
                state: "synced".into(),
            },
            ..Default::default()
        });
        self.store.update_group(&g).await?;
        Ok(ok())
    }

    /// `server remove <gid> <addr>`: a master only when it is the last server and the group
    /// serves no slot.
    pub async fn server_remove(self: &Arc<Self>, gid: u32, addr: &str) -> Result<Value> {
        check_gid(gid)?;
        let _w = self.write.lock().await;
        let t = self.store.topology().await?;
        let mut g = t.group(gid).cloned().ok_or_else(|| no_group(gid))?;
        let pos = g
            .servers
            .iter()
            .position(|s| s.addr == addr)
            .ok_or_else(|| CtlError::invalid(format!("server {addr} is not in group {gid}")))?;
        if !g.promoting.state.is_empty() {
            return Err(CtlError::conflict(format!(
                "group {gid} is promoting a server; retry when it is done"
            )));
        }
        if pos == 0 {
            if g.servers.len() > 1 {
                return Err(CtlError::conflict(format!(
                    "{addr} is the master of group {gid}: promote a replica or remove the replicas first"
                )));
            }
            let n = slots_using(&t, gid);
            if n > 0 {
                return Err(CtlError::conflict(format!(
                    "{addr} is the master of group {gid}, which serves {n} slot(s); move them away first"
                )));
            }
        }
        g.servers.remove(pos);
        self.store.update_group(&g).await?;
        Ok(ok())
    }

    /// `server list`: every server with its live replication state.
    pub async fn server_list(self: &Arc<Self>) -> Result<Vec<ServerStatus>> {
        let t = self.store.topology().await?;
        Ok(servers_status(&t, &self.cfg.product_auth, self.redis_timeout).await)
    }
}

/// The status of every server of `t`, polled in parallel.
pub async fn servers_status(
    t: &Topology,
    auth: &str,
    timeout: std::time::Duration,
) -> Vec<ServerStatus> {
    let polls = t.groups().values().flat_map(|g| {
        let master = g.master().map(str::to_string);
        g.servers.iter().map(move |s| {
            let addr = s.addr.clone();
            let master = master.clone();
            let gid = g.id;
            async move { server_status(gid, &addr, master.as_deref(), auth, timeout).await }
        })
    });
    futures::future::join_all(polls).await
}
