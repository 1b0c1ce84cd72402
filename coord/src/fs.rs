//! The filesystem coordinator, the embedded default for one host.
//!
//! Layout under the root directory `R`:
//! ```text
//! R/data/<path>/.node   one file per node: a header line `#codis-rs-node version=N owner=ID|-`
//!                       then the node's bytes; written to R/tmp and renamed into place
//! R/journal             the write-ahead journal: every write appends the new content of the
//!                       nodes it changes and fdatasyncs it before touching them, so a write is
//!                       durable when it returns at the cost of one fsync (see [`crate::journal`]:
//!                       replayed when the machine rebooted since, checkpointed past a size)
//! R/data.lck            flock'ed exclusively around every write (compare-and-set is atomic)
//! R/data.seq            a counter bumped by every write; watches wake on it through inotify
//!                       (IN_CLOSE_WRITE on R) and also poll it every 100 ms as a fallback
//! R/data.log            the paths each write touched, one a line (replaced past 1 MiB): a
//!                       watch re-reads only those nodes, re-checks its ephemeral nodes once a
//!                       second (an owner's death is no write), and rescans its whole subtree
//!                       every 30 s (a safety net) or when it cannot follow the log
//! R/owners/ID.lck       one per open coordinator that owns ephemerals, flock'ed for its life;
//!                       an ephemeral whose owner file is missing or unlocked is gone
//! ```
//! A killed process loses its flocks, so its ephemerals (and the product lock) vanish at once.
//!
//! Each coordinator follows the journal ([`crate::known`]): a node named by a record it has
//! parsed (its own writes included) is answered from that record instead of its file.

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
use crate::journal::{self, Journal, Op};
use crate::known::Known;
use crate::paths::{join, validate_path};

const NODE_FILE: &str = ".node";
const LOG_FILE: &str = "data.log";
const HEADER: &str = "#codis-rs-node";
const DEFAULT_JOURNAL_LIMIT: u64 = 8 << 20;

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
    journal: Journal,
    /// Journal size past which a write checkpoints it (fsyncs its nodes and starts it again).
    journal_limit: u64,
    /// fsyncs of the journal, of node files and of directories by this process (see
    /// [`FsCoordinator::syncs`]).
    journal_syncs: AtomicU64,
    file_syncs: AtomicU64,
    dir_syncs: AtomicU64,
    node_reads: AtomicU64,
    yields: AtomicU64,
    /// Nodes known from the journal, answered without reading their files.
    known: Known,
    /// Bumped by the inotify thread at every write under R (started with the first watch).
    wake: Mutex<Option<tokio::sync::watch::Receiver<u64>>>,
}

/// fsync counts of one [`FsCoordinator`] (for tests and diagnostics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// Journal appends synced (one per write).
    pub journal: u64,
    /// Node files fsynced (by checkpoints and recoveries, not by writes).
    pub files: u64,
    /// Directories fsynced (by checkpoints and recoveries).
    pub dirs: u64,
    /// Node files read (by calls and by watches).
    pub node_reads: u64,
    /// Times a thread working through many node files offered the CPU to others.
    pub yields: u64,
    /// Times this coordinator caught up with the journal before answering from it (each at
    /// least a `stat` of the journal).
    pub catch_ups: u64,
}

/// A node file's content.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Raw {
    pub(crate) version: u64,
    pub(crate) owner: Option<String>,
    pub(crate) data: Vec<u8>,
}

/// The proof a call holds the write lock (from [`FsInner::locked`]): where the nodes it
/// knows stood when it took it (see [`Known::refresh`]).
#[derive(Clone, Copy)]
struct Held {
    at: Option<u64>,
}

/// Set in a watch signature's entry for an ephemeral node (versions never reach it), so the
/// watch knows which nodes an owner's death can remove without any write.
const SIG_EPHEMERAL: u64 = 1 << 63;

/// A node's entry in a watch signature: its version, flagged when it is ephemeral.
fn sig_entry(raw: &Raw) -> u64 {
    raw.version
        | if raw.owner.is_some() {
            SIG_EPHEMERAL
        } else {
            0
        }
}

