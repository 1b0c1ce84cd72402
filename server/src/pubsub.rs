//! Pub/sub: SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBLISH, PUBSUB, and sharded
//! pub/sub: SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH (as on a Redis 7 without cluster mode: shard
//! channels are a namespace of their own, with `smessage` deliveries and their own counts).
//!
//! Each core keeps a registry (thread-local: a core is one thread) of its own connections'
//! subscriptions: channel → mailboxes, and a list of (pattern, mailbox). PUBLISH runs a delivery on
//! every core (`Core::broadcast`) and sums the receivers; it waits for every core before replying,
//! so one publisher's messages reach every subscriber in publish order.
//!
//! A subscriber's [`Mailbox`] is a queue its connection fiber drains and writes while it also reads
//! the socket. A mailbox holding more than the pub/sub output limit (`client-output-buffer-limit
//! pubsub`, 32 MB hard by default) is closed, and its connection dropped, instead of growing.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use hashbrown::{HashMap, HashSet};
use resp::{encode, Args, Proto};

use crate::core::Core;
use crate::glob;

/// Redis's default hard `client-output-buffer-limit pubsub`.
pub const OUTPUT_LIMIT: usize = 32 * 1024 * 1024;

/// `client-output-buffer-limit` classes in Redis's order: normal, slave, pubsub.
const CLASSES: [&str; 3] = ["normal", "slave", "pubsub"];

