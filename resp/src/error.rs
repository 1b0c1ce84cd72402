//! Protocol errors. `Display` is exactly what Redis 7 sends after the leading `-`.

/// A request that breaks the protocol. The connection replies with this text and then closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("ERR Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("ERR Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("ERR Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    #[error("ERR Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("ERR Protocol error: too big inline request")]
    TooBigInline,
    #[error("ERR Protocol error: too big mbulk count string")]
    TooBigMbulkCount,
    #[error("ERR Protocol error: too big bulk count string")]
    TooBigBulkCount,
    #[error("ERR Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulk,
    #[error("ERR Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulk,
    /// Reply parsing (client side): a byte that starts no RESP type.
    #[error("ERR Protocol error: unexpected reply type byte {0:#04x}")]
    BadReplyType(u8),
    /// Reply parsing (client side): a malformed length, integer or double line.
    #[error("ERR Protocol error: malformed reply line")]
    BadReplyLine,
}
