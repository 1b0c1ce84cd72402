//! Core-to-core slot moves: `SLOTSMOVE slot core`, `SLOTSMOVE REBALANCE`, `SLOTSMOVE OWNERS`.
//!
//! A move holds the source and the target shard (in core order, like every multi-shard step, so
//! it cannot deadlock with `multi.rs`), takes the slot's table out of every database of the
//! source, puts them into the target, and flips ownership — the shard's own `owned` flag (the
//! authority every keyed command is checked against when it runs) and the routing hint
//! `Shared::owner` — before either shard is released. Commands for the slot that reach the source
//! meanwhile wait behind the hold and then answer "moved" (`Shard::execute` returns false), so
//! their sender routes them again; no command ever runs against a shard that lacks the slot.
//! Nothing else pauses: other cores, and the two held cores' other slots, wait only for the
//! table hand-over (pointer moves, no copying).
//!
//! What moves with the slot, and what does not:
//! - clients blocked (BLPOP…) on the slot's keys are released with a "route again" signal and
//!   wait again at the new owner, same deadline;
//! - WATCHed keys of the slot count as modified (EXEC answers nil): their modification counts
//!   stay on the old core;
//! - no keyspace event and nothing in the replication stream or the AOF: a move is not a data
//!   change, and a replica keeps its own layout;
//! - the layout lives in memory only: a restart starts again from `slot % cores`.
//!
//! - a forkless snapshot in progress (BGSAVE, replica full sync, AOF rewrite) is not disturbed:
//!   taking the slot out of the source serialises it into the source's snapshot first if it is
//!   still pending (the same copy-on-write as a write to the slot), and the target's snapshot
//!   never had it pending (a slot has one owner at the snapshot instant, which holds every
//!   shard), so the file holds the slot exactly once, as it was at that instant;
//!
//! A move is refused while a SLOTSMGRT* migration or an RDB load runs on this server (both route
//! by the layout they started with: they pin it with [`pin_layout`]); they in turn wait for the
//! moves in progress to finish.
//!
//! INFO stats shows `slot_moves` (moves done), `rerouted_commands` (commands that reached a
//! core after their slot had left it and were routed again) and `cross_core_commands` (commands
//! a connection's core sent to their slot's core).

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use resp::{encode, Args, MAX_SLOTS};

use crate::core::Core;
use crate::db::SlotTable;
use crate::shard::Shard;

/// Why a slot move was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MoveError {
    #[error("ERR invalid slot number = {0}")]
    BadSlot(String),
    #[error("ERR invalid core index {0} (this server has {1} cores: 0..{1})")]
    BadCore(String, usize),
    #[error("ERR slot migration (SLOTSMGRT*) or data load in progress, retry the move later")]
    Migrating,
}

static MOVING: AtomicUsize = AtomicUsize::new(0);
static MIGRATING: AtomicUsize = AtomicUsize::new(0);
static MOVES: AtomicU64 = AtomicU64::new(0);
/// Commands routed again because their slot had moved (INFO `rerouted_commands`).
pub static REROUTED: AtomicU64 = AtomicU64::new(0);

/// The INFO stats lines of slot moves.
pub fn stats_lines(o: &mut String) {
    o.push_str(&format!(
        "slot_moves:{}\r\nrerouted_commands:{}\r\ncross_core_commands:{}\r\nclient_core_affinity_moves:{}\r\n",
        MOVES.load(Ordering::Relaxed),
        REROUTED.load(Ordering::Relaxed),
        crate::conn::CROSS_CORE.load(Ordering::Relaxed),
        crate::conn::AFFINITY_MOVES.load(Ordering::Relaxed)
    ));
    o.push_str(&format!(
        "migration_nice:{}\r\nmigration_low_priority_slices:{}\r\n",
        if crate::lowprio::active() {
            crate::lowprio::nice()
        } else {
            0
        },
        crate::lowprio::SLICES.load(Ordering::Relaxed)
    ));
}

/// Held by a SLOTSMGRT* migration or an RDB load for its duration: no slot moves meanwhile.
pub struct LayoutPin;

