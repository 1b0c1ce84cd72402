//! EVALSHA on any group: the scripts this core has seen go to a server that lacks them.
//!
//! A Lua script lives in one server's script cache. Through the proxy, `EVAL body` loads it on
//! the group that owns the first key only, and a later `EVALSHA sha` whose key lives on another
//! group got `NOSCRIPT` there (so did Codis). `SCRIPT LOAD` now reaches every group master, which
//! is what most client libraries do on `NOSCRIPT`; a client that runs `EVAL` once and then only
//! `EVALSHA` (or that reads from replicas, where `SCRIPT LOAD` does not go) still failed.
//!
//! So each core remembers the bodies of the scripts its sessions sent (`EVAL`, `EVAL_RO`,
//! `SCRIPT LOAD`), by SHA1, and which servers it has sent each one to. An `EVALSHA` (or
//! `EVALSHA_RO`) of a known script, bound for a server that has not seen it from this core, is
//! sent as the `EVAL` (`EVAL_RO`) of its body instead: the server loads it and runs it, as the
//! `EVALSHA` would have run there. The request is rewritten before it is sent, so it keeps its
//! place among the session's other requests. Later `EVALSHA`s to that server go as they are.
//!
//! What this does not change:
//! - An unknown SHA1 is forwarded as is, and a server that lost its scripts (restarted, or
//!   flushed by someone else) answers `NOSCRIPT` as Redis would; clients load the script again.
//! - `SCRIPT FLUSH` through the proxy forgets every core's scripts, so `EVALSHA` answers
//!   `NOSCRIPT` afterwards, as Redis does.
//! - `SCRIPT EXISTS` says 1 for a script every group has, or one this core knows: the answer
//!   tells whether `EVALSHA` of it runs, as it does on one Redis.
//! - The bodies are learned when they are sent, before their reply (an `EVAL` whose key count
//!   Redis refuses is not learned: Redis does not load it). A body that does not compile
//!   is learned too, and its `EVALSHA` to another server gets the compile error where Redis would
//!   say `NOSCRIPT`. Both are errors.
//!
//! A core keeps at most [`MAX_SCRIPTS`] scripts or [`MAX_BYTES`] of bodies; past that it forgets
//! them all and starts again (this is a cache: forgetting only brings back `NOSCRIPT`).

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use sha1::{Digest, Sha1};

/// Scripts one core remembers at most.
pub const MAX_SCRIPTS: usize = 4096;
/// Bytes of script bodies one core remembers at most.
pub const MAX_BYTES: usize = 16 << 20;

/// A script's SHA1 in lowercase hex, as Redis names it.
pub type Sha = [u8; 40];

/// What a scripting command carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `EVAL` or `EVAL_RO`: the body in `args[1]`.
    Eval,
    /// `EVALSHA` or `EVALSHA_RO`: the SHA1 in `args[1]`.
    EvalSha,
}

/// Bumped by `SCRIPT FLUSH` through any core: every core forgets its scripts when it sees a new
/// value.
#[derive(Default)]
pub struct Flushes(AtomicU64);

impl Flushes {
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One core's scripts.
#[derive(Default)]
pub struct Scripts {
    /// The [`Flushes`] value these scripts were learned under.
    epoch: u64,
    bodies: HashMap<Sha, Bytes, ahash::RandomState>,
    bytes: usize,
    /// Servers (by address) this core has sent each script to.
    sent: HashMap<Rc<str>, HashSet<Sha, ahash::RandomState>, ahash::RandomState>,
}

/// The SHA1 of `body` in lowercase hex.
pub fn sha1_hex(body: &[u8]) -> Sha {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha1::digest(body);
    let mut out = [0u8; 40];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    out
}

/// `arg` as a SHA1 name (Redis compares them case-insensitively), if it has the length of one.
fn sha_arg(arg: &[u8]) -> Option<Sha> {
    let mut sha: Sha = arg.try_into().ok()?;
    sha.make_ascii_lowercase();
    Some(sha)
}

impl Scripts {
    /// Forgets everything if a `SCRIPT FLUSH` happened since the last call.
    fn sync(&mut self, flushes: &Flushes) {
        let now = flushes.get();
        if now != self.epoch {
            self.clear();
            self.epoch = now;
        }
    }

