//! A session's own connection to one backend server, outside the shared pipelines: a
//! subscriber's connection to the pub/sub home (`pubsub`), and the connection on which a
//! `WATCH` and then its transaction run (`session`).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::backend::encode_args;

/// How long a handshake or a round trip may take before the connection is given up.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Opens a connection to `addr`: `AUTH auth` if set, `HELLO 3` for a RESP3 session, `SELECT
/// db` if not 0; fails on any error reply, or after 5 seconds.
pub async fn dial(addr: &str, auth: &str, resp3: bool, db: u32) -> Result<TcpStream, String> {
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
    let mut s = TcpStream::connect_timeout(sa, Duration::from_secs(5))
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_nodelay(true);
    let mut reqs: Vec<Vec<Bytes>> = Vec::new();
    if !auth.is_empty() {
        reqs.push(vec![
            Bytes::from_static(b"AUTH"),
            Bytes::copy_from_slice(auth.as_bytes()),
        ]);
    }
    if resp3 {
        reqs.push(vec![Bytes::from_static(b"HELLO"), Bytes::from_static(b"3")]);
    }
    if db != 0 {
        reqs.push(vec![
            Bytes::from_static(b"SELECT"),
            Bytes::from(db.to_string()),
        ]);
    }
    if reqs.is_empty() {
        return Ok(s);
    }
    let replies = futures_lite::future::or(roundtrip(&mut s, &reqs), async {
        glommio::timer::sleep(Duration::from_secs(5)).await;
        Err("handshake timed out".to_string())
    })
    .await
    .map_err(|e| format!("{addr}: {e}"))?;
    for r in replies {
        if r.first() == Some(&b'-') {
            let text = String::from_utf8_lossy(&r[1..r.len().saturating_sub(2)]).into_owned();
            return Err(format!("{addr}: {text}"));
        }
    }
    Ok(s)
}

/// Sends `reqs` on `s` in one write and reads one reply for each (errors included), within
/// 30 seconds.
pub async fn roundtrip(s: &mut TcpStream, reqs: &[Vec<Bytes>]) -> Result<Vec<Bytes>, String> {
    let mut out = BytesMut::new();
    for r in reqs {
        encode_args(&mut out, r.iter().map(|a| &a[..]));
    }
    let work = async {
        s.write_all(&out).await.map_err(|e| format!("write: {e}"))?;
        let mut buf = BytesMut::new();
        let mut chunk = vec![0u8; 16 * 1024];
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
                }
            }
        }
        Ok(replies)
    };
    futures_lite::future::or(work, async {
        glommio::timer::sleep(TIMEOUT).await;
        Err("no reply in 30 seconds".to_string())
    })
    .await
}
