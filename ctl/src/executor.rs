//! The migration executor: drives each slot's action through
//! `pending → preparing → prepared → migrating → finished → ""` in the coordinator.
//!
//! Every transition re-reads the slots and acts on what is stored, so the executor can be killed
//! at any point and a new one (in the same or another process) resumes where it stopped:
//! - `pending → preparing → prepared`: written; then pushed to every live proxy's admin API
//!   (`PUT /api/proxy/fillslots/{xauth}`, as Codis' topom does), which answers once all its
//!   cores drained and locked the slots. A proxy that cannot be reached that way acknowledges
//!   through the coordinator instead (its `ProxyAck`, written after its topology watch fired);
//! - `prepared → migrating`: only once every *live* proxy (ephemeral liveness node present)
//!   applied `prepared`; a proxy whose liveness vanished is not waited for;
//! - `migrating`: the [`Drain`] moves keys from the source master to the target master until
//!   the source reports 0 keys left (the real one is [`RedisDrain`], SLOTSMGRTTAGSLOT[-ASYNC]);
//! - `migrating → finished → ""` with the slot now in the target group, each pushed as well.
//!
//! The coordinator stays the source of truth: every state is written before it is pushed, and
//! a proxy ignores a snapshot older than what it was pushed.
//!
//! Scheduling follows Codis' `ProcessSlotAction` (started actions first, then by index, at most
//! `migration_parallel_slots` at once; groups that are promoting are skipped; pausing stops new
//! actions and drains between calls) with one change: where Codis lets a group take part in only
//! one running action, here a group takes part in only one *pair* of groups at a time, and the
//! actions between that same source and target form a batch. A batch advances in *waves* of
//! `migration_wave_slots` slots: the slots of a wave share each coordinator write and proxy push
//! (one version bump, one HTTP call per proxy per state), and only one wave is ever locked, for
//! the time of one push round trip, so proxies hold few requests and briefly. The slots of a
//! wave drain concurrently, `migration_drain_parallel` at a time (0: one per executor core of the
//! source master), each over its own connection to the source master. No fixed sleeps: a round
//! that advanced is followed at once by the next.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use coord::{SlotAction, SlotMapping, SlotState};
use futures::StreamExt;
use serde::Serialize;

use crate::config::{MigrationMethod, MigrationSettings};
use crate::error::{CtlError, Result};
use crate::redis::{frame_int, keyspace_dbs, split_addr, RedisConn};
use crate::topom::Ctx;

/// What one drain call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DrainStep {
    /// Keys moved by this call.
    pub moved: u64,
    /// Keys of the slot still on the source.
    pub left: u64,
}

/// Moves a slot's keys from the source master to the target master, a batch per call.
#[async_trait]
pub trait Drain: Send + Sync {
    /// Moves some keys of `slot` from `source` to `target`.
    async fn step(&self, slot: u32, source: &str, target: &str) -> Result<DrainStep>;

    /// How many slots to drain from `source` at once when `migration_drain_parallel` is 0
    /// (auto).
    async fn parallelism(&self, _source: &str) -> usize {
        1
    }

    /// Copies the function libraries of `source` to `target` (`functions`); called before the
    /// slots of a wave start moving between them.
    async fn copy_functions(&self, _source: &str, _target: &str) -> Result<()> {
        Ok(())
    }
}

/// Progress of one slot, as shown by the API and the CLI.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct SlotProgress {
    pub state: String,
    pub target_id: u32,
    pub moved: u64,
    pub left: u64,
    /// Live proxies that have not acknowledged `prepared` yet.
    pub waiting_for: Vec<String>,
    pub error: Option<String>,
}

/// Pause flag, delay, wake-up and progress shared by the executor and the API.
#[derive(Default)]
pub struct Control {
    paused: AtomicBool,
    delay_ms: AtomicU64,
    notify: tokio::sync::Notify,
    progress: Mutex<BTreeMap<u32, SlotProgress>>,
    status: Mutex<String>,
    /// Slots this executor moved → the group each last went to (for progress bars, so that
    /// they need not read every slot back from the coordinator). At most 1,024 entries.
    finished: Mutex<BTreeMap<u32, u32>>,
}

