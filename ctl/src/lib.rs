//! codisctl: the operator's CLI and the dashboard daemon of codis-rs — the only writer of
//! topology. It runs migrations, rebalance and promotion as resumable state machines whose
//! state lives in the coordinator.
//!
//! # Layout
//! - [`cli`]: clap verbs; each mutating verb goes to the running dashboard or, when none holds
//!   the product lock, applies itself to the coordinator under the lock.
//! - [`request`]: every mutation as a value ([`request::Request`]) and its HTTP path.
//! - [`topom`]: the operations on one product (slots, groups, servers, proxies, dump) with
//!   their validation; [`topom::Ctx`] is what applies a request.
//! - [`rebalance`]: Codis 3.2's rebalance plan.
//! - [`executor`]: the migration state machine and the [`executor::Drain`] trait (the real
//!   drain runs SLOTSMGRTTAGSLOT[-ASYNC] on the source master).
//! - [`functions`]: Redis 7 function libraries copied from a migration's source master to its
//!   target master before slots move.
//! - [`promote`]: replica promotion with the group's slots held by every proxy.
//! - [`dashboard`]: the daemon (lock, executor, poller), HTTP API and embedded web page.
//! - [`stats`]: live server status from `INFO`.
//! - [`redis`], [`http`]: small clients for servers and for HTTP APIs.
//! - [`config`], [`output`], [`error`].
//!
//! # Proxies and the coordinator
//! Proxies watch the topology and acknowledge what they applied in `ProxyAck`; the executor
//! waits for every *live* proxy (ephemeral `alive` node) to acknowledge `prepared` before
//! data moves. Promotion reuses this: each slot of the group gets the action `prepared` with
//! the group itself as target, which makes proxies hold the slot until it is cleared.

pub mod cli;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod executor;
pub mod functions;
pub mod http;
pub mod output;
pub mod promote;
pub mod rebalance;
pub mod redis;
pub mod request;
pub mod stats;
pub mod topom;

pub use error::{CtlError, Result};
