//! How SORT reads and orders scores, bit for bit as Redis 7.0 does: C's `strtod` (which accepts
//! more than Rust's float parser: leading blanks, hex floats, a trailing NUL) and the partial
//! quicksort Redis uses for `BY … LIMIT` (`pqsort.c`), whose order of equal elements a client
//! can see.

use std::cmp::Ordering;

/// A score as SORT reads it: glibc `strtod` over the bytes before the first NUL, which must all be
/// consumed, with no range error and no NaN. `None` is Redis's "can't be converted into double".
/// The empty string converts nothing yet leaves `strtod` at the NUL: it reads as 0.
pub fn strtod_score(b: &[u8]) -> Option<f64> {
    let s = match memchr::memchr(0, b) {
        Some(i) => &b[..i],
        None => b,
    };
    if s.is_empty() {
        return Some(0.0);
    }
    let blank = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let body = &s[s.iter().take_while(|c| blank(c)).count()..];
    let (neg, rest) = match body.first() {
        Some(b'-') => (true, &body[1..]),
        Some(b'+') => (false, &body[1..]),
        _ => (false, body),
    };
    let lower = rest.to_ascii_lowercase();
    let v = if lower == b"inf" || lower == b"infinity" {
        f64::INFINITY
    } else if lower.starts_with(b"0x") {
        hex(&rest[2..])?
    } else {
        decimal(rest)?
    };
    Some(if neg { -v } else { v })
}

/// Digits, an optional point and digits, at least one digit in all: (integer digits, fraction
/// digits, bytes used).
fn mantissa(s: &[u8], digit: impl Fn(u8) -> bool) -> Option<(&[u8], &[u8], usize)> {
    let int = s.iter().take_while(|&&c| digit(c)).count();
    let mut used = int;
    let mut frac: &[u8] = &[];
    if s.get(used) == Some(&b'.') {
        let n = s[used + 1..].iter().take_while(|&&c| digit(c)).count();
        frac = &s[used + 1..used + 1 + n];
        used += 1 + n;
    }
    (int + frac.len() > 0).then_some((&s[..int], frac, used))
}

/// An exponent (`e`/`p` already matched) that must end the string: its value, saturated.
fn exponent(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let e = digits
        .iter()
        .fold(0i64, |a, &c| (a * 10 + (c - b'0') as i64).min(1 << 40));
    Some(if neg { -e } else { e })
}

/// A finite result; overflow and underflow are `strtod`'s ERANGE.
fn in_range(v: f64, nonzero: bool) -> Option<f64> {
    let tiny = (v == 0.0 && nonzero) || (v != 0.0 && v.abs() < f64::MIN_POSITIVE);
    (v.is_finite() && !tiny).then_some(v)
}

fn decimal(s: &[u8]) -> Option<f64> {
    let (int, frac, used) = mantissa(s, |c| c.is_ascii_digit())?;
    let rest = &s[used..];
    if !rest.is_empty() {
        if !matches!(rest[0], b'e' | b'E') {
            return None;
        }
        exponent(&rest[1..])?;
    }
    let nonzero = int.iter().chain(frac).any(|&c| c != b'0');
    let v: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    in_range(v, nonzero)
}

fn hex(s: &[u8]) -> Option<f64> {
    let (int, frac, used) = mantissa(s, |c| c.is_ascii_hexdigit())?;
    let rest = &s[used..];
    let mut exp = if rest.is_empty() {
        0
    } else if matches!(rest[0], b'p' | b'P') {
        exponent(&rest[1..])?
    } else {
        return None;
    };
    // 32 significant hex digits fill a u128; later ones only scale (or are dropped, from the
    // fraction).
    let mut m: u128 = 0;
    let mut nonzero = false;
    let mut dropped = false;
    let mut kept = 0;
    for (i, &c) in int.iter().chain(frac).enumerate() {
        let d = (c as char).to_digit(16).unwrap_or(0) as u128;
        nonzero |= d != 0;
        let in_frac = i >= int.len();
        if m == 0 && d == 0 {
            if in_frac {
                exp -= 4;
            }
            continue;
        }
        if kept < 32 {
            m = m << 4 | d;
            kept += 1;
            if in_frac {
                exp -= 4;
            }
        } else if !in_frac {
            exp += 4;
            dropped |= d != 0;
        } else {
            dropped |= d != 0;
        }
    }
    let v = ldexp(m as f64, exp);
    // glibc reports no range error for a subnormal result that is exact.
    let exact = !dropped && (m as f64) as u128 == m && ldexp(v, -exp) == m as f64;
    if v != 0.0 && v.abs() < f64::MIN_POSITIVE && exact {
        return Some(v);
    }
    in_range(v, nonzero)
}

/// `x * 2^e`, in steps that stay exact until the result itself overflows or underflows.
fn ldexp(mut x: f64, mut e: i64) -> f64 {
    while e > 1000 && x.is_finite() && x != 0.0 {
        x *= 2f64.powi(1000);
        e -= 1000;
    }
    while e < -1000 && x != 0.0 {
        x *= 2f64.powi(-1000);
        e += 1000;
    }
    x * 2f64.powi(e.clamp(-1100, 1100) as i32)
}

/// Redis's `pqsort`: Bentley–McIlroy quicksort that only recurses into parts overlapping the
/// elements `lrange..=rrange`, which end up in order. Ported step for step, so that elements the
/// comparison holds equal end up where Redis puts them.
pub fn pqsort<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering, lrange: i64, rrange: i64) {
    let n = v.len();
    part(v, 0, n, &mut cmp, lrange, rrange);
}