impl Control {
    /// Pauses (no new actions start, drains stop between calls) or resumes.
    pub fn set_paused(&self, p: bool) {
        self.paused.store(p, Ordering::SeqCst);
        self.wake();
    }
    /// True while paused.
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }
    /// Sets the delay between migration steps.
    pub fn set_delay_ms(&self, ms: u64) {
        self.delay_ms.store(ms.min(60_000), Ordering::SeqCst);
    }
    /// The delay between migration steps.
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))
    }
    /// Wakes the executor loop.
    pub fn wake(&self) {
        self.notify.notify_one();
    }
    /// Waits for a wake-up or `timeout`.
    pub async fn sleep(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.notify.notified()).await;
    }
    /// Per-slot progress of running actions.
    pub fn progress(&self) -> BTreeMap<u32, SlotProgress> {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }
    /// The last status line (`[OK] slot 0005: 12 keys left` …).
    pub fn status(&self) -> String {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
    fn update(&self, sid: u32, f: impl FnOnce(&mut SlotProgress)) {
        if let Ok(mut p) = self.progress.lock() {
            f(p.entry(sid).or_default());
        }
    }
    fn forget(&self, sid: u32) {
        if let Ok(mut p) = self.progress.lock() {
            p.remove(&sid);
        }
    }
    fn finished(&self, sid: u32, gid: u32) {
        if let Ok(mut f) = self.finished.lock() {
            f.insert(sid, gid);
        }
    }
    /// The slots in `from..=to` this executor has moved to group `gid` so far.
    pub fn finished_into(&self, from: u32, to: u32, gid: u32) -> BTreeSet<u32> {
        self.finished
            .lock()
            .map(|f| {
                f.range(from..=to)
                    .filter(|&(_, &g)| g == gid)
                    .map(|(&s, _)| s)
                    .collect()
            })
            .unwrap_or_default()
    }
    fn set_status(&self, s: String) {
        if let Ok(mut st) = self.status.lock() {
            *st = s;
        }
    }
}

/// The outcome of one step of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The slot has no action (any more).
    Done,
    /// The slot moved to the next state.
    Advanced(SlotState),
    /// It cannot advance now (paused, proxies not acknowledged, group promoting).
    Waiting(SlotState),
}

/// Drives slot actions.
pub struct Executor {
    ctx: Arc<Ctx>,
    drain: Arc<dyn Drain>,
}

impl Executor {
    /// An executor over `ctx` using `drain` for the data.
    pub fn new(ctx: Arc<Ctx>, drain: Arc<dyn Drain>) -> Self {
        Executor { ctx, drain }
    }

    /// The real drain for `ctx`'s settings.
    pub fn redis(ctx: Arc<Ctx>) -> Self {
        let drain = Arc::new(RedisDrain::new(
            ctx.cfg.migration.clone(),
            ctx.cfg.product_auth.clone(),
        ));
        Executor::new(ctx, drain)
    }

    async fn write(&self, m: &SlotMapping) -> Result<()> {
        self.ctx.store.update_slot_mapping(m).await?;
        self.ctx
            .control
            .update(m.id, |p| p.state = m.action.state.as_str().to_string());
        Ok(())
    }

    /// Live proxies that have not acknowledged `m` yet.
    pub async fn unacked(&self, m: &SlotMapping) -> Result<Vec<String>> {
        let alive = self.ctx.store.alive().await?;
        let acks = self.ctx.store.acks().await?;
        Ok(alive
            .keys()
            .filter(|t| !acks.get(*t).is_some_and(|a| a.has_applied(m)))
            .cloned()
            .collect())
    }

    async fn master(&self, gid: u32) -> Result<Option<String>> {
        if gid == 0 {
            return Ok(None);
        }
        let g = self.ctx.store.group(gid).await?.ok_or_else(|| {
            CtlError::invalid(format!("group {gid} of a migrating slot does not exist"))
        })?;
        if !g.promoting.state.is_empty() {
            return Err(CtlError::conflict(format!("group {gid} is promoting")));
        }
        Ok(g.master().map(str::to_string))
    }

    /// Performs exactly one transition of slot `sid` (the unit of kill-and-resume).
    pub async fn step_slot(&self, sid: u32) -> Result<Step> {
        let control = &self.ctx.control;
        let guard = self.ctx.write.lock().await;
        let mut m = self.ctx.store.slot_mapping(sid).await?;
        let state = m.action.state;
        let next = match state {
            SlotState::Nothing => {
                control.forget(sid);
                return Ok(Step::Done);
            }
            SlotState::Pending => {
                if control.paused() {
                    return Ok(Step::Waiting(state));
                }
                // Both ends must be usable before anything starts.
                let source = self.master(m.group_id).await?;
                let Some(target) = self.master(m.action.target_id).await? else {
                    return Err(CtlError::invalid(format!(
                        "slot {sid}: target group {} has no master",
                        m.action.target_id
                    )));
                };
                // And the target must have the source's functions.
                if let Some(source) = source {
                    self.drain.copy_functions(&source, &target).await?;
                }
                SlotState::Preparing
            }
            SlotState::Preparing => SlotState::Prepared,
            SlotState::Prepared => {
                let waiting = self.unacked(&m).await?;
                if !waiting.is_empty() {
                    control.set_status(format!(
                        "[WAIT] slot {sid:04}: waiting for {} proxy(ies) to acknowledge prepared",
                        waiting.len()
                    ));
                    control.update(sid, |p| p.waiting_for = waiting);
                    return Ok(Step::Waiting(state));
                }
                control.update(sid, |p| p.waiting_for.clear());
                SlotState::Migrating
            }
            SlotState::Migrating => {
                drop(guard);
                if !self.drain_slot(&m).await? {
                    return Ok(Step::Waiting(state));
                }
                let _guard = self.ctx.write.lock().await;
                let now = self.ctx.store.slot_mapping(sid).await?;
                if now != m {
                    // Someone forced the slot meanwhile (slot set): leave it as they set it.
                    return Ok(Step::Advanced(now.action.state));
                }
                m.action.state = SlotState::Finished;
                self.write(&m).await?;
                return Ok(Step::Advanced(SlotState::Finished));
            }
            SlotState::Finished => {
                let done = SlotMapping {
                    id: sid,
                    group_id: m.action.target_id,
                    action: SlotAction::default(),
                };
                self.ctx.store.update_slot_mapping(&done).await?;
                control.forget(sid);
                control.finished(sid, done.group_id);
                control.set_status(format!("[OK] slot {sid:04} now in group {}", done.group_id));
                return Ok(Step::Done);
            }
        };
        m.action.state = next;
        control.update(sid, |p| p.target_id = m.action.target_id);
        self.write(&m).await?;
        Ok(Step::Advanced(next))
    }

