//! Replies the proxy writes itself: `INFO [section]`, `HELLO`, `SLOTSMAPPING [slot]`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use bytes::{Bytes, BytesMut};
use resp::encode::{self, Proto};

use crate::core::Core;

/// Whether `INFO args…` asks for the keyspace section (explicitly, or with no/all/default).
pub fn wants_keyspace(args: &[Bytes]) -> bool {
    args.len() == 1
        || args[1..].iter().any(|a| {
            ["keyspace", "all", "default", "everything"]
                .iter()
                .any(|w| a.eq_ignore_ascii_case(w.as_bytes()))
        })
}

/// `INFO [section…]`: the proxy's own sections (server, clients, memory, stats, proxy), Redis-style, then
/// `keyspace` (the sum over every group master, gathered by the caller with [`keyspace`]).
/// A verbatim string in RESP3, as Redis's.
pub fn info(core: &Core, args: &[Bytes], keyspace: Option<&str>, proto: Proto, out: &mut BytesMut) {
    let sh = &core.shared;
    let cfg = &core.cfg;
    let want: Vec<String> = args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let all = want.is_empty()
        || want
            .iter()
            .any(|w| w == "all" || w == "default" || w == "everything");
    let has = |s: &str| all || want.iter().any(|w| w == s);
    let mut text = String::new();
    if has("server") {
        let port = cfg.proxy_addr.rsplit(':').next().unwrap_or("");
        let _ = write!(
            text,
            "# Server\r\nredis_version:7.0.0\r\ncodis_proxy_version:{}\r\nredis_mode:proxy\r\nos:{}\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nexecutor_cores:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::process::id(),
            port,
            sh.start.elapsed().as_secs(),
            sh.start.elapsed().as_secs() / 86400,
            sh.cores.len(),
        );
    }
    if has("clients") {
        let _ = write!(
            text,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\npubsub_clients:{}\r\n\r\n",
            sh.sessions_alive.load(Relaxed),
            cfg.proxy_max_clients,
            sh.sessions_blocked.load(Relaxed),
            sh.sessions_subscribed.load(Relaxed)
        );
    }
    if has("memory") {
        // The proxy's own resident memory (it keeps no data); redis-cli --stat reads used_memory.
        let rss = rss_bytes();
        let _ = write!(
            text,
            "# Memory\r\nused_memory:{rss}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nmem_allocator:mimalloc\r\n\r\n",
            human(rss),
            human(rss),
        );
    }
    if has("stats") {
        let fails: u64 = sh.cores.iter().map(|c| c.fails.load(Relaxed)).sum();
        let _ = write!(
            text,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ninstantaneous_ops_per_sec:{}\r\ntotal_failed_commands:{}\r\n\r\n",
            sh.sessions_total.load(Relaxed),
            sh.ops_total(),
            sh.qps.load(Relaxed),
            fails
        );
    }
    if has("proxy") || has("codis") {
        let t = core.table();
        let online = t.as_ref().map_or(0, |t| {
            t.table.slots.iter().filter(|s| s.backend.is_some()).count()
        });
        let migrating = t.as_ref().map_or(0, |t| {
            t.table
                .slots
                .iter()
                .filter(|s| s.migrate_from.is_some())
                .count()
        });
        let _ = write!(
            text,
            "# Proxy\r\nproduct_name:{}\r\nproxy_token:{}\r\nonline:{}\r\ntopology_version:{}\r\nslots_online:{}\r\nslots_migrating:{}\r\nbackends:{}\r\npubsub_home:{}\r\nprimary_only:{}\r\n\r\n",
            cfg.product_name,
            sh.token,
            u8::from(t.is_some()),
            t.as_ref().map_or(0, |t| t.table.version),
            online,
            migrating,
            t.as_ref().map_or(String::new(), |t| t.table.addrs.join(",")),
            t.as_ref()
                .and_then(|t| t.table.pubsub_home.map(|h| t.table.addr(h).to_string()))
                .unwrap_or_default(),
            u8::from(cfg.backend_primary_only),
        );
    }
    if let Some(ks) = keyspace {
        text.push_str(ks);
    }
    if text.ends_with("\r\n\r\n") {
        text.truncate(text.len() - 2);
    }
    encode::verbatim(out, text.as_bytes(), proto);
}

/// Resident memory of this process, from `/proc/self/statm` (0 if unreadable).
fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    pages * page
}

/// Bytes as Redis's `*_human` fields print them (`1.50M`).
fn human(n: u64) -> String {
    let f = n as f64;
    let k = 1024.0;
    if f >= k * k * k {
        format!("{:.2}G", f / (k * k * k))
    } else if f >= k * k {
        format!("{:.2}M", f / (k * k))
    } else if f >= k {
        format!("{:.2}K", f / k)
    } else {
        format!("{n}B")
    }
}

/// Per database: keys, keys with an expiry, and the sum of `avg_ttl × expires` (to average).
type DbSums = std::collections::BTreeMap<u32, (u64, u64, u128)>;

