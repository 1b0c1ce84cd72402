//! Whole RDB files: an incremental writer ([`RdbWriter`], plus the free functions it is made of
//! so a shard can serialise its keys into a plain buffer) and a pull reader ([`FileReader`]).
//!
//! # Layout written (what Redis 7.0's `rdbSaveRio` writes, minus functions and modules)
//! ```text
//! "REDIS0009"                       magic + 4-digit version
//! FA redis-ver FA redis-bits FA ctime FA used-mem …      AUX fields
//! FE <db> FB <keys> <expires>       SELECTDB, RESIZEDB       (per non-empty database)
//! [FC <ms u64 LE>] <type> <key> <value>                     (per key)
//! FF <crc64 LE>                     EOF + CRC-64/Redis of every byte before it
//! ```
//! The reader accepts versions 1–10 (Redis ≤ 7.0), AUX, SELECTDB, RESIZEDB, EXPIRETIME (s and
//! ms), FREQ and IDLE hints, every value encoding [`crate::object::read_value`] reads, and
//! verifies a non-zero checksum. Functions, module data and streams are refused with an error
//! that names them. Like every reader in this crate it never panics on hostile bytes.

use std::io::{self, Write};

use bytes::Bytes;
use crc::{Crc, Digest, Table, CRC_64_REDIS};
use thiserror::Error;

use crate::error::DecodeError;
use crate::length::{read_len, write_len};
use crate::object::{read_value, value_type, write_value};
use crate::reader::Reader;
use crate::string::{read_string, write_string};
use crate::value::Value;

/// The RDB version written in the header: 9 (Redis 5.0–6.2); Redis 5.0 and later, Redis 7.0's
/// `redis-check-rdb` and codis-rs read it. Our value types (0–5) exist in every version since 8.
pub const FILE_RDB_VERSION: u16 = 9;
/// The newest file version we read (Redis 7.0 writes 10).
pub const MAX_FILE_VERSION: u16 = 10;

/// Opcode: function library (Redis 7.0 `FUNCTION2`).
pub const OP_FUNCTION2: u8 = 0xF5;
/// Opcode: function (Redis 7.0 release candidates).
pub const OP_FUNCTION: u8 = 0xF6;
/// Opcode: module auxiliary data.
pub const OP_MODULE_AUX: u8 = 0xF7;
/// Opcode: LRU idle time of the next key.
pub const OP_IDLE: u8 = 0xF8;
/// Opcode: LFU frequency of the next key.
pub const OP_FREQ: u8 = 0xF9;
/// Opcode: auxiliary field (two strings).
pub const OP_AUX: u8 = 0xFA;
/// Opcode: database size hints (keys, keys with expiry).
pub const OP_RESIZEDB: u8 = 0xFB;
/// Opcode: expiry of the next key, unix ms, u64 LE.
pub const OP_EXPIRETIME_MS: u8 = 0xFC;
/// Opcode: expiry of the next key, unix seconds, u32 LE.
pub const OP_EXPIRETIME: u8 = 0xFD;
/// Opcode: select database.
pub const OP_SELECTDB: u8 = 0xFE;
/// Opcode: end of file (followed by the checksum when version ≥ 5).
pub const OP_EOF: u8 = 0xFF;

/// Slice-by-16 tables: several times faster than the byte table on large files (a 1 GB
/// snapshot's checksum is written by the saver and verified by the loader).
static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// An incremental CRC-64/Redis, for callers that write a file's bytes in pieces themselves.
pub struct Crc64(Digest<'static, u64, Table<16>>);

impl Crc64 {
    pub fn new() -> Self {
        Crc64(CRC64.digest())
    }
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes)
    }
    pub fn finalize(self) -> u64 {
        self.0.finalize()
    }
}

impl Default for Crc64 {
    fn default() -> Self {
        Self::new()
    }
}

/// Append the magic and version: `REDIS0009`.
pub fn write_header(out: &mut Vec<u8>, version: u16) {
    out.extend_from_slice(format!("REDIS{version:04}").as_bytes());
}

/// Append an AUX field with a string value.
pub fn write_aux(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.push(OP_AUX);
    write_string(out, key, false);
    write_string(out, value, false);
}

/// Append a library of functions (`FUNCTION2`: the library's whole code).
pub fn write_function(out: &mut Vec<u8>, code: &[u8]) {
    out.push(OP_FUNCTION2);
    write_string(out, code, true);
}

/// Append SELECTDB.
pub fn write_select_db(out: &mut Vec<u8>, db: u64) {
    out.push(OP_SELECTDB);
    write_len(out, db);
}

/// Append RESIZEDB with the database's key and volatile-key counts.
pub fn write_resize_db(out: &mut Vec<u8>, keys: u64, expires: u64) {
    out.push(OP_RESIZEDB);
    write_len(out, keys);
    write_len(out, expires);
}