    /// The masters of a slot's source and target groups: `None` for an offline slot (no data
    /// to move); an error when the target has no master or either group is promoting.
    async fn ends(&self, m: &SlotMapping) -> Result<Option<(String, String)>> {
        let Some(source) = self.master(m.group_id).await? else {
            return Ok(None);
        };
        let target = self.master(m.action.target_id).await?.ok_or_else(|| {
            CtlError::invalid(format!(
                "slot {}: target group {} has no master",
                m.id, m.action.target_id
            ))
        })?;
        Ok(Some((source, target)))
    }

    /// Drains the slot on its source master; `false` if paused before the end.
    async fn drain_slot(&self, m: &SlotMapping) -> Result<bool> {
        match self.ends(m).await? {
            Some((source, target)) => self.drain_slot_between(m, &source, &target).await,
            None => Ok(true), // an offline slot has no data to move
        }
    }

    /// Drains the slot from `source` to `target` (its groups' masters); `false` if paused
    /// before the end.
    async fn drain_slot_between(
        &self,
        m: &SlotMapping,
        source: &str,
        target: &str,
    ) -> Result<bool> {
        let sid = m.id;
        let control = &self.ctx.control;
        loop {
            if control.paused() {
                return Ok(false);
            }
            let step = match self.drain.step(sid, source, target).await {
                Ok(s) => s,
                Err(e) => {
                    control.update(sid, |p| p.error = Some(e.to_string()));
                    control.set_status(format!("[ERROR] slot {sid:04}: {e}"));
                    return Err(e);
                }
            };
            control.update(sid, |p| {
                p.moved += step.moved;
                p.left = step.left;
                p.error = None;
            });
            control.set_status(format!(
                "[OK] slot {sid:04}: moved {}, {} keys left",
                step.moved, step.left
            ));
            if step.left == 0 {
                return Ok(true);
            }
            let d = control.delay();
            if !d.is_zero() {
                tokio::time::sleep(d).await;
            }
        }
    }

