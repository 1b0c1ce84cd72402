//! A small async RESP client for talking to group servers: PING, INFO, SLAVEOF and the
//! SLOTSMGRT* migration commands. Every call has a timeout; replies are `resp::Frame`s.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use resp::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{CtlError, Result};

/// One connection to a Redis-speaking server.
pub struct RedisConn {
    addr: String,
    stream: TcpStream,
    buf: BytesMut,
    timeout: Duration,
    authed: bool,
}

impl RedisConn {
    /// Connects to `addr`, sending `AUTH auth` when `auth` is not empty.
    pub async fn connect(addr: &str, auth: &str, timeout: Duration) -> Result<Self> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(CtlError::redis(addr, format!("not reachable: {e}"))),
            Err(_) => return Err(CtlError::redis(addr, "not reachable: connect timed out")),
        };
        let _ = stream.set_nodelay(true);
        let mut c = RedisConn {
            addr: addr.to_string(),
            stream,
            buf: BytesMut::with_capacity(4096),
            timeout,
            authed: false,
        };
        if !auth.is_empty() {
            match c.call(&["AUTH", auth]).await {
                Ok(_) => c.authed = true,
                // A server without a password accepts everyone: not an error for us.
                Err(CtlError::Redis { cause, .. })
                    if cause.contains("without any password configured")
                        || cause.contains("no password is set") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(c)
    }

    /// The server's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Changes the per-call timeout.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends one command and returns its reply; an error reply becomes [`CtlError::Redis`].
    pub async fn call<S: AsRef<[u8]>>(&mut self, args: &[S]) -> Result<Frame> {
        let frame = Frame::command(
            args.iter()
                .map(|a| Bytes::copy_from_slice(a.as_ref()))
                .collect::<Vec<_>>(),
        );
        let name = args
            .first()
            .map(|a| String::from_utf8_lossy(a.as_ref()).to_uppercase())
            .unwrap_or_default();
        match tokio::time::timeout(self.timeout, self.roundtrip(&frame)).await {
            Ok(Ok(Frame::Error(e))) => Err(CtlError::redis(
                &self.addr,
                format!("{name}: {}", String::from_utf8_lossy(&e)),
            )),
            Ok(Ok(f)) => Ok(f),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(CtlError::redis(&self.addr, format!("{name}: timed out"))),
        }
    }

    async fn roundtrip(&mut self, frame: &Frame) -> Result<Frame> {
        self.stream
            .write_all(&frame.to_bytes())
            .await
            .map_err(|e| CtlError::redis(&self.addr, format!("write: {e}")))?;
        loop {
            match Frame::parse(&mut self.buf) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => {
                    return Err(CtlError::redis(
                        &self.addr,
                        format!("not a Redis server (bad reply: {e})"),
                    ))
                }
            }
            if self.buf.len() > 64 << 20 {
                return Err(CtlError::redis(&self.addr, "reply too large"));
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| CtlError::redis(&self.addr, format!("read: {e}")))?;
            if n == 0 {
                return Err(CtlError::redis(&self.addr, "connection closed by server"));
            }
        }
    }

    /// `PING`, checking that the peer answers like a Redis server.
    pub async fn ping(&mut self) -> Result<()> {
        match self.call(&["PING"]).await? {
            Frame::Simple(s) if s.eq_ignore_ascii_case(b"PONG") => Ok(()),
            other => Err(CtlError::redis(
                &self.addr,
                format!("not a Redis server (PING answered {other:?})"),
            )),
        }
    }

    /// `INFO [section]` parsed into `field → value`.
    pub async fn info(&mut self, section: Option<&str>) -> Result<BTreeMap<String, String>> {
        let reply = match section {
            Some(s) => self.call(&["INFO", s]).await?,
            None => self.call(&["INFO"]).await?,
        };
        match reply {
            Frame::Bulk(b) | Frame::Verbatim(b) => Ok(parse_info(&String::from_utf8_lossy(&b))),
            other => Err(CtlError::redis(
                &self.addr,
                format!("INFO: unexpected reply {other:?}"),
            )),
        }
    }

    /// True when the server required (and accepted) the product auth.
    pub fn authed(&self) -> bool {
        self.authed
    }

    /// `SLAVEOF host port` (or `SLAVEOF NO ONE` for `None`). For a replica, `masterauth` is set
    /// to the product auth when the master requires it (and cleared when it does not).
    pub async fn slaveof(&mut self, master: Option<&str>, auth: &str) -> Result<()> {
        match master {
            None => self.call(&["SLAVEOF", "NO", "ONE"]).await.map(|_| ()),
            Some(m) => {
                let (host, port) = split_addr(m)?;
                if !auth.is_empty() {
                    let needs = RedisConn::connect(m, auth, self.timeout)
                        .await
                        .map(|c| c.authed)
                        .unwrap_or(true);
                    let pass = if needs { auth } else { "" };
                    // Best effort: a server without CONFIG SET still replicates an open master.
                    let _ = self.call(&["CONFIG", "SET", "masterauth", pass]).await;
                }
                self.call(&["SLAVEOF", host, port]).await.map(|_| ())
            }
        }
    }
}

/// Splits `host:port`.
pub fn split_addr(addr: &str) -> Result<(&str, &str)> {
    match addr.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok((h, p)),
        _ => Err(CtlError::invalid(format!(
            "bad address {addr:?}: want host:port"
        ))),
    }
}

/// Parses `INFO` text (`field:value` lines, `#` section headers ignored).
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The integer in a reply (integer or numeric bulk string).
pub fn frame_int(f: &Frame) -> Option<i64> {
    match f {
        Frame::Integer(i) => Some(*i),
        Frame::Bulk(b) | Frame::Simple(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// Keys per database from `INFO keyspace` fields (`db0: keys=1,expires=0,...`).
pub fn keyspace_dbs(info: &BTreeMap<String, String>) -> Vec<(u32, u64)> {
    info.iter()
        .filter_map(|(k, v)| {
            let db = k.strip_prefix("db")?.parse::<u32>().ok()?;
            let keys = v
                .split(',')
                .find_map(|kv| kv.strip_prefix("keys="))?
                .parse::<u64>()
                .ok()?;
            Some((db, keys))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_parsing() {
        let i = parse_info("# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\ndb5:keys=7,expires=1\r\nrole:master\r\n");
        assert_eq!(i["role"], "master");
        assert_eq!(keyspace_dbs(&i), vec![(0, 3), (5, 7)]);
        assert!(split_addr("127.0.0.1:6379").is_ok());
        assert!(split_addr("127.0.0.1").is_err());
        assert_eq!(frame_int(&Frame::Integer(4)), Some(4));
    }
}
