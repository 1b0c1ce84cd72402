//! The slot table: the routing view of a topology snapshot, built once on the control thread and
//! shared read-only (`Arc`) by every core.
//!
//! Per slot, from its Codis state (reference §4):
//! - `""`, `pending`, `preparing`: the group's master;
//! - `prepared`: target master, migrating from the source master, **locked** (requests wait);
//! - `migrating`: target master, each key first pulled from the source master;
//! - `finished`: the target master alone.

use coord::{SlotState, Topology};

/// Routing of one slot. Addresses are indexes into [`SlotTable::addrs`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotRoute {
    pub id: u16,
    pub group_id: u32,
    pub state: SlotState,
    pub action_index: u64,
    pub target_id: u32,
    /// Where requests go (`None`: offline).
    pub backend: Option<u32>,
    /// The source master while the slot migrates.
    pub migrate_from: Option<u32>,
    /// Requests wait while locked (`prepared`).
    pub locked: bool,
    /// Replica servers eligible for reads, best tier first (same datacenter, then others).
    pub replicas: Vec<u32>,
}

/// All 1024 slot routes plus the interned backend addresses.
#[derive(Clone, Debug, Default)]
pub struct SlotTable {
    pub version: u64,
    pub addrs: Vec<String>,
    pub slots: Vec<SlotRoute>,
    /// Where every pub/sub channel lives (`pubsub`): the master of the lowest-numbered group
    /// that owns slots.
    pub pubsub_home: Option<u32>,
}

impl SlotTable {
    /// The routing view of `topo` for a proxy in `datacenter`.
    pub fn build(topo: &Topology, datacenter: &str) -> SlotTable {
        let mut t = SlotTable {
            version: topo.version(),
            ..Default::default()
        };
        let intern = |t: &mut SlotTable, a: &str| -> u32 {
            match t.addrs.iter().position(|x| x == a) {
                Some(i) => i as u32,
                None => {
                    t.addrs.push(a.to_string());
                    (t.addrs.len() - 1) as u32
                }
            }
        };
        for m in topo.slots() {
            let source = topo.master_of(m.group_id).map(|a| intern(&mut t, a));
            let target = if m.action.target_id != 0 {
                topo.master_of(m.action.target_id)
                    .map(|a| intern(&mut t, a))
            } else {
                None
            };
            let state = m.action.state;
            let (backend, migrate_from, locked) = match state {
                SlotState::Prepared => {
                    (target.or(source), source.filter(|_| target.is_some()), true)
                }
                SlotState::Migrating => (
                    target.or(source),
                    source.filter(|_| target.is_some()),
                    false,
                ),
                SlotState::Finished => (target.or(source), None, false),
                _ => (source, None, false),
            };
            let mut replicas = Vec::new();
            if state.is_nothing() {
                if let Some(g) = topo.group(m.group_id) {
                    let eligible: Vec<_> = g
                        .servers
                        .iter()
                        .enumerate()
                        .filter(|(i, s)| s.replica_group && (*i > 0 || g.servers.len() > 1))
                        .map(|(_, s)| s)
                        .collect();
                    if g.servers.len() >= 2 && g.promoting.state.is_empty() {
                        for same_dc in [true, false] {
                            for s in &eligible {
                                let local = !datacenter.is_empty() && s.datacenter == datacenter;
                                if local == same_dc {
                                    replicas.push(intern(&mut t, &s.addr));
                                }
                            }
                        }
                    }
                }
            }
            t.slots.push(SlotRoute {
                id: m.id as u16,
                group_id: m.group_id,
                state,
                action_index: m.action.index,
                target_id: m.action.target_id,
                backend,
                migrate_from,
                locked,
                replicas,
            });
        }
        let home = topo
            .groups()
            .keys()
            .copied()
            .filter(|&g| t.slots.iter().any(|s| s.group_id == g))
            .find_map(|g| topo.master_of(g));
        t.pubsub_home = home.map(|a| intern(&mut t, a));
        t
    }

    /// The address behind an index.
    pub fn addr(&self, i: u32) -> &str {
        self.addrs.get(i as usize).map_or("", |s| s.as_str())
    }

    /// Slots whose routing differs between `self` and `old` (all of them if `old` is `None`).
    pub fn changed_slots<'a>(
        &'a self,
        old: Option<&'a SlotTable>,
    ) -> impl Iterator<Item = usize> + 'a {
        (0..self.slots.len()).filter(move |&i| match old {
            None => true,
            Some(o) => match o.slots.get(i) {
                None => true,
                Some(os) => {
                    let s = &self.slots[i];
                    s.locked != os.locked
                        || s.state != os.state
                        || s.backend.map(|b| self.addr(b)) != os.backend.map(|b| o.addr(b))
                        || s.migrate_from.map(|b| self.addr(b))
                            != os.migrate_from.map(|b| o.addr(b))
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coord::{Group, GroupServer, SlotAction, SlotMapping, TopologyData};

    fn server(addr: &str, dc: &str, replica: bool) -> GroupServer {
        GroupServer {
            addr: addr.into(),
            datacenter: dc.into(),
            replica_group: replica,
            ..Default::default()
        }
    }

    #[test]
    fn states_and_replicas() {
        let groups = [
            (
                1,
                Group {
                    id: 1,
                    servers: vec![
                        server("m1:1", "", false),
                        server("r1:1", "far", true),
                        server("r2:1", "here", true),
                    ],
                    ..Default::default()
                },
            ),
            (
                2,
                Group {
                    id: 2,
                    servers: vec![server("m2:1", "", false)],
                    ..Default::default()
                },
            ),
        ];
        let mk = |id, state| SlotMapping {
            id,
            group_id: 1,
            action: SlotAction {
                index: 1,
                state,
                target_id: 2,
            },
        };
        let topo = Topology::new(TopologyData {
            product: "p".into(),
            version: 4,
            groups: groups.into_iter().collect(),
            slots: vec![
                SlotMapping {
                    id: 0,
                    group_id: 1,
                    ..Default::default()
                },
                mk(1, SlotState::Prepared),
                mk(2, SlotState::Migrating),
                mk(3, SlotState::Finished),
            ],
            ..Default::default()
        });
        let t = SlotTable::build(&topo, "here");
        let a = |o: Option<u32>| o.map(|i| t.addr(i).to_string());
        assert_eq!(a(t.slots[0].backend).as_deref(), Some("m1:1"));
        let reps: Vec<&str> = t.slots[0].replicas.iter().map(|&i| t.addr(i)).collect();
        assert_eq!(reps, vec!["r2:1", "r1:1"]);
        assert!(t.slots[1].locked);
        assert_eq!(a(t.slots[1].backend).as_deref(), Some("m2:1"));
        assert_eq!(a(t.slots[2].migrate_from).as_deref(), Some("m1:1"));
        assert!(!t.slots[2].locked && t.slots[2].replicas.is_empty());
        assert_eq!(a(t.slots[3].backend).as_deref(), Some("m2:1"));
        assert_eq!(t.slots[3].migrate_from, None);
        assert_eq!(t.slots[5].backend, None);
        assert_eq!(t.changed_slots(Some(&t)).count(), 0);
    }
}
