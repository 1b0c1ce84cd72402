//! `server promote <gid> <addr>`: make a replica the master of its group without any write
//! being accepted by two masters (Codis' `promoting` flow, reference §6, plus re-pointing).
//!
//! 1. `promoting.state = preparing` on the group (refused while its slots migrate).
//! 2. Every slot of the group gets the action `prepared` with itself as target: proxies lock
//!    (hold) those slots exactly as for a migration and acknowledge; `promoting = prepared`.
//! 3. Once every live proxy acknowledged (no write can reach the old master any more): if the
//!    old master still answers, wait until the replica has received its whole replication stream
//!    (`slave_repl_offset` ≥ the master's `master_repl_offset`, at most [`CATCH_UP_TIMEOUT`];
//!    otherwise roll back: promoting a lagging replica while the master is healthy would drop
//!    acknowledged writes). A dead master cannot be waited for: its replica is promoted as is.
//!    Then `SLAVEOF NO ONE` on the replica, the other replicas
//!    and the old master (when reachable) `SLAVEOF` the new master; servers become
//!    `[new, other replicas…, old master]`; `promoting = finished`.
//! 4. The slots' actions are cleared (proxies route to the new master) and `promoting` too.
//!
//! Each step is stored before the next begins; running the verb again resumes a promotion
//! that was interrupted. If proxies do not acknowledge in time, everything is rolled back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coord::{Group, IndexState, SlotAction, SlotMapping, SlotState};
use serde_json::{json, Value};

use crate::error::{CtlError, Result};
use crate::redis::RedisConn;
use crate::topom::slots::{check_gid, next_index};
use crate::topom::{ok_with, Ctx};

/// How long proxies get to acknowledge the locked slots.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a replica gets to catch up with a live old master before the promotion is rolled back.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);

fn info_u64(info: &std::collections::BTreeMap<String, String>, field: &str) -> Option<u64> {
    info.get(field).and_then(|v| v.trim().parse().ok())
}

