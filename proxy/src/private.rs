//! A session's own connection to one backend server, outside the shared pipelines: a
//! subscriber's connection to the pub/sub home (`pubsub`), and the connection on which a
//! `WATCH` and then its transaction run (`session`).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use crate::backend::encode_args;
use crate::dial::{self, Conn, Io};

/// How long a handshake or a round trip may take before the connection is given up.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Opens a connection to `addr`: `AUTH auth` if set, `HELLO 3` for a RESP3 session, `SELECT
/// db` if not 0; fails on any error reply, or after 5 seconds. A server on this host is reached
/// through its Unix socket when `unix` (`backend_prefer_unixsocket`) allows, as the shared
/// connections are (see `backend::connect`).
pub async fn dial(
    addr: &str,
    auth: &str,
    resp3: bool,
    db: u32,
    unix: bool,
) -> Result<Conn, String> {
    let mut s = dial::tcp(addr).await.map_err(|e| format!("{addr}: {e}"))?;
    let mut reqs: Vec<Vec<Bytes>> = Vec::new();
    if !auth.is_empty() {
        reqs.push(vec![
            Bytes::from_static(b"AUTH"),
            Bytes::copy_from_slice(auth.as_bytes()),
        ]);
    }
    if unix && dial::on_this_host(&s) {
        let port = s.peer_addr().map(|a| a.port()).unwrap_or(0);
        let mut probe = reqs.clone();
        probe.push(config_get("unixsocket"));
        let replies = say(&mut s, &probe, addr, probe.len() - 1).await?;
        let path = replies.last().and_then(|r| dial::config_value(r));
        if let Some(path) = path.filter(|p| !p.is_empty()) {
            match via_unix(&path, port, auth, resp3, db).await {
                Ok(u) => return Ok(Box::new(u)),
                Err(e) => tracing::info!(backend = %addr, "unixsocket {path} not used: {e}"),
            }
        }
        // AUTH was said on this connection already.
        reqs.clear();
    }
    reqs.extend(session_state(resp3, db));
    say(&mut s, &reqs, addr, reqs.len()).await?;
    Ok(Box::new(s))
}

/// The server's Unix socket at `path`, handshaken, if the server behind it listens on `port`.
async fn via_unix(
    path: &str,
    port: u16,
    auth: &str,
    resp3: bool,
    db: u32,
) -> Result<glommio::net::UnixStream, String> {
    let mut u = dial::unix(path).await?;
    let mut reqs: Vec<Vec<Bytes>> = Vec::new();
    if !auth.is_empty() {
        reqs.push(vec![
            Bytes::from_static(b"AUTH"),
            Bytes::copy_from_slice(auth.as_bytes()),
        ]);
    }
    reqs.extend(session_state(resp3, db));
    reqs.push(config_get("port"));
    let replies = say(&mut u, &reqs, path, reqs.len() - 1).await?;
    dial::expect_port(replies.last().map_or(&[][..], |r| &r[..]), port)?;
    Ok(u)
}

/// `HELLO 3` for a RESP3 session, `SELECT db` if not 0.
fn session_state(resp3: bool, db: u32) -> Vec<Vec<Bytes>> {
    let mut reqs = Vec::new();
    if resp3 {
        reqs.push(vec![Bytes::from_static(b"HELLO"), Bytes::from_static(b"3")]);
    }
    if db != 0 {
        reqs.push(vec![
            Bytes::from_static(b"SELECT"),
            Bytes::from(db.to_string()),
        ]);
    }
    reqs
}

fn config_get(key: &'static str) -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"CONFIG"),
        Bytes::from_static(b"GET"),
        Bytes::from_static(key.as_bytes()),
    ]
}

/// Sends `reqs` within 5 seconds and returns their replies; the first `must` may not be
/// errors.
async fn say<S: Io + ?Sized>(
    s: &mut S,
    reqs: &[Vec<Bytes>],
    to: &str,
    must: usize,
) -> Result<Vec<Bytes>, String> {
    if reqs.is_empty() {
        return Ok(Vec::new());
    }
    let replies = futures_lite::future::or(roundtrip(s, reqs), async {
        glommio::timer::sleep(Duration::from_secs(5)).await;
        Err("handshake timed out".to_string())
    })
    .await
    .map_err(|e| format!("{to}: {e}"))?;
    for r in &replies[..must.min(replies.len())] {
        if r.first() == Some(&b'-') {
            let text = String::from_utf8_lossy(&r[1..r.len().saturating_sub(2)]).into_owned();
            return Err(format!("{to}: {text}"));
        }
    }
    Ok(replies)
}

/// Sends `reqs` on `s` in one write and reads one reply for each (errors included), within
/// 30 seconds.
pub async fn roundtrip<S: Io + ?Sized>(
    s: &mut S,
    reqs: &[Vec<Bytes>],
) -> Result<Vec<Bytes>, String> {
    futures_lite::future::or(exchange(s, reqs), async {
        glommio::timer::sleep(TIMEOUT).await;
        Err("no reply in 30 seconds".to_string())
    })
    .await
}

/// Sends `reqs` on `s` in one write and reads one reply for each (errors included), however
/// long that takes (a blocking command's reply).
pub async fn exchange<S: Io + ?Sized>(
    s: &mut S,
    reqs: &[Vec<Bytes>],
) -> Result<Vec<Bytes>, String> {
    let mut out = BytesMut::new();
    for r in reqs {
        encode_args(&mut out, r.iter().map(|a| &a[..]));
    }
    let work = async {
        s.write_all(&out).await.map_err(|e| format!("write: {e}"))?;
        let mut buf = BytesMut::new();
        // Most replies here are small (a popped element, WATCH's +OK): start with a small read
        // buffer, and take a big one once a read fills it.
        let mut chunk = vec![0u8; 512];
        let mut replies = Vec::with_capacity(reqs.len());
        while replies.len() < reqs.len() {
            match resp::frame::frame_len(&buf).map_err(|e| format!("bad reply: {e}"))? {
                Some(n) => replies.push(buf.split_to(n).freeze()),
                None => {
                    let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
                    if n == 0 {
                        return Err("connection closed by the server".to_string());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if n == chunk.len() && chunk.len() < 16 * 1024 {
                        chunk = vec![0u8; 16 * 1024];
                    }
                }
            }
        }
        Ok(replies)
    };
    work.await
}
