//! The command table, as data (Redis's `redisCommandTable` idea): name, arity, flags and key
//! positions for every command codis-rs knows. The server validates arity and finds keys from it;
//! the proxy routes by it. Adding a command is one line here plus its handler.
//!
//! Arity follows Redis: `n` means exactly `n` arguments including the name, `-n` means at least `n`.
//! Key positions are `first, last, step` (1-based; `last = -1` means "to the end"; `0` means no key).
//! Commands flagged [`MOVABLE`] compute their keys in [`CommandSpec::keys`].

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;

/// Changes data.
pub const WRITE: u32 = 1 << 0;
/// Only reads data.
pub const READONLY: u32 = 1 << 1;
/// O(1) or O(log n).
pub const FAST: u32 = 1 << 2;
/// Administrative (CONFIG, SHUTDOWN, DEBUG…).
pub const ADMIN: u32 = 1 << 3;
/// May block the client (BLPOP…).
pub const BLOCKING: u32 = 1 << 4;
/// Pub/sub.
pub const PUBSUB: u32 = 1 << 5;
/// Not allowed inside scripts.
pub const NOSCRIPT: u32 = 1 << 6;
/// May grow memory.
pub const DENYOOM: u32 = 1 << 7;
/// Keys are found by argument parsing, not by first/last/step.
pub const MOVABLE: u32 = 1 << 8;
/// Answered by the connection itself, never by a shard (PING, SELECT, AUTH…).
pub const CONN: u32 = 1 << 9;
/// Touches the whole keyspace of a database (KEYS, FLUSHDB, DBSIZE, SCAN…).
pub const ALLKEYS: u32 = 1 << 10;
/// Allowed before AUTH.
pub const NOAUTH: u32 = 1 << 11;
/// Transaction control (MULTI, EXEC…).
pub const TX: u32 = 1 << 12;
/// Codis slot command.
pub const SLOTS: u32 = 1 << 13;
/// Scripting.
pub const SCRIPT: u32 = 1 << 14;

/// One row of the command table.
#[derive(Debug)]
pub struct CommandSpec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis arity.
    pub arity: i32,
    /// Bit set of the flags above.
    pub flags: u32,
    /// First key position (0: none).
    pub first: i32,
    /// Last key position (-1: last argument).
    pub last: i32,
    /// Step between keys.
    pub step: i32,
}

macro_rules! table {
    ($( $name:literal $arity:literal [$($flag:ident)|*] $first:literal $last:literal $step:literal ;)*) => {
        /// Every command, in no particular order.
        pub static COMMANDS: &[CommandSpec] = &[
            $( CommandSpec { name: $name, arity: $arity, flags: 0 $(| $flag)*, first: $first, last: $last, step: $step }, )*
        ];
    };
}

