//! The DUMP payload: `[type][value][RDB version u16 LE][CRC-64/Redis LE]`, as `createDumpPayload`
//! writes and `verifyDumpPayload` + `rdbLoadObject` read it (`cluster.c`, `rdb.c`).

use crc::{Crc, Table, CRC_64_REDIS};

use crate::error::DumpError;
use crate::object::{read_value, value_type, write_value, TYPE_STRING};
use crate::reader::Reader;
use crate::string::{read_string_into, write_string};
use crate::value::Value;

/// The RDB version we write: 7 (Redis 3.2, codis-server 3.2), which every later Redis accepts.
pub const WRITE_RDB_VERSION: u16 = 7;
/// The newest RDB version we read: 10 (Redis 7.0); newer payloads are refused as Redis 7.0 does.
pub const MAX_RDB_VERSION: u16 = 10;

static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// CRC-64/Redis ("Jones", reflected, init 0) of `data`.
pub fn crc64(data: &[u8]) -> u64 {
    CRC64.checksum(data)
}

/// The DUMP payload of `v`: old-style type (0–4), body with integer and LZF string encodings,
/// RDB version 7 and the CRC. Both codis-server 3.2 and Redis 4.0–7.x RESTORE it.
pub fn dump(v: &Value) -> Vec<u8> {
    if let Value::String(s) = v {
        let mut out = Vec::with_capacity(s.len() + 24);
        dump_string_into(&mut out, s);
        return out;
    }
    let mut out = vec![value_type(v)];
    write_value(&mut out, v, true);
    out.extend_from_slice(&WRITE_RDB_VERSION.to_le_bytes());
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Append the DUMP payload of the string `s` to `out`: the bytes [`dump`] writes for
/// `Value::String(s)`, without building the value or allocating (when `out` has room).
pub fn dump_string_into(out: &mut Vec<u8>, s: &[u8]) {
    dump_string_with(out, s, true);
}

/// [`dump_string_into`] with LZF only when `compress` (any reader of the format accepts a raw
/// string: Redis itself writes one when `rdbcompression` is off).
pub fn dump_string_with(out: &mut Vec<u8>, s: &[u8], compress: bool) {
    let start = out.len();
    out.push(TYPE_STRING);
    write_string(out, s, compress);
    out.extend_from_slice(&WRITE_RDB_VERSION.to_le_bytes());
    let crc = crc64(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// If `payload` is a string's DUMP payload, decode the string into `out` (cleared first) and
/// return true, with exactly [`restore`]'s checks and errors; false (nothing decoded) for the
/// other types, which [`restore`] decodes.
pub fn restore_string_into(payload: &[u8], out: &mut Vec<u8>) -> Result<bool, DumpError> {
    out.clear();
    restore_string_append(payload, out)
}

/// [`restore_string_into`] appending the string to `out` instead of replacing its content; on
/// error `out` may hold part of it after what it held.
pub fn restore_string_append(payload: &[u8], out: &mut Vec<u8>) -> Result<bool, DumpError> {
    verify(payload)?;
    let mut r = Reader::new(payload);
    if r.u8()? != TYPE_STRING {
        return Ok(false);
    }
    read_string_into(&mut r, out)?;
    Ok(true)
}

/// Check a payload's footer (length ≥ 10, version ≤ [`MAX_RDB_VERSION`], CRC) and return its
/// RDB version and body (type byte and value).
pub fn verify(payload: &[u8]) -> Result<(u16, &[u8]), DumpError> {
    if payload.len() < 10 {
        return Err(DumpError::VersionOrChecksum);
    }
    let (rest, crc) = payload.split_at(payload.len() - 8);
    let (body, ver) = rest.split_at(rest.len() - 2);
    let version = u16::from_le_bytes([ver[0], ver[1]]);
    let mut c = [0u8; 8];
    c.copy_from_slice(crc);
    if version > MAX_RDB_VERSION || crc64(rest) != u64::from_le_bytes(c) {
        return Err(DumpError::VersionOrChecksum);
    }
    Ok((version, body))
}

/// Decode a DUMP payload from Redis ≤ 7.0, codis-server 3.2 or [`dump`].
///
/// Like Redis's RESTORE, the value is parsed from the whole payload, footer included (a body
/// that runs into the version and CRC bytes is accepted), and bytes after the value are ignored.
pub fn restore(payload: &[u8]) -> Result<Value, DumpError> {
    verify(payload)?;
    let mut r = Reader::new(payload);
    let ty = r.u8()?;
    Ok(read_value(ty, &mut r)?)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::error::DecodeError;

    fn footer(mut body: Vec<u8>, version: u16) -> Vec<u8> {
        body.extend_from_slice(&version.to_le_bytes());
        let crc = crc64(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body
    }

    #[test]
    fn crc_check_value() {
        assert_eq!(crc64(b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    #[test]
    fn set_s_hello() {
        let p = dump(&Value::String(Bytes::from("hello")));
        assert_eq!(p.len(), 17);
        assert_eq!(&p[..7], b"\x00\x05hello");
        assert_eq!(&p[7..9], [7, 0]);
        assert_eq!(p[9..], crc64(&p[..9]).to_le_bytes());
        // The exact bytes Redis 7.0 writes (version 10) restore to the same value.
        let redis = footer(b"\x00\x05hello".to_vec(), 10);
        assert_eq!(restore(&redis), Ok(Value::String(Bytes::from("hello"))));
    }

    #[test]
    fn reference_bodies() {
        let body = |v: &[u8]| dump(&Value::String(Bytes::copy_from_slice(v)))[..].to_vec();
        assert_eq!(&body(b"12345")[..4], [0x00, 0xc1, 0x39, 0x30]);
        assert_eq!(&body(b"-2")[..3], [0x00, 0xc0, 0xfe]);
        let max = body(b"9223372036854775807");
        assert_eq!(&max[..2], [0x00, 0x13]);
        assert_eq!(&max[2..21], b"9223372036854775807");
        let x = body(&[b'x'; 100]);
        assert_eq!(&x[..5], [0x00, 0xc3, 0x09, 0x40, 0x64]);
        assert_eq!(x.len(), 5 + 9 + 10);
    }

    #[test]
    fn footer_errors() {
        let good = dump(&Value::String(Bytes::from("v")));
        assert_eq!(restore(&good[..9]), Err(DumpError::VersionOrChecksum));
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert_eq!(restore(&bad), Err(DumpError::VersionOrChecksum));
        let v11 = footer(b"\x00\x01v".to_vec(), 11);
        assert_eq!(restore(&v11), Err(DumpError::VersionOrChecksum));
        for v in [6, 7, 8, 9, 10] {
            assert!(restore(&footer(b"\x00\x01v".to_vec(), v)).is_ok());
        }
        assert_eq!(
            DumpError::VersionOrChecksum.to_string(),
            "DUMP payload version or checksum are wrong"
        );
        let bad_body = restore(&footer(b"\x01\x05".to_vec(), 7));
        assert_eq!(
            bad_body,
            Err(DumpError::BadDataFormat(DecodeError::Truncated))
        );
        assert_eq!(
            bad_body.map_err(|e| e.to_string()),
            Err("Bad data format".to_string())
        );
        assert!(matches!(
            restore(&footer(vec![], 7)),
            Err(DumpError::BadDataFormat(_))
        ));
    }

    #[test]
    fn string_fast_paths_match_the_general_ones() {
        let long = "abcdefghij".repeat(30);
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"v".to_vec(),
            b"12345".to_vec(),
            b"-2".to_vec(),
            b"9223372036854775807".to_vec(),
            vec![b'v'; 32],
            (0..=255u8).collect(),
            long.into_bytes(),
        ];
        let mut buf = b"junk".to_vec();
        for s in cases {
            let v = Value::String(Bytes::copy_from_slice(&s));
            let mut p = b"prefix".to_vec();
            dump_string_into(&mut p, &s);
            assert_eq!(&p[6..], &dump(&v)[..]);
            assert_eq!(restore_string_into(&p[6..], &mut buf), Ok(true));
            assert_eq!(buf, s);
        }
        let list = dump(&Value::List(vec![Bytes::from("a")]));
        assert_eq!(restore_string_into(&list, &mut buf), Ok(false));
        let mut bad = dump(&Value::String(Bytes::from("v")));
        bad[2] ^= 1;
        assert_eq!(
            restore_string_into(&bad, &mut buf),
            Err(DumpError::VersionOrChecksum)
        );
        assert_eq!(
            restore_string_into(&footer(b"\x00\x05he".to_vec(), 7), &mut buf),
            restore(&footer(b"\x00\x05he".to_vec(), 7)).map(|_| true)
        );
    }

    #[test]
    fn every_type_round_trips() {
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let long = "abcdefghij".repeat(30);
        let values = [
            Value::String(b("")),
            Value::String(b(&long)),
            Value::List(vec![b("a"), b("100000"), b(&long), b("a")]),
            Value::Set(vec![b("x"), b("-5"), b(&long)]),
            Value::ZSet(vec![
                (b("a"), 0.1),
                (b("b"), f64::INFINITY),
                (b("c"), -1e300),
            ]),
            Value::Hash(vec![(b("f"), b(&long)), (b(&long), b("1"))]),
        ];
        for v in values {
            assert_eq!(restore(&dump(&v)), Ok(v));
        }
    }
}
