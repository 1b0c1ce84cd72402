//! Codis 3.2's rebalance plan (`SlotsRebalance`): balance slot *counts* across the groups that
//! have servers. Slots with actions count toward their target; groups below `1024/N` keep their
//! slots; offline slots go to the smallest group; then one slot at a time moves from the largest
//! group (highest slot ids first) to the smallest until the bounds are met.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use coord::{Group, SlotMapping, MAX_SLOT_NUM};

use crate::error::{CtlError, Result};

/// The plan: slot → destination group.
pub type Plan = BTreeMap<u32, u32>;

/// Computes the plan for `groups` and `slots`.
pub fn plan(groups: &BTreeMap<u32, Group>, slots: &[SlotMapping]) -> Result<Plan> {
    let gids: Vec<u32> = groups
        .values()
        .filter(|g| !g.servers.is_empty())
        .map(|g| g.id)
        .collect();
    if gids.is_empty() {
        return Err(CtlError::invalid(
            "no group with servers: create a group and add a master first",
        ));
    }
    let n = gids.len() as i64;
    let mut assigned: HashMap<u32, i64> = HashMap::new();
    let mut pendings: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut moveout: HashMap<u32, i64> = HashMap::new();
    let mut docking: Vec<u32> = Vec::new();
    let size = |assigned: &HashMap<u32, i64>,
                pendings: &HashMap<u32, Vec<u32>>,
                moveout: &HashMap<u32, i64>,
                gid: u32| {
        assigned.get(&gid).copied().unwrap_or(0) + pendings.get(&gid).map_or(0, |v| v.len() as i64)
            - moveout.get(&gid).copied().unwrap_or(0)
    };
    for m in slots {
        if !m.action.state.is_nothing() {
            *assigned.entry(m.action.target_id).or_default() += 1;
        }
    }
    let lower = MAX_SLOT_NUM as i64 / n;
    for m in slots {
        if !m.action.state.is_nothing() || m.group_id == 0 {
            continue;
        }
        if size(&assigned, &pendings, &moveout, m.group_id) < lower {
            *assigned.entry(m.group_id).or_default() += 1;
        } else {
            pendings.entry(m.group_id).or_default().push(m.id);
        }
    }
    let mut tree: BTreeSet<u32> = gids.iter().copied().collect();
    let key = |a: &HashMap<u32, i64>, p: &HashMap<u32, Vec<u32>>, mo: &HashMap<u32, i64>, g| {
        (size(a, p, mo, g), g)
    };
    let smallest =
        |tree: &BTreeSet<u32>,
         a: &HashMap<u32, i64>,
         p: &HashMap<u32, Vec<u32>>,
         mo: &HashMap<u32, i64>| { tree.iter().copied().min_by_key(|&g| key(a, p, mo, g)) };
    for m in slots {
        if !m.action.state.is_nothing() || m.group_id != 0 {
            continue;
        }
        if let Some(dest) = smallest(&tree, &assigned, &pendings, &moveout) {
            docking.push(m.id);
            *moveout.entry(dest).or_default() -= 1;
        }
    }
    let upper = (MAX_SLOT_NUM as i64 + n - 1) / n;
    while tree.len() >= 2 {
        let Some(from) = tree
            .iter()
            .copied()
            .max_by_key(|&g| key(&assigned, &pendings, &moveout, g))
        else {
            break;
        };
        tree.remove(&from);
        let pend = pendings.get(&from).map_or(0, |v| v.len() as i64);
        if pend == moveout.get(&from).copied().unwrap_or(0) {
            continue;
        }
        let Some(dest) = smallest(&tree, &assigned, &pendings, &moveout) else {
            break;
        };
        let from_size = size(&assigned, &pendings, &moveout, from);
        let dest_size = size(&assigned, &pendings, &moveout, dest);
        if from_size <= lower || dest_size >= upper || from_size - dest_size <= 1 {
            break;
        }
        *moveout.entry(from).or_default() += 1;
        *moveout.entry(dest).or_default() -= 1;
        tree.insert(from);
    }
    for (gid, n) in moveout.iter_mut() {
        if *n > 0 {
            let sids = pendings.entry(*gid).or_default();
            sids.sort_unstable_by(|a, b| b.cmp(a));
            docking.extend(sids.drain(..*n as usize));
            *n = 0;
        }
    }
    docking.sort_unstable();
    let mut docking = docking.into_iter();
    let mut plan = Plan::new();
    for gid in gids {
        let incoming = -moveout.get(&gid).copied().unwrap_or(0);
        for _ in 0..incoming.max(0) {
            match docking.next() {
                Some(sid) => {
                    plan.insert(sid, gid);
                }
                None => break,
            }
        }
    }
    Ok(plan)
}

/// Renders a plan as Codis prints it: `[0000,0255] => 1`, one line per contiguous range.
pub fn describe(plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    let mut run: Option<(u32, u32, u32)> = None;
    for (&sid, &gid) in plan {
        run = match run {
            Some((b, e, g)) if g == gid && e + 1 == sid => Some((b, sid, g)),
            Some((b, e, g)) => {
                out.push(format!("[{b:04},{e:04}] => {g}"));
                Some((sid, sid, gid))
            }
            None => Some((sid, sid, gid)),
        };
    }
    if let Some((b, e, g)) = run {
        out.push(format!("[{b:04},{e:04}] => {g}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use coord::GroupServer;

    fn group(id: u32) -> Group {
        Group {
            id,
            servers: vec![GroupServer {
                addr: format!("127.0.0.1:{id}"),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn offline_slots_split_evenly() {
        let groups: BTreeMap<u32, Group> = (1..=2).map(|g| (g, group(g))).collect();
        let slots: Vec<SlotMapping> = (0..MAX_SLOT_NUM).map(SlotMapping::offline).collect();
        let p = plan(&groups, &slots).unwrap();
        assert_eq!(p.len(), 1024);
        assert_eq!(p.values().filter(|&&g| g == 1).count(), 512);
        assert_eq!(describe(&p), vec!["[0000,0511] => 1", "[0512,1023] => 2"]);
    }

    #[test]
    fn moves_highest_slots_of_the_largest_group() {
        let groups: BTreeMap<u32, Group> = (1..=2).map(|g| (g, group(g))).collect();
        let slots: Vec<SlotMapping> = (0..MAX_SLOT_NUM)
            .map(|id| SlotMapping {
                id,
                group_id: 1,
                ..Default::default()
            })
            .collect();
        let p = plan(&groups, &slots).unwrap();
        assert_eq!(describe(&p), vec!["[0512,1023] => 2"]);
        let empty: BTreeMap<u32, Group> = BTreeMap::new();
        assert!(plan(&empty, &slots).is_err());
        // Balanced already: nothing to do.
        let slots: Vec<SlotMapping> = (0..MAX_SLOT_NUM)
            .map(|id| SlotMapping {
                id,
                group_id: if id < 512 { 1 } else { 2 },
                ..Default::default()
            })
            .collect();
        assert!(plan(&groups, &slots).unwrap().is_empty());
    }
}
