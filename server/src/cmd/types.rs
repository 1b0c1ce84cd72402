//! Helpers shared by the container families (hash, list, set, zset): typed lookups that tell a
//! missing key from a key of another type, empty-container deletion, `*SCAN` cursors, and the
//! float/timeout arguments.

use bytes::BytesMut;
use resp::{encode, Proto};

use super::{err, Ctx};
use crate::db::Db;
use crate::value::{Hash, List, Set, Value, ValueMut, ValueRef, ZSet};

/// The key holds another type (the caller replies WRONGTYPE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongType;

macro_rules! typed {
    ($get:ident, $create:ident, $read:ident, $variant:ident, $ty:ty) => {
        /// A live key's container for reading (not a modification): `Ok(None)` when missing,
        /// `Err` when it holds another type. A write command reads its source keys this way,
        /// so their watchers see no change.
        pub fn $read<'a>(
            db: &'a mut Db,
            key: &[u8],
            now: u64,
        ) -> Result<Option<&'a $ty>, WrongType> {
            match db.get(key, now).map(|e| e.value) {
                None => Ok(None),
                Some(ValueRef::$variant(v)) => Ok(Some(v)),
                Some(_) => Err(WrongType),
            }
        }

        /// A live key's container: `Ok(None)` when missing, `Err` when it holds another type.
        pub fn $get<'a>(
            db: &'a mut Db,
            key: &[u8],
            now: u64,
        ) -> Result<Option<&'a mut $ty>, WrongType> {
            if db.watched(key) {
                // A command failing with WRONGTYPE modifies nothing: its watchers must not
                // see a change (`get_mut` counts one).
                match db.peek(key, now) {
                    Some(e) if !matches!(e.value, ValueRef::$variant(_)) => return Err(WrongType),
                    _ => {}
                }
            }
            match db.get_mut(key, now) {
                None => Ok(None),
                Some(e) => match e.value {
                    ValueMut::$variant(v) => Ok(Some(v)),
                    _ => Err(WrongType),
                },
            }
        }

        /// A live key's container, created empty (without expiry) when missing.
        pub fn $create<'a>(db: &'a mut Db, key: &[u8], now: u64) -> Result<&'a mut $ty, WrongType> {
            let p: *mut Db = db;
            // One lookup when the key exists. SAFETY: the container borrowed through `p` is
            // either returned (for `'a`, as `db` is) or, when the key is missing, nothing
            // borrowed through `p` is used once `db` is used again (the borrow checker cannot see
            // that a borrow returned on one path ends on the other: NLL "problem case #3").
            if let Some(v) = $get(unsafe { &mut *p }, key, now)? {
                return Ok(v);
            }
            db.insert(key, Value::$variant(<$ty>::default()), 0);
            match $get(db, key, now)? {
                Some(v) => Ok(v),
                None => Err(WrongType),
            }
        }
    };
}

typed!(hash_mut, hash_create, hash_ref, Hash, Hash);
typed!(list_mut, list_create, list_ref, List, List);
typed!(set_mut, set_create, set_ref, Set, Set);
typed!(zset_mut, zset_create, zset_ref, ZSet, ZSet);

/// Delete `key` when it holds an empty container (Redis never keeps empty aggregates).
pub fn drop_if_empty(db: &mut Db, key: &[u8], now: u64) {
    let empty = match db.get(key, now).map(|e| e.value) {
        Some(ValueRef::Hash(h)) => h.is_empty(),
        Some(ValueRef::List(l)) => l.is_empty(),
        Some(ValueRef::Set(s)) => s.is_empty(),
        Some(ValueRef::ZSet(z)) => z.is_empty(),
        _ => false,
    };
    if empty {
        db.remove(key);
    }
}

/// Parse a float argument as Redis's `strtod`-based parsers do (no NaN).
pub fn float_arg(b: &[u8]) -> Option<f64> {
    super::string::parse_float(b)
}

/// SCAN elements: a member or field, with its value or score when the reply carries one.
pub type ScanItems = Vec<(Box<[u8]>, Option<Box<[u8]>>)>;

/// Options of HSCAN/SSCAN/ZSCAN.
pub struct ScanOpts {
    pub cursor: u64,
    pub pattern: Option<Vec<u8>>,
    pub count: usize,
}

