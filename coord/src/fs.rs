//! The filesystem coordinator, the embedded default for one host.
//!
//! Layout under the root directory `R`:
//! ```text
//! R/data/<path>/.node   one file per node: a header line `#codis-rs-node version=N owner=ID|-`
//!                       then the node's bytes; written to R/tmp, fsynced, renamed into place,
//!                       then its directory is fsynced (the rename is durable when a write
//!                       returns)
//! R/data.lck            flock'ed exclusively around every write (compare-and-set is atomic)
//! R/data.seq            a counter bumped by every write; watches wake on it through inotify
//!                       (IN_CLOSE_WRITE on R) and also poll it every 100 ms as a fallback
//! R/data.log            the paths each write touched, one a line (replaced past 1 MiB): a
//!                       watch re-reads only those nodes, and rescans its whole subtree once a
//!                       second (vanished ephemerals) or when it cannot follow the log
//! R/owners/ID.lck       one per open coordinator that owns ephemerals, flock'ed for its life;
//!                       an ephemeral whose owner file is missing or unlocked is gone
//! ```
//! A killed process loses its flocks, so its ephemerals (and the product lock) vanish at once.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::coordinator::{Coordinator, Kind, Node, Watch, WatchEvent, WatchKind};
use crate::error::{Error, Result};
use crate::paths::{join, validate_path};

const NODE_FILE: &str = ".node";
const LOG_FILE: &str = "data.log";
const HEADER: &str = "#codis-rs-node";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A coordinator over a local directory tree.
pub struct FsCoordinator {
    inner: Arc<FsInner>,
    /// Held by a write from before it takes a blocking thread until it returns: the writes of
    /// one process queue here (in order) instead of each holding one of the few blocking threads
    /// while it waits for the file lock and the fsyncs of the writes ahead, which left reads
    /// (a migration's slot reads, the proxies' liveness) waiting for a thread.
    writes: tokio::sync::Mutex<()>,
}

struct Owner {
    id: String,
    path: PathBuf,
    _file: File,
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

struct FsInner {
    root: PathBuf,
    owner: Mutex<Option<Owner>>,
    closed: AtomicBool,
    poll: Duration,
    /// fsyncs of node files and of directories by this process (see [`FsCoordinator::syncs`]).
    file_syncs: AtomicU64,
    dir_syncs: AtomicU64,
    node_reads: AtomicU64,
    /// Bumped by the inotify thread at every write under R (started with the first watch).
    wake: Mutex<Option<tokio::sync::watch::Receiver<u64>>>,
}

/// fsync counts of one [`FsCoordinator`] (for tests and diagnostics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// Node files (staged in R/tmp) fsynced before their rename.
    pub files: u64,
    /// Directories fsynced after renames into them.
    pub dirs: u64,
    /// Node files read (by calls and by watches).
    pub node_reads: u64,
}

