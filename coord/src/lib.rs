//! coord: the Codis topology model and the coordinators that store it.
//!
//! Every other component reads and writes topology only through this crate.
//!
//! # Layout
//! - [`models`]: the stored JSON models, Codis 3.2 field for field (Topom, SlotMapping, Group,
//!   Proxy, Sentinel) plus this project's `ProxyAck` and `ProxyAlive`.
//! - [`paths`]: where each model lives (`/codis3/{product}/…`), product-name validation.
//! - [`coordinator`]: the `Coordinator` trait (CRUD, compare-and-set, watches, ephemerals,
//!   lock), [`CoordConfig`] and [`connect`].
//! - [`zk`]: ZooKeeper backend (sessions, reconnection, ephemerals restored after expiry).
//! - [`etcd`]: etcd v3 backend (lease-bound ephemerals, prefix watches).
//! - [`fs`]: filesystem backend, the embedded default (atomic writes, durable once they return:
//!   file and directory fsyncs; flock, owner files; watches woken by inotify, polled as fallback).
//! - [`store`]: one product's typed view: models, lock, acks, liveness, version, watch.
//! - [`topology`]: the immutable `Topology` snapshot and per-slot routes.
//! - [`error`]: the one error type; every node error names its path.
//! - `testutil` (feature `testutil`): throwaway ZooKeeper / etcd servers for tests.

pub mod coordinator;
pub mod error;
pub mod etcd;
pub mod fs;
mod journal;
mod known;
pub mod models;
pub mod paths;
pub mod store;
#[cfg(feature = "testutil")]
pub mod testutil;
pub mod topology;
pub mod zk;

pub use coordinator::{
    connect, CoordConfig, Coordinator, Kind, Node, Watch, WatchEvent, WatchKind,
};
pub use error::{Error, Result};
pub use models::*;
pub use paths::ProductPaths;
pub use store::{Store, TopologyWatch};
pub use topology::{SlotRoute, Topology, TopologyData};
