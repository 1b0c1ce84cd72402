//! The `Coordinator` trait every backend implements, its watch stream, and the constructor from
//! a config (`coordinator=zookeeper|etcd|filesystem`, `zk=…`, auth, product).
//!
//! Semantics shared by all backends (the conformance suite in `tests/` checks them):
//! - versions start at 1 when a node is created and grow by 1 on each update;
//! - `create` makes missing parents (as empty nodes) and fails with [`Error::Exists`];
//! - `update(path, data, None)` sets or creates; `update(path, data, Some(v))` is a
//!   compare-and-set that fails with [`Error::Conflict`] (or [`Error::NotFound`]);
//! - ephemeral nodes vanish when the owning coordinator is closed or its process dies;
//! - watches are streams of [`WatchEvent`]s that live until dropped and survive reconnections
//!   (a [`WatchEvent::Resync`] says events may have been missed: re-read).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::{Error, Result};

/// A node's bytes and version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub data: Vec<u8>,
    pub version: u64,
}

/// A change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// The node at `path` was created, changed or deleted (for a children watch: the parent).
    Changed { path: String },
    /// The watch was re-established after a disconnection: events may have been lost.
    Resync,
}

/// A stream of watch events; the watch stops when this is dropped.
pub struct Watch {
    rx: mpsc::UnboundedReceiver<WatchEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    /// Wraps a receiver fed by `task`; dropping the watch aborts the task.
    pub fn new(rx: mpsc::UnboundedReceiver<WatchEvent>, task: tokio::task::JoinHandle<()>) -> Self {
        Watch { rx, task }
    }
    /// The next event; `None` once the coordinator is closed.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        self.rx.recv().await
    }
    /// An event if one is queued.
    pub fn try_next(&mut self) -> Option<WatchEvent> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a watch looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchKind {
    /// The node's existence and data.
    Data,
    /// The set of the node's children.
    Children,
    /// Any node at or below the path (creation, change, deletion).
    Tree,
}

/// A topology store: ZooKeeper, etcd v3 or a local directory tree.
#[async_trait]
pub trait Coordinator: Send + Sync + 'static {
    /// Which backend this is.
    fn kind(&self) -> Kind;
    /// Creates a persistent node (and missing parents); returns its version (1).
    async fn create(&self, path: &str, data: &[u8]) -> Result<u64>;
    /// Creates a node that disappears when this coordinator closes or its process dies.
    async fn create_ephemeral(&self, path: &str, data: &[u8]) -> Result<u64>;
    /// Sets a node's data. `None`: set or create; `Some(v)`: only if the version is `v`.
    async fn update(&self, path: &str, data: &[u8], expected: Option<u64>) -> Result<u64>;
    /// Sets (or creates) several nodes, no version checks; not atomic as a whole, but a
    /// backend may write them in one go (the filesystem flushes them to disk together).
    async fn update_many(&self, items: &[(String, Vec<u8>)]) -> Result<()> {
        for chunk in items.chunks(32) {
            futures::future::try_join_all(
                chunk
                    .iter()
                    .map(|(p, d)| async move { self.update(p, d, None).await }),
            )
            .await?;
        }
        Ok(())
    }
    /// [`Coordinator::update_many`] plus an increment of the decimal counter node `counter`
    /// (created at 1), in one go; returns the new counter, or `None` if this backend has no
    /// such combined write (the caller then writes and bumps separately). The filesystem
    /// flushes the counter with the nodes, so a topology change costs one round of fsyncs.
    async fn update_many_bump(
        &self,
        items: &[(String, Vec<u8>)],
        counter: &str,
    ) -> Result<Option<u64>> {
        let _ = (items, counter);
        Ok(None)
    }
    /// Deletes a node (which must have no children), optionally only at version `expected`.
    async fn delete(&self, path: &str, expected: Option<u64>) -> Result<()>;
    /// Reads a node; `None` if it does not exist.
    async fn read(&self, path: &str) -> Result<Option<Node>>;
    /// Reads several nodes, in the order given (`None` for one that does not exist). The
    /// default reads them concurrently; the filesystem reads them in one blocking call.
    async fn read_many(&self, paths: &[String]) -> Result<Vec<Option<Node>>> {
        futures::future::join_all(paths.iter().map(|p| self.read(p)))
            .await
            .into_iter()
            .collect()
    }
    /// Names of a node's children, sorted; empty if the node does not exist.
    async fn list(&self, path: &str) -> Result<Vec<String>>;
    /// Reads all children of `path`: `(name, node)` sorted by name.
    async fn read_children(&self, path: &str) -> Result<Vec<(String, Node)>> {
        let names = self.list(path).await?;
        let mut out = Vec::with_capacity(names.len());
        for chunk in names.chunks(64) {
            let reads = chunk.iter().map(|name| {
                let child = crate::paths::join(path, name);
                async move { (name.clone(), self.read(&child).await) }
            });
            for (name, res) in futures::future::join_all(reads).await {
                if let Some(node) = res? {
                    out.push((name, node));
                }
            }
        }
        Ok(out)
    }
    /// Watches `path` (see [`WatchKind`]).
    async fn watch(&self, path: &str, kind: WatchKind) -> Result<Watch>;
    /// Takes the lock node `path` (an ephemeral holding `data`); [`Error::LockHeld`] if taken.
    async fn lock(&self, path: &str, data: &[u8]) -> Result<()> {
        match self.create_ephemeral(path, data).await {
            Ok(_) => Ok(()),
            Err(Error::Exists { path }) => {
                let holder = match self.read(&path).await {
                    Ok(Some(n)) => String::from_utf8_lossy(&n.data).into_owned(),
                    _ => String::from("(unknown)"),
                };
                Err(Error::LockHeld { path, holder })
            }
            Err(e) => Err(e),
        }
    }
    /// Releases a lock this coordinator holds.
    async fn unlock(&self, path: &str) -> Result<()> {
        match self.delete(path, None).await {
            Ok(()) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
    /// Operator's force-removal of a lock whoever holds it; `true` if one was removed.
    async fn remove_lock(&self, path: &str) -> Result<bool> {
        match self.delete(path, None).await {
            Ok(()) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
    /// Closes the session: ephemerals and locks of this coordinator go away.
    async fn close(&self);
}

/// The backend kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    ZooKeeper,
    Etcd,
    Filesystem,
}

impl FromStr for Kind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Kind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "zookeeper" | "zk" => Ok(Kind::ZooKeeper),
            "etcd" => Ok(Kind::Etcd),
            "filesystem" | "fs" => Ok(Kind::Filesystem),
            other => Err(Error::Config(format!(
                "unknown coordinator {other:?} (want zookeeper, etcd or filesystem)"
            ))),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::ZooKeeper => "zookeeper",
            Kind::Etcd => "etcd",
            Kind::Filesystem => "filesystem",
        })
    }
}