    fn clear(&mut self) {
        self.bodies.clear();
        self.sent.clear();
        self.bytes = 0;
    }

    /// Remembers `body` (from `EVAL` or `SCRIPT LOAD`); returns its SHA1.
    pub fn learn(&mut self, flushes: &Flushes, body: &Bytes) -> Sha {
        self.sync(flushes);
        let sha = sha1_hex(body);
        if !self.bodies.contains_key(&sha) {
            if self.bodies.len() >= MAX_SCRIPTS || self.bytes + body.len() > MAX_BYTES {
                self.clear();
            }
            if body.len() <= MAX_BYTES {
                self.bytes += body.len();
                // A copy: `body` may be a slice of a large client buffer.
                self.bodies.insert(sha, Bytes::copy_from_slice(body));
            }
        }
        sha
    }

    /// The request to send for `call` with `args` to the server at `addr` (`None`: a migrating
    /// slot, where the command may run on either side). `None` sends `args` as they are;
    /// `Some` is the `EVAL` of a known script to replace an `EVALSHA`.
    pub fn route(
        &mut self,
        flushes: &Flushes,
        call: Call,
        args: &[Bytes],
        addr: Option<&Rc<str>>,
    ) -> Option<Vec<Bytes>> {
        let arg = args.get(1)?;
        let sha = match call {
            Call::Eval => {
                if !numkeys_ok(args) {
                    // Redis refuses it before it looks at the script, which it does not load.
                    return None;
                }
                let sha = self.learn(flushes, arg);
                if let Some(a) = addr {
                    self.mark(a, sha);
                }
                return None;
            }
            Call::EvalSha => {
                self.sync(flushes);
                sha_arg(arg)?
            }
        };
        let body = self.bodies.get(&sha)?.clone();
        match addr {
            Some(a) if self.sent.get(a).is_some_and(|s| s.contains(&sha)) => return None,
            Some(a) => self.mark(a, sha),
            None => {}
        }
        Some(as_eval(args, body))
    }

    /// A queued transaction command: `EVALSHA` of a known script becomes its `EVAL` (the
    /// transaction's server is not known when it is queued).
    pub fn in_transaction(
        &mut self,
        flushes: &Flushes,
        call: Call,
        args: &[Bytes],
    ) -> Option<Vec<Bytes>> {
        match call {
            Call::Eval => {
                if numkeys_ok(args) {
                    self.learn(flushes, &args[1]);
                }
                None
            }
            Call::EvalSha => {
                self.sync(flushes);
                let sha = sha_arg(args.get(1)?)?;
                let body = self.bodies.get(&sha)?.clone();
                Some(as_eval(args, body))
            }
        }
    }

    /// Whether `EVALSHA arg` runs on any server from this core (`SCRIPT EXISTS`).
    pub fn knows(&mut self, flushes: &Flushes, arg: &[u8]) -> bool {
        self.sync(flushes);
        sha_arg(arg).is_some_and(|sha| self.bodies.contains_key(&sha))
    }

