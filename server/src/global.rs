//! Commands that span the whole keyspace of a database (every core): DBSIZE, FLUSHDB, FLUSHALL,
//! KEYS, SCAN, RANDOMKEY, SWAPDB and Codis's slot-wide commands (SLOTSINFO, SLOTSSCAN, SLOTSDEL,
//! SLOTSCHECK).
//!
//! SCAN's cursor is a slot number: each call returns whole slots (each slot's keys are read in one
//! step on its core), so every key present for the whole iteration is returned exactly once, even
//! while keys are added, removed or tables resized. COUNT is honoured as "at least this many keys
//! examined", rounded up to a slot boundary, as Redis allows.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use rand::Rng;
use resp::command::CommandSpec;
use resp::{encode, Args, MAX_SLOTS};

use crate::cmd::err;
use crate::conn::Session;
use crate::core::Core;
use crate::glob;
use crate::shard::Shard;

/// Run a whole-keyspace command and append its reply to `out`.
pub async fn run(
    core: &Rc<Core>,
    sess: &mut Session,
    spec: &'static CommandSpec,
    idx: usize,
    args: Args,
    now: u64,
    out: &mut BytesMut,
) {
    let db = sess.db;
    match spec.name {
        "dbsize" => {
            let n: usize = core
                .broadcast_stable(move |s| s.dbs[db].len())
                .await
                .into_iter()
                .sum();
            encode::int(out, n as i64);
        }
        "flushdb" | "flushall" => {
            if args.len() > 2 || (args.len() == 2 && !is_any(&args[1], &["async", "sync"])) {
                return encode::error(out, err::SYNTAX);
            }
            let all = spec.name == "flushall";
            let fx = vec![(db, args.clone())];
            atomic_all_prop(core, fx, move |s| {
                for (i, d) in s.dbs.iter_mut().enumerate() {
                    if all || i == db {
                        d.clear();
                    }
                }
            })
            .await;
            encode::ok(out);
        }
        "swapdb" => swapdb(core, &args, out).await,
        "save" | "bgsave" => crate::persist::command(core, spec.name, &args, out).await,
        "bgrewriteaof" => crate::aof::bgrewrite_command(core, out).await,
        "keys" => {
            let pat = args[1].clone();
            let parts = core
                .broadcast_stable(move |s| {
                    let d = &s.dbs[db];
                    let mut v = Vec::new();
                    for (slot, _) in d.owned_slots() {
                        v.extend(
                            d.slot_keys(slot, now)
                                .into_iter()
                                .filter(|k| glob::matches(&pat, k, false)),
                        );
                    }
                    v
                })
                .await;
            let keys: Vec<Bytes> = parts.into_iter().flatten().collect();
            encode::array(out, keys.len());
            for k in keys {
                encode::bulk(out, &k);
            }
        }
        "scan" => scan(core, db, &args, now, out).await,
        "randomkey" => randomkey(core, db, now, out, sess).await,
        "slotsinfo" => slotsinfo(core, db, &args, out).await,
        "slotsscan" => slotsscan(core, db, &args, now, out).await,
        "slotsdel" => slotsdel(core, db, &args, out).await,
        "slotsmove" => crate::slotmove::command(core, &args, out).await,
        "slotscheck" => {
            let errs: Vec<String> = core
                .broadcast_stable(check_slots)
                .await
                .into_iter()
                .flatten()
                .collect();
            match errs.first() {
                None => encode::ok(out),
                Some(e) => encode::error(out, &format!("ERR slotscheck failed: {e}")),
            }
        }
        _ => {
            let name = spec.name;
            encode::error(
                out,
                &format!("ERR '{name}' is not supported by codis-server yet"),
            );
        }
    }
    core.shard.borrow_mut().stats[idx].calls += 1;
}

fn is_any(a: &[u8], words: &[&str]) -> bool {
    words.iter().any(|w| a.eq_ignore_ascii_case(w.as_bytes()))
}

/// Run `f` on every shard while all of them are held: no client sees a partial result.
pub async fn atomic_all(core: &Rc<Core>, f: impl Fn(&mut Shard) + Send + Sync + Clone + 'static) {
    atomic_all_prop(core, Vec::new(), f).await
}

/// [`atomic_all`], appending `fx` to the propagation log while every shard is held.
pub async fn atomic_all_prop(
    core: &Rc<Core>,
    fx: Vec<crate::repl::prop::Effect>,
    f: impl Fn(&mut Shard) + Send + Sync + Clone + 'static,
) {
    let tx = core.new_tx();
    for c in 0..core.ncores() {
        core.hold_on(c, tx, |sh| {
            if crate::repl::prop::active() {
                let fx = sh.expired_effects();
                sh.emit(fx);
            }
        })
        .await;
    }
    crate::repl::prop::log().append(&fx, false);
    for c in 0..core.ncores() {
        core.release_on(c, tx, f.clone()).await;
    }
}

