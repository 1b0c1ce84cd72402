//! One closed-loop benchmark connection (the open loop is [`crate::open`]): connect (AUTH,
//! SELECT), then the hot loop: encode a pipeline batch
//! into a reused buffer, send it with one write, delimit replies with `resp::frame::frame_len`,
//! check each one and record its latency. No allocation per request.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::error::BenchError;
use crate::keys::{KeySampler, Rng};
use crate::runner::{ShardStats, Shared};
use crate::workload::Plan;

/// Initial read buffer per connection; it grows only for a single reply larger than this.
const READ_BUF: usize = 16 * 1024;

/// Where to connect and how to set the session up.
#[derive(Debug, Clone)]
pub struct Target {
    /// Server address.
    pub addr: SocketAddr,
    /// `AUTH <password>` after connecting (`-a`).
    pub auth: Option<String>,
    /// `SELECT <db>` after connecting when not 0 (`--dbnum`).
    pub dbnum: u32,
}

/// The per-connection knobs of a run.
#[derive(Debug, Clone)]
pub struct ConnParams {
    /// Requests per batch (`-P`).
    pub pipeline: usize,
    /// Key numbers for `__rand_int__` (`None` without `-r`: the placeholder stays literal).
    pub keys: Option<KeySampler>,
    /// Seed of this connection's generator.
    pub seed: u64,
}

/// Received bytes not yet consumed, delimited into whole replies.
pub(crate) struct ReplyBuf {
    buf: Vec<u8>,
    start: usize,
    filled: usize,
}

impl ReplyBuf {
    pub(crate) fn new() -> ReplyBuf {
        ReplyBuf {
            buf: vec![0; READ_BUF],
            start: 0,
            filled: 0,
        }
    }

    /// The byte range of the next complete buffered reply, if there is one (consumed).
    #[inline]
    pub(crate) fn next_reply(&mut self) -> Result<Option<Range<usize>>, resp::ProtocolError> {
        match resp::frame::frame_len(&self.buf[self.start..self.filled])? {
            Some(n) => {
                let r = self.start..self.start + n;
                self.start += n;
                if self.start == self.filled {
                    self.start = 0;
                    self.filled = 0;
                }
                Ok(Some(r))
            }
            None => Ok(None),
        }
    }

    /// The bytes of a reply returned by [`ReplyBuf::next_reply`] (valid until the next read).
    #[inline]
    pub(crate) fn get(&self, r: Range<usize>) -> &[u8] {
        &self.buf[r]
    }

    /// Room to read into, after compacting (and growing only for a reply larger than the buffer).
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.start = 0;
        }
        if self.filled == self.buf.len() {
            let len = self.buf.len() * 2;
            self.buf.resize(len, 0);
        }
        &mut self.buf[self.filled..]
    }

    /// `n` bytes were read into [`ReplyBuf::spare`].
    pub(crate) fn filled(&mut self, n: usize) {
        self.filled += n;
    }
}

/// A connected, set-up benchmark connection.
pub struct Conn {
    stream: TcpStream,
    addr: SocketAddr,
    rbuf: ReplyBuf,
}

impl Conn {
    /// Connect to `target`, with TCP_NODELAY, then AUTH and SELECT as asked.
    pub async fn open(target: &Target) -> Result<Conn, BenchError> {
        let addr = target.addr;
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| BenchError::Connect(addr, e.into()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| BenchError::Connect(addr, e.into()))?;
        let mut conn = Conn {
            stream,
            addr,
            rbuf: ReplyBuf::new(),
        };
        if let Some(pass) = &target.auth {
            conn.setup_call("AUTH", &[b"AUTH", pass.as_bytes()]).await?;
        }
        if target.dbnum != 0 {
            let db = target.dbnum.to_string();
            conn.setup_call("SELECT", &[b"SELECT", db.as_bytes()])
                .await?;
        }
        Ok(conn)
    }

    /// Send one set-up command and require `+OK`.
    async fn setup_call(&mut self, what: &'static str, args: &[&[u8]]) -> Result<(), BenchError> {
        let mut req = bytes::BytesMut::new();
        resp::Frame::command(args.iter().map(|a| bytes::Bytes::copy_from_slice(a)))
            .encode(&mut req);
        self.write(&req).await?;
        let r = loop {
            match self.next_reply()? {
                Some(r) => break r,
                None => self.fill().await?,
            }
        };
        let reply = self.rbuf.get(r);
        if reply != b"+OK\r\n" {
            return Err(BenchError::Setup {
                addr: self.addr,
                what,
                reply: String::from_utf8_lossy(reply).trim_end().to_string(),
            });
        }
        Ok(())
    }

    async fn write(&mut self, buf: &[u8]) -> Result<(), BenchError> {
        self.stream
            .write_all(buf)
            .await
            .map_err(|e| BenchError::Io(self.addr, e))
    }

    /// The byte range of the next complete buffered reply, if there is one (consumed).
    #[inline]
    fn next_reply(&mut self) -> Result<Option<Range<usize>>, BenchError> {
        self.rbuf
            .next_reply()
            .map_err(|e| BenchError::Protocol(self.addr, e))
    }

    /// Read more bytes.
    async fn fill(&mut self) -> Result<(), BenchError> {
        let n = self
            .stream
            .read(self.rbuf.spare())
            .await
            .map_err(|e| BenchError::Io(self.addr, e))?;
        if n == 0 {
            return Err(BenchError::Closed(self.addr));
        }
        self.rbuf.filled(n);
        Ok(())
    }

    /// Run `plan` until the shared budget (`-n`) or the deadline (`--duration`) says stop.
    /// `first_send` is when an open-loop connection sends its first batch.
    pub async fn run(
        mut self,
        plan: &Plan,
        params: &ConnParams,
        shared: &Shared,
        stats: &ShardStats,
        deadline: Option<Instant>,
    ) -> Result<(), BenchError> {
        let p = params.pipeline.max(1);
        let longest = plan
            .templates
            .iter()
            .map(|t| t.wire().len())
            .max()
            .unwrap_or(0);
        let mut wbuf: Vec<u8> = Vec::with_capacity(longest * p);
        let mut picks: Vec<u8> = Vec::with_capacity(p);
        let mut rng = Rng::new(params.seed);
        let fixed = KeySampler::Uniform(1);
        let keys = params.keys.as_ref().unwrap_or(&fixed);
        let mut seq = 0u64;
        loop {
            let k = shared.claim(p as u64, deadline) as usize;
            if k == 0 {
                return Ok(());
            }
            wbuf.clear();
            picks.clear();
            for _ in 0..k {
                let t = plan.pick(seq);
                seq += 1;
                plan.templates[t].write(&mut wbuf, keys, &mut rng);
                picks.push(t as u8);
            }
            let t0 = Instant::now();
            self.write(&wbuf).await?;
            let mut now = Instant::now();
            let mut got = 0;
            while got < k {
                match self.next_reply()? {
                    Some(r) => {
                        let ok = plan.templates[picks[got] as usize]
                            .expect
                            .check(self.rbuf.get(r));
                        stats.record(now.saturating_duration_since(t0), ok);
                        got += 1;
                    }
                    None => {
                        self.fill().await?;
                        now = Instant::now();
                    }
                }
            }
        }
    }
}
