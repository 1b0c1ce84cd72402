//! LZF compression and decompression, compatible with the liblzf 3.6 bundled in Redis
//! (`lzf_c.c` with `HLOG 16`, `VERY_FAST`; `lzf_d.c`).
//!
//! # Format
//! A sequence of chunks. A control byte `000LLLLL` is followed by `L + 1` literal bytes. A control
//! byte `LLLooooo` (L ≠ 0) is a back reference of `L + 2` bytes (`L == 7`: one more byte adds to
//! L) to the offset `(ooooo << 8 | next byte) + 1` bytes back in the output.

use crate::error::DecodeError;

const HLOG: u32 = 16;
const HSIZE: usize = 1 << HLOG;
const MAX_LIT: usize = 1 << 5;
const MAX_OFF: usize = 1 << 13;
const MAX_REF: usize = (1 << 8) + (1 << 3);

/// The most output one input byte can produce (a 3-byte back reference copies 264 bytes), used to
/// reject hostile claimed lengths before allocating.
pub const MAX_EXPANSION: usize = 88;

fn idx(h: u32) -> usize {
    ((h >> (3 * 8 - HLOG)).wrapping_sub(h.wrapping_mul(5)) as usize) & (HSIZE - 1)
}

/// Compress `input` into at most `max_out` bytes, as `lzf_compress(in, len, out, max_out)` does;
/// `None` when the input is empty or the result would not fit (so it does not save space).
pub fn compress(input: &[u8], max_out: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    compress_into(input, max_out, &mut out).then_some(out)
}

/// [`compress`] appending to `out` (no allocation when `out` has room); false, with `out` as it
/// was, when the input is empty or the result would not fit in `max_out` bytes.
pub fn compress_into(input: &[u8], max_out: usize, out: &mut Vec<u8>) -> bool {
    let in_end = input.len();
    if in_end == 0 || max_out == 0 || u32::try_from(in_end).is_err() {
        return false;
    }
    HTAB.with(|h| {
        let mut h = h.borrow_mut();
        let (tab, next) = &mut *h;
        if tab.is_empty() {
            *tab = vec![0; HSIZE];
        }
        // This call stores `base + position`; older entries are below `base`, so read as empty.
        if u64::from(*next) + in_end as u64 + 1 > u64::from(u32::MAX) {
            tab.fill(0);
            *next = 1;
        }
        let base = *next;
        *next += in_end as u32 + 1;
        let start = out.len();
        // Four bytes of slack: the checks below mirror liblzf and keep `op <= out_end`.
        out.resize(start + max_out + 4, 0);
        match compress_in(tab, base, input, max_out, &mut out[start..]) {
            Some(n) => {
                out.truncate(start + n);
                true
            }
            None => {
                out.truncate(start);
                false
            }
        }
    })
}

std::thread_local! {
    /// The hash table of positions, kept between calls: zeroing 256 KB for every compressed
    /// string (liblzf's table size) cost far more than compressing a short one. Entries of earlier
    /// calls are told apart by a per-call base instead.
    static HTAB: std::cell::RefCell<(Vec<u32>, u32)> = const { std::cell::RefCell::new((Vec::new(), 1)) };
}

/// Compress into `out` (`max_out + 4` bytes long); the compressed length, or `None`.
fn compress_in(
    htab: &mut [u32],
    base: u32,
    input: &[u8],
    max_out: usize,
    out: &mut [u8],
) -> Option<usize> {
    let in_end = input.len();
    let out_end = max_out;
    let (mut ip, mut op, mut lit) = (0usize, 1usize, 0usize);
    let mut hval: u32 = if in_end >= 2 {
        (u32::from(input[0]) << 8) | u32::from(input[1])
    } else {
        0
    };
    while ip + 2 < in_end {
        hval = (hval << 8) | u32::from(input[ip + 2]);
        let slot = idx(hval);
        let v = htab[slot];
        let r = if v >= base { (v - base) as usize } else { 0 };
        htab[slot] = base + ip as u32;
        // Slot value 0 means "empty" (liblzf's `ref > in_data` test excludes position 0 too).
        if r > 0
            && r < ip
            && ip - r - 1 < MAX_OFF
            && input[r + 2] == input[ip + 2]
            && input[r] == input[ip]
            && input[r + 1] == input[ip + 1]
        {
            let off = ip - r - 1;
            let mut len = 2usize;
            let maxlen = (in_end - ip - len).min(MAX_REF);
            if op + 3 + 1 >= out_end && op - usize::from(lit == 0) + 3 + 1 >= out_end {
                return None;
            }
            out[op - lit - 1] = (lit as u8).wrapping_sub(1); // stop run
            op -= usize::from(lit == 0); // undo run if length is zero
            let mut mismatch = false;
            if maxlen > 16 {
                for _ in 0..16 {
                    len += 1;
                    if input[r + len] != input[ip + len] {
                        mismatch = true;
                        break;
                    }
                }
            }
            if !mismatch {
                loop {
                    len += 1;
                    if !(len < maxlen && input[r + len] == input[ip + len]) {
                        break;
                    }
                }
            }
            len -= 2; // now #octets - 2, as stored
            ip += 1;
            if len < 7 {
                out[op] = ((off >> 8) + (len << 5)) as u8;
                op += 1;
            } else {
                out[op] = ((off >> 8) + (7 << 5)) as u8;
                out[op + 1] = (len - 7) as u8;
                op += 2;
            }
            out[op] = off as u8;
            op += 1;
            lit = 0;
            op += 1; // start run
            ip += len + 1;
            if ip + 2 >= in_end {
                break;
            }
            ip -= 2;
            hval = (u32::from(input[ip]) << 8) | u32::from(input[ip + 1]);
            hval = (hval << 8) | u32::from(input[ip + 2]);
            htab[idx(hval)] = base + ip as u32;
            ip += 1;
            hval = (hval << 8) | u32::from(input[ip + 2]);
            htab[idx(hval)] = base + ip as u32;
            ip += 1;
        } else {
            if op >= out_end {
                return None;
            }
            lit += 1;
            out[op] = input[ip];
            op += 1;
            ip += 1;
            if lit == MAX_LIT {
                out[op - lit - 1] = (lit - 1) as u8;
                lit = 0;
                op += 1;
            }
        }
    }
    if op + 3 > out_end {
        return None;
    }
    while ip < in_end {
        lit += 1;
        out[op] = input[ip];
        op += 1;
        ip += 1;
        if lit == MAX_LIT {
            out[op - lit - 1] = (lit - 1) as u8;
            lit = 0;
            op += 1;
        }
    }
    out[op - lit - 1] = (lit as u8).wrapping_sub(1); // end run
    op -= usize::from(lit == 0);
    if op > out_end {
        return None;
    }
    Some(op)
}

