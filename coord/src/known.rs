//! What a filesystem coordinator ([`crate::fs`]) knows of node files without reading them: the
//! content of nodes as the journal last recorded them.
//!
//! Every write to the node tree, by any process, appends the new content of the nodes it
//! changes to `R/journal` before it touches a node file, holding the write lock; the journal
//! only grows until it is replaced by a new file (a checkpoint, a recovery). So a process that
//! holds the journal open and has parsed it up to offset `end` knows, for every node a record
//! since it started following names, the content that node has (or is about to have: the
//! writer rewrites the file right after its record is durable). A node it knows is answered
//! without opening its file: a 512-slot migration read its slot nodes back ~13,000 times, three
//! system calls each, right after writing them itself.
//!
//! What is known, and why it stays true:
//! - the nodes named by records parsed from the followed journal, but only records that were
//!   whole while no writer held the write lock (`R/data.lck` taken shared for an instant), so
//!   that their node files are written too: what is known is never ahead of the files (a
//!   reader that saw the new version node from a record while the slot nodes of the same
//!   record were still being created would take a torn snapshot for a whole one). This
//!   process's own writes are taken from the record they append once their files are written,
//!   not read back;
//! - nodes read from their files *while holding the write lock* right after catching up with
//!   the journal: no writer is between its record and its files then. A read without the lock
//!   teaches nothing (its file may be behind a record already parsed);
//! - a journal that is no longer the file at `R/journal` (another inode: checkpointed,
//!   recovered) or shorter than `end` makes everything unknown again. The followed file is
//!   held open, so its inode number cannot be reused meanwhile;
//! - bytes after `end` that are not whole records, seen while no writer held the lock, are a
//!   torn record left by a killed writer: everything unknown again, following on from the end;
//! - a write of this process that fails after its record makes everything unknown again. (A
//!   write of another process that fails after its record leaves the journal, the durable
//!   truth replayed after a reboot, ahead of the files it did not write: what is known then
//!   follows the journal.)

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Mutex;

use crate::fs::{flock, Raw};
use crate::journal::{parse_records, Op};

/// Nodes known from the journal (see the module doc).
#[derive(Default)]
pub(crate) struct Known {
    state: Mutex<State>,
    /// Calls of [`Known::refresh`] (each at least a `stat` of the journal).
    refreshes: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct State {
    /// The journal followed (held open), with its device and inode numbers.
    file: Option<(File, u64, u64)>,
    /// `R/data.lck`, opened once, taken shared to see the journal with no writer in it.
    lock: Option<File>,
    /// Offset up to which its records are in `nodes`.
    end: u64,
    /// Path → its content (`None`: no node there), as of `end`.
    nodes: HashMap<String, Option<Raw>>,
    /// The buffer new records are read into, kept from one refresh to the next: a fresh one
    /// each time meant fresh pages for the kernel to zero, the longest part of a proxy's
    /// catching up with a big write on a VM (BENCHMARKS.md, session 35).
    buf: Vec<u8>,
}

/// A read buffer grown past this is dropped after use rather than kept.
const KEEP_BUF: usize = 1 << 20;

impl State {
    /// The followed journal's size, read holding the write lock shared: `None` if a writer
    /// holds it (or the lock file cannot be opened).
    fn quiet_size(&mut self, lock: &Path) -> Option<u64> {
        if self.lock.is_none() {
            self.lock = File::open(lock).ok();
        }
        let lock = self.lock.as_ref()?;
        flock(lock, libc::LOCK_SH | libc::LOCK_NB).ok()?;
        let size = self
            .file
            .as_ref()
            .and_then(|(f, _, _)| f.metadata().ok())
            .map(|m| m.len());
        let _ = flock(lock, libc::LOCK_UN);
        size
    }

    fn forget(&mut self) {
        self.file = None;
        self.end = 0;
        self.nodes.clear();
    }

