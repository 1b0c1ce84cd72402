//! Key numbers for `__rand_int__`: a small fast PRNG and the uniform / zipfian distributions over
//! `0..keyspace` (`-r`). Everything here is allocation-free per draw.

/// wyrand: a tiny, fast, statistically decent PRNG (one multiply per draw). Not cryptographic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value, zero included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x2d35_8dcc_aa6c_78a5)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.0 as u128).wrapping_mul((self.0 ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) ^ t) as u64
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; `n` must be > 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// How key numbers are drawn from `0..keyspace`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dist {
    /// Every key equally likely (redis-benchmark's `-r`).
    Uniform,
    /// Zipf's law with this exponent: key 0 the hottest, key `k` drawn ∝ `1/(k+1)^s`.
    Zipfian(f64),
}

/// A sampler for one [`Dist`] over a fixed keyspace.
#[derive(Debug, Clone)]
pub enum KeySampler {
    /// Uniform over `0..n`.
    Uniform(u64),
    /// Zipfian over `0..n`.
    Zipf(Zipf),
}

impl KeySampler {
    /// A sampler over `0..keyspace` (`keyspace` ≥ 1).
    pub fn new(dist: Dist, keyspace: u64) -> KeySampler {
        let n = keyspace.max(1);
        match dist {
            Dist::Uniform => KeySampler::Uniform(n),
            Dist::Zipfian(s) => KeySampler::Zipf(Zipf::new(n, s)),
        }
    }

    /// The next key number.
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        match self {
            KeySampler::Uniform(n) => rng.below(*n),
            KeySampler::Zipf(z) => z.sample(rng),
        }
    }
}

/// Zipf sampling by rejection-inversion (Hörmann & Derflinger 1996, as in Apache Commons
/// `RejectionInversionZipfSampler`): O(1) set-up and O(1) expected time per draw, any keyspace.
#[derive(Debug, Clone)]
pub struct Zipf {
    n: f64,
    exponent: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    s: f64,
}

impl Zipf {
    /// Zipf over `0..n` with `exponent` (> 0; clamped to a tiny positive value otherwise).
    pub fn new(n: u64, exponent: f64) -> Zipf {
        let exponent = if exponent > 0.0 { exponent } else { 1e-9 };
        let mut z = Zipf {
            n: n.max(1) as f64,
            exponent,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            s: 0.0,
        };
        z.h_integral_x1 = z.h_integral(1.5) - 1.0;
        z.h_integral_n = z.h_integral(z.n + 0.5);
        z.s = 2.0 - z.h_integral_inverse(z.h_integral(2.5) - z.h(2.0));
        z
    }

    /// A key number in `0..n`, 0 the most frequent.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_integral_n + rng.unit() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.s || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64 - 1;
            }
        }
    }

    fn h(&self, x: f64) -> f64 {
        (-self.exponent * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.exponent) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.exponent)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// `ln(1+x)/x`, stable near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(e^x - 1)/x`, stable near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_stays_in_range_and_spreads() {
        let mut rng = Rng::new(7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let k = rng.below(10);
            seen[k as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800 && c < 1200), "{seen:?}");
    }

    #[test]
    fn zipf_is_skewed_and_in_range() {
        let mut rng = Rng::new(1);
        let z = KeySampler::new(Dist::Zipfian(0.99), 1000);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            let k = z.sample(&mut rng);
            assert!(k < 1000);
            counts[k as usize] += 1;
        }
        // Rank 0 ≈ 1/H(1000, .99) ≈ 13% of draws; rank 9 about a tenth of that.
        assert!(counts[0] > 10_000 && counts[0] < 16_000, "{}", counts[0]);
        assert!(counts[0] > 5 * counts[9]);
        assert!(counts[900..].iter().sum::<u32>() < counts[0]);
    }

    #[test]
    fn zipf_exponent_one_and_single_key() {
        let mut rng = Rng::new(3);
        let z = Zipf::new(100, 1.0);
        assert!((0..1000).all(|_| z.sample(&mut rng) < 100));
        let one = Zipf::new(1, 1.2);
        assert!((0..100).all(|_| one.sample(&mut rng) == 0));
    }
}