/// Decompress `input`, which must expand to exactly `out_len` (> 0) bytes.
pub fn decompress(input: &[u8], out_len: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    decompress_into(input, out_len, &mut out)?;
    Ok(out)
}

/// [`decompress`] appending to `out`; on error `out` may hold part of the output.
pub fn decompress_into(input: &[u8], out_len: usize, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    if out_len == 0 || out_len > input.len().saturating_mul(MAX_EXPANSION) {
        return Err(DecodeError::Invalid("LZF length out of range"));
    }
    let bad = DecodeError::Invalid("invalid LZF compressed string");
    let base = out.len();
    out.reserve(out_len);
    let mut ip = 0usize;
    while ip < input.len() {
        let ctrl = usize::from(input[ip]);
        ip += 1;
        if ctrl < 1 << 5 {
            let n = ctrl + 1;
            if out.len() - base + n > out_len || ip + n > input.len() {
                return Err(bad);
            }
            out.extend_from_slice(&input[ip..ip + n]);
            ip += n;
        } else {
            let mut len = ctrl >> 5;
            let mut back = ((ctrl & 0x1f) << 8) + 1;
            let mut next = || {
                let b = input.get(ip).copied();
                ip += 1;
                b.map(usize::from)
                    .ok_or(DecodeError::Invalid("truncated LZF back reference"))
            };
            if len == 7 {
                len += next()?;
            }
            back += next()?;
            if out.len() - base + len + 2 > out_len || back > out.len() - base {
                return Err(bad);
            }
            let start = out.len() - back;
            for k in 0..len + 2 {
                let b = out[start + k];
                out.push(b);
            }
        }
    }
    if out.len() - base != out_len {
        return Err(bad);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The hash table kept between calls does not change what a call produces.
    #[test]
    fn output_does_not_depend_on_earlier_calls() {
        let inputs: Vec<Vec<u8>> = (0..50u32)
            .map(|n| {
                (0..(n * 97 % 3000 + 30))
                    .map(|i| (i * n % 7) as u8 + b'a')
                    .collect()
            })
            .collect();
        let first: Vec<_> = inputs.iter().map(|x| super::compress(x, x.len())).collect();
        let again: Vec<_> = inputs
            .iter()
            .rev()
            .map(|x| super::compress(x, x.len()))
            .collect();
        let fresh = std::thread::spawn(move || {
            inputs
                .iter()
                .map(|x| super::compress(x, x.len()))
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap();
        assert_eq!(first, fresh);
        assert_eq!(first, again.into_iter().rev().collect::<Vec<_>>());
    }

    use super::*;

    fn round_trip(data: &[u8]) {
        let c = compress(data, data.len() * 2 + 16).expect("compressible with a generous limit");
        assert_eq!(decompress(&c, data.len()).as_deref(), Ok(data));
    }

    #[test]
    fn hundred_x_matches_redis() {
        // Redis 7.0.15: 100 × 'x' dumps as `00 c3 09 40 64 <9 LZF bytes>`.
        let data = vec![b'x'; 100];
        let c = compress(&data, 96).expect("compresses");
        assert_eq!(c.len(), 9);
        assert_eq!(decompress(&c, 100).expect("valid"), data);
    }

    #[test]
    fn round_trips() {
        round_trip(b"a");
        round_trip(b"ab");
        round_trip(b"abc");
        round_trip(b"hello hello hello hello hello hello");
        let mut v = Vec::new();
        for i in 0..20000u32 {
            v.extend_from_slice(format!("{} ", i % 977).as_bytes());
        }
        round_trip(&v);
        let mut x = 12345u64;
        let noise: Vec<u8> = (0..5000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect();
        round_trip(&noise);
        assert!(
            compress(&noise, noise.len() - 4).is_none(),
            "noise does not shrink"
        );
        round_trip(&vec![0u8; 70000]);
    }

    #[test]
    fn hostile_input_is_rejected() {
        assert!(decompress(&[], 1).is_err());
        assert!(decompress(&[0x00, b'a'], 0).is_err());
        assert!(decompress(&[0x00, b'a'], 2).is_err());
        assert!(decompress(&[0x05, b'a'], 6).is_err());
        assert!(
            decompress(&[0x20, 0x00], 3).is_err(),
            "back reference before start"
        );
        assert!(decompress(&[0x00, b'a', 0xe0], 300).is_err());
        assert!(decompress(&[0x00, b'a'], usize::MAX).is_err());
    }
}
