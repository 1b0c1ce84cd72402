//! A cheap clock for per-command timing (`INFO commandstats` usec): on x86_64 the CPU's
//! time-stamp counter, read in a few nanoseconds instead of a `clock_gettime` call, and converted
//! to microseconds only when INFO reports it, by the tick rate measured against `Instant` since the
//! process first asked. Invariance of the TSC is assumed, not checked (every x86_64 CPU of the last
//! decade has it; Linux uses it as its clocksource there): on one without it the usec figures of
//! commandstats drift, nothing else does. Elsewhere the ticks are nanoseconds from `Instant`.

use std::sync::OnceLock;
use std::time::Instant;

/// The moment the rate is measured from: `(Instant, ticks)` read together.
static BASE: OnceLock<(Instant, u64)> = OnceLock::new();

/// Start measuring the tick rate (call early: the longer ago, the more exact the conversion).
pub fn init() {
    BASE.get_or_init(|| (Instant::now(), raw()));
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn raw() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn raw() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Ticks now (only differences taken on one thread are meaningful).
#[inline]
pub fn now() -> u64 {
    raw()
}

/// Microseconds that `ticks` ticks lasted.
pub fn to_usec(ticks: u64) -> u64 {
    if cfg!(not(target_arch = "x86_64")) {
        return ticks / 1000;
    }
    let (t0, r0) = *BASE.get_or_init(|| (Instant::now(), raw()));
    let ns = t0.elapsed().as_nanos();
    let dt = u128::from(raw().wrapping_sub(r0));
    if dt == 0 {
        return 0;
    }
    (u128::from(ticks) * ns / dt / 1000) as u64
}

/// Ticks that `usec` microseconds last (the inverse of [`to_usec`], by the same estimate).
pub fn from_usec(usec: u64) -> u64 {
    if cfg!(not(target_arch = "x86_64")) {
        return usec.saturating_mul(1000);
    }
    let (t0, r0) = *BASE.get_or_init(|| (Instant::now(), raw()));
    let ns = t0.elapsed().as_nanos();
    let dt = u128::from(raw().wrapping_sub(r0));
    if ns == 0 {
        return usec;
    }
    (u128::from(usec) * 1000 * dt / ns).min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn ticks_convert_to_elapsed_time() {
        super::init();
        let a = super::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let us = super::to_usec(super::now().wrapping_sub(a));
        // Only a lower bound: a loaded machine may oversleep by any amount.
        assert!(us >= 15_000, "{us}");
        assert_eq!(super::to_usec(0), 0);
    }
}
