//! The write-ahead journal of the filesystem coordinator ([`crate::fs`]).
//!
//! A write to the node tree first appends one record holding the whole new content of every
//! node it touches to `R/journal` and fdatasyncs that one file; then the node files are
//! replaced (written to R/tmp and renamed, without fsync). A write therefore costs one small
//! fsync whatever the number of nodes it changes (a migration wave writes 16–512 slot nodes;
//! one fsync and one directory fsync per node made every coordinator write take 10–40 ms on
//! this project's machines, and 2.5 s for a 512-slot `slot migrate`).
//!
//! The node files are always the truth for readers in every process: the page cache holds them
//! whether or not they reached the disk, and a killed process loses nothing that it renamed.
//! What the journal protects against is the machine going down before the kernel wrote the node
//! files back. The journal's header names the boot (`/proc/sys/kernel/random/boot_id`) whose
//! writes it holds; a coordinator opened in a later boot replays it (the last content of each
//! node named in it), fsyncs the repaired nodes and starts a new journal. Past a size limit
//! (a checkpoint) the nodes named in the journal are fsynced and the journal starts again.
//!
//! Format: a header line `#codis-rs-journal boot=<id>` then records, each `J`, the payload
//! length (u32 LE), its crc32 (u32 LE) and the payload: entries `W` (path, version, owner, data)
//! and `D` (path), lengths as u32 LE and the version as u64 LE. A torn last record (the machine
//! stopped during an append that was never acknowledged) fails its length or crc check and
//! ends the replay.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub(crate) const HEADER: &str = "#codis-rs-journal";

/// One change to the node tree, as journaled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// The node at `path` now holds `data` at `version`, owned by `owner` when ephemeral.
    Write {
        path: String,
        version: u64,
        owner: Option<String>,
        data: Vec<u8>,
    },
    /// The node at `path` is gone.
    Delete { path: String },
}

impl Op {
    pub(crate) fn path(&self) -> &str {
        match self {
            Op::Write { path, .. } | Op::Delete { path } => path,
        }
    }
}

/// This boot's id, `None` where the kernel does not say (then every open replays the journal:
/// correct, only slower).
pub(crate) fn boot_id() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
    })
    .as_deref()
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// One record holding `ops`.
pub(crate) fn encode(ops: &[Op]) -> Vec<u8> {
    let mut payload = Vec::new();
    for op in ops {
        match op {
            Op::Write {
                path,
                version,
                owner,
                data,
            } => {
                payload.push(b'W');
                put_bytes(&mut payload, path.as_bytes());
                payload.extend_from_slice(&version.to_le_bytes());
                put_bytes(&mut payload, owner.as_deref().unwrap_or("").as_bytes());
                put_bytes(&mut payload, data);
            }
            Op::Delete { path } => {
                payload.push(b'D');
                put_bytes(&mut payload, path.as_bytes());
            }
        }
    }
    let mut rec = Vec::with_capacity(payload.len() + 9);
    rec.push(b'J');
    rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    rec.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    rec.extend_from_slice(&payload);
    rec
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.buf.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

fn decode_payload(p: &[u8]) -> Option<Vec<Op>> {
    let mut r = Reader { buf: p, at: 0 };
    let mut ops = Vec::new();
    while r.at < p.len() {
        match r.take(1)?[0] {
            b'W' => {
                let path = r.string()?;
                let version = r.u64()?;
                let owner = r.string()?;
                let data = r.bytes()?.to_vec();
                ops.push(Op::Write {
                    path,
                    version,
                    owner: (!owner.is_empty()).then_some(owner),
                    data,
                });
            }
            b'D' => ops.push(Op::Delete { path: r.string()? }),
            _ => return None,
        }
    }
    Some(ops)
}

/// What a journal file holds.
#[derive(Debug, Default)]
pub(crate) struct Contents {
    /// The boot named in the header (`None`: no journal, or a header this version cannot read).
    pub boot: Option<String>,
    /// The ops of every whole record, oldest first.
    pub ops: Vec<Op>,
    /// Bytes after the last whole record (a torn append).
    pub torn: usize,
}

/// Parses a journal file's bytes.
pub(crate) fn parse(bytes: &[u8]) -> Contents {
    let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
        return Contents::default();
    };
    let header = std::str::from_utf8(&bytes[..nl]).unwrap_or("");
    let mut words = header.split(' ');
    if words.next() != Some(HEADER) {
        return Contents::default();
    }
    let boot = words
        .find_map(|w| w.strip_prefix("boot="))
        .map(str::to_string);
    let mut out = Contents {
        boot,
        ..Contents::default()
    };
    let body = &bytes[nl + 1..];
    let (ops, whole) = parse_records(body);
    out.ops = ops;
    out.torn = body.len() - whole;
    out
}