    fn mark(&mut self, addr: &Rc<str>, sha: Sha) {
        if !self.bodies.contains_key(&sha) {
            return;
        }
        match self.sent.get_mut(addr) {
            Some(s) => {
                s.insert(sha);
            }
            None => {
                self.sent.insert(addr.clone(), HashSet::from_iter([sha]));
            }
        }
    }
}

/// Whether `EVAL body numkeys …`'s key count is one Redis accepts (0 to the arguments left).
fn numkeys_ok(args: &[Bytes]) -> bool {
    args.len() >= 3
        && resp::parse_i64(&args[2]).is_some_and(|n| n >= 0 && n as usize <= args.len() - 3)
}

/// `EVALSHA sha rest…` as `EVAL body rest…` (`EVALSHA_RO` as `EVAL_RO`).
fn as_eval(args: &[Bytes], body: Bytes) -> Vec<Bytes> {
    let name: &'static [u8] = if args[0].len() > 7 {
        b"EVAL_RO"
    } else {
        b"EVAL"
    };
    let mut out = Vec::with_capacity(args.len());
    out.push(Bytes::from_static(name));
    out.push(body);
    out.extend_from_slice(&args[2..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testutil::args;

    #[test]
    fn sha1_is_redis_script_name() {
        // redis-cli SCRIPT LOAD "return 1"
        assert_eq!(
            &sha1_hex(b"return 1"),
            b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
    }

    #[test]
    fn evalsha_becomes_eval_once_per_server() {
        let f = Flushes::default();
        let mut s = Scripts::default();
        let (a, b): (Rc<str>, Rc<str>) = ("127.0.0.1:1".into(), "127.0.0.1:2".into());
        assert_eq!(
            s.route(&f, Call::Eval, &args(&["EVAL", "return 1", "0"]), Some(&a)),
            None
        );
        let sha = "E0E1F9FABFC9D4800C877A703B823AC0578FF8DB";
        let call = args(&["EVALSHA", sha, "1", "k", "v"]);
        // The server that ran the EVAL has it.
        assert_eq!(s.route(&f, Call::EvalSha, &call, Some(&a)), None);
        // Another gets the body, once.
        let eval = s.route(&f, Call::EvalSha, &call, Some(&b)).unwrap();
        assert_eq!(eval, args(&["EVAL", "return 1", "1", "k", "v"]));
        assert_eq!(s.route(&f, Call::EvalSha, &call, Some(&b)), None);
        // A migrating slot always gets the body.
        assert!(s.route(&f, Call::EvalSha, &call, None).is_some());
        let ro = args(&["EVALSHA_RO", sha, "0"]);
        assert_eq!(
            s.in_transaction(&f, Call::EvalSha, &ro).unwrap(),
            args(&["EVAL_RO", "return 1", "0"])
        );
        // An EVAL that Redis refuses for its key count loads nothing.
        for n in ["x", "-1", "2"] {
            let bad = args(&["EVAL", "return 2", n, "k"]);
            assert_eq!(s.route(&f, Call::Eval, &bad, Some(&a)), None);
            assert!(!s.knows(&f, &sha1_hex(b"return 2")));
        }
        // Unknown, or not a SHA1: as is.
        let other = args(&["EVALSHA", &"0".repeat(40), "0"]);
        assert_eq!(s.route(&f, Call::EvalSha, &other, Some(&b)), None);
        assert_eq!(
            s.route(&f, Call::EvalSha, &args(&["EVALSHA", "x", "0"]), Some(&b)),
            None
        );
        // SCRIPT FLUSH anywhere: forgotten.
        f.bump();
        let c: Rc<str> = "127.0.0.1:3".into();
        assert_eq!(s.route(&f, Call::EvalSha, &call, Some(&c)), None);
    }

    #[test]
    fn bounded() {
        let f = Flushes::default();
        let mut s = Scripts::default();
        for i in 0..MAX_SCRIPTS + 10 {
            s.learn(&f, &Bytes::from(format!("return {i}")));
        }
        assert!(s.bodies.len() <= MAX_SCRIPTS);
        assert!(s
            .bodies
            .contains_key(&sha1_hex(format!("return {}", MAX_SCRIPTS + 9).as_bytes())));
        let big = Bytes::from(vec![b' '; MAX_BYTES + 1]);
        s.learn(&f, &big);
        assert!(s.bytes <= MAX_BYTES);
    }
}