/// HSCAN/SSCAN/ZSCAN's `key cursor [MATCH pattern] [COUNT count]`, checked in Redis's order:
/// the cursor, then the key (`exists` looks it up, replying WRONGTYPE itself; a missing key
/// gets an empty page here), then the options. `None` when a reply was written.
pub fn scan_args(
    ctx: &mut Ctx,
    exists: impl FnOnce(&mut Ctx) -> Result<bool, ()>,
) -> Option<ScanOpts> {
    let cursor = match std::str::from_utf8(ctx.arg(2))
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(c) => c,
        None => {
            ctx.err("ERR invalid cursor");
            return None;
        }
    };
    match exists(ctx) {
        Err(()) => return None,
        Ok(false) => {
            scan_reply::<&[u8]>(ctx.out, 0, &[]);
            return None;
        }
        Ok(true) => {}
    }
    let mut o = ScanOpts {
        cursor,
        pattern: None,
        count: 10,
    };
    let mut i = 3;
    while i < ctx.args.len() {
        let more = i + 1 < ctx.args.len();
        if ctx.is(i, "count") && more {
            let n = ctx.int(i + 1)?;
            if n < 1 {
                ctx.err(err::SYNTAX);
                return None;
            }
            o.count = n as usize;
        } else if ctx.is(i, "match") && more {
            let p = ctx.arg(i + 1);
            o.pattern = (&p[..] != b"*").then(|| p.to_vec());
        } else {
            ctx.err(err::SYNTAX);
            return None;
        }
        i += 2;
    }
    Some(o)
}

fn scan_hash(b: &[u8]) -> u64 {
    ahash::RandomState::with_seeds(7, 11, 13, 17).hash_one(b)
}

/// Pick one SCAN page of `items` (keyed by their first element). A compact container returns
/// everything at once with cursor 0, as Redis does for listpacks and intsets; a table is walked in
/// the order of a fixed hash of each element, so an element present for the whole scan is
/// returned even if the table changes in between.
pub fn scan_page<T>(
    items: Vec<(T, Option<T>)>,
    key: impl Fn(&T) -> &[u8],
    o: &ScanOpts,
    compact: bool,
) -> (u64, Vec<(T, Option<T>)>) {
    let mut chosen = if compact {
        (0, items)
    } else {
        let mut hs: Vec<(u64, (T, Option<T>))> = items
            .into_iter()
            .map(|it| (scan_hash(key(&it.0)), it))
            .filter(|(h, _)| *h >= o.cursor)
            .collect();
        hs.sort_unstable_by_key(|(h, _)| *h);
        let mut take = o.count.min(hs.len());
        while take > 0 && take < hs.len() && hs[take].0 == hs[take - 1].0 {
            take += 1;
        }
        let next = if take < hs.len() {
            hs[take - 1].0.wrapping_add(1).max(1)
        } else {
            0
        };
        hs.truncate(take);
        (next, hs.into_iter().map(|(_, it)| it).collect())
    };
    if let Some(p) = &o.pattern {
        chosen
            .1
            .retain(|(k, _)| crate::glob::matches(p, key(k), false));
    }
    chosen
}

/// Write a SCAN reply: `[cursor, [elements…]]`.
pub fn scan_reply<T: AsRef<[u8]>>(out: &mut BytesMut, next: u64, page: &[(T, Option<T>)]) {
    encode::array(out, 2);
    encode::bulk(out, itoa::Buffer::new().format(next).as_bytes());
    let n: usize = page.iter().map(|(_, v)| 1 + v.is_some() as usize).sum();
    encode::array(out, n);
    for (k, v) in page {
        encode::bulk(out, k.as_ref());
        if let Some(v) = v {
            encode::bulk(out, v.as_ref());
        }
    }
}

/// The marker a blocking command's handler writes instead of a reply when it would block. The
/// connection layer (`blocking.rs`) never forwards it to a client.
pub const WOULD_BLOCK: &[u8] = b"\0BLOCK\r\n";

/// Parse a blocking command's timeout (seconds, float) into milliseconds; replies on error with
/// Redis 7.0's texts (a value too big for milliseconds in an i64 counts as negative, as there).
pub fn timeout_arg(ctx: &mut Ctx, i: usize) -> Option<u64> {
    let Some(t) = float_arg(ctx.arg(i)) else {
        ctx.err("ERR timeout is not a float or out of range");
        return None;
    };
    let ms = (t * 1000.0).ceil();
    if !(0.0..9.2e18).contains(&ms) {
        ctx.err("ERR timeout is negative");
        return None;
    }
    Some(ms as u64)
}

/// Reply an array of bulks.
pub fn bulk_array<T: AsRef<[u8]>>(out: &mut BytesMut, items: &[T]) {
    encode::array(out, items.len());
    for i in items {
        encode::bulk(out, i.as_ref());
    }
}

/// Reply a set (RESP3 `~`, RESP2 array) of bulks.
pub fn bulk_set<T: AsRef<[u8]>>(out: &mut BytesMut, proto: Proto, items: &[T]) {
    encode::set(out, items.len(), proto);
    for i in items {
        encode::bulk(out, i.as_ref());
    }
}
