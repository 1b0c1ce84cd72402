//! Properties: every `Value` survives `dump` → `restore`; no byte sequence makes any reader
//! panic (checked on stable here; `fuzz/` has the cargo-fuzz target for the same property).

use bytes::Bytes;
use proptest::prelude::*;
use rdb::file::{read_all, FileReader, RdbWriter};
use rdb::object::read_value;
use rdb::reader::Reader;
use rdb::{crc64, dump, intset, listpack, lzf, restore, ziplist, Value};

fn element() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from),
        any::<i64>().prop_map(|i| Bytes::from(i.to_string())),
        (-200i64..70000).prop_map(|i| Bytes::from(i.to_string())),
        "[abc]{15,200}".prop_map(Bytes::from),
    ]
}

fn score() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("zset scores are never NaN", |s| !s.is_nan()),
        (-1000i32..1000).prop_map(f64::from),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        element().prop_map(Value::String),
        prop::collection::vec(element(), 1..40).prop_map(Value::List),
        prop::collection::hash_set(element(), 1..40)
            .prop_map(|s| Value::Set(s.into_iter().collect())),
        prop::collection::hash_map(element(), score(), 1..40)
            .prop_map(|m| Value::ZSet(m.into_iter().collect())),
        prop::collection::hash_map(element(), element(), 1..40)
            .prop_map(|m| Value::Hash(m.into_iter().collect())),
    ]
}

/// Compare with sets, hashes and zsets as maps, and scores by their bits.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Set(x), Value::Set(y)) => {
            let (mut x, mut y) = (x.clone(), y.clone());
            x.sort();
            y.sort();
            x == y
        }
        (Value::Hash(x), Value::Hash(y)) => {
            let (mut x, mut y) = (x.clone(), y.clone());
            x.sort();
            y.sort();
            x == y
        }
        (Value::ZSet(x), Value::ZSet(y)) => {
            let key = |v: &Vec<(Bytes, f64)>| {
                let mut k: Vec<(Bytes, u64)> =
                    v.iter().map(|(m, s)| (m.clone(), s.to_bits())).collect();
                k.sort();
                k
            };
            key(x) == key(y)
        }
        _ => a == b,
    }
}

fn with_footer(mut body: Vec<u8>, version: u16) -> Vec<u8> {
    body.extend_from_slice(&version.to_le_bytes());
    let crc = crc64(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn dump_restore_round_trip(v in value()) {
        let p = dump(&v);
        let got = restore(&p).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert!(same(&got, &v), "{got:?} != {v:?}");
    }

    #[test]
    fn arbitrary_payloads_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = restore(&bytes);
    }

    /// With a valid footer the body parser itself sees the hostile bytes.
    #[test]
    fn arbitrary_bodies_never_panic(ty in 0u8..24, body in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut b = vec![ty];
        b.extend_from_slice(&body);
        let _ = restore(&with_footer(b, 7));
        let _ = read_value(ty, &mut Reader::new(&body));
        let _ = ziplist::entries(&body);
        let _ = ziplist::zipmap_pairs(&body);
        let _ = listpack::entries(&body);
        let _ = intset::members(&body);
        let _ = lzf::decompress(&body, body.len() * 3 + 1);
    }

    /// Valid payloads with a few bytes changed (and the CRC fixed) never panic either.
    #[test]
    fn mutated_payloads_never_panic(v in value(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let p = dump(&v);
        let mut body = p[..p.len() - 10].to_vec();
        for (i, byte) in edits {
            let at = i.index(body.len());
            body[at] = byte;
        }
        let _ = restore(&with_footer(body, 7));
    }

    /// Native blobs with a byte changed are rejected or decoded, never a panic.
    #[test]
    fn mutated_blobs_never_panic(items in prop::collection::vec(element(), 0..20), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        for mut blob in [ziplist::encode(&items), listpack::encode(&items)] {
            let i = at.index(blob.len());
            blob[i] = byte;
            let _ = ziplist::entries(&blob);
            let _ = listpack::entries(&blob);
        }
    }

    #[test]
    fn blobs_round_trip(items in prop::collection::vec(element(), 0..60)) {
        prop_assert_eq!(ziplist::entries(&ziplist::encode(&items)).ok(), Some(items.clone()));
        prop_assert_eq!(listpack::entries(&listpack::encode(&items)).ok(), Some(items));
    }

    #[test]
    fn lzf_round_trip(data in prop::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), any::<u8>()], 1..3000)) {
        if let Some(c) = lzf::compress(&data, data.len() + data.len() / 32 + 16) {
            prop_assert_eq!(lzf::decompress(&c, data.len()).ok(), Some(data));
        }
    }

    /// Whole files: what the writer produces the reader gives back, key by key.
    #[test]
    fn file_round_trip(entries in prop::collection::vec((0u64..4, element(), value(), prop::option::of(1u64..u64::MAX / 2)), 0..20)) {
        let mut sorted = entries.clone();
        sorted.sort_by_key(|e| e.0);
        let mut w = RdbWriter::new(Vec::new()).unwrap();
        w.aux("redis-ver", "7.0.15").unwrap();
        let mut cur = None;
        for (db, k, v, exp) in &sorted {
            if cur != Some(*db) {
                w.select_db(*db, 1, 0).unwrap();
                cur = Some(*db);
            }
            w.entry(k, *exp, v).unwrap();
        }
        let f = w.finish().unwrap();
        let got = read_all(&f).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got.len(), sorted.len());
        for (g, (db, k, v, exp)) in got.iter().zip(&sorted) {
            prop_assert_eq!(g.db, *db);
            prop_assert_eq!(&g.key, k);
            prop_assert_eq!(g.expire_ms, *exp);
            prop_assert!(same(&g.value, v));
        }
    }

    /// Hostile files never make the reader panic: random bytes after a valid header, and valid
    /// files with bytes changed or cut short.
    #[test]
    fn hostile_files_never_panic(
        v in value(),
        tail in prop::collection::vec(any::<u8>(), 0..300),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        for version in [b"REDIS0009", b"REDIS0003", b"REDIS0010"] {
            let mut f = version.to_vec();
            f.extend_from_slice(&tail);
            let _ = read_all(&f);
        }
        let mut w = RdbWriter::new(Vec::new()).unwrap();
        w.select_db(0, 1, 0).unwrap();
        w.entry(b"key", Some(123), &v).unwrap();
        let mut f = w.finish().unwrap();
        let _ = read_all(&f[..cut.index(f.len())]);
        for (i, byte) in edits {
            let at = 9 + i.index(f.len() - 9);
            f[at] = byte;
        }
        // Zero the checksum so the mutated body itself is parsed.
        let n = f.len();
        f[n - 8..].fill(0);
        if let Ok(mut r) = FileReader::new(&f) {
            while let Ok(Some(_)) = r.next_item() {}
        }
    }
}
