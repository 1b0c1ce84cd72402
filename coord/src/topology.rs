//! An immutable, cheap-to-clone snapshot of one product's topology, and the per-slot routing
//! view the proxy needs.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::models::{Group, Proxy, Sentinel, SlotMapping, SlotState, Topom, MAX_SLOT_NUM};

/// Everything a snapshot holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopologyData {
    /// The product name.
    pub product: String,
    /// The value of `/codis3/{p}/version` when read (0 if absent).
    pub version: u64,
    /// The dashboard record (the lock holder), if any.
    pub topom: Option<Topom>,
    /// Groups by id.
    pub groups: BTreeMap<u32, Group>,
    /// All 1024 slot mappings, index = slot id (absent nodes are offline, group 0).
    pub slots: Vec<SlotMapping>,
    /// Registered proxies by token.
    pub proxies: BTreeMap<String, Proxy>,
    /// The sentinel record, if any.
    pub sentinel: Option<Sentinel>,
}

/// An immutable topology snapshot; clones share one allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology(Arc<TopologyData>);

/// How the proxy should route one slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRoute<'a> {
    pub id: u32,
    /// The group that owns the slot (0 = offline).
    pub group_id: u32,
    /// Its master's address, if the group exists and has servers.
    pub master: Option<&'a str>,
    /// Migration state.
    pub state: SlotState,
    /// Migration action index.
    pub action_index: u64,
    /// Migration target group (0 when none).
    pub target_id: u32,
    /// The migration target group's master.
    pub target_master: Option<&'a str>,
}

impl Topology {
    /// Wraps data, filling `slots` up to 1024 offline entries.
    pub fn new(mut data: TopologyData) -> Self {
        let mut slots: Vec<SlotMapping> = (0..MAX_SLOT_NUM).map(SlotMapping::offline).collect();
        for m in data.slots.drain(..) {
            if let Some(s) = slots.get_mut(m.id as usize) {
                *s = m;
            }
        }
        data.slots = slots;
        Topology(Arc::new(data))
    }

    /// An empty topology of `product` (every slot offline).
    pub fn empty(product: &str) -> Self {
        Topology::new(TopologyData {
            product: product.to_string(),
            ..Default::default()
        })
    }

    /// The snapshot's data.
    pub fn data(&self) -> &TopologyData {
        &self.0
    }
    /// The product name.
    pub fn product(&self) -> &str {
        &self.0.product
    }
    /// The topology version.
    pub fn version(&self) -> u64 {
        self.0.version
    }
    /// Slot mapping `sid` (offline for ids out of range).
    pub fn slot(&self, sid: u32) -> SlotMapping {
        self.0
            .slots
            .get(sid as usize)
            .cloned()
            .unwrap_or_else(|| SlotMapping::offline(sid))
    }
    /// All 1024 slot mappings.
    pub fn slots(&self) -> &[SlotMapping] {
        &self.0.slots
    }
    /// Group `gid`.
    pub fn group(&self, gid: u32) -> Option<&Group> {
        self.0.groups.get(&gid)
    }
    /// All groups by id.
    pub fn groups(&self) -> &BTreeMap<u32, Group> {
        &self.0.groups
    }
    /// Registered proxies by token.
    pub fn proxies(&self) -> &BTreeMap<String, Proxy> {
        &self.0.proxies
    }
    /// The master address of group `gid`.
    pub fn master_of(&self, gid: u32) -> Option<&str> {
        self.0.groups.get(&gid).and_then(Group::master)
    }
    /// Routing of slot `sid`.
    pub fn route(&self, sid: u32) -> Option<SlotRoute<'_>> {
        let m = self.0.slots.get(sid as usize)?;
        Some(SlotRoute {
            id: m.id,
            group_id: m.group_id,
            master: self.master_of(m.group_id),
            state: m.action.state,
            action_index: m.action.index,
            target_id: m.action.target_id,
            target_master: if m.action.target_id != 0 {
                self.master_of(m.action.target_id)
            } else {
                None
            },
        })
    }
    /// Routing of every slot, in slot order.
    pub fn routes(&self) -> impl Iterator<Item = SlotRoute<'_>> {
        (0..self.0.slots.len() as u32).filter_map(|sid| self.route(sid))
    }
    /// Slots owned by group `gid`.
    pub fn slots_of_group(&self, gid: u32) -> Vec<u32> {
        self.0
            .slots
            .iter()
            .filter(|m| m.group_id == gid)
            .map(|m| m.id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{GroupServer, SlotAction};

    #[test]
    fn routes() {
        let g = |id, addr: &str| Group {
            id,
            servers: vec![GroupServer {
                addr: addr.into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let t = Topology::new(TopologyData {
            product: "p".into(),
            version: 3,
            groups: [(1, g(1, "a:1")), (2, g(2, "b:2"))].into_iter().collect(),
            slots: vec![
                SlotMapping {
                    id: 5,
                    group_id: 1,
                    action: SlotAction {
                        index: 1,
                        state: SlotState::Migrating,
                        target_id: 2,
                    },
                },
                SlotMapping {
                    id: 6,
                    group_id: 2,
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        assert_eq!(t.slots().len(), 1024);
        let r = t.route(5).unwrap();
        assert_eq!(
            (r.master, r.target_master, r.state),
            (Some("a:1"), Some("b:2"), SlotState::Migrating)
        );
        let r = t.route(0).unwrap();
        assert_eq!((r.group_id, r.master), (0, None));
        assert_eq!(t.slots_of_group(2), vec![6]);
        assert!(t.route(1024).is_none());
    }
}