table! {
    // connection and server
    "ping" -1 [FAST|CONN] 0 0 0;
    "echo" 2 [FAST|CONN] 0 0 0;
    "quit" -1 [FAST|CONN|NOAUTH] 0 0 0;
    "select" 2 [FAST|CONN] 0 0 0;
    "auth" -2 [FAST|CONN|NOAUTH|NOSCRIPT] 0 0 0;
    "hello" -1 [FAST|CONN|NOAUTH|NOSCRIPT] 0 0 0;
    "client" -2 [ADMIN|CONN|NOSCRIPT] 0 0 0;
    "command" -1 [CONN] 0 0 0;
    "info" -1 [CONN] 0 0 0;
    "config" -2 [ADMIN|CONN|NOSCRIPT] 0 0 0;
    "dbsize" 1 [READONLY|FAST|ALLKEYS] 0 0 0;
    "flushdb" -1 [WRITE|ALLKEYS] 0 0 0;
    "flushall" -1 [WRITE|ALLKEYS] 0 0 0;
    "time" 1 [FAST|CONN] 0 0 0;
    "debug" -2 [ADMIN|CONN|NOSCRIPT] 0 0 0;
    "shutdown" -1 [ADMIN|CONN|NOSCRIPT] 0 0 0;
    "lastsave" 1 [FAST|CONN] 0 0 0;
    "save" 1 [ADMIN|NOSCRIPT|ALLKEYS] 0 0 0;
    "bgsave" -1 [ADMIN|NOSCRIPT|ALLKEYS] 0 0 0;
    "bgrewriteaof" 1 [ADMIN|NOSCRIPT|ALLKEYS] 0 0 0;
    "role" 1 [FAST|CONN|NOSCRIPT] 0 0 0;
    "replicaof" 3 [ADMIN|CONN|NOSCRIPT] 0 0 0;
    "slaveof" 3 [ADMIN|CONN|NOSCRIPT] 0 0 0;
    "wait" 3 [CONN|NOSCRIPT] 0 0 0;
    "sync" 1 [ADMIN|CONN|NOSCRIPT] 0 0 0;
    "psync" -3 [ADMIN|CONN|NOSCRIPT] 0 0 0;
    "replconf" -1 [ADMIN|CONN|NOSCRIPT] 0 0 0;
    "readonly" 1 [FAST|CONN] 0 0 0;
    "readwrite" 1 [FAST|CONN] 0 0 0;
    "swapdb" 3 [WRITE|FAST|ALLKEYS] 0 0 0;
    "memory" -2 [READONLY|CONN] 0 0 0;
    "slowlog" -2 [ADMIN|CONN] 0 0 0;
    "latency" -2 [ADMIN|CONN] 0 0 0;
    "reset" 1 [FAST|CONN|NOAUTH|NOSCRIPT] 0 0 0;
    "monitor" 1 [ADMIN|CONN|NOSCRIPT] 0 0 0;
    // strings
    "get" 2 [READONLY|FAST] 1 1 1;
    "set" -3 [WRITE|DENYOOM] 1 1 1;
    "setnx" 3 [WRITE|DENYOOM|FAST] 1 1 1;
    "setex" 4 [WRITE|DENYOOM] 1 1 1;
    "psetex" 4 [WRITE|DENYOOM] 1 1 1;
    "mget" -2 [READONLY|FAST] 1 -1 1;
    "mset" -3 [WRITE|DENYOOM] 1 -1 2;
    "msetnx" -3 [WRITE|DENYOOM] 1 -1 2;
    "getset" 3 [WRITE|DENYOOM|FAST] 1 1 1;
    "getdel" 2 [WRITE|FAST] 1 1 1;
    "getex" -2 [WRITE|FAST] 1 1 1;
    "append" 3 [WRITE|DENYOOM|FAST] 1 1 1;
    "strlen" 2 [READONLY|FAST] 1 1 1;
    "getrange" 4 [READONLY] 1 1 1;
    "substr" 4 [READONLY] 1 1 1;
    "setrange" 4 [WRITE|DENYOOM] 1 1 1;
    "incr" 2 [WRITE|DENYOOM|FAST] 1 1 1;
    "decr" 2 [WRITE|DENYOOM|FAST] 1 1 1;
    "incrby" 3 [WRITE|DENYOOM|FAST] 1 1 1;
    "decrby" 3 [WRITE|DENYOOM|FAST] 1 1 1;
    "incrbyfloat" 3 [WRITE|DENYOOM|FAST] 1 1 1;
    "setbit" 4 [WRITE|DENYOOM] 1 1 1;
    "getbit" 3 [READONLY|FAST] 1 1 1;
    "bitcount" -2 [READONLY] 1 1 1;
    "bitpos" -3 [READONLY] 1 1 1;
    "bitop" -4 [WRITE|DENYOOM] 2 -1 1;
    "bitfield" -2 [WRITE|DENYOOM] 1 1 1;
    "bitfield_ro" -2 [READONLY|FAST] 1 1 1;
    "lcs" -3 [READONLY] 1 2 1;
    // keys
    "del" -2 [WRITE] 1 -1 1;
    "unlink" -2 [WRITE|FAST] 1 -1 1;
    "exists" -2 [READONLY|FAST] 1 -1 1;
    "touch" -2 [READONLY|FAST] 1 -1 1;
    "type" 2 [READONLY|FAST] 1 1 1;
    "expire" -3 [WRITE|FAST] 1 1 1;
    "pexpire" -3 [WRITE|FAST] 1 1 1;
    "expireat" -3 [WRITE|FAST] 1 1 1;
    "pexpireat" -3 [WRITE|FAST] 1 1 1;
    "ttl" 2 [READONLY|FAST] 1 1 1;
    "pttl" 2 [READONLY|FAST] 1 1 1;
    "expiretime" 2 [READONLY|FAST] 1 1 1;
    "pexpiretime" 2 [READONLY|FAST] 1 1 1;
    "persist" 2 [WRITE|FAST] 1 1 1;
    "keys" 2 [READONLY|ALLKEYS] 0 0 0;
    "scan" -2 [READONLY|ALLKEYS] 0 0 0;
    "randomkey" 1 [READONLY|ALLKEYS] 0 0 0;
    "rename" 3 [WRITE] 1 2 1;
    "renamenx" 3 [WRITE|FAST] 1 2 1;
    "copy" -3 [WRITE|DENYOOM] 1 2 1;
    "move" 3 [WRITE|FAST] 1 1 1;
    "dump" 2 [READONLY] 1 1 1;
    "restore" -4 [WRITE|DENYOOM] 1 1 1;
    "object" -2 [READONLY|MOVABLE] 2 2 1;
    "sort" -2 [WRITE|DENYOOM|MOVABLE] 1 1 1;
    "sort_ro" -2 [READONLY|MOVABLE] 1 1 1;
    // hashes
    "hset" -4 [WRITE|DENYOOM|FAST] 1 1 1;
    "hsetnx" 4 [WRITE|DENYOOM|FAST] 1 1 1;
    "hget" 3 [READONLY|FAST] 1 1 1;
    "hmget" -3 [READONLY|FAST] 1 1 1;
    "hmset" -4 [WRITE|DENYOOM|FAST] 1 1 1;
    "hdel" -3 [WRITE|FAST] 1 1 1;
    "hexists" 3 [READONLY|FAST] 1 1 1;
    "hlen" 2 [READONLY|FAST] 1 1 1;
    "hstrlen" 3 [READONLY|FAST] 1 1 1;
    "hkeys" 2 [READONLY] 1 1 1;
    "hvals" 2 [READONLY] 1 1 1;
    "hgetall" 2 [READONLY] 1 1 1;
    "hincrby" 4 [WRITE|DENYOOM|FAST] 1 1 1;
    "hincrbyfloat" 4 [WRITE|DENYOOM|FAST] 1 1 1;
    "hrandfield" -2 [READONLY] 1 1 1;
    "hscan" -3 [READONLY] 1 1 1;
    // lists
    "lpush" -3 [WRITE|DENYOOM|FAST] 1 1 1;
    "rpush" -3 [WRITE|DENYOOM|FAST] 1 1 1;
    "lpushx" -3 [WRITE|DENYOOM|FAST] 1 1 1;
    "rpushx" -3 [WRITE|DENYOOM|FAST] 1 1 1;
    "lpop" -2 [WRITE|FAST] 1 1 1;
    "rpop" -2 [WRITE|FAST] 1 1 1;
    "llen" 2 [READONLY|FAST] 1 1 1;
    "lindex" 3 [READONLY] 1 1 1;
    "lset" 4 [WRITE|DENYOOM] 1 1 1;
    "lrange" 4 [READONLY] 1 1 1;
    "ltrim" 4 [WRITE] 1 1 1;
    "lrem" 4 [WRITE] 1 1 1;
    "linsert" 5 [WRITE|DENYOOM] 1 1 1;
    "lpos" -3 [READONLY] 1 1 1;
    "lmove" 5 [WRITE|DENYOOM] 1 2 1;
    "rpoplpush" 3 [WRITE|DENYOOM] 1 2 1;
    "lmpop" -4 [WRITE|MOVABLE] 0 0 0;
    "blpop" -3 [WRITE|BLOCKING|NOSCRIPT] 1 -2 1;
    "brpop" -3 [WRITE|BLOCKING|NOSCRIPT] 1 -2 1;
    "blmove" 6 [WRITE|DENYOOM|BLOCKING|NOSCRIPT] 1 2 1;
    "brpoplpush" 4 [WRITE|DENYOOM|BLOCKING|NOSCRIPT] 1 2 1;
    "blmpop" -5 [WRITE|BLOCKING|MOVABLE|NOSCRIPT] 0 0 0;
    // sets
    "sadd" -3 [WRITE|DENYOOM|FAST] 1 1 1;
    "srem" -3 [WRITE|FAST] 1 1 1;
    "scard" 2 [READONLY|FAST] 1 1 1;
    "sismember" 3 [READONLY|FAST] 1 1 1;
    "smismember" -3 [READONLY|FAST] 1 1 1;
    "smembers" 2 [READONLY] 1 1 1;
    "srandmember" -2 [READONLY] 1 1 1;
    "spop" -2 [WRITE|FAST] 1 1 1;
    "smove" 4 [WRITE|FAST] 1 2 1;
    "sinter" -2 [READONLY] 1 -1 1;
    "sintercard" -3 [READONLY|MOVABLE] 0 0 0;
    "sinterstore" -3 [WRITE|DENYOOM] 1 -1 1;
    "sunion" -2 [READONLY] 1 -1 1;
    "sunionstore" -3 [WRITE|DENYOOM] 1 -1 1;
    "sdiff" -2 [READONLY] 1 -1 1;
    "sdiffstore" -3 [WRITE|DENYOOM] 1 -1 1;
    "sscan" -3 [READONLY] 1 1 1;
    // sorted sets
    "zadd" -4 [WRITE|DENYOOM|FAST] 1 1 1;
    "zincrby" 4 [WRITE|DENYOOM|FAST] 1 1 1;
    "zrem" -3 [WRITE|FAST] 1 1 1;
    "zcard" 2 [READONLY|FAST] 1 1 1;
    "zcount" 4 [READONLY|FAST] 1 1 1;
    "zlexcount" 4 [READONLY|FAST] 1 1 1;
    "zscore" 3 [READONLY|FAST] 1 1 1;
    "zmscore" -3 [READONLY|FAST] 1 1 1;
    "zrank" -3 [READONLY|FAST] 1 1 1;
    "zrevrank" -3 [READONLY|FAST] 1 1 1;
    "zrange" -4 [READONLY] 1 1 1;
    "zrangebyscore" -4 [READONLY] 1 1 1;
    "zrevrangebyscore" -4 [READONLY] 1 1 1;
    "zrangebylex" -4 [READONLY] 1 1 1;
    "zrevrangebylex" -4 [READONLY] 1 1 1;
    "zrevrange" -4 [READONLY] 1 1 1;
    "zrangestore" -5 [WRITE|DENYOOM] 1 2 1;
    "zremrangebyrank" 4 [WRITE] 1 1 1;
    "zremrangebyscore" 4 [WRITE] 1 1 1;
    "zremrangebylex" 4 [WRITE] 1 1 1;
    "zpopmin" -2 [WRITE|FAST] 1 1 1;
    "zpopmax" -2 [WRITE|FAST] 1 1 1;
    "bzpopmin" -3 [WRITE|FAST|BLOCKING|NOSCRIPT] 1 -2 1;
    "bzpopmax" -3 [WRITE|FAST|BLOCKING|NOSCRIPT] 1 -2 1;
    "zrandmember" -2 [READONLY] 1 1 1;
    "zunion" -3 [READONLY|MOVABLE] 0 0 0;
    "zinter" -3 [READONLY|MOVABLE] 0 0 0;
    "zdiff" -3 [READONLY|MOVABLE] 0 0 0;
    "zintercard" -3 [READONLY|MOVABLE] 0 0 0;
    "zunionstore" -4 [WRITE|DENYOOM|MOVABLE] 1 1 1;
    "zinterstore" -4 [WRITE|DENYOOM|MOVABLE] 1 1 1;
    "zdiffstore" -4 [WRITE|DENYOOM|MOVABLE] 1 1 1;
    "zmpop" -4 [WRITE|MOVABLE] 0 0 0;
    "bzmpop" -5 [WRITE|BLOCKING|MOVABLE|NOSCRIPT] 0 0 0;
    // geo (sorted sets of geohash scores)
    "geoadd" -5 [WRITE|DENYOOM] 1 1 1;
    "geopos" -2 [READONLY] 1 1 1;
    "geodist" -4 [READONLY] 1 1 1;
    "geohash" -2 [READONLY] 1 1 1;
    "geosearch" -7 [READONLY] 1 1 1;
    "geosearchstore" -8 [WRITE|DENYOOM] 1 2 1;
    "georadius" -6 [WRITE|DENYOOM|MOVABLE] 1 1 1;
    "georadius_ro" -6 [READONLY] 1 1 1;
    "georadiusbymember" -5 [WRITE|DENYOOM|MOVABLE] 1 1 1;
    "georadiusbymember_ro" -5 [READONLY] 1 1 1;
    "zscan" -3 [READONLY] 1 1 1;
    // hyperloglog
    "pfadd" -2 [WRITE|DENYOOM|FAST] 1 1 1;
    "pfcount" -2 [READONLY] 1 -1 1;
    "pfmerge" -2 [WRITE|DENYOOM] 1 -1 1;
    // transactions
    "multi" 1 [FAST|TX|NOSCRIPT|CONN] 0 0 0;
    "exec" 1 [TX|NOSCRIPT|CONN] 0 0 0;
    "discard" 1 [FAST|TX|NOSCRIPT|CONN] 0 0 0;
    "watch" -2 [FAST|TX|NOSCRIPT] 1 -1 1;
    "unwatch" 1 [FAST|TX|NOSCRIPT|CONN] 0 0 0;
    // pub/sub
    "subscribe" -2 [PUBSUB|NOSCRIPT|CONN] 0 0 0;
    "unsubscribe" -1 [PUBSUB|NOSCRIPT|CONN] 0 0 0;
    "psubscribe" -2 [PUBSUB|NOSCRIPT|CONN] 0 0 0;
    "punsubscribe" -1 [PUBSUB|NOSCRIPT|CONN] 0 0 0;
    "publish" 3 [PUBSUB|FAST|CONN] 0 0 0;
    "pubsub" -2 [PUBSUB|CONN] 0 0 0;
    "ssubscribe" -2 [PUBSUB|NOSCRIPT|CONN] 0 0 0;
    "sunsubscribe" -1 [PUBSUB|NOSCRIPT|CONN] 0 0 0;
    "spublish" 3 [PUBSUB|FAST|CONN] 0 0 0;
    // scripting
    "eval" -3 [SCRIPT|NOSCRIPT|MOVABLE] 0 0 0;
    "evalsha" -3 [SCRIPT|NOSCRIPT|MOVABLE] 0 0 0;
    "eval_ro" -3 [SCRIPT|NOSCRIPT|READONLY|MOVABLE] 0 0 0;
    "evalsha_ro" -3 [SCRIPT|NOSCRIPT|READONLY|MOVABLE] 0 0 0;
    "script" -2 [SCRIPT|NOSCRIPT|CONN] 0 0 0;
    "fcall" -3 [SCRIPT|NOSCRIPT|MOVABLE] 0 0 0;
    "fcall_ro" -3 [SCRIPT|NOSCRIPT|READONLY|MOVABLE] 0 0 0;
    "function" -2 [SCRIPT|NOSCRIPT|CONN] 0 0 0;
    // Codis slot commands (arities as on codis-server 3.2)
    "slotshashkey" -1 [SLOTS|FAST|CONN] 0 0 0;
    "slotsinfo" -1 [SLOTS|READONLY|ALLKEYS] 0 0 0;
    "slotsscan" -3 [SLOTS|READONLY|ALLKEYS] 0 0 0;
    "slotsdel" -2 [SLOTS|WRITE|ALLKEYS] 0 0 0;
    "slotscheck" 1 [SLOTS|READONLY|ALLKEYS] 0 0 0;
    "slotsmgrtslot" 5 [SLOTS|WRITE|ALLKEYS] 0 0 0;
    "slotsmgrtone" 5 [SLOTS|WRITE] 4 4 1;
    "slotsmgrttagslot" 5 [SLOTS|WRITE|ALLKEYS] 0 0 0;
    "slotsmgrttagone" 5 [SLOTS|WRITE] 4 4 1;
    "slotsrestore" -4 [SLOTS|WRITE|DENYOOM] 1 -1 3;
    "slotsmgrtslot-async" 8 [SLOTS|WRITE|ALLKEYS] 0 0 0;
    "slotsmgrttagslot-async" 8 [SLOTS|WRITE|ALLKEYS] 0 0 0;
    "slotsmgrtone-async" -7 [SLOTS|WRITE] 6 -1 1;
    "slotsmgrttagone-async" -7 [SLOTS|WRITE] 6 -1 1;
    "slotsmgrt-async-fence" 1 [SLOTS|ALLKEYS] 0 0 0;
    "slotsmgrt-async-cancel" 1 [SLOTS|ALLKEYS] 0 0 0;
    "slotsmgrt-async-status" 1 [SLOTS|ALLKEYS] 0 0 0;
    "slotsmgrt-exec-wrapper" -3 [SLOTS|WRITE] 1 1 1;
    "slotsrestore-async" -2 [SLOTS|WRITE|DENYOOM] 2 2 1;
    "slotsrestore-async-auth" 2 [SLOTS|CONN] 0 0 0;
    "slotsrestore-async-select" 2 [SLOTS|CONN] 0 0 0;
    "slotsrestore-async-ack" 3 [SLOTS|CONN] 0 0 0;
    "slotsmove" -2 [SLOTS|ADMIN|ALLKEYS] 0 0 0;
}

