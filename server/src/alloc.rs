//! The global allocator: mimalloc, counted, so `INFO memory` reports `used_memory` honestly: the
//! bytes of the allocator's blocks held by live allocations (each request rounded up to its
//! mimalloc size class with `mi_good_size`), as Redis's zmalloc counts `malloc_usable_size`.
//!
//! Counting is per thread and folded into one atomic every 64 KiB, so the hot path pays a
//! thread-local add, not a contended atomic.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

use mimalloc::MiMalloc;

/// mimalloc with a live-bytes counter.
pub struct Counting;

static USED: AtomicIsize = AtomicIsize::new(0);
const FLUSH: isize = 64 * 1024;

thread_local! {
    static DELTA: Cell<isize> = const { Cell::new(0) };
}

/// The block size mimalloc hands out for a request of `size` bytes (its size class).
#[inline]
pub fn good_size(size: usize) -> usize {
    block(size) as usize
}

/// The block size mimalloc hands out for a request of `size` bytes.
#[inline]
fn block(size: usize) -> isize {
    // SAFETY: a pure computation on the size class tables; no pointer involved.
    (unsafe { libmimalloc_sys::mi_good_size(size) }) as isize
}

#[inline]
fn account(n: isize) {
    // `try_with`: during thread teardown the thread-local may be gone; count globally then.
    let flushed = DELTA.try_with(|d| {
        let v = d.get() + n;
        if v.abs() >= FLUSH {
            USED.fetch_add(v, Ordering::Relaxed);
            d.set(0);
        } else {
            d.set(v);
        }
    });
    if flushed.is_err() {
        USED.fetch_add(n, Ordering::Relaxed);
    }
}

/// Whether mimalloc's plain entry points serve `layout`: every mimalloc block is at least
/// word-aligned, and the plain calls skip the aligned ones' slower path (which the `mimalloc`
/// crate takes for every allocation).
#[inline]
fn plain(layout: &Layout) -> bool {
    layout.align() <= std::mem::size_of::<usize>()
}

unsafe impl GlobalAlloc for Counting {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = if plain(&layout) {
            libmimalloc_sys::mi_malloc(layout.size()).cast()
        } else {
            MiMalloc.alloc(layout)
        };
        if !p.is_null() {
            account(block(layout.size()));
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        MiMalloc.dealloc(ptr, layout);
        account(-block(layout.size()));
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = if plain(&layout) {
            libmimalloc_sys::mi_zalloc(layout.size()).cast()
        } else {
            MiMalloc.alloc_zeroed(layout)
        };
        if !p.is_null() {
            account(block(layout.size()));
        }
        p
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = if plain(&layout) {
            libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast()
        } else {
            MiMalloc.realloc(ptr, layout, new_size)
        };
        if !p.is_null() {
            account(block(new_size) - block(layout.size()));
        }
        p
    }
}

/// Bytes of allocator blocks held by live allocations (within 64 KiB per thread).
pub fn used_memory() -> usize {
    USED.load(Ordering::Relaxed).max(0) as usize
}

/// Resident set size of the process, from /proc (0 when unavailable).
pub fn rss_bytes() -> usize {
    let Ok(s) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: usize = s
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
