//! The intset blob (small sets of integers, RDB type 11).
//!
//! # Format
//! `encoding:u32le (2, 4 or 8) length:u32le` then `length` sorted, distinct little-endian
//! integers of `encoding` bytes each.

use bytes::Bytes;

use crate::error::DecodeError;
use crate::reader::Reader;
use crate::string::int_text;

/// The members of an intset as decimal text, in ascending order. Rejects a wrong size, an unknown
/// encoding, and members that are not strictly ascending (as Redis's deep validation does).
pub fn members(blob: &[u8]) -> Result<Vec<Bytes>, DecodeError> {
    let mut r = Reader::new(blob);
    let enc = r.u32_le()? as usize;
    let len = r.u32_le()? as usize;
    if !matches!(enc, 2 | 4 | 8) {
        return Err(DecodeError::Invalid("bad intset encoding"));
    }
    if len.checked_mul(enc) != Some(r.remaining()) {
        return Err(DecodeError::Invalid("intset size mismatch"));
    }
    let mut out = Vec::with_capacity(len);
    let mut prev: Option<i64> = None;
    for _ in 0..len {
        let v = match enc {
            2 => i64::from(i16::from_le_bytes(r.array()?)),
            4 => i64::from(i32::from_le_bytes(r.array()?)),
            _ => i64::from_le_bytes(r.array()?),
        };
        if prev.is_some_and(|p| p >= v) {
            return Err(DecodeError::Invalid("intset not sorted"));
        }
        prev = Some(v);
        out.push(int_text(v));
    }
    Ok(out)
}

/// Build an intset from integers (sorted and deduplicated here), with the narrowest encoding.
pub fn encode(values: &[i64]) -> Vec<u8> {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.dedup();
    let enc: usize = if v.iter().all(|x| i16::try_from(*x).is_ok()) {
        2
    } else if v.iter().all(|x| i32::try_from(*x).is_ok()) {
        4
    } else {
        8
    };
    let mut out = Vec::with_capacity(8 + enc * v.len());
    out.extend_from_slice(&(enc as u32).to_le_bytes());
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    for x in v {
        out.extend_from_slice(&x.to_le_bytes()[..enc]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_each_width() {
        for vals in [
            vec![-3, 1, 2],
            vec![1, 100000, -70000],
            vec![i64::MIN, 0, i64::MAX],
        ] {
            let blob = encode(&vals);
            let mut want = vals.clone();
            want.sort_unstable();
            let want: Vec<Bytes> = want.into_iter().map(int_text).collect();
            assert_eq!(members(&blob), Ok(want));
        }
        assert_eq!(encode(&[1, 2]), [2, 0, 0, 0, 2, 0, 0, 0, 1, 0, 2, 0]);
    }

    #[test]
    fn corrupt() {
        assert!(
            members(&[2, 0, 0, 0, 2, 0, 0, 0, 2, 0, 1, 0]).is_err(),
            "unsorted"
        );
        assert!(
            members(&[2, 0, 0, 0, 2, 0, 0, 0, 1, 0, 1, 0]).is_err(),
            "duplicate"
        );
        assert!(
            members(&[3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0]).is_err(),
            "encoding"
        );
        assert!(
            members(&[2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 0]).is_err(),
            "length"
        );
        assert!(members(&[2, 0, 0]).is_err());
    }
}
