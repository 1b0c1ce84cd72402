//! Pub/sub through the proxy (Codis 3.2 refused it).
//!
//! **One home.** Channels are not keys: a message published on one server reaches only that
//! server's subscribers. So every channel of the cluster lives on one server, the *home*: the
//! master of the lowest-numbered group that owns slots (`SlotTable::pubsub_home`), the same on
//! every proxy that has the same topology. `PUBLISH`, `SPUBLISH` and `PUBSUB` go there on the
//! shared backend connections; patterns work across every channel, as on one Redis. Shard
//! channels (`SSUBSCRIBE`) live there too, as on a Redis without cluster mode: a namespace of
//! their own, with no same-slot rule.
//!
//! **A connection per subscriber.** A session that subscribes gets a connection of its own to the
//! home (the shared pipelines cannot carry one client's subscriptions), kept until its last
//! subscription ends; the session then returns to normal use. While subscribed, a RESP2 client
//! may send only (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PING and QUIT (Redis's rule and error); a RESP3
//! client may also send ordinary commands, routed as usual, except those that change the
//! session's mode.
//!
//! **Order.** Replies leave in request order: [`Subscriber`] queues what each request expects
//! (so many confirmation frames from the home, or a reply made here) and lets messages through
//! as they come, between replies.
//!
//! **When the home changes** (its group's master is replaced, or the group loses its slots), the
//! session dials the new home once nothing is in flight and subscribes again to every channel
//! and pattern it had, swallowing the confirmations; messages published meanwhile are lost, as
//! pub/sub promises no more than that. If the home connection breaks, the client's connection is
//! closed, so the client library reconnects and subscribes again (as it would after a Redis
//! restart).

use std::collections::{BTreeSet, VecDeque};

use bytes::{Bytes, BytesMut};
use resp::encode::{self, Proto};

/// What the next reply owed to the client is.
#[derive(Debug)]
enum Owed {
    /// This many frames from the home connection.
    Home(usize),
    /// This many frames from the home connection that the client never asked for (a
    /// re-subscription after the home changed).
    Swallow(usize),
    /// A reply made by the proxy.
    Local(Bytes),
}

/// The pub/sub commands a subscribed session sends to its home connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sub {
    Subscribe,
    Psubscribe,
    Unsubscribe,
    Punsubscribe,
    Ssubscribe,
    Sunsubscribe,
}

impl Sub {
    /// The pub/sub command `name` names, if any.
    pub fn of(name: &[u8]) -> Option<Sub> {
        [
            (&b"subscribe"[..], Sub::Subscribe),
            (b"psubscribe", Sub::Psubscribe),
            (b"unsubscribe", Sub::Unsubscribe),
            (b"punsubscribe", Sub::Punsubscribe),
            (b"ssubscribe", Sub::Ssubscribe),
            (b"sunsubscribe", Sub::Sunsubscribe),
        ]
        .into_iter()
        .find(|(n, _)| name.eq_ignore_ascii_case(n))
        .map(|(_, s)| s)
    }

    /// Which of a subscriber's sets the command changes: 0 channels, 1 patterns, 2 shard
    /// channels.
    fn set(self) -> usize {
        match self {
            Sub::Subscribe | Sub::Unsubscribe => 0,
            Sub::Psubscribe | Sub::Punsubscribe => 1,
            Sub::Ssubscribe | Sub::Sunsubscribe => 2,
        }
    }

    fn adds(self) -> bool {
        matches!(self, Sub::Subscribe | Sub::Psubscribe | Sub::Ssubscribe)
    }
}

/// A subscribed session's bookkeeping: its channels and patterns (as the home confirmed them, and
/// as they will be once every request sent is answered) and the replies it owes, in order.
#[derive(Default, Debug)]
pub struct Subscriber {
    /// Channels, patterns and shard channels ([`Sub::set`]) as the home confirmed them.
    confirmed: [BTreeSet<Bytes>; 3],
    /// The same after every request sent so far (to count an argument-less UNSUBSCRIBE's
    /// replies).
    sent: [BTreeSet<Bytes>; 3],
    owed: VecDeque<Owed>,
}

