//! The etcd v3 coordinator (`etcd-client`): one key per node, versions are etcd key versions,
//! compare-and-set by transaction, ephemerals bound to one lease kept alive by a task (a new
//! lease re-creates them if the old one expired), watches by key or prefix.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use etcd::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use etcd_client as etcd;
use tokio::sync::{mpsc, Mutex};

use crate::coordinator::{CoordConfig, Coordinator, Kind, Node, Watch, WatchEvent, WatchKind};
use crate::error::{Error, Result};
use crate::paths::validate_path;

/// A coordinator on an etcd v3 cluster.
pub struct EtcdCoordinator {
    inner: Arc<EtcdInner>,
}

struct EtcdInner {
    endpoints: Vec<String>,
    user: Option<(String, String)>,
    ttl: i64,
    client: Mutex<Option<etcd::Client>>,
    lease: Mutex<Option<i64>>,
    ephemerals: StdMutex<BTreeMap<String, Vec<u8>>>,
    closed: AtomicBool,
}

fn map_err(path: &str, e: etcd::Error) -> Error {
    let path = path.to_string();
    match &e {
        etcd::Error::GRpcStatus(s) => match s.code() as i32 {
            tonic_code::UNAVAILABLE
            | tonic_code::DEADLINE_EXCEEDED
            | tonic_code::CANCELLED
            | tonic_code::UNKNOWN => Error::Unavailable {
                path,
                cause: format!("etcd: {}", s.message()),
            },
            tonic_code::PERMISSION_DENIED | tonic_code::UNAUTHENTICATED => Error::Denied {
                path,
                cause: format!("etcd: {}", s.message()),
            },
            _ => Error::Backend {
                path,
                backend: "etcd",
                cause: e.to_string(),
            },
        },
        etcd::Error::TransportError(_) | etcd::Error::IoError(_) => Error::Unavailable {
            path,
            cause: format!("etcd: {e}"),
        },
        _ => Error::Backend {
            path,
            backend: "etcd",
            cause: e.to_string(),
        },
    }
}

/// gRPC codes, compared by number so we need not depend on tonic directly.
mod tonic_code {
    pub const CANCELLED: i32 = 1;
    /// tonic reports broken connections ("transport error", h2 errors) as Unknown.
    pub const UNKNOWN: i32 = 2;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

fn child_prefix(path: &str) -> String {
    if path == "/" {
        "/".to_string()
    } else {
        format!("{path}/")
    }
}

impl EtcdCoordinator {
    /// A coordinator for `cfg.addr` (`host:port[,host:port…]`); connects on first use.
    pub fn new(cfg: &CoordConfig) -> Result<Self> {
        let endpoints: Vec<String> = cfg
            .addr
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.contains("://") {
                    s.to_string()
                } else {
                    format!("http://{s}")
                }
            })
            .collect();
        if endpoints.is_empty() {
            return Err(Error::Config("etcd needs zk=host:port[,…]".into()));
        }
        Ok(EtcdCoordinator {
            inner: Arc::new(EtcdInner {
                endpoints,
                user: cfg.credentials()?,
                ttl: cfg.session_timeout.as_secs().max(1) as i64,
                client: Mutex::new(None),
                lease: Mutex::new(None),
                ephemerals: StdMutex::new(BTreeMap::new()),
                closed: AtomicBool::new(false),
            }),
        })
    }

    async fn client(&self, path: &str) -> Result<etcd::Client> {
        validate_path(path)?;
        self.inner.client(path).await
    }
}

