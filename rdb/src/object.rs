//! The per-type value writer and reader: RDB object types and their bodies.
//!
//! We write only the old-style types 0–4 that every Redis since 2.x and codis-server 3.2 read.
//! We read those plus `ZSET_2` (5), zipmap (9), ziplist (10, 12, 13), intset (11), quicklist
//! (14), listpack (16, 17, 20) and quicklist2 (18). As Redis 7 does, we reject empty aggregates,
//! duplicate set members, zset members or hash fields, and NaN zset scores.

use std::collections::HashSet;

use bytes::Bytes;

use crate::error::DecodeError;
use crate::length::{read_len, write_len};
use crate::reader::{capacity_for, Reader};
use crate::string::{
    parse_double, read_binary_double, read_double, read_string, write_double, write_string,
};
use crate::value::Value;
use crate::{intset, listpack, ziplist};

/// RDB type: string.
pub const TYPE_STRING: u8 = 0;
/// RDB type: list of strings.
pub const TYPE_LIST: u8 = 1;
/// RDB type: set of strings.
pub const TYPE_SET: u8 = 2;
/// RDB type: zset with text scores.
pub const TYPE_ZSET: u8 = 3;
/// RDB type: hash of field/value strings.
pub const TYPE_HASH: u8 = 4;
/// RDB type: zset with binary scores (RDB ≥ 8).
pub const TYPE_ZSET_2: u8 = 5;
/// RDB type: hash as a zipmap blob.
pub const TYPE_HASH_ZIPMAP: u8 = 9;
/// RDB type: list as a ziplist blob.
pub const TYPE_LIST_ZIPLIST: u8 = 10;
/// RDB type: set as an intset blob.
pub const TYPE_SET_INTSET: u8 = 11;
/// RDB type: zset as a ziplist blob of member, score pairs.
pub const TYPE_ZSET_ZIPLIST: u8 = 12;
/// RDB type: hash as a ziplist blob of field, value pairs.
pub const TYPE_HASH_ZIPLIST: u8 = 13;
/// RDB type: list as a quicklist of ziplist blobs (RDB ≥ 7).
pub const TYPE_LIST_QUICKLIST: u8 = 14;
/// RDB type: hash as a listpack blob (RDB ≥ 10).
pub const TYPE_HASH_LISTPACK: u8 = 16;
/// RDB type: zset as a listpack blob (RDB ≥ 10).
pub const TYPE_ZSET_LISTPACK: u8 = 17;
/// RDB type: list as a quicklist of listpack or plain nodes (RDB ≥ 10).
pub const TYPE_LIST_QUICKLIST_2: u8 = 18;
/// RDB type: set as a listpack blob (RDB ≥ 11).
pub const TYPE_SET_LISTPACK: u8 = 20;

/// Quicklist2 node container: one plain element.
const CONTAINER_PLAIN: u64 = 1;
/// Quicklist2 node container: a listpack.
const CONTAINER_PACKED: u64 = 2;

/// The RDB type byte [`write_value`] uses for `v`.
pub fn value_type(v: &Value) -> u8 {
    match v {
        Value::String(_) => TYPE_STRING,
        Value::List(_) => TYPE_LIST,
        Value::Set(_) => TYPE_SET,
        Value::ZSet(_) => TYPE_ZSET,
        Value::Hash(_) => TYPE_HASH,
    }
}

/// Append the body of `v` in its old-style type (see [`value_type`]); `compress` enables LZF for
/// strings longer than 20 bytes. Empty aggregates are written but Redis refuses to load them.
pub fn write_value(out: &mut Vec<u8>, v: &Value, compress: bool) {
    match v {
        Value::String(s) => write_string(out, s, compress),
        Value::List(items) | Value::Set(items) => {
            write_len(out, items.len() as u64);
            for s in items {
                write_string(out, s, compress);
            }
        }
        Value::ZSet(pairs) => {
            write_len(out, pairs.len() as u64);
            for (m, score) in pairs {
                write_string(out, m, compress);
                write_double(out, *score);
            }
        }
        Value::Hash(pairs) => {
            write_len(out, pairs.len() as u64);
            for (f, val) in pairs {
                write_string(out, f, compress);
                write_string(out, val, compress);
            }
        }
    }
}