struct Raw {
    version: u64,
    owner: Option<String>,
    data: Vec<u8>,
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    // SAFETY: flock on a valid open descriptor owned by `file`.
    let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How long a writer waits for another process's write to finish before giving up.
const WRITE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Takes the exclusive write lock, waiting at most [`WRITE_LOCK_WAIT`]. A holder that is killed
/// loses the lock at once; one that is stopped (SIGSTOP, a debugger, a frozen VM) would
/// otherwise block every writer for as long as it stays stopped: they get a clear error instead.
fn lock_write(lock: &File, path: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + WRITE_LOCK_WAIT;
    let mut pause = std::time::Duration::from_micros(200);
    loop {
        match flock(lock, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() >= deadline {
                    return Err(Error::Unavailable {
                        path: path.into(),
                        cause: format!(
                            "filesystem coordinator: another process held the write lock for {} s",
                            WRITE_LOCK_WAIT.as_secs()
                        ),
                    });
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(1));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
}

impl FsCoordinator {
    /// A coordinator rooted at `root` (created on first use).
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        if root.as_os_str().is_empty() {
            return Err(Error::Config(
                "filesystem coordinator needs a root directory".into(),
            ));
        }
        Ok(FsCoordinator {
            inner: Arc::new(FsInner {
                root,
                owner: Mutex::new(None),
                closed: AtomicBool::new(false),
                poll: Duration::from_millis(100),
                file_syncs: AtomicU64::new(0),
                dir_syncs: AtomicU64::new(0),
                node_reads: AtomicU64::new(0),
                wake: Mutex::new(None),
            }),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    /// The same coordinator with watches polling every `poll` (default 100 ms) on top of their
    /// inotify wake-ups (tests use a long one to see that inotify alone delivers changes).
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.poll = poll;
        }
        self
    }

    /// How many files and directories this coordinator fsynced so far.
    pub fn syncs(&self) -> SyncCounts {
        SyncCounts {
            files: self.inner.file_syncs.load(Ordering::Relaxed),
            dirs: self.inner.dir_syncs.load(Ordering::Relaxed),
            node_reads: self.inner.node_reads.load(Ordering::Relaxed),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// [`Self::blocking`] for a write: one at a time per process (see `writes`).
    async fn blocking_write<T: Send + 'static>(
        &self,
        path: &str,
        f: impl FnOnce(&FsInner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _one = self.writes.lock().await;
        self.blocking(path, f).await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        path: &str,
        f: impl FnOnce(&FsInner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        validate_path(path)?;
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed { path: path.into() });
        }
        let inner = self.inner.clone();
        let p = path.to_string();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::Backend {
                path: p,
                backend: "filesystem",
                cause: e.to_string(),
            })?
    }
}

impl FsInner {
    fn dir_of(&self, path: &str) -> PathBuf {
        let mut p = self.root.join("data");
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            p.push(comp);
        }
        p
    }

    fn unavailable(&self, path: &str, e: io::Error) -> Error {
        Error::Unavailable {
            path: path.to_string(),
            cause: format!("filesystem root {}: {e}", self.root.display()),
        }
    }

    fn ensure_root(&self, path: &str) -> Result<()> {
        for sub in ["data", "tmp", "owners"] {
            fs::create_dir_all(self.root.join(sub)).map_err(|e| self.unavailable(path, e))?;
        }
        Ok(())
    }

    fn read_raw(&self, path: &str) -> Result<Option<Raw>> {
        let file = self.dir_of(path).join(NODE_FILE);
        self.node_reads.fetch_add(1, Ordering::Relaxed);
        let bytes = match fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let nl = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| Error::corrupt(path, "node file has no header line"))?;
        let header = std::str::from_utf8(&bytes[..nl])
            .map_err(|_| Error::corrupt(path, "node header is not UTF-8"))?;
        let mut words = header.split(' ');
        if words.next() != Some(HEADER) {
            return Err(Error::corrupt(path, format!("bad node header {header:?}")));
        }
        let mut version = None;
        let mut owner = None;
        for w in words {
            if let Some(v) = w.strip_prefix("version=") {
                version = v.parse::<u64>().ok();
            } else if let Some(o) = w.strip_prefix("owner=") {
                owner = (o != "-").then(|| o.to_string());
            }
        }
        let version =
            version.ok_or_else(|| Error::corrupt(path, format!("bad node header {header:?}")))?;
        Ok(Some(Raw {
            version,
            owner,
            data: bytes[nl + 1..].to_vec(),
        }))
    }

    fn owner_alive(&self, id: &str) -> bool {
        if let Ok(guard) = self.owner.lock() {
            if guard.as_ref().is_some_and(|o| o.id == id) {
                return true;
            }
        }
        let file = match File::open(self.root.join("owners").join(format!("{id}.lck"))) {
            Ok(f) => f,
            Err(_) => return false,
        };
        match flock(&file, libc::LOCK_SH | libc::LOCK_NB) {
            Ok(()) => false,
            Err(e) => e.raw_os_error() == Some(libc::EWOULDBLOCK),
        }
    }

    fn read_live(&self, path: &str) -> Result<Option<Raw>> {
        Ok(self
            .read_raw(path)?
            .filter(|raw| raw.owner.as_deref().is_none_or(|o| self.owner_alive(o))))
    }

    fn list_live(&self, path: &str) -> Result<Vec<String>> {
        let dir = self.dir_of(path);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                return Ok(Vec::new())
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(path, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            if self.read_live(&join(path, &name))?.is_some() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn owner_id(&self, path: &str) -> Result<String> {
        let mut guard = self.owner.lock().map_err(|_| Error::Backend {
            path: path.into(),
            backend: "filesystem",
            cause: "owner mutex poisoned".into(),
        })?;
        if let Some(o) = guard.as_ref() {
            return Ok(o.id.clone());
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let id = format!(
            "{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let fpath = self.root.join("owners").join(format!("{id}.lck"));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&fpath)
            .map_err(|e| Error::io(path, e))?;
        flock(&file, libc::LOCK_EX | libc::LOCK_NB).map_err(|e| Error::io(path, e))?;
        let _ = writeln!(file, "{}", std::process::id());
        *guard = Some(Owner {
            id: id.clone(),
            path: fpath,
            _file: file,
        });
        Ok(id)
    }

    fn write_node(&self, path: &str, version: u64, owner: Option<&str>, data: &[u8]) -> Result<()> {
        let dir = self.dir_of(path);
        fs::create_dir_all(&dir).map_err(|e| Error::io(path, e))?;
        let tmp = self.root.join("tmp").join(format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            writeln!(
                f,
                "{HEADER} version={version} owner={}",
                owner.unwrap_or("-")
            )?;
            f.write_all(data)?;
            f.sync_all()?;
            self.file_syncs.fetch_add(1, Ordering::Relaxed);
            fs::rename(&tmp, dir.join(NODE_FILE))
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io(path, e)
        })?;
        self.sync_dirs(&[(dir, path)])
    }

    /// fsyncs each of `dirs` (distinct directories that renames went into), in parallel: on a
    /// journaling filesystem the first one commits the renames of all, the others find little
    /// left to do.
    fn sync_dirs(&self, dirs: &[(PathBuf, &str)]) -> Result<()> {
        let one = |(dir, path): &(PathBuf, &str)| -> Result<()> {
            File::open(dir)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(path, e))?;
            self.dir_syncs.fetch_add(1, Ordering::Relaxed);
            Ok(())
        };
        if dirs.len() <= 1 {
            return dirs.iter().try_for_each(one);
        }
        std::thread::scope(|sc| {
            let handles: Vec<_> = dirs
                .chunks(dirs.len().div_ceil(8))
                .map(|chunk| sc.spawn(move || chunk.iter().try_for_each(one)))
                .collect();
            for h in handles {
                h.join().map_err(|_| {
                    Error::io(dirs[0].1, io::Error::other("fsync thread panicked"))
                })??;
            }
            Ok(())
        })
    }

    /// Runs `f` holding the exclusive write lock; if it succeeds, appends `changed` to the
    /// change log and bumps the change counter.
    fn locked<T>(&self, path: &str, changed: &[&str], f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.ensure_root(path)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("data.lck"))
            .map_err(|e| self.unavailable(path, e))?;
        lock_write(&lock, path)?;
        let out = f();
        if out.is_ok() {
            self.append_log(changed);
            let seq = self.seq().wrapping_add(1);
            let _ = fs::write(self.root.join("data.seq"), seq.to_string());
        }
        out
    }

    /// Appends the written paths to R/data.log, one a line, so watchers re-read only those
    /// (not the whole tree). A log over 1 MiB is replaced by a new file (a new inode: watchers
    /// notice and rescan once). Best effort: a watcher that cannot follow the log rescans.
    fn append_log(&self, changed: &[&str]) {
        let log = self.root.join(LOG_FILE);
        let mut lines = String::new();
        for p in changed {
            lines.push_str(p);
            lines.push('\n');
        }
        let big = fs::metadata(&log)
            .map(|m| m.len() > (1 << 20))
            .unwrap_or(false);
        if big {
            let tmp = self
                .root
                .join("tmp")
                .join(format!("{}-log", std::process::id()));
            if fs::write(&tmp, &lines)
                .and_then(|_| fs::rename(&tmp, &log))
                .is_ok()
            {
                return;
            }
        }
        let _ = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(lines.as_bytes()));
    }

    /// Paths logged since `pos` (inode, offset), advancing it; `None` when the log cannot be
    /// followed (first call, replaced, truncated, unreadable): then `pos` is set to its current
    /// end and the caller rescans everything.
    fn log_delta(&self, pos: &mut Option<(u64, u64)>) -> Option<Vec<String>> {
        use std::io::{Read, Seek, SeekFrom};
        use std::os::unix::fs::MetadataExt;
        let mut f = match File::open(self.root.join(LOG_FILE)) {
            Ok(f) => f,
            Err(_) => {
                *pos = None;
                return None;
            }
        };
        let meta = f.metadata().ok()?;
        let (ino, len) = (meta.ino(), meta.len());
        match *pos {
            Some((i, off)) if i == ino && off <= len => {
                let mut buf = Vec::with_capacity((len - off) as usize);
                f.seek(SeekFrom::Start(off)).ok()?;
                f.take(len - off).read_to_end(&mut buf).ok()?;
                let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                *pos = Some((ino, off + complete as u64));
                Some(
                    String::from_utf8_lossy(&buf[..complete])
                        .lines()
                        .map(str::to_string)
                        .collect(),
                )
            }
            _ => {
                *pos = Some((ino, len));
                None
            }
        }
    }

    /// `sig` (a signature of `path` for `kind`) brought up to date for writes to `changed`,
    /// reading only what they can have touched.
    fn patch_signature(
        &self,
        path: &str,
        kind: WatchKind,
        sig: &BTreeMap<String, u64>,
        changed: &[String],
    ) -> BTreeMap<String, u64> {
        let touches = |p: &str| under(p, path);
        match kind {
            WatchKind::Data | WatchKind::Children => {
                if changed.iter().any(|p| touches(p)) {
                    self.signature(path, kind)
                } else {
                    sig.clone()
                }
            }
            WatchKind::Tree => {
                let mut out = sig.clone();
                for p in changed.iter().filter(|p| touches(p)) {
                    // The node and the ancestors it may have created, down from `path`.
                    let mut at = p.len();
                    loop {
                        let node = &p[..at];
                        match self.read_live(node) {
                            Ok(Some(raw)) => {
                                out.insert(node.to_string(), raw.version);
                            }
                            Ok(None) => {
                                out.remove(node);
                            }
                            Err(_) => {}
                        }
                        if node.len() <= path.len() {
                            break;
                        }
                        match node.rfind('/') {
                            Some(i) if i >= path.len() && i > 0 => at = i,
                            _ => break,
                        }
                    }
                }
                out
            }
        }
    }

    fn seq(&self) -> u64 {
        fs::read_to_string(self.root.join("data.seq"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn create(&self, path: &str, data: &[u8], ephemeral: bool) -> Result<u64> {
        if path == "/" {
            return Err(Error::Exists { path: path.into() });
        }
        self.locked(path, &[path], || {
            if self.read_live(path)?.is_some() {
                return Err(Error::Exists { path: path.into() });
            }
            let owner = if ephemeral {
                Some(self.owner_id(path)?)
            } else {
                None
            };
            self.make_parents(path)?;
            self.write_node(path, 1, owner.as_deref(), data)?;
            Ok(1)
        })
    }

    fn make_parents(&self, path: &str) -> Result<()> {
        let mut end = 0;
        while let Some(i) = path[end + 1..].find('/') {
            end += 1 + i;
            let parent = &path[..end];
            if self.read_live(parent)?.is_none() {
                self.write_node(parent, 1, None, b"")?;
            }
        }
        Ok(())
    }

    fn update(&self, path: &str, data: &[u8], expected: Option<u64>) -> Result<u64> {
        self.locked(path, &[path], || match (self.read_live(path)?, expected) {
            (None, None) => {
                self.make_parents(path)?;
                self.write_node(path, 1, None, data)?;
                Ok(1)
            }
            (None, Some(_)) => Err(Error::NotFound { path: path.into() }),
            (Some(cur), Some(v)) if cur.version != v => Err(Error::Conflict {
                path: path.into(),
                expected: v,
            }),
            (Some(cur), _) => {
                self.write_node(path, cur.version + 1, cur.owner.as_deref(), data)?;
                Ok(cur.version + 1)
            }
        })
    }

    /// Several set-or-create writes under one lock: every node is staged in R/tmp, the staged
    /// files are fsynced in parallel (the journal commits them together instead of once per
    /// node), then each is renamed into place.
    /// With `counter`, the decimal counter node there is incremented in the same batch (its new
    /// value is returned).
    fn update_many(
        &self,
        items: &[(String, Vec<u8>)],
        counter: Option<&str>,
    ) -> Result<Option<u64>> {
        let Some((first, _)) = items.first() else {
            return Ok(None);
        };
        let mut changed: Vec<&str> = items.iter().map(|(p, _)| p.as_str()).collect();
        changed.extend(counter);
        self.locked(first, &changed, || {
            let mut bumped = None;
            let mut all: Vec<(&str, std::borrow::Cow<'_, [u8]>)> = items
                .iter()
                .map(|(p, d)| (p.as_str(), std::borrow::Cow::Borrowed(d.as_slice())))
                .collect();
            if let Some(c) = counter {
                let v = match self.read_live(c)? {
                    Some(raw) => std::str::from_utf8(&raw.data)
                        .ok()
                        .and_then(|t| t.trim().parse::<u64>().ok())
                        .ok_or_else(|| Error::corrupt(c, "counter is not a number"))?,
                    None => 0,
                };
                bumped = Some(v + 1);
                all.push((c, std::borrow::Cow::Owned((v + 1).to_string().into_bytes())));
            }
            let mut staged: Vec<(PathBuf, PathBuf, &str)> = Vec::with_capacity(all.len());
            let res = (|| {
                for (path, data) in &all {
                    let (path, data) = (*path, data.as_ref());
                    let (version, owner) = match self.read_live(path)? {
                        Some(cur) => (cur.version + 1, cur.owner),
                        None => {
                            self.make_parents(path)?;
                            (1, None)
                        }
                    };
                    let dir = self.dir_of(path);
                    fs::create_dir_all(&dir).map_err(|e| Error::io(path, e))?;
                    let tmp = self.root.join("tmp").join(format!(
                        "{}-{}",
                        std::process::id(),
                        COUNTER.fetch_add(1, Ordering::Relaxed)
                    ));
                    staged.push((tmp.clone(), dir, path));
                    let mut f = File::create(&tmp).map_err(|e| Error::io(path, e))?;
                    writeln!(
                        f,
                        "{HEADER} version={version} owner={}",
                        owner.as_deref().unwrap_or("-")
                    )
                    .and_then(|_| f.write_all(data))
                    .map_err(|e| Error::io(path, e))?;
                }
                std::thread::scope(|sc| {
                    let syncs: Vec<_> = staged
                        .chunks(8)
                        .map(|chunk| {
                            sc.spawn(move || -> Result<()> {
                                for (tmp, _, path) in chunk {
                                    File::open(tmp)
                                        .and_then(|f| f.sync_all())
                                        .map_err(|e| Error::io(path, e))?;
                                    self.file_syncs.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(())
                            })
                        })
                        .collect();
                    for s in syncs {
                        s.join().map_err(|_| {
                            Error::io(first, io::Error::other("fsync thread panicked"))
                        })??;
                    }
                    Ok::<(), Error>(())
                })?;
                for (tmp, dir, path) in &staged {
                    fs::rename(tmp, dir.join(NODE_FILE)).map_err(|e| Error::io(path, e))?;
                }
                // Then the renames themselves: each directory once, all in parallel.
                let mut dirs: Vec<(PathBuf, &str)> = staged
                    .iter()
                    .map(|(_, dir, path)| (dir.clone(), *path))
                    .collect();
                dirs.sort_by(|a, b| a.0.cmp(&b.0));
                dirs.dedup_by(|a, b| a.0 == b.0);
                self.sync_dirs(&dirs)
            })();
            if res.is_err() {
                for (tmp, _, _) in &staged {
                    let _ = fs::remove_file(tmp);
                }
            }
            res.map(|()| bumped)
        })
    }

    fn delete(&self, path: &str, expected: Option<u64>) -> Result<()> {
        self.locked(path, &[path], || {
            let cur = self
                .read_live(path)?
                .ok_or_else(|| Error::NotFound { path: path.into() })?;
            if let Some(v) = expected {
                if cur.version != v {
                    return Err(Error::Conflict {
                        path: path.into(),
                        expected: v,
                    });
                }
            }
            if !self.list_live(path)?.is_empty() {
                return Err(Error::NotEmpty { path: path.into() });
            }
            let dir = self.dir_of(path);
            fs::remove_file(dir.join(NODE_FILE)).map_err(|e| Error::io(path, e))?;
            let _ = fs::remove_dir(&dir);
            Ok(())
        })
    }

    /// `(path → version)` of every live node at or below `path`.
    fn tree(&self, path: &str, out: &mut BTreeMap<String, u64>) -> Result<()> {
        if let Some(raw) = self.read_live(path)? {
            out.insert(path.to_string(), raw.version);
        }
        let dir = self.dir_of(path);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !name.starts_with('.') && entry.path().is_dir() {
                self.tree(&join(path, &name), out)?;
            }
        }
        Ok(())
    }

    fn signature(&self, path: &str, kind: WatchKind) -> BTreeMap<String, u64> {
        let mut sig = BTreeMap::new();
        match kind {
            WatchKind::Data => {
                if let Ok(Some(raw)) = self.read_live(path) {
                    sig.insert(path.to_string(), raw.version);
                }
            }
            WatchKind::Children => {
                for name in self.list_live(path).unwrap_or_default() {
                    sig.insert(name, 0);
                }
            }
            WatchKind::Tree => {
                let _ = self.tree(path, &mut sig);
            }
        }
        sig
    }
}

impl FsInner {
    /// A receiver bumped at every write under the root, from one inotify thread per
    /// coordinator (started on first use); `None` if inotify is not available here.
    fn wake_receiver(this: &Arc<FsInner>) -> Option<tokio::sync::watch::Receiver<u64>> {
        let mut guard = this.wake.lock().ok()?;
        if let Some(rx) = guard.as_ref() {
            return Some(rx.clone());
        }
        let _ = this.ensure_root("/");
        let fd = inotify_root(&this.root)?;
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        let weak = Arc::downgrade(this);
        let spawned = std::thread::Builder::new()
            .name("coord-fs-inotify".into())
            .spawn(move || inotify_loop(fd, weak, tx));
        if spawned.is_err() {
            return None;
        }
        *guard = Some(rx.clone());
        Some(rx)
    }
}

/// An inotify descriptor watching the root directory for completed writes (`data.seq`).
fn inotify_root(root: &Path) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let cpath = std::ffi::CString::new(root.as_os_str().as_bytes()).ok()?;
    // SAFETY: plain syscalls; the descriptor is owned by the OwnedFd from here on.
    unsafe {
        let fd = libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK);
        if fd < 0 {
            return None;
        }
        let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mask = libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO;
        if libc::inotify_add_watch(fd.as_raw_fd(), cpath.as_ptr(), mask) < 0 {
            return None;
        }
        Some(fd)
    }
}

/// Reads inotify events until the coordinator is closed or dropped; bumps `tx` whenever
/// `data.seq` was rewritten (other files of the root, such as the lock, are ignored).
fn inotify_loop(
    fd: std::os::fd::OwnedFd,
    inner: std::sync::Weak<FsInner>,
    tx: tokio::sync::watch::Sender<u64>,
) {
    const SEQ: &[u8] = b"data.seq";
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match inner.upgrade() {
            Some(i) if !i.closed.load(Ordering::Acquire) => {}
            _ => return,
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; a timeout so that a dropped coordinator ends the thread.
        let rc = unsafe { libc::poll(&mut pfd, 1, 500) };
        if rc < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if rc == 0 {
            continue;
        }
        let mut hit = false;
        loop {
            // SAFETY: reads into our own buffer of the given length.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            let n = n as usize;
            let mut off = 0;
            // struct inotify_event { int wd; u32 mask; u32 cookie; u32 len; char name[len]; }
            while off + 16 <= n {
                let word = |at: usize| {
                    u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
                };
                let mask = word(off + 4);
                let len = word(off + 12) as usize;
                let name = buf.get(off + 16..(off + 16 + len).min(n)).unwrap_or(&[]);
                let name = name.split(|&b| b == 0).next().unwrap_or(&[]);
                if name == SEQ || mask & libc::IN_Q_OVERFLOW != 0 {
                    hit = true;
                }
                off += 16 + len;
            }
        }
        if hit {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }
}

/// Whether `p` is `root` or below it.
fn under(p: &str, root: &str) -> bool {
    root == "/"
        || p == root
        || (p.len() > root.len() && p.starts_with(root) && p.as_bytes()[root.len()] == b'/')
}

/// Paths whose entry differs between two signatures.
fn diff(old: &BTreeMap<String, u64>, new: &BTreeMap<String, u64>) -> Vec<String> {
    let mut out: Vec<String> = old
        .iter()
        .filter(|(k, v)| new.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    out.extend(new.keys().filter(|k| !old.contains_key(*k)).cloned());
    out
}

#[async_trait]
impl Coordinator for FsCoordinator {
    fn kind(&self) -> Kind {
        Kind::Filesystem
    }

    async fn create(&self, path: &str, data: &[u8]) -> Result<u64> {
        let (p, d) = (path.to_string(), data.to_vec());
        self.blocking_write(path, move |i| i.create(&p, &d, false))
            .await
    }

    async fn create_ephemeral(&self, path: &str, data: &[u8]) -> Result<u64> {
        let (p, d) = (path.to_string(), data.to_vec());
        self.blocking_write(path, move |i| i.create(&p, &d, true))
            .await
    }

    async fn update(&self, path: &str, data: &[u8], expected: Option<u64>) -> Result<u64> {
        let (p, d) = (path.to_string(), data.to_vec());
        self.blocking_write(path, move |i| i.update(&p, &d, expected))
            .await
    }

    async fn update_many(&self, items: &[(String, Vec<u8>)]) -> Result<()> {
        let Some((first, _)) = items.first() else {
            return Ok(());
        };
        for (p, _) in items {
            validate_path(p)?;
        }
        let items = items.to_vec();
        self.blocking_write(first, move |i| i.update_many(&items, None).map(|_| ()))
            .await
    }

    async fn update_many_bump(
        &self,
        items: &[(String, Vec<u8>)],
        counter: &str,
    ) -> Result<Option<u64>> {
        let Some((first, _)) = items.first() else {
            return Ok(None);
        };
        for (p, _) in items {
            validate_path(p)?;
        }
        validate_path(counter)?;
        let items = items.to_vec();
        let c = counter.to_string();
        self.blocking_write(first, move |i| i.update_many(&items, Some(&c)))
            .await
    }

    async fn delete(&self, path: &str, expected: Option<u64>) -> Result<()> {
        let p = path.to_string();
        self.blocking_write(path, move |i| i.delete(&p, expected))
            .await
    }

    async fn read(&self, path: &str) -> Result<Option<Node>> {
        let p = path.to_string();
        self.blocking(path, move |i| {
            Ok(i.read_live(&p)?.map(|raw| Node {
                data: raw.data,
                version: raw.version,
            }))
        })
        .await
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        let p = path.to_string();
        self.blocking(path, move |i| i.list_live(&p)).await
    }

    /// The whole directory in one blocking call. (The default reads 64 children concurrently,
    /// one blocking call each: every topology read of 1,024 slots kept ~64 tokio blocking
    /// threads alive in each process, each with its own allocator heap, and the RSS of the
    /// proxy and of the dashboard grew for minutes — issue 11's soak.)
    async fn read_children(&self, path: &str) -> Result<Vec<(String, Node)>> {
        let p = path.to_string();
        self.blocking(path, move |i| {
            let mut out = Vec::new();
            for name in i.list_live(&p)? {
                let child = crate::paths::join(&p, &name);
                if let Some(raw) = i.read_live(&child)? {
                    out.push((
                        name,
                        Node {
                            data: raw.data,
                            version: raw.version,
                        },
                    ));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn watch(&self, path: &str, kind: WatchKind) -> Result<Watch> {
        let p = path.to_string();
        let initial = self
            .blocking(path, move |i| {
                // Log position first: writes after it are read as deltas, those before it are
                // in the signature taken next.
                let mut pos = None;
                let _ = i.log_delta(&mut pos);
                Ok((i.seq(), i.signature(&p, kind), pos))
            })
            .await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = self.inner.clone();
        let path = path.to_string();
        let mut wake = FsInner::wake_receiver(&inner);
        let task = tokio::spawn(async move {
            let (mut seq, mut sig, mut log_pos) = initial;
            let mut last_full = Instant::now();
            loop {
                // Woken by inotify at once after a write; the poll catches anything it missed
                // (no inotify, an overflowed queue) and vanished ephemerals (no write at all).
                let mut woken = false;
                match wake.as_mut() {
                    Some(w) => match tokio::time::timeout(inner.poll, w.changed()).await {
                        Ok(Ok(())) => woken = true,
                        Ok(Err(_)) => wake = None,
                        Err(_) => {}
                    },
                    None => tokio::time::sleep(inner.poll).await,
                }
                if inner.closed.load(Ordering::Acquire) {
                    return;
                }
                let (i2, p2) = (inner.clone(), path.clone());
                let full = !woken && last_full.elapsed() >= Duration::from_secs(1);
                let old = sig.clone();
                let mut pos = log_pos;
                let res = tokio::task::spawn_blocking(move || {
                    let s = i2.seq();
                    if s == seq && !full {
                        return None;
                    }
                    // Only the paths written since the last look, when the log can tell them
                    // (a full rescan each second still catches vanished ephemerals).
                    let delta = i2.log_delta(&mut pos);
                    let rescan = full || delta.is_none();
                    let new = match delta {
                        Some(paths) if !full => i2.patch_signature(&p2, kind, &old, &paths),
                        _ => i2.signature(&p2, kind),
                    };
                    Some((s, new, pos, rescan))
                })
                .await;
                let Ok(Some((s, new, pos, rescanned))) = res else {
                    continue;
                };
                seq = s;
                log_pos = pos;
                if rescanned {
                    last_full = Instant::now();
                }
                let changed = diff(&sig, &new);
                sig = new;
                if changed.is_empty() {
                    continue;
                }
                let events: Vec<String> = match kind {
                    WatchKind::Tree => changed,
                    _ => vec![path.clone()],
                };
                for p in events {
                    if tx.send(WatchEvent::Changed { path: p }).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Watch::new(rx, task))
    }

    async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        if let Ok(mut guard) = self.inner.owner.lock() {
            guard.take();
        }
    }
}
