//! The bench's fatal errors (a wrong reply is not one: it is counted, see [`crate::workload::Expect`]).

use std::net::SocketAddr;

/// Why a benchmark could not run to completion.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// `-t` named a test we do not know.
    #[error("unknown test {0:?} in -t (known: {known})", known = crate::workload::TEST_NAMES)]
    UnknownTest(String),
    /// A bad combination or value of options.
    #[error("invalid options: {0}")]
    Config(String),
    /// A host name that does not resolve.
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, std::io::Error),
    /// Connecting failed.
    #[error("cannot connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    /// AUTH or SELECT was refused.
    #[error("{addr}: {what} failed: {reply}")]
    Setup {
        /// The server.
        addr: SocketAddr,
        /// `AUTH` or `SELECT`.
        what: &'static str,
        /// What the server replied.
        reply: String,
    },
    /// A read or write failed mid-run.
    #[error("{0}: i/o error: {1}")]
    Io(SocketAddr, std::io::Error),
    /// The server closed the connection with requests outstanding.
    #[error("{0}: connection closed by the server")]
    Closed(SocketAddr),
    /// The server sent bytes that are not RESP.
    #[error("{0}: protocol error in reply: {1}")]
    Protocol(SocketAddr, resp::ProtocolError),
    /// A file could not be read or written.
    #[error("{0}: {1}")]
    File(std::path::PathBuf, std::io::Error),
    /// A chart could not be drawn (or its input is unusable).
    #[error("plot: {0}")]
    Plot(String),
    /// The glommio runtime could not start an executor.
    #[error("runtime: {0}")]
    Runtime(String),
}
