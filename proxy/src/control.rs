//! The control plane, on a tokio runtime outside the cores: watch the coordinator, turn each
//! topology snapshot into a slot table and push it to every core (lock-free channels), gather
//! the cores' reports and write the acknowledgement (`ProxyAck`), keep the registration
//! (`/proxy/proxy-{token}`) and the ephemeral liveness node (`ProxyAlive`) in place.
//!
//! If the coordinator goes away the cores keep the last table. A snapshot whose version is lower
//! than the applied one (a wiped or replaced store) is ignored with a warning.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coord::{AckedSlot, ProxyAck, ProxyAlive, Store, Topology};
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures::StreamExt;

use crate::runtime::CoreAck;
use crate::slots::SlotTable;
use crate::stats::Shared;

/// What a fillslots push needs after [`Control::fill`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Applied, or already held: answer once every core runs this version.
    Wait(u64),
    /// The running table is newer but not known whole, so it may lack the push's records: read
    /// the topology back from the coordinator first ([`Control::read_back`]).
    ReadBack,
}

/// What the admin API and the control loops share.
pub struct Control {
    pub shared: Arc<Shared>,
    pub model: coord::Proxy,
    pub xauth: String,
    /// The newest table pushed to the cores.
    pub table: Mutex<Option<Arc<SlotTable>>>,
    /// The topology snapshot behind `table` (fillslots pushes merge into it).
    topo: Mutex<Option<Topology>>,
    /// The lowest table version every core has applied (fillslots answers when it is reached).
    applied_min: tokio::sync::watch::Sender<u64>,
    cores: Vec<UnboundedSender<Arc<SlotTable>>>,
    /// Per core: the version it has applied.
    applied: Mutex<Vec<u64>>,
    store: Mutex<Option<Store>>,
    /// Set when an acknowledgement still has to be written.
    ack_dirty: std::sync::atomic::AtomicBool,
    /// The newest topology version the proxy holds whole: a snapshot read from the coordinator,
    /// or a fillslots push that followed it with no version in between. The coordinator watch
    /// does not re-read a change this covers.
    complete: Arc<std::sync::atomic::AtomicU64>,
    /// The newest version a fillslots push applied: its pusher has the confirmation in the
    /// reply, so the coordinator acknowledgement of it is written lazily (the 1 s loop).
    pushed: std::sync::atomic::AtomicU64,
    /// Held across a whole push or fill, so a merge never lands on top of a newer snapshot.
    updating: Mutex<()>,
    /// Notified to stop the process (admin `shutdown`, signals).
    pub shutdown: tokio::sync::Notify,
}

impl Control {
    /// A control plane feeding `cores`.
    pub fn new(
        shared: Arc<Shared>,
        model: coord::Proxy,
        xauth: String,
        cores: Vec<UnboundedSender<Arc<SlotTable>>>,
    ) -> Arc<Control> {
        let n = cores.len();
        Arc::new(Control {
            shared,
            model,
            xauth,
            table: Mutex::new(None),
            topo: Mutex::new(None),
            applied_min: tokio::sync::watch::channel(0).0,
            cores,
            applied: Mutex::new(vec![0; n]),
            store: Mutex::new(None),
            ack_dirty: false.into(),
            complete: Arc::new(0.into()),
            pushed: 0.into(),
            updating: Mutex::new(()),
            shutdown: tokio::sync::Notify::new(),
        })
    }

    fn current(&self) -> Option<Arc<SlotTable>> {
        self.table.lock().ok().and_then(|t| t.clone())
    }

    fn store(&self) -> Option<Store> {
        self.store.lock().ok().and_then(|s| s.clone())
    }