impl EtcdInner {
    async fn client(&self, path: &str) -> Result<etcd::Client> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed { path: path.into() });
        }
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let mut opts = etcd::ConnectOptions::new()
            .with_timeout(Duration::from_secs(3))
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        if let Some((u, p)) = &self.user {
            opts = opts.with_user(u.clone(), p.clone());
        }
        let connect = etcd::Client::connect(self.endpoints.clone(), Some(opts));
        let client = match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(Error::Unavailable {
                    path: path.into(),
                    cause: format!("etcd {}: {e}", self.endpoints.join(",")),
                })
            }
            Err(_) => {
                return Err(Error::Unavailable {
                    path: path.into(),
                    cause: format!("etcd {}: connect timed out", self.endpoints.join(",")),
                })
            }
        };
        *guard = Some(client.clone());
        Ok(client)
    }

    /// The lease of this coordinator's ephemerals, granted (with its keep-alive task) on demand.
    async fn lease(self: &Arc<Self>, path: &str) -> Result<i64> {
        let mut guard = self.lease.lock().await;
        if let Some(id) = *guard {
            return Ok(id);
        }
        let mut client = self.client(path).await?;
        let id = client
            .lease_grant(self.ttl, None)
            .await
            .map_err(|e| map_err(path, e))?
            .id();
        *guard = Some(id);
        tokio::spawn(keep_alive_boxed(Arc::downgrade(self), id));
        Ok(id)
    }

    /// Called when the lease expired: grant a new one and re-create the owned ephemerals.
    async fn renew(self: &Arc<Self>, expired: i64) {
        {
            let mut guard = self.lease.lock().await;
            if *guard == Some(expired) {
                *guard = None;
            }
        }
        let owned: Vec<(String, Vec<u8>)> = match self.ephemerals.lock() {
            Ok(g) => g.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => return,
        };
        for (path, data) in owned {
            match self.put_ephemeral(&path, &data).await {
                Ok(()) => tracing::info!("re-created ephemeral {path} under a new lease"),
                Err(e) => {
                    tracing::warn!("ephemeral {path} lost with its lease: {e}");
                    if let Ok(mut g) = self.ephemerals.lock() {
                        g.remove(&path);
                    }
                }
            }
        }
    }

    async fn put_ephemeral(self: &Arc<Self>, path: &str, data: &[u8]) -> Result<()> {
        let lease = self.lease(path).await?;
        let mut client = self.client(path).await?;
        let txn = Txn::new()
            .when([Compare::create_revision(path, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                path,
                data,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let resp = client.txn(txn).await.map_err(|e| map_err(path, e))?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(Error::Exists { path: path.into() })
        }
    }
}

/// Boxed (with an explicit `Send`) because it calls back into `lease`, which spawns it.
fn keep_alive_boxed(
    weak: Weak<EtcdInner>,
    id: i64,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(keep_alive(weak, id))
}

async fn keep_alive(weak: Weak<EtcdInner>, id: i64) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let interval = Duration::from_millis((inner.ttl as u64 * 1000 / 3).max(300));
        let client = inner.client("/").await;
        drop(inner);
        let Ok(mut client) = client else {
            tokio::time::sleep(interval).await;
            continue;
        };
        let Ok((mut keeper, mut stream)) = client.lease_keep_alive(id).await else {
            tokio::time::sleep(interval).await;
            continue;
        };
        loop {
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match tokio::time::timeout(interval, stream.message()).await {
                Ok(Ok(Some(resp))) if resp.ttl() > 0 => {}
                Ok(Ok(Some(_))) => {
                    // TTL 0: the lease expired while we could not reach etcd.
                    if let Some(inner) = weak.upgrade() {
                        if !inner.closed.load(Ordering::Acquire) {
                            inner.renew(id).await;
                        }
                    }
                    return;
                }
                _ => break,
            }
            if weak.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(interval).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn get_version(resp: &etcd::TxnResponse) -> Option<u64> {
    resp.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => Some(g.kvs().first().map(|kv| kv.version() as u64).unwrap_or(0)),
        _ => None,
    })
}

