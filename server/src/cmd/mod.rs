//! Command handlers that run on a shard, grouped by type family (`string.rs`, `keys.rs`, …).
//!
//! A handler is a plain `fn(&mut Ctx)`: it reads its arguments (arity already checked against the
//! command table), works on the database, and appends exactly one reply to `ctx.out`. Handlers never
//! block and never see other cores: the connection layer routes each command to the shard owning its
//! keys, or gathers the keys of a multi-core command into one scratch shard first (`multi.rs`).

pub mod bits;
pub mod geo;
mod geohash;
pub mod hash;
pub mod hll;
pub mod keys;
pub mod list;
pub mod set;
pub mod slots;
pub mod sort;
mod sort_order;
pub mod string;
pub mod types;
pub mod zset;

use std::sync::LazyLock;

use bytes::{Bytes, BytesMut};
use resp::command::COMMANDS;
use resp::{encode, Proto};

use crate::db::Db;

/// Redis's shared error replies.
pub mod err {
    pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    pub const NOT_INT: &str = "ERR value is not an integer or out of range";
    pub const NOT_FLOAT: &str = "ERR value is not a valid float";
    pub const SYNTAX: &str = "ERR syntax error";
    pub const OVERFLOW: &str = "ERR increment or decrement would overflow";
    pub const NO_SUCH_KEY: &str = "ERR no such key";
    pub const DB_RANGE: &str = "ERR DB index is out of range";
    pub const SAME_OBJECT: &str = "ERR source and destination objects are the same";
    pub const BUSYKEY: &str = "BUSYKEY Target key name already exists.";
    pub const MAX_SIZE: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
    pub const BIT_OFFSET: &str = "ERR bit offset is not an integer or out of range";
    pub const BIT_VALUE: &str = "ERR bit is not an integer or out of range";
    pub const OFFSET_RANGE: &str = "ERR offset is out of range";
}

/// Largest string a command may build (`proto-max-bulk-len` default).
pub const MAX_STRING: usize = 512 * 1024 * 1024;

/// Everything a handler may touch.
pub struct Ctx<'a> {
    pub dbs: &'a mut [Db],
    pub db: usize,
    pub args: &'a [Bytes],
    pub out: &'a mut BytesMut,
    pub proto: Proto,
    /// Unix ms, fixed for the whole command (Redis's `commandTimeSnapshot`).
    pub now: u64,
    /// What to propagate instead of the command itself (`None`: the command, if it changed
    /// something). Set through [`Ctx::propagate_as`]; see `repl::prop`.
    pub rewrite: Option<Vec<Vec<Bytes>>>,
}

impl Ctx<'_> {
    /// The selected database.
    pub fn db(&mut self) -> &mut Db {
        &mut self.dbs[self.db]
    }

    /// Whether effects are recorded now (replicas or AOF attached): build rewrites only then.
    pub fn propagating(&self) -> bool {
        crate::repl::prop::active()
    }

    /// Propagate `cmds` (in the current database, in order) instead of this command: the effect
    /// of a time-relative or random command (`PEXPIREAT` for `EXPIRE`, `SREM` for `SPOP`…).
    /// An empty list propagates nothing.
    pub fn propagate_as(&mut self, cmds: Vec<Vec<Bytes>>) {
        if self.propagating() {
            self.rewrite = Some(cmds);
        }
    }

    /// Argument `i` (0 is the command name).
    pub fn arg(&self, i: usize) -> &Bytes {
        &self.args[i]
    }

    /// Whether argument `i` equals `word`, ignoring ASCII case.
    pub fn is(&self, i: usize, word: &str) -> bool {
        self.args
            .get(i)
            .is_some_and(|a| a.eq_ignore_ascii_case(word.as_bytes()))
    }

    /// Argument `i` as an i64, or reply `ERR value is not an integer or out of range`.
    pub fn int(&mut self, i: usize) -> Option<i64> {
        let v = resp::parse_i64(&self.args[i]);
        if v.is_none() {
            self.err(err::NOT_INT);
        }
        v
    }

    pub fn ok(&mut self) {
        encode::ok(self.out);
    }
    pub fn err(&mut self, e: &str) {
        encode::error(self.out, e);
    }
    pub fn int_reply(&mut self, n: i64) {
        encode::int(self.out, n);
    }
    pub fn bulk(&mut self, b: &[u8]) {
        encode::bulk(self.out, b);
    }
    pub fn null(&mut self) {
        encode::null(self.out, self.proto);
    }
    pub fn null_array(&mut self) {
        encode::null_array(self.out, self.proto);
    }
    pub fn array(&mut self, n: usize) {
        encode::array(self.out, n);
    }
    pub fn simple(&mut self, s: &str) {
        encode::simple(self.out, s);
    }
    pub fn wrongtype(&mut self) {
        self.err(err::WRONGTYPE);
    }
    pub fn double(&mut self, d: f64) {
        encode::double(self.out, d, self.proto);
    }
}

/// A command's arguments built from parts (for [`Ctx::propagate_as`]).
pub fn argv(parts: &[&[u8]]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

/// A shard command handler.
pub type Handler = fn(&mut Ctx);

/// Handlers indexed like `resp::command::COMMANDS`.
static HANDLERS: LazyLock<Vec<Option<Handler>>> = LazyLock::new(|| {
    let mut v: Vec<Option<Handler>> = vec![None; COMMANDS.len()];
    for (name, h) in string::HANDLERS
        .iter()
        .chain(keys::HANDLERS)
        .chain(bits::HANDLERS)
        .chain(hash::HANDLERS)
        .chain(set::HANDLERS)
        .chain(list::HANDLERS)
        .chain(zset::HANDLERS)
        .chain(geo::HANDLERS)
        .chain(crate::dump::HANDLERS)
        .chain(hll::HANDLERS)
        .chain(slots::HANDLERS)
        .chain(sort::HANDLERS)
        .chain(crate::script::HANDLERS)
    {
        match COMMANDS.iter().position(|c| c.name == *name) {
            Some(i) => v[i] = Some(*h),
            None => panic!("handler for '{name}' has no row in the command table"),
        }
    }
    v
});

/// The shard handler of command-table row `idx`, if the command runs on shards.
pub fn handler(idx: usize) -> Option<Handler> {
    HANDLERS.get(idx).copied().flatten()
}

/// Index of a command-table row.
pub fn index_of(spec: &'static resp::command::CommandSpec) -> usize {
    (spec as *const _ as usize - COMMANDS.as_ptr() as usize)
        / std::mem::size_of::<resp::command::CommandSpec>()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_handler_has_a_table_row() {
        // Building the table panics on a handler without a row.
        assert!(super::HANDLERS.iter().any(|h| h.is_some()));
        let get = resp::command::lookup(b"get").unwrap();
        assert_eq!(resp::command::COMMANDS[super::index_of(get)].name, "get");
    }
}