static INDEX: LazyLock<HashMap<&'static [u8], &'static CommandSpec, ahash::RandomState>> =
    LazyLock::new(|| COMMANDS.iter().map(|c| (c.name.as_bytes(), c)).collect());

/// Look a command up by name, case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut tmp = [0u8; 32];
    if name.len() > tmp.len() {
        return None;
    }
    let lower = &mut tmp[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    INDEX.get(&*lower).copied()
}

impl CommandSpec {
    /// Whether the flag bit(s) are set.
    #[inline]
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// Whether `argc` arguments (name included) satisfy the arity.
    #[inline]
    pub fn arity_ok(&self, argc: usize) -> bool {
        if self.arity >= 0 {
            argc == self.arity as usize
        } else {
            argc >= (-self.arity) as usize
        }
    }

    /// Positions (indexes into `args`) of the keys of this call. Assumes the arity was checked.
    /// Invalid `numkeys` yields no keys; the handler reports the error.
    pub fn key_positions(&self, args: &[Bytes]) -> Vec<usize> {
        let argc = args.len() as i64;
        if self.has(MOVABLE) {
            return movable_keys(self.name, args);
        }
        if self.first == 0 {
            return Vec::new();
        }
        let last = if self.last < 0 {
            argc + self.last as i64
        } else {
            self.last as i64
        };
        let mut v = Vec::new();
        let mut i = self.first as i64;
        while i <= last && i < argc {
            v.push(i as usize);
            i += self.step as i64;
        }
        v
    }