    fn learn_ops(&mut self, ops: Vec<Op>) {
        for op in ops {
            match op {
                Op::Write {
                    path,
                    version,
                    owner,
                    data,
                } => {
                    self.nodes.insert(
                        path,
                        Some(Raw {
                            version,
                            owner,
                            data,
                        }),
                    );
                }
                Op::Delete { path } => {
                    self.nodes.insert(path, None);
                }
            }
        }
    }
}

impl Known {
    /// Catches up with the journal of the coordinator root `root`; `Some(end)` when what is
    /// known may be used, `None` when the nodes must be read from their files this time (a
    /// writer is at work). `locked`: the caller holds the write lock.
    pub(crate) fn refresh(&self, root: &Path, locked: bool) -> Option<u64> {
        self.refreshes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let journal = root.join("journal");
        let journal = journal.as_path();
        let mut st = self.state.lock().ok()?;
        let Ok(meta) = fs::metadata(journal) else {
            st.forget();
            return None;
        };
        let same = st
            .file
            .as_ref()
            .is_some_and(|(_, dev, ino)| *dev == meta.dev() && *ino == meta.ino());
        if !same || meta.len() < st.end {
            // A journal not followed yet: nothing is known of what came before its end.
            st.forget();
            let f = File::open(journal).ok()?;
            let m = f.metadata().ok()?;
            st.file = Some((f, m.dev(), m.ino()));
            st.end = m.len();
            return Some(st.end);
        }
        if meta.len() == st.end {
            return Some(st.end);
        }
        // The journal grew: its size while no writer is at work (every record up to it has
        // its files written).
        let size = if locked {
            meta.len()
        } else {
            st.quiet_size(&root.join("data.lck"))?
        };
        if size > st.end {
            let mut buf = std::mem::take(&mut st.buf);
            buf.clear();
            buf.resize((size - st.end) as usize, 0);
            let read = match &st.file {
                Some((f, _, _)) => f.read_exact_at(&mut buf, st.end),
                None => return None,
            };
            if read.is_err() {
                st.forget();
                return None;
            }
            let (ops, whole) = parse_records(&buf);
            let torn = whole < buf.len();
            if buf.capacity() <= KEEP_BUF {
                st.buf = buf;
            }
            st.learn_ops(ops);
            st.end = size;
            if torn {
                // Torn by a writer killed mid-append (none is appending): what follows it
                // cannot be parsed, so nothing known can be trusted. Follow on from the end.
                st.nodes.clear();
            }
        }
        Some(st.end)
    }

    /// How many times [`Known::refresh`] was called.
    pub(crate) fn refreshes(&self) -> u64 {
        self.refreshes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What is known of `path`: `Some(None)` for a node known to be absent, `None` when
    /// unknown.
    pub(crate) fn get(&self, path: &str) -> Option<Option<Raw>> {
        self.state.lock().ok()?.nodes.get(path).cloned()
    }

    /// Records `raw`, read from the file of `path` holding the write lock after a
    /// [`Known::refresh`] that returned `at`.
    pub(crate) fn learn(&self, path: &str, raw: &Option<Raw>, at: u64) {
        if let Ok(mut st) = self.state.lock() {
            if st.file.is_some() && st.end == at {
                st.nodes.insert(path.to_string(), raw.clone());
            }
        }
    }

    /// This process appended a record of `ops`, `len` bytes, holding the write lock after a
    /// [`Known::refresh`] that returned `at`; the journal is now `size` bytes long.
    pub(crate) fn appended(&self, at: u64, len: usize, size: u64, ops: &[Op]) {
        if let Ok(mut st) = self.state.lock() {
            if st.file.is_none() || at + len as u64 != size {
                st.forget();
            } else if st.end == at {
                st.learn_ops(ops.to_vec());
                st.end = size;
            } else if st.end != size {
                st.forget();
            }
            // (st.end == size: a reader on another thread already parsed the record.)
        }
    }

    /// Makes everything unknown (a write of this process failed half-way).
    pub(crate) fn forget(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{encode, Journal};

    fn w(path: &str, version: u64, data: &[u8]) -> Op {
        Op::Write {
            path: path.into(),
            version,
            owner: None,
            data: data.to_vec(),
        }
    }

    /// Refreshes read each new record into the buffer kept from the last one: a small record
    /// after a big one is read alone (nothing of the big one's bytes is parsed again or taken
    /// for a torn tail), and what was learnt before stays known.
    #[test]
    fn refresh_follows_records_through_one_reused_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("data.lck"), b"").unwrap();
        let j = Journal::new(root);
        j.reset(&root.join("journal.tmp"), "test-boot").unwrap();
        let known = Known::default();
        let start = known.refresh(root, true).expect("journal followed");
        let big: Vec<Op> = (0..200)
            .map(|i| w(&format!("/s/slot-{i:04}"), 1, &[b'x'; 100]))
            .collect();
        let size = j.append(&encode(&big)).unwrap();
        assert_eq!(known.refresh(root, false), Some(size));
        assert!(size > start);
        let small = vec![
            w("/s/slot-0007", 2, b"moved"),
            Op::Delete {
                path: "/s/slot-0008".into(),
            },
        ];
        let size2 = j.append(&encode(&small)).unwrap();
        assert_eq!(known.refresh(root, false), Some(size2));
        let get = |p: &str| known.get(p).expect("known");
        assert_eq!(get("/s/slot-0007").unwrap().data, b"moved");
        assert_eq!(get("/s/slot-0007").unwrap().version, 2);
        assert_eq!(get("/s/slot-0008"), None);
        assert_eq!(get("/s/slot-0199").unwrap().data, vec![b'x'; 100]);
        // Nothing new: the same end, and still known.
        assert_eq!(known.refresh(root, false), Some(size2));
        assert_eq!(get("/s/slot-0000").unwrap().version, 1);
    }
}
