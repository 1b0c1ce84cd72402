//! The ziplist blob (Redis ≤ 6.2 encoding of small lists, hashes and zsets, and of quicklist
//! nodes in RDB type 14), and the older zipmap blob (RDB type 9).
//!
//! # Format
//! `zlbytes:u32le zltail:u32le zllen:u16le entry* 0xFF`; each entry is `prevlen` (1 byte, or
//! `0xFE` + u32le) then an encoding: `00pppppp`, `01pppppp q`, `0x80 u32be` string lengths;
//! `0xC0` i16, `0xD0` i32, `0xE0` i64, `0xF0` i24, `0xFE` i8 (all LE); `0xF1`–`0xFD` the
//! immediate values 0–12.

use bytes::Bytes;

use crate::error::DecodeError;
use crate::reader::{capacity_for, Reader};
use crate::string::{canonical_int, int_text};

const HEADER: usize = 10;
const END: u8 = 0xFF;

/// The entries of a ziplist, integers as decimal text. Checks `zlbytes`, `zltail`, `zllen`,
/// every `prevlen` and the terminator, like Redis's deep integrity validation.
pub fn entries(blob: &[u8]) -> Result<Vec<Bytes>, DecodeError> {
    let mut r = Reader::new(blob);
    let zlbytes = r.u32_le()? as usize;
    let zltail = r.u32_le()? as usize;
    let zllen = r.u16_le()?;
    if zlbytes != blob.len() {
        return Err(DecodeError::Invalid("ziplist zlbytes mismatch"));
    }
    let mut out = Vec::with_capacity(capacity_for(u64::from(zllen), r.remaining(), 2));
    let mut prev_size = 0usize;
    let mut last_start = HEADER;
    loop {
        let start = r.position();
        if r.peek_u8()? == END {
            r.u8()?;
            break;
        }
        let prevlen = match r.u8()? {
            0xFE => r.u32_le()? as usize,
            b => usize::from(b),
        };
        if prevlen != prev_size {
            return Err(DecodeError::Invalid("ziplist prevlen mismatch"));
        }
        let enc = r.u8()?;
        let v = match enc >> 6 {
            0 => Bytes::copy_from_slice(r.take(usize::from(enc & 0x3f))?),
            1 => {
                let n = (usize::from(enc & 0x3f) << 8) | usize::from(r.u8()?);
                Bytes::copy_from_slice(r.take(n)?)
            }
            2 if enc == 0x80 => {
                let n = r.u32_be()? as usize;
                Bytes::copy_from_slice(r.take(n)?)
            }
            2 => return Err(DecodeError::Invalid("bad ziplist string encoding")),
            _ => int_text(match enc {
                0xC0 => i64::from(i16::from_le_bytes(r.array()?)),
                0xD0 => i64::from(i32::from_le_bytes(r.array()?)),
                0xE0 => i64::from_le_bytes(r.array()?),
                0xF0 => {
                    let b: [u8; 3] = r.array()?;
                    i64::from(i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8)
                }
                0xFE => i64::from(r.u8()? as i8),
                0xF1..=0xFD => i64::from(enc & 0x0f) - 1,
                _ => return Err(DecodeError::Invalid("bad ziplist integer encoding")),
            }),
        };
        out.push(v);
        prev_size = r.position() - start;
        last_start = start;
    }
    if !r.is_empty() {
        return Err(DecodeError::Invalid("bytes after ziplist end"));
    }
    if zltail != last_start {
        return Err(DecodeError::Invalid("ziplist zltail mismatch"));
    }
    if zllen != u16::MAX && usize::from(zllen) != out.len() {
        return Err(DecodeError::Invalid("ziplist zllen mismatch"));
    }
    Ok(out)
}

/// Build a ziplist as Redis 3.2's `ziplistPush` would (integers encoded when canonical).
/// Used to produce codis-server-3.2-style payloads (RDB types 10–14).
pub fn encode<T: AsRef<[u8]>>(items: &[T]) -> Vec<u8> {
    let mut out = vec![0u8; HEADER];
    let mut prev_size = 0usize;
    let mut last_start = HEADER;
    for item in items {
        let s = item.as_ref();
        let start = out.len();
        if prev_size < 254 {
            out.push(prev_size as u8);
        } else {
            out.push(0xFE);
            out.extend_from_slice(&(prev_size as u32).to_le_bytes());
        }
        match canonical_int(s).filter(|_| s.len() <= 32) {
            Some(v @ 0..=12) => out.push(0xF1 + v as u8),
            Some(v) if i8::try_from(v).is_ok() => {
                out.push(0xFE);
                out.push(v as i8 as u8);
            }
            Some(v) if i16::try_from(v).is_ok() => {
                out.push(0xC0);
                out.extend_from_slice(&(v as i16).to_le_bytes());
            }
            Some(v) if (-(1 << 23)..1 << 23).contains(&v) => {
                out.push(0xF0);
                out.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
            }
            Some(v) if i32::try_from(v).is_ok() => {
                out.push(0xD0);
                out.extend_from_slice(&(v as i32).to_le_bytes());
            }
            Some(v) => {
                out.push(0xE0);
                out.extend_from_slice(&v.to_le_bytes());
            }
            None => {
                let n = s.len();
                if n < 1 << 6 {
                    out.push(n as u8);
                } else if n < 1 << 14 {
                    out.push(0x40 | (n >> 8) as u8);
                    out.push(n as u8);
                } else {
                    out.push(0x80);
                    out.extend_from_slice(&(n as u32).to_be_bytes());
                }
                out.extend_from_slice(s);
            }
        }
        prev_size = out.len() - start;
        last_start = start;
    }
    out.push(END);
    let zlbytes = out.len() as u32;
    out[0..4].copy_from_slice(&zlbytes.to_le_bytes());
    out[4..8].copy_from_slice(&(last_start as u32).to_le_bytes());
    let zllen = u16::try_from(items.len()).unwrap_or(u16::MAX);
    out[8..10].copy_from_slice(&zllen.to_le_bytes());
    out
}

