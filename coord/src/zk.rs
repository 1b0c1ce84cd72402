//! The ZooKeeper coordinator (`zookeeper-client`): lazy session, several hosts, digest auth
//! (nodes get creator-only ACLs when auth is set), reconnection, and on session expiry a new
//! session that re-creates the ephemerals this coordinator owns.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, Mutex};
use zookeeper_client as zk;

use crate::coordinator::{CoordConfig, Coordinator, Kind, Node, Watch, WatchEvent, WatchKind};
use crate::error::{Error, Result};
use crate::paths::validate_path;

/// A coordinator on a ZooKeeper ensemble.
pub struct ZkCoordinator {
    inner: Arc<ZkInner>,
}

struct ZkInner {
    hosts: String,
    auth: Option<Vec<u8>>,
    session_timeout: Duration,
    client: Mutex<Option<zk::Client>>,
    ephemerals: StdMutex<BTreeMap<String, Vec<u8>>>,
    closed: AtomicBool,
}

fn map_err(path: &str, e: zk::Error) -> Error {
    let path = path.to_string();
    match e {
        zk::Error::NoNode => Error::NotFound { path },
        zk::Error::NodeExists => Error::Exists { path },
        zk::Error::NotEmpty => Error::NotEmpty { path },
        zk::Error::NoAuth | zk::Error::AuthFailed | zk::Error::InvalidAcl => Error::Denied {
            path,
            cause: format!("zookeeper: {e}"),
        },
        zk::Error::ConnectionLoss
        | zk::Error::SessionExpired
        | zk::Error::Timeout
        | zk::Error::NoHosts
        | zk::Error::ClientClosed
        | zk::Error::SessionMoved => Error::Unavailable {
            path,
            cause: format!("zookeeper: {e}"),
        },
        other => Error::Backend {
            path,
            backend: "zookeeper",
            cause: other.to_string(),
        },
    }
}

/// Whether `e` is a dropped connection with the session still alive (what [`map_err`] makes
/// of `ConnectionLoss`).
fn connection_lost(e: &Error) -> bool {
    matches!(e, Error::Unavailable { cause, .. }
        if cause.strip_prefix("zookeeper: ") == Some(&zk::Error::ConnectionLoss.to_string()))
}

fn parent(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) | None => None,
        Some(i) => Some(&path[..i]),
    }
}