/// Append what precedes a value: its expiry (if any), its type byte and its key. Callers that
/// encode values themselves follow with the body of type `ty`.
pub fn write_key_header(out: &mut Vec<u8>, expire_ms: Option<u64>, ty: u8, key: &[u8]) {
    if let Some(ms) = expire_ms {
        out.push(OP_EXPIRETIME_MS);
        out.extend_from_slice(&ms.to_le_bytes());
    }
    out.push(ty);
    write_string(out, key, false);
}

/// Append one key: expiry, type, key and value (strings over 20 bytes LZF-compressed).
pub fn write_entry(out: &mut Vec<u8>, key: &[u8], expire_ms: Option<u64>, value: &Value) {
    write_key_header(out, expire_ms, value_type(value), key);
    write_value(out, value, true);
}

/// An RDB file written incrementally to `W`, with the checksum computed on the way.
pub struct RdbWriter<W: Write> {
    inner: W,
    digest: Digest<'static, u64, Table<16>>,
    buf: Vec<u8>,
}

impl<W: Write> RdbWriter<W> {
    /// Start a file: writes the header (version [`FILE_RDB_VERSION`]).
    pub fn new(inner: W) -> io::Result<Self> {
        let mut w = RdbWriter {
            inner,
            digest: CRC64.digest(),
            buf: Vec::with_capacity(64),
        };
        let mut h = Vec::new();
        write_header(&mut h, FILE_RDB_VERSION);
        w.raw(&h)?;
        Ok(w)
    }

    /// Append bytes already in RDB form (keys serialised elsewhere with [`write_entry`]).
    pub fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.digest.update(bytes);
        self.inner.write_all(bytes)
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        let b = std::mem::take(&mut self.buf);
        let r = self.raw(&b);
        self.buf = b;
        self.buf.clear();
        r
    }

    /// Append an AUX field.
    pub fn aux(&mut self, key: &str, value: &str) -> io::Result<()> {
        write_aux(&mut self.buf, key.as_bytes(), value.as_bytes());
        self.flush_buf()
    }

    /// Append a library of functions.
    pub fn function(&mut self, code: &[u8]) -> io::Result<()> {
        write_function(&mut self.buf, code);
        self.flush_buf()
    }

    /// Append SELECTDB and RESIZEDB.
    pub fn select_db(&mut self, db: u64, keys: u64, expires: u64) -> io::Result<()> {
        write_select_db(&mut self.buf, db);
        write_resize_db(&mut self.buf, keys, expires);
        self.flush_buf()
    }

    /// Append one key.
    pub fn entry(&mut self, key: &[u8], expire_ms: Option<u64>, value: &Value) -> io::Result<()> {
        write_entry(&mut self.buf, key, expire_ms, value);
        self.flush_buf()
    }

    /// Append EOF and the checksum; returns the inner writer (not flushed or synced).
    pub fn finish(mut self) -> io::Result<W> {
        self.digest.update(&[OP_EOF]);
        self.inner.write_all(&[OP_EOF])?;
        let crc = self.digest.finalize();
        self.inner.write_all(&crc.to_le_bytes())?;
        Ok(self.inner)
    }
}

/// Why a whole RDB file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FileError {
    /// The file does not start with `REDIS` and four digits.
    #[error("wrong signature trying to load DB from file (not an RDB file)")]
    BadMagic,
    /// A version we cannot read.
    #[error("can't handle RDB format version {0}")]
    Version(u16),
    /// The bytes at `offset` do not parse.
    #[error("bad RDB data at byte {offset}: {source}")]
    Decode {
        offset: usize,
        #[source]
        source: DecodeError,
    },
    /// Content we do not serve (functions, module data, streams…).
    #[error("unsupported RDB content at byte {offset}: {what}")]
    Unsupported { offset: usize, what: String },
    /// The stored checksum differs from the computed one.
    #[error("wrong RDB checksum: expected {expected:016x}, got {got:016x}")]
    Checksum { expected: u64, got: u64 },
}

/// One key read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The database selected when the key was read.
    pub db: u64,
    pub key: Bytes,
    pub value: Value,
    /// Absolute expiry in unix milliseconds.
    pub expire_ms: Option<u64>,
}

/// What [`FileReader::next_item`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An AUX field.
    Aux(Bytes, Bytes),
    /// SELECTDB.
    SelectDb(u64),
    /// RESIZEDB hints.
    ResizeDb { keys: u64, expires: u64 },
    /// A key.
    Entry(Entry),
    /// A library of functions (Redis 7's `FUNCTION2` record): its whole code.
    Function(Bytes),
}

