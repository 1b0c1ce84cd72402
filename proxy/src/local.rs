//! Replies the proxy writes itself: `INFO [section]`, `HELLO`, `SLOTSMAPPING [slot]`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use bytes::{Bytes, BytesMut};
use resp::encode;

use crate::core::Core;

/// `INFO [section…]`: the proxy's own sections (server, clients, stats, proxy), Redis-style.
pub fn info(core: &Core, args: &[Bytes], out: &mut BytesMut) {
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
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n\r\n",
            sh.sessions_alive.load(Relaxed),
            cfg.proxy_max_clients
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
            "# Proxy\r\nproduct_name:{}\r\nproxy_token:{}\r\nonline:{}\r\ntopology_version:{}\r\nslots_online:{}\r\nslots_migrating:{}\r\nbackends:{}\r\nprimary_only:{}\r\n\r\n",
            cfg.product_name,
            sh.token,
            u8::from(t.is_some()),
            t.as_ref().map_or(0, |t| t.table.version),
            online,
            migrating,
            t.as_ref().map_or(String::new(), |t| t.table.addrs.join(",")),
            u8::from(cfg.backend_primary_only),
        );
    }
    if text.ends_with("\r\n\r\n") {
        text.truncate(text.len() - 2);
    }
    encode::bulk(out, text.as_bytes());
}

/// `HELLO [2 [AUTH user pass] [SETNAME name]]`: RESP2 only; the reply describes the proxy.
pub fn hello(out: &mut BytesMut) {
    encode::array(out, 14);
    for (k, v) in [
        ("server", "codis-proxy"),
        ("version", env!("CARGO_PKG_VERSION")),
    ] {
        encode::bulk(out, k.as_bytes());
        encode::bulk(out, v.as_bytes());
    }
    encode::bulk(out, b"proto");
    encode::int(out, 2);
    encode::bulk(out, b"id");
    encode::int(out, 0);
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