impl Drop for LayoutPin {
    fn drop(&mut self) {
        MIGRATING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Wait until no slot move is in progress and keep new ones out until the pin drops.
pub async fn pin_layout() -> LayoutPin {
    loop {
        MIGRATING.fetch_add(1, Ordering::SeqCst);
        if MOVING.load(Ordering::SeqCst) == 0 {
            return LayoutPin;
        }
        MIGRATING.fetch_sub(1, Ordering::SeqCst);
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

struct MovingGuard;

impl MovingGuard {
    fn enter() -> Result<MovingGuard, MoveError> {
        MOVING.fetch_add(1, Ordering::SeqCst);
        let g = MovingGuard;
        if MIGRATING.load(Ordering::SeqCst) > 0 {
            return Err(MoveError::Migrating);
        }
        Ok(g)
    }
}

impl Drop for MovingGuard {
    fn drop(&mut self) {
        MOVING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the source shard answers when asked to give a slot up.
enum Take {
    /// The slot's tables, one per database.
    Tables(Vec<Option<Box<SlotTable>>>),
    /// The slot is not (or no longer) here: another move won the race.
    Stale,
    /// Keys of the slot are being migrated to another server right now.
    InFlight,
}

fn take(sh: &mut Shard, slot: u16) -> Take {
    if !sh.owns(slot) {
        return Take::Stale;
    }
    if sh.in_flight.iter().any(|(_, k)| resp::slot(k) == slot) {
        return Take::InFlight;
    }
    sh.blocked.evict_slot(slot);
    let tables = sh
        .dbs
        .iter_mut()
        .map(|d| d.take_slot(slot as usize))
        .collect();
    sh.set_owned(slot, false);
    Take::Tables(tables)
}

fn put(sh: &mut Shard, slot: u16, tables: Vec<Option<Box<SlotTable>>>) -> usize {
    let mut keys = 0;
    for (d, t) in sh.dbs.iter_mut().zip(tables) {
        let t = t.unwrap_or_default();
        keys += t.len();
        d.put_slot(slot as usize, t);
    }
    sh.set_owned(slot, true);
    keys
}

/// Move `slot` to core `to`; returns the number of keys moved (0 when it was there already).
pub async fn move_slot(core: &Rc<Core>, slot: u16, to: usize) -> Result<usize, MoveError> {
    let n = core.ncores();
    if to >= n {
        return Err(MoveError::BadCore(to.to_string(), n));
    }
    if slot as usize >= MAX_SLOTS {
        return Err(MoveError::BadSlot(slot.to_string()));
    }
    let _moving = MovingGuard::enter()?;
    loop {
        let from = core.shared.owner(slot);
        if from == to {
            return Ok(0);
        }
        let tx = core.new_tx();
        let shared = core.shared.clone();
        let finish = move |sh: &mut Shard, tables| {
            let keys = put(sh, slot, tables);
            shared.set_owner(slot, to);
            keys
        };
        // Hold both shards in core order; the table changes hands while both are held.
        let r = if from < to {
            match core.hold_on(from, tx, move |sh| take(sh, slot)).await {
                Take::Tables(t) => {
                    let keys = core.hold_on(to, tx, move |sh| finish(sh, t)).await;
                    core.release_on(to, tx, |_| ()).await;
                    Ok(keys)
                }
                other => Err(other),
            }
        } else {
            core.hold_on(to, tx, |_| ()).await;
            match core.hold_on(from, tx, move |sh| take(sh, slot)).await {
                Take::Tables(t) => Ok(core.release_on(to, tx, move |sh| finish(sh, t)).await),
                other => {
                    core.release_on(to, tx, |_| ()).await;
                    Err(other)
                }
            }
        };
        core.release_on(from, tx, |_| ()).await;
        match r {
            Ok(keys) => {
                MOVES.fetch_add(1, Ordering::Relaxed);
                tracing::info!("slot {slot} moved from core {from} to core {to} ({keys} keys)");
                return Ok(keys);
            }
            Err(Take::InFlight) => return Err(MoveError::Migrating),
            // Another move took the slot first: look again.
            Err(_) => continue,
        }
    }
}

/// Keys per slot (all databases) and the owner of each slot, read in one consistent layout.
async fn layout(core: &Rc<Core>) -> (Vec<usize>, Vec<usize>) {
    let parts = core
        .broadcast_stable(|sh| {
            (0..MAX_SLOTS as u16)
                .filter(|&s| sh.owns(s))
                .map(|s| {
                    let keys: usize = sh
                        .dbs
                        .iter()
                        .map(|d| d.slot(s as usize).map_or(0, |t| t.len()))
                        .sum();
                    (s, sh.id, keys)
                })
                .collect::<Vec<_>>()
        })
        .await;
    let mut keys = vec![0; MAX_SLOTS];
    let mut owner = vec![0; MAX_SLOTS];
    for (s, c, k) in parts.into_iter().flatten() {
        keys[s as usize] = k;
        owner[s as usize] = c;
    }
    (keys, owner)
}

/// The moves that even out keys per core: repeatedly the biggest slot of the most loaded core
/// that fits in half the gap to the least loaded one (at most `max` moves).
pub fn plan_rebalance(
    keys: &[usize],
    owner: &[usize],
    ncores: usize,
    max: usize,
) -> Vec<(u16, usize)> {
    let mut load = vec![0usize; ncores];
    let mut owner = owner.to_vec();
    for (s, &k) in keys.iter().enumerate() {
        if let Some(l) = load.get_mut(owner[s]) {
            *l += k;
        }
    }
    let mut moves = Vec::new();
    while moves.len() < max {
        let Some(hi) = (0..ncores).max_by_key(|&c| (load[c], std::cmp::Reverse(c))) else {
            break;
        };
        let Some(lo) = (0..ncores).min_by_key(|&c| (load[c], c)) else {
            break;
        };
        let gap = load[hi] - load[lo];
        // Moving a slot of k keys (0 < k < gap) strictly narrows the pair's gap; the largest
        // such slot up to gap/2 narrows it most.
        let best = (0..keys.len())
            .filter(|&s| owner[s] == hi && keys[s] > 0 && keys[s] * 2 <= gap)
            .max_by_key(|&s| (keys[s], std::cmp::Reverse(s)));
        let Some(s) = best else { break };
        load[hi] -= keys[s];
        load[lo] += keys[s];
        owner[s] = lo;
        moves.push((s as u16, lo));
    }
    moves
}

/// `SLOTSMOVE slot core | SLOTSMOVE REBALANCE [maxmoves] | SLOTSMOVE OWNERS`.
pub async fn command(core: &Rc<Core>, args: &Args, out: &mut BytesMut) {
    let sub = &args[1];
    if sub.eq_ignore_ascii_case(b"owners") && args.len() == 2 {
        let (_, owner) = layout(core).await;
        encode::array(out, owner.len());
        for c in owner {
            encode::int(out, c as i64);
        }
        return;
    }
    if sub.eq_ignore_ascii_case(b"rebalance") && args.len() <= 3 {
        let max = match args.get(2).map(|a| resp::parse_i64(a)) {
            None => MAX_SLOTS,
            Some(Some(n)) if n >= 0 => n as usize,
            Some(_) => return encode::error(out, "ERR invalid maxmoves"),
        };
        let (keys, owner) = layout(core).await;
        let mut moved = 0;
        for (slot, to) in plan_rebalance(&keys, &owner, core.ncores(), max) {
            match move_slot(core, slot, to).await {
                Ok(_) => moved += 1,
                Err(e) => return encode::error(out, &e.to_string()),
            }
        }
        return encode::int(out, moved);
    }
    if args.len() != 3 {
        return encode::error(
            out,
            "ERR syntax error, try SLOTSMOVE <slot> <core> | REBALANCE [maxmoves] | OWNERS",
        );
    }
    let slot = match resp::parse_i64(&args[1]) {
        Some(s) if (0..MAX_SLOTS as i64).contains(&s) => s as u16,
        _ => {
            let e = MoveError::BadSlot(String::from_utf8_lossy(&args[1]).into_owned());
            return encode::error(out, &e.to_string());
        }
    };
    let to = match resp::parse_i64(&args[2]) {
        Some(c) if c >= 0 => c as usize,
        _ => usize::MAX,
    };
    if to >= core.ncores() {
        let e = MoveError::BadCore(
            String::from_utf8_lossy(&args[2]).into_owned(),
            core.ncores(),
        );
        return encode::error(out, &e.to_string());
    }
    match move_slot(core, slot, to).await {
        Ok(keys) => encode::int(out, keys as i64),
        Err(e) => encode::error(out, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebalance_evens_out_keys_and_stops() {
        // Core 0 holds everything: slots 0..4 with 10 keys each; 2 cores.
        let mut keys = vec![0; 8];
        keys[..4].copy_from_slice(&[10, 10, 10, 10]);
        let owner = vec![0; 8];
        let moves = plan_rebalance(&keys, &owner, 2, 100);
        assert_eq!(moves.len(), 2);
        assert!(moves.iter().all(|&(_, c)| c == 1));
        // Already balanced: nothing to do.
        let owner = vec![0, 1, 0, 1, 0, 1, 0, 1];
        assert!(plan_rebalance(&keys, &owner, 2, 100).is_empty());
        // One huge slot cannot be split: no move makes it better.
        let keys = vec![100, 0];
        assert!(plan_rebalance(&keys, &[0, 0], 2, 100).is_empty());
        // The cap is honoured.
        let keys = vec![1; 8];
        assert_eq!(plan_rebalance(&keys, &[0; 8], 2, 3).len(), 3);
    }
}