/// A pull reader over a whole file in memory: header checked by [`FileReader::new`], then one
/// item at a time; the checksum is verified when EOF is reached.
pub struct FileReader<'a> {
    buf: &'a [u8],
    r: Reader<'a>,
    version: u16,
    db: u64,
    done: bool,
}

impl<'a> FileReader<'a> {
    /// Check the magic and version.
    pub fn new(buf: &'a [u8]) -> Result<Self, FileError> {
        let magic = buf.get(..9).ok_or(FileError::BadMagic)?;
        if &magic[..5] != b"REDIS" || !magic[5..].iter().all(u8::is_ascii_digit) {
            return Err(FileError::BadMagic);
        }
        let version = magic[5..]
            .iter()
            .fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
        if version == 0 || version > MAX_FILE_VERSION {
            return Err(FileError::Version(version));
        }
        let mut r = Reader::new(buf);
        r.take(9).map_err(|e| decode(0, e))?;
        Ok(FileReader {
            buf,
            r,
            version,
            db: 0,
            done: false,
        })
    }

    /// The file's RDB version.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.r.position()
    }

    /// The next item, or `None` after EOF (and a good checksum).
    pub fn next_item(&mut self) -> Result<Option<Item>, FileError> {
        if self.done {
            return Ok(None);
        }
        let mut expire_ms = None;
        loop {
            let at = self.r.position();
            let op = self.r.u8().map_err(|e| decode(at, e))?;
            let res: Result<Option<Item>, DecodeError> = match op {
                OP_EOF => {
                    self.done = true;
                    return self.check_sum().map(|_| None);
                }
                OP_AUX => (|| {
                    Ok(Some(Item::Aux(
                        read_string(&mut self.r)?,
                        read_string(&mut self.r)?,
                    )))
                })(),
                OP_SELECTDB => read_len(&mut self.r).map(|db| {
                    self.db = db;
                    Some(Item::SelectDb(db))
                }),
                OP_RESIZEDB => (|| {
                    let keys = read_len(&mut self.r)?;
                    let expires = read_len(&mut self.r)?;
                    Ok(Some(Item::ResizeDb { keys, expires }))
                })(),
                OP_EXPIRETIME_MS => self.r.u64_le().map(|ms| {
                    expire_ms = Some(ms);
                    None
                }),
                OP_EXPIRETIME => self.r.u32_le().map(|s| {
                    expire_ms = Some(u64::from(s) * 1000);
                    None
                }),
                OP_FREQ => self.r.u8().map(|_| None),
                OP_IDLE => read_len(&mut self.r).map(|_| None),
                OP_FUNCTION2 => read_string(&mut self.r).map(|code| Some(Item::Function(code))),
                OP_FUNCTION => return Err(unsupported(at, "pre-GA functions (FUNCTION opcode)")),
                OP_MODULE_AUX => return Err(unsupported(at, "module auxiliary data")),
                6 | 7 => return Err(unsupported(at, "module value type")),
                15 | 19 | 21 => return Err(unsupported(at, "stream value type")),
                ty => (|| {
                    let key = read_string(&mut self.r)?;
                    let value = read_value(ty, &mut self.r)?;
                    Ok(Some(Item::Entry(Entry {
                        db: self.db,
                        key,
                        value,
                        expire_ms,
                    })))
                })(),
            };
            match res {
                Ok(Some(item)) => return Ok(Some(item)),
                Ok(None) => continue,
                Err(DecodeError::UnsupportedType(t)) => {
                    return Err(unsupported(at, &format!("value type {t}")))
                }
                Err(e) => return Err(decode(at, e)),
            }
        }
    }

    /// The next key, skipping AUX, SELECTDB and RESIZEDB; `None` after EOF.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, FileError> {
        while let Some(item) = self.next_item()? {
            if let Item::Entry(e) = item {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    fn check_sum(&mut self) -> Result<(), FileError> {
        if self.version < 5 {
            return Ok(());
        }
        let end = self.r.position();
        let at = end;
        let stored = self.r.u64_le().map_err(|e| decode(at, e))?;
        if stored == 0 {
            return Ok(());
        }
        let got = CRC64.checksum(&self.buf[..end]);
        if got != stored {
            return Err(FileError::Checksum {
                expected: stored,
                got,
            });
        }
        Ok(())
    }
}

fn decode(offset: usize, source: DecodeError) -> FileError {
    FileError::Decode { offset, source }
}

fn unsupported(offset: usize, what: &str) -> FileError {
    FileError::Unsupported {
        offset,
        what: what.to_string(),
    }
}

/// Read every key of a whole file (tests and small files).
pub fn read_all(buf: &[u8]) -> Result<Vec<Entry>, FileError> {
    let mut r = FileReader::new(buf)?;
    let mut out = Vec::new();
    while let Some(e) = r.next_entry()? {
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(u64, Bytes, Value, Option<u64>)> {
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        vec![
            (0, b("s"), Value::String(b("hello")), None),
            (
                0,
                b("n"),
                Value::String(b("12345")),
                Some(4_000_000_000_000),
            ),
            (0, b("l"), Value::List(vec![b("a"), b("b")]), None),
            (3, b("h"), Value::Hash(vec![(b("f"), b("v"))]), None),
            (
                3,
                b("z"),
                Value::ZSet(vec![(b("m"), 1.5)]),
                Some(5_000_000_000_000),
            ),
            (3, b("set"), Value::Set(vec![b("1"), b("x")]), None),
        ]
    }

    fn file(entries: &[(u64, Bytes, Value, Option<u64>)]) -> Vec<u8> {
        let mut w = RdbWriter::new(Vec::new()).unwrap();
        w.aux("redis-ver", "7.0.15").unwrap();
        w.aux("redis-bits", "64").unwrap();
        let mut db = None;
        for (d, k, v, e) in entries {
            if db != Some(*d) {
                let n = entries.iter().filter(|x| x.0 == *d).count() as u64;
                let x = entries
                    .iter()
                    .filter(|x| x.0 == *d && x.3.is_some())
                    .count() as u64;
                w.select_db(*d, n, x).unwrap();
                db = Some(*d);
            }
            w.entry(k, *e, v).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trip() {
        let s = sample();
        let f = file(&s);
        assert_eq!(&f[..9], b"REDIS0009");
        assert_eq!(
            CRC64.checksum(&f[..f.len() - 8]).to_le_bytes(),
            f[f.len() - 8..]
        );
        let got = read_all(&f).unwrap();
        let want: Vec<Entry> = s
            .into_iter()
            .map(|(db, key, value, expire_ms)| Entry {
                db,
                key,
                value,
                expire_ms,
            })
            .collect();
        assert_eq!(got, want);
        let mut r = FileReader::new(&f).unwrap();
        assert_eq!(
            r.next_item().unwrap(),
            Some(Item::Aux(Bytes::from("redis-ver"), Bytes::from("7.0.15")))
        );
    }

    #[test]
    fn errors() {
        let f = file(&sample());
        assert_eq!(read_all(b"REDIX0009\xff").unwrap_err(), FileError::BadMagic);
        assert_eq!(read_all(b"RED").unwrap_err(), FileError::BadMagic);
        assert_eq!(
            read_all(b"REDIS0011\xff").unwrap_err(),
            FileError::Version(11)
        );
        for cut in 0..f.len() {
            assert!(read_all(&f[..cut]).is_err(), "truncated at {cut}");
        }
        let mut bad = f.clone();
        let n = bad.len();
        bad[n - 1] ^= 0x10;
        assert!(matches!(read_all(&bad), Err(FileError::Checksum { .. })));
        // A zero checksum is not verified (rdbchecksum no).
        let mut zero = f.clone();
        zero[n - 8..].fill(0);
        assert!(read_all(&zero).is_ok());
        // A library of functions is read as its code; the pre-GA record is refused.
        let mut func = b"REDIS0010".to_vec();
        write_function(
            &mut func,
            b"#!lua name=x\nredis.register_function('f', function() end)",
        );
        func.push(OP_EOF);
        func.extend_from_slice(&[0; 8]);
        let mut r = FileReader::new(&func).unwrap();
        match r.next_item().unwrap() {
            Some(Item::Function(code)) => assert!(code.starts_with(b"#!lua name=x\n")),
            other => panic!("{other:?}"),
        }
        assert!(r.next_item().unwrap().is_none());
        let mut func = b"REDIS0010".to_vec();
        func.push(OP_FUNCTION);
        func.extend_from_slice(b"\x01x");
        let e = read_all(&func).unwrap_err();
        assert!(e.to_string().contains("function"), "{e}");
        let mut stream = b"REDIS0010\x0f\x01k".to_vec();
        stream.push(0);
        assert!(read_all(&stream)
            .unwrap_err()
            .to_string()
            .contains("stream"));
    }

    #[test]
    fn seconds_expiry_and_hints() {
        let mut f = b"REDIS0004".to_vec();
        f.extend_from_slice(&[OP_SELECTDB, 2, OP_EXPIRETIME]);
        f.extend_from_slice(&100u32.to_le_bytes());
        f.extend_from_slice(&[OP_FREQ, 5, OP_IDLE, 3, 0, 1, b'k', 1, b'v', OP_EOF]);
        let got = read_all(&f).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].db, 2);
        assert_eq!(got[0].expire_ms, Some(100_000));
    }
}
