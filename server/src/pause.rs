//! CLIENT PAUSE and CLIENT UNPAUSE, as Redis 7.0: while a pause lasts, the commands of every
//! client (ALL), or only those that may write or replicate (WRITE), wait before they run and go on
//! when the pause ends or CLIENT UNPAUSE arrives. The client that paused is not exempt (nor is
//! CLIENT UNPAUSE itself under ALL, as in Redis); the master's replication stream is never paused.
//!
//! The state is one process-wide atomic (the mode in the top bits, the end in unix milliseconds
//! below), so a pause set on one core holds on every core. The per-command cost while no pause
//! is set is one relaxed load. A paused connection stops its batch before the waiting command,
//! writes the replies of the commands before it, waits (re-checking every few milliseconds, so
//! it never waits past the end), then runs the rest of the batch in order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use resp::command::{CommandSpec, WRITE};

use crate::shared::now_ms;

/// Commands that pause WRITE holds although they are not writes (Redis's `may-replicate`).
const MAY_REPLICATE: &[&str] = &["eval", "evalsha", "fcall", "publish", "spublish", "pfcount"];

/// Pause modes, ordered as Redis orders them (the stronger one wins when pauses overlap).
pub const OFF: u64 = 0;
/// `CLIENT PAUSE t WRITE`.
pub const WRITES: u64 = 1;
/// `CLIENT PAUSE t ALL`.
pub const ALL: u64 = 2;

const MODE_SHIFT: u32 = 62;
const END_MASK: u64 = (1 << MODE_SHIFT) - 1;

/// Mode (top two bits) and end (unix ms) of the current pause.
static STATE: AtomicU64 = AtomicU64::new(0);
/// Serializes the read-modify-write of [`pause`] and [`unpause`].
static LOCK: Mutex<()> = Mutex::new(());

/// `CLIENT PAUSE`: pause until `end_ms` (unix ms) in `mode`; an overlapping pause keeps the
/// stronger mode and the later end, as Redis merges them.
pub fn pause(end_ms: u64, mode: u64) {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (mut m, mut end) = current();
    if m == OFF || end <= now_ms() {
        m = mode;
        end = end_ms;
    } else {
        m = m.max(mode);
        end = end.max(end_ms);
    }
    STATE.store((m << MODE_SHIFT) | (end & END_MASK), Ordering::Release);
}

/// `CLIENT UNPAUSE`.
pub fn unpause() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    STATE.store(0, Ordering::Release);
}

fn current() -> (u64, u64) {
    let s = STATE.load(Ordering::Acquire);
    (s >> MODE_SHIFT, s & END_MASK)
}

/// Whether a pause is in force now (`INFO`-style check; cheap when none is set).
pub fn active() -> bool {
    let (m, end) = current();
    m != OFF && end > now_ms()
}

/// Whether the command must wait: `writes` says whether it (or the transaction EXEC runs) may
/// write or replicate.
#[inline]
pub fn holds(spec: &CommandSpec, writes: impl FnOnce() -> bool) -> bool {
    let s = STATE.load(Ordering::Relaxed);
    if s == 0 {
        return false;
    }
    holds_slow(spec, writes)
}

#[cold]
fn holds_slow(spec: &CommandSpec, writes: impl FnOnce() -> bool) -> bool {
    match current() {
        (OFF, _) => false,
        (_, end) if end <= now_ms() => false,
        (ALL, _) => true,
        _ => may_replicate(spec) || writes(),
    }
}

/// Whether pause WRITE holds `spec` by itself (a write, or one of Redis's `may-replicate`).
pub fn may_replicate(spec: &CommandSpec) -> bool {
    spec.has(WRITE) || MAY_REPLICATE.contains(&spec.name)
}

/// Wait while the pause holds `spec`: until the pause ends, is lifted or weakened to WRITE.
pub async fn wait(spec: &'static CommandSpec, writes: impl Fn() -> bool) {
    while holds(spec, &writes) {
        let (_, end) = current();
        let left = end.saturating_sub(now_ms()).clamp(1, 10);
        glommio::timer::sleep(Duration::from_millis(left)).await;
    }
}

/// `CLIENT PAUSE timeout [WRITE|ALL]` (arguments after the subcommand): the end and mode, or
/// Redis's error.
pub fn parse(args: &[bytes::Bytes]) -> Result<(u64, u64), &'static str> {
    let mode = match args.get(3) {
        None => ALL,
        Some(m) if m.eq_ignore_ascii_case(b"write") => WRITES,
        Some(m) if m.eq_ignore_ascii_case(b"all") => ALL,
        Some(_) => return Err("ERR CLIENT PAUSE mode must be WRITE or ALL"),
    };
    let t = resp::parse_i64(&args[2]).ok_or("ERR timeout is not an integer or out of range")?;
    if t < 0 {
        return Err("ERR timeout is negative");
    }
    // Timeout 0 ends at once (Redis stores an end of 0, already past).
    let end = if t == 0 {
        0
    } else {
        now_ms().saturating_add(t as u64).min(END_MASK)
    };
    Ok((end, mode))
}
