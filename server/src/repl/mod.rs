//! Replication: the propagation log ([`prop`]) every write effect goes through, and the
//! master/replica protocol built on it ([`master`]: SYNC/PSYNC links, WAIT; [`replica`]:
//! REPLICAOF and the link to a master).
//!
//! State that INFO, ROLE and WAIT read is process-wide (statics below): a server has one role.

pub mod master;
pub mod prop;
pub mod replica;

use std::fmt::Write;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use resp::encode;

use crate::core::Core;
use crate::shared::now_ms;

/// `READONLY` error for writes on a read-only replica.
pub const READONLY_ERR: &str = "READONLY You can't write against a read only replica.";

/// A replica attached to this server.
#[derive(Debug)]
pub struct ReplicaLink {
    pub client_id: u64,
    pub ip: String,
    pub port: u16,
    /// Last acknowledged offset.
    pub ack: AtomicU64,
    pub last_ack_ms: AtomicU64,
    /// Still receiving the snapshot (`wait_bgsave`/`send_bulk`) or streaming (`online`).
    pub online: AtomicBool,
}

/// Where this server replicates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterAddr {
    pub host: String,
    pub port: u16,
}

pub(crate) struct Globals {
    pub replicas: Mutex<Vec<Arc<ReplicaLink>>>,
    pub master: Mutex<Option<MasterAddr>>,
    /// Bumped by every REPLICAOF: a link task whose generation is stale stops.
    pub generation: AtomicU64,
    pub link_up: AtomicBool,
    pub last_io_ms: AtomicU64,
    pub syncing: AtomicBool,
    /// This server is a replica with `replica-read-only yes`.
    pub readonly: AtomicBool,
    pub read_only_cfg: AtomicBool,
    pub sync_full: AtomicU64,
    pub sync_partial_ok: AtomicU64,
    pub sync_partial_err: AtomicU64,
    /// Offset of the master stream read so far (may be ahead of what is applied).
    pub read_offset: AtomicU64,
}

pub(crate) fn g() -> &'static Globals {
    static G: std::sync::LazyLock<Globals> = std::sync::LazyLock::new(|| Globals {
        replicas: Mutex::new(Vec::new()),
        master: Mutex::new(None),
        generation: AtomicU64::new(0),
        link_up: AtomicBool::new(false),
        last_io_ms: AtomicU64::new(0),
        syncing: AtomicBool::new(false),
        readonly: AtomicBool::new(false),
        read_only_cfg: AtomicBool::new(true),
        sync_full: AtomicU64::new(0),
        sync_partial_ok: AtomicU64::new(0),
        sync_partial_err: AtomicU64::new(0),
        read_offset: AtomicU64::new(0),
    });
    &G
}

/// Whether writes from normal clients must be refused (read-only replica). One relaxed load.
#[inline]
pub fn readonly() -> bool {
    g().readonly.load(Ordering::Relaxed)
}

/// `replica-read-only` changed.
pub fn set_read_only_config(yes: bool) {
    g().read_only_cfg.store(yes, Ordering::Relaxed);
    let is_replica = g().master.lock().map(|m| m.is_some()).unwrap_or(false);
    g().readonly.store(yes && is_replica, Ordering::Relaxed);
}

/// `repl-backlog-size` changed.
pub fn set_backlog_size(n: usize) {
    prop::log().set_backlog_size(n);
}

/// Whether client `id` is a replica link (CLIENT KILL TYPE replica, CLIENT LIST).
pub fn is_replica_client(id: u64) -> bool {
    g().replicas
        .lock()
        .map(|r| r.iter().any(|x| x.client_id == id))
        .unwrap_or(false)
}

/// The master this server follows, if any.
pub fn master() -> Option<MasterAddr> {
    g().master.lock().ok().and_then(|m| m.clone())
}

fn replicas() -> Vec<Arc<ReplicaLink>> {
    g().replicas.lock().map(|r| r.clone()).unwrap_or_default()
}

/// Check and normalise a replication config value (`config.rs` calls this for every key);
/// applies run-time changes (`live`) that take effect outside the config.
pub fn config_value(key: &str, value: &str, live: bool) -> Result<String, String> {
    let yes_no = |v: &str| match v.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err("argument must be 'yes' or 'no'".to_string()),
    };
    match key {
        "replica-read-only" => {
            let y = yes_no(value)?;
            if live {
                set_read_only_config(y);
            }
            Ok(if y { "yes" } else { "no" }.into())
        }
        "repl-backlog-size" => {
            let n = crate::config::parse_memory(value)
                .ok_or_else(|| "argument must be a memory value".to_string())?;
            if live {
                set_backlog_size(n);
            }
            Ok(n.to_string())
        }
        "repl-ping-replica-period" => match value.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n.to_string()),
            _ => Err("argument must be between 1 and 2147483647 inclusive".into()),
        },
        "replicaof" => {
            let parts: Vec<&str> = value.split_whitespace().collect();
            match parts.as_slice() {
                [] => Ok(String::new()),
                [h, p] if p.parse::<u16>().is_ok() => Ok(format!("{h} {p}")),
                _ => Err("replicaof needs <host> <port>".into()),
            }
        }
        _ => Ok(value.to_string()),
    }
}

