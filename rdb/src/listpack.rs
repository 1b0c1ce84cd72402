//! The listpack blob (Redis ≥ 7.0 encoding of small hashes, zsets and sets, and of quicklist2
//! list nodes; RDB types 16, 17, 18, 20).
//!
//! # Format
//! `total:u32le count:u16le (encoding data backlen)* 0xFF`. Encodings: `0xxxxxxx` 7-bit uint,
//! `10llllll` 6-bit-length string, `110xxxxx x` 13-bit int, `1110llll l` 12-bit-length string,
//! `0xF0 u32le` string, `0xF1`/`0xF2`/`0xF3`/`0xF4` 16/24/32/64-bit LE ints. `backlen` is the
//! size of encoding + data in 1–5 bytes of 7 bits, readable from right to left.

use bytes::Bytes;

use crate::error::DecodeError;
use crate::reader::{capacity_for, Reader};
use crate::string::{canonical_int, int_text};

const HEADER: usize = 6;
const EOF: u8 = 0xFF;

fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

fn backlen(l: usize, out: &mut Vec<u8>) {
    let l = l as u64;
    let n = match l {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2097150 => 3,
        2097151..=268435454 => 4,
        _ => 5,
    };
    for i in (0..n).rev() {
        let b = ((l >> (7 * i)) & 127) as u8;
        out.push(if i == n - 1 { b } else { b | 128 });
    }
}

/// The entries of a listpack, integers as decimal text. Checks the total size, the count (unless
/// 65535), every backlen and the terminator, like Redis's deep integrity validation.
pub fn entries(blob: &[u8]) -> Result<Vec<Bytes>, DecodeError> {
    let mut r = Reader::new(blob);
    let total = r.u32_le()? as usize;
    let count = r.u16_le()?;
    if total != blob.len() {
        return Err(DecodeError::Invalid("listpack total bytes mismatch"));
    }
    let mut out = Vec::with_capacity(capacity_for(u64::from(count), r.remaining(), 2));
    let mut expect = Vec::with_capacity(5);
    loop {
        let start = r.position();
        let b0 = r.u8()?;
        if b0 == EOF {
            break;
        }
        let v = if b0 & 0x80 == 0 {
            int_text(i64::from(b0))
        } else if b0 & 0xC0 == 0x80 {
            Bytes::copy_from_slice(r.take(usize::from(b0 & 0x3f))?)
        } else if b0 & 0xE0 == 0xC0 {
            let u = (u64::from(b0 & 0x1f) << 8) | u64::from(r.u8()?);
            int_text(sign_extend(u, 13))
        } else if b0 & 0xF0 == 0xE0 {
            let n = (usize::from(b0 & 0x0f) << 8) | usize::from(r.u8()?);
            Bytes::copy_from_slice(r.take(n)?)
        } else {
            match b0 {
                0xF0 => {
                    let n = r.u32_le()? as usize;
                    Bytes::copy_from_slice(r.take(n)?)
                }
                0xF1 => int_text(i64::from(i16::from_le_bytes(r.array()?))),
                0xF2 => {
                    let b: [u8; 3] = r.array()?;
                    let u = u64::from(b[0]) | u64::from(b[1]) << 8 | u64::from(b[2]) << 16;
                    int_text(sign_extend(u, 24))
                }
                0xF3 => int_text(i64::from(i32::from_le_bytes(r.array()?))),
                0xF4 => int_text(i64::from_le_bytes(r.array()?)),
                _ => return Err(DecodeError::Invalid("bad listpack encoding")),
            }
        };
        expect.clear();
        backlen(r.position() - start, &mut expect);
        if r.take(expect.len())? != expect.as_slice() {
            return Err(DecodeError::Invalid("listpack backlen mismatch"));
        }
        out.push(v);
    }
    if !r.is_empty() {
        return Err(DecodeError::Invalid("bytes after listpack end"));
    }
    if count != u16::MAX && usize::from(count) != out.len() {
        return Err(DecodeError::Invalid("listpack count mismatch"));
    }
    Ok(out)
}

/// Build a listpack as Redis 7's `lpAppend` would (integers encoded when canonical).
pub fn encode<T: AsRef<[u8]>>(items: &[T]) -> Vec<u8> {
    let mut out = vec![0u8; HEADER];
    for item in items {
        let s = item.as_ref();
        let start = out.len();
        match canonical_int(s) {
            Some(v @ 0..=127) => out.push(v as u8),
            Some(v @ -4096..=4095) => {
                let u = (v as u64) & 0x1fff;
                out.push(0xC0 | (u >> 8) as u8);
                out.push(u as u8);
            }
            Some(v) if i16::try_from(v).is_ok() => {
                out.push(0xF1);
                out.extend_from_slice(&(v as i16).to_le_bytes());
            }
            Some(v) if (-(1 << 23)..1 << 23).contains(&v) => {
                out.push(0xF2);
                out.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
            }
            Some(v) if i32::try_from(v).is_ok() => {
                out.push(0xF3);
                out.extend_from_slice(&(v as i32).to_le_bytes());
            }
            Some(v) => {
                out.push(0xF4);
                out.extend_from_slice(&v.to_le_bytes());
            }
            None => {
                let n = s.len();
                if n < 64 {
                    out.push(0x80 | n as u8);
                } else if n < 4096 {
                    out.push(0xE0 | (n >> 8) as u8);
                    out.push(n as u8);
                } else {
                    out.push(0xF0);
                    out.extend_from_slice(&(n as u32).to_le_bytes());
                }
                out.extend_from_slice(s);
            }
        }
        let l = out.len() - start;
        backlen(l, &mut out);
    }
    out.push(EOF);
    let total = out.len() as u32;
    out[0..4].copy_from_slice(&total.to_le_bytes());
    let count = u16::try_from(items.len()).unwrap_or(u16::MAX);
    out[4..6].copy_from_slice(&count.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_built() {
        // ["a", 5, -300] = 81 61 02 | 05 01 | dfd4 02 | ff
        let blob = [
            0x0f, 0, 0, 0, 3, 0, 0x81, b'a', 0x02, 0x05, 0x01, 0xde, 0xd4, 0x02, 0xff,
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
        let s200 = "b".repeat(200);
        let s5000 = "c".repeat(5000);
        let items: Vec<String> = [
            "",
            "0",
            "127",
            "128",
            "-1",
            "-4096",
            "4095",
            "4096",
            "-4097",
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
            "01",
            "abc",
            &s200,
            &s5000,
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
    }

    #[test]
    fn corrupt() {
        let good = encode(&["a", "5000"]);
        for i in 0..good.len() {
            assert!(entries(&good[..i]).is_err());
        }
        let mut bad = good.clone();
        bad[8] = 0x09; // backlen of "a"
        assert!(entries(&bad).is_err());
        let mut bad = good;
        bad[4] = 1; // count
        assert!(entries(&bad).is_err());
    }
}