async fn watch_loop(
    weak: Weak<EtcdInner>,
    path: String,
    kind: WatchKind,
    tx: mpsc::UnboundedSender<WatchEvent>,
    mut first: Option<(etcd::Watcher, etcd::WatchStream)>,
) {
    let mut lost = false;
    loop {
        let (_watcher, mut stream) = match first.take() {
            Some(w) => w,
            None => {
                let Some(inner) = weak.upgrade() else { return };
                let res = match inner.client(&path).await {
                    Ok(c) => start_watch(c, &path, kind).await,
                    Err(e) => Err(e),
                };
                drop(inner);
                match res {
                    Ok(w) => {
                        if lost && tx.send(WatchEvent::Resync).is_err() {
                            return;
                        }
                        w
                    }
                    Err(_) => {
                        lost = true;
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        continue;
                    }
                }
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(resp)) => {
                    if resp.canceled() {
                        break;
                    }
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        let Ok(key) = kv.key_str() else { continue };
                        let out = match kind {
                            WatchKind::Data => Some(path.clone()),
                            WatchKind::Children => {
                                let structural =
                                    ev.event_type() == etcd::EventType::Delete || kv.version() == 1;
                                structural.then(|| path.clone())
                            }
                            WatchKind::Tree => (key == path
                                || key.starts_with(&child_prefix(&path)))
                            .then(|| key.to_string()),
                        };
                        if let Some(p) = out {
                            if tx.send(WatchEvent::Changed { path: p }).is_err() {
                                return;
                            }
                        }
                    }
                }
                _ => break,
            }
        }
        if tx.is_closed() {
            return;
        }
        lost = true;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn start_watch(
    mut client: etcd::Client,
    path: &str,
    kind: WatchKind,
) -> Result<(etcd::Watcher, etcd::WatchStream)> {
    let (key, opts) = match kind {
        WatchKind::Data => (path.to_string(), None),
        WatchKind::Children => (
            child_prefix(path),
            Some(etcd::WatchOptions::new().with_prefix()),
        ),
        WatchKind::Tree => (
            path.to_string(),
            Some(etcd::WatchOptions::new().with_prefix()),
        ),
    };
    client.watch(key, opts).await.map_err(|e| map_err(path, e))
}

#[async_trait]
impl Coordinator for EtcdCoordinator {
    fn kind(&self) -> Kind {
        Kind::Etcd
    }

