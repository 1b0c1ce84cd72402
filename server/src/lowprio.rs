//! Migration work at a lower CPU priority than serving (`migration-nice`, default 10).
//!
//! A slot migration keeps a core busy for as long as it streams. When that core is shared with
//! the processes serving requests (a proxy, the other group's server, the host's clients), the
//! kernel's fair scheduler gives the migration an equal share, and the serving path falls behind
//! its load: request latency grows to milliseconds for as long as the migration runs.
//!
//! So the source's slices of work (collect and encode, delete after the acknowledgement) and the
//! target's restores run with the executor thread's nice value raised by `migration-nice` for
//! the length of the slice, and set back right after: while a slice runs, a waking task of the
//! serving path preempts it sooner and gets a larger share of the CPU. Between slices the thread
//! serves its own clients at its normal priority. A slice is at most a few hundred microseconds
//! of work, and a switch costs one system call each way.
//!
//! Not `SCHED_IDLE`: an idle-policy thread weighs 3 against a normal thread's 1024, so on a CPU
//! that other work keeps busy a slice (and the thread's own clients, queued behind it) could wait
//! for the CPU almost without bound. A raised nice value still gets a share (nice 10 weighs 110).
//! Measured against nice 0 in BENCHMARKS.md, "Session 23 runs".
//!
//! Lowering the nice value back needs `CAP_SYS_NICE` (root has it) or an `RLIMIT_NICE` that
//! allows it. [`probe`] tries the round trip on a throwaway thread at start-up; when it fails,
//! migrations run at normal priority.

use std::cell::Cell;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;

/// `migration-nice`: how much a migration slice raises its thread's nice value (0: not at all).
static NICE: AtomicI32 = AtomicI32::new(10);
/// Whether this process can raise a thread's nice value and lower it back.
static ABLE: OnceLock<bool> = OnceLock::new();
/// Slices run at a raised nice value (INFO stats `migration_low_priority_slices`; INFO stats
/// `migration_nice` shows the raise in effect, 0 when off or not permitted).
pub static SLICES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Nesting depth of [`Low`] guards on this thread.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// This thread's nice value outside migration slices, once read.
    static BASE: Cell<Option<i32>> = const { Cell::new(None) };
}

/// Set `migration-nice` (0–19).
pub fn set_nice(n: i32) {
    NICE.store(n.clamp(0, 19), Ordering::Relaxed);
}

/// The configured `migration-nice`.
pub fn nice() -> i32 {
    NICE.load(Ordering::Relaxed)
}

fn tid() -> libc::id_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as libc::id_t }
}

/// The calling thread's nice value (`None` when it cannot be read).
fn get_nice() -> Option<i32> {
    // SAFETY: errno is thread-local; getpriority only reads. -1 is a valid nice value, so errno
    // tells an error apart.
    unsafe {
        *libc::__errno_location() = 0;
        let n = libc::getpriority(libc::PRIO_PROCESS, tid());
        (*libc::__errno_location() == 0).then_some(n)
    }
}

/// Set the calling thread's nice value (on Linux, PRIO_PROCESS with a thread id is that thread).
fn set_thread_nice(n: i32) -> bool {
    // SAFETY: setpriority on the calling thread's own id.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, tid(), n) == 0 }
}

/// Whether a thread of this process can raise its nice value and lower it back (tried on a
/// throwaway thread once, so a failure strands no thread of the server).
pub fn probe() -> bool {
    *ABLE.get_or_init(|| {
        let ok = std::thread::Builder::new()
            .name("nice-probe".into())
            .spawn(|| {
                let Some(base) = get_nice() else { return false };
                set_thread_nice((base + 1).min(19)) && set_thread_nice(base)
            })
            .ok()
            .and_then(|t| t.join().ok())
            .unwrap_or(false);
        if !ok {
            tracing::warn!(
                "migration work runs at normal CPU priority: this process cannot lower a thread's \
                 nice value back (it needs CAP_SYS_NICE or a high enough RLIMIT_NICE)"
            );
        }
        ok
    })
}

/// Whether migration slices actually run at a raised nice value (configured and possible).
pub fn active() -> bool {
    nice() > 0 && probe()
}

/// While alive, the calling thread runs at its nice value plus `migration-nice` (when
/// [`active`]). Hold it only across synchronous work, never across an `.await`: the executor's
/// other tasks would run at the lower priority too.
#[must_use]
pub struct Low {
    on: bool,
}

/// Lower the calling thread's priority for a slice of migration work.
pub fn enter() -> Low {
    if !active() {
        return Low { on: false };
    }
    let depth = DEPTH.with(|d| d.get());
    if depth > 0 {
        DEPTH.with(|d| d.set(depth + 1));
        return Low { on: true };
    }
    // The thread's own nice value, read once: nothing else in the server changes it.
    let base = match BASE.with(|b| b.get()) {
        Some(b) => b,
        None => {
            let Some(b) = get_nice() else {
                return Low { on: false };
            };
            BASE.with(|c| c.set(Some(b)));
            b
        }
    };
    if !set_thread_nice((base + nice()).min(19)) {
        return Low { on: false };
    }
    DEPTH.with(|d| d.set(1));
    SLICES.fetch_add(1, Ordering::Relaxed);
    Low { on: true }
}

impl Drop for Low {
    fn drop(&mut self) {
        if !self.on {
            return;
        }
        let depth = DEPTH.with(|d| d.get());
        DEPTH.with(|d| d.set(depth - 1));
        if depth > 1 {
            return;
        }
        // Set by `enter` before the outermost guard went on.
        let Some(base) = BASE.with(|b| b.get()) else {
            return;
        };
        if !set_thread_nice(base) {
            // Cannot happen after a successful probe; stop switching rather than strand more.
            NICE.store(0, Ordering::Relaxed);
            tracing::error!(
                "could not set a thread's nice value back to {base}: {}; migration-nice is now 0",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_raises_and_restores_this_thread() {
        std::thread::spawn(|| {
            let before = get_nice().unwrap();
            {
                let _outer = enter();
                let _inner = enter();
                if active() && before < 19 {
                    assert_eq!(get_nice().unwrap(), (before + nice()).min(19));
                }
            }
            assert_eq!(get_nice().unwrap(), before);
        })
        .join()
        .unwrap();
    }
}