async fn swapdb(core: &Rc<Core>, args: &Args, out: &mut BytesMut) {
    let ndb = core.shard.borrow().dbs.len() as i64;
    let Some(a) = resp::parse_i64(&args[1]) else {
        return encode::error(out, "ERR invalid first DB index");
    };
    let Some(b) = resp::parse_i64(&args[2]) else {
        return encode::error(out, "ERR invalid second DB index");
    };
    if !(0..ndb).contains(&a) || !(0..ndb).contains(&b) {
        return encode::error(out, err::DB_RANGE);
    }
    let (a, b) = (a as usize, b as usize);
    let fx = vec![(0, args.to_vec())];
    atomic_all_prop(core, fx, move |s| {
        if a != b {
            let (lo, hi) = (a.min(b), a.max(b));
            let (left, right) = s.dbs.split_at_mut(hi);
            left[lo].swap_keys(&mut right[0]);
        }
    })
    .await;
    encode::ok(out);
}

/// A SCAN cursor as Redis reads it (`strtoul` base 10): an optional sign (a negative value wraps),
/// digits, nothing else; no leading space; an empty string is cursor 0; overflow is invalid.
pub fn parse_cursor(a: &[u8]) -> Option<u64> {
    if a.first().is_some_and(|c| c.is_ascii_whitespace()) {
        return None;
    }
    let (neg, digits) = match a.first() {
        Some(b'-') => (true, &a[1..]),
        Some(b'+') => (false, &a[1..]),
        _ => (false, a),
    };
    if digits.is_empty() {
        // strtoul converts nothing and leaves the end pointer at the start: valid only if empty.
        return a.is_empty().then_some(0);
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// `[COUNT n] [MATCH pattern] [TYPE type]` of SCAN and SLOTSSCAN: (count, pattern, lower-case
/// type), or the error to reply.
fn scan_options(opts: &[Bytes]) -> Result<(usize, Option<Bytes>, Option<String>), &'static str> {
    let (mut count, mut pattern, mut type_) = (10usize, None, None);
    for pair in opts.chunks(2) {
        let [name, value] = pair else {
            return Err(err::SYNTAX);
        };
        if name.eq_ignore_ascii_case(b"count") {
            match resp::parse_i64(value) {
                Some(n) if n >= 1 => count = n as usize,
                Some(_) => return Err(err::SYNTAX),
                None => return Err(err::NOT_INT),
            }
        } else if name.eq_ignore_ascii_case(b"match") {
            pattern = Some(value.clone());
        } else if name.eq_ignore_ascii_case(b"type") {
            type_ = Some(String::from_utf8_lossy(value).to_lowercase());
        } else {
            return Err(err::SYNTAX);
        }
    }
    Ok((count, pattern, type_))
}

/// Whether SCAN / SLOTSSCAN return `key`: it matches MATCH and its value is of TYPE.
fn scan_keeps(
    d: &mut crate::db::Db,
    key: &[u8],
    pattern: Option<&[u8]>,
    type_: Option<&str>,
    now: u64,
) -> bool {
    pattern.is_none_or(|p| glob::matches(p, key, false))
        && type_.is_none_or(|t| d.get(key, now).is_some_and(|e| e.value.type_name() == t))
}

/// What one core found for a SCAN step: per slot (slot, keys examined, keys kept), and whether it
/// scanned every slot it owns from the cursor on.
type ScanPart = (Vec<(usize, usize, Vec<Bytes>)>, Option<usize>);

async fn scan(core: &Rc<Core>, db: usize, args: &Args, now: u64, out: &mut BytesMut) {
    let Some(cursor) = parse_cursor(&args[1]) else {
        return encode::error(out, "ERR invalid cursor");
    };
    let (count, pattern, type_) = match scan_options(&args[2..]) {
        Ok(o) => o,
        Err(e) => return encode::error(out, e),
    };
    let start = cursor.min(MAX_SLOTS as u64) as usize;
    let parts: Vec<ScanPart> = core
        .broadcast_stable(move |s| {
            let d = &mut s.dbs[db];
            let mut found = Vec::new();
            let mut examined = 0;
            let owned: Vec<usize> = d
                .owned_slots()
                .map(|(i, _)| i)
                .filter(|&i| i >= start)
                .collect();
            for slot in owned {
                let keys = d.slot_keys(slot, now);
                let n = keys.len();
                let kept: Vec<Bytes> = keys
                    .into_iter()
                    .filter(|k| scan_keeps(d, k, pattern.as_deref(), type_.as_deref(), now))
                    .collect();
                examined += n;
                found.push((slot, n, kept));
                if examined >= count {
                    return (found, Some(slot));
                }
            }
            (found, None)
        })
        .await;
    // Only slots up to the lowest "stopped early" point are complete on every core.
    let horizon = parts
        .iter()
        .filter_map(|(_, stop)| *stop)
        .min()
        .unwrap_or(MAX_SLOTS - 1);
    let mut slots: Vec<(usize, usize, Vec<Bytes>)> = parts
        .into_iter()
        .flat_map(|(f, _)| f)
        .filter(|(s, _, _)| *s <= horizon)
        .collect();
    slots.sort_by_key(|(s, _, _)| *s);
    let mut keys = Vec::new();
    let mut examined = 0;
    let mut next = horizon + 1;
    for (s, n, kept) in slots {
        examined += n;
        keys.extend(kept);
        if examined >= count {
            next = s + 1;
            break;
        }
    }
    let next = if next >= MAX_SLOTS { 0 } else { next };
    encode::array(out, 2);
    encode::bulk(out, next.to_string().as_bytes());
    encode::array(out, keys.len());
    for k in keys {
        encode::bulk(out, &k);
    }
}

async fn randomkey(core: &Rc<Core>, db: usize, now: u64, out: &mut BytesMut, sess: &Session) {
    for _ in 0..16 {
        let sizes: Vec<usize> = core.broadcast(move |s| s.dbs[db].len()).await;
        let total: usize = sizes.iter().sum();
        if total == 0 {
            return encode::null(out, sess.proto);
        }
        let mut r = rand::thread_rng().gen_range(0..total);
        let mut target = 0;
        for (c, n) in sizes.iter().enumerate() {
            if r < *n {
                target = c;
                break;
            }
            r -= n;
        }
        let key: Option<Bytes> = core
            .run_on(target, move |s| {
                let d = &mut s.dbs[db];
                let mut r = r;
                let mut pick = None;
                for (slot, t) in d.owned_slots() {
                    if r < t.len() {
                        pick = t
                            .map
                            .keys()
                            .nth(r)
                            .map(|k| (slot, Bytes::copy_from_slice(k)));
                        break;
                    }
                    r -= t.len();
                }
                let (_, k) = pick?;
                d.get(&k, now).is_some().then_some(k)
            })
            .await;
        if let Some(k) = key {
            return encode::bulk(out, &k);
        }
    }
    encode::null(out, sess.proto)
}

fn slot_arg(a: &[u8]) -> Result<usize, String> {
    match resp::parse_i64(a) {
        None => Err(err::NOT_INT.to_string()),
        Some(n) if !(0..MAX_SLOTS as i64).contains(&n) => {
            Err(format!("ERR invalid slot number = {n}"))
        }
        Some(n) => Ok(n as usize),
    }
}

async fn slotsinfo(core: &Rc<Core>, db: usize, args: &Args, out: &mut BytesMut) {
    let mut start = 0usize;
    let mut count = MAX_SLOTS as i64;
    if args.len() > 1 {
        match slot_arg(&args[1]) {
            Ok(s) => start = s,
            Err(e) => return encode::error(out, &e),
        }
    }
    if args.len() > 2 {
        match resp::parse_i64(&args[2]) {
            None => return encode::error(out, err::NOT_INT),
            Some(n) if n < 0 => {
                return encode::error(out, &format!("ERR invalid slot count = {n}"))
            }
            Some(n) => count = n,
        }
    }
    if args.len() > 3 {
        return encode::error(out, err::SYNTAX);
    }
    let end = (start as i64 + count).min(MAX_SLOTS as i64) as usize;
    let parts: Vec<Vec<(usize, usize)>> = core
        .broadcast_stable(move |s| {
            s.dbs[db]
                .owned_slots()
                .filter(|(i, t)| *i >= start && *i < end && !t.is_empty())
                .map(|(i, t)| (i, t.len()))
                .collect()
        })
        .await;
    let mut all: Vec<(usize, usize)> = parts.into_iter().flatten().collect();
    all.sort();
    encode::array(out, all.len());
    for (s, n) in all {
        encode::array(out, 2);
        encode::int(out, s as i64);
        encode::int(out, n as i64);
    }
}

/// Where a key sits in SLOTSSCAN's order: a fixed 52-bit hash (FNV-1a), so a cursor means the
/// same position in every process and fits in the 53 bits codis-proxy leaves for it in the
/// cluster-wide SCAN cursor it builds on top.
fn scan_order(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h >> 12
}

/// `SLOTSSCAN slot cursor [COUNT n] [MATCH pattern] [TYPE type]`: up to COUNT keys of one slot
/// (MATCH and TYPE filter what was examined, as in SCAN; both are codis-rs extensions). The
/// cursor is a position in a fixed hash order of the keys, not an index: a key present for the
/// whole iteration is returned exactly once however many keys are added or deleted meanwhile.
async fn slotsscan(core: &Rc<Core>, db: usize, args: &Args, now: u64, out: &mut BytesMut) {
    let slot = match slot_arg(&args[1]) {
        Ok(s) => s,
        Err(e) => return encode::error(out, &e),
    };
    let Some(cursor) = parse_cursor(&args[2]) else {
        return encode::error(out, "ERR invalid cursor");
    };
    let (count, pattern, type_) = match scan_options(&args[3..]) {
        Ok(o) => o,
        Err(e) => return encode::error(out, e),
    };
    let (keys, next): (Vec<Bytes>, u64) = core
        .run_on_slot(slot as u16, move |s| {
            let d = &mut s.dbs[db];
            let mut rest: Vec<(u64, Bytes)> = d
                .slot_keys(slot, now)
                .into_iter()
                .map(|k| (scan_order(&k), k))
                .filter(|(h, _)| *h >= cursor)
                .collect();
            let mut next = 0;
            if rest.len() > count {
                rest.select_nth_unstable_by_key(count - 1, |(h, _)| *h);
                let last = rest[count - 1].0;
                // Keys sharing the last hash go in this page too: the next one starts after it.
                let (mut page, more): (Vec<_>, Vec<_>) =
                    rest.into_iter().partition(|(h, _)| *h <= last);
                if !more.is_empty() {
                    next = last + 1;
                }
                page.sort_unstable_by_key(|(h, _)| *h);
                rest = page;
            } else {
                rest.sort_unstable_by_key(|(h, _)| *h);
            }
            let kept = rest
                .into_iter()
                .map(|(_, k)| k)
                .filter(|k| scan_keeps(d, k, pattern.as_deref(), type_.as_deref(), now))
                .collect();
            (kept, next)
        })
        .await;
    encode::array(out, 2);
    encode::bulk(out, next.to_string().as_bytes());
    encode::array(out, keys.len());
    for k in keys {
        encode::bulk(out, &k);
    }
}

async fn slotsdel(core: &Rc<Core>, db: usize, args: &Args, out: &mut BytesMut) {
    let mut slots = Vec::new();
    for a in &args[1..] {
        match slot_arg(a) {
            Ok(s) => slots.push(s),
            Err(e) => return encode::error(out, &e),
        }
    }
    encode::array(out, slots.len());
    for s in slots {
        let left: usize = core
            .run_on_slot(s as u16, move |sh| {
                if crate::repl::prop::active() {
                    // Replicas (which may be plain Redis) delete the slot's keys one by one.
                    let now = crate::shared::now_ms();
                    let fx = sh.dbs[db]
                        .slot_keys(s, now)
                        .iter()
                        .map(|k| crate::repl::prop::del(db, k))
                        .collect();
                    sh.emit(fx);
                }
                sh.dbs[db].clear_slot(s);
                sh.dbs[db].slot(s).map_or(0, |t| t.len())
            })
            .await;
        encode::array(out, 2);
        encode::int(out, s as i64);
        encode::int(out, left as i64);
    }
}

fn check_slots(s: &mut Shard) -> Vec<String> {
    let mut errs = Vec::new();
    for (dbi, d) in s.dbs.iter().enumerate() {
        // The shard's ownership flags and its tables agree (slot moves change both at once).
        for slot in 0..MAX_SLOTS {
            if s.owns(slot as u16) != d.slot(slot).is_some() {
                errs.push(format!("db{dbi} slot {slot}: table and ownership disagree"));
            }
        }
        for (slot, t) in d.owned_slots() {
            for k in t.map.keys() {
                let want = resp::slot(k) as usize;
                if want != slot {
                    errs.push(format!(
                        "db{dbi} key '{}' found in slot {slot}, expected {want}",
                        String::from_utf8_lossy(k)
                    ));
                }
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::parse_cursor;

    #[test]
    fn cursors_parse_like_strtoul() {
        assert_eq!(parse_cursor(b"0"), Some(0));
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"+7"), Some(7));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551616"), None);
        assert_eq!(parse_cursor(b" 1"), None);
        assert_eq!(parse_cursor(b"1 "), None);
        assert_eq!(parse_cursor(b"-"), None);
        assert_eq!(parse_cursor(b"abc"), None);
    }
}