impl Subscriber {
    /// Notes a pub/sub request `args` sent to the home: it is owed one confirmation per argument
    /// (per subscription when an unsubscribe names none, at least one).
    pub fn sent(&mut self, sub: Sub, args: &[Bytes]) {
        let set = &mut self.sent[sub.set()];
        let frames = if sub.adds() {
            set.extend(args[1..].iter().cloned());
            args.len() - 1
        } else if args.len() == 1 {
            let n = set.len().max(1);
            set.clear();
            n
        } else {
            for a in &args[1..] {
                set.remove(a);
            }
            args.len() - 1
        };
        self.owe_home(frames);
    }

    /// Notes another request sent to the home that is answered with one frame (`PING`).
    pub fn owe_home(&mut self, frames: usize) {
        if frames > 0 {
            self.owed.push_back(Owed::Home(frames));
        }
    }

    /// Queues a reply made here, to leave after everything owed before it.
    pub fn owe_local(&mut self, reply: Bytes) {
        self.owed.push_back(Owed::Local(reply));
    }

    /// Channels, patterns and shard channels subscribed to, as the home confirmed them.
    pub fn counts(&self) -> (usize, usize, usize) {
        let [c, p, s] = &self.confirmed;
        (c.len(), p.len(), s.len())
    }

    /// Whether the requests sent so far leave no subscription: the client is leaving subscribed
    /// mode, and its next requests wait until it has (as on Redis, where they run unsubscribed).
    pub fn leaving(&self) -> bool {
        self.sent.iter().all(BTreeSet::is_empty)
    }

    /// Whether a reply is still owed.
    pub fn busy(&self) -> bool {
        !self.owed.is_empty()
    }

    /// Whether the session has no subscription left and owes nothing: it leaves subscribed mode.
    pub fn done(&self) -> bool {
        self.owed.is_empty()
            && self.confirmed.iter().all(BTreeSet::is_empty)
            && self.sent.iter().all(BTreeSet::is_empty)
    }

    /// A new home connection: subscribes again to everything confirmed so far (the requests to
    /// send there), and owes their confirmations to nobody. Only call it when nothing is owed.
    pub fn resubscribe(&mut self) -> Vec<Vec<Bytes>> {
        let mut reqs = Vec::new();
        for (name, set) in ["SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE"]
            .into_iter()
            .zip(&self.confirmed)
        {
            if !set.is_empty() {
                let mut r = vec![Bytes::from_static(name.as_bytes())];
                r.extend(set.iter().cloned());
                self.owed.push_back(Owed::Swallow(set.len()));
                reqs.push(r);
            }
        }
        reqs
    }

    /// Replies made here that are due now (nothing from the home is owed before them).
    pub fn flush_local(&mut self, out: &mut BytesMut) {
        while let Some(Owed::Local(_)) = self.owed.front() {
            if let Some(Owed::Local(r)) = self.owed.pop_front() {
                out.extend_from_slice(&r);
            }
        }
    }

