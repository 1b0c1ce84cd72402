//! One benchmark connection: connect (AUTH, SELECT), then the hot loop: encode a pipeline batch
//! into a reused buffer, send it with one write, delimit replies with `resp::frame::frame_len`,
//! check each one and record its latency. No allocation per request.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::error::BenchError;
use crate::keys::{KeySampler, Rng};
use crate::runner::{ShardStats, Shared};
use crate::workload::Plan;

/// Open loop: unanswered requests per connection before it stops sending until replies come.
const MAX_INFLIGHT: usize = 8192;

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
    /// Open-loop mode: time between two batches of this connection.
    pub interval: Option<Duration>,
    /// Seed of this connection's generator.
    pub seed: u64,
}

/// A connected, set-up benchmark connection.
pub struct Conn {
    stream: TcpStream,
    addr: SocketAddr,
    rbuf: Vec<u8>,
    start: usize,
    filled: usize,
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
            rbuf: vec![0; READ_BUF],
            start: 0,
            filled: 0,
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
        let reply = &self.rbuf[r];
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
        let avail = &self.rbuf[self.start..self.filled];
        match resp::frame::frame_len(avail) {
            Ok(Some(n)) => {
                let r = self.start..self.start + n;
                self.start += n;
                if self.start == self.filled {
                    self.start = 0;
                    self.filled = 0;
                }
                Ok(Some(r))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(BenchError::Protocol(self.addr, e)),
        }
    }

    /// Read more bytes (compacting, and growing only for a reply larger than the buffer).
    async fn fill(&mut self) -> Result<(), BenchError> {
        if self.start > 0 {
            self.rbuf.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.start = 0;
        }
        if self.filled == self.rbuf.len() {
            let len = self.rbuf.len() * 2;
            self.rbuf.resize(len, 0);
        }
        let n = self
            .stream
            .read(&mut self.rbuf[self.filled..])
            .await
            .map_err(|e| BenchError::Io(self.addr, e))?;
        if n == 0 {
            return Err(BenchError::Closed(self.addr));
        }
        self.filled += n;
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
        first_send: Instant,
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
        if let Some(iv) = params.interval {
            return self
                .run_open(
                    plan, p, iv, keys, &mut rng, shared, stats, first_send, deadline,
                )
                .await;
        }
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
                            .check(&self.rbuf[r]);
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

    /// Open loop (`--rate`): a batch goes out every `iv`, on schedule, whether or not the replies
    /// of earlier batches are back (they are matched first in, first out). Latency counts from
    /// when a request was due, so neither a slow reply nor a late send can hide queueing delay
    /// (coordinated omission), and the connection count does not cap the requests in flight:
    /// waiting for each reply before the next send would turn any round trip longer than `iv`
    /// into a queue that grows inside the generator, not in the system measured.
    #[allow(clippy::too_many_arguments)]
    async fn run_open(
        &mut self,
        plan: &Plan,
        p: usize,
        iv: Duration,
        keys: &KeySampler,
        rng: &mut Rng,
        shared: &Shared,
        stats: &ShardStats,
        first_send: Instant,
        deadline: Option<Instant>,
    ) -> Result<(), BenchError> {
        let mut wbuf: Vec<u8> = Vec::new();
        // Requests sent and not yet answered: (when due, template).
        let mut inflight: VecDeque<(Instant, u8)> = VecDeque::new();
        let mut seq = 0u64;
        let mut next_send = first_send;
        let mut sending = true;
        loop {
            let now = Instant::now();
            // Past MAX_INFLIGHT unanswered requests (a stalled server) the connection only
            // reads: the due requests wait, and their latency still counts from when they were
            // due. Unbounded sending could fill both socket buffers while the server blocks on
            // writing replies nobody reads.
            let capped = inflight.len() >= MAX_INFLIGHT;
            if sending && !capped && next_send <= now {
                // Every batch that is due goes out now, in one write.
                wbuf.clear();
                while next_send <= now && inflight.len() < MAX_INFLIGHT {
                    let k = shared.claim(p as u64, deadline) as usize;
                    if k == 0 {
                        sending = false;
                        break;
                    }
                    for _ in 0..k {
                        let t = plan.pick(seq);
                        seq += 1;
                        plan.templates[t].write(&mut wbuf, keys, rng);
                        inflight.push_back((next_send, t as u8));
                    }
                    next_send += iv;
                }
                if !wbuf.is_empty() {
                    self.write(&wbuf).await?;
                }
                continue;
            }
            if inflight.is_empty() {
                if !sending {
                    return Ok(());
                }
                glommio::timer::sleep(next_send.saturating_duration_since(now)).await;
                continue;
            }
            // Replies are outstanding: read until one arrives or the next batch is due. A read
            // that loses the race consumed nothing (glommio reads once the socket is ready).
            let got = if sending && !capped {
                let wait = next_send.saturating_duration_since(now);
                futures_lite::FutureExt::or(async { self.fill().await.map(|()| true) }, async {
                    glommio::timer::sleep(wait).await;
                    Ok(false)
                })
                .await?
            } else {
                self.fill().await?;
                true
            };
            if !got {
                continue;
            }
            let now = Instant::now();
            while let Some(r) = self.next_reply()? {
                let Some((due, t)) = inflight.pop_front() else {
                    return Err(BenchError::Runtime(format!(
                        "{}: a reply nobody asked for",
                        self.addr
                    )));
                };
                let ok = plan.templates[t as usize].expect.check(&self.rbuf[r]);
                stats.record(now.saturating_duration_since(due), ok);
            }
        }
    }
}
