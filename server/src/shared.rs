//! State shared by every core: configuration, the client registry, process-wide counters. None of
//! it is touched per command except through atomics.

use std::collections::BTreeMap;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU16, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What CLIENT LIST shows about a connection, shared between the connection and the registry.
#[derive(Debug)]
pub struct ClientInfo {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    /// The socket's descriptor; it changes when `CLIENT CORE` moves the connection.
    pub fd: AtomicI32,
    /// The core serving the connection.
    pub core: AtomicUsize,
    pub created: Instant,
    pub last_ms: AtomicU64,
    pub db: AtomicU8,
    /// The protocol (`HELLO 2|3`), for `resp=`.
    pub resp: AtomicU8,
    pub name: Mutex<String>,
    pub last_cmd: Mutex<&'static str>,
    pub killed: AtomicBool,
    /// Connected through the `unixsocket` (CLIENT LIST flag `U`).
    pub unix: bool,
    /// Channels, patterns and shard channels subscribed to, 21 bits each
    /// ([`ClientInfo::set_subs`]; CLIENT LIST `sub=`, `psub=`, `ssub=`, flag `P`).
    subs: AtomicU64,
    /// Between MULTI and EXEC/DISCARD (CLIENT LIST flag `x`).
    pub in_multi: AtomicBool,
    /// Waiting in a blocking command (CLIENT LIST flag `b`).
    pub blocked: AtomicBool,
}

/// One count of [`ClientInfo::set_subs`] (21 bits).
const SUBS_MASK: u64 = (1 << 21) - 1;

impl ClientInfo {
    /// A new client `id` served by core `core`: database 0, RESP2, no name.
    pub fn new(id: u64, addr: String, laddr: String, fd: i32, core: usize, unix: bool) -> Self {
        ClientInfo {
            id,
            addr,
            laddr,
            fd: fd.into(),
            core: core.into(),
            created: Instant::now(),
            last_ms: now_ms().into(),
            db: 0.into(),
            resp: 2.into(),
            name: Mutex::new(String::new()),
            last_cmd: Mutex::new("NULL"),
            killed: false.into(),
            unix,
            subs: 0.into(),
            in_multi: false.into(),
            blocked: false.into(),
        }
    }

    /// Notes how many channels, patterns and shard channels the client is subscribed to.
    pub fn set_subs(&self, (channels, patterns, shard): (usize, usize, usize)) {
        let f = |n: usize| (n as u64).min(SUBS_MASK);
        self.subs.store(
            f(channels) << 42 | f(patterns) << 21 | f(shard),
            Ordering::Relaxed,
        );
    }

    /// Close the connection from any thread: shut the socket down so its pending read returns.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        // SAFETY: shutdown(2) on a descriptor we own; harmless if it was already closed.
        unsafe {
            libc::shutdown(self.fd.load(Ordering::Relaxed), libc::SHUT_RDWR);
        }
    }

    /// One line of CLIENT LIST.
    pub fn line(&self) -> String {
        let now = now_ms();
        let subs = self.subs.load(Ordering::Relaxed);
        // Redis's flag letters, in its order (P, x, b, U), N for none.
        let mut flags = String::new();
        if subs != 0 {
            flags.push('P');
        }
        if self.in_multi.load(Ordering::Relaxed) {
            flags.push('x');
        }
        if self.blocked.load(Ordering::Relaxed) {
            flags.push('b');
        }
        if self.unix {
            flags.push('U');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd.load(Ordering::Relaxed),
            self.name.lock().map(|n| n.clone()).unwrap_or_default(),
            self.created.elapsed().as_secs(),
            now.saturating_sub(self.last_ms.load(Ordering::Relaxed)) / 1000,
            flags,
            self.db.load(Ordering::Relaxed),
            subs >> 42,
            (subs >> 21) & SUBS_MASK,
            subs & SUBS_MASK,
            self.last_cmd.lock().map(|c| *c).unwrap_or("NULL"),
            self.resp.load(Ordering::Relaxed),
        )
    }
}

/// Process-wide state.
pub struct Shared {
    pub ncores: usize,
    pub config: RwLock<Config>,
    pub started: Instant,
    pub run_id: String,
    pub clients: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
    pub connected: AtomicUsize,
    pub next_client_id: AtomicU64,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub total_commands: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    pub shutdown: AtomicBool,
    pub tcp_port: AtomicUsize,
    /// Which core owns each slot (starts as `slot % ncores`; changes only by an atomic slot move).
    slot_owner: Vec<AtomicU16>,
    /// Owner changes, seqlock style: odd while one is being recorded (see [`Shared::move_seq`]).
    move_seq: AtomicU64,
}

impl Shared {
    /// Shared state for `ncores` cores.
    pub fn new(ncores: usize, config: Config) -> Shared {
        let run_id: String = (0..40)
            .map(|_| format!("{:x}", rand::random::<u8>() % 16))
            .collect();
        Shared {
            ncores,
            config: RwLock::new(config),
            started: Instant::now(),
            run_id,
            clients: Mutex::new(BTreeMap::new()),
            connected: AtomicUsize::new(0),
            next_client_id: AtomicU64::new(1),
            total_connections: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            total_commands: AtomicU64::new(0),
            net_input_bytes: AtomicU64::new(0),
            net_output_bytes: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            tcp_port: AtomicUsize::new(0),
            slot_owner: (0..resp::MAX_SLOTS)
                .map(|s| AtomicU16::new((s % ncores) as u16))
                .collect(),
            move_seq: AtomicU64::new(0),
        }
    }

    /// A copy of the configuration (cheap enough for connection setup and admin commands).
    pub fn config(&self) -> Config {
        self.config.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// The core that owns `slot`. A routing hint only: the shard re-checks ownership when it runs
    /// the command (`Shard::owns`), so a stale answer costs a re-dispatch, never a wrong result.
    #[inline]
    pub fn owner(&self, slot: u16) -> usize {
        self.slot_owner[slot as usize].load(Ordering::SeqCst) as usize
    }

    /// Record a slot's new owner (after its table moved there; `slotmove.rs`).
    pub fn set_owner(&self, slot: u16, core: usize) {
        self.move_seq.fetch_add(1, Ordering::SeqCst);
        self.slot_owner[slot as usize].store(core as u16, Ordering::SeqCst);
        self.move_seq.fetch_add(1, Ordering::SeqCst);
    }

    /// The owner-change sequence: even when no change is being recorded. Two equal even readings
    /// around a series of [`Shared::owner`] calls prove no owner changed in between, so commands
    /// routed by them for the same slot went to the same core (the connection's ordering rule).
    #[inline]
    pub fn move_seq(&self) -> u64 {
        self.move_seq.load(Ordering::SeqCst)
    }
}
