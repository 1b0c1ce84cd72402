//! codis-server: a Redis-compatible storage engine, shard-per-core on glommio (io_uring), with
//! Codis's SLOTS* commands.
//!
//! # Layout
//! - [`runtime`]: start-up; one pinned executor per core, listeners (SO_REUSEPORT), core links.
//! - [`core`]: one core's runtime and the cross-core protocol (exec, run, hold/release).
//! - [`conn`]: a client connection; batches, routing by slot, replies in request order.
//! - [`admin`]: commands the connection answers itself (PING, AUTH, HELLO, CLIENT, CONFIG, INFO…).
//! - [`global`]: whole-keyspace commands (DBSIZE, FLUSHDB, KEYS, SCAN, SLOTSINFO, SLOTSSCAN…).
//! - [`blocking`]: blocked clients (BLPOP…): per-shard waiter queues, wake-ups, timeouts.
//! - [`multi`]: keyed commands spanning cores, made atomic by holding the shards involved.
//! - [`tx`]: MULTI/EXEC/DISCARD/WATCH/UNWATCH.
//! - [`script`]: Lua scripting (EVAL…, SCRIPT), one Lua state per core.
//! - [`notify`]: keyspace notifications (`notify-keyspace-events`), delivered through pub/sub.
//! - [`script`] / [`luaext`]: Lua scripting (EVAL), and the `cjson` and `bit` libraries Redis loads.
//! - [`function`]: Redis 7 Functions (FUNCTION LOAD … and FCALL): the libraries every core compiles.
//! - [`pubsub`]: (P)SUBSCRIBE, PUBLISH, PUBSUB: per-core registries, bounded subscriber mailboxes.
//! - [`shard`] / [`db`] / [`value`]: the data a core owns: per database, one table per slot
//!   ([`keytable`]: the slot table, one allocation per key behind thin pointers).
//! - [`aof`]: the append-only file (appendonly, appendfsync, replay at start, BGREWRITEAOF).
//! - [`persist`]: RDB snapshots (forkless, copy-on-write per slot), loading, SAVE/BGSAVE.
//! - [`dump`]: DUMP/RESTORE and the engine value <-> RDB value conversion.
//! - [`migrate`]: Codis's SLOTSMGRT* migration commands, source side (target side in `cmd/slots.rs`).
//! - [`lowprio`]: migration work at a lower CPU priority than serving (`migration-nice`).
//! - [`slotmove`]: SLOTSMOVE, moving a slot's tables between the cores of this server.
//! - [`latency`]: the latency monitor (LATENCY, `latency-monitor-threshold`), one table for all cores.
//! - [`pause`]: CLIENT PAUSE/UNPAUSE, a process-wide pause every connection checks before a command.
//! - [`cmd`]: shard command handlers by type family (`string`, `keys`, …).
//! - [`config`], [`shared`], [`info`], [`glob`], [`alloc`]: configuration, process-wide state,
//!   INFO, glob patterns, the counting allocator.

pub mod admin;
pub mod alloc;
pub mod aof;
pub mod blocking;
pub mod cmd;
pub mod cmsgpack;
pub mod config;
pub mod conn;
pub mod core;
pub mod db;
pub mod dump;
pub mod evict;
pub mod function;
pub mod glob;
pub mod global;
pub mod info;
pub mod intset;
pub mod keytable;
pub mod latency;
pub mod longdouble;
pub mod lowprio;
pub mod luaext;
pub mod luastruct;
pub mod migrate;
pub mod monitor;
pub mod multi;
pub mod notify;
pub mod pause;
pub mod persist;
pub mod pubsub;
pub mod quicklist;
pub mod repl;
pub mod runtime;
pub mod script;
pub mod shard;
pub mod shared;
pub mod slotmove;
pub mod slowlog;
pub mod smallbytes;
pub mod ticks;
pub mod tx;
pub mod value;