impl ZkCoordinator {
    /// A coordinator for `cfg.addr` (`host:port[,host:port…]`); connects on first use.
    pub fn new(cfg: &CoordConfig) -> Result<Self> {
        if cfg.addr.trim().is_empty() {
            return Err(Error::Config("zookeeper needs zk=host:port[,…]".into()));
        }
        let auth = cfg
            .credentials()?
            .map(|(u, p)| format!("{u}:{p}").into_bytes());
        Ok(ZkCoordinator {
            inner: Arc::new(ZkInner {
                hosts: cfg.addr.trim().to_string(),
                auth,
                session_timeout: cfg.session_timeout,
                client: Mutex::new(None),
                ephemerals: StdMutex::new(BTreeMap::new()),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// The current session id, if connected (tests use it to expire sessions).
    pub async fn session_id(&self) -> Option<i64> {
        let guard = self.inner.client.lock().await;
        guard.as_ref().map(|c| c.session_id().0)
    }

    /// Session id and password of the current session (to expire it from another client).
    pub async fn session(&self) -> Option<zk::SessionInfo> {
        let guard = self.inner.client.lock().await;
        guard.as_ref().map(|c| c.session().clone())
    }

    async fn op<T, F, Fut>(&self, path: &str, f: F) -> Result<T>
    where
        F: FnOnce(zk::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        validate_path(path)?;
        let client = self.inner.client(path).await?;
        match tokio::time::timeout(self.inner.session_timeout, f(client)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Unavailable {
                path: path.to_string(),
                cause: "zookeeper: request timed out".into(),
            }),
        }
    }

    /// [`Self::op`] for a request that may safely run twice (a read, or a write whose second
    /// run either does the same again or reports a version conflict): when the connection to
    /// the ensemble member drops under it (a member died or restarted), the session moves to
    /// another member and the request runs again there, for up to one session timeout, instead
    /// of failing the caller on a blip the ensemble exists to hide.
    async fn op_retry<T, F, Fut>(&self, path: &str, f: F) -> Result<T>
    where
        F: Fn(zk::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.inner.session_timeout;
        loop {
            match self.op(path, &f).await {
                Err(e) if connection_lost(&e) && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(path, "zookeeper connection lost mid-request; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                r => return r,
            }
        }
    }
}

impl ZkInner {
    fn acls(&self) -> zk::Acls<'static> {
        if self.auth.is_some() {
            zk::Acls::creator_all()
        } else {
            zk::Acls::anyone_all()
        }
    }

    /// The live session, connecting (and restoring ephemerals) when there is none.
    async fn client(self: &Arc<Self>, path: &str) -> Result<zk::Client> {
        let mut guard = self.client.lock().await;
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed { path: path.into() });
        }
        if let Some(c) = guard.as_ref() {
            if !c.state().is_terminated() {
                return Ok(c.clone());
            }
            tracing::warn!("zookeeper session {:?} ended; reconnecting", c.session_id());
        }
        *guard = None;
        let mut connector = zk::Client::connector()
            .with_session_timeout(self.session_timeout)
            // A connection silent for this long is dropped (and the session resumed on another
            // server). A loaded JVM can pause for seconds: scale with the session timeout.
            .with_connection_timeout((self.session_timeout / 3).max(Duration::from_secs(2)))
            .with_fail_eagerly();
        if let Some(auth) = &self.auth {
            connector = connector.with_auth("digest", auth);
        }
        let limit = self.session_timeout.max(Duration::from_secs(2));
        let client = match tokio::time::timeout(limit, connector.connect(&self.hosts)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(Error::Unavailable {
                    path: path.into(),
                    cause: format!("zookeeper {}: {e}", self.hosts),
                })
            }
            Err(_) => {
                return Err(Error::Unavailable {
                    path: path.into(),
                    cause: format!("zookeeper {}: connect timed out", self.hosts),
                })
            }
        };
        self.restore_ephemerals(&client).await;
        let weak = Arc::downgrade(self);
        let mut states = client.state_watcher();
        tokio::spawn(async move {
            loop {
                if states.changed().await.is_terminated() {
                    break;
                }
            }
            reconnect_until_done(weak).await;
        });
        *guard = Some(client.clone());
        Ok(client)
    }

    async fn restore_ephemerals(&self, client: &zk::Client) {
        let owned: Vec<(String, Vec<u8>)> = match self.ephemerals.lock() {
            Ok(g) => g.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => return,
        };
        for (path, data) in owned {
            let opts = zk::CreateMode::Ephemeral.with_acls(self.acls());
            match create_with_parents(client, &path, &data, &opts, self.acls()).await {
                Ok(()) => tracing::info!("re-created ephemeral {path} in the new session"),
                Err(e) => {
                    tracing::warn!("ephemeral {path} lost with the old session: {e}");
                    if let Ok(mut g) = self.ephemerals.lock() {
                        g.remove(&path);
                    }
                }
            }
        }
    }
}

/// Boxed (with an explicit `Send`) because it calls back into `client`, which spawns it.
fn reconnect_until_done(
    weak: Weak<ZkInner>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(reconnect_loop(weak))
}

async fn reconnect_loop(weak: Weak<ZkInner>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        match inner.client("/").await {
            Ok(_) => return,
            Err(e) => tracing::warn!("zookeeper reconnect: {e}"),
        }
        drop(inner);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn create_with_parents(
    client: &zk::Client,
    path: &str,
    data: &[u8],
    opts: &zk::CreateOptions<'_>,
    acls: zk::Acls<'static>,
) -> Result<()> {
    for _ in 0..3 {
        match client.create(path, data, opts).await {
            Ok(_) => return Ok(()),
            Err(zk::Error::NoNode) => {
                if let Some(p) = parent(path) {
                    let dir = zk::CreateMode::Persistent.with_acls(acls);
                    client.mkdir(p, &dir).await.map_err(|e| map_err(p, e))?;
                }
            }
            Err(e) => return Err(map_err(path, e)),
        }
    }
    Err(Error::NotFound { path: path.into() })
}

fn to_i32(path: &str, v: u64) -> Result<i32> {
    i32::try_from(v.saturating_sub(1)).map_err(|_| Error::Conflict {
        path: path.into(),
        expected: v,
    })
}

enum Armed {
    Persistent(zk::PersistentWatcher),
    Oneshot(zk::OneshotWatcher, Vec<String>),
}

/// Sets the watch; for one-shot watches also returns what was seen (to notice missed changes).
async fn arm(client: &zk::Client, path: &str, kind: WatchKind) -> Result<Armed> {
    let e = |err| map_err(path, err);
    Ok(match kind {
        WatchKind::Tree => Armed::Persistent(
            client
                .watch(path, zk::AddWatchMode::PersistentRecursive)
                .await
                .map_err(e)?,
        ),
        WatchKind::Data => {
            let (stat, w) = client.check_and_watch_stat(path).await.map_err(e)?;
            Armed::Oneshot(w, stat.map(|s| s.version.to_string()).into_iter().collect())
        }
        WatchKind::Children => match client.list_and_watch_children(path).await {
            Ok((mut names, w)) => {
                names.sort();
                names.push("/exists".into());
                Armed::Oneshot(w, names)
            }
            Err(zk::Error::NoNode) => {
                let (_, w) = client.check_and_watch_stat(path).await.map_err(e)?;
                Armed::Oneshot(w, Vec::new())
            }
            Err(err) => return Err(e(err)),
        },
    })
}

async fn watch_loop(
    weak: Weak<ZkInner>,
    path: String,
    kind: WatchKind,
    tx: mpsc::UnboundedSender<WatchEvent>,
    first: Armed,
) {
    let mut armed = Some(first);
    let mut seen: Option<Vec<String>> = None;
    let mut lost = false;
    loop {
        if tx.is_closed() {
            return;
        }
        let current = match armed.take() {
            Some(a) => a,
            None => {
                let Some(inner) = weak.upgrade() else { return };
                if inner.closed.load(Ordering::Acquire) {
                    return;
                }
                let res = match inner.client(&path).await {
                    Ok(c) => arm(&c, &path, kind).await,
                    Err(e) => Err(e),
                };
                drop(inner);
                match res {
                    Ok(a) => {
                        if lost {
                            lost = false;
                            let _ = tx.send(WatchEvent::Resync);
                        }
                        a
                    }
                    Err(e) => {
                        tracing::debug!("re-arming watch on {path}: {e}");
                        lost = true;
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        continue;
                    }
                }
            }
        };
        match current {
            Armed::Persistent(mut w) => loop {
                let ev = w.changed().await;
                if ev.event_type == zk::EventType::Session {
                    match ev.session_state {
                        zk::SessionState::Disconnected => lost = true,
                        s if s.is_terminated() => {
                            lost = true;
                            break;
                        }
                        _ => {
                            // Reconnected. zookeeper-client 0.11 does not resend persistent
                            // watches on a new connection (its SetWatches misses them), so
                            // re-arm ours; the re-arm sends the Resync.
                            if lost {
                                break;
                            }
                        }
                    }
                } else if tx.send(WatchEvent::Changed { path: ev.path }).is_err() {
                    return;
                }
            },
            Armed::Oneshot(w, sig) => {
                if seen.as_ref().is_some_and(|s| *s != sig)
                    && tx.send(WatchEvent::Changed { path: path.clone() }).is_err()
                {
                    return;
                }
                seen = Some(sig);
                let ev = w.changed().await;
                if ev.event_type == zk::EventType::Session {
                    lost = true;
                } else if tx.send(WatchEvent::Changed { path: path.clone() }).is_err() {
                    return;
                }
            }
        }
    }
}

#[async_trait]
impl Coordinator for ZkCoordinator {
    fn kind(&self) -> Kind {
        Kind::ZooKeeper
    }

    async fn create(&self, path: &str, data: &[u8]) -> Result<u64> {
        let acls = self.inner.acls();
        self.op(path, |c| async move {
            let opts = zk::CreateMode::Persistent.with_acls(acls);
            create_with_parents(&c, path, data, &opts, acls).await?;
            Ok(1)
        })
        .await
    }

    async fn create_ephemeral(&self, path: &str, data: &[u8]) -> Result<u64> {
        let acls = self.inner.acls();
        self.op(path, |c| async move {
            let opts = zk::CreateMode::Ephemeral.with_acls(acls);
            create_with_parents(&c, path, data, &opts, acls).await?;
            Ok(1)
        })
        .await?;
        if let Ok(mut g) = self.inner.ephemerals.lock() {
            g.insert(path.to_string(), data.to_vec());
        }
        Ok(1)
    }

    async fn update(&self, path: &str, data: &[u8], expected: Option<u64>) -> Result<u64> {
        let acls = self.inner.acls();
        let version = match expected {
            Some(v) => Some(to_i32(path, v)?),
            None => None,
        };
        let v = self
            .op_retry(path, |c| async move {
                for _ in 0..5 {
                    match c.set_data(path, data, version).await {
                        Ok(stat) => return Ok(stat.version as u64 + 1),
                        Err(zk::Error::BadVersion) => {
                            return Err(Error::Conflict {
                                path: path.into(),
                                expected: expected.unwrap_or(0),
                            })
                        }
                        Err(zk::Error::NoNode) if version.is_none() => {
                            let opts = zk::CreateMode::Persistent.with_acls(acls);
                            match create_with_parents(&c, path, data, &opts, acls).await {
                                Ok(()) => return Ok(1),
                                Err(Error::Exists { .. }) => continue,
                                Err(e) => return Err(e),
                            }
                        }
                        Err(e) => return Err(map_err(path, e)),
                    }
                }
                Err(Error::Conflict {
                    path: path.into(),
                    expected: 0,
                })
            })
            .await?;
        if let Ok(mut g) = self.inner.ephemerals.lock() {
            if let Some(d) = g.get_mut(path) {
                *d = data.to_vec();
            }
        }
        Ok(v)
    }

    async fn delete(&self, path: &str, expected: Option<u64>) -> Result<()> {
        let version = match expected {
            Some(v) => Some(to_i32(path, v)?),
            None => None,
        };
        self.op(path, |c| async move {
            match c.delete(path, version).await {
                Ok(()) => Ok(()),
                Err(zk::Error::BadVersion) => Err(Error::Conflict {
                    path: path.into(),
                    expected: expected.unwrap_or(0),
                }),
                Err(e) => Err(map_err(path, e)),
            }
        })
        .await?;
        if let Ok(mut g) = self.inner.ephemerals.lock() {
            g.remove(path);
        }
        Ok(())
    }

    async fn read(&self, path: &str) -> Result<Option<Node>> {
        self.op_retry(path, |c| async move {
            match c.get_data(path).await {
                Ok((data, stat)) => Ok(Some(Node {
                    data,
                    version: stat.version as u64 + 1,
                })),
                Err(zk::Error::NoNode) => Ok(None),
                Err(e) => Err(map_err(path, e)),
            }
        })
        .await
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        self.op_retry(path, |c| async move {
            match c.list_children(path).await {
                Ok(mut names) => {
                    names.sort();
                    Ok(names)
                }
                Err(zk::Error::NoNode) => Ok(Vec::new()),
                Err(e) => Err(map_err(path, e)),
            }
        })
        .await
    }

    async fn watch(&self, path: &str, kind: WatchKind) -> Result<Watch> {
        let first = self
            .op_retry(path, |c| async move { arm(&c, path, kind).await })
            .await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(watch_loop(
            Arc::downgrade(&self.inner),
            path.to_string(),
            kind,
            tx,
            first,
        ));
        Ok(Watch::new(rx, task))
    }

    async fn close(&self) {
        let mut guard = self.inner.client.lock().await;
        self.inner.closed.store(true, Ordering::Release);
        if let Ok(mut g) = self.inner.ephemerals.lock() {
            g.clear();
        }
        // Dropping the last handle closes the session; its ephemerals go with it.
        guard.take();
    }
}

impl Drop for ZkCoordinator {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        if let Ok(mut guard) = self.inner.client.try_lock() {
            guard.take();
        }
    }
}