    /// Pushes the routing of `topo`, a whole snapshot read from the coordinator, to every core
    /// (unless it is older than what runs, or the very topology running).
    pub fn push(&self, topo: &Topology) {
        let _serial = self.updating.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cur) = self.current() {
            if topo.version() < cur.version {
                tracing::warn!(
                    "ignoring topology version {} older than the applied {} (coordinator data lost or replaced?)",
                    topo.version(),
                    cur.version
                );
                return;
            }
            if topo.version() == cur.version && self.complete.load(Acquire) == cur.version {
                return; // already running exactly this (pushed, then read back)
            }
        }
        self.apply(topo);
        self.complete.fetch_max(topo.version(), Release);
    }

    /// Builds the slot table of `topo` and hands it to every core.
    fn apply(&self, topo: &Topology) {
        let t = Arc::new(SlotTable::build(topo, &self.shared.cfg.proxy_datacenter));
        tracing::info!(version = t.version, "applying topology");
        if let Ok(mut cur) = self.table.lock() {
            *cur = Some(t.clone());
        }
        if let Ok(mut cur) = self.topo.lock() {
            *cur = Some(topo.clone());
        }
        for c in &self.cores {
            let _ = c.unbounded_send(t.clone());
        }
    }

    /// A fillslots push: merges `fill`'s slots and groups into the current snapshot as topology
    /// `fill.version` and pushes it to the cores. `None` while the proxy has no topology to
    /// merge into (not online yet).
    ///
    /// A push no newer than the running table is confirmed only when the proxy holds a whole
    /// topology at least as new (which has these records or later ones); otherwise the running
    /// table may have been merged from pushes that overtook this one, without its records, and
    /// the caller must read the topology back first ([`Fill::ReadBack`]).
    pub fn fill(&self, fill: &coord::FillSlots) -> Option<Fill> {
        let _serial = self.updating.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.topo.lock().ok().and_then(|t| t.clone())?;
        if fill.version <= cur.version() {
            return Some(if self.complete.load(Acquire) >= fill.version {
                Fill::Wait(fill.version)
            } else {
                Fill::ReadBack
            });
        }
        // The push holds the one write between the held version and its own: the merged
        // topology is whole (the coordinator watch need not read it back).
        let whole =
            self.complete.load(Acquire) == cur.version() && fill.version == cur.version() + 1;
        let mut data = cur.data().clone();
        data.version = fill.version;
        for g in &fill.groups {
            data.groups.insert(g.id, g.clone());
        }
        for m in &fill.slots {
            if let Some(s) = data.slots.get_mut(m.id as usize) {
                *s = m.clone();
            }
        }
        self.pushed.fetch_max(fill.version, Release);
        self.apply(&Topology::new(data));
        if whole {
            self.complete.fetch_max(fill.version, Release);
        }
        Some(Fill::Wait(fill.version))
    }

    /// Reads the whole topology from the coordinator and applies it (see [`Fill::ReadBack`]);
    /// returns the version the proxy now holds whole.
    pub async fn read_back(&self) -> Result<u64, String> {
        let store = self.store().ok_or("no coordinator connection yet")?;
        let topo = store.topology().await.map_err(|e| e.to_string())?;
        self.shared.topology_reads.fetch_add(1, Relaxed);
        self.push(&topo);
        Ok(self.complete.load(Acquire))
    }

    /// Waits until every core has applied table `version` or a newer one.
    pub async fn wait_applied(&self, version: u64) {
        let mut rx = self.applied_min.subscribe();
        let _ = rx.wait_for(|v| *v >= version).await;
    }

    /// A core applied `version`; when every core has applied the newest table, acknowledge it.
    fn core_applied(&self, (core, version): CoreAck) {
        let all = match self.applied.lock() {
            Ok(mut a) => {
                if let Some(v) = a.get_mut(core) {
                    *v = version;
                }
                a.iter().copied().min().unwrap_or(0)
            }
            Err(_) => return,
        };
        self.applied_min.send_if_modified(|v| {
            let newer = all > *v;
            if newer {
                *v = all;
            }
            newer
        });
        if let Some(t) = self.current() {
            if all >= t.version {
                self.shared.topology_version.store(t.version, Relaxed);
                self.shared.online.store(true, Relaxed);
                self.ack_dirty.store(true, Relaxed);
            }
        }
    }

    /// Writes the acknowledgement if one is due. With `lazy`, not for a table a fillslots push
    /// brought (its pusher already has the confirmation): the 1 s loop writes that one, so a
    /// migration's many pushes do not each cost a durable coordinator write.
    async fn write_ack(&self, lazy: bool) {
        if !self.ack_dirty.load(Relaxed) {
            return;
        }
        let (Some(store), Some(t)) = (self.store(), self.current()) else {
            return;
        };
        if self.shared.topology_version.load(Relaxed) < t.version {
            return;
        }
        if lazy && self.pushed.load(Acquire) >= t.version {
            return;
        }
        self.ack_dirty.store(false, Relaxed);
        let ack = ProxyAck {
            token: self.shared.token.clone(),
            topology_version: t.version,
            slots: t
                .slots
                .iter()
                .filter(|s| !s.state.is_nothing())
                .map(|s| AckedSlot {
                    id: s.id as u32,
                    group_id: s.group_id,
                    state: s.state,
                    index: s.action_index,
                    target_id: s.target_id,
                })
                .collect(),
        };
        if let Err(e) = store.ack(&ack).await {
            tracing::warn!("cannot write the acknowledgement: {e}");
            self.ack_dirty.store(true, Relaxed);
        } else {
            tracing::debug!(version = t.version, "acknowledged");
        }
    }

    fn alive(&self) -> ProxyAlive {
        ProxyAlive {
            token: self.shared.token.clone(),
            proxy_addr: self.model.proxy_addr.clone(),
            admin_addr: self.model.admin_addr.clone(),
            pid: self.model.pid,
            start_time: self.model.start_time.clone(),
        }
    }

    /// Makes sure the registration and the liveness node exist; true when both are in place.
    async fn ensure_registered(&self, store: &Store) -> bool {
        let token = &self.shared.token;
        match store.alive().await {
            Ok(alive) if alive.contains_key(token) => return true,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("liveness check: {e}");
                return false;
            }
        }
        let registered = match store.proxies().await {
            Ok(p) => p.contains_key(token),
            Err(_) => false,
        };
        if !registered {
            if let Err(e) = store.update_proxy(&self.model).await {
                tracing::warn!("cannot register the proxy: {e}");
                return false;
            }
        }
        match store.register_alive(&self.alive()).await {
            Ok(()) => {
                tracing::info!(token = %token, "registered in the coordinator");
                self.ack_dirty.store(true, Relaxed);
                true
            }
            Err(e) => {
                tracing::warn!("cannot create the liveness node: {e}");
                false
            }
        }
    }

    /// Removes the liveness node, the registration and the acknowledgement (clean shutdown).
    pub async fn unregister(&self) {
        if let Some(store) = self.store() {
            let token = &self.shared.token;
            let _ = tokio::time::timeout(Duration::from_secs(3), async {
                let _ = store.unregister_alive(token).await;
                let _ = store.delete_ack(token).await;
                let _ = store.delete_proxy(token).await;
                store.coordinator().close().await;
            })
            .await;
        }
    }
}

