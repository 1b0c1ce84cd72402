//! Slot operations: init, set, range-set (assignment without data movement), migrate (queueing
//! actions for the executor), cancel, rebalance, info.

use std::sync::Arc;

use coord::{SlotAction, SlotMapping, SlotState, Topology, MAX_GROUP_ID, MAX_SLOT_NUM};
use serde_json::{json, Value};

use super::{ok, ok_with, Ctx};
use crate::error::{CtlError, Result};
use crate::rebalance;

/// Checks a slot id.
pub fn check_slot(sid: u32) -> Result<()> {
    if sid >= MAX_SLOT_NUM {
        return Err(CtlError::invalid(format!(
            "slot {sid} is out of range: slots are 0..={}",
            MAX_SLOT_NUM - 1
        )));
    }
    Ok(())
}

/// Checks a slot range `from..=to`.
pub fn check_range(from: u32, to: u32) -> Result<()> {
    check_slot(from)?;
    check_slot(to)?;
    if from > to {
        return Err(CtlError::invalid(format!(
            "bad slot range {from}..{to}: from must not exceed to"
        )));
    }
    Ok(())
}

/// Checks a group id (1..=9999).
pub fn check_gid(gid: u32) -> Result<()> {
    if gid == 0 || gid > MAX_GROUP_ID {
        return Err(CtlError::invalid(format!(
            "group id {gid} is out of range: groups are 1..={MAX_GROUP_ID}"
        )));
    }
    Ok(())
}

/// Checks that `gid` exists in `t` with a master and is not promoting.
pub fn check_target(t: &Topology, gid: u32) -> Result<()> {
    check_gid(gid)?;
    let g = t.group(gid).ok_or_else(|| {
        CtlError::invalid(format!(
            "group {gid} does not exist (create it with `codisctl group create {gid}`)"
        ))
    })?;
    if g.servers.is_empty() {
        return Err(CtlError::invalid(format!(
            "group {gid} has no master: add one with `codisctl server add {gid} <addr> master`"
        )));
    }
    if !g.promoting.state.is_empty() {
        return Err(CtlError::conflict(format!(
            "group {gid} is promoting a server; retry when it is done"
        )));
    }
    Ok(())
}

/// The next action index (FIFO order of the migration queue).
pub fn next_index(slots: &[SlotMapping]) -> u64 {
    slots.iter().map(|m| m.action.index).max().unwrap_or(0) + 1
}

fn busy(m: &SlotMapping) -> CtlError {
    CtlError::conflict(format!(
        "slot {} already has a {} action (to group {})",
        m.id,
        m.action.state.as_str(),
        m.action.target_id
    ))
}

fn parse_status(status: &str, gid: u32) -> Result<u32> {
    match status.to_ascii_lowercase().as_str() {
        "online" => {
            check_gid(gid)?;
            Ok(gid)
        }
        "offline" => Ok(0),
        _ => Err(CtlError::invalid(format!(
            "slot status {status:?}: want online or offline"
        ))),
    }
}

impl Ctx {
    /// `slot init [-f]`: writes all 1024 slots offline.
    pub async fn slot_init(self: &Arc<Self>, force: bool) -> Result<Value> {
        let _w = self.write.lock().await;
        let slots = self.store.slot_mappings().await?;
        let used = slots
            .iter()
            .filter(|m| m.group_id != 0 || !m.action.state.is_nothing())
            .count();
        if used > 0 && !force {
            return Err(CtlError::conflict(format!(
                "slots are already initialized ({used} assigned or migrating); use -f to reset every slot offline"
            )));
        }
        // An absent slot node reads as offline: only slots that differ need a write.
        let reset: Vec<SlotMapping> = slots
            .iter()
            .filter(|m| **m != SlotMapping::offline(m.id))
            .map(|m| SlotMapping::offline(m.id))
            .collect();
        if !reset.is_empty() {
            self.store.update_slot_mappings(&reset).await?;
        }
        Ok(ok_with("reset", json!(reset.len())))
    }

    /// `slot set <slot> <gid> online|offline`: forces one slot, clearing any action (the
    /// operator's tool for a stuck slot, Codis issue #1652).
    pub async fn slot_set(self: &Arc<Self>, sid: u32, gid: u32, status: &str) -> Result<Value> {
        check_slot(sid)?;
        let gid = parse_status(status, gid)?;
        let _w = self.write.lock().await;
        let t = self.store.topology().await?;
        if gid != 0 {
            check_target(&t, gid)?;
        }
        let m = SlotMapping {
            id: sid,
            group_id: gid,
            action: SlotAction::default(),
        };
        self.store.update_slot_mapping(&m).await?;
        Ok(ok())
    }

    /// `slot range-set <from> <to> <gid> online|offline`: assigns without moving data.
    pub async fn slot_range_set(
        self: &Arc<Self>,
        from: u32,
        to: u32,
        gid: u32,
        status: &str,
    ) -> Result<Value> {
        check_range(from, to)?;
        let gid = parse_status(status, gid)?;
        let _w = self.write.lock().await;
        let t = self.store.topology().await?;
        if gid != 0 {
            check_target(&t, gid)?;
        }
        let mut out = Vec::new();
        for sid in from..=to {
            let m = t.slot(sid);
            if !m.action.state.is_nothing() {
                return Err(busy(&m));
            }
            if m.group_id == gid && m.id == sid {
                continue; // already so: nothing to write
            }
            out.push(SlotMapping {
                id: sid,
                group_id: gid,
                action: SlotAction::default(),
            });
        }
        if !out.is_empty() {
            self.store.update_slot_mappings(&out).await?;
        }
        Ok(ok())
    }