/// Add one server's `# Keyspace` lines (`db0:keys=1,expires=0,avg_ttl=0`) to `sums`.
fn add_keyspace(sums: &mut DbSums, text: &str) {
    for line in text.lines() {
        let Some((db, fields)) = line.trim().split_once(':') else {
            continue;
        };
        let Some(n) = db.strip_prefix("db").and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let (mut keys, mut expires, mut avg) = (0u64, 0u64, 0u64);
        for f in fields.split(',') {
            match f.split_once('=') {
                Some(("keys", v)) => keys = v.parse().unwrap_or(0),
                Some(("expires", v)) => expires = v.parse().unwrap_or(0),
                Some(("avg_ttl", v)) => avg = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        let e = sums.entry(n).or_default();
        e.0 += keys;
        e.1 += expires;
        e.2 += avg as u128 * expires as u128;
    }
}

/// The `# Keyspace` section of the whole cluster: `INFO keyspace` of every group master (the
/// servers slots are routed to, and the sources of migrating slots), summed per database. A server
/// that does not answer within a second is left out and counted in `keyspace_unreachable`.
pub async fn keyspace(core: &Core) -> String {
    let Some(t) = core.table() else {
        return "# Keyspace\r\n\r\n".into();
    };
    let mut masters: Vec<u32> = t
        .table
        .slots
        .iter()
        .flat_map(|s| s.backend.into_iter().chain(s.migrate_from))
        .collect();
    masters.sort_unstable();
    masters.dedup();
    let auth = core.cfg.product_auth.clone();
    let asks = masters.iter().map(|&b| {
        let addr = t.table.addr(b).to_string();
        let auth = auth.clone();
        async move {
            let r = glommio::timer::timeout(std::time::Duration::from_secs(1), async {
                info_keyspace(&addr, &auth)
                    .await
                    .map_err(glommio::GlommioError::IoError)
            })
            .await;
            if let Err(e) = &r {
                tracing::debug!("INFO keyspace of {addr}: {e}");
            }
            r.ok()
        }
    });
    let replies = futures::future::join_all(asks).await;
    let mut sums = DbSums::new();
    let mut unreachable = 0;
    for r in replies {
        match r {
            Some(text) => add_keyspace(&mut sums, &text),
            None => unreachable += 1,
        }
    }
    let mut text = String::from("# Keyspace\r\n");
    for (db, (keys, expires, ttl_sum)) in sums {
        let avg = if expires == 0 {
            0
        } else {
            ttl_sum / expires as u128
        };
        let _ = write!(
            text,
            "db{db}:keys={keys},expires={expires},avg_ttl={avg}\r\n"
        );
    }
    if unreachable > 0 {
        let _ = write!(text, "keyspace_unreachable:{unreachable}\r\n");
    }
    text.push_str("\r\n");
    text
}

/// `[AUTH auth] INFO keyspace` on a fresh connection to `addr`; the bulk reply's text.
async fn info_keyspace(addr: &str, auth: &str) -> std::io::Result<String> {
    use futures::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = glommio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut req = BytesMut::new();
    let mut replies = 1;
    if !auth.is_empty() {
        resp::Frame::command([Bytes::from_static(b"AUTH"), Bytes::from(auth.to_string())])
            .encode(&mut req);
        replies += 1;
    }
    resp::Frame::command([Bytes::from_static(b"INFO"), Bytes::from_static(b"keyspace")])
        .encode(&mut req);
    s.write_all(&req).await?;
    let mut buf = BytesMut::new();
    let mut chunk = vec![0u8; 4096];
    let mut last = None;
    while replies > 0 {
        match resp::Frame::parse(&mut buf) {
            Ok(Some(f)) => {
                replies -= 1;
                last = Some(f);
                continue;
            }
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    match last {
        Some(resp::Frame::Bulk(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
        other => Err(std::io::Error::other(format!("unexpected reply {other:?}"))),
    }
}

/// The reply to `HELLO [2|3 [AUTH user pass] [SETNAME name]]` (parsed by
/// `clients::parse_hello`), in the protocol it switched to: it describes the proxy, `id` is the
/// client's.
pub fn hello(id: u64, proto: Proto, out: &mut BytesMut) {
    encode::map(out, 7, proto);
    for (k, v) in [
        ("server", "codis-proxy"),
        ("version", env!("CARGO_PKG_VERSION")),
    ] {
        encode::bulk(out, k.as_bytes());
        encode::bulk(out, v.as_bytes());
    }
    encode::bulk(out, b"proto");
    encode::int(out, if proto == Proto::Resp3 { 3 } else { 2 });
    encode::bulk(out, b"id");
    encode::int(out, id as i64);
    encode::bulk(out, b"mode");
    encode::bulk(out, b"proxy");
    encode::bulk(out, b"role");
    encode::bulk(out, b"master");
    encode::bulk(out, b"modules");
    encode::array(out, 0);
}

/// `SLOTSMAPPING [slot]`: `[id, backend, migrate_from, [[replicas…]]]` for one slot or all.
pub fn slots_mapping(core: &Core, args: &[Bytes], out: &mut BytesMut) {
    let Some(t) = core.table() else {
        encode::error(out, "ERR router is not online");
        return;
    };
    let one = |out: &mut BytesMut, s: &crate::slots::SlotRoute| {
        encode::array(out, 4);
        encode::bulk_int(out, s.id as i64);
        encode::bulk(out, s.backend.map_or("", |b| t.table.addr(b)).as_bytes());
        encode::bulk(
            out,
            s.migrate_from.map_or("", |b| t.table.addr(b)).as_bytes(),
        );
        if s.replicas.is_empty() {
            encode::array(out, 0);
        } else {
            encode::array(out, 1);
            encode::array(out, s.replicas.len());
            for &r in &s.replicas {
                encode::bulk(out, t.table.addr(r).as_bytes());
            }
        }
    };
    match args.len() {
        1 => {
            encode::array(out, t.table.slots.len());
            for s in &t.table.slots {
                one(out, s);
            }
        }
        2 => match resp::parse_i64(&args[1]) {
            Some(n) if (0..t.table.slots.len() as i64).contains(&n) => {
                one(out, &t.table.slots[n as usize])
            }
            _ => encode::error(out, "ERR invalid slot number"),
        },
        _ => encode::error(
            out,
            "ERR wrong number of arguments for 'slotsmapping' command",
        ),
    }
}