/// Runs the coordinator side until the process ends.
pub async fn run(ctl: Arc<Control>, acks: UnboundedReceiver<CoreAck>) {
    let c2 = ctl.clone();
    tokio::spawn(ack_loop(c2, acks));
    let c3 = ctl.clone();
    tokio::spawn(async move {
        let mut last = c3.shared.ops_total();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = c3.shared.ops_total();
            c3.shared.qps.store(now.saturating_sub(last), Relaxed);
            last = now;
        }
    });
    let Some(cc) = ctl.shared.cfg.coordinator.clone() else {
        tracing::warn!("no coordinator configured: the proxy stays offline");
        return;
    };
    let store = loop {
        match coord::connect(&cc)
            .await
            .and_then(|c| Store::new(c, &cc.product))
        {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!("coordinator {} {}: {e}", cc.kind, cc.addr);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    if let Ok(mut s) = ctl.store.lock() {
        *s = Some(store.clone());
    }
    // Registration and liveness, re-created whenever they disappear (session loss).
    let c4 = ctl.clone();
    let s4 = store.clone();
    tokio::spawn(async move {
        loop {
            c4.ensure_registered(&s4).await;
            c4.write_ack(false).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut watch = loop {
        match store.watch_topology_with(Some(ctl.complete.clone())).await {
            Ok(w) => break w,
            Err(e) => {
                tracing::warn!("watch topology of {}: {e}", cc.product);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    ctl.push(&watch.current());
    while let Some(t) = watch.changed().await {
        ctl.shared.topology_reads.fetch_add(1, Relaxed);
        ctl.push(&t);
    }
    tracing::warn!("topology watch ended; serving the last topology");
}

async fn ack_loop(ctl: Arc<Control>, mut acks: UnboundedReceiver<CoreAck>) {
    while let Some(a) = acks.next().await {
        ctl.core_applied(a);
        while let Ok(a) = acks.try_recv() {
            ctl.core_applied(a);
        }
        ctl.write_ack(true).await;
    }
}