/// How often a tree watch that follows the log still rescans its whole subtree.
const FULL_RESCAN: Duration = Duration::from_secs(30);

/// A node file: the header line (with the length and crc32 of the data, so that a reader can
/// tell a file being rewritten in place from a whole one) and the data.
fn encode_node(version: u64, owner: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "{HEADER} version={version} owner={} len={} crc={:08x}\n",
        owner.unwrap_or("-"),
        data.len(),
        crc32fast::hash(data)
    )
    .into_bytes();
    bytes.extend_from_slice(data);
    bytes
}

/// Parses a node file (files written before the header had `len` and `crc` have no check).
fn parse_node(bytes: &[u8]) -> std::result::Result<Raw, String> {
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("node file has no header line")?;
    let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| "node header is not UTF-8")?;
    let mut words = header.split(' ');
    if words.next() != Some(HEADER) {
        return Err(format!("bad node header {header:?}"));
    }
    let (mut version, mut owner, mut len, mut crc) = (None, None, None, None);
    for w in words {
        if let Some(v) = w.strip_prefix("version=") {
            version = v.parse::<u64>().ok();
        } else if let Some(o) = w.strip_prefix("owner=") {
            owner = (o != "-").then(|| o.to_string());
        } else if let Some(l) = w.strip_prefix("len=") {
            len = l.parse::<usize>().ok();
        } else if let Some(c) = w.strip_prefix("crc=") {
            crc = u32::from_str_radix(c, 16).ok();
        }
    }
    let version = version.ok_or_else(|| format!("bad node header {header:?}"))?;
    let mut data = &bytes[nl + 1..];
    if let (Some(len), Some(crc)) = (len, crc) {
        data = data
            .get(..len)
            .ok_or_else(|| format!("node data is shorter than its {len} bytes"))?;
        if crc32fast::hash(data) != crc {
            return Err("node data fails its crc".into());
        }
    }
    Ok(Raw {
        version,
        owner,
        data: data.to_vec(),
    })
}