    /// One frame from the home: a message goes out at once, a confirmation or reply when it is
    /// due, and local replies queued behind it follow. Err: the home sent a reply nobody asked for.
    pub fn from_home(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), String> {
        let (kind, name) = classify(frame);
        if kind == Kind::Message {
            out.extend_from_slice(frame);
            return Ok(());
        }
        if let (Some(sub), Some(n)) = (kind.sub(), name) {
            let set = &mut self.confirmed[sub.set()];
            if sub.adds() {
                set.insert(Bytes::copy_from_slice(n));
            } else {
                set.remove(n);
            }
        }
        self.flush_local(out);
        let swallow = match self.owed.front_mut() {
            Some(Owed::Home(n)) => {
                *n -= 1;
                let last = *n == 0;
                out.extend_from_slice(frame);
                if last {
                    self.owed.pop_front();
                }
                false
            }
            Some(Owed::Swallow(n)) => {
                *n -= 1;
                *n == 0
            }
            _ => {
                let head = String::from_utf8_lossy(&frame[..frame.len().min(64)]).into_owned();
                return Err(format!("unexpected reply from the pub/sub home: {head:?}"));
            }
        };
        if swallow {
            self.owed.pop_front();
        }
        self.flush_local(out);
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `message` / `pmessage` / `smessage` (RESP2 array or RESP3 push).
    Message,
    /// A (P|S)(UN)SUBSCRIBE confirmation.
    Confirm(Sub),
    /// Anything else (a PING's reply, an error).
    Other,
}

impl Kind {
    fn sub(self) -> Option<Sub> {
        match self {
            Kind::Confirm(s) => Some(s),
            _ => None,
        }
    }
}

/// What a frame from the home is, and for a confirmation its channel or pattern (None for the
/// null of an UNSUBSCRIBE that had nothing to drop).
fn classify(f: &[u8]) -> (Kind, Option<&[u8]>) {
    if !matches!(f.first(), Some(b'*' | b'>')) {
        return (Kind::Other, None);
    }
    let Some(mut rest) = line_end(f).map(|e| &f[e..]) else {
        return (Kind::Other, None);
    };
    let Some(first) = bulk(&mut rest) else {
        return (Kind::Other, None);
    };
    let kind = match first {
        b"message" | b"pmessage" | b"smessage" => Kind::Message,
        // The home sends these lower-case, as Redis does.
        _ => Sub::of(first).map_or(Kind::Other, Kind::Confirm),
    };
    let name = if kind.sub().is_some() {
        bulk(&mut rest)
    } else {
        None
    };
    (kind, name)
}

/// The index after the first CRLF.
fn line_end(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n').map(|i| i + 1)
}

/// Reads one bulk string off the front of `rest` (None for a null or anything else).
fn bulk<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let r: &'a [u8] = rest;
    if r.first() != Some(&b'$') {
        return None;
    }
    let e = line_end(r)?;
    let n = usize::try_from(resp::parse_i64(&r[1..e.checked_sub(2)?])?).ok()?;
    let body = r.get(e..e + n)?;
    *rest = r.get(e + n + 2..)?;
    Some(body)
}

/// Redis's reply to `(P|S)UNSUBSCRIBE` from a client that is not subscribed: one
/// confirmation per argument (one with a null name if none), each counting 0 subscriptions.
pub fn unsubscribed(sub: Sub, args: &[Bytes], proto: Proto, out: &mut BytesMut) {
    let kind: &[u8] = match sub.set() {
        0 => b"unsubscribe",
        1 => b"punsubscribe",
        _ => b"sunsubscribe",
    };
    if args.len() == 1 {
        encode::push(out, 3, proto);
        encode::bulk(out, kind);
        encode::null(out, proto);
        encode::int(out, 0);
        return;
    }
    for a in &args[1..] {
        encode::push(out, 3, proto);
        encode::bulk(out, kind);
        encode::bulk(out, a);
        encode::int(out, 0);
    }
}

