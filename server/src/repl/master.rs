//! Master side: a client connection that sends SYNC/PSYNC becomes a replica link (full sync =
//! snapshot + the stream from the snapshot's offset; partial = the backlog from the replica's
//! offset), replicas are pinged, their `REPLCONF ACK`s tracked, and WAIT counts them.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use resp::RequestParser;

use super::{g, prop, ReplicaLink};
use crate::core::Core;
use crate::shared::{now_ms, ClientInfo};

/// Largest backlog of stream bytes a replica link may fall behind by before it is dropped
/// (`client-output-buffer-limit replica 256mb`).
const REPLICA_LIMIT: usize = 256 << 20;

/// A replica's synchronisation request: `PSYNC replid offset` (offset: the next byte it needs),
/// or `SYNC` (no id).
#[derive(Debug, Clone)]
pub struct PsyncReq {
    pub replid: Option<String>,
    pub offset: i64,
}

/// Serve a replica on `stream` (the connection that sent SYNC/PSYNC) until the link breaks.
pub async fn serve_replica(
    core: Rc<Core>,
    stream: crate::conn::Stream,
    info: Arc<ClientInfo>,
    req: PsyncReq,
    listening_port: u16,
) {
    let ip = info
        .addr
        .rsplit_once(':')
        .map_or(info.addr.clone(), |(h, _)| h.to_string());
    let link = Arc::new(ReplicaLink {
        client_id: info.id,
        ip,
        port: listening_port,
        ack: 0.into(),
        last_ack_ms: now_ms().into(),
        online: false.into(),
    });
    if let Ok(mut r) = g().replicas.lock() {
        r.push(link.clone());
    }
    let result = stream_to(&core, stream, &info, &req, &link).await;
    if let Err(e) = result {
        tracing::info!(replica = %info.addr, "replica link closed: {e}");
    }
    if let Ok(mut r) = g().replicas.lock() {
        r.retain(|x| !Arc::ptr_eq(x, &link));
    }
}