/// Start-up: follow `replicaof` from the configuration and ping replicas periodically.
pub fn start(core: &Rc<Core>) {
    let cfg = core.shared.config();
    if let Some(v) = cfg.get(b"replicaof").first().map(|(_, v)| v.clone()) {
        let mut it = v.split_whitespace();
        if let (Some(h), Some(p)) = (it.next(), it.next().and_then(|p| p.parse::<u16>().ok())) {
            replica::follow(
                core,
                Some(MasterAddr {
                    host: h.to_string(),
                    port: p,
                }),
            );
        }
    }
    if let Some(n) = cfg
        .get(b"repl-backlog-size")
        .first()
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        set_backlog_size(n);
    }
    if let Some((_, v)) = cfg.get(b"replica-read-only").first() {
        set_read_only_config(v != "no");
    }
    let core = core.clone();
    glommio::spawn_local(async move { master::ping_loop(core).await }).detach();
}

/// `INFO replication`.
pub fn info_section(o: &mut String) {
    let st = prop::log().state();
    let _ = write!(o, "# Replication\r\n");
    match master() {
        Some(m) => {
            let up = g().link_up.load(Ordering::Relaxed);
            let last = g().last_io_ms.load(Ordering::Relaxed);
            let ago = if last == 0 {
                -1
            } else {
                (now_ms().saturating_sub(last) / 1000) as i64
            };
            let _ = write!(
                o,
                "role:slave\r\nmaster_host:{}\r\nmaster_port:{}\r\nmaster_link_status:{}\r\nmaster_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:{}\r\nslave_read_repl_offset:{}\r\nslave_repl_offset:{}\r\nslave_priority:100\r\nslave_read_only:{}\r\nreplica_announced:1\r\n",
                m.host,
                m.port,
                if up { "up" } else { "down" },
                ago,
                g().syncing.load(Ordering::Relaxed) as u8,
                g().read_offset.load(Ordering::Relaxed).max(st.offset),
                st.offset,
                g().read_only_cfg.load(Ordering::Relaxed) as u8,
            );
        }
        None => {
            let _ = write!(o, "role:master\r\n");
        }
    }
    let reps = replicas();
    let _ = write!(o, "connected_slaves:{}\r\n", reps.len());
    let now = now_ms();
    for (i, r) in reps.iter().enumerate() {
        let _ = write!(
            o,
            "slave{i}:ip={},port={},state={},offset={},lag={}\r\n",
            r.ip,
            r.port,
            if r.online.load(Ordering::Relaxed) {
                "online"
            } else {
                "wait_bgsave"
            },
            r.ack.load(Ordering::Relaxed),
            now.saturating_sub(r.last_ack_ms.load(Ordering::Relaxed)) / 1000
        );
    }
    let _ = write!(
        o,
        "master_failover_state:no-failover\r\nmaster_replid:{}\r\nmaster_replid2:{}\r\nmaster_repl_offset:{}\r\nsecond_repl_offset:{}\r\nrepl_backlog_active:{}\r\nrepl_backlog_size:{}\r\nrepl_backlog_first_byte_offset:{}\r\nrepl_backlog_histlen:{}\r\n\r\n",
        st.replid,
        st.replid2,
        st.offset,
        st.second_offset,
        st.backlog_active as u8,
        st.backlog_size,
        st.backlog_first_byte,
        st.backlog_histlen,
    );
}

/// INFO stats lines about synchronisations.
pub fn stats_lines(o: &mut String) {
    let _ = write!(
        o,
        "sync_full:{}\r\nsync_partial_ok:{}\r\nsync_partial_err:{}\r\n",
        g().sync_full.load(Ordering::Relaxed),
        g().sync_partial_ok.load(Ordering::Relaxed),
        g().sync_partial_err.load(Ordering::Relaxed),
    );
}

/// `ROLE` (Redis 7 shapes).
pub fn role(b: &mut BytesMut) {
    let st = prop::log().state();
    match master() {
        Some(m) => {
            encode::array(b, 5);
            encode::bulk(b, b"slave");
            encode::bulk(b, m.host.as_bytes());
            encode::int(b, m.port as i64);
            let state = if g().link_up.load(Ordering::Relaxed) {
                "connected"
            } else if g().syncing.load(Ordering::Relaxed) {
                "sync"
            } else {
                "connect"
            };
            encode::bulk(b, state.as_bytes());
            encode::int(b, st.offset as i64);
        }
        None => {
            let reps = replicas();
            encode::array(b, 3);
            encode::bulk(b, b"master");
            encode::int(b, st.offset as i64);
            encode::array(b, reps.len());
            for r in reps {
                encode::array(b, 3);
                encode::bulk(b, r.ip.as_bytes());
                encode::bulk(b, r.port.to_string().as_bytes());
                encode::bulk(b, r.ack.load(Ordering::Relaxed).to_string().as_bytes());
            }
        }
    }
}