/// Redis's refusal of a command a RESP2 client sends while subscribed.
pub fn not_allowed(name: &[u8]) -> String {
    format!(
        "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
        String::from_utf8_lossy(name).to_ascii_lowercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::args;

    fn confirm(kind: &str, name: &str, n: i64) -> Vec<u8> {
        format!(
            "*3\r\n${}\r\n{kind}\r\n${}\r\n{name}\r\n:{n}\r\n",
            kind.len(),
            name.len()
        )
        .into_bytes()
    }

    #[test]
    fn replies_in_order_messages_at_once() {
        let mut s = Subscriber::default();
        let mut out = BytesMut::new();
        s.sent(Sub::Subscribe, &args(&["SUBSCRIBE", "a", "b"]));
        s.owe_local(Bytes::from_static(b"-ERR local\r\n"));
        assert!(s.busy() && !s.done());
        s.from_home(&confirm("subscribe", "a", 1), &mut out)
            .unwrap();
        assert_eq!(&out[..], &confirm("subscribe", "a", 1)[..]);
        out.clear();
        // A message between the two confirmations goes out at once; the local error waits.
        let msg = b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n";
        s.from_home(msg, &mut out).unwrap();
        assert_eq!(&out[..], &msg[..]);
        out.clear();
        s.from_home(&confirm("subscribe", "b", 2), &mut out)
            .unwrap();
        let mut want = confirm("subscribe", "b", 2);
        want.extend_from_slice(b"-ERR local\r\n");
        assert_eq!(&out[..], &want[..]);
        assert!(!s.busy() && !s.done());
        // UNSUBSCRIBE without names: one confirmation per channel, then out of subscribed mode.
        s.sent(Sub::Unsubscribe, &args(&["UNSUBSCRIBE"]));
        out.clear();
        s.from_home(&confirm("unsubscribe", "a", 1), &mut out)
            .unwrap();
        assert!(!s.done());
        s.from_home(&confirm("unsubscribe", "b", 0), &mut out)
            .unwrap();
        assert!(s.done());
        assert!(s.from_home(b"+PONG\r\n", &mut out).is_err());
    }

    #[test]
    fn resubscription_is_swallowed() {
        let mut s = Subscriber::default();
        let mut out = BytesMut::new();
        s.sent(Sub::Psubscribe, &args(&["PSUBSCRIBE", "n*"]));
        s.from_home(&confirm("psubscribe", "n*", 1), &mut out)
            .unwrap();
        s.sent(Sub::Ssubscribe, &args(&["SSUBSCRIBE", "s1"]));
        s.from_home(&confirm("ssubscribe", "s1", 1), &mut out)
            .unwrap();
        assert_eq!(s.counts(), (0, 1, 1));
        out.clear();
        let reqs = s.resubscribe();
        assert_eq!(
            reqs,
            vec![args(&["PSUBSCRIBE", "n*"]), args(&["SSUBSCRIBE", "s1"])]
        );
        s.owe_home(1);
        s.from_home(&confirm("psubscribe", "n*", 1), &mut out)
            .unwrap();
        s.from_home(&confirm("ssubscribe", "s1", 1), &mut out)
            .unwrap();
        assert!(out.is_empty());
        s.from_home(b"+PONG\r\n", &mut out).unwrap();
        assert_eq!(&out[..], b"+PONG\r\n");
        // RESP3 push messages are messages too.
        out.clear();
        let push = b">4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$2\r\nn1\r\n$1\r\nx\r\n";
        s.from_home(push, &mut out).unwrap();
        assert_eq!(&out[..], &push[..]);
    }

    #[test]
    fn not_subscribed_unsubscribe() {
        let mut out = BytesMut::new();
        unsubscribed(
            Sub::Unsubscribe,
            &args(&["UNSUBSCRIBE"]),
            Proto::Resp2,
            &mut out,
        );
        assert_eq!(&out[..], b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
        out.clear();
        unsubscribed(
            Sub::Punsubscribe,
            &args(&["PUNSUBSCRIBE", "a"]),
            Proto::Resp3,
            &mut out,
        );
        assert_eq!(&out[..], b">3\r\n$12\r\npunsubscribe\r\n$1\r\na\r\n:0\r\n");
        out.clear();
        unsubscribed(
            Sub::Sunsubscribe,
            &args(&["SUNSUBSCRIBE"]),
            Proto::Resp2,
            &mut out,
        );
        assert_eq!(&out[..], b"*3\r\n$12\r\nsunsubscribe\r\n$-1\r\n:0\r\n");
    }
}
