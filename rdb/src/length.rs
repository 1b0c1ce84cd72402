//! RDB length encoding: 6-bit, 14-bit, 32-bit and (RDB ≥ 8) 64-bit lengths, and the `11xxxxxx`
//! marker of specially encoded strings.

use crate::error::DecodeError;
use crate::reader::Reader;

/// First byte of a 32-bit big-endian length.
pub const LEN_32BIT: u8 = 0x80;
/// First byte of a 64-bit big-endian length (Redis 4.0 and later only).
pub const LEN_64BIT: u8 = 0x81;

/// What a length field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// A plain length or count.
    Len(u64),
    /// A special string encoding (`0` int8, `1` int16, `2` int32, `3` LZF): the low 6 bits of a
    /// `11xxxxxx` byte.
    Encoded(u8),
}

/// Append `len` in the shortest form; lengths of 2^32 or more use the 64-bit form, which
/// codis-server 3.2 cannot read.
pub fn write_len(out: &mut Vec<u8>, len: u64) {
    if len < 1 << 6 {
        out.push(len as u8);
    } else if len < 1 << 14 {
        out.push(0x40 | (len >> 8) as u8);
        out.push(len as u8);
    } else if let Ok(l) = u32::try_from(len) {
        out.push(LEN_32BIT);
        out.extend_from_slice(&l.to_be_bytes());
    } else {
        out.push(LEN_64BIT);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// Read a length field, which may instead announce a specially encoded string.
pub fn read_len_or_encoding(r: &mut Reader<'_>) -> Result<Length, DecodeError> {
    let b = r.u8()?;
    Ok(match b >> 6 {
        0 => Length::Len(u64::from(b & 0x3f)),
        1 => Length::Len((u64::from(b & 0x3f) << 8) | u64::from(r.u8()?)),
        2 => match b {
            LEN_32BIT => Length::Len(u64::from(r.u32_be()?)),
            LEN_64BIT => Length::Len(r.u64_be()?),
            _ => return Err(DecodeError::Invalid("unknown length encoding")),
        },
        _ => Length::Encoded(b & 0x3f),
    })
}

/// Read a plain length (a count or a byte length); a string-encoding marker is an error.
pub fn read_len(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    match read_len_or_encoding(r)? {
        Length::Len(n) => Ok(n),
        Length::Encoded(_) => Err(DecodeError::Invalid(
            "encoded length where a length was expected",
        )),
    }
}

/// Read a length that must also fit in `usize` (a byte count about to be taken from the input).
pub fn read_len_usize(r: &mut Reader<'_>) -> Result<usize, DecodeError> {
    usize::try_from(read_len(r)?).map_err(|_| DecodeError::Invalid("length too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(n: u64) -> Vec<u8> {
        let mut v = Vec::new();
        write_len(&mut v, n);
        v
    }

    #[test]
    fn forms_and_boundaries() {
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(63), [0x3f]);
        assert_eq!(enc(64), [0x40, 0x40]);
        assert_eq!(enc(16383), [0x7f, 0xff]);
        assert_eq!(enc(16384), [0x80, 0, 0, 0x40, 0]);
        assert_eq!(enc(u32::MAX as u64), [0x80, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(enc(1 << 32), [0x81, 0, 0, 0, 1, 0, 0, 0, 0]);
        for n in [
            0,
            1,
            63,
            64,
            300,
            16383,
            16384,
            1 << 20,
            u32::MAX as u64,
            1 << 40,
            u64::MAX,
        ] {
            let b = enc(n);
            let mut r = Reader::new(&b);
            assert_eq!(read_len(&mut r), Ok(n));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn encoded_and_bad() {
        assert_eq!(
            read_len_or_encoding(&mut Reader::new(&[0xc3])),
            Ok(Length::Encoded(3))
        );
        assert!(read_len(&mut Reader::new(&[0xc0])).is_err());
        assert!(read_len(&mut Reader::new(&[0x82])).is_err());
        assert_eq!(
            read_len(&mut Reader::new(&[0x80, 1])),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            read_len(&mut Reader::new(&[0x41])),
            Err(DecodeError::Truncated)
        );
    }
}
