//! Redis's `long double` arithmetic for INCRBYFLOAT / HINCRBYFLOAT, emulated in software: x87
//! 80-bit extended precision (64-bit significand, round to nearest even), parsed like glibc's
//! `strtold` under Redis's `string2ld` rules, and printed like `ld2string(LD_STR_HUMAN)`
//! (`%.17Lf`, then trailing zeros stripped). Exact big-integer arithmetic makes every step
//! correctly rounded, as the hardware and glibc are.

use num_bigint::{BigInt, BigUint, Sign};
use num_traits::{One, Zero};

/// Lowest exponent of the significand's last bit (subnormals share it).
const EMIN: i64 = -16382 - 63;
/// Highest exponent of the significand's last bit for a finite value.
const EMAX: i64 = 16383 - 63;
/// Redis's `MAX_LONG_DOUBLE_CHARS`: longer texts are not floats.
const MAX_CHARS: usize = 5 * 1024;

/// A finite long double `(-1)^neg * m * 2^e`, or an infinity.
#[derive(Debug, Clone, PartialEq)]
pub enum LongDouble {
    Finite { neg: bool, m: u64, e: i64 },
    Inf { neg: bool },
}

impl LongDouble {
    pub const ZERO: LongDouble = LongDouble::Finite {
        neg: false,
        m: 0,
        e: 0,
    };

    /// Whether the value is an infinity.
    pub fn is_inf(&self) -> bool {
        matches!(self, LongDouble::Inf { .. })
    }
}

/// Round the positive rational `p / q` to a long double (nearest, ties to even).
fn round(neg: bool, p: &BigUint, q: &BigUint) -> LongDouble {
    if p.is_zero() {
        return LongDouble::Finite { neg, m: 0, e: 0 };
    }
    // Choose e so that 2^63 <= p / (q 2^e) < 2^64, then clamp into the subnormal range.
    let mut e = p.bits() as i64 - q.bits() as i64 - 64;
    let quot = |e: i64| -> (BigUint, BigUint, BigUint) {
        let (num, den) = if e >= 0 {
            (p.clone(), q << (e as usize))
        } else {
            (p << ((-e) as usize), q.clone())
        };
        let m = &num / &den;
        let r = &num - &m * &den;
        (m, r, den)
    };
    let two63 = BigUint::one() << 63usize;
    let two64 = BigUint::one() << 64usize;
    let (mut m, mut r, mut den) = quot(e);
    while m >= two64 {
        e += 1;
        (m, r, den) = quot(e);
    }
    while m < two63 && e > EMIN {
        e -= 1;
        (m, r, den) = quot(e);
    }
    if e < EMIN {
        e = EMIN;
        (m, r, den) = quot(e);
    }
    let twice = &r << 1usize;
    if twice > den || (twice == den && m.bit(0)) {
        m += 1u32;
        if m == two64 {
            m = two63.clone();
            e += 1;
        }
    }
    if e > EMAX {
        return LongDouble::Inf { neg };
    }
    let digits = m.to_u64_digits();
    LongDouble::Finite {
        neg,
        m: digits.first().copied().unwrap_or(0),
        e,
    }
}

/// Parse as Redis's `string2ld`: the whole text must be a number `strtold` accepts (decimal or
/// hexadecimal, optional exponent, `inf`/`infinity`), no leading space, not NaN, no overflow to
/// infinity and no underflow to zero.
pub fn parse(b: &[u8]) -> Option<LongDouble> {
    if b.is_empty() || b.len() >= MAX_CHARS {
        return None;
    }
    // strtold stops at a NUL, and Redis then refuses the text: it must all be consumed.
    if b.contains(&0) {
        return None;
    }
    let (neg, rest) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let lower = rest.to_ascii_lowercase();
    if lower == b"inf" || lower == b"infinity" {
        return Some(LongDouble::Inf { neg });
    }
    let (hex, body) = match lower.strip_prefix(b"0x") {
        Some(h) if !h.is_empty() && (h[0].is_ascii_hexdigit() || h[0] == b'.') => (true, h),
        _ => (false, &lower[..]),
    };
    let radix: u32 = if hex { 16 } else { 10 };
    let mut digits = BigUint::zero();
    let mut frac = 0i64;
    let mut seen_digit = false;
    let mut seen_dot = false;
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c == b'.' && !seen_dot {
            seen_dot = true;
        } else if let Some(d) = (c as char).to_digit(radix) {
            seen_digit = true;
            digits = digits * radix + d;
            if seen_dot {
                frac += 1;
            }
        } else {
            break;
        }
        i += 1;
    }
    if !seen_digit {
        return None;
    }
    let mut exp = 0i64;
    let marker = if hex { b'p' } else { b'e' };
    if i < body.len() && body[i] == marker {
        let mut j = i + 1;
        let eneg = match body.get(j) {
            Some(b'-') => {
                j += 1;
                true
            }
            Some(b'+') => {
                j += 1;
                false
            }
            _ => false,
        };
        let start = j;
        while j < body.len() && body[j].is_ascii_digit() {
            exp = (exp * 10 + (body[j] - b'0') as i64).min(1 << 40);
            j += 1;
        }
        if j > start {
            if eneg {
                exp = -exp;
            }
            i = j;
        } else {
            exp = 0;
        }
    }
    if i != body.len() {
        return None;
    }
    if digits.is_zero() {
        return Some(LongDouble::Finite { neg, m: 0, e: 0 });
    }
    let v = if hex {
        // digits * 2^(exp - 4 frac)
        let e2 = exp - 4 * frac;
        let top = digits.bits() as i64 + e2;
        if top > EMAX + 70 {
            LongDouble::Inf { neg }
        } else if top < EMIN - 2 {
            LongDouble::Finite { neg, m: 0, e: 0 }
        } else if e2 >= 0 {
            round(neg, &(digits << (e2 as usize)), &BigUint::one())
        } else {
            round(neg, &digits, &(BigUint::one() << ((-e2) as usize)))
        }
    } else {
        let e10 = exp - frac;
        let ndigits = digits.to_str_radix(10).len() as i64;
        if ndigits + e10 > 4940 {
            LongDouble::Inf { neg }
        } else if ndigits + e10 < -4960 {
            LongDouble::Finite { neg, m: 0, e: 0 }
        } else if e10 >= 0 {
            round(
                neg,
                &(digits * BigUint::from(10u32).pow(e10 as u32)),
                &BigUint::one(),
            )
        } else {
            round(neg, &digits, &BigUint::from(10u32).pow((-e10) as u32))
        }
    };
    match v {
        // ERANGE: overflow to infinity or underflow to zero is not a valid float for Redis.
        LongDouble::Inf { .. } => None,
        LongDouble::Finite { m: 0, .. } => None,
        v => Some(v),
    }
}