/// The bytes of a node file: those its header announces (`len=`), else all of them. One
/// `read` for a node of up to 4 KiB, where `fs::read` also asked for the size (`statx`) and
/// read again to see the end: a 512-slot migration read ~15,000 node files.
/// Bytes past the announced length are never looked at by [`parse_node`], so stopping there
/// reads what `fs::read` would.
fn read_node_file(file: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = File::open(file)?;
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    loop {
        if n == buf.len() {
            buf.resize(n * 2, 0);
        }
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if announced_len(&buf[..n]).is_some_and(|whole| n >= whole) {
            break;
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// The whole length (header line and data) a node file's header announces, once the header
/// line is in `bytes`; `None` for a header without `len=` and `crc=` (older files: their data
/// runs to the end of the file) or not read yet.
fn announced_len(bytes: &[u8]) -> Option<usize> {
    let nl = bytes.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&bytes[..nl]).ok()?;
    header.split(' ').find(|w| w.starts_with("crc="))?;
    let len = header
        .split(' ')
        .find_map(|w| w.strip_prefix("len="))?
        .parse::<usize>()
        .ok()?;
    (nl + 1).checked_add(len)
}

pub(crate) fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
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
        let inner = FsInner {
            journal: Journal::new(&root),
            root,
            owner: Mutex::new(None),
            closed: AtomicBool::new(false),
            poll: Duration::from_millis(100),
            journal_limit: DEFAULT_JOURNAL_LIMIT,
            journal_syncs: AtomicU64::new(0),
            file_syncs: AtomicU64::new(0),
            dir_syncs: AtomicU64::new(0),
            node_reads: AtomicU64::new(0),
            yields: AtomicU64::new(0),
            known: Known::default(),
            wake: Mutex::new(None),
        };
        inner.recover()?;
        Ok(FsCoordinator {
            inner: Arc::new(inner),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    /// The same coordinator checkpointing its journal past `bytes` (default 8 MiB; tests use
    /// small ones).
    pub fn with_journal_limit(mut self, bytes: u64) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.journal_limit = bytes;
        }
        self
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
            journal: self.inner.journal_syncs.load(Ordering::Relaxed),
            files: self.inner.file_syncs.load(Ordering::Relaxed),
            dirs: self.inner.dir_syncs.load(Ordering::Relaxed),
            node_reads: self.inner.node_reads.load(Ordering::Relaxed),
            yields: self.inner.yields.load(Ordering::Relaxed),
            catch_ups: self.inner.known.refreshes(),
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
        self.read_node(path, true)
    }

    /// Reads a node file. A file that fails its length or crc check is being rewritten in
    /// place by another process: `patient` reads it again for up to a second before calling
    /// it corrupt.
    fn read_node(&self, path: &str, patient: bool) -> Result<Option<Raw>> {
        self.let_others_run();
        let file = self.dir_of(path).join(NODE_FILE);
        let started = Instant::now();
        let mut pause = Duration::from_micros(20);
        loop {
            self.node_reads.fetch_add(1, Ordering::Relaxed);
            let bytes = match read_node_file(&file) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
                Err(e) => return Err(Error::io(path, e)),
            };
            match parse_node(&bytes) {
                Ok(raw) => return Ok(Some(raw)),
                Err(why) if !patient || started.elapsed() > Duration::from_secs(1) => {
                    return Err(Error::corrupt(path, why))
                }
                Err(_) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
            }
        }
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
        let at = self.known.refresh(&self.root, false);
        self.read_live_at(path, at, None)
    }

    /// [`Self::read_live`] of several nodes, catching up with the journal once.
    fn read_live_many<'a>(
        &self,
        paths: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<Option<Raw>>> {
        let at = self.known.refresh(&self.root, false);
        paths
            .into_iter()
            .map(|p| self.read_live_at(p, at, None))
            .collect()
    }

    /// [`Self::read_live`] holding the write lock: what is read from a file becomes known.
    fn read_held(&self, path: &str, held: Held) -> Result<Option<Raw>> {
        self.read_live_at(path, held.at, Some(held))
    }

    /// The live node at `path`: known (when `at` says what is known may be used), else read
    /// from its file (and learnt, when `held`).
    fn read_live_at(&self, path: &str, at: Option<u64>, held: Option<Held>) -> Result<Option<Raw>> {
        let known = at.and_then(|_| self.known.get(path));
        let raw = match known {
            Some(raw) => raw,
            None => {
                let raw = self.read_raw(path)?;
                if let Some(Held { at: Some(at) }) = held {
                    self.known.learn(path, &raw, at);
                }
                raw
            }
        };
        Ok(raw.filter(|raw| raw.owner.as_deref().is_none_or(|o| self.owner_alive(o))))
    }

    fn list_live(&self, path: &str) -> Result<Vec<String>> {
        Ok(self
            .children_live(path)?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// The live children of `path`, sorted by name, each read once (liveness is decided by
    /// the same read that returns the data).
    fn children_live(&self, path: &str) -> Result<Vec<(String, Raw)>> {
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
        let at = self.known.refresh(&self.root, false);
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(path, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // d_type from the directory listing: no stat per child.
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if name.starts_with('.') || !is_dir {
                continue;
            }
            if let Some(raw) = self.read_live_at(&join(path, &name), at, None)? {
                names.push((name, raw));
            }
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
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

    /// Makes `op` visible to every process: the node file replaced (written aside and renamed)
    /// or removed. Not fsynced: the journal record written before it is what makes it durable.
    fn apply(&self, op: &Op) -> Result<()> {
        self.let_others_run();
        let path = op.path();
        let dir = self.dir_of(path);
        match op {
            Op::Write {
                version,
                owner,
                data,
                ..
            } => {
                let bytes = encode_node(*version, owner.as_deref(), data);
                let node = dir.join(NODE_FILE);
                // Rewritten in place (readers check the header's length and crc): a new
                // file per write made ext4 look for a free inode every time, 100-200 µs a
                // node on a busy filesystem, most of a 16-slot write's time.
                match OpenOptions::new().write(true).open(&node) {
                    Ok(f) => {
                        use std::os::unix::fs::FileExt;
                        let shorter = f.metadata().map_err(|e| Error::io(path, e))?.len()
                            > bytes.len() as u64;
                        f.write_all_at(&bytes, 0)
                            .and_then(|()| {
                                if shorter {
                                    f.set_len(bytes.len() as u64)
                                } else {
                                    Ok(())
                                }
                            })
                            .map_err(|e| Error::io(path, e))
                    }
                    Err(e)
                        if e.kind() == io::ErrorKind::NotFound
                            || e.raw_os_error() == Some(libc::ENOTDIR) =>
                    {
                        // A new node appears whole: written aside, then renamed.
                        fs::create_dir_all(&dir).map_err(|e| Error::io(path, e))?;
                        let tmp = self.tmp_path();
                        fs::write(&tmp, &bytes)
                            .and_then(|()| fs::rename(&tmp, &node))
                            .map_err(|e| {
                                let _ = fs::remove_file(&tmp);
                                Error::io(path, e)
                            })
                    }
                    Err(e) => Err(Error::io(path, e)),
                }
            }
            Op::Delete { .. } => {
                match fs::remove_file(dir.join(NODE_FILE)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(path, e)),
                }
                let _ = fs::remove_dir(&dir);
                Ok(())
            }
        }
    }

    fn tmp_path(&self) -> PathBuf {
        self.root.join("tmp").join(format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Commits `ops` (called holding the write lock): one journal record, synced, then the node
    /// files; a journal past its limit is checkpointed.
    fn commit(&self, ops: &[Op], held: Held) -> Result<()> {
        let Some(first) = ops.first() else {
            return Ok(());
        };
        let record = journal::encode(ops);
        let mut appended = None;
        let size = match self.journal.append(&record) {
            Ok(n) => {
                appended = held.at;
                n
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // No journal yet (a root created after this coordinator was opened).
                self.known.forget();
                self.journal
                    .reset(&self.tmp_path(), journal::boot_id().unwrap_or("unknown"))
                    .and_then(|()| self.journal.append(&record))
                    .map_err(|e| Error::io(first.path(), e))?
            }
            Err(e) => {
                self.known.forget();
                return Err(Error::io(first.path(), e));
            }
        };
        self.journal_syncs.fetch_add(1, Ordering::Relaxed);
        for op in ops {
            if let Err(e) = self.apply(op) {
                self.known.forget();
                return Err(e);
            }
        }
        // Known from the record itself (the nodes are not read back), once the files say the
        // same: a reader on another thread must not see the new version node while the other
        // nodes of the record are still being written.
        match appended {
            Some(at) => self.known.appended(at, record.len(), size, ops),
            None => self.known.forget(),
        }
        if size > self.journal_limit {
            self.checkpoint(first.path())?;
        }
        Ok(())
    }

    /// Makes every node the journal names durable on its own (its file and its directory
    /// fsynced), then starts an empty journal. Holding the write lock.
    fn checkpoint(&self, why: &str) -> Result<()> {
        let contents = self.journal.read().map_err(|e| Error::io(why, e))?;
        let mut paths: Vec<&str> = contents.ops.iter().map(Op::path).collect();
        paths.sort_unstable();
        paths.dedup();
        self.sync_nodes(&paths)?;
        self.journal
            .reset(&self.tmp_path(), journal::boot_id().unwrap_or("unknown"))
            .map_err(|e| Error::io(why, e))
    }

    /// fsyncs the node files of `paths` that exist and the directories that hold or held them
    /// (a removed node's directory, or its parent's when that went too), in parallel.
    fn sync_nodes(&self, paths: &[&str]) -> Result<()> {
        let files: Vec<(PathBuf, &str)> = paths
            .iter()
            .map(|p| (self.dir_of(p).join(NODE_FILE), *p))
            .filter(|(f, _)| f.exists())
            .collect();
        self.parallel(&files, |(file, path)| {
            File::open(file)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(path, e))?;
            self.file_syncs.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })?;
        let mut dirs: Vec<(PathBuf, &str)> = Vec::new();
        for p in paths {
            let mut dir = self.dir_of(p);
            while !dir.exists() && dir.pop() {}
            dirs.push((dir.clone(), *p));
            if dir.pop() {
                dirs.push((dir, *p));
            }
        }
        dirs.sort_by(|a, b| a.0.cmp(&b.0));
        dirs.dedup_by(|a, b| a.0 == b.0);
        self.sync_dirs(&dirs)
    }

    /// Runs `f` over `items` on up to 8 threads (fsyncs of many small files: the journaling
    /// filesystem commits them together instead of one after the other).
    fn parallel<T: Sync>(&self, items: &[T], f: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
        if items.len() <= 1 {
            return items.iter().try_for_each(&f);
        }
        let f = &f;
        std::thread::scope(|sc| {
            let handles: Vec<_> = items
                .chunks(items.len().div_ceil(8))
                .map(|chunk| sc.spawn(move || chunk.iter().try_for_each(f)))
                .collect();
            let mut out = Ok(());
            for h in handles {
                let r = h.join().unwrap_or_else(|_| {
                    Err(Error::Backend {
                        path: String::new(),
                        backend: "filesystem",
                        cause: "fsync thread panicked".into(),
                    })
                });
                if out.is_ok() {
                    out = r;
                }
            }
            out
        })
    }

    /// After a reboot, brings the node files back to what the journal says was written (the
    /// machine may have stopped before the kernel wrote them), makes them durable and starts a
    /// new journal for this boot. A root that has no journal yet gets one. Cheap when the
    /// journal is this boot's: one read of its header.
    fn recover(&self) -> Result<()> {
        let boot = journal::boot_id();
        if !self.root.join("data").exists() {
            return Ok(());
        }
        let same = |b: Option<String>| boot.is_some() && b.as_deref() == boot;
        if same(self.journal.boot().map_err(|e| self.unavailable("/", e))?) {
            return Ok(());
        }
        self.ensure_root("/")?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("data.lck"))
            .map_err(|e| self.unavailable("/", e))?;
        lock_write(&lock, "/")?;
        let contents = self.journal.read().map_err(|e| self.unavailable("/", e))?;
        if same(contents.boot.clone()) {
            return Ok(());
        }
        // The last op of each path is its state.
        let mut last: BTreeMap<&str, &Op> = BTreeMap::new();
        for op in &contents.ops {
            last.insert(op.path(), op);
        }
        let mut repaired = 0usize;
        for op in last.values() {
            let current = match self.read_node(op.path(), false) {
                Ok(r) => r,
                Err(Error::Corrupt { .. }) => None,
                Err(e) => return Err(e),
            };
            let wanted = match op {
                Op::Write {
                    version,
                    owner,
                    data,
                    ..
                } => Some(Raw {
                    version: *version,
                    owner: owner.clone(),
                    data: data.clone(),
                }),
                Op::Delete { .. } => None,
            };
            let on_disk = self.dir_of(op.path()).join(NODE_FILE).exists();
            if current != wanted || (wanted.is_none() && on_disk) {
                self.apply(op)?;
                repaired += 1;
            }
        }
        let paths: Vec<&str> = last.keys().copied().collect();
        self.sync_nodes(&paths)?;
        self.journal
            .reset(&self.tmp_path(), boot.unwrap_or("unknown"))
            .map_err(|e| self.unavailable("/", e))?;
        if repaired > 0 || contents.torn > 0 {
            tracing::warn!(
                root = %self.root.display(),
                repaired,
                torn_bytes = contents.torn,
                "filesystem coordinator: replayed the journal of an earlier boot"
            );
        }
        Ok(())
    }

    /// fsyncs each of `dirs` (distinct directories), in parallel.
    fn sync_dirs(&self, dirs: &[(PathBuf, &str)]) -> Result<()> {
        self.parallel(dirs, |(dir, path)| {
            File::open(dir)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(path, e))?;
            self.dir_syncs.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    }
    /// Runs `f` holding the exclusive write lock; if it succeeds, appends `changed` to the
    /// change log and bumps the change counter.
    fn locked<T>(
        &self,
        path: &str,
        changed: &[&str],
        f: impl FnOnce(Held) -> Result<T>,
    ) -> Result<T> {
        self.ensure_root(path)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("data.lck"))
            .map_err(|e| self.unavailable(path, e))?;
        lock_write(&lock, path)?;
        let held = Held {
            at: self.known.refresh(&self.root, true),
        };
        let out = f(held);
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
    /// Brings `sig` (the signature of the watch on `path`) up to date after writes to
    /// `changed`, reading only what they touched; returns the paths whose entry changed.
    fn patch_signature(
        &self,
        path: &str,
        kind: WatchKind,
        sig: &mut BTreeMap<String, u64>,
        changed: &[String],
    ) -> Vec<String> {
        let touches = |p: &str| under(p, path);
        match kind {
            WatchKind::Data | WatchKind::Children => {
                if changed.iter().any(|p| touches(p)) {
                    let new = self.signature(path, kind);
                    let out = diff(sig, &new);
                    *sig = new;
                    out
                } else {
                    Vec::new()
                }
            }
            WatchKind::Tree => {
                // Caught up with the journal once for the whole batch, not once a node: a
                // 512-slot write made a watching proxy stat the journal 512 times in a row,
                // 4 ms of its CPU on the core that serves its clients (BENCHMARKS.md,
                // session 36).
                let known_at = self.known.refresh(&self.root, false);
                let mut out = Vec::new();
                let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
                for p in changed.iter().filter(|p| touches(p)) {
                    // The node and the ancestors it may have created, down from `path` (each
                    // read once however many written nodes share it).
                    let mut at = p.len();
                    loop {
                        let node = &p[..at];
                        if !seen.insert(node) {
                            break;
                        }
                        let now = match self.read_live_at(node, known_at, None) {
                            Ok(raw) => raw.as_ref().map(sig_entry),
                            Err(_) => sig.get(node).copied(),
                        };
                        if sig.get(node).copied() != now {
                            match now {
                                Some(v) => sig.insert(node.to_string(), v),
                                None => sig.remove(node),
                            };
                            out.push(node.to_string());
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
        self.locked(path, &[path], |held| {
            if self.read_held(path, held)?.is_some() {
                return Err(Error::Exists { path: path.into() });
            }
            let owner = if ephemeral {
                Some(self.owner_id(path)?)
            } else {
                None
            };
            let mut ops = Vec::new();
            self.missing_parents(path, &mut Vec::new(), &mut ops, held)?;
            ops.push(Op::Write {
                path: path.into(),
                version: 1,
                owner,
                data: data.to_vec(),
            });
            self.commit(&ops, held)?;
            Ok(1)
        })
    }

    /// Adds a write of an empty node for each ancestor of `path` that does not exist (and is
    /// not already in `made`, the parents this commit creates).
    fn missing_parents(
        &self,
        path: &str,
        made: &mut Vec<String>,
        ops: &mut Vec<Op>,
        held: Held,
    ) -> Result<()> {
        let mut end = 0;
        while let Some(i) = path[end + 1..].find('/') {
            end += 1 + i;
            let parent = &path[..end];
            if !made.iter().any(|m| m == parent) && self.read_held(parent, held)?.is_none() {
                made.push(parent.to_string());
                ops.push(Op::Write {
                    path: parent.into(),
                    version: 1,
                    owner: None,
                    data: Vec::new(),
                });
            }
        }
        Ok(())
    }

    fn update(&self, path: &str, data: &[u8], expected: Option<u64>) -> Result<u64> {
        self.locked(path, &[path], |held| {
            let mut ops = Vec::new();
            let (version, owner) = match (self.read_held(path, held)?, expected) {
                (None, None) => {
                    self.missing_parents(path, &mut Vec::new(), &mut ops, held)?;
                    (1, None)
                }
                (None, Some(_)) => return Err(Error::NotFound { path: path.into() }),
                (Some(cur), Some(v)) if cur.version != v => {
                    return Err(Error::Conflict {
                        path: path.into(),
                        expected: v,
                    })
                }
                (Some(cur), _) => (cur.version + 1, cur.owner),
            };
            ops.push(Op::Write {
                path: path.into(),
                version,
                owner,
                data: data.to_vec(),
            });
            self.commit(&ops, held)?;
            Ok(version)
        })
    }

    /// Several set-or-create writes under one lock and in one journal record.
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
        self.locked(first, &changed, |held| {
            let mut bumped = None;
            let mut all: Vec<(&str, std::borrow::Cow<'_, [u8]>)> = items
                .iter()
                .map(|(p, d)| (p.as_str(), std::borrow::Cow::Borrowed(d.as_slice())))
                .collect();
            if let Some(c) = counter {
                let v = match self.read_held(c, held)? {
                    Some(raw) => std::str::from_utf8(&raw.data)
                        .ok()
                        .and_then(|t| t.trim().parse::<u64>().ok())
                        .ok_or_else(|| Error::corrupt(c, "counter is not a number"))?,
                    None => 0,
                };
                bumped = Some(v + 1);
                all.push((c, std::borrow::Cow::Owned((v + 1).to_string().into_bytes())));
            }
            let mut ops = Vec::with_capacity(all.len() + 1);
            let mut made = Vec::new();
            for (path, data) in &all {
                let (version, owner) = match self.read_held(path, held)? {
                    Some(cur) => (cur.version + 1, cur.owner),
                    None => {
                        self.missing_parents(path, &mut made, &mut ops, held)?;
                        (1, None)
                    }
                };
                ops.push(Op::Write {
                    path: path.to_string(),
                    version,
                    owner,
                    data: data.to_vec(),
                });
            }
            self.commit(&ops, held)?;
            Ok(bumped)
        })
    }

    fn delete(&self, path: &str, expected: Option<u64>) -> Result<()> {
        self.locked(path, &[path], |held| {
            let cur = self
                .read_held(path, held)?
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
            self.commit(&[Op::Delete { path: path.into() }], held)
        })
    }
    /// `(path → version)` of every live node at or below `path`.
    fn tree(&self, path: &str, out: &mut BTreeMap<String, u64>, at: Option<u64>) -> Result<()> {
        if let Some(raw) = self.read_live_at(path, at, None)? {
            out.insert(path.to_string(), sig_entry(&raw));
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
                self.tree(&join(path, &name), out, at)?;
            }
        }
        Ok(())
    }

    fn signature(&self, path: &str, kind: WatchKind) -> BTreeMap<String, u64> {
        let mut sig = BTreeMap::new();
        match kind {
            WatchKind::Data => {
                if let Ok(Some(raw)) = self.read_live(path) {
                    sig.insert(path.to_string(), sig_entry(&raw));
                }
            }
            WatchKind::Children => {
                for name in self.list_live(path).unwrap_or_default() {
                    sig.insert(name, 0);
                }
            }
            WatchKind::Tree => {
                let at = self.known.refresh(&self.root, false);
                let _ = self.tree(path, &mut sig, at);
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

    async fn read_many(&self, paths: &[String]) -> Result<Vec<Option<Node>>> {
        let Some(first) = paths.first() else {
            return Ok(Vec::new());
        };
        for p in paths {
            validate_path(p)?;
        }
        let ps = paths.to_vec();
        self.blocking(first, move |i| {
            Ok(i.read_live_many(ps.iter().map(String::as_str))?
                .into_iter()
                .map(|raw| {
                    raw.map(|raw| Node {
                        data: raw.data,
                        version: raw.version,
                    })
                })
                .collect())
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
            Ok(i.children_live(&p)?
                .into_iter()
                .map(|(name, raw)| {
                    (
                        name,
                        Node {
                            data: raw.data,
                            version: raw.version,
                        },
                    )
                })
                .collect())
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
            let mut last_tick = Instant::now();
            let mut last_rescan = Instant::now();
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
                // Once a second a look happens even without a write: an ephemeral vanishes
                // when its owner dies, which writes nothing.
                let tick = !woken && last_tick.elapsed() >= Duration::from_secs(1);
                // A tree watch then re-reads its ephemeral nodes only (a product's tree is
                // 1,000+ nodes: re-reading them all each second cost every watching proxy
                // ~2% of a core); its whole subtree only every FULL_RESCAN, as a safety net.
                let light = kind == WatchKind::Tree && last_rescan.elapsed() < FULL_RESCAN;
                let full = tick && !light;
                // The signature goes to the blocking thread and comes back patched (not
                // copied: a product's tree is 1,000+ nodes and writes come by the hundred).
                let mut cur = std::mem::take(&mut sig);
                let mut pos = log_pos;
                let res = tokio::task::spawn_blocking(move || {
                    let s = i2.seq();
                    if s == seq && !tick {
                        return (cur, None);
                    }
                    // Only the paths written since the last look, when the log can tell them.
                    let mut delta = i2.log_delta(&mut pos);
                    if let (true, Some(paths)) = (tick && !full, delta.as_mut()) {
                        paths.extend(
                            cur.iter()
                                .filter(|(_, v)| **v & SIG_EPHEMERAL != 0)
                                .map(|(p, _)| p.clone()),
                        );
                    }
                    let rescan = full || delta.is_none();
                    let changed = match delta {
                        Some(paths) if !full => i2.patch_signature(&p2, kind, &mut cur, &paths),
                        _ => {
                            let new = i2.signature(&p2, kind);
                            let changed = diff(&cur, &new);
                            cur = new;
                            changed
                        }
                    };
                    (cur, Some((s, pos, rescan, changed)))
                })
                .await;
                let (back, news) = match res {
                    Ok(r) => r,
                    Err(_) => {
                        // The blocking call failed and took the signature with it: the next
                        // look cannot follow the log and rescans.
                        log_pos = None;
                        continue;
                    }
                };
                sig = back;
                let Some((s, pos, rescanned, changed)) = news else {
                    continue;
                };
                seq = s;
                log_pos = pos;
                if tick || rescanned {
                    last_tick = Instant::now();
                }
                if rescanned {
                    last_rescan = Instant::now();
                }
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

/// Node files a thread handles between two [`FsInner::let_others_run`] yields.
const FILES_PER_YIELD: u32 = 32;

thread_local! {
    /// Node files this thread handled since its last yield.
    static FILES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

impl FsInner {
    /// Called once per node file read or written: every [`FILES_PER_YIELD`] files, offers the
    /// CPU to whatever else is runnable on it (`sched_yield`).
    ///
    /// Reading or rewriting hundreds of nodes (a topology read of 1,024 slots, a migration's
    /// pending actions) is milliseconds of CPU without a pause. The kernel does not always
    /// preempt such a run when a request's thread wakes on the same CPU: the request then
    /// waits for the next scheduler tick, up to 4 ms at HZ=250 (BENCHMARKS.md, session 35).
    /// The coordinator runs in the proxy, beside its request threads, and in codisctl, beside
    /// anything, so it yields instead. With nothing else runnable a yield costs a system
    /// call, about 1 µs: under 1% of 32 file operations.
    fn let_others_run(&self) {
        let due = FILES.with(|c| {
            let n = c.get() + 1;
            c.set(if n >= FILES_PER_YIELD { 0 } else { n });
            n >= FILES_PER_YIELD
        });
        if due {
            self.yields.fetch_add(1, Ordering::Relaxed);
            std::thread::yield_now();
        }
    }
}
