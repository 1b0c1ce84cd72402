//! The one error type of this crate. Every variant that concerns a node names its path.

use std::io;

/// Result alias used throughout `coord`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong talking to a coordinator or decoding what it holds.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node does not exist.
    #[error("{path}: node does not exist")]
    NotFound { path: String },
    /// `create` found a node already there.
    #[error("{path}: node already exists")]
    Exists { path: String },
    /// Compare-and-set failed: the node's version is not the expected one.
    #[error("{path}: version conflict: expected version {expected}")]
    Conflict { path: String, expected: u64 },
    /// `delete` of a node that still has children.
    #[error("{path}: node has children")]
    NotEmpty { path: String },
    /// The path is not absolute, has empty, `.` or `..` components, or hidden names.
    #[error("{path}: invalid path: {reason}")]
    BadPath { path: String, reason: &'static str },
    /// A product name that does not match `^\w[\w\.\-]*$`.
    #[error("invalid product name {0:?}: must match ^\\w[\\w.-]*$")]
    BadProduct(String),
    /// The node holds bytes that do not decode (bad JSON, bad header, bad slot id …).
    #[error("{path}: corrupt data: {cause}")]
    Corrupt { path: String, cause: String },
    /// The coordinator cannot be reached (connection refused, timeout, session lost).
    #[error("{path}: coordinator unavailable: {cause}")]
    Unavailable { path: String, cause: String },
    /// The coordinator refused the operation (ACL, authentication).
    #[error("{path}: permission denied: {cause}")]
    Denied { path: String, cause: String },
    /// The lock node is held by a live owner.
    #[error("{path}: lock is held by another owner: {holder}")]
    LockHeld { path: String, holder: String },
    /// Local I/O failed (filesystem coordinator).
    #[error("{path}: i/o error: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    /// Any other backend error.
    #[error("{path}: {backend} error: {cause}")]
    Backend {
        path: String,
        backend: &'static str,
        cause: String,
    },
    /// A bad coordinator configuration.
    #[error("coordinator config: {0}")]
    Config(String),
    /// The coordinator was closed.
    #[error("{path}: coordinator is closed")]
    Closed { path: String },
}

impl Error {
    /// The path this error concerns, when it concerns one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Error::NotFound { path }
            | Error::Exists { path }
            | Error::Conflict { path, .. }
            | Error::NotEmpty { path }
            | Error::BadPath { path, .. }
            | Error::Corrupt { path, .. }
            | Error::Unavailable { path, .. }
            | Error::Denied { path, .. }
            | Error::LockHeld { path, .. }
            | Error::Io { path, .. }
            | Error::Backend { path, .. }
            | Error::Closed { path } => Some(path),
            Error::BadProduct(_) | Error::Config(_) => None,
        }
    }

    /// True when retrying later may succeed (the coordinator was unreachable).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    pub(crate) fn io(path: &str, source: io::Error) -> Error {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &str, cause: impl std::fmt::Display) -> Error {
        Error::Corrupt {
            path: path.to_string(),
            cause: cause.to_string(),
        }
    }
}
