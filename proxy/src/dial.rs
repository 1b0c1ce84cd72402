//! Reaching a backend server: TCP, or its Unix socket when it runs on this host
//! (`backend_prefer_unixsocket`). The shared pipelines (`backend`) and the sessions' own
//! connections (`private`) both start here.

use std::time::Duration;

use futures::io::{AsyncRead, AsyncWrite};
use glommio::net::{TcpStream, UnixStream};

/// A connection to a server: TCP or Unix.
pub trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}
pub type Conn = Box<dyn Io>;

/// How long a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP connection to `addr` (a host name is resolved), without Nagle's delay.
pub async fn tcp(addr: &str) -> Result<TcpStream, String> {
    let sa: std::net::SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(_) => {
            use std::net::ToSocketAddrs;
            addr.to_socket_addrs()
                .map_err(|e| format!("resolve {addr}: {e}"))?
                .next()
                .ok_or_else(|| format!("resolve {addr}: no address"))?
        }
    };
    let s = TcpStream::connect_timeout(sa, CONNECT_TIMEOUT)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Whether both ends of `s` have one address: the server runs on this host, and a Unix socket
/// it names is one this process can reach.
pub fn on_this_host(s: &TcpStream) -> bool {
    match (s.local_addr(), s.peer_addr()) {
        (Ok(l), Ok(p)) => l.ip() == p.ip(),
        _ => false,
    }
}

/// A connection to the Unix socket at `path`.
pub async fn unix(path: &str) -> Result<UnixStream, String> {
    let dial = async {
        UnixStream::connect(path)
            .await
            .map_err(|e| format!("connect: {e}"))
    };
    futures_lite::future::or(dial, async {
        glommio::timer::Timer::new(CONNECT_TIMEOUT).await;
        Err("connect timed out".to_string())
    })
    .await
}

/// `CONFIG GET` replies: the value of one key, and the check that the server behind a Unix
/// socket is the one the topology names.
pub use resp::frame::{config_value, expect_port};