    /// `slot migrate <from> <to> <gid>`: queues a `pending` action per slot.
    pub async fn slot_migrate(
        self: &Arc<Self>,
        from: u32,
        to: u32,
        gid: u32,
        delay_ms: Option<u64>,
    ) -> Result<Value> {
        check_range(from, to)?;
        let _w = self.write.lock().await;
        let t = self.store.topology().await?;
        check_target(&t, gid)?;
        let plan: rebalance::Plan = (from..=to).map(|s| (s, gid)).collect();
        let n = self.create_actions(&t, &plan).await?;
        if let Some(d) = delay_ms {
            self.control.set_delay_ms(d);
        }
        self.control.wake();
        Ok(ok_with("slots", json!(n)))
    }

    /// Writes `pending` actions for `plan` after checking every slot; returns how many.
    async fn create_actions(&self, t: &Topology, plan: &rebalance::Plan) -> Result<usize> {
        let mut out = Vec::new();
        for (index, (&sid, &gid)) in (next_index(t.slots())..).zip(plan.iter()) {
            let m = t.slot(sid);
            if !m.action.state.is_nothing() {
                return Err(busy(&m));
            }
            if m.group_id == gid {
                return Err(CtlError::conflict(format!(
                    "slot {sid} already belongs to group {gid}"
                )));
            }
            if m.group_id != 0 {
                match t.group(m.group_id) {
                    Some(g) if !g.servers.is_empty() => {}
                    _ => {
                        return Err(CtlError::invalid(format!(
                            "slot {sid}: its group {} has no master to migrate from",
                            m.group_id
                        )))
                    }
                }
            }
            out.push(SlotMapping {
                id: sid,
                group_id: m.group_id,
                action: SlotAction {
                    index,
                    state: SlotState::Pending,
                    target_id: gid,
                },
            });
        }
        if !out.is_empty() {
            let start = std::time::Instant::now();
            let v = self.store.update_slot_mappings_versioned(&out).await?;
            let wrote = start.elapsed();
            // Proxies learn the new actions from the push instead of reading every slot back
            // (they ignore `pending`, but a version they did not get pushed costs them a read of
            // the whole topology). Best effort: a proxy that misses it still reads it.
            if let Err(e) = self.push_slots(v, &out).await {
                tracing::debug!("pushing the pending actions: {e}");
            }
            tracing::debug!(
                slots = out.len(),
                write_us = wrote.as_micros() as u64,
                push_us = (start.elapsed() - wrote).as_micros() as u64,
                "pending actions written and pushed"
            );
        }
        Ok(out.len())
    }

    /// `slot action cancel [slot]`: removes actions that have not started migrating data.
    pub async fn slot_cancel(self: &Arc<Self>, slot: Option<u32>) -> Result<Value> {
        if let Some(s) = slot {
            check_slot(s)?;
        }
        let _w = self.write.lock().await;
        let slots = self.store.slot_mappings().await?;
        let cancellable = |m: &SlotMapping| {
            matches!(
                m.action.state,
                SlotState::Pending | SlotState::Preparing | SlotState::Prepared
            )
        };
        let mut out = Vec::new();
        match slot {
            Some(s) => {
                let m = &slots[s as usize];
                if m.action.state.is_nothing() {
                    return Err(CtlError::invalid(format!(
                        "slot {s} has no action to cancel"
                    )));
                }
                if !cancellable(m) {
                    return Err(CtlError::conflict(format!(
                        "slot {s} is already {}: data is moving, it cannot be cancelled (pause instead)",
                        m.action.state.as_str()
                    )));
                }
                out.push(m.clone());
            }
            None => out.extend(slots.iter().filter(|m| cancellable(m)).cloned()),
        }
        for m in &mut out {
            m.action = SlotAction::default();
        }
        if !out.is_empty() {
            self.store.update_slot_mappings(&out).await?;
        }
        Ok(ok_with("cancelled", json!(out.len())))
    }

    /// `slot rebalance [--confirm]`: Codis' plan; with `confirm` it becomes pending actions.
    pub async fn slot_rebalance(self: &Arc<Self>, confirm: bool) -> Result<Value> {
        let _w = self.write.lock().await;
        let t = self.store.topology().await?;
        let plan = rebalance::plan(t.groups(), t.slots())?;
        let lines = rebalance::describe(&plan);
        if confirm {
            self.create_actions(&t, &plan).await?;
            self.control.wake();
        }
        let map: serde_json::Map<String, Value> = plan
            .iter()
            .map(|(s, g)| (s.to_string(), json!(g)))
            .collect();
        let mut v = ok_with("plan", Value::Object(map));
        v["ranges"] = json!(lines);
        v["confirmed"] = json!(confirm);
        Ok(v)
    }
}

/// `slot info <slot>`: the mapping plus the masters it routes to.
pub fn slot_info(t: &Topology, sid: u32) -> Result<Value> {
    check_slot(sid)?;
    let m = t.slot(sid);
    Ok(json!({
        "id": m.id,
        "group_id": m.group_id,
        "action": m.action,
        "master": t.master_of(m.group_id),
        "target_master": if m.action.target_id != 0 { t.master_of(m.action.target_id) } else { None },
    }))
}