/// With the group's slots locked, waits until `replica` holds everything `master` acknowledged.
/// `Ok(None)`: caught up, or the master does not answer (nothing to wait for). `Ok(Some(why))`:
/// the master answers but the replica is still behind after [`CATCH_UP_TIMEOUT`].
async fn wait_caught_up(ctx: &Ctx, master: &str, replica: &str) -> Result<Option<String>> {
    let auth = &ctx.cfg.product_auth;
    let target = async {
        let mut m = RedisConn::connect(master, auth, ctx.redis_timeout).await?;
        let info = m.info(Some("replication")).await?;
        Ok::<_, CtlError>(info_u64(&info, "master_repl_offset"))
    }
    .await;
    let want = match target {
        Ok(Some(off)) => off,
        Ok(None) => return Ok(None),
        Err(e) => {
            tracing::warn!("promote: old master {master} does not answer ({e}); promoting {replica} without waiting for it to catch up");
            return Ok(None);
        }
    };
    let start = Instant::now();
    let mut seen = None;
    loop {
        let got = async {
            let mut r = RedisConn::connect(replica, auth, ctx.redis_timeout).await?;
            let info = r.info(Some("replication")).await?;
            if info.get("role").map(String::as_str) == Some("master") {
                // Already promoted by an interrupted run of this promotion.
                return Ok::<_, CtlError>(Some(u64::MAX));
            }
            Ok(info_u64(&info, "slave_repl_offset"))
        }
        .await;
        match got {
            Ok(Some(off)) if off >= want => return Ok(None),
            Ok(off) => seen = off,
            Err(e) => tracing::debug!("promote: replication offset of {replica}: {e}"),
        }
        if start.elapsed() > CATCH_UP_TIMEOUT {
            return Ok(Some(format!(
                "replica {replica} did not catch up with the live master {master} in {}s (replication offset {} of {want})",
                CATCH_UP_TIMEOUT.as_secs(),
                seen.map_or("unknown".to_string(), |o| o.to_string())
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn locked_slots(slots: &[SlotMapping], g: &Group) -> Vec<SlotMapping> {
    slots
        .iter()
        .filter(|m| {
            m.group_id == g.id
                && m.action.state == SlotState::Prepared
                && m.action.target_id == g.id
                && m.action.index == g.promoting.index
        })
        .cloned()
        .collect()
}

async fn unlock(ctx: &Ctx, g: &mut Group) -> Result<()> {
    let slots = ctx.store.slot_mappings().await?;
    let mut locked = locked_slots(&slots, g);
    for m in &mut locked {
        m.action = SlotAction::default();
    }
    if !locked.is_empty() {
        ctx.store.update_slot_mappings(&locked).await?;
    }
    g.promoting = IndexState::default();
    ctx.store.update_group(g).await?;
    Ok(())
}

/// Promotes `addr` to master of group `gid`.
pub async fn promote(ctx: &Arc<Ctx>, gid: u32, addr: &str) -> Result<Value> {
    check_gid(gid)?;
    let _w = ctx.write.lock().await;
    let t = ctx.store.topology().await?;
    let mut g = t
        .group(gid)
        .cloned()
        .ok_or_else(|| CtlError::invalid(format!("group {gid} does not exist")))?;
    let pos = g
        .servers
        .iter()
        .position(|s| s.addr == addr)
        .ok_or_else(|| CtlError::invalid(format!("server {addr} is not in group {gid}")))?;
    let auth = ctx.cfg.product_auth.clone();
    let mut warnings: Vec<String> = Vec::new();
    if g.promoting.state.is_empty() {
        if pos == 0 {
            return Err(CtlError::invalid(format!(
                "{addr} is already the master of group {gid}"
            )));
        }
        if let Some(m) = t.slots().iter().find(|m| {
            !m.action.state.is_nothing() && (m.group_id == gid || m.action.target_id == gid)
        }) {
            return Err(CtlError::conflict(format!(
                "group {gid} takes part in a slot migration (slot {} is {}); wait for it or cancel it",
                m.id,
                m.action.state.as_str()
            )));
        }
        let mut c = RedisConn::connect(addr, &auth, ctx.redis_timeout).await?;
        c.ping().await?;
        g.promoting = IndexState {
            index: next_index(t.slots()),
            state: "preparing".into(),
        };
        ctx.store.update_group(&g).await?;
    }
    if g.promoting.state == "preparing" {
        let slots = ctx.store.slot_mappings().await?;
        let lock: Vec<SlotMapping> = slots
            .iter()
            .filter(|m| m.group_id == gid && m.action.state.is_nothing())
            .map(|m| SlotMapping {
                id: m.id,
                group_id: gid,
                action: SlotAction {
                    index: g.promoting.index,
                    state: SlotState::Prepared,
                    target_id: gid,
                },
            })
            .collect();
        if !lock.is_empty() {
            ctx.store.update_slot_mappings(&lock).await?;
        }
        g.promoting.state = "prepared".into();
        ctx.store.update_group(&g).await?;
    }
    if g.promoting.state == "prepared" {
        // Wait until every live proxy holds the group's slots.
        let start = Instant::now();
        loop {
            let slots = ctx.store.slot_mappings().await?;
            let alive = ctx.store.alive().await?;
            let acks = ctx.store.acks().await?;
            let locked = locked_slots(&slots, &g);
            let waiting: Vec<&String> = alive
                .keys()
                .filter(|tok| {
                    let ack = acks.get(*tok);
                    !locked.iter().all(|m| ack.is_some_and(|a| a.has_applied(m)))
                })
                .collect();
            if waiting.is_empty() {
                break;
            }
            if start.elapsed() > ACK_TIMEOUT {
                let names: Vec<String> = waiting.iter().map(|s| s.to_string()).collect();
                unlock(ctx, &mut g).await?;
                return Err(CtlError::conflict(format!(
                    "proxies {} did not acknowledge the locked slots in {}s; promotion rolled back",
                    names.join(", "),
                    ACK_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Promote, then re-point everyone else.
        let pos = g
            .servers
            .iter()
            .position(|s| s.addr == addr)
            .ok_or_else(|| CtlError::invalid(format!("server {addr} left group {gid}")))?;
        if pos != 0 {
            if let Some(why) = wait_caught_up(ctx, &g.servers[0].addr, addr).await? {
                unlock(ctx, &mut g).await?;
                return Err(CtlError::conflict(format!(
                    "{why}; promotion rolled back (the master keeps serving)"
                )));
            }
            let promoted = async {
                let mut c = RedisConn::connect(addr, &auth, ctx.redis_timeout).await?;
                c.slaveof(None, &auth).await
            }
            .await;
            if let Err(e) = promoted {
                unlock(ctx, &mut g).await?;
                return Err(CtlError::redis(
                    addr,
                    format!("SLAVEOF NO ONE failed, promotion rolled back: {e}"),
                ));
            }
            let new = g.servers[pos].clone();
            let old = g.servers[0].clone();
            let mut servers = vec![new];
            servers.extend(
                g.servers
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != 0 && *i != pos)
                    .map(|(_, s)| s.clone()),
            );
            servers.push(old);
            for s in servers.iter().skip(1) {
                let r = async {
                    let mut c = RedisConn::connect(&s.addr, &auth, ctx.redis_timeout).await?;
                    c.slaveof(Some(addr), &auth).await
                }
                .await;
                if let Err(e) = r {
                    warnings.push(format!("{} not re-pointed to {addr}: {e}", s.addr));
                }
            }
            g.servers = servers;
        }
        g.promoting.state = "finished".into();
        ctx.store.update_group(&g).await?;
    }
    // finished (or an unknown state left behind): unlock the slots.
    unlock(ctx, &mut g).await?;
    for w in &warnings {
        tracing::warn!("promote: {w}");
    }
    let mut v = ok_with("master", json!(addr));
    v["warnings"] = json!(warnings);
    Ok(v)
}