    /// Position of the first key, if the command has keys (the proxy routes by it).
    pub fn first_key(&self, args: &[Bytes]) -> Option<usize> {
        if !self.has(MOVABLE) {
            return (self.first > 0 && (self.first as usize) < args.len())
                .then_some(self.first as usize);
        }
        self.key_positions(args).into_iter().next()
    }
}

fn numkeys_at(args: &[Bytes], at: usize) -> Option<usize> {
    let n = crate::request::parse_i64(args.get(at)?)?;
    (n > 0 && (at + n as usize) < args.len()).then_some(n as usize)
}

fn movable_keys(name: &str, args: &[Bytes]) -> Vec<usize> {
    match name {
        "zunionstore" | "zinterstore" | "zdiffstore" => match numkeys_at(args, 2) {
            Some(n) => std::iter::once(1).chain(3..3 + n).collect(),
            None => vec![1],
        },
        // `ZUNION numkeys key…`: numkeys is argument 1.
        "zunion" | "zinter" | "zdiff" | "zintercard" | "sintercard" | "lmpop" | "zmpop" => {
            match numkeys_at(args, 1) {
                Some(n) => (2..2 + n).collect(),
                None => vec![],
            }
        }
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro" => {
            match numkeys_at(args, 2) {
                Some(n) => (3..3 + n).collect(),
                None => vec![],
            }
        }
        "blmpop" | "bzmpop" => match numkeys_at(args, 2) {
            Some(n) => (3..3 + n).collect(),
            None => vec![],
        },
        "object" => {
            if args.len() >= 3 {
                vec![2]
            } else {
                vec![]
            }
        }
        "sort" => sort_keys(args),
        "georadius" => georadius_keys(args, 6),
        "georadiusbymember" => georadius_keys(args, 5),
        "sort_ro" => vec![1],
        _ => vec![],
    }
}