    /// Steps slot `sid` until it is done or has to wait; returns its state then.
    pub async fn drive_slot(&self, sid: u32) -> Result<SlotState> {
        let mut waits = 0;
        loop {
            match self.step_slot(sid).await? {
                Step::Done => return Ok(SlotState::Nothing),
                Step::Advanced(_) => {
                    let d = self.ctx.control.delay();
                    if !d.is_zero() {
                        tokio::time::sleep(d).await;
                    }
                }
                Step::Waiting(s) if s == SlotState::Prepared && waits < 40 => {
                    waits += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Step::Waiting(s) => return Ok(s),
            }
        }
    }

    /// One scheduling round: (slots with actions when it started, whether any advanced).
    async fn round(&self) -> Result<(usize, bool)> {
        let slots = self.ctx.store.slot_mappings().await?;
        let groups = self.ctx.store.groups().await?;
        let promoting: HashSet<u32> = groups
            .values()
            .filter(|g| !g.promoting.state.is_empty())
            .map(|g| g.id)
            .collect();
        let mut acts: Vec<&SlotMapping> = slots
            .iter()
            .filter(|m| !m.action.state.is_nothing())
            .collect();
        acts.sort_by_key(|m| (m.action.state == SlotState::Pending, m.action.index));
        let remaining = acts.len();
        // group → the (source, target) pair it is busy with this round
        let mut busy: HashMap<u32, (u32, u32)> = HashMap::new();
        let mut batches: BTreeMap<(u32, u32), Vec<&SlotMapping>> = BTreeMap::new();
        let paused = self.ctx.control.paused();
        // Every actionable slot of a pair joins its batch: `parallel_slots` bounds the slots in
        // flight (three waves per batch), not the batch, so a migration is not cut into rounds
        // that each end with a tail wave and no overlap.
        for m in acts {
            let (src, dst) = (m.group_id, m.action.target_id);
            if promoting.contains(&src) || promoting.contains(&dst) {
                continue;
            }
            if paused && m.action.state == SlotState::Pending {
                continue;
            }
            let pair = (src, dst);
            let free = |g: u32| busy.get(&g).is_none_or(|p| *p == pair);
            if (src != 0 && !free(src)) || !free(dst) {
                continue;
            }
            if src != 0 {
                busy.insert(src, pair);
            }
            busy.insert(dst, pair);
            batches.entry(pair).or_default().push(m);
        }
        // Each batch has one wave opening and up to CLOSING closing.
        let in_flight =
            self.ctx.cfg.migration.parallel_slots / ((1 + CLOSING) * batches.len().max(1));
        let wave = self.ctx.cfg.migration.wave_slots.min(in_flight).max(1);
        let results = futures::future::join_all(
            batches
                .values()
                .map(|ms| self.drive_batch(ms.iter().map(|m| (*m).clone()).collect(), wave)),
        )
        .await;
        let mut first_err = None;
        let mut advanced = false;
        for r in results {
            match r {
                Ok(a) => advanced |= a,
                Err(e) => {
                    tracing::warn!("{e}");
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok((remaining, advanced)),
        }
    }

    /// One scheduling round; returns how many slots still had actions when it started.
    pub async fn run_round(&self) -> Result<usize> {
        self.round().await.map(|(n, _)| n)
    }

    /// Runs rounds until no slot has an action, or `stop` turns true. A round that moved
    /// something is followed at once by the next; otherwise it waits to be woken (or 200 ms).
    pub async fn run_until_idle(&self, stop: &AtomicBool) -> Result<()> {
        while !stop.load(Ordering::SeqCst) {
            let (n, advanced) = self.round().await?;
            if n == 0 {
                return Ok(());
            }
            if !advanced {
                self.ctx.control.sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// The dashboard's loop: a round every second (or when woken), forever.
    pub async fn run_forever(&self) {
        loop {
            let wait = match self.round().await {
                Ok((0, _)) => Duration::from_secs(1),
                Ok((_, true)) => Duration::ZERO,
                Ok(_) => Duration::from_millis(100),
                Err(e) => {
                    self.ctx.control.set_status(format!("[ERROR] {e}"));
                    Duration::from_secs(1)
                }
            };
            if !wait.is_zero() {
                self.ctx.control.sleep(wait).await;
            }
        }
    }

    /// Drives a batch (slots between one pair of groups) in waves of `wave` slots, the
    /// slots furthest along first (a resumed `prepared` slot is unlocked before anything new
    /// is locked). Waves form a pipeline: one wave at a time is locked and opened (`pending` →
    /// `migrating`, coordinator writes and proxy round trips) while up to [`CLOSING`] opened
    /// waves drain and close (data moving between the servers, then `finished` and the
    /// mapping), so the drains do not wait for the coordinator writes of their neighbours.
    /// True if any slot advanced.
    async fn drive_batch(&self, mut ms: Vec<SlotMapping>, wave: usize) -> Result<bool> {
        ms.sort_by_key(|m| (std::cmp::Reverse(m.action.state), m.action.index, m.id));
        let waves: Vec<Vec<u32>> = ms
            .chunks(wave)
            .map(|c| c.iter().map(|m| m.id).collect())
            .collect();
        let mut out = Outcome::default();
        let mut closing = futures::stream::FuturesOrdered::new();
        for sids in &waves {
            while closing.len() >= CLOSING {
                if let Some(r) = closing.next().await {
                    out.note(r);
                }
            }
            if !out.go_on {
                break;
            }
            // The open runs to its end (an error elsewhere does not cut it short) while the
            // closes in flight keep going.
            let mut open = std::pin::pin!(self.drive_wave(sids, Phase::Open));
            let opened = loop {
                tokio::select! {
                    r = &mut open => break r,
                    Some(r) = closing.next(), if !closing.is_empty() => out.note(r),
                }
            };
            let done = matches!(opened, Ok((_, true)));
            out.note(opened);
            if !done {
                // Paused, proxies still to acknowledge, or an error: the next round resumes
                // (a wave left `migrating` is drained first then).
                break;
            }
            closing.push_back(self.drive_wave(sids, Phase::Close));
        }
        while let Some(r) = closing.next().await {
            out.note(r);
        }
        out.first_err.map_or(Ok(out.advanced), Err)
    }

    async fn read_slots(&self, sids: &[u32]) -> Result<Vec<SlotMapping>> {
        let mut all = self.ctx.store.slot_mappings_of(sids).await?;
        all.retain(|m| !m.action.state.is_nothing());
        Ok(all)
    }

    /// Writes `ms` (one version bump) and records their states; returns the version.
    async fn write_all(&self, ms: &[SlotMapping]) -> Result<u64> {
        let v = self.ctx.store.update_slot_mappings_versioned(ms).await?;
        for m in ms {
            self.ctx
                .control
                .update(m.id, |p| p.state = m.action.state.as_str().to_string());
        }
        Ok(v)
    }

    /// Pushes `ms` (as stored at topology `version`) with the groups they name to every live
    /// proxy's `fillslots` API, in parallel; each answers once all its cores applied them.
    /// Returns the tokens of live proxies that did not confirm (no admin address, not
    /// reachable, an error): for those the caller falls back to their coordinator ack.
    pub async fn push(&self, version: u64, ms: &[SlotMapping]) -> Result<Vec<String>> {
        self.ctx.push_slots(version, ms).await
    }

    /// Waits until every live proxy has applied `ms` (pushed at `version`): through the push
    /// reply, else through its coordinator ack; a proxy whose liveness vanished is not waited
    /// for. False if some are still missing after a while (the next round tries again).
    ///
    /// `write` (the topology write lock held since `version` was written) is released once the
    /// push is answered, not before: every write is pushed before the next one, so proxies see
    /// pushes in version order (one that overtook an older push would make the proxy read the
    /// whole topology back to confirm the older one).
    async fn await_applied(
        &self,
        version: u64,
        ms: &[SlotMapping],
        write: Option<tokio::sync::MutexGuard<'_, ()>>,
    ) -> Result<bool> {
        let mut missing = self.push(version, ms).await?;
        drop(write);
        let started = std::time::Instant::now();
        loop {
            if missing.is_empty() {
                for m in ms {
                    self.ctx.control.update(m.id, |p| p.waiting_for.clear());
                }
                return Ok(true);
            }
            let alive = self.ctx.store.alive().await?;
            let acks = self.ctx.store.acks().await?;
            missing.retain(|t| {
                alive.contains_key(t)
                    && !acks
                        .get(t)
                        .is_some_and(|a| ms.iter().all(|m| a.has_applied(m)))
            });
            if missing.is_empty() {
                continue;
            }
            for m in ms {
                let w = missing.clone();
                self.ctx.control.update(m.id, |p| p.waiting_for = w);
            }
            self.ctx.control.set_status(format!(
                "[WAIT] {} slot(s): waiting for {} proxy(ies) to acknowledge {}",
                ms.len(),
                missing.len(),
                ms[0].action.state.as_str()
            ));
            if started.elapsed() > Duration::from_secs(2) {
                return Ok(false);
            }
            self.ctx.control.sleep(Duration::from_millis(20)).await;
        }
    }

    async fn pause_between_steps(&self) {
        let d = self.ctx.control.delay();
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    /// Advances the slots `sids` together until they are done; the lowest state moves first,
    /// so slots resumed at different states join up. Returns (advanced any, all done).
    async fn drive_wave(&self, sids: &[u32], phase: Phase) -> Result<(bool, bool)> {
        let control = self.ctx.control.clone();
        let mut advanced = false;
        let mut step_started = std::time::Instant::now();
        let mut last: Option<SlotState> = None;
        let mut functions_copied = false;
        loop {
            let mut guard = Some(self.ctx.write.lock().await);
            let ms = self.read_slots(sids).await?;
            let Some(low) = ms.iter().map(|m| m.action.state).min() else {
                return Ok((advanced, true));
            };
            if phase == Phase::Open && low >= SlotState::Migrating {
                return Ok((advanced, true));
            }
            if let Some(prev) = last.replace(low) {
                tracing::debug!(
                    slots = sids.len(),
                    first = sids[0],
                    "wave: {} -> {} in {} us",
                    prev.as_str(),
                    low.as_str(),
                    step_started.elapsed().as_micros()
                );
            }
            step_started = std::time::Instant::now();
            let mut ms: Vec<SlotMapping> =
                ms.into_iter().filter(|m| m.action.state == low).collect();
            match low {
                SlotState::Nothing => return Ok((advanced, true)),
                SlotState::Pending => {
                    if control.paused() {
                        return Ok((advanced, false));
                    }
                    if !functions_copied {
                        // Outside the topology lock (round trips to the servers), once per
                        // wave; then the slots are read again.
                        drop(guard.take());
                        self.copy_functions(&ms).await?;
                        functions_copied = true;
                        continue;
                    }
                    let mut pairs: Vec<(u32, u32)> = ms
                        .iter()
                        .map(|m| (m.group_id, m.action.target_id))
                        .collect();
                    pairs.dedup();
                    for (src, dst) in pairs {
                        self.master(src).await?;
                        if self.master(dst).await?.is_none() {
                            return Err(CtlError::invalid(format!(
                                "target group {dst} has no master"
                            )));
                        }
                    }
                    for m in &mut ms {
                        m.action.state = SlotState::Preparing;
                        control.update(m.id, |p| p.target_id = m.action.target_id);
                    }
                    // Pushed too (proxies ignore `preparing`), so that every version of the
                    // migration reaches them by push and none has to be read back from the
                    // coordinator (see `Store::watch_topology_with`).
                    let v = self.write_all(&ms).await?;
                    self.push(v, &ms).await?;
                }
                SlotState::Preparing => {
                    for m in &mut ms {
                        m.action.state = SlotState::Prepared;
                    }
                    let v = self.write_all(&ms).await?;
                    // Lock the slots on every proxy now.
                    let locking = std::time::Instant::now();
                    if !self.await_applied(v, &ms, guard.take()).await? {
                        return Ok((true, false));
                    }
                    let locked = locking.elapsed();
                    advanced = true;
                    self.open_wave(&mut ms).await?;
                    tracing::debug!(
                        slots = ms.len(),
                        first = ms[0].id,
                        "wave locked: push+acks {} us, held {} us",
                        locked.as_micros(),
                        locking.elapsed().as_micros()
                    );
                    continue;
                }
                SlotState::Prepared => {
                    let v = self.ctx.store.version().await?;
                    if !self.await_applied(v, &ms, guard.take()).await? {
                        return Ok((advanced, false));
                    }
                    advanced = true;
                    self.open_wave(&mut ms).await?;
                    continue;
                }
                SlotState::Migrating => {
                    drop(guard.take());
                    if !self.drain_wave(&ms).await? {
                        return Ok((advanced, false));
                    }
                    let _guard = self.ctx.write.lock().await;
                    let ids: Vec<u32> = ms.iter().map(|m| m.id).collect();
                    let now = self.ctx.store.slot_mappings_of(&ids).await?;
                    let mut done = Vec::new();
                    for (m, cur) in ms.into_iter().zip(now) {
                        // A slot forced meanwhile (slot set) is left as it was set.
                        if cur == m {
                            let mut m = m;
                            m.action.state = SlotState::Finished;
                            done.push(m);
                        }
                    }
                    if !done.is_empty() {
                        let v = self.write_all(&done).await?;
                        self.push(v, &done).await?;
                    }
                }
                SlotState::Finished => {
                    let done: Vec<SlotMapping> = ms
                        .iter()
                        .map(|m| SlotMapping {
                            id: m.id,
                            group_id: m.action.target_id,
                            action: SlotAction::default(),
                        })
                        .collect();
                    let v = self.ctx.store.update_slot_mappings_versioned(&done).await?;
                    self.push(v, &done).await?;
                    for m in &done {
                        control.forget(m.id);
                        control.finished(m.id, m.group_id);
                    }
                    control.set_status(format!(
                        "[OK] {} slot(s) now in group {} (last {:04})",
                        done.len(),
                        done[0].group_id,
                        done[done.len() - 1].id
                    ));
                }
            }
            advanced = true;
            drop(guard.take());
            self.pause_between_steps().await;
        }
    }

    /// `prepared → migrating` for a wave every live proxy has locked: written, then pushed
    /// (a proxy that misses the push still gets it from the coordinator watch).
    /// Slots changed meanwhile by someone else (a forced `slot set`) are left alone.
    async fn open_wave(&self, ms: &mut [SlotMapping]) -> Result<()> {
        let t0 = std::time::Instant::now();
        let _guard = self.ctx.write.lock().await;
        let t_guard = t0.elapsed();
        // The slots are locked on every proxy now: read them back together, not one by one.
        let ids: Vec<u32> = ms.iter().map(|m| m.id).collect();
        let now = self.ctx.store.slot_mappings_of(&ids).await?;
        let t_read = t0.elapsed();
        let mut open = Vec::with_capacity(ms.len());
        for (m, cur) in ms.iter().zip(now) {
            if cur == *m {
                let mut m = m.clone();
                m.action.state = SlotState::Migrating;
                open.push(m);
            }
        }
        if !open.is_empty() {
            let v = self.write_all(&open).await?;
            let t_write = t0.elapsed();
            self.push(v, &open).await?;
            tracing::debug!(
                "open: guard {} us, read {} us, write {} us, push {} us",
                t_guard.as_micros(),
                (t_read - t_guard).as_micros(),
                (t_write - t_read).as_micros(),
                (t0.elapsed() - t_write).as_micros()
            );
        }
        Ok(())
    }

    /// Copies each source master's functions to its target master for the slots `ms` (one
    /// copy per pair of groups), before they move.
    async fn copy_functions(&self, ms: &[SlotMapping]) -> Result<()> {
        let mut done: Vec<(u32, u32)> = Vec::new();
        for m in ms {
            let pair = (m.group_id, m.action.target_id);
            if done.contains(&pair) {
                continue;
            }
            done.push(pair);
            if let Some((source, target)) = self.ends(m).await? {
                if let Err(e) = self.drain.copy_functions(&source, &target).await {
                    self.ctx.control.set_status(format!("[ERROR] {e}"));
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Drains the slots of a wave, `drain_parallel` at a time; false if paused before the end.
    /// The masters of the wave's groups are read once for the wave, not once per slot (two
    /// coordinator reads per slot were ~1,000 of a 512-slot migration's reads); a group
    /// cannot start promoting meanwhile, as promotion is refused while its slots migrate.
    async fn drain_wave(&self, ms: &[SlotMapping]) -> Result<bool> {
        let mut ends: HashMap<(u32, u32), Option<(String, String)>> = HashMap::new();
        for m in ms {
            let pair = (m.group_id, m.action.target_id);
            if !ends.contains_key(&pair) {
                let e = self.ends(m).await?;
                ends.insert(pair, e);
            }
        }
        let n = match self.ctx.cfg.migration.drain_parallel {
            0 => match ms
                .first()
                .and_then(|m| ends.get(&(m.group_id, m.action.target_id)))
            {
                Some(Some((source, _))) => self.drain.parallelism(source).await,
                _ => 1,
            },
            n => n,
        }
        .max(1);
        let permits = tokio::sync::Semaphore::new(n);
        let mut futs = Vec::with_capacity(ms.len());
        for m in ms {
            let permits = &permits;
            let ends = ends
                .get(&(m.group_id, m.action.target_id))
                .cloned()
                .flatten();
            futs.push(async move {
                let _p = permits
                    .acquire()
                    .await
                    .map_err(|_| CtlError::invalid("drain semaphore closed"))?;
                match &ends {
                    Some((source, target)) => self.drain_slot_between(m, source, target).await,
                    None => Ok(true), // an offline slot has no data to move
                }
            });
        }
        let results = futures::future::join_all(futs).await;
        let mut all = true;
        for r in results {
            all &= r?;
        }
        Ok(all)
    }
}

/// Opened waves of a batch that drain and close at once (besides the one opening).
const CLOSING: usize = 2;

/// What the waves of a batch came to.
struct Outcome {
    advanced: bool,
    /// False once a wave stopped short (paused, proxies to wait for, an error).
    go_on: bool,
    first_err: Option<CtlError>,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome {
            advanced: false,
            go_on: true,
            first_err: None,
        }
    }
}

impl Outcome {
    fn note(&mut self, r: Result<(bool, bool)>) {
        match r {
            Ok((a, done)) => {
                self.advanced |= a;
                self.go_on &= done;
            }
            Err(e) => {
                self.first_err.get_or_insert(e);
                self.go_on = false;
            }
        }
    }
}

/// How far [`Executor::drive_wave`] takes a wave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Up to `migrating` (every slot locked on the proxies, then opened towards the target).
    Open,
    /// To the end (drained, finished, back to no action).
    Close,
}

/// The real drain: `SLOTSMGRTTAGSLOT` (sync) or `SLOTSMGRTTAGSLOT-ASYNC` (semi-async) on the
/// source master, for every database that has keys (Codis' executor walks `INFO keyspace`).
pub struct RedisDrain {
    settings: MigrationSettings,
    auth: String,
    /// Idle connections per source master (one per drain running at once).
    conns: tokio::sync::Mutex<HashMap<String, Vec<RedisConn>>>,
}

impl RedisDrain {
    /// A drain with Codis' migration settings and the product auth.
    pub fn new(settings: MigrationSettings, auth: String) -> Self {
        RedisDrain {
            settings,
            auth,
            conns: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The migration command for `slot` towards `target` (`host:port`).
    pub fn command(&self, slot: u32, target: &str) -> Result<Vec<String>> {
        let (host, port) = split_addr(target)?;
        let s = &self.settings;
        Ok(match s.method {
            MigrationMethod::Sync => vec![
                "SLOTSMGRTTAGSLOT".into(),
                host.into(),
                port.into(),
                s.timeout_ms.to_string(),
                slot.to_string(),
            ],
            MigrationMethod::SemiAsync => vec![
                "SLOTSMGRTTAGSLOT-ASYNC".into(),
                host.into(),
                port.into(),
                s.timeout_ms.min(5000).to_string(),
                s.async_maxbulks.to_string(),
                s.async_maxbytes.to_string(),
                slot.to_string(),
                s.async_numkeys.to_string(),
            ],
        })
    }

    /// One migration call in the connection's current database: (moved, left).
    async fn call_once(&self, c: &mut RedisConn, cmd: &[String]) -> Result<(u64, u64)> {
        let reply = c.call(cmd).await?;
        let (moved, left) = match &reply {
            resp::Frame::Array(v) if v.len() == 2 => (frame_int(&v[0]), frame_int(&v[1])),
            _ => (None, None),
        };
        let (Some(moved), Some(left)) = (moved, left) else {
            return Err(CtlError::redis(
                c.addr(),
                format!("{}: unexpected reply {reply:?}", cmd[0]),
            ));
        };
        Ok((moved.max(0) as u64, left.max(0) as u64))
    }

    /// Database 0 first, with no other round trip: while it still has keys of the slot left,
    /// that is the whole step. Only once it is empty does `INFO keyspace` tell which other
    /// databases to drain (one round trip per slot instead of one per call).
    async fn step_on(&self, c: &mut RedisConn, slot: u32, target: &str) -> Result<DrainStep> {
        let cmd = self.command(slot, target)?;
        let (moved, left) = self.call_once(c, &cmd).await?;
        let mut total = DrainStep { moved, left };
        if left > 0 {
            return Ok(total);
        }
        let mut dbs: Vec<u32> = keyspace_dbs(&c.info(Some("keyspace")).await?)
            .into_iter()
            .map(|(db, _)| db)
            .filter(|&db| db != 0)
            .collect();
        dbs.sort_unstable();
        let mut current = 0;
        for db in dbs {
            c.call(&["SELECT", &db.to_string()]).await?;
            current = db;
            let (moved, left) = self.call_once(c, &cmd).await?;
            total.moved += moved;
            if left > 0 {
                total.left = left;
                break;
            }
        }
        if current != 0 {
            c.call(&["SELECT", "0"]).await?;
        }
        Ok(total)
    }
}

#[async_trait]
impl Drain for RedisDrain {
    async fn step(&self, slot: u32, source: &str, target: &str) -> Result<DrainStep> {
        let mut c = self.take(source).await?;
        let r = self.step_on(&mut c, slot, target).await;
        if r.is_ok() {
            // A failed connection is dropped; the next step opens a fresh one.
            self.give_back(source, c).await;
        }
        r
    }

    /// One drain per executor core of a codis-rs source (each core streams the slots it owns);
    /// 1 for a server that reports no `executor_cores` (redis-server, Codis's codis-server),
    /// whose one thread serves the slots one after another anyway. More drains than cores add
    /// no speed: they make the bursts of work that every other request on those cores waits
    /// behind longer (BENCHMARKS.md, "Session 14 runs").
    async fn parallelism(&self, source: &str) -> usize {
        let mut c = match self.take(source).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("drain parallelism of {source}: {e}");
                return 1;
            }
        };
        match c.info(Some("server")).await {
            Ok(info) => {
                self.give_back(source, c).await;
                info.get("executor_cores")
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(1)
                    .clamp(1, 256)
            }
            Err(e) => {
                tracing::debug!("drain parallelism of {source}: {e}");
                1
            }
        }
    }

    async fn copy_functions(&self, source: &str, target: &str) -> Result<()> {
        self.copy_functions_between(source, target)
            .await
            .map(|_| ())
    }
}

impl RedisDrain {
    /// `Drain::copy_functions`, reporting what it did.
    pub async fn copy_functions_between(
        &self,
        source: &str,
        target: &str,
    ) -> Result<crate::functions::Copied> {
        let mut from = self.take(source).await?;
        let mut to = self.take(target).await?;
        let r = crate::functions::copy(&mut from, &mut to).await;
        if r.is_ok() {
            self.give_back(source, from).await;
            self.give_back(target, to).await;
        }
        r
    }

    /// An idle connection to `source`, or a new one.
    async fn take(&self, source: &str) -> Result<RedisConn> {
        let idle = self
            .conns
            .lock()
            .await
            .get_mut(source)
            .and_then(|v| v.pop());
        match idle {
            Some(c) => Ok(c),
            None => {
                let t = Duration::from_millis(self.settings.timeout_ms + 1000);
                RedisConn::connect(source, &self.auth, t).await
            }
        }
    }

    async fn give_back(&self, source: &str, c: RedisConn) {
        self.conns
            .lock()
            .await
            .entry(source.to_string())
            .or_default()
            .push(c);
    }
}

impl Ctx {
    /// Pushes `ms` (as stored at topology `version`) with the groups they name to every live
    /// proxy's `fillslots` API, in parallel; each answers once all its cores applied them.
    /// Returns the tokens of live proxies that did not confirm (no admin address, not
    /// reachable, an error). Pushing every slot write (in version order: the caller holds
    /// `write`) spares each proxy a read of the whole topology.
    pub async fn push_slots(&self, version: u64, ms: &[SlotMapping]) -> Result<Vec<String>> {
        let alive = self.store.alive().await?;
        if alive.is_empty() {
            return Ok(Vec::new());
        }
        let mut gids: Vec<u32> = ms
            .iter()
            .flat_map(|m| [m.group_id, m.action.target_id])
            .filter(|&g| g != 0)
            .collect();
        gids.sort_unstable();
        gids.dedup();
        let mut groups = Vec::new();
        for g in gids {
            if let Some(g) = self.store.group(g).await? {
                groups.push(g);
            }
        }
        let body = serde_json::to_vec(&coord::FillSlots {
            version,
            slots: ms.to_vec(),
            groups,
        })
        .map_err(|e| CtlError::invalid(format!("fillslots body: {e}")))?;
        let cfg = &self.cfg;
        let timeout = Duration::from_millis(self.cfg.migration.timeout_ms.clamp(1000, 10_000));
        let pushes = alive.values().map(|a| {
            let body = &body;
            async move {
                if a.admin_addr.is_empty() {
                    return Some(a.token.clone());
                }
                let path = format!(
                    "/api/proxy/fillslots/{}",
                    crate::topom::proxy_xauth(&cfg.product, &cfg.product_auth, &a.token)
                );
                match crate::http::request(&a.admin_addr, "PUT", &path, Some(body), timeout).await {
                    Ok(r) if r.status == 200 => None,
                    Ok(r) => {
                        tracing::debug!("fillslots to {}: HTTP {}", a.admin_addr, r.status);
                        Some(a.token.clone())
                    }
                    Err(e) => {
                        tracing::debug!("fillslots to {}: {e}", a.admin_addr);
                        Some(a.token.clone())
                    }
                }
            }
        });
        Ok(futures::future::join_all(pushes)
            .await
            .into_iter()
            .flatten()
            .collect())
    }
}
