//! A shard: the data one core owns (its slots of every database) and the code that runs a command
//! against it. Only its own core ever touches a shard; other cores send it messages.

use bytes::{Bytes, BytesMut};
use resp::command::{CommandSpec, COMMANDS, DENYOOM, MOVABLE, WRITE};
use resp::Proto;

use crate::cmd::{self, Ctx};
use crate::db::{Db, SlotTable};

/// Calls and time per command, as `INFO commandstats` reports them.
#[derive(Debug, Clone, Copy, Default)]
pub struct CmdStat {
    pub calls: u64,
    /// Time spent, in [`crate::ticks`] (converted to usec when reported).
    pub ticks: u64,
    pub failed: u64,
}

/// One core's part of the keyspace.
pub struct Shard {
    pub id: usize,
    pub dbs: Vec<Db>,
    /// Indexed like `resp::command::COMMANDS`.
    pub stats: Vec<CmdStat>,
    /// Keys removed by expiry (INFO stats `expired_keys`).
    pub expired_keys: u64,
    /// Keys removed by maxmemory eviction (INFO stats `evicted_keys`).
    pub evicted_keys: u64,
    /// Clients blocked on keys of this shard (BLPOP…).
    pub blocked: crate::blocking::Registry,
    /// Keys being migrated right now (database, key): EXEC-WRAPPER refuses writes to them.
    pub in_flight: std::collections::HashSet<(usize, bytes::Bytes), ahash::RandomState>,
    /// While `Some`, effects are collected here instead of appended to the propagation log (a
    /// transaction gathers its commands' effects to append them as one MULTI/EXEC block).
    pub capture: Option<Vec<crate::repl::prop::Effect>>,
    /// `owned[slot]`: this shard holds the slot's tables (changes only by a slot move, while the
    /// shard is held). Checked before every keyed command: the authority, unlike the routing hint
    /// `Shared::owner`.
    owned: Vec<bool>,
}

/// A command ready to run on a shard: database, table index and arguments.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub db: u8,
    pub idx: u16,
    pub args: Vec<Bytes>,
    /// The slot of its key when it has a single key at a fixed position and the caller hashed
    /// it already ([`command_slot`]); [`NO_SLOT`] otherwise.
    pub slot: u16,
}

/// No slot known ([`Cmd::slot`]).
pub const NO_SLOT: u16 = u16::MAX;

/// The slot of a command's key when it has a single key at a fixed position, else [`NO_SLOT`].
#[inline]
pub fn command_slot(spec: &CommandSpec, args: &[Bytes]) -> u16 {
    single_key(spec, args).map_or(NO_SLOT, resp::slot)
}

/// Whether a command has exactly one key, at a fixed position (GET, SET, HSET…).
#[inline]
pub fn one_fixed_key(spec: &CommandSpec) -> bool {
    !spec.has(MOVABLE) && spec.first > 0 && spec.first == spec.last
}

/// The key of a command with exactly one key at a fixed position, if it is one.
#[inline]
fn single_key<'a>(spec: &CommandSpec, args: &'a [Bytes]) -> Option<&'a [u8]> {
    if one_fixed_key(spec) {
        args.get(spec.first as usize).map(|k| &k[..])
    } else {
        None
    }
}