fn signed(neg: bool, m: u64, shift: u64) -> BigInt {
    let v = BigInt::from(m) << (shift as usize);
    if neg {
        -v
    } else {
        v
    }
}

/// `a + b` in x87 extended precision; `None` when the result is NaN or an infinity.
pub fn add(a: &LongDouble, b: &LongDouble) -> Option<LongDouble> {
    let (
        LongDouble::Finite {
            neg: an,
            m: am,
            e: ae,
        },
        LongDouble::Finite {
            neg: bn,
            m: bm,
            e: be,
        },
    ) = (a, b)
    else {
        return None;
    };
    if *am == 0 && *bm == 0 {
        // -0 + -0 is -0; any other sum of zeros is +0.
        return Some(LongDouble::Finite {
            neg: *an && *bn,
            m: 0,
            e: 0,
        });
    }
    if *am == 0 {
        return Some(b.clone());
    }
    if *bm == 0 {
        return Some(a.clone());
    }
    let e = (*ae).min(*be);
    let sum = signed(*an, *am, (*ae - e) as u64) + signed(*bn, *bm, (*be - e) as u64);
    let (sign, mag) = sum.into_parts();
    let neg = sign == Sign::Minus;
    let v = if e >= 0 {
        round(neg, &(mag << (e as usize)), &BigUint::one())
    } else {
        round(neg, &mag, &(BigUint::one() << ((-e) as usize)))
    };
    (!v.is_inf()).then_some(v)
}

/// Redis's `ld2string(LD_STR_HUMAN)`: `%.17Lf` with trailing zeros (and a bare point) removed,
/// and `-0` written `0`.
pub fn human(v: &LongDouble) -> String {
    let (neg, m, e) = match v {
        LongDouble::Finite { neg, m, e } => (*neg, *m, *e),
        LongDouble::Inf { neg: true } => return "-inf".into(),
        LongDouble::Inf { neg: false } => return "inf".into(),
    };
    // n = round(|v| * 10^17), ties to even (glibc's printf in the nearest mode).
    let scaled = BigUint::from(m) * BigUint::from(10u32).pow(17);
    let n = if e >= 0 {
        scaled << (e as usize)
    } else {
        let den = BigUint::one() << ((-e) as usize);
        let q = &scaled / &den;
        let r = &scaled - &q * &den;
        let twice = r << 1usize;
        if twice > den || (twice == den && q.bit(0)) {
            q + 1u32
        } else {
            q
        }
    };
    let mut digits = n.to_str_radix(10);
    if digits.len() < 18 {
        digits = format!("{}{}", "0".repeat(18 - digits.len()), digits);
    }
    let (int, frac) = digits.split_at(digits.len() - 17);
    let frac = frac.trim_end_matches('0');
    let mut s = String::with_capacity(digits.len() + 2);
    if neg {
        s.push('-');
    }
    s.push_str(int);
    if !frac.is_empty() {
        s.push('.');
        s.push_str(frac);
    }
    if s == "-0" {
        s = "0".into();
    }
    s
}

/// INCRBYFLOAT's step: `cur + by` printed as Redis does, or `None` for NaN/infinity.
pub fn incr(cur: &LongDouble, by: &LongDouble) -> Option<String> {
    add(cur, by).map(|v| human(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(a: &str, b: &str) -> Option<String> {
        incr(&parse(a.as_bytes())?, &parse(b.as_bytes())?)
    }

    #[test]
    fn redis_results() {
        assert_eq!(inc("0.1", "0.2").as_deref(), Some("0.3"));
        assert_eq!(inc("10.5", "0.1").as_deref(), Some("10.6"));
        assert_eq!(
            inc("0", "1e50").as_deref(),
            Some("100000000000000000003583830118858923890798487404544")
        );
        assert_eq!(inc("1", "-1").as_deref(), Some("0"));
        assert_eq!(inc("0", "-1e-30").as_deref(), Some("0"));
        assert_eq!(inc("0", "5.0e3").as_deref(), Some("5000"));
        assert_eq!(inc("0", "0x10").as_deref(), Some("16"));
        assert_eq!(inc("0", "inf"), None);
        assert!(parse(b" 1").is_none());
        assert!(parse(b"1 ").is_none());
        assert!(parse(b"nan").is_none());
        assert!(parse(b"1e99999").is_none());
        assert!(parse(b"1e-99999").is_none());
        assert!(parse(b"abc").is_none());
        assert!(parse(b"").is_none());
    }
}