/// Read the body of an object of RDB type `ty` from `r`.
pub fn read_value(ty: u8, r: &mut Reader<'_>) -> Result<Value, DecodeError> {
    let v = match ty {
        TYPE_STRING => return Ok(Value::String(read_string(r)?)),
        TYPE_LIST => Value::List(read_strings(r)?),
        TYPE_SET => Value::Set(unique(read_strings(r)?)?),
        TYPE_ZSET | TYPE_ZSET_2 => {
            let n = read_len(r)?;
            let mut pairs = Vec::with_capacity(capacity_for(n, r.remaining(), 2));
            for _ in 0..n {
                let m = read_string(r)?;
                let score = if ty == TYPE_ZSET {
                    read_double(r)?
                } else {
                    read_binary_double(r)?
                };
                pairs.push((m, score));
            }
            zset(pairs)?
        }
        TYPE_HASH => {
            let n = read_len(r)?;
            let mut pairs = Vec::with_capacity(capacity_for(n, r.remaining(), 2));
            for _ in 0..n {
                pairs.push((read_string(r)?, read_string(r)?));
            }
            hash(pairs)?
        }
        TYPE_HASH_ZIPMAP => hash(ziplist::zipmap_pairs(&read_string(r)?)?)?,
        TYPE_LIST_ZIPLIST => Value::List(ziplist::entries(&read_string(r)?)?),
        TYPE_SET_INTSET => Value::Set(intset::members(&read_string(r)?)?),
        TYPE_SET_LISTPACK => Value::Set(unique(listpack::entries(&read_string(r)?)?)?),
        TYPE_ZSET_ZIPLIST => zset_blob(ziplist::entries(&read_string(r)?)?)?,
        TYPE_ZSET_LISTPACK => zset_blob(listpack::entries(&read_string(r)?)?)?,
        TYPE_HASH_ZIPLIST => hash(pairs(ziplist::entries(&read_string(r)?)?)?)?,
        TYPE_HASH_LISTPACK => hash(pairs(listpack::entries(&read_string(r)?)?)?)?,
        TYPE_LIST_QUICKLIST | TYPE_LIST_QUICKLIST_2 => {
            let nodes = read_len(r)?;
            let mut items = Vec::new();
            for _ in 0..nodes {
                if ty == TYPE_LIST_QUICKLIST {
                    items.extend(ziplist::entries(&read_string(r)?)?);
                    continue;
                }
                match read_len(r)? {
                    CONTAINER_PLAIN => items.push(read_string(r)?),
                    CONTAINER_PACKED => items.extend(listpack::entries(&read_string(r)?)?),
                    _ => return Err(DecodeError::Invalid("bad quicklist node container")),
                }
            }
            Value::List(items)
        }
        other => return Err(DecodeError::UnsupportedType(other)),
    };
    let empty = match &v {
        Value::List(x) | Value::Set(x) => x.is_empty(),
        Value::ZSet(x) => x.is_empty(),
        Value::Hash(x) => x.is_empty(),
        Value::String(_) => false,
    };
    if empty {
        return Err(DecodeError::Invalid("empty key"));
    }
    Ok(v)
}

fn read_strings(r: &mut Reader<'_>) -> Result<Vec<Bytes>, DecodeError> {
    let n = read_len(r)?;
    let mut items = Vec::with_capacity(capacity_for(n, r.remaining(), 1));
    for _ in 0..n {
        items.push(read_string(r)?);
    }
    Ok(items)
}

fn check_unique<'a>(keys: impl Iterator<Item = &'a Bytes>, n: usize) -> Result<(), DecodeError> {
    let mut seen: HashSet<&[u8]> = HashSet::with_capacity(n);
    for k in keys {
        if !seen.insert(k) {
            return Err(DecodeError::Invalid("duplicate member or field"));
        }
    }
    Ok(())
}

fn unique(items: Vec<Bytes>) -> Result<Vec<Bytes>, DecodeError> {
    check_unique(items.iter(), items.len())?;
    Ok(items)
}

fn pairs(flat: Vec<Bytes>) -> Result<Vec<(Bytes, Bytes)>, DecodeError> {
    if flat.len() & 1 == 1 {
        return Err(DecodeError::Invalid("odd number of entries in a pair blob"));
    }
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    Ok(out)
}

fn hash(pairs: Vec<(Bytes, Bytes)>) -> Result<Value, DecodeError> {
    check_unique(pairs.iter().map(|(f, _)| f), pairs.len())?;
    Ok(Value::Hash(pairs))
}

fn zset(pairs: Vec<(Bytes, f64)>) -> Result<Value, DecodeError> {
    if pairs.iter().any(|(_, s)| s.is_nan()) {
        return Err(DecodeError::Invalid("zset with NaN score"));
    }
    check_unique(pairs.iter().map(|(m, _)| m), pairs.len())?;
    Ok(Value::ZSet(pairs))
}