/// Whether the elements `lo..lo + n` lie wholly outside `l..=r` (`r` may be `l - 1`).
fn outside(lo: usize, n: usize, l: i64, r: i64) -> bool {
    let (lo, hi) = (lo as i64, (lo + n) as i64);
    (l < lo && r < lo) || (l >= hi && r >= hi)
}

fn med3<T>(
    v: &[T],
    a: usize,
    b: usize,
    c: usize,
    cmp: &mut impl FnMut(&T, &T) -> Ordering,
) -> usize {
    let lt = |x: Ordering| x == Ordering::Less;
    let gt = |x: Ordering| x == Ordering::Greater;
    if lt(cmp(&v[a], &v[b])) {
        if lt(cmp(&v[b], &v[c])) {
            b
        } else if lt(cmp(&v[a], &v[c])) {
            c
        } else {
            a
        }
    } else if gt(cmp(&v[b], &v[c])) {
        b
    } else if lt(cmp(&v[a], &v[c])) {
        a
    } else {
        c
    }
}

fn vecswap<T>(v: &mut [T], a: usize, b: usize, n: usize) {
    for i in 0..n {
        v.swap(a + i, b + i);
    }
}

fn part<T>(
    v: &mut [T],
    mut a: usize,
    mut n: usize,
    cmp: &mut impl FnMut(&T, &T) -> Ordering,
    l: i64,
    r: i64,
) {
    use Ordering::{Equal, Greater, Less};
    loop {
        if n < 7 {
            for pm in a + 1..a + n {
                let mut pl = pm;
                while pl > a && cmp(&v[pl - 1], &v[pl]) == Greater {
                    v.swap(pl, pl - 1);
                    pl -= 1;
                }
            }
            return;
        }
        let mut pm = a + n / 2;
        if n > 7 {
            let mut pl = a;
            let mut pn = a + n - 1;
            if n > 40 {
                let d = n / 8;
                pl = med3(v, pl, pl + d, pl + 2 * d, cmp);
                pm = med3(v, pm - d, pm, pm + d, cmp);
                pn = med3(v, pn - 2 * d, pn - d, pn, cmp);
            }
            pm = med3(v, pl, pm, pn, cmp);
        }
        v.swap(a, pm);
        let (mut pa, mut pb) = (a + 1, a + 1);
        let (mut pc, mut pd) = (a + n - 1, a + n - 1);
        loop {
            while pb <= pc {
                let c = cmp(&v[pb], &v[a]);
                if c == Greater {
                    break;
                }
                if c == Equal {
                    v.swap(pa, pb);
                    pa += 1;
                }
                pb += 1;
            }
            while pb <= pc {
                let c = cmp(&v[pc], &v[a]);
                if c == Less {
                    break;
                }
                if c == Equal {
                    v.swap(pc, pd);
                    pd -= 1;
                }
                pc -= 1;
            }
            if pb > pc {
                break;
            }
            v.swap(pb, pc);
            pb += 1;
            pc -= 1;
        }
        let pn = a + n;
        let s = (pa - a).min(pb - pa);
        vecswap(v, a, pb - s, s);
        let s = (pd - pc).min(pn - pd - 1);
        vecswap(v, pb, pn - s, s);
        let s = pb - pa;
        if s > 1 && !outside(a, s, l, r) {
            part(v, a, s, cmp, l, r);
        }
        let s = pd - pc;
        if s <= 1 {
            return;
        }
        a = pn - s;
        n = s;
        if outside(a, n, l, r) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_parse_like_strtod() {
        let ok = |s: &str| strtod_score(s.as_bytes());
        assert_eq!(ok("10"), Some(10.0));
        assert_eq!(ok(" \t-2.5"), Some(-2.5));
        assert_eq!(ok("+.5e1"), Some(5.0));
        assert_eq!(ok("1."), Some(1.0));
        assert_eq!(ok(""), Some(0.0));
        assert_eq!(ok("\0abc"), Some(0.0));
        assert_eq!(ok("7\0junk"), Some(7.0));
        assert_eq!(ok("-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(ok("Infinity"), Some(f64::INFINITY));
        assert_eq!(ok("0x10"), Some(16.0));
        assert_eq!(ok("0x.8"), Some(0.5));
        assert_eq!(ok("0x1p-2"), Some(0.25));
        assert_eq!(ok("-0X1.8P1"), Some(-3.0));
        assert_eq!(ok("0x0000000000000000000000000000000001"), Some(1.0));
        assert_eq!(
            ok("0x1000000000000000000000000000000000"),
            Some(2f64.powi(132))
        );
        assert_eq!(ok("0x1p-1074"), Some(f64::from_bits(1)));
        for bad in [
            "abc",
            " ",
            "+",
            ".",
            "1e",
            "1e+",
            "2 ",
            "1x",
            "0x",
            "0x1p",
            "nan",
            "inf1",
            "1e400",
            "1e-400",
            "1e-310",
            "0x1p99999",
            "0x1.1p-1074",
        ] {
            assert_eq!(ok(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pqsort_orders_the_requested_range() {
        let mut seed = 7u64;
        for n in [0usize, 1, 5, 7, 8, 40, 41, 100, 300] {
            let v: Vec<u32> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 33) as u32 % 50
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort();
            for (l, r) in [
                (0i64, n as i64 - 1),
                (3, 9),
                (n as i64 / 2, n as i64 - 1),
                (2, 1),
            ] {
                let mut w = v.clone();
                pqsort(&mut w, |a, b| a.cmp(b), l, r);
                let (lo, hi) = (l.max(0) as usize, (r + 1).clamp(0, n as i64) as usize);
                if lo < hi {
                    assert_eq!(w[lo..hi], sorted[lo..hi], "n {n} range {l}..={r}");
                }
            }
        }
    }
}