/// How to reach a coordinator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordConfig {
    /// `coordinator=`.
    pub kind: Kind,
    /// `zk=`: `host:port[,host:port…]` (ZooKeeper hosts, etcd endpoints) or the filesystem root.
    pub addr: String,
    /// Optional `user:password` (ZooKeeper digest, etcd user).
    pub auth: Option<String>,
    /// The product name.
    pub product: String,
    /// ZooKeeper session timeout / etcd lease TTL: how long a dead owner's ephemerals survive.
    pub session_timeout: Duration,
}

impl CoordConfig {
    /// A config with the default session timeout (10 s).
    pub fn new(kind: Kind, addr: &str, product: &str) -> Self {
        CoordConfig {
            kind,
            addr: addr.to_string(),
            auth: None,
            product: product.to_string(),
            session_timeout: Duration::from_secs(10),
        }
    }

    /// Reads `key=value` lines (`coordinator`, `zk`, `coordinator_auth`/`auth`, `product`,
    /// `session_timeout_ms`); other keys and `#`/`;` comments are ignored.
    pub fn from_ini(text: &str) -> Result<Self> {
        let mut kind = None;
        let mut addr = None;
        let mut auth = None;
        let mut product = None;
        let mut timeout = None;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').to_string();
            match k.trim() {
                "coordinator" | "coordinator_name" => kind = Some(v.parse::<Kind>()?),
                "zk" | "coordinator_addr" => addr = Some(v),
                "auth" | "coordinator_auth" | "zk_auth" if !v.is_empty() => auth = Some(v),
                "product" | "product_name" => product = Some(v),
                "session_timeout_ms" => {
                    let ms: u64 = v
                        .parse()
                        .map_err(|_| Error::Config(format!("bad session_timeout_ms {v:?}")))?;
                    timeout = Some(Duration::from_millis(ms));
                }
                _ => {}
            }
        }
        let kind = kind.unwrap_or(Kind::Filesystem);
        let addr = addr.ok_or_else(|| Error::Config("missing zk= (coordinator address)".into()))?;
        let product = product.ok_or_else(|| Error::Config("missing product=".into()))?;
        crate::paths::validate_product(&product)?;
        let mut cfg = CoordConfig::new(kind, &addr, &product);
        cfg.auth = auth;
        if let Some(t) = timeout {
            cfg.session_timeout = t;
        }
        Ok(cfg)
    }

    /// The auth split into `(user, password)`.
    pub fn credentials(&self) -> Result<Option<(String, String)>> {
        match &self.auth {
            None => Ok(None),
            Some(a) => match a.split_once(':') {
                Some((u, p)) if !u.is_empty() => Ok(Some((u.to_string(), p.to_string()))),
                _ => Err(Error::Config("auth must be user:password".into())),
            },
        }
    }
}

/// Builds the coordinator a config names. Connection is lazy: an unreachable coordinator
/// shows up as [`Error::Unavailable`] on operations, which succeed again once it is back.
pub async fn connect(cfg: &CoordConfig) -> Result<Arc<dyn Coordinator>> {
    crate::paths::validate_product(&cfg.product)?;
    Ok(match cfg.kind {
        Kind::Filesystem => Arc::new(crate::fs::FsCoordinator::open(&cfg.addr)?),
        Kind::ZooKeeper => Arc::new(crate::zk::ZkCoordinator::new(cfg)?),
        Kind::Etcd => Arc::new(crate::etcd::EtcdCoordinator::new(cfg)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini() {
        let c = CoordConfig::from_ini(
            "# x\ncoordinator=zk\nzk=127.0.0.1:2181,127.0.0.1:2182\nproduct=demo\nauth=u:p\n",
        )
        .unwrap();
        assert_eq!(c.kind, Kind::ZooKeeper);
        assert_eq!(c.addr, "127.0.0.1:2181,127.0.0.1:2182");
        assert_eq!(
            c.credentials().unwrap(),
            Some(("u".to_string(), "p".to_string()))
        );
        assert!(CoordConfig::from_ini("zk=/tmp/x\nproduct=a/b").is_err());
        assert!(CoordConfig::from_ini("coordinator=consul\nzk=x\nproduct=a").is_err());
    }
}