/// The ops of the whole records at the start of `bytes` (records only, no header), oldest
/// first, and how many bytes those records take: the rest is a record still being appended,
/// or a torn one.
pub(crate) fn parse_records(bytes: &[u8]) -> (Vec<Op>, usize) {
    let mut r = Reader { buf: bytes, at: 0 };
    let mut ops = Vec::new();
    while r.at < bytes.len() {
        let start = r.at;
        let whole = (|| {
            if r.take(1)? != b"J" {
                return None;
            }
            let len = r.u32()? as usize;
            let crc = r.u32()?;
            let payload = r.take(len)?;
            if crc32fast::hash(payload) != crc {
                return None;
            }
            decode_payload(payload)
        })();
        match whole {
            Some(o) => ops.extend(o),
            None => return (ops, start),
        }
    }
    (ops, bytes.len())
}

/// The journal file of a coordinator root.
pub(crate) struct Journal {
    path: PathBuf,
}

impl Journal {
    pub(crate) fn new(root: &Path) -> Journal {
        Journal {
            path: root.join("journal"),
        }
    }

    /// Its contents (empty when there is no journal yet).
    pub(crate) fn read(&self) -> io::Result<Contents> {
        match fs::read(&self.path) {
            Ok(b) => Ok(parse(&b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Contents::default()),
            Err(e) => Err(e),
        }
    }

    /// The boot named by the header, read without the records.
    pub(crate) fn boot(&self) -> io::Result<Option<String>> {
        use std::io::Read;
        let mut head = [0u8; 256];
        let n = match File::open(&self.path) {
            Ok(mut f) => f.read(&mut head)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let head = &head[..n];
        let line = match head.iter().position(|&b| b == b'\n') {
            Some(nl) => &head[..nl],
            None => return Ok(None),
        };
        Ok(parse(&[line, b"\n"].concat()).boot)
    }

    /// Appends one record and waits until it is on disk; returns the journal's new size.
    pub(crate) fn append(&self, record: &[u8]) -> io::Result<u64> {
        let mut f = OpenOptions::new().append(true).open(&self.path)?;
        f.write_all(record)?;
        f.sync_data()?;
        Ok(f.metadata()?.len())
    }

    /// Replaces the journal with an empty one for `boot` (durably: written aside, fsynced,
    /// renamed, directory fsynced).
    pub(crate) fn reset(&self, tmp: &Path, boot: &str) -> io::Result<()> {
        let mut f = File::create(tmp)?;
        writeln!(f, "{HEADER} boot={boot}")?;
        f.sync_all()?;
        drop(f);
        fs::rename(tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(path: &str, version: u64, owner: Option<&str>, data: &[u8]) -> Op {
        Op::Write {
            path: path.into(),
            version,
            owner: owner.map(Into::into),
            data: data.to_vec(),
        }
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_cut_off() {
        let a = vec![w("/a", 1, None, b"x"), w("/a/b", 7, Some("o-1"), b"")];
        let b = vec![
            Op::Delete {
                path: "/a/b".into(),
            },
            w("/c", 2, None, &[0u8; 300]),
        ];
        let mut file = format!("{HEADER} boot=abc\n").into_bytes();
        file.extend(encode(&a));
        file.extend(encode(&b));
        let whole = parse(&file);
        assert_eq!(whole.boot.as_deref(), Some("abc"));
        assert_eq!(whole.ops, [a.clone(), b.clone()].concat());
        assert_eq!(whole.torn, 0);
        // Every cut inside the last record leaves exactly the first one.
        let first_end = format!("{HEADER} boot=abc\n").len() + encode(&a).len();
        for cut in first_end + 1..file.len() {
            let c = parse(&file[..cut]);
            assert_eq!(c.ops, a, "cut at {cut}");
            assert_eq!(c.torn, cut - first_end);
        }
        // A flipped byte in the payload fails the crc.
        let mut bad = file.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert_eq!(parse(&bad).ops, a);
    }

    #[test]
    fn a_file_without_a_header_holds_nothing() {
        assert!(parse(b"").ops.is_empty());
        assert!(parse(b"garbage\nJ").boot.is_none());
    }
}