/// Per class: hard limit, soft limit (bytes, 0: none) and soft seconds. Only the pubsub class is
/// enforced here (subscriber mailboxes); the others are kept for CONFIG GET (see docs/).
static LIMITS: [[AtomicU64; 3]; 3] = [
    [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
    [
        AtomicU64::new(256 << 20),
        AtomicU64::new(64 << 20),
        AtomicU64::new(60),
    ],
    [
        AtomicU64::new(OUTPUT_LIMIT as u64),
        AtomicU64::new(8 << 20),
        AtomicU64::new(60),
    ],
];

/// Parse a `client-output-buffer-limit` value: `<class> <hard> <soft> <seconds>` repeated
/// (`replica` is an alias of `slave`; sizes take Redis's memory units).
pub fn parse_output_limits(v: &str) -> Option<Vec<(usize, [u64; 3])>> {
    let w: Vec<&str> = v.split_whitespace().collect();
    if w.len() % 4 != 0 {
        return None;
    }
    w.chunks(4)
        .map(|c| {
            let class = match c[0].to_ascii_lowercase().as_str() {
                "normal" => 0,
                "slave" | "replica" => 1,
                "pubsub" => 2,
                _ => return None,
            };
            let hard = crate::config::parse_memory(c[1])? as u64;
            let soft = crate::config::parse_memory(c[2])? as u64;
            let secs = c[3].parse::<u64>().ok()?;
            Some((class, [hard, soft, secs]))
        })
        .collect()
}

/// Apply parsed limits (classes not named keep their values).
pub fn set_output_limits(l: &[(usize, [u64; 3])]) {
    for (class, vals) in l {
        for (a, v) in LIMITS[*class].iter().zip(vals) {
            a.store(*v, Ordering::Relaxed);
        }
    }
}

/// The value CONFIG GET shows, every class in Redis's order and format.
pub fn show_output_limits() -> String {
    CLASSES
        .iter()
        .zip(&LIMITS)
        .map(|(n, l)| {
            let v: Vec<String> = l
                .iter()
                .map(|a| a.load(Ordering::Relaxed).to_string())
                .collect();
            format!("{n} {}", v.join(" "))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One message waiting for a subscriber.
enum Msg {
    Message(Bytes, Bytes),
    PMessage(Bytes, Bytes, Bytes),
    SMessage(Bytes, Bytes),
}

/// A subscribed connection's queue of messages.
pub struct Mailbox {
    id: u64,
    queue: RefCell<VecDeque<Msg>>,
    bytes: Cell<usize>,
    closed: Cell<bool>,
    waker: RefCell<Option<Waker>>,
    /// Since when the queue has been over the soft limit.
    soft_since: Cell<Option<Instant>>,
}

impl Mailbox {
    fn push(&self, m: Msg, size: usize) {
        if self.closed.get() {
            return;
        }
        let b = self.bytes.get() + size;
        let [hard, soft, secs] = [0, 1, 2].map(|i| LIMITS[2][i].load(Ordering::Relaxed));
        let over_soft = soft > 0 && b as u64 > soft && {
            let since = self.soft_since.get().unwrap_or_else(Instant::now);
            self.soft_since.set(Some(since));
            since.elapsed().as_secs() >= secs
        };
        if !(soft > 0 && b as u64 > soft) {
            self.soft_since.set(None);
        }
        if (hard > 0 && b as u64 > hard) || over_soft {
            tracing::warn!(
                client = self.id,
                "closing subscriber over the pubsub output buffer limit"
            );
            self.closed.set(true);
            self.queue.borrow_mut().clear();
            self.bytes.set(0);
            self.soft_since.set(None);
        } else {
            self.bytes.set(b);
            self.queue.borrow_mut().push_back(m);
        }
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Whether the mailbox overflowed (the connection must close).
    pub fn closed(&self) -> bool {
        self.closed.get()
    }

    /// Wait until a message is queued or the mailbox closed.
    pub async fn ready(&self) {
        std::future::poll_fn(|cx| {
            if self.closed.get() || !self.queue.borrow().is_empty() {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Wait until the mailbox is closed for overflow.
    pub async fn wait_closed(&self) {
        std::future::poll_fn(|cx| {
            if self.closed.get() {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Encode every queued message into `out`.
    pub fn drain(&self, proto: Proto, out: &mut BytesMut) {
        let mut q = self.queue.borrow_mut();
        for m in q.drain(..) {
            match m {
                Msg::Message(ch, payload) => {
                    encode::push(out, 3, proto);
                    encode::bulk(out, b"message");
                    encode::bulk(out, &ch);
                    encode::bulk(out, &payload);
                }
                Msg::SMessage(ch, payload) => {
                    encode::push(out, 3, proto);
                    encode::bulk(out, b"smessage");
                    encode::bulk(out, &ch);
                    encode::bulk(out, &payload);
                }
                Msg::PMessage(pat, ch, payload) => {
                    encode::push(out, 4, proto);
                    encode::bulk(out, b"pmessage");
                    encode::bulk(out, &pat);
                    encode::bulk(out, &ch);
                    encode::bulk(out, &payload);
                }
            }
        }
        self.bytes.set(0);
    }
}

#[derive(Default)]
struct Registry {
    channels: HashMap<Bytes, Vec<Rc<Mailbox>>>,
    patterns: Vec<(Bytes, Rc<Mailbox>)>,
    /// Shard channels (SSUBSCRIBE).
    shard: HashMap<Bytes, Vec<Rc<Mailbox>>>,
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
}

/// How many subscriptions every core holds, per channel and per pattern: `PUBLISH` from a
/// script must answer its receiver count without waiting for the other cores. Changed on
/// (un)subscribe only.
#[derive(Default)]
struct Directory {
    channels: HashMap<Bytes, usize>,
    patterns: HashMap<Bytes, usize>,
    shard: HashMap<Bytes, usize>,
}

static DIRECTORY: std::sync::LazyLock<std::sync::Mutex<Directory>> =
    std::sync::LazyLock::new(Default::default);

/// Which namespace a subscription is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Space {
    Channel,
    Pattern,
    Shard,
}

fn directory(space: Space, name: &Bytes, add: bool) {
    let Ok(mut d) = DIRECTORY.lock() else { return };
    let map = match space {
        Space::Channel => &mut d.channels,
        Space::Pattern => &mut d.patterns,
        Space::Shard => &mut d.shard,
    };
    if add {
        *map.entry(name.clone()).or_default() += 1;
    } else if let Some(n) = map.get_mut(name) {
        *n -= 1;
        if *n == 0 {
            map.remove(name);
        }
    }
}

/// INFO stats lines: distinct channels, patterns and shard channels with a subscriber, on every
/// core, as Redis counts them.
pub fn stats_lines(o: &mut String) {
    use std::fmt::Write;
    let (c, p, s) = DIRECTORY.lock().map_or((0, 0, 0), |d| {
        (d.channels.len(), d.patterns.len(), d.shard.len())
    });
    let _ = write!(
        o,
        "pubsub_channels:{c}\r\npubsub_patterns:{p}\r\npubsubshard_channels:{s}\r\n"
    );
}

/// `PUBLISH` from a script: the message reaches every core's subscribers right after the
/// script, in order with keyspace events; the reply is the number of subscriptions that match
/// now, on every core.
pub fn publish_from_script(channel: &Bytes, payload: &Bytes) -> usize {
    let n = DIRECTORY.lock().map_or(0, |d| {
        d.channels.get(channel).copied().unwrap_or(0)
            + d.patterns
                .iter()
                .filter(|(p, _)| glob::matches(p, channel, false))
                .map(|(_, n)| n)
                .sum::<usize>()
    });
    crate::notify::queue(channel.clone(), payload.clone(), false);
    n
}

/// `SPUBLISH` from a script, as [`publish_from_script`] for shard channels.
pub fn spublish_from_script(channel: &Bytes, payload: &Bytes) -> usize {
    let n = DIRECTORY
        .lock()
        .map_or(0, |d| d.shard.get(channel).copied().unwrap_or(0));
    crate::notify::queue(channel.clone(), payload.clone(), true);
    n
}

/// Deliver a message to this core's subscribers of shard channel `channel`; returns how many
/// received it.
pub fn deliver_shard(channel: &Bytes, payload: &Bytes) -> usize {
    REGISTRY.with(|r| {
        let r = r.borrow();
        let Some(subs) = r.shard.get(channel) else {
            return 0;
        };
        let size = channel.len() + payload.len() + 32;
        for s in subs {
            s.push(Msg::SMessage(channel.clone(), payload.clone()), size);
        }
        subs.len()
    })
}

/// Deliver a message to this core's subscribers; returns how many received it.
pub fn deliver(channel: &Bytes, payload: &Bytes) -> usize {
    REGISTRY.with(|r| {
        let r = r.borrow();
        let mut n = 0;
        if let Some(subs) = r.channels.get(channel) {
            let size = channel.len() + payload.len() + 32;
            for s in subs {
                s.push(Msg::Message(channel.clone(), payload.clone()), size);
                n += 1;
            }
        }
        for (pat, s) in &r.patterns {
            if glob::matches(pat, channel, false) {
                let size = pat.len() + channel.len() + payload.len() + 48;
                s.push(
                    Msg::PMessage(pat.clone(), channel.clone(), payload.clone()),
                    size,
                );
                n += 1;
            }
        }
        n
    })
}

/// A connection's subscriptions.
#[derive(Default)]
pub struct PubSubState {
    mailbox: Option<Rc<Mailbox>>,
    channels: Vec<Bytes>,
    patterns: Vec<Bytes>,
    shard: Vec<Bytes>,
}

impl PubSubState {
    /// Number of channels and patterns subscribed (the count in (P)SUBSCRIBE's replies).
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Number of shard channels subscribed (the count in SSUBSCRIBE's replies).
    pub fn shard_count(&self) -> usize {
        self.shard.len()
    }

    /// Channels, patterns and shard channels subscribed (CLIENT LIST).
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.channels.len(), self.patterns.len(), self.shard.len())
    }

    /// Whether the connection is subscribed to anything (RESP2's subscribed mode).
    pub fn subscribed(&self) -> bool {
        self.count() + self.shard_count() > 0
    }

    /// The mailbox while subscribed to anything.
    pub fn mailbox(&self) -> Option<&Rc<Mailbox>> {
        if self.subscribed() {
            self.mailbox.as_ref()
        } else {
            None
        }
    }

    fn mailbox_for(&mut self, id: u64) -> Rc<Mailbox> {
        self.mailbox
            .get_or_insert_with(|| {
                Rc::new(Mailbox {
                    id,
                    queue: RefCell::new(VecDeque::new()),
                    bytes: Cell::new(0),
                    closed: Cell::new(false),
                    waker: RefCell::new(None),
                    soft_since: Cell::new(None),
                })
            })
            .clone()
    }

    /// Leave every channel and pattern (RESET, disconnect).
    pub fn clear(&mut self) {
        let chans = std::mem::take(&mut self.channels);
        let pats = std::mem::take(&mut self.patterns);
        let shard = std::mem::take(&mut self.shard);
        if let Some(mb) = &self.mailbox {
            for c in &chans {
                remove_channel(Space::Channel, c, mb.id);
            }
            for c in &shard {
                remove_channel(Space::Shard, c, mb.id);
            }
            for p in &pats {
                remove_pattern(p, mb.id);
            }
        }
    }
}

fn remove_channel(space: Space, c: &Bytes, id: u64) {
    REGISTRY.with(|r| {
        let mut r = r.borrow_mut();
        let map = if space == Space::Shard {
            &mut r.shard
        } else {
            &mut r.channels
        };
        if let Some(v) = map.get_mut(c) {
            let n = v.len();
            v.retain(|m| m.id != id);
            for _ in v.len()..n {
                directory(space, c, false);
            }
            if v.is_empty() {
                map.remove(c);
            }
        }
    })
}

fn remove_pattern(p: &Bytes, id: u64) {
    REGISTRY.with(|r| {
        let mut r = r.borrow_mut();
        let n = r.patterns.len();
        r.patterns.retain(|(q, m)| !(q == p && m.id == id));
        for _ in r.patterns.len()..n {
            directory(Space::Pattern, p, false);
        }
    })
}

/// Whether a command may run while the connection is subscribed in RESP2.
pub fn allowed_when_subscribed(name: &str) -> bool {
    matches!(
        name,
        "subscribe"
            | "unsubscribe"
            | "psubscribe"
            | "punsubscribe"
            | "ssubscribe"
            | "sunsubscribe"
            | "ping"
            | "quit"
            | "reset"
    )
}

/// The RESP2 subscribed-mode error for command `name`.
pub fn not_allowed(name: &str) -> String {
    format!(
        "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
    )
}

fn ack(out: &mut BytesMut, proto: Proto, kind: &[u8], name: Option<&[u8]>, count: usize) {
    encode::push(out, 3, proto);
    encode::bulk(out, kind);
    match name {
        Some(n) => encode::bulk(out, n),
        None => encode::null(out, proto),
    }
    encode::int(out, count as i64);
}

/// Run a pub/sub command; appends its reply (or replies) to `out`.
pub async fn run(
    core: &Rc<Core>,
    ps: &mut PubSubState,
    client: u64,
    proto: Proto,
    name: &str,
    args: &Args,
    out: &mut BytesMut,
) {
    match name {
        "subscribe" | "ssubscribe" => {
            let space = if name == "ssubscribe" {
                Space::Shard
            } else {
                Space::Channel
            };
            let mb = ps.mailbox_for(client);
            for ch in &args[1..] {
                let list = if space == Space::Shard {
                    &mut ps.shard
                } else {
                    &mut ps.channels
                };
                if !list.contains(ch) {
                    list.push(ch.clone());
                    REGISTRY.with(|r| {
                        let mut r = r.borrow_mut();
                        let map = if space == Space::Shard {
                            &mut r.shard
                        } else {
                            &mut r.channels
                        };
                        map.entry(ch.clone()).or_default().push(mb.clone())
                    });
                    directory(space, ch, true);
                }
                let n = if space == Space::Shard {
                    ps.shard_count()
                } else {
                    ps.count()
                };
                ack(out, proto, name.as_bytes(), Some(ch), n);
            }
        }
        "psubscribe" => {
            let mb = ps.mailbox_for(client);
            for p in &args[1..] {
                if !ps.patterns.contains(p) {
                    ps.patterns.push(p.clone());
                    REGISTRY.with(|r| r.borrow_mut().patterns.push((p.clone(), mb.clone())));
                    directory(Space::Pattern, p, true);
                }
                ack(out, proto, b"psubscribe", Some(p), ps.count());
            }
        }
        "unsubscribe" | "punsubscribe" | "sunsubscribe" => {
            let space = match name {
                "punsubscribe" => Space::Pattern,
                "sunsubscribe" => Space::Shard,
                _ => Space::Channel,
            };
            let id = ps.mailbox.as_ref().map_or(0, |m| m.id);
            let count = |ps: &PubSubState| {
                if space == Space::Shard {
                    ps.shard_count()
                } else {
                    ps.count()
                }
            };
            let which: Vec<Bytes> = if args.len() > 1 {
                args[1..].to_vec()
            } else {
                match space {
                    Space::Channel => ps.channels.clone(),
                    Space::Pattern => ps.patterns.clone(),
                    Space::Shard => ps.shard.clone(),
                }
            };
            if which.is_empty() {
                ack(out, proto, name.as_bytes(), None, count(ps));
            }
            for c in which {
                let list = match space {
                    Space::Channel => &mut ps.channels,
                    Space::Pattern => &mut ps.patterns,
                    Space::Shard => &mut ps.shard,
                };
                if let Some(i) = list.iter().position(|x| *x == c) {
                    list.remove(i);
                    if space == Space::Pattern {
                        remove_pattern(&c, id);
                    } else {
                        remove_channel(space, &c, id);
                    }
                }
                ack(out, proto, name.as_bytes(), Some(&c), count(ps));
            }
        }
        "publish" | "spublish" => {
            let shard = name == "spublish";
            let (ch, payload) = (args[1].clone(), args[2].clone());
            let n: usize = core
                .broadcast(move |_| {
                    if shard {
                        deliver_shard(&ch, &payload)
                    } else {
                        deliver(&ch, &payload)
                    }
                })
                .await
                .into_iter()
                .sum();
            // Replicas deliver it to their own subscribers, as Redis's do (the AOF skips it).
            // In a transaction it goes ahead of the transaction's writes, not between them.
            crate::repl::prop::log().append_repl_only(&args[..3]);
            encode::int(out, n as i64);
        }
        "pubsub" => pubsub(core, args, out).await,
        _ => encode::error(out, &crate::conn::unknown_command(args)),
    }
}

async fn pubsub(core: &Rc<Core>, args: &Args, out: &mut BytesMut) {
    let sub = args[1].to_ascii_lowercase();
    match (sub.as_slice(), args.len()) {
        (b"channels" | b"shardchannels", 2 | 3) => {
            let shard = sub.as_slice() == b"shardchannels";
            let pat = args.get(2).cloned();
            let per: Vec<Vec<Bytes>> = core
                .broadcast(move |_| {
                    REGISTRY.with(|r| {
                        let r = r.borrow();
                        let map = if shard { &r.shard } else { &r.channels };
                        map.keys()
                            .filter(|c| pat.as_ref().is_none_or(|p| glob::matches(p, c, false)))
                            .cloned()
                            .collect()
                    })
                })
                .await;
            let all: HashSet<Bytes> = per.into_iter().flatten().collect();
            encode::array(out, all.len());
            for c in all {
                encode::bulk(out, &c);
            }
        }
        (b"numsub" | b"shardnumsub", _) => {
            let shard = sub.as_slice() == b"shardnumsub";
            let chans: Vec<Bytes> = args[2..].to_vec();
            let c2 = chans.clone();
            let per: Vec<Vec<usize>> = core
                .broadcast(move |_| {
                    REGISTRY.with(|r| {
                        let r = r.borrow();
                        let map = if shard { &r.shard } else { &r.channels };
                        c2.iter()
                            .map(|c| map.get(c).map_or(0, |v| v.len()))
                            .collect()
                    })
                })
                .await;
            // A flat array in RESP3 too, as Redis 7.0 answers.
            encode::array(out, 2 * chans.len());
            for (i, c) in chans.iter().enumerate() {
                encode::bulk(out, c);
                encode::int(out, per.iter().map(|v| v[i]).sum::<usize>() as i64);
            }
        }
        (b"numpat", 2) => {
            let per: Vec<Vec<Bytes>> = core
                .broadcast(|_| {
                    REGISTRY.with(|r| r.borrow().patterns.iter().map(|(p, _)| p.clone()).collect())
                })
                .await;
            let all: HashSet<Bytes> = per.into_iter().flatten().collect();
            encode::int(out, all.len() as i64);
        }
        (b"help", 2) => {
            let lines = [
                "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CHANNELS [<pattern>]",
                "    Return the currently active channels matching a <pattern> (default: '*').",
                "NUMPAT",
                "    Return number of subscriptions to patterns.",
                "NUMSUB [<channel> ...]",
                "    Return the number of subscribers for the specified channels, excluding",
                "    pattern subscriptions(default: no channels).",
                "SHARDCHANNELS [<pattern>]",
                "    Return the currently active shard level channels matching a <pattern> (default: '*').",
                "SHARDNUMSUB [<shardchannel> ...]",
                "    Return the number of subscribers for the specified shard level channel(s)",
                "HELP",
                "    Prints this help.",
            ];
            encode::help(out, &lines);
        }
        (b"channels" | b"shardchannels" | b"numpat" | b"help", _) => encode::error(
            out,
            &format!(
                "ERR wrong number of arguments for 'pubsub|{}' command",
                String::from_utf8_lossy(&sub)
            ),
        ),
        _ => encode::error(
            out,
            &format!(
                "ERR unknown subcommand '{}'. Try PUBSUB HELP.",
                String::from_utf8_lossy(&args[1])
            ),
        ),
    }
}
