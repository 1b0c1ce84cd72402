//! [`Value`]: the neutral in-memory value that DUMP writes and RESTORE yields.

use bytes::Bytes;

/// One Redis value, independent of how the engine or RDB encodes it.
///
/// Aggregates keep their elements in a `Vec`: list order is significant; set, zset and hash
/// order is whatever the source had (RESTORE rejects duplicate members or fields, as Redis does).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string (integers are kept as their decimal text).
    String(Bytes),
    /// A list, head first.
    List(Vec<Bytes>),
    /// A set's members.
    Set(Vec<Bytes>),
    /// A sorted set's `(member, score)` pairs.
    ZSet(Vec<(Bytes, f64)>),
    /// A hash's `(field, value)` pairs.
    Hash(Vec<(Bytes, Bytes)>),
}

impl Value {
    /// The Redis `TYPE` name of this value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
            Value::Hash(_) => "hash",
        }
    }
}
