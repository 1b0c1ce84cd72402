//! The one error type of codisctl. Each variant says what the operator did wrong or what failed,
//! and maps to an HTTP status for the dashboard API.

/// Result alias used throughout `ctl`.
pub type Result<T, E = CtlError> = std::result::Result<T, E>;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Bad input: out-of-range slot, unknown group, wrong role … Nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// The operation conflicts with the current state (busy slot, non-empty group …).
    #[error("{0}")]
    Conflict(String),
    /// The product lock is held by someone else.
    #[error("{0}")]
    Locked(String),
    /// A Redis server could not be reached or refused a command.
    #[error("redis {addr}: {cause}")]
    Redis { addr: String, cause: String },
    /// The dashboard HTTP API failed or refused.
    #[error("dashboard {addr}: {cause}")]
    Dashboard { addr: String, cause: String },
    /// The API token was missing or wrong.
    #[error("unauthorized: bad or missing xauth token")]
    Unauthorized,
    /// The coordinator failed.
    #[error(transparent)]
    Coord(#[from] coord::Error),
    /// Local I/O (config files, sockets).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl CtlError {
    /// An [`CtlError::Invalid`] from anything printable.
    pub fn invalid(msg: impl Into<String>) -> Self {
        CtlError::Invalid(msg.into())
    }
    /// A [`CtlError::Conflict`] from anything printable.
    pub fn conflict(msg: impl Into<String>) -> Self {
        CtlError::Conflict(msg.into())
    }
    /// A [`CtlError::Redis`] error for `addr`.
    pub fn redis(addr: &str, cause: impl std::fmt::Display) -> Self {
        CtlError::Redis {
            addr: addr.to_string(),
            cause: cause.to_string(),
        }
    }
    /// An I/O error about `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        CtlError::Io {
            what: what.into(),
            source,
        }
    }
    /// The HTTP status the dashboard answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            CtlError::Invalid(_) | CtlError::Redis { .. } => 400,
            CtlError::Unauthorized => 403,
            CtlError::Conflict(_) | CtlError::Locked(_) => 409,
            CtlError::Coord(e) if e.is_unavailable() => 503,
            _ => 500,
        }
    }
}