async fn stream_to(
    core: &Rc<Core>,
    mut stream: crate::conn::Stream,
    info: &Arc<ClientInfo>,
    req: &PsyncReq,
    link: &Arc<ReplicaLink>,
) -> std::io::Result<()> {
    let log = prop::log();
    let partial = match &req.replid {
        Some(id) if id != "?" && req.offset > 0 => {
            match log.subscribe_from(id, req.offset as u64, REPLICA_LIMIT) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::info!(replica = %info.addr, "partial resynchronisation refused: {e}");
                    g().sync_partial_err.fetch_add(1, Ordering::Relaxed);
                    None
                }
            }
        }
        _ => None,
    };
    let mut reader = match partial {
        Some(r) => {
            g().sync_partial_ok.fetch_add(1, Ordering::Relaxed);
            let id = log.state().replid;
            tracing::info!(replica = %info.addr, "partial resynchronisation accepted at {}", r.offset());
            futures_lite::AsyncWriteExt::write_all(
                &mut stream,
                format!("+CONTINUE {id}\r\n").as_bytes(),
            )
            .await?;
            r
        }
        None => {
            g().sync_full.fetch_add(1, Ordering::Relaxed);
            log.ensure_backlog();
            let cell: RefCell<Option<(prop::Reader, String)>> = RefCell::new(None);
            let snap = crate::persist::snapshot_rdb(core, || {
                let st = log.state();
                *cell.borrow_mut() = Some((log.subscribe_now(REPLICA_LIMIT), st.replid));
            })
            .await;
            let rdb = snap.map_err(|e| std::io::Error::other(e.to_string()))?;
            let Some((r, id)) = cell.into_inner() else {
                return Err(std::io::Error::other("snapshot did not start"));
            };
            tracing::info!(replica = %info.addr, "full resynchronisation at offset {} ({} bytes)", r.offset(), rdb.len());
            let mut head = format!("+FULLRESYNC {id} {}\r\n", r.offset()).into_bytes();
            head.extend_from_slice(format!("${}\r\n", rdb.len()).as_bytes());
            futures_lite::AsyncWriteExt::write_all(&mut stream, &head).await?;
            // The checksum is computed on another thread while the pieces are sent; the
            // buffers are freed there too.
            let rdb = std::sync::Arc::new(rdb);
            let crc = {
                let rdb = rdb.clone();
                crate::persist::spawn_thread(move || rdb.crc())
            };
            for p in rdb.pieces() {
                futures_lite::AsyncWriteExt::write_all(&mut stream, p).await?;
            }
            let crc = crc
                .await
                .map_err(|_| std::io::Error::other("checksum thread failed"))?;
            futures_lite::AsyncWriteExt::write_all(&mut stream, &crate::persist::Rdb::trailer(crc))
                .await?;
            let _ = crate::persist::spawn_thread(move || drop(rdb));
            r
        }
    };
    link.online.store(true, Ordering::Relaxed);
    link.last_ack_ms.store(now_ms(), Ordering::Relaxed);
    // The replica only ever sends REPLCONF ACK: read them on the side.
    let (mut rd, mut wr) = AsyncReadExt::split(stream);
    let closed = Rc::new(Cell::new(false));
    let acks = {
        let closed = closed.clone();
        let link = link.clone();
        glommio::spawn_local(async move {
            let mut parser = RequestParser::new(1 << 20);
            let mut buf = BytesMut::new();
            let mut chunk = vec![0u8; 4096];
            loop {
                match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                while let Ok(Some(args)) = parser.parse(&mut buf) {
                    if args.len() == 3
                        && args[0].eq_ignore_ascii_case(b"replconf")
                        && args[1].eq_ignore_ascii_case(b"ack")
                    {
                        if let Some(off) = resp::parse_i64(&args[2]) {
                            link.ack.store(off.max(0) as u64, Ordering::Relaxed);
                            link.last_ack_ms.store(now_ms(), Ordering::Relaxed);
                        }
                    }
                }
            }
            closed.set(true);
        })
    };
    let mut buf = Vec::new();
    let res = loop {
        if closed.get() || info.killed.load(Ordering::Relaxed) {
            break Ok(());
        }
        match reader.read(&mut buf) {
            None => break Err(std::io::Error::other("replica fell too far behind")),
            Some(0) => glommio::timer::sleep(prop::POLL).await,
            Some(_) => {
                if let Err(e) = wr.write_all(&buf).await {
                    break Err(e);
                }
                buf.clear();
            }
        }
    };
    let _ = wr.close().await;
    drop(wr);
    acks.await;
    res
}

/// Ping replicas every `repl-ping-replica-period` seconds through the stream (as Redis does, so the
/// PING counts in the offsets) while this server is a master with replicas.
pub async fn ping_loop(core: Rc<Core>) {
    let mut last = Instant::now();
    loop {
        glommio::timer::sleep(Duration::from_millis(200)).await;
        let period = core
            .shared
            .config()
            .get(b"repl-ping-replica-period")
            .first()
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(10)
            .max(1);
        if last.elapsed() < Duration::from_secs(period) {
            continue;
        }
        last = Instant::now();
        let has = g().replicas.lock().map(|r| !r.is_empty()).unwrap_or(false);
        if has && super::master().is_none() {
            prop::log().append_raw(b"*1\r\n$4\r\nPING\r\n");
        }
    }
}

/// `WAIT numreplicas timeout`: block until that many replicas acknowledged every write made so far
/// (or the timeout in ms passes; 0: no timeout). Returns the count, or an error text.
pub async fn wait(numreplicas: i64, timeout_ms: i64) -> Result<i64, &'static str> {
    if super::master().is_some() {
        return Err("ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.");
    }
    let log = prop::log();
    let target = log.offset();
    let count = || {
        g().replicas
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|x| x.ack.load(Ordering::Relaxed) >= target)
                    .count() as i64
            })
            .unwrap_or(0)
    };
    let n = count();
    if n >= numreplicas {
        return Ok(n);
    }
    if prop::active() {
        log.append_raw(b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n");
    }
    let start = Instant::now();
    loop {
        glommio::timer::sleep(prop::POLL).await;
        let n = count();
        if n >= numreplicas
            || (timeout_ms > 0 && start.elapsed() >= Duration::from_millis(timeout_ms as u64))
        {
            return Ok(n);
        }
    }
}
