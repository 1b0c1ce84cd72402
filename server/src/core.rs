//! One core's runtime: its shard, its links to every other core, and the cross-core protocol.
//!
//! Two channels join each ordered pair of cores: one for requests, one for responses. A core's
//! response loop never sends anything, so response channels always drain, and a request loop only
//! ever waits on a response channel: no cycle, no deadlock with bounded channels.
//!
//! Multi-core atomicity uses *holds*: a coordinator acquires the shards it needs in core order
//! (`Hold`), runs closures on them, and releases them (`Release`). While a shard is held, its own
//! connections wait and requests from other cores queue, in arrival order.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;
use glommio::channels::shared_channel::{ConnectedReceiver, ConnectedSender};
use hashbrown::HashMap;
use resp::Proto;

use crate::shard::{Cmd, Shard};
use crate::shared::Shared;

/// A closure run on another core's shard.
pub type RunFn = Box<dyn FnOnce(&mut Shard) -> Box<dyn Any + Send> + Send>;

/// A request from one core to another.
pub enum Req {
    /// Run commands in order and return their replies.
    Exec {
        from: usize,
        id: u64,
        /// The client the commands are for (SLOWLOG; 0: none).
        client: u64,
        proto: Proto,
        now: u64,
        cmds: Vec<Cmd>,
    },
    /// Run a closure (global operations: DBSIZE, KEYS, INFO…).
    Run { from: usize, id: u64, f: RunFn },
    /// Acquire the shard for transaction `tx` (waiting behind other holders), then run `f`.
    Hold {
        from: usize,
        id: u64,
        tx: u64,
        f: RunFn,
    },
    /// Run `f` under transaction `tx`'s hold, then release the shard.
    Release {
        from: usize,
        id: u64,
        tx: u64,
        f: RunFn,
    },
    /// Serve a client connection moved here by `CLIENT CORE` (no reply).
    Adopt(Box<crate::conn::Adopted>),
}

impl Req {
    fn tx(&self) -> Option<u64> {
        match self {
            Req::Release { tx, .. } => Some(*tx),
            _ => None,
        }
    }
}

/// A response to a [`Req`].
pub struct Resp {
    id: u64,
    body: Body,
}

/// What a request produced.
pub enum Body {
    /// Replies of an `Exec`, concatenated, with the end offset of each; then the commands that
    /// did not run because their slot moved away (index in the request, command), to re-route.
    /// A moved command's reply is empty.
    Replies(Bytes, Vec<u32>, Vec<(u32, Cmd)>),
    /// A closure's result.
    Any(Box<dyn Any + Send>),
}

#[derive(Default)]
struct HoldState {
    holder: Option<u64>,
    queued: VecDeque<Req>,
    draining: bool,
    waiters: Vec<Waker>,
}

/// The endpoints of one core.
pub struct Links {
    pub req_out: Vec<Option<ConnectedSender<Req>>>,
    pub resp_out: Vec<Option<ConnectedSender<Resp>>>,
    pub req_in: Vec<ConnectedReceiver<Req>>,
    pub resp_in: Vec<ConnectedReceiver<Resp>>,
}

/// The state of one core (one glommio executor).
pub struct Core {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub shard: RefCell<Shard>,
    req_out: Vec<Option<ConnectedSender<Req>>>,
    resp_out: Vec<Option<ConnectedSender<Resp>>>,
    pending: RefCell<HashMap<u64, oneshot::Sender<Body>>>,
    next_id: Cell<u64>,
    hold: RefCell<HoldState>,
}

impl Core {
    /// Build a core and spawn its request and response loops.
    pub fn start(id: usize, shared: Arc<Shared>, shard: Shard, links: Links) -> Rc<Core> {
        let core = Rc::new(Core {
            id,
            shared,
            shard: RefCell::new(shard),
            req_out: links.req_out,
            resp_out: links.resp_out,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
            hold: RefCell::new(HoldState::default()),
        });
        for rx in links.resp_in {
            let c = core.clone();
            glommio::spawn_local(async move {
                while let Some(r) = rx.recv().await {
                    if let Some(tx) = c.pending.borrow_mut().remove(&r.id) {
                        let _ = tx.send(r.body);
                    }
                }
            })
            .detach();
        }
        for rx in links.req_in {
            let c = core.clone();
            glommio::spawn_local(async move {
                while let Some(r) = rx.recv().await {
                    c.accept(r).await;
                }
            })
            .detach();
        }
        core
    }

    /// Number of cores.
    pub fn ncores(&self) -> usize {
        self.shared.ncores
    }

    fn new_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// A transaction id unique across cores.
    pub fn new_tx(&self) -> u64 {
        (self.new_id() << 8) | self.id as u64
    }

    /// Whether this core's shard is held by a transaction other than `tx`.
    fn blocked_for(&self, tx: Option<u64>) -> bool {
        let h = self.hold.borrow();
        match h.holder {
            Some(holder) => Some(holder) != tx,
            None => false,
        }
    }

