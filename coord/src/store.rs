//! `Store`: one product's typed view of a coordinator (Codis' `models.Store`): read and write
//! the models as JSON at their paths, the product lock, acknowledgements, liveness, the
//! topology version, snapshots and `watch_topology`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

use crate::coordinator::{Coordinator, WatchEvent, WatchKind};
use crate::error::{Error, Result};
use crate::models::{
    Group, Proxy, ProxyAck, ProxyAlive, Sentinel, SlotMapping, Topom, MAX_SLOT_NUM,
};
use crate::paths::{parse_id, ProductPaths};
use crate::topology::{Topology, TopologyData};

/// One product's models in a coordinator.
#[derive(Clone)]
pub struct Store {
    coord: Arc<dyn Coordinator>,
    paths: ProductPaths,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail (no maps with non-string keys).
    serde_json::to_vec_pretty(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(path: &str, data: &[u8]) -> Result<T> {
    serde_json::from_slice(data).map_err(|e| Error::corrupt(path, format!("bad JSON: {e}")))
}

impl Store {
    /// The store of `product` (validated) in `coord`.
    pub fn new(coord: Arc<dyn Coordinator>, product: &str) -> Result<Self> {
        Ok(Store {
            coord,
            paths: ProductPaths::new(product)?,
        })
    }
    /// The product name.
    pub fn product(&self) -> &str {
        self.paths.product()
    }
    /// The product's paths.
    pub fn paths(&self) -> &ProductPaths {
        &self.paths
    }
    /// The underlying coordinator.
    pub fn coordinator(&self) -> &Arc<dyn Coordinator> {
        &self.coord
    }

    /// Reads and decodes the JSON at `path`; `None` if absent.
    pub async fn read_json<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        match self.coord.read(path).await? {
            Some(node) => decode(path, &node.data).map(Some),
            None => Ok(None),
        }
    }

    /// Writes `value` as JSON at `path` (set or create).
    pub async fn write_json<T: Serialize>(&self, path: &str, value: &T) -> Result<()> {
        self.coord
            .update(path, &encode(value), None)
            .await
            .map(|_| ())
    }

    async fn children_json<T: DeserializeOwned>(&self, dir: &str) -> Result<Vec<(String, T)>> {
        let mut out = Vec::new();
        for (name, node) in self.coord.read_children(dir).await? {
            let path = crate::paths::join(dir, &name);
            out.push((name, decode(&path, &node.data)?));
        }
        Ok(out)
    }

    async fn delete_if_present(&self, path: &str) -> Result<()> {
        match self.coord.delete(path, None).await {
            Ok(()) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ---- the product lock -------------------------------------------------------------

    /// Takes the product lock, storing `topom` in it; [`Error::LockHeld`] if another holds it.
    pub async fn acquire(&self, topom: &Topom) -> Result<()> {
        self.coord.lock(&self.paths.topom(), &encode(topom)).await
    }
    /// Releases the product lock held by this coordinator.
    pub async fn release(&self) -> Result<()> {
        self.coord.unlock(&self.paths.topom()).await
    }
    /// Force-removes the product lock (operator action); `true` if one was there.
    pub async fn remove_lock(&self) -> Result<bool> {
        self.coord.remove_lock(&self.paths.topom()).await
    }
    /// The lock holder's record.
    pub async fn load_topom(&self) -> Result<Option<Topom>> {
        self.read_json(&self.paths.topom()).await
    }

    // ---- slots --------------------------------------------------------------------------

    /// Slot `sid`'s mapping (offline if absent).
    pub async fn slot_mapping(&self, sid: u32) -> Result<SlotMapping> {
        let path = self.paths.slot(sid);
        Ok(self
            .read_json::<SlotMapping>(&path)
            .await?
            .unwrap_or_else(|| SlotMapping::offline(sid)))
    }

    /// The mappings of `sids`, in that order, read together (one blocking call on the
    /// filesystem, concurrent reads elsewhere).
    pub async fn slot_mappings_of(&self, sids: &[u32]) -> Result<Vec<SlotMapping>> {
        let paths: Vec<String> = sids.iter().map(|&sid| self.paths.slot(sid)).collect();
        let nodes = self.coord.read_many(&paths).await?;
        sids.iter()
            .zip(paths.iter().zip(nodes))
            .map(|(&sid, (path, node))| match node {
                Some(n) => decode(path, &n.data),
                None => Ok(SlotMapping::offline(sid)),
            })
            .collect()
    }

    /// All 1024 mappings, index = slot id.
    pub async fn slot_mappings(&self) -> Result<Vec<SlotMapping>> {
        let mut slots: Vec<SlotMapping> = (0..MAX_SLOT_NUM).map(SlotMapping::offline).collect();
        let dir = self.paths.slots_dir();
        for (name, m) in self.children_json::<SlotMapping>(&dir).await? {
            let path = crate::paths::join(&dir, &name);
            let sid = parse_id(&name, "slot-")
                .filter(|&s| s < MAX_SLOT_NUM)
                .ok_or_else(|| Error::corrupt(&path, "not a slot node name"))?;
            if m.id != sid {
                return Err(Error::corrupt(&path, format!("holds slot id {}", m.id)));
            }
            slots[sid as usize] = m;
        }
        Ok(slots)
    }

    /// Writes one mapping and bumps the topology version.
    pub async fn update_slot_mapping(&self, m: &SlotMapping) -> Result<()> {
        self.update_slot_mappings(std::slice::from_ref(m)).await
    }

    /// Writes mappings and then bumps the topology version once.
    pub async fn update_slot_mappings(&self, ms: &[SlotMapping]) -> Result<()> {
        self.update_slot_mappings_versioned(ms).await.map(|_| ())
    }

    /// [`Store::update_slot_mappings`], returning the topology version that includes them.
    pub async fn update_slot_mappings_versioned(&self, ms: &[SlotMapping]) -> Result<u64> {
        if let Some(m) = ms.iter().find(|m| m.id >= MAX_SLOT_NUM) {
            return Err(Error::BadPath {
                path: self.paths.slot(m.id),
                reason: "slot id out of range",
            });
        }
        // One batch: pipelined on ZooKeeper/etcd, flushed to disk together by the filesystem.
        let items: Vec<(String, Vec<u8>)> = ms
            .iter()
            .map(|m| (self.paths.slot(m.id), encode(m)))
            .collect();
        if let Some(v) = self
            .coord
            .update_many_bump(&items, &self.paths.version())
            .await?
        {
            return Ok(v);
        }
        self.coord.update_many(&items).await?;
        self.bump_version().await
    }

    // ---- groups ---------------------------------------------------------------------------

    /// All groups by id.
    pub async fn groups(&self) -> Result<BTreeMap<u32, Group>> {
        let dir = self.paths.groups_dir();
        let mut out = BTreeMap::new();
        for (name, g) in self.children_json::<Group>(&dir).await? {
            let path = crate::paths::join(&dir, &name);
            let gid = parse_id(&name, "group-")
                .ok_or_else(|| Error::corrupt(&path, "not a group node name"))?;
            if g.id != gid {
                return Err(Error::corrupt(&path, format!("holds group id {}", g.id)));
            }
            out.insert(gid, g);
        }
        Ok(out)
    }
    /// Group `gid`.
    pub async fn group(&self, gid: u32) -> Result<Option<Group>> {
        self.read_json(&self.paths.group(gid)).await
    }
    /// Writes a group and bumps the version.
    pub async fn update_group(&self, g: &Group) -> Result<()> {
        self.write_json(&self.paths.group(g.id), g).await?;
        self.bump_version().await.map(|_| ())
    }
    /// Deletes a group and bumps the version.
    pub async fn delete_group(&self, gid: u32) -> Result<()> {
        self.delete_if_present(&self.paths.group(gid)).await?;
        self.bump_version().await.map(|_| ())
    }

    // ---- proxies, sentinel ----------------------------------------------------------------

    /// Registered proxies by token.
    pub async fn proxies(&self) -> Result<BTreeMap<String, Proxy>> {
        let dir = self.paths.proxies_dir();
        Ok(self
            .children_json::<Proxy>(&dir)
            .await?
            .into_iter()
            .map(|(_, p)| (p.token.clone(), p))
            .collect())
    }
    /// Registers (or updates) a proxy and bumps the version.
    pub async fn update_proxy(&self, p: &Proxy) -> Result<()> {
        self.write_json(&self.paths.proxy(&p.token), p).await?;
        self.bump_version().await.map(|_| ())
    }
    /// Removes a proxy registration and bumps the version.
    pub async fn delete_proxy(&self, token: &str) -> Result<()> {
        self.delete_if_present(&self.paths.proxy(token)).await?;
        self.bump_version().await.map(|_| ())
    }
    /// The sentinel record.
    pub async fn sentinel(&self) -> Result<Option<Sentinel>> {
        self.read_json(&self.paths.sentinel()).await
    }
    /// Writes the sentinel record and bumps the version.
    pub async fn update_sentinel(&self, s: &Sentinel) -> Result<()> {
        self.write_json(&self.paths.sentinel(), s).await?;
        self.bump_version().await.map(|_| ())
    }

    // ---- acknowledgements and liveness (not part of the topology) ---------------------------

    /// A proxy records what it has applied.
    pub async fn ack(&self, ack: &ProxyAck) -> Result<()> {
        self.write_json(&self.paths.ack(&ack.token), ack).await
    }
    /// All acknowledgements by token.
    pub async fn acks(&self) -> Result<BTreeMap<String, ProxyAck>> {
        Ok(self
            .children_json::<ProxyAck>(&self.paths.acks_dir())
            .await?
            .into_iter()
            .map(|(_, a)| (a.token.clone(), a))
            .collect())
    }
    /// Removes a proxy's acknowledgement.
    pub async fn delete_ack(&self, token: &str) -> Result<()> {
        self.delete_if_present(&self.paths.ack(token)).await
    }
    /// Creates the proxy's ephemeral liveness node (replacing a stale one of the same token).
    pub async fn register_alive(&self, alive: &ProxyAlive) -> Result<()> {
        let path = self.paths.alive(&alive.token);
        self.coord
            .create_ephemeral(&path, &encode(alive))
            .await
            .map(|_| ())
    }
    /// Removes this proxy's liveness node.
    pub async fn unregister_alive(&self, token: &str) -> Result<()> {
        self.delete_if_present(&self.paths.alive(token)).await
    }
    /// Live proxies by token.
    pub async fn alive(&self) -> Result<BTreeMap<String, ProxyAlive>> {
        Ok(self
            .children_json::<ProxyAlive>(&self.paths.alive_dir())
            .await?
            .into_iter()
            .map(|(_, a)| (a.token.clone(), a))
            .collect())
    }

    // ---- version, snapshots -----------------------------------------------------------------

    /// The topology version (0 if never bumped).
    pub async fn version(&self) -> Result<u64> {
        Ok(self
            .read_json::<u64>(&self.paths.version())
            .await?
            .unwrap_or(0))
    }

    /// Increments the topology version (compare-and-set loop) and returns the new value.
    pub async fn bump_version(&self) -> Result<u64> {
        let path = self.paths.version();
        loop {
            let res = match self.coord.read(&path).await? {
                Some(node) => {
                    let v: u64 = decode(&path, &node.data)?;
                    self.coord
                        .update(&path, &encode(&(v + 1)), Some(node.version))
                        .await
                        .map(|_| v + 1)
                }
                None => self.coord.create(&path, &encode(&1u64)).await.map(|_| 1),
            };
            match res {
                Ok(v) => return Ok(v),
                Err(Error::Conflict { .. } | Error::Exists { .. } | Error::NotFound { .. }) => {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads a consistent snapshot (retries while the version moves under it).
    pub async fn topology(&self) -> Result<Topology> {
        let mut attempts = 0;
        loop {
            let v1 = self.version().await?;
            let data = TopologyData {
                product: self.product().to_string(),
                version: v1,
                topom: self.load_topom().await?,
                groups: self.groups().await?,
                slots: self.slot_mappings().await?,
                proxies: self.proxies().await?,
                sentinel: self.sentinel().await?,
            };
            attempts += 1;
            if self.version().await? == v1 || attempts >= 5 {
                return Ok(Topology::new(data));
            }
        }
    }

    /// Watches the product: yields a new snapshot after every topology change (debounced).
    /// Fails only if the first snapshot cannot be read; later outages are retried quietly.
    pub async fn watch_topology(&self) -> Result<TopologyWatch> {
        self.watch_topology_with(None).await
    }

    /// [`Store::watch_topology`] for a reader that also learns changes some other way (the
    /// proxy's fillslots pushes): `known` is the newest version whose whole topology the reader
    /// already holds. A change whose version is not above it is not re-read (reading every node
    /// of 1,024 slots after each migration step cost the proxy most of a core); one above it
    /// waits up to 100 ms for `known` to catch up before the whole topology is read.
    pub async fn watch_topology_with(
        &self,
        known: Option<Arc<std::sync::atomic::AtomicU64>>,
    ) -> Result<TopologyWatch> {
        let base = self.paths.base().to_string();
        let mut watch = self.coord.watch(&base, WatchKind::Tree).await?;
        let first = self.topology().await?;
        let (tx, rx) = watch::channel(first);
        let store = self.clone();
        let task = tokio::spawn(async move {
            loop {
                // Wait for a relevant event.
                loop {
                    match watch.next().await {
                        Some(WatchEvent::Changed { path })
                            if !store.paths.is_topology_path(&path) =>
                        {
                            continue
                        }
                        Some(_) => break,
                        None => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            match store.coord.watch(&base, WatchKind::Tree).await {
                                Ok(w) => {
                                    watch = w;
                                    break;
                                }
                                Err(e) => tracing::debug!("re-watch {base}: {e}"),
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                while watch.try_next().is_some() {}
                if let Some(known) = &known {
                    if store.already_known(known).await {
                        continue;
                    }
                }
                let mut backoff = Duration::from_millis(100);
                let snap = loop {
                    match store.topology().await {
                        Ok(t) => break t,
                        Err(e) => {
                            tracing::warn!("topology of {}: {e}", store.product());
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(3));
                        }
                    }
                };
                if *tx.borrow() != snap && tx.send(snap).is_err() {
                    return;
                }
            }
        });
        Ok(TopologyWatch { rx, task })
    }
}

impl Store {
    /// Whether the reader's `known` version covers the stored one (waiting up to 100 ms for it
    /// to catch up, as a push usually lands right after the write that caused the event).
    async fn already_known(&self, known: &std::sync::atomic::AtomicU64) -> bool {
        let Ok(v) = self.version().await else {
            return false;
        };
        for _ in 0..20 {
            if v <= known.load(std::sync::atomic::Ordering::Acquire) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }
}

/// New topology snapshots as they come; stops when dropped.
pub struct TopologyWatch {
    rx: watch::Receiver<Topology>,
    task: tokio::task::JoinHandle<()>,
}

impl TopologyWatch {
    /// The latest snapshot.
    pub fn current(&self) -> Topology {
        self.rx.borrow().clone()
    }
    /// Waits for a snapshot newer than the last one returned; `None` if the watch ended.
    pub async fn changed(&mut self) -> Option<Topology> {
        self.rx.changed().await.ok()?;
        Some(self.rx.borrow_and_update().clone())
    }
}

impl Drop for TopologyWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