    async fn create(&self, path: &str, data: &[u8]) -> Result<u64> {
        let mut client = self.client(path).await?;
        let txn = Txn::new()
            .when([Compare::create_revision(path, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(path, data, None)]);
        let resp = client.txn(txn).await.map_err(|e| map_err(path, e))?;
        if resp.succeeded() {
            Ok(1)
        } else {
            Err(Error::Exists { path: path.into() })
        }
    }

    async fn create_ephemeral(&self, path: &str, data: &[u8]) -> Result<u64> {
        validate_path(path)?;
        self.inner.put_ephemeral(path, data).await?;
        if let Ok(mut g) = self.inner.ephemerals.lock() {
            g.insert(path.to_string(), data.to_vec());
        }
        Ok(1)
    }

    async fn update(&self, path: &str, data: &[u8], expected: Option<u64>) -> Result<u64> {
        let mut client = self.client(path).await?;
        let keep = || Some(PutOptions::new().with_ignore_lease());
        let get = || TxnOp::get(path, None);
        let txn = match expected {
            None => Txn::new()
                .when([Compare::version(path, CompareOp::Greater, 0)])
                .and_then([TxnOp::put(path, data, keep()), get()])
                .or_else([TxnOp::put(path, data, None), get()]),
            Some(0) => return Err(Error::NotFound { path: path.into() }),
            Some(v) => Txn::new()
                .when([Compare::version(path, CompareOp::Equal, v as i64)])
                .and_then([TxnOp::put(path, data, keep()), get()])
                .or_else([get()]),
        };
        let resp = client.txn(txn).await.map_err(|e| map_err(path, e))?;
        let version = get_version(&resp).unwrap_or(0);
        if expected.is_some() && !resp.succeeded() {
            return Err(if version == 0 {
                Error::NotFound { path: path.into() }
            } else {
                Error::Conflict {
                    path: path.into(),
                    expected: expected.unwrap_or(0),
                }
            });
        }
        if let Ok(mut g) = self.inner.ephemerals.lock() {
            if let Some(d) = g.get_mut(path) {
                *d = data.to_vec();
            }
        }
        Ok(version)
    }

    async fn delete(&self, path: &str, expected: Option<u64>) -> Result<()> {
        let mut client = self.client(path).await?;
        let children = client
            .get(
                child_prefix(path),
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .map_err(|e| map_err(path, e))?;
        if children.count() > 0 {
            return Err(Error::NotEmpty { path: path.into() });
        }
        let cmp = match expected {
            Some(v) => Compare::version(path, CompareOp::Equal, v as i64),
            None => Compare::version(path, CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when([cmp])
            .and_then([TxnOp::delete(path, None)])
            .or_else([TxnOp::get(path, None)]);
        let resp = client.txn(txn).await.map_err(|e| map_err(path, e))?;
        if !resp.succeeded() {
            return Err(match get_version(&resp) {
                Some(v) if v > 0 => Error::Conflict {
                    path: path.into(),
                    expected: expected.unwrap_or(0),
                },
                _ => Error::NotFound { path: path.into() },
            });
        }
        if let Ok(mut g) = self.inner.ephemerals.lock() {
            g.remove(path);
        }
        Ok(())
    }

    async fn read(&self, path: &str) -> Result<Option<Node>> {
        let mut client = self.client(path).await?;
        let resp = client.get(path, None).await.map_err(|e| map_err(path, e))?;
        Ok(resp.kvs().first().map(|kv| Node {
            data: kv.value().to_vec(),
            version: kv.version() as u64,
        }))
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        let mut client = self.client(path).await?;
        let prefix = child_prefix(path);
        let resp = client
            .get(
                prefix.as_str(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await
            .map_err(|e| map_err(path, e))?;
        let mut names: Vec<String> = resp
            .kvs()
            .iter()
            .filter_map(|kv| kv.key_str().ok())
            .filter_map(|k| k.strip_prefix(prefix.as_str()))
            .filter_map(|rest| rest.split('/').next())
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn read_children(&self, path: &str) -> Result<Vec<(String, Node)>> {
        let mut client = self.client(path).await?;
        let prefix = child_prefix(path);
        let resp = client
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| map_err(path, e))?;
        let mut out: Vec<(String, Node)> = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let name = kv.key_str().ok()?.strip_prefix(prefix.as_str())?;
                (!name.is_empty() && !name.contains('/')).then(|| {
                    (
                        name.to_string(),
                        Node {
                            data: kv.value().to_vec(),
                            version: kv.version() as u64,
                        },
                    )
                })
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn watch(&self, path: &str, kind: WatchKind) -> Result<Watch> {
        let client = self.client(path).await?;
        let first = start_watch(client, path, kind).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(watch_loop(
            Arc::downgrade(&self.inner),
            path.to_string(),
            kind,
            tx,
            Some(first),
        ));
        Ok(Watch::new(rx, task))
    }

    async fn close(&self) {
        let lease = self.inner.lease.lock().await.take();
        if let (Some(id), Ok(mut client)) = (lease, self.inner.client("/").await) {
            let _ = client.lease_revoke(id).await;
        }
        self.inner.closed.store(true, Ordering::Release);
        if let Ok(mut g) = self.inner.ephemerals.lock() {
            g.clear();
        }
    }
}

impl Drop for EtcdCoordinator {
    fn drop(&mut self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.inner.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let lease = inner.lease.lock().await.take();
                let client = inner.client.lock().await.clone();
                if let (Some(id), Some(mut client)) = (lease, client) {
                    let _ = client.lease_revoke(id).await;
                }
            });
        }
    }
}