/// The `(field, value)` pairs of a zipmap (Redis ≤ 2.4 small hashes, RDB type 9).
///
/// # Format
/// `zmlen:u8 (len key len free value pad[free])* 0xFF`, where `len` is one byte below 254 or
/// `0xFE` + u32le.
pub fn zipmap_pairs(blob: &[u8]) -> Result<Vec<(Bytes, Bytes)>, DecodeError> {
    fn len(r: &mut Reader<'_>) -> Result<Option<usize>, DecodeError> {
        Ok(match r.u8()? {
            END => None,
            0xFE => Some(r.u32_le()? as usize),
            b => Some(usize::from(b)),
        })
    }
    let mut r = Reader::new(blob);
    let zmlen = r.u8()?;
    let mut out = Vec::with_capacity(capacity_for(u64::from(zmlen), r.remaining(), 3));
    while let Some(klen) = len(&mut r)? {
        let key = Bytes::copy_from_slice(r.take(klen)?);
        let vlen = len(&mut r)?.ok_or(DecodeError::Invalid("zipmap ends after a key"))?;
        let free = usize::from(r.u8()?);
        let value = Bytes::copy_from_slice(r.take(vlen)?);
        r.take(free)?;
        out.push((key, value));
    }
    if !r.is_empty() {
        return Err(DecodeError::Invalid("bytes after zipmap end"));
    }
    if zmlen < 254 && usize::from(zmlen) != out.len() {
        return Err(DecodeError::Invalid("zipmap length mismatch"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_built_ziplist() {
        // ["a", 5, -300]: header, then entries "00 01 61", "03 f6", "02 c0 d4fe", then ff.
        let blob = [
            0x14, 0, 0, 0, 0x0f, 0, 0, 0, 3, 0, //
            0x00, 0x01, b'a', //
            0x03, 0xf6, //
            0x02, 0xc0, 0xd4, 0xfe, //
            0xff,
        ];
        assert_eq!(
            entries(&blob),
            Ok(vec![
                Bytes::from("a"),
                Bytes::from("5"),
                Bytes::from("-300")
            ])
        );
        assert_eq!(encode(&["a", "5", "-300"]), blob);
    }

    #[test]
    fn all_encodings_round_trip() {
        let big = "y".repeat(300);
        let huge = "z".repeat(20000);
        let items: Vec<String> = [
            "",
            "0",
            "12",
            "13",
            "-1",
            "127",
            "-128",
            "128",
            "32767",
            "-32768",
            "32768",
            "8388607",
            "-8388608",
            "8388608",
            "2147483647",
            "-2147483648",
            "2147483648",
            "9223372036854775807",
            "-9223372036854775808",
            "007",
            "x",
            &big,
            &huge,
            "1.5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let blob = encode(&items);
        let got = entries(&blob).expect("valid");
        assert_eq!(got.len(), items.len());
        for (g, w) in got.iter().zip(&items) {
            assert_eq!(g, w.as_bytes());
        }
        assert_eq!(entries(&encode::<&str>(&[])), Ok(vec![]));
    }

    #[test]
    fn corrupt_ziplists() {
        let good = encode(&["a", "b"]);
        for i in 0..good.len() {
            assert!(entries(&good[..i]).is_err());
        }
        let mut bad = good.clone();
        bad[10] = 5; // first prevlen must be 0
        assert!(entries(&bad).is_err());
        let mut bad = good.clone();
        bad[8] = 3; // zllen
        assert!(entries(&bad).is_err());
        let mut bad = good;
        bad[4] = 10; // zltail
        assert!(entries(&bad).is_err());
    }

    #[test]
    fn zipmap() {
        let blob = b"\x02\x03foo\x03\x02bar..\x05hello\x05\x00world\xff";
        let got = zipmap_pairs(blob).expect("valid");
        assert_eq!(
            got,
            vec![
                (Bytes::from("foo"), Bytes::from("bar")),
                (Bytes::from("hello"), Bytes::from("world"))
            ]
        );
        assert!(zipmap_pairs(b"\x01\x03foo\xff").is_err());
        assert!(zipmap_pairs(b"\x05\x01a\x01\x00b\xff").is_err());
    }
}
