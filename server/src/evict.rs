//! `maxmemory` and eviction (Redis's approximated LRU/LFU/TTL/random sampling).
//!
//! Design: `used_memory` is the process-wide counting allocator's total (alloc.rs), so the limit
//! is checked against it, not against a per-shard figure: before a command flagged DENYOOM runs
//! on a shard and `used_memory > maxmemory`, that shard evicts keys **from its own keyspace**
//! until the total is back under the limit (or it ran out of candidates). Shards that take writes
//! therefore free memory in proportion to their write traffic, and no shard ever touches another
//! shard's keys (no locking). Each victim is the best of `maxmemory-samples` keys sampled from
//! random owned slots (idlest for `*-lru`, least frequent for `*-lfu`, nearest expiry for
//! `volatile-ttl`, any for `*-random`; `volatile-*` sample only keys with an expiry). When nothing
//! can be evicted (policy `noeviction`, or no volatile key under `volatile-*`) the command fails
//! with Redis's `OOM command not allowed when used memory > 'maxmemory'.`. Evicted keys are
//! counted in INFO `evicted_keys`, notified as `evicted` and propagated as DEL.
//! Commands that span cores (multi.rs) and EXEC/EVAL are not checked.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

/// Redis's OOM error.
pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

static MAXMEMORY: AtomicU64 = AtomicU64::new(0);
static POLICY: AtomicU8 = AtomicU8::new(Policy::NoEviction as u8);
static SAMPLES: AtomicU64 = AtomicU64::new(5);

/// `maxmemory-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Policy {
    NoEviction,
    AllKeysLru,
    VolatileLru,
    AllKeysLfu,
    VolatileLfu,
    AllKeysRandom,
    VolatileRandom,
    VolatileTtl,
}

impl Policy {
    /// Parse a policy name (lower case).
    pub fn parse(s: &str) -> Option<Policy> {
        Some(match s {
            "noeviction" => Policy::NoEviction,
            "allkeys-lru" => Policy::AllKeysLru,
            "volatile-lru" => Policy::VolatileLru,
            "allkeys-lfu" => Policy::AllKeysLfu,
            "volatile-lfu" => Policy::VolatileLfu,
            "allkeys-random" => Policy::AllKeysRandom,
            "volatile-random" => Policy::VolatileRandom,
            "volatile-ttl" => Policy::VolatileTtl,
            _ => return None,
        })
    }

    /// The policy's name.
    pub fn name(self) -> &'static str {
        match self {
            Policy::NoEviction => "noeviction",
            Policy::AllKeysLru => "allkeys-lru",
            Policy::VolatileLru => "volatile-lru",
            Policy::AllKeysLfu => "allkeys-lfu",
            Policy::VolatileLfu => "volatile-lfu",
            Policy::AllKeysRandom => "allkeys-random",
            Policy::VolatileRandom => "volatile-random",
            Policy::VolatileTtl => "volatile-ttl",
        }
    }

    fn from_u8(v: u8) -> Policy {
        [
            Policy::NoEviction,
            Policy::AllKeysLru,
            Policy::VolatileLru,
            Policy::AllKeysLfu,
            Policy::VolatileLfu,
            Policy::AllKeysRandom,
            Policy::VolatileRandom,
            Policy::VolatileTtl,
        ]
        .get(v as usize)
        .copied()
        .unwrap_or(Policy::NoEviction)
    }

    fn volatile(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }
}

/// Set `maxmemory` (bytes; 0: no limit).
pub fn set_maxmemory(bytes: u64) {
    MAXMEMORY.store(bytes, Relaxed);
}

/// `maxmemory` in bytes.
pub fn maxmemory() -> u64 {
    MAXMEMORY.load(Relaxed)
}

/// Set the policy (also selects LRU or LFU access tracking).
pub fn set_policy(p: Policy) {
    POLICY.store(p as u8, Relaxed);
    crate::db::clock::set_lfu(matches!(p, Policy::AllKeysLfu | Policy::VolatileLfu));
}

/// The policy in force.
pub fn policy() -> Policy {
    Policy::from_u8(POLICY.load(Relaxed))
}

/// Whether Redis would share integer objects between keys now: with no `maxmemory`, or a policy
/// that keeps no LRU/LFU clock per key (OBJECT REFCOUNT answers for such values).
pub fn shares_integers() -> bool {
    maxmemory() == 0
        || !matches!(
            policy(),
            Policy::AllKeysLru | Policy::VolatileLru | Policy::AllKeysLfu | Policy::VolatileLfu
        )
}

/// `maxmemory-samples`.
pub fn set_samples(n: u64) {
    SAMPLES.store(n.max(1), Relaxed);
}

/// Whether `used_memory` is over a configured limit.
#[inline]
pub fn over_limit() -> bool {
    let max = MAXMEMORY.load(Relaxed);
    max != 0 && crate::alloc::used_memory() as u64 > max
}

/// A candidate's badness score: the highest is evicted first.
fn score(p: Policy, e: crate::db::EntryRef<'_>) -> u64 {
    use crate::db::clock;
    match p {
        Policy::AllKeysLru | Policy::VolatileLru => clock::idle_secs(e.clock()),
        Policy::AllKeysLfu | Policy::VolatileLfu => 255 - clock::decayed(e.clock()) as u64,
        Policy::VolatileTtl => u64::MAX - e.expire_at(),
        _ => 0,
    }
}

/// Pick one victim in `db` (best of the samples), or `None` when nothing qualifies.
pub fn pick(db: &crate::db::Db) -> Option<Box<[u8]>> {
    use crate::db::clock::rand;
    let p = policy();
    if p == Policy::NoEviction {
        return None;
    }
    let vol = p.volatile();
    let slots: Vec<(usize, &crate::db::SlotTable)> = db
        .owned_slots()
        .filter(|(_, t)| if vol { t.volatile() > 0 } else { !t.is_empty() })
        .collect();
    if slots.is_empty() {
        return None;
    }
    let n = SAMPLES.load(Relaxed) as usize;
    let mut best: Option<(u64, &[u8])> = None;
    let mut tries = 0;
    let mut found = 0;
    while found < n && tries < n * 4 {
        tries += 1;
        let (_, t) = slots[rand() as usize % slots.len()];
        let len = t.len();
        if len == 0 {
            continue;
        }
        let start = rand() as usize % len;
        // From a random position, the first qualifying key (volatile ones only under volatile-*).
        let cand = t
            .map
            .iter()
            .skip(start)
            .chain(t.map.iter().take(start))
            .find(|(_, e)| !vol || e.expire_at() != 0);
        if let Some((k, e)) = cand {
            found += 1;
            let s = score(p, e);
            if best.is_none_or(|(b, _)| s > b) {
                best = Some((s, k));
            }
        }
    }
    best.map(|(_, k)| k.into())
}
