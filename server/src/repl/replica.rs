//! Replica side: REPLICAOF/SLAVEOF, and the link task that connects to the master, handshakes
//! (AUTH masterauth, REPLCONF listening-port/capa, PSYNC), loads a full sync's RDB or continues
//! from its offset, then applies the command stream through the normal dispatch path on a
//! pseudo-session that never replies — except `REPLCONF ACK`, every second and on GETACK.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use resp::{encode, Args, RequestParser};

use super::{g, prop, MasterAddr};
use crate::conn::{Plan, Session};
use crate::core::Core;
use crate::shared::{now_ms, ClientInfo};

/// Why a link attempt ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("I/O with the master: {0}")]
    Io(#[from] std::io::Error),
    #[error("master replied '{0}'")]
    Refused(String),
    #[error("the master closed the connection")]
    Closed,
    #[error("loading the master's RDB: {0}")]
    Load(String),
    #[error("replication target changed")]
    Stale,
}

/// `REPLICAOF host port` (`Some`) or `REPLICAOF NO ONE` (`None`). Returns the reply text.
pub fn follow(core: &Rc<Core>, m: Option<MasterAddr>) -> &'static str {
    let was = super::master();
    if m.is_some() && was == m {
        return "OK Already connected to specified master";
    }
    let gen = g().generation.fetch_add(1, Ordering::SeqCst) + 1;
    if let Ok(mut cur) = g().master.lock() {
        cur.clone_from(&m);
    }
    g().link_up.store(false, Ordering::Relaxed);
    g().syncing.store(false, Ordering::Relaxed);
    match m {
        None => {
            g().readonly.store(false, Ordering::Relaxed);
            if was.is_some() {
                tracing::warn!("MASTER MODE enabled (user request)");
                prop::log().promote();
            }
        }
        Some(addr) => {
            tracing::info!("REPLICAOF {}:{} enabled", addr.host, addr.port);
            prop::log().set_replica(true);
            g().readonly
                .store(g().read_only_cfg.load(Ordering::Relaxed), Ordering::Relaxed);
            let core = core.clone();
            glommio::spawn_local(async move { link_loop(core, addr, gen).await }).detach();
        }
    }
    "OK"
}

fn current(gen: u64) -> bool {
    g().generation.load(Ordering::SeqCst) == gen
}

async fn link_loop(core: Rc<Core>, addr: MasterAddr, gen: u64) {
    let mut backoff = Duration::from_millis(100);
    while current(gen) {
        let started = Instant::now();
        match session(&core, &addr, gen).await {
            Ok(()) => {}
            Err(LinkError::Stale) => break,
            Err(e) => tracing::warn!("link with master {}:{}: {e}", addr.host, addr.port),
        }
        g().link_up.store(false, Ordering::Relaxed);
        g().syncing.store(false, Ordering::Relaxed);
        if !current(gen) {
            break;
        }
        if started.elapsed() > Duration::from_secs(5) {
            backoff = Duration::from_millis(100);
        }
        glommio::timer::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

struct Conn {
    s: TcpStream,
    buf: BytesMut,
}

impl Conn {
    async fn fill(&mut self) -> Result<(), LinkError> {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = self.s.read(&mut chunk).await?;
        if n == 0 {
            return Err(LinkError::Closed);
        }
        g().last_io_ms.store(now_ms(), Ordering::Relaxed);
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// One reply line without CRLF; empty lines (the master's keep-alive newlines) are skipped.
    async fn line(&mut self) -> Result<String, LinkError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&c| c == b'\n') {
                let l = self.buf.split_to(i + 1);
                let t = String::from_utf8_lossy(&l).trim_end().to_string();
                if t.is_empty() {
                    continue;
                }
                return Ok(t);
            }
            self.fill().await?;
        }
    }

    async fn call(&mut self, args: &[&[u8]]) -> Result<String, LinkError> {
        let mut b = BytesMut::new();
        encode::array(&mut b, args.len());
        for a in args {
            encode::bulk(&mut b, a);
        }
        self.s.write_all(&b).await?;
        self.line().await
    }

    /// The next `n` bytes. Large payloads (a full sync's RDB) are read straight into their
    /// final buffer, in large reads, without growing and copying an intermediate one.
    async fn exact(&mut self, n: usize) -> Result<Vec<u8>, LinkError> {
        const READ: usize = 4 << 20;
        let have = self.buf.len().min(n);
        let mut v = Vec::with_capacity(n);
        v.extend_from_slice(&self.buf.split_to(have));
        while v.len() < n {
            let at = v.len();
            let end = (at + READ).min(n);
            v.resize(end, 0);
            let got = self.s.read(&mut v[at..end]).await?;
            if got == 0 {
                return Err(LinkError::Closed);
            }
            g().last_io_ms.store(now_ms(), Ordering::Relaxed);
            v.truncate(at + got);
        }
        Ok(v)
    }

    /// The RDB payload after `+FULLRESYNC`: `$len` bulk, or `$EOF:<40 byte mark>` … mark.
    async fn rdb(&mut self) -> Result<Vec<u8>, LinkError> {
        let head = self.line().await?;
        let Some(rest) = head.strip_prefix('$') else {
            return Err(LinkError::Refused(head));
        };
        if let Some(mark) = rest.strip_prefix("EOF:") {
            let mark = mark.as_bytes().to_vec();
            if mark.len() != 40 {
                return Err(LinkError::Refused(head));
            }
            loop {
                if self.buf.len() >= 40 && self.buf[self.buf.len() - 40..] == mark[..] {
                    let n = self.buf.len() - 40;
                    let body = self.buf.split_to(n).to_vec();
                    self.buf.clear();
                    return Ok(body);
                }
                self.fill().await?;
            }
        }
        let n: usize = rest.parse().map_err(|_| LinkError::Refused(head.clone()))?;
        self.exact(n).await
    }
}

