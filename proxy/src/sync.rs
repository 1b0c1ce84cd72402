//! Single-threaded rendezvous for one core's tasks (no locks, no atomics): [`Event`] wakes every
//! waiter when something changed; [`Batch`] collects the replies of a batch of requests, in
//! request order, and wakes its session when the last one lands.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

/// A broadcast notification: `wait()` completes after the next `notify_all()`.
#[derive(Default)]
pub struct Event {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Event {
    /// Wakes every task waiting now.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }

    /// A future that completes at the next notification after this call.
    pub fn wait(&self) -> EventWait<'_> {
        EventWait {
            event: self,
            generation: self.generation.get(),
        }
    }
}

/// See [`Event::wait`].
pub struct EventWait<'a> {
    event: &'a Event,
    generation: u64,
}

impl Future for EventWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.event.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut w = self.event.waiters.borrow_mut();
        if !w.iter().any(|x| x.will_wake(cx.waker())) {
            w.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The replies of one batch of requests, by position. Backends and migration tasks `fill`
/// positions in any order; the session awaits [`Batch::done`] and writes them in order.
#[derive(Default)]
pub struct Batch {
    replies: RefCell<Vec<Bytes>>,
    remaining: Cell<usize>,
    waker: Cell<Option<Waker>>,
}

impl Batch {
    /// A batch expecting `n` replies.
    pub fn with_len(n: usize) -> Batch {
        let b = Batch::default();
        b.reset(n);
        b
    }

    /// Reuses the batch for `n` new replies (keeps the allocation).
    pub fn reset(&self, n: usize) {
        let mut r = self.replies.borrow_mut();
        r.clear();
        r.resize(n, Bytes::new());
        self.remaining.set(n);
    }

    /// Adds one more expected reply and returns its position.
    pub fn push_slot(&self) -> usize {
        let mut r = self.replies.borrow_mut();
        r.push(Bytes::new());
        self.remaining.set(self.remaining.get() + 1);
        r.len() - 1
    }

    /// Positions reserved so far.
    pub fn len(&self) -> usize {
        self.replies.borrow().len()
    }

    /// Whether no positions are reserved.
    pub fn is_empty(&self) -> bool {
        self.replies.borrow().is_empty()
    }

    /// Stores the reply of position `idx` (a complete RESP frame).
    pub fn fill(&self, idx: usize, reply: Bytes) {
        if let Some(slot) = self.replies.borrow_mut().get_mut(idx) {
            *slot = reply;
        }
        let left = self.remaining.get().saturating_sub(1);
        self.remaining.set(left);
        if left == 0 {
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }

    /// The reply at `idx` (empty until filled).
    pub fn get(&self, idx: usize) -> Bytes {
        self.replies.borrow().get(idx).cloned().unwrap_or_default()
    }

    /// Runs `f` over every reply in order.
    pub fn with_replies<R>(&self, f: impl FnOnce(&[Bytes]) -> R) -> R {
        f(&self.replies.borrow())
    }

    /// Completes when every reserved position is filled.
    pub fn done(&self) -> BatchDone<'_> {
        BatchDone { batch: self }
    }
}

/// See [`Batch::done`].
pub struct BatchDone<'a> {
    batch: &'a Batch,
}

impl Future for BatchDone<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.batch.remaining.get() == 0 {
            Poll::Ready(())
        } else {
            self.batch.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }
}

/// An idle timeout for a connection's reads, without a timer per read.
///
/// glommio's read timeout arms a reactor timer around every read that has to wait (a clock
/// read, a map insert and a waker clone, then a removal), and so does polling a glommio
/// `Timer` again: once per request at pipeline depth 1. The watchdog is a task of its own that
/// sleeps the whole timeout and then looks at the last activity ([`Watchdog::touch`]); a read
/// raced against [`Watchdog::or_idle`] only checks a flag.
pub struct Watchdog {
    state: std::rc::Rc<WatchState>,
    /// The sleeping task (dropped, that is cancelled, with the watchdog).
    _task: Option<glommio::Task<()>>,
}

struct WatchState {
    last: Cell<std::time::Instant>,
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Watchdog {
    /// A watchdog that fires after `timeout` without [`Watchdog::touch`] (`None`: never).
    pub fn new(timeout: Option<std::time::Duration>) -> Watchdog {
        let state = std::rc::Rc::new(WatchState {
            last: Cell::new(std::time::Instant::now()),
            fired: Cell::new(false),
            waker: RefCell::new(None),
        });
        let task = timeout.map(|timeout| {
            let st = state.clone();
            glommio::spawn_local(async move {
                loop {
                    let deadline = st.last.get() + timeout;
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        break;
                    }
                    glommio::timer::sleep(deadline - now).await;
                }
                st.fired.set(true);
                if let Some(w) = st.waker.borrow_mut().take() {
                    w.wake();
                }
            })
        });
        Watchdog { state, _task: task }
    }

    /// Records activity at `at`: the timeout counts from the latest such instant.
    pub fn touch(&self, at: std::time::Instant) {
        self.state.last.set(at);
    }

    /// `read`'s result, or `None` if the connection was idle for the whole timeout first.
    pub async fn or_idle<T>(&self, read: impl Future<Output = T>) -> Option<T> {
        let fired = std::future::poll_fn(|cx: &mut Context<'_>| {
            if self.state.fired.get() {
                return Poll::Ready(());
            }
            let mut w = self.state.waker.borrow_mut();
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
            Poll::Pending
        });
        futures_lite::future::or(async { Some(read.await) }, async {
            fired.await;
            None
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn on_executor(
        f: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = ()>>> + Send + 'static,
    ) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || f())
            .expect("executor")
            .join()
            .expect("join");
    }

    #[test]
    fn watchdog_passes_reads_and_fires_when_idle() {
        on_executor(|| {
            Box::pin(async {
                let dog = Watchdog::new(Some(Duration::from_millis(50)));
                // A read that completes is returned as is.
                assert_eq!(dog.or_idle(async { 7 }).await, Some(7));
                let touched = Instant::now();
                dog.touch(touched);
                // A read that never completes ends once the connection was idle for the whole
                // timeout (counted from the last touch, never earlier).
                let r: Option<()> = dog.or_idle(std::future::pending()).await;
                assert_eq!(r, None);
                assert!(touched.elapsed() >= Duration::from_millis(50));
                // No timeout: only the read can end the race.
                let none = Watchdog::new(None);
                assert_eq!(none.or_idle(async { 1 }).await, Some(1));
            })
        });
    }
}