    /// Wait until this core's shard is not held by anyone (before running a command inline).
    pub async fn wait_unheld(&self) {
        std::future::poll_fn(|cx: &mut Context<'_>| {
            let mut h = self.hold.borrow_mut();
            if h.holder.is_none() {
                Poll::Ready(())
            } else {
                h.waiters.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Acquire this core's own shard for `tx` (the coordinator is on this core).
    pub async fn hold_local(&self, tx: u64) {
        self.wait_unheld().await;
        self.hold.borrow_mut().holder = Some(tx);
    }

    /// Release this core's own shard held by `tx`.
    pub fn release_local(self: &Rc<Self>, tx: u64) {
        let mut h = self.hold.borrow_mut();
        if h.holder == Some(tx) {
            h.holder = None;
        }
        drop(h);
        self.after_release();
    }

    fn after_release(self: &Rc<Self>) {
        let mut h = self.hold.borrow_mut();
        for w in h.waiters.drain(..) {
            w.wake();
        }
        if !h.queued.is_empty() && !h.draining {
            h.draining = true;
            drop(h);
            let c = self.clone();
            glommio::spawn_local(async move { c.drain().await }).detach();
        }
    }

    async fn drain(self: Rc<Self>) {
        loop {
            let next = {
                let mut h = self.hold.borrow_mut();
                if h.holder.is_some() {
                    None
                } else {
                    h.queued.pop_front()
                }
            };
            match next {
                Some(r) => self.process(r).await,
                None => break,
            }
        }
        self.hold.borrow_mut().draining = false;
        // A release may have happened while the last request was being answered.
        let again = {
            let h = self.hold.borrow();
            h.holder.is_none() && !h.queued.is_empty()
        };
        if again {
            self.after_release();
        }
    }

    /// Entry point of the request loops: queue behind a hold or queued work, else process.
    async fn accept(self: &Rc<Self>, r: Req) {
        // A moved connection touches no shard: it never waits behind a hold.
        let r = match r {
            Req::Adopt(a) => {
                glommio::spawn_local(crate::conn::adopt(self.clone(), *a)).detach();
                return;
            }
            r => r,
        };
        let queue = {
            let h = self.hold.borrow();
            self.blocked_for(r.tx()) || (!h.queued.is_empty() && r.tx().is_none())
        };
        if queue {
            self.hold.borrow_mut().queued.push_back(r);
            return;
        }
        self.process(r).await;
    }

    async fn process(self: &Rc<Self>, r: Req) {
        match r {
            Req::Adopt(a) => {
                glommio::spawn_local(crate::conn::adopt(self.clone(), *a)).detach();
            }
            Req::Exec {
                from,
                id,
                client,
                proto,
                now,
                cmds,
            } => {
                crate::slowlog::set_client(client);
                let mut out = BytesMut::with_capacity(64 * cmds.len());
                let mut ends = Vec::with_capacity(cmds.len());
                let mut moved = Vec::new();
                {
                    let mut shard = self.shard.borrow_mut();
                    if cmds.len() > 1 {
                        shard.prefetch(cmds.iter().filter_map(|c| {
                            let spec = resp::command::COMMANDS.get(c.idx as usize)?;
                            let (key, member) = Shard::prefetch_args(spec, &c.args)?;
                            Some((c.db as usize, key, c.slot, member))
                        }));
                    }
                    for (i, c) in cmds.into_iter().enumerate() {
                        if !shard.execute(&c, proto, now, &mut out) {
                            moved.push((i as u32, c));
                        }
                        ends.push(out.len() as u32);
                    }
                }
                self.respond(from, id, Body::Replies(out.freeze(), ends, moved))
                    .await;
            }
            Req::Run { from, id, f } => {
                let v = f(&mut self.shard.borrow_mut());
                self.respond(from, id, Body::Any(v)).await;
            }
            Req::Hold { from, id, tx, f } => {
                self.hold.borrow_mut().holder = Some(tx);
                let v = f(&mut self.shard.borrow_mut());
                self.respond(from, id, Body::Any(v)).await;
            }
            Req::Release { from, id, tx, f } => {
                let v = f(&mut self.shard.borrow_mut());
                {
                    let mut h = self.hold.borrow_mut();
                    if h.holder == Some(tx) {
                        h.holder = None;
                    }
                }
                self.after_release();
                self.respond(from, id, Body::Any(v)).await;
            }
        }
    }

    async fn respond(&self, to: usize, id: u64, body: Body) {
        if let Some(Some(tx)) = self.resp_out.get(to) {
            // The peer's response loop always drains; an error means the server is stopping.
            let _ = tx.send(Resp { id, body }).await;
        }
    }

    fn register(&self) -> (u64, oneshot::Receiver<Body>) {
        let id = self.new_id();
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        (id, rx)
    }

    async fn call(&self, to: usize, make: impl FnOnce(u64) -> Req) -> Body {
        let (id, rx) = self.register();
        let sent = match self.req_out.get(to) {
            Some(Some(tx)) => tx.send(make(id)).await.is_ok(),
            _ => false,
        };
        if !sent {
            self.pending.borrow_mut().remove(&id);
            return Body::Any(Box::new(()));
        }
        rx.await.unwrap_or(Body::Any(Box::new(())))
    }

    /// Hands a client connection to core `to` (see [`crate::conn::Adopted`]); false if that
    /// core is gone (the server is stopping).
    pub async fn send_adopt(&self, to: usize, a: crate::conn::Adopted) -> bool {
        match self.req_out.get(to) {
            Some(Some(tx)) => tx.send(Req::Adopt(Box::new(a))).await.is_ok(),
            _ => false,
        }
    }

    /// Send commands to another core; returns their replies.
    pub fn exec_remote(
        &self,
        to: usize,
        proto: Proto,
        now: u64,
        cmds: Vec<Cmd>,
        client: u64,
    ) -> impl Future<Output = Body> + '_ {
        let from = self.id;
        self.call(to, move |id| Req::Exec {
            from,
            id,
            client,
            proto,
            now,
            cmds,
        })
    }

    /// Run `f` on core `to`'s shard (inline when `to` is this core) and return its result.
    pub async fn run_on<R: Send + 'static>(
        &self,
        to: usize,
        f: impl FnOnce(&mut Shard) -> R + Send + 'static,
    ) -> R {
        if to == self.id {
            self.wait_unheld().await;
            return f(&mut self.shard.borrow_mut());
        }
        let from = self.id;
        let f: RunFn = Box::new(move |s| Box::new(f(s)));
        downcast(self.call(to, move |id| Req::Run { from, id, f }).await)
    }

    /// Run `f` on the shard owning `slot` now: if the slot moves away while the request is on its
    /// way, `f` comes back unrun and goes to the new owner.
    pub async fn run_on_slot<R: Send + 'static, F: FnOnce(&mut Shard) -> R + Send + 'static>(
        &self,
        slot: u16,
        f: F,
    ) -> R {
        let mut f = f;
        loop {
            let owner = self.shared.owner(slot);
            let r = self
                .run_on(
                    owner,
                    move |sh| if sh.owns(slot) { Ok(f(sh)) } else { Err(f) },
                )
                .await;
            match r {
                Ok(r) => return r,
                Err(back) => f = back,
            }
        }
    }

    /// [`Core::broadcast`] whose results all describe one slot layout: repeated if a slot moved
    /// meanwhile (so a whole-keyspace read neither misses nor doubles a moving slot's keys).
    pub async fn broadcast_stable<R: Send + 'static>(
        &self,
        f: impl Fn(&mut Shard) -> R + Send + Sync + Clone + 'static,
    ) -> Vec<R> {
        loop {
            let before = self.shared.move_seq();
            let r = self.broadcast(f.clone()).await;
            if before % 2 == 0 && self.shared.move_seq() == before {
                return r;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Run `f` on every core (concurrently) and collect the results in core order.
    pub async fn broadcast<R: Send + 'static>(
        &self,
        f: impl Fn(&mut Shard) -> R + Send + Sync + Clone + 'static,
    ) -> Vec<R> {
        let futs: Vec<Pin<Box<dyn Future<Output = R> + '_>>> = (0..self.ncores())
            .map(|c| Box::pin(self.run_on(c, f.clone())) as Pin<Box<_>>)
            .collect();
        futures::future::join_all(futs).await
    }

    /// Acquire core `to`'s shard for `tx` and run `f` under the hold.
    pub async fn hold_on<R: Send + 'static>(
        &self,
        to: usize,
        tx: u64,
        f: impl FnOnce(&mut Shard) -> R + Send + 'static,
    ) -> R {
        if to == self.id {
            self.hold_local(tx).await;
            return f(&mut self.shard.borrow_mut());
        }
        let from = self.id;
        let f: RunFn = Box::new(move |s| Box::new(f(s)));
        downcast(self.call(to, move |id| Req::Hold { from, id, tx, f }).await)
    }

    /// Run `f` on core `to`'s shard held by `tx`, then release it.
    pub async fn release_on<R: Send + 'static>(
        self: &Rc<Self>,
        to: usize,
        tx: u64,
        f: impl FnOnce(&mut Shard) -> R + Send + 'static,
    ) -> R {
        if to == self.id {
            let r = f(&mut self.shard.borrow_mut());
            self.release_local(tx);
            return r;
        }
        let from = self.id;
        let f: RunFn = Box::new(move |s| Box::new(f(s)));
        downcast(
            self.call(to, move |id| Req::Release { from, id, tx, f })
                .await,
        )
    }
}

fn downcast<R: 'static>(b: Body) -> R {
    match b {
        Body::Any(v) => match v.downcast::<R>() {
            Ok(r) => *r,
            // Only reachable if the peer core is gone (shutdown): nothing sensible to return.
            Err(_) => panic!("cross-core call lost its peer (server shutting down)"),
        },
        Body::Replies(..) => panic!("cross-core call answered with replies instead of a value"),
    }
}