fn config_value(core: &Core, key: &str) -> Option<String> {
    core.shared
        .config()
        .get(key.as_bytes())
        .first()
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
}

/// How long the handshake (connect … PSYNC reply) and any silence of the master may last
/// (`repl-timeout`): then the link is dropped and retried.
const REPL_TIMEOUT: Duration = Duration::from_secs(60);

/// Run `f`, or fail with a timeout after `d`.
async fn within<T>(
    d: Duration,
    f: impl std::future::Future<Output = Result<T, LinkError>>,
) -> Result<T, LinkError> {
    let f = std::pin::pin!(f);
    let t = std::pin::pin!(glommio::timer::sleep(d));
    match futures::future::select(f, t).await {
        futures::future::Either::Left((r, _)) => r,
        futures::future::Either::Right(_) => Err(LinkError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "timeout talking to the master",
        ))),
    }
}

async fn session(core: &Rc<Core>, addr: &MasterAddr, gen: u64) -> Result<(), LinkError> {
    let (mut c, r) = within(REPL_TIMEOUT, handshake(core, addr, gen)).await?;
    sync(core, &mut c, r, gen).await?;
    g().link_up.store(true, Ordering::Relaxed);
    stream(core, c, gen).await
}

/// Connect, authenticate, announce ourselves and send PSYNC; returns the connection and the reply.
async fn handshake(
    core: &Rc<Core>,
    addr: &MasterAddr,
    gen: u64,
) -> Result<(Conn, String), LinkError> {
    let s = TcpStream::connect((addr.host.as_str(), addr.port))
        .await
        .map_err(|e| LinkError::Io(std::io::Error::other(e.to_string())))?;
    let _ = s.set_nodelay(true);
    let mut c = Conn {
        s,
        buf: BytesMut::new(),
    };
    let pong = c.call(&[b"PING"]).await?;
    if pong.starts_with('-') && !pong.starts_with("-NOAUTH") {
        return Err(LinkError::Refused(pong));
    }
    if let Some(pass) = config_value(core, "masterauth") {
        let r = c.call(&[b"AUTH", pass.as_bytes()]).await?;
        if r.starts_with('-') {
            return Err(LinkError::Refused(r));
        }
    }
    let port = core.shared.tcp_port.load(Ordering::Relaxed).to_string();
    c.call(&[b"REPLCONF", b"listening-port", port.as_bytes()])
        .await?;
    c.call(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"])
        .await?;
    if !current(gen) {
        return Err(LinkError::Stale);
    }
    let st = prop::log().state();
    let next = (st.offset + 1).to_string();
    let r = c
        .call(&[b"PSYNC", st.replid.as_bytes(), next.as_bytes()])
        .await?;
    Ok((c, r))
}

/// Act on the PSYNC reply: load the full sync's RDB, or continue.
async fn sync(core: &Rc<Core>, c: &mut Conn, r: String, gen: u64) -> Result<(), LinkError> {
    if let Some(rest) = r.strip_prefix("+FULLRESYNC") {
        let mut it = rest.split_whitespace();
        let (Some(id), Some(off)) = (it.next(), it.next().and_then(|o| o.parse::<u64>().ok()))
        else {
            return Err(LinkError::Refused(r));
        };
        g().syncing.store(true, Ordering::Relaxed);
        tracing::info!("full resynchronisation from master: {id} {off}");
        let rdb = c.rdb().await?;
        if !current(gen) {
            return Err(LinkError::Stale);
        }
        crate::persist::load_rdb(core, rdb)
            .await
            .map_err(|e| LinkError::Load(e.to_string()))?;
        prop::log().reset_history(id, off);
        g().syncing.store(false, Ordering::Relaxed);
        tracing::info!("MASTER <-> REPLICA sync: finished with success");
    } else if let Some(rest) = r.strip_prefix("+CONTINUE") {
        if let Some(id) = rest.split_whitespace().next() {
            prop::log().switch_replid(id);
        }
        tracing::info!("partial resynchronisation accepted");
    } else {
        return Err(LinkError::Refused(r));
    }
    Ok(())
}

fn ack_bytes() -> Vec<u8> {
    let off = prop::log().offset().to_string();
    let mut b = BytesMut::new();
    encode::array(&mut b, 3);
    encode::bulk(&mut b, b"REPLCONF");
    encode::bulk(&mut b, b"ACK");
    encode::bulk(&mut b, off.as_bytes());
    b.to_vec()
}

/// A session for the master's commands: never refused as read-only, replies discarded.
fn pseudo_session(core: &Core) -> Session {
    let id = core.shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    let info = Arc::new(ClientInfo::new(
        id,
        "master".into(),
        String::new(),
        -1,
        core.id,
        false,
    ));
    let mut s = Session::new(info, true);
    s.from_master = true;
    s
}

async fn stream(core: &Rc<Core>, c: Conn, gen: u64) -> Result<(), LinkError> {
    let Conn { s, buf } = c;
    let (mut rd, wr) = AsyncReadExt::split(s);
    let wr = Rc::new(futures::lock::Mutex::new(wr));
    let done = Rc::new(std::cell::Cell::new(false));
    let ack_task = {
        let wr = wr.clone();
        let done = done.clone();
        glommio::spawn_local(async move {
            // Acknowledge at once (a WAIT on the master may be waiting), then every second.
            while !done.get() && current(gen) {
                let b = ack_bytes();
                if wr.lock().await.write_all(&b).await.is_err() {
                    break;
                }
                let t = Instant::now();
                while !done.get() && t.elapsed() < Duration::from_secs(1) {
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                }
            }
        })
    };
    let mut sess = pseudo_session(core);
    let mut parser = RequestParser::new(usize::MAX >> 1);
    let mut rbuf = buf;
    let mut raw: Vec<u8> = rbuf.to_vec();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut plan = Plan::new(core.ncores());
    let mut out = BytesMut::new();
    let mut batch: Vec<Args> = Vec::new();
    let res = loop {
        if !current(gen) {
            break Err(LinkError::Stale);
        }
        // Apply every complete command received so far.
        let mut used = 0;
        loop {
            let before = rbuf.len();
            let args = match parser.parse(&mut rbuf) {
                Ok(Some(a)) => a,
                Ok(None) => break,
                Err(e) => {
                    done.set(true);
                    let _ = ack_task.await;
                    return Err(LinkError::Refused(format!(
                        "protocol error in the stream: {e}"
                    )));
                }
            };
            let n = before - rbuf.len();
            let getack = args.len() >= 2
                && args[0].eq_ignore_ascii_case(b"replconf")
                && args[1].eq_ignore_ascii_case(b"getack");
            if getack {
                apply(
                    core,
                    &mut sess,
                    &mut batch,
                    &mut plan,
                    &mut out,
                    &raw[..used],
                )
                .await;
                raw.drain(..used);
                used = 0;
                let b = ack_bytes();
                if let Err(e) = wr.lock().await.write_all(&b).await {
                    done.set(true);
                    let _ = ack_task.await;
                    return Err(e.into());
                }
            } else if !(args.len() >= 2 && args[0].eq_ignore_ascii_case(b"replconf")) {
                batch.push(args);
            }
            used += n;
        }
        apply(
            core,
            &mut sess,
            &mut batch,
            &mut plan,
            &mut out,
            &raw[..used],
        )
        .await;
        raw.drain(..used);
        let read = within(REPL_TIMEOUT, async {
            rd.read(&mut chunk).await.map_err(LinkError::from)
        })
        .await;
        match read {
            Ok(0) => break Err(LinkError::Closed),
            Err(e) => break Err(e),
            Ok(n) => {
                g().last_io_ms.store(now_ms(), Ordering::Relaxed);
                g().read_offset.store(
                    prop::log().offset() + (raw.len() + n) as u64,
                    Ordering::Relaxed,
                );
                rbuf.extend_from_slice(&chunk[..n]);
                raw.extend_from_slice(&chunk[..n]);
            }
        }
    };
    done.set(true);
    let _ = ack_task.await;
    res
}

/// Run the master's commands, then record their bytes in our own stream (same offsets).
async fn apply(
    core: &Rc<Core>,
    sess: &mut Session,
    batch: &mut Vec<Args>,
    plan: &mut Plan,
    out: &mut BytesMut,
    raw: &[u8],
) {
    if !batch.is_empty() {
        crate::conn::run_batch(core, sess, batch, plan, out).await;
        out.clear();
        sess.quit = false;
    }
    if !raw.is_empty() {
        prop::log().append_raw(raw);
    }
}