fn zset_blob(flat: Vec<Bytes>) -> Result<Value, DecodeError> {
    let mut out = Vec::with_capacity(flat.len() / 2);
    for (m, s) in pairs(flat)? {
        out.push((m, parse_double(&s)?));
    }
    zset(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(ty: u8, body: &[u8]) -> Result<Value, DecodeError> {
        read_value(ty, &mut Reader::new(body))
    }

    fn blob(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_string(&mut out, b, false);
        out
    }

    fn strs(v: &[&str]) -> Vec<Bytes> {
        v.iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    #[test]
    fn old_style_bodies() {
        let mut out = Vec::new();
        let list = Value::List(strs(&["a", "1", "a"]));
        write_value(&mut out, &list, true);
        assert_eq!(out, b"\x03\x01a\xc0\x01\x01a");
        assert_eq!(read(TYPE_LIST, &out), Ok(list));

        let mut out = Vec::new();
        let z = Value::ZSet(vec![
            (Bytes::from("m"), 1.5),
            (Bytes::from("n"), f64::NEG_INFINITY),
        ]);
        write_value(&mut out, &z, true);
        assert_eq!(out, b"\x02\x01m\x031.5\x01n\xff");
        assert_eq!(read(TYPE_ZSET, &out), Ok(z));
    }

    #[test]
    fn native_encodings() {
        let zl = ziplist::encode(&["f", "1", "g", "2"]);
        let want = Value::Hash(vec![
            (Bytes::from("f"), Bytes::from("1")),
            (Bytes::from("g"), Bytes::from("2")),
        ]);
        assert_eq!(read(TYPE_HASH_ZIPLIST, &blob(&zl)), Ok(want.clone()));
        let lp = listpack::encode(&["f", "1", "g", "2"]);
        assert_eq!(read(TYPE_HASH_LISTPACK, &blob(&lp)), Ok(want));

        let lp = listpack::encode(&["a", "1.5", "b", "inf"]);
        let z = Value::ZSet(vec![
            (Bytes::from("a"), 1.5),
            (Bytes::from("b"), f64::INFINITY),
        ]);
        assert_eq!(read(TYPE_ZSET_LISTPACK, &blob(&lp)), Ok(z));

        // quicklist of two ziplists, one empty (skipped)
        let mut body = vec![3];
        body.extend(blob(&ziplist::encode(&["x", "y"])));
        body.extend(blob(&ziplist::encode::<&str>(&[])));
        body.extend(blob(&ziplist::encode(&["7"])));
        assert_eq!(
            read(TYPE_LIST_QUICKLIST, &body),
            Ok(Value::List(strs(&["x", "y", "7"])))
        );

        // quicklist2 with a plain node and a packed node
        let mut body = vec![2, 1];
        body.extend(blob(b"plain"));
        body.push(2);
        body.extend(blob(&listpack::encode(&["p", "q"])));
        assert_eq!(
            read(TYPE_LIST_QUICKLIST_2, &body),
            Ok(Value::List(strs(&["plain", "p", "q"])))
        );

        let is = intset::encode(&[3, -1]);
        assert_eq!(
            read(TYPE_SET_INTSET, &blob(&is)),
            Ok(Value::Set(strs(&["-1", "3"])))
        );
        let lp = listpack::encode(&["s", "t"]);
        assert_eq!(
            read(TYPE_SET_LISTPACK, &blob(&lp)),
            Ok(Value::Set(strs(&["s", "t"])))
        );

        let mut z2 = vec![1];
        z2.extend(blob(b"m"));
        z2.extend_from_slice(&2.5f64.to_le_bytes());
        let z = Value::ZSet(vec![(Bytes::from("m"), 2.5)]);
        assert_eq!(read(TYPE_ZSET_2, &z2), Ok(z));

        let zm = b"\x01\x01k\x01\x00v\xff";
        let h = Value::Hash(vec![(Bytes::from("k"), Bytes::from("v"))]);
        assert_eq!(read(TYPE_HASH_ZIPMAP, &blob(zm)), Ok(h));
    }

    #[test]
    fn rejections() {
        assert!(read(TYPE_LIST, b"\x00").is_err(), "empty list");
        assert!(
            read(TYPE_SET, b"\x02\x01a\x01a").is_err(),
            "duplicate member"
        );
        assert!(
            read(TYPE_HASH, b"\x02\x01a\x01x\x01a\x01y").is_err(),
            "duplicate field"
        );
        assert!(read(TYPE_ZSET, b"\x01\x01a\xfd").is_err(), "NaN score");
        assert!(
            read(TYPE_HASH_LISTPACK, &blob(&listpack::encode(&["a"]))).is_err(),
            "odd"
        );
        assert!(
            read(TYPE_LIST_QUICKLIST_2, b"\x01\x03\x01a").is_err(),
            "container"
        );
        assert_eq!(read(6, b""), Err(DecodeError::UnsupportedType(6)));
        assert!(
            read(TYPE_LIST, b"\x80\xff\xff\xff\xff\x01a").is_err(),
            "huge claimed count"
        );
    }
}
