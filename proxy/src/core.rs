//! One core's state: its copy of the slot table, its backend connections (one per server and
//! database, shared by all its sessions), and the application of a new slot table (swap, retire
//! unused backends, wait for the requests in flight on the servers of changed slots).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use hdrhistogram::Histogram;

use crate::backend::Backend;
use crate::config::Config;
use crate::scripts::Scripts;
use crate::slots::SlotTable;
use crate::stats::{new_histogram, CoreStats, Shared};
use crate::sync::Event;

/// The slot table as one core uses it: the shared table plus this core's backend handles.
pub struct CoreTable {
    pub table: Arc<SlotTable>,
    /// `(addr_index * ndb + db) * 2 + resp3` → backend, filled lazily.
    conns: RefCell<Vec<Option<Rc<Backend>>>>,
}

/// The kind of backend connection a request travels on: the session's database, and whether
/// the session speaks RESP3. A RESP3 session's requests go on connections that said `HELLO 3`,
/// so replies pass through in the protocol the client asked for, never converted here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Channel {
    pub db: u32,
    pub resp3: bool,
}

/// One executor's proxy state.
pub struct Core {
    pub id: usize,
    pub cfg: Arc<Config>,
    pub shared: Arc<Shared>,
    pub stats: Arc<CoreStats>,
    /// Latencies recorded here, merged into `stats.latency` every second.
    pub latency: RefCell<Histogram<u64>>,
    table: RefCell<Option<Rc<CoreTable>>>,
    pool: RefCell<HashMap<(String, Channel), Rc<Backend>>>,
    /// Notified whenever a new table is applied (locked slots may have opened).
    pub table_changed: Event,
    /// Scripts this core's sessions sent, for EVALSHA on any group (`scripts`).
    pub scripts: RefCell<Scripts>,
    /// Transactions in flight on sessions' own connections (`WATCH` … `EXEC`): a new table
    /// waits for them as for the shared connections' requests.
    private_inflight: std::cell::Cell<usize>,
    private_done: Event,
}

/// A transaction in flight on a session's own connection; see [`Core::private_request`].
pub struct PrivateRequest<'a>(&'a Core);

impl Drop for PrivateRequest<'_> {
    fn drop(&mut self) {
        let c = self.0;
        c.private_inflight.set(c.private_inflight.get() - 1);
        if c.private_inflight.get() == 0 {
            c.private_done.notify_all();
        }
    }
}

impl Core {
    /// A core with no slot table yet ("router is not online").
    pub fn new(id: usize, shared: Arc<Shared>) -> Rc<Core> {
        Rc::new(Core {
            id,
            cfg: shared.cfg.clone(),
            stats: shared.cores[id].clone(),
            shared,
            latency: RefCell::new(new_histogram()),
            table: RefCell::new(None),
            pool: RefCell::new(HashMap::new()),
            table_changed: Event::default(),
            scripts: RefCell::new(Scripts::default()),
            private_inflight: std::cell::Cell::new(0),
            private_done: Event::default(),
        })
    }

    /// The current table, if the proxy is online.
    #[inline]
    pub fn table(&self) -> Option<Rc<CoreTable>> {
        self.table.borrow().clone()
    }

    /// The backend for address index `addr` of `t`, channel `ch` (database and protocol).
    pub fn backend(&self, t: &CoreTable, addr: u32, ch: Channel) -> Rc<Backend> {
        let ndb = self.cfg.backend_number_databases as usize;
        let i = (addr as usize * ndb + ch.db as usize) * 2 + usize::from(ch.resp3);
        if let Some(Some(b)) = t.conns.borrow().get(i) {
            return b.clone();
        }
        let key = (t.table.addr(addr).to_string(), ch);
        let b = self
            .pool
            .borrow_mut()
            .entry(key)
            .or_insert_with(|| Backend::new(t.table.addr(addr), ch, self.shared.clone()))
            .clone();
        let mut conns = t.conns.borrow_mut();
        if conns.len() <= i {
            conns.resize(i + 1, None);
        }
        conns[i] = Some(b.clone());
        b
    }

    /// A backend by address text (SLOTSINFO addr), if the table knows that address.
    pub fn backend_by_addr(&self, t: &CoreTable, addr: &str, ch: Channel) -> Option<Rc<Backend>> {
        let i = t.table.addrs.iter().position(|a| a == addr)?;
        Some(self.backend(t, i as u32, ch))
    }

    /// Marks a request sent on a session's own connection as in flight until the guard drops.
    /// Take it right after checking the table, with no await in between: a table applied
    /// later then waits for the request (a `prepared` slot is drained before it is acked).
    pub fn private_request(&self) -> PrivateRequest<'_> {
        self.private_inflight.set(self.private_inflight.get() + 1);
        PrivateRequest(self)
    }

    /// Installs `table`, then waits until every request sent before the switch to a server that
    /// served a changed slot has been answered: a `prepared` slot is drained before it is acked.
    pub async fn apply(&self, table: Arc<SlotTable>) {
        let old = self.table.borrow().clone();
        let mut old_addrs: Vec<&str> = Vec::new();
        if let Some(o) = &old {
            for s in table.changed_slots(Some(&o.table)) {
                let r = &o.table.slots[s];
                for a in [r.backend, r.migrate_from].into_iter().flatten() {
                    let a = o.table.addr(a);
                    if !old_addrs.contains(&a) {
                        old_addrs.push(a);
                    }
                }
            }
        }
        let waits: Vec<(Rc<Backend>, u64)> = self
            .pool
            .borrow()
            .iter()
            .filter(|((addr, _), _)| old_addrs.contains(&addr.as_str()))
            .flat_map(|(_, b)| b.all_lanes())
            .map(|b| {
                let sent = b.sent();
                (b, sent)
            })
            .collect();
        // Retire connections to servers the new table no longer mentions.
        self.pool.borrow_mut().retain(|(addr, _), b| {
            let keep = table.addrs.iter().any(|a| a == addr);
            if !keep {
                b.retire();
            }
            keep
        });
        *self.table.borrow_mut() = Some(Rc::new(CoreTable {
            table,
            conns: RefCell::new(Vec::new()),
        }));
        self.table_changed.notify_all();
        for (b, sent) in waits {
            b.drained(sent).await;
        }
        while self.private_inflight.get() > 0 {
            let wait = self.private_done.wait();
            if self.private_inflight.get() == 0 {
                break;
            }
            wait.await;
        }
    }

    /// Folds the local latency histogram into the shared one.
    pub fn flush_latency(&self) {
        let mut local = self.latency.borrow_mut();
        if local.is_empty() {
            return;
        }
        if let Ok(mut h) = self.stats.latency.lock() {
            let _ = h.add(&*local);
        }
        local.reset();
    }
}