/// `GEORADIUS[BYMEMBER] key … [STORE|STOREDIST dest]`: the key, then as Redis 7.0's key specs
/// the argument after the first STORE and after the first STOREDIST (options start at
/// `options`), then the destination the command really writes (the last STORE/STOREDIST, Redis's
/// `georadiusGetKeys` scan) when the specs missed it (`STORE d STORE e` writes `e`).
fn georadius_keys(args: &[Bytes], options: usize) -> Vec<usize> {
    let is = |i: usize, w: &str| args[i].eq_ignore_ascii_case(w.as_bytes());
    let mut keys = vec![1];
    for word in ["store", "storedist"] {
        if let Some(i) = (options..args.len().saturating_sub(1)).find(|&i| is(i, word)) {
            keys.push(i + 1);
        }
    }
    let mut dest = None;
    let mut i = 5;
    while i + 1 < args.len() {
        if is(i, "store") || is(i, "storedist") {
            dest = Some(i + 1);
            i += 1;
        }
        i += 1;
    }
    if let Some(d) = dest.filter(|d| !keys.contains(d)) {
        keys.push(d);
    }
    keys
}

/// `SORT key … [STORE dest] …`: the key, and the destination the command stores into (the last
/// STORE). When the options parse as SORT parses them, the destination is the one SORT writes;
/// otherwise (SORT replies an error) Redis's `sortGetKeys` scan, which differs only when a
/// destination is named like an option (`STORE limit STORE d`: SORT writes `d`).
fn sort_keys(args: &[Bytes]) -> Vec<usize> {
    let is = |i: usize, w: &str| args[i].eq_ignore_ascii_case(w.as_bytes());
    let mut store = None;
    let mut i = 2;
    let parsed = loop {
        if i >= args.len() {
            break true;
        }
        let left = args.len() - i - 1;
        i += if is(i, "asc") || is(i, "desc") || is(i, "alpha") {
            1
        } else if is(i, "limit") && left >= 2 {
            3
        } else if (is(i, "by") || is(i, "get")) && left >= 1 {
            2
        } else if is(i, "store") && left >= 1 {
            store = Some(i + 1);
            2
        } else {
            break false;
        };
    };
    if !parsed {
        store = None;
        let mut i = 2;
        while i < args.len() {
            if is(i, "limit") {
                i += 2;
            } else if is(i, "store") && i + 1 < args.len() {
                store = Some(i + 1);
            } else if is(i, "get") || is(i, "by") {
                i += 1;
            }
            i += 1;
        }
    }
    std::iter::once(1).chain(store).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    #[test]
    fn lookup_is_case_insensitive_and_unique() {
        assert_eq!(lookup(b"GeT").unwrap().name, "get");
        assert!(lookup(b"nosuchcommand").is_none());
        assert_eq!(INDEX.len(), COMMANDS.len(), "duplicate names in the table");
    }

    #[test]
    fn keys_from_the_table() {
        let mset = lookup(b"mset").unwrap();
        assert_eq!(mset.key_positions(&args("MSET a 1 b 2")), vec![1, 3]);
        let blpop = lookup(b"blpop").unwrap();
        assert_eq!(blpop.key_positions(&args("BLPOP a b 0")), vec![1, 2]);
        let zu = lookup(b"zunionstore").unwrap();
        assert_eq!(
            zu.key_positions(&args("ZUNIONSTORE d 2 a b WEIGHTS 1 2")),
            vec![1, 3, 4]
        );
        let zu = lookup(b"zunion").unwrap();
        assert_eq!(
            zu.key_positions(&args("ZUNION 2 a b WITHSCORES")),
            vec![2, 3]
        );
        let lm = lookup(b"lmpop").unwrap();
        assert_eq!(lm.key_positions(&args("LMPOP 1 a LEFT")), vec![2]);
        let blm = lookup(b"blmpop").unwrap();
        assert_eq!(blm.key_positions(&args("BLMPOP 0 2 a b LEFT")), vec![3, 4]);
        let sort = lookup(b"sort").unwrap();
        assert_eq!(sort.key_positions(&args("SORT k BY w_* GET #")), vec![1]);
        assert_eq!(
            sort.key_positions(&args("SORT k LIMIT 0 1 STORE d GET #")),
            vec![1, 6]
        );
        assert_eq!(
            sort.key_positions(&args("SORT k STORE d STORE e")),
            vec![1, 5]
        );
        assert_eq!(
            sort.key_positions(&args("SORT k STORE limit STORE d")),
            vec![1, 5]
        );
        // Unparsable options: Redis's scan (SORT itself replies an error).
        assert_eq!(sort.key_positions(&args("SORT k FOO STORE d")), vec![1, 4]);
        assert_eq!(sort.key_positions(&args("SORT k STORE")), vec![1]);
        let ro = lookup(b"sort_ro").unwrap();
        assert_eq!(ro.key_positions(&args("SORT_RO k STORE d")), vec![1]);
        let eval = lookup(b"eval").unwrap();
        assert_eq!(eval.key_positions(&args("EVAL s 1 k a")), vec![3]);
        assert_eq!(eval.first_key(&args("EVAL s 0")), None);
        let fcall = lookup(b"fcall").unwrap();
        assert_eq!(fcall.key_positions(&args("FCALL f 2 k1 k2 a")), vec![3, 4]);
        assert!(lookup(b"get").unwrap().arity_ok(2));
        assert!(!lookup(b"get").unwrap().arity_ok(3));
        assert!(lookup(b"set").unwrap().arity_ok(5));
    }
}