impl Shard {
    /// Warm the caches for a batch of lookups `(db, key)` before running it: every key's table
    /// probe first, then every key's node and value, so their cache misses overlap (one lookup
    /// alone waits for three or four misses one after another). Keys of slots this shard does
    /// not own are skipped.
    /// A key equal to the one before it is skipped (a pipeline of LPUSH to one list would
    /// otherwise pay two extra lookups per command for lines already in the cache).
    ///
    /// Three passes: find each key's slot table and hash the key once, starting the load of the
    /// table's header; then probe every table (control bytes and buckets); then every node.
    /// A fourth for the members given with the keys (`(db, key, Some(member))`, see
    /// [`Shard::prefetch_args`]): in a set or hash stored as a table, the control bytes and the
    /// bucket the member's hash leads to (every command's member, also when its key repeats).
    pub fn prefetch<'a>(
        &self,
        keys: impl Iterator<Item = (usize, &'a [u8], u16, Option<&'a [u8]>)>,
    ) {
        let mut found: Vec<(&SlotTable, u64, &[u8])> = Vec::with_capacity(keys.size_hint().0);
        // (index in `found` of the key, member): a member looked up in a table-encoded set or
        // hash (SADD, HSET, SISMEMBER…), prefetched once the keys' nodes are warm.
        let mut members: Vec<(usize, &[u8])> = Vec::new();
        let mut prev: Option<(usize, &[u8])> = None;
        for (db, key, slot, member) in keys {
            if prev != Some((db, key)) {
                prev = Some((db, key));
                let slot = if slot != NO_SLOT {
                    slot
                } else {
                    resp::slot(key)
                };
                let Some(t) = self.dbs.get(db).and_then(|d| d.slot_table(slot)) else {
                    prev = None;
                    continue;
                };
                crate::keytable::prefetch_line((t as *const SlotTable).cast());
                found.push((t, crate::keytable::hash(key), key));
            }
            if let Some(m) = member {
                members.push((found.len() - 1, m));
            }
        }
        for warm in [false, true] {
            for &(t, h, key) in &found {
                t.map.prefetch_hashed(h, key, warm);
            }
        }
        for &(i, m) in &members {
            let (t, h, key) = found[i];
            if let Some(e) = t.map.get_hashed(h, key) {
                e.value.prefetch_member(m);
            }
        }
    }

    /// What [`Shard::prefetch`] warms for a command: its first key (see [`Shard::first_key`])
    /// and, when that key is argument 1, argument 2 as the member or field that the set and hash
    /// commands look up (SADD, SREM, SISMEMBER, HSET, HGET…). For other commands the prefetch
    /// finds no table-encoded set or hash at the key, or warms a line for nothing.
    #[inline]
    pub fn prefetch_args<'a>(
        spec: &CommandSpec,
        args: &'a [Bytes],
    ) -> Option<(&'a [u8], Option<&'a [u8]>)> {
        let key = Self::first_key(spec, args)?;
        let member = if spec.first == 1 {
            args.get(2).map(|m| &m[..])
        } else {
            None
        };
        Some((key, member))
    }

    /// The first key of a command, if its position is fixed (for [`Shard::prefetch`]).
    pub fn first_key<'a>(spec: &CommandSpec, args: &'a [Bytes]) -> Option<&'a [u8]> {
        let i = usize::try_from(spec.first).ok()?;
        if i == 0 || spec.has(resp::command::MOVABLE) {
            return None;
        }
        args.get(i).map(|b| &b[..])
    }

    /// A shard owning the slots `owned(slot)` says, in `ndb` databases.
    pub fn new(id: usize, ndb: usize, owned: impl Fn(usize) -> bool) -> Shard {
        crate::ticks::init();
        Shard {
            id,
            dbs: (0..ndb).map(|_| Db::new(&owned)).collect(),
            owned: (0..resp::MAX_SLOTS).map(&owned).collect(),
            stats: vec![CmdStat::default(); COMMANDS.len()],
            expired_keys: 0,
            evicted_keys: 0,
            blocked: Default::default(),
            in_flight: Default::default(),
            capture: None,
        }
    }

    /// Whether this shard owns `slot` (holds its tables in every database).
    #[inline]
    pub fn owns(&self, slot: u16) -> bool {
        self.owned.get(slot as usize).copied().unwrap_or(false)
    }

    /// Record that this shard gained or lost `slot` (only `slotmove.rs`, with the tables).
    pub fn set_owned(&mut self, slot: u16, owned: bool) {
        if let Some(o) = self.owned.get_mut(slot as usize) {
            *o = owned;
        }
    }

    /// Whether every key of `cmd` lies in a slot this shard owns (keyless commands: true).
    #[inline]
    pub fn owns_keys(&self, spec: &CommandSpec, args: &[Bytes]) -> bool {
        if one_fixed_key(spec) {
            return match args.get(spec.first as usize) {
                Some(k) => self.owns(resp::slot(k)),
                None => true,
            };
        }
        spec.key_positions(args)
            .into_iter()
            .all(|p| self.owns(resp::slot(&args[p])))
    }

    /// Run one command, appending its reply to `out`. Returns false, writing nothing, when a key
    /// of the command lies in a slot this shard does not own (it moved: the caller re-routes).
    #[must_use]
    pub fn execute(&mut self, cmd: &Cmd, proto: Proto, now: u64, out: &mut BytesMut) -> bool {
        let spec: &'static CommandSpec = &COMMANDS[cmd.idx as usize];
        // The common case, one key at a fixed position: hash it once for the ownership check
        // and the command's own lookups.
        let _hint = match single_key(spec, &cmd.args) {
            Some(k) => {
                let slot = if cmd.slot != NO_SLOT {
                    cmd.slot
                } else {
                    resp::slot(k)
                };
                if !self.owns(slot) {
                    return false;
                }
                Some(crate::db::SlotHint::new(k, slot))
            }
            None if !self.owns_keys(spec, &cmd.args) => return false,
            None => None,
        };
        let start = crate::ticks::now();
        let before = out.len();
        let quiet = !spec.has(WRITE);
        if quiet {
            if let Some(d) = self.dbs.get_mut(cmd.db as usize) {
                d.quiet = true;
            }
        }
        if spec.has(DENYOOM) && crate::evict::over_limit() && !self.evict(cmd.db as usize) {
            resp::encode::error(out, crate::evict::OOM);
            if let Some(d) = self.dbs.get_mut(cmd.db as usize) {
                d.quiet = false;
            }
            let st = &mut self.stats[cmd.idx as usize];
            st.calls += 1;
            st.failed += 1;
            return true;
        }
        let notify = crate::notify::enabled();
        let probe = if notify {
            crate::notify::Probe::before(spec, &cmd.args, cmd.db as usize, &mut self.dbs, now)
        } else {
            None
        };
        let track = crate::repl::prop::active();
        let dirty0 = if track { self.dirty() } else { 0 };
        let mut ctx = Ctx {
            dbs: &mut self.dbs,
            db: cmd.db as usize,
            args: &cmd.args,
            out,
            proto,
            now,
            rewrite: None,
        };
        crate::db::begin_command();
        match cmd::handler(cmd.idx as usize) {
            Some(h) => h(&mut ctx),
            None => resp::encode::error(
                ctx.out,
                &format!("ERR command '{}' is not served by a shard", spec.name),
            ),
        }
        let rewrite = ctx.rewrite.take();
        crate::db::end_command(&mut self.dbs, spec, &out[before..]);
        if quiet {
            if let Some(d) = self.dbs.get_mut(cmd.db as usize) {
                d.quiet = false;
            }
        }
        if notify {
            let fx = self.expired_effects();
            self.emit(fx);
            if let Some(p) = probe {
                let ev = p.after(spec.name, &cmd.args, &mut self.dbs, now, &out[before..]);
                crate::notify::emit_all(ev);
            }
        }
        if track {
            let mut fx = self.expired_effects();
            let changed = self.dirty() != dirty0;
            crate::repl::prop::effects(
                spec,
                cmd.db as usize,
                &cmd.args,
                rewrite,
                changed,
                &out[before..],
                &mut fx,
            );
            self.emit(fx);
        }
        let took = crate::ticks::now().wrapping_sub(start);
        crate::slowlog::check(took, &cmd.args);
        crate::latency::check_command(took, spec.has(resp::command::FAST));
        let st = &mut self.stats[cmd.idx as usize];
        st.calls += 1;
        st.ticks += took;
        if out.get(before) == Some(&b'-') {
            st.failed += 1;
        }
        if spec.has(WRITE) && !self.blocked.is_empty() {
            let keys: Vec<(usize, Bytes)> = spec
                .key_positions(&cmd.args)
                .into_iter()
                .map(|p| (cmd.db as usize, cmd.args[p].clone()))
                .collect();
            crate::blocking::after_writes(self, &keys, now);
        }
        true
    }

    /// Evict keys of this shard (the command's database first, then the others) until
    /// `used_memory` is under `maxmemory`; false when still over with nothing left to evict.
    pub fn evict(&mut self, first_db: usize) -> bool {
        let track = crate::repl::prop::active();
        let mut fx = Vec::new();
        let mut ok = false;
        // Bounded work per command; the next write continues.
        for _ in 0..10_000 {
            if !crate::evict::over_limit() {
                ok = true;
                break;
            }
            let order =
                std::iter::once(first_db).chain((0..self.dbs.len()).filter(|&i| i != first_db));
            let mut victim = None;
            for i in order {
                if let Some(k) = self.dbs.get(i).and_then(crate::evict::pick) {
                    victim = Some((i, k));
                    break;
                }
            }
            let Some((i, k)) = victim else { break };
            let quiet = std::mem::replace(&mut self.dbs[i].quiet, false);
            self.dbs[i].delete(&k);
            self.dbs[i].quiet = quiet;
            self.evicted_keys += 1;
            crate::notify::evicted(i, &k);
            if track {
                fx.push(crate::repl::prop::del(i, &k));
            }
            ok = true;
        }
        self.emit(fx);
        ok || !crate::evict::over_limit()
    }

    /// One step of active expiry over every database.
    pub fn active_expire(&mut self, now: u64, budget: usize) -> usize {
        let mut n = 0;
        for db in &mut self.dbs {
            if db.volatile() > 0 {
                n += db.active_expire(now, budget);
            }
        }
        self.expired_keys += n as u64;
        if n > 0 && (crate::repl::prop::active() || crate::notify::enabled()) {
            let fx = self.expired_effects();
            self.emit(fx);
        }
        n
    }

    /// Modifications of every database so far.
    pub fn dirty(&self) -> u64 {
        self.dbs.iter().map(|d| d.dirty()).sum()
    }

    /// Keys removed by expiry since the last call, as DEL effects (and `expired` notifications).
    pub fn expired_effects(&mut self) -> Vec<crate::repl::prop::Effect> {
        let mut fx = Vec::new();
        let track = crate::repl::prop::active();
        for (i, db) in self.dbs.iter_mut().enumerate() {
            if db.has_expired() {
                let keys = db.take_expired();
                crate::notify::expired(i, &keys);
                if track {
                    fx.extend(keys.iter().map(|k| crate::repl::prop::del(i, k)));
                }
            }
        }
        fx
    }

    /// Propagate effects produced on this shard (into the transaction being captured, if any).
    pub fn emit(&mut self, fx: Vec<crate::repl::prop::Effect>) {
        if fx.is_empty() {
            return;
        }
        match &mut self.capture {
            Some(c) => c.extend(fx),
            None => {
                crate::repl::prop::log().append(&fx, false);
            }
        }
    }
}
