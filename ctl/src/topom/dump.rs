//! `config dump` / `config restore`: the whole product as one JSON document
//! `{product, version, slots, group, proxy, sentinel}` (Codis' `--config-dump` shape).

use std::sync::Arc;

use coord::{Group, Proxy, Sentinel, SlotMapping, Topology, MAX_SLOT_NUM};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{ok_with, Ctx};
use crate::error::{CtlError, Result};

/// The dump document.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Dump {
    pub product: String,
    pub version: u64,
    pub slots: Vec<SlotMapping>,
    pub group: Vec<Group>,
    pub proxy: Vec<Proxy>,
    pub sentinel: Option<Sentinel>,
}

/// The dump of a topology snapshot.
pub fn dump(t: &Topology) -> Dump {
    Dump {
        product: t.product().to_string(),
        version: t.version(),
        slots: t.slots().to_vec(),
        group: t.groups().values().cloned().collect(),
        proxy: t.proxies().values().cloned().collect(),
        sentinel: t.data().sentinel.clone(),
    }
}

impl Ctx {
    /// Writes a dump into the product. Without `force` the product must be empty (no groups,
    /// no assigned slots); with it, groups absent from the dump are deleted.
    pub async fn config_restore(self: &Arc<Self>, config: Value, force: bool) -> Result<Value> {
        let d: Dump = serde_json::from_value(config)
            .map_err(|e| CtlError::invalid(format!("not a config dump: {e}")))?;
        for m in &d.slots {
            if m.id >= MAX_SLOT_NUM {
                return Err(CtlError::invalid(format!("dump has slot id {}", m.id)));
            }
            if m.group_id != 0 && !d.group.iter().any(|g| g.id == m.group_id) {
                return Err(CtlError::invalid(format!(
                    "dump maps slot {} to group {}, which the dump lacks",
                    m.id, m.group_id
                )));
            }
        }
        for g in &d.group {
            super::slots::check_gid(g.id)?;
        }
        let _w = self.write.lock().await;
        let t = self.store.topology().await?;
        let used = t.slots().iter().any(|m| m.group_id != 0) || !t.groups().is_empty();
        if used && !force {
            return Err(CtlError::conflict(
                "the product already has groups or assigned slots; use -f to overwrite",
            ));
        }
        for gid in t.groups().keys() {
            if !d.group.iter().any(|g| g.id == *gid) {
                self.store.delete_group(*gid).await?;
            }
        }
        for g in &d.group {
            self.store.update_group(g).await?;
        }
        let mut slots: Vec<SlotMapping> = (0..MAX_SLOT_NUM).map(SlotMapping::offline).collect();
        for m in d.slots {
            let i = m.id as usize;
            slots[i] = m;
        }
        self.store.update_slot_mappings(&slots).await?;
        for p in &d.proxy {
            self.store.update_proxy(p).await?;
        }
        if let Some(s) = &d.sentinel {
            self.store.update_sentinel(s).await?;
        }
        Ok(ok_with("groups", json!(d.group.len())))
    }
}
