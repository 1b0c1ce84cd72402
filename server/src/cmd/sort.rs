//! SORT and SORT_RO (Redis's `sort.c`), with Redis 7.0's replies.
//!
//! # Keys read through patterns
//! `BY weight_*` and `GET obj_*->field` form key names from the elements, so the keys SORT reads
//! are not known before it runs, and on a shard-per-core server (or behind the proxy) they may
//! live elsewhere. codis-server applies Redis Cluster's rule (Redis 7.4 and later; 7.0 refused
//! such patterns outright in cluster mode): a pattern that reads keys is accepted only when every
//! key it can form lies in the sorted key's slot, that is when the part before its `*` holds a
//! complete `{tag}` hashing to that slot. Patterns that read no key (`BY nosort`, `GET #`, a `GET`
//! without `*`) are always accepted. So every key a SORT reads lies in its own slot:
//! - on a shard, in the database the handler sees;
//! - on a scratch copy (`multi.rs`: a SORT … STORE whose destination is on another core, or a
//!   transaction spanning cores), because [`pattern_reads`] tells `multi.rs` which keys of that
//!   slot a pattern can form, and those are copied along with the named keys;
//! - a script's scratch copy holds only its declared keys: `script.rs` refuses a SORT reading
//!   pattern keys there rather than let it read missing keys.

use std::cmp::Ordering;

use bytes::Bytes;
use resp::command::COMMANDS;

use super::sort_order::{pqsort, strtod_score};
use super::{err, Ctx, Handler};
use crate::db::Db;
use crate::value::{List, Score, Value, ValueRef, ZSet, ZTree};

/// The sort commands served by shards.
pub static HANDLERS: &[(&str, Handler)] = &[("sort", sort), ("sort_ro", sort_ro)];

const BY_DENIED: &str = "ERR BY option of SORT denied in Cluster mode when keys formed by the \
                         pattern may be in different slots.";
const GET_DENIED: &str = "ERR GET option of SORT denied in Cluster mode when keys formed by the \
                          pattern may be in different slots.";
const NOT_DOUBLE: &str = "ERR One or more scores can't be converted into double";

fn sort(ctx: &mut Ctx) {
    sort_generic(ctx, false)
}

fn sort_ro(ctx: &mut Ctx) {
    sort_generic(ctx, true)
}

/// The bytes C sees: up to the first NUL (Redis reads patterns and collates with C strings).
fn cstr(b: &[u8]) -> &[u8] {
    match memchr::memchr(0, b) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// What a BY or GET pattern reads for one element (Redis's `lookupKeyByPattern`).
#[derive(Clone, Copy)]
enum Pattern<'a> {
    /// `#`: the element itself.
    Element,
    /// No `*`: nothing (a fixed key makes no sense).
    Nothing,
    /// The string at `prefix + element + suffix`, or that hash's `field`.
    Key {
        prefix: &'a [u8],
        suffix: &'a [u8],
        field: Option<&'a [u8]>,
    },
}

impl<'a> Pattern<'a> {
    fn parse(p: &'a [u8]) -> Pattern<'a> {
        if p.first() == Some(&b'#') && matches!(p.get(1), None | Some(0)) {
            return Pattern::Element;
        }
        let c = cstr(p);
        let Some(star) = memchr::memchr(b'*', c) else {
            return Pattern::Nothing;
        };
        // `->field` after the `*`, with a non-empty field, dereferences a hash.
        let arrow = memchr::memmem::find(&c[star + 1..], b"->")
            .map(|i| star + 1 + i)
            .filter(|&f| f + 2 < c.len());
        match arrow {
            Some(f) => Pattern::Key {
                prefix: &p[..star],
                suffix: &p[star + 1..f],
                field: Some(&p[f + 2..]),
            },
            None => Pattern::Key {
                prefix: &p[..star],
                suffix: &p[star + 1..],
                field: None,
            },
        }
    }

    /// The slot of every key this pattern forms, if one: its prefix holds a complete tag.
    fn slot(self) -> Option<u16> {
        match self {
            Pattern::Key { prefix, .. } if resp::slot::has_tag(prefix) => Some(resp::slot(prefix)),
            _ => None,
        }
    }

    /// The value this pattern reads for `elem` (copied out of the database).
    fn lookup(self, db: &mut Db, elem: &[u8], now: u64) -> Option<Vec<u8>> {
        let (prefix, suffix, field) = match self {
            Pattern::Element => return Some(elem.to_vec()),
            Pattern::Nothing => return None,
            Pattern::Key {
                prefix,
                suffix,
                field,
            } => (prefix, suffix, field),
        };
        let mut key = Vec::with_capacity(prefix.len() + elem.len() + suffix.len());
        key.extend_from_slice(prefix);
        key.extend_from_slice(elem);
        key.extend_from_slice(suffix);
        match (db.get(&key, now)?.value, field) {
            (ValueRef::Str(s), None) => Some(s.to_vec()),
            (ValueRef::Hash(h), Some(f)) => h.get(f).map(<[u8]>::to_vec),
            _ => None,
        }
    }
}

/// A SORT call's options, parsed as Redis parses them (a later option overrides an earlier one).
struct Opts<'a> {
    desc: bool,
    alpha: bool,
    limit_start: i64,
    limit_count: i64,
    store: Option<&'a Bytes>,
    /// The last `BY` pattern; it reads keys unless `dontsort`.
    by: Option<Pattern<'a>>,
    /// A `BY` pattern without `*` was given: the elements keep their order.
    dontsort: bool,
    gets: Vec<Pattern<'a>>,
}

/// Parse the options after the key; `Err` is the error to reply.
fn parse(args: &[Bytes], readonly: bool) -> Result<Opts<'_>, &'static str> {
    let key_slot = resp::slot(&args[1]);
    let mut o = Opts {
        desc: false,
        alpha: false,
        limit_start: 0,
        limit_count: -1,
        store: None,
        by: None,
        dontsort: false,
        gets: Vec::new(),
    };
    let mut j = 2;
    while j < args.len() {
        let left = args.len() - j - 1;
        let is = |w: &str| args[j].eq_ignore_ascii_case(w.as_bytes());
        if is("asc") {
            o.desc = false;
        } else if is("desc") {
            o.desc = true;
        } else if is("alpha") {
            o.alpha = true;
        } else if is("limit") && left >= 2 {
            o.limit_start = resp::parse_i64(&args[j + 1]).ok_or(err::NOT_INT)?;
            o.limit_count = resp::parse_i64(&args[j + 2]).ok_or(err::NOT_INT)?;
            j += 2;
        } else if !readonly && is("store") && left >= 1 {
            o.store = Some(&args[j + 1]);
            j += 1;
        } else if is("by") && left >= 1 {
            let p = Pattern::parse(&args[j + 1]);
            match p {
                Pattern::Key { .. } if p.slot() != Some(key_slot) => return Err(BY_DENIED),
                Pattern::Key { .. } => {}
                _ => o.dontsort = true,
            }
            o.by = Some(p);
            j += 1;
        } else if is("get") && left >= 1 {
            let p = Pattern::parse(&args[j + 1]);
            if matches!(p, Pattern::Key { .. }) && p.slot() != Some(key_slot) {
                return Err(GET_DENIED);
            }
            o.gets.push(p);
            j += 1;
        } else {
            return Err(err::SYNTAX);
        }
        j += 1;
    }
    Ok(o)
}

/// Keys a command reads that it does not name: in database `db` and slot `slot`, every key
/// `prefix + anything + suffix` for one of `affixes` (SORT's BY/GET patterns).
pub struct PatternReads {
    pub db: usize,
    pub slot: u16,
    pub affixes: Vec<(Bytes, Bytes)>,
}

impl PatternReads {
    /// Whether a pattern may form `key`.
    pub fn matches(&self, key: &[u8]) -> bool {
        self.affixes
            .iter()
            .any(|(p, s)| key.len() >= p.len() + s.len() && key.starts_with(p) && key.ends_with(s))
    }
}

/// The keys a SORT/SORT_RO call (command-table row `idx`) reads through its patterns, for a
/// scratch copy to include them; `None` for other commands and for calls reading none.
pub fn pattern_reads(idx: usize, args: &[Bytes], db: usize) -> Option<PatternReads> {
    let name = COMMANDS.get(idx)?.name;
    if (name != "sort" && name != "sort_ro") || args.len() < 2 {
        return None;
    }
    let o = parse(args, name == "sort_ro").ok()?;
    let affixes: Vec<(Bytes, Bytes)> =
        o.by.filter(|_| !o.dontsort)
            .into_iter()
            .chain(o.gets.iter().copied())
            .filter_map(|p| match p {
                Pattern::Key { prefix, suffix, .. } => Some((
                    Bytes::copy_from_slice(prefix),
                    Bytes::copy_from_slice(suffix),
                )),
                _ => None,
            })
            .collect();
    (!affixes.is_empty()).then(|| PatternReads {
        db,
        slot: resp::slot(&args[1]),
        affixes,
    })
}

/// One element being sorted: its numeric score, or (ALPHA BY) the value it is compared by.
struct Item {
    elem: Box<[u8]>,
    score: f64,
    by: Option<Vec<u8>>,
}

/// How elements compare (Redis's `sortCompare`).
#[derive(Clone, Copy)]
struct Order {
    desc: bool,
    alpha: bool,
    by_pattern: bool,
    /// Binary comparison (STORE) rather than collation (`strcoll`, here the C locale's byte
    /// order up to the first NUL).
    binary: bool,
}

impl Order {
    fn cmp(self, a: &Item, b: &Item) -> Ordering {
        let text = |x: &[u8], y: &[u8]| {
            if self.binary {
                x.cmp(y)
            } else {
                cstr(x).cmp(cstr(y))
            }
        };
        let c = if !self.alpha {
            if a.score > b.score {
                Ordering::Greater
            } else if a.score < b.score {
                Ordering::Less
            } else {
                // Equal scores: the elements decide, so the result is deterministic.
                a.elem.cmp(&b.elem)
            }
        } else if self.by_pattern {
            match (&a.by, &b.by) {
                (Some(x), Some(y)) => text(x, y),
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
            }
        } else {
            text(&a.elem, &b.elem)
        };
        if self.desc {
            c.reverse()
        } else {
            c
        }
    }
}

/// The elements' range after LIMIT, as Redis clamps it: `(start, end)` inclusive, possibly empty
/// (`end == start - 1`).
fn limit_range(limit_start: i64, limit_count: i64, len: usize) -> (i64, i64) {
    let len = len as i64;
    let mut start = limit_start.clamp(0, len);
    let count = limit_count.clamp(-1, len);
    let mut end = if count < 0 {
        len - 1
    } else {
        start + count - 1
    };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    (start, end.min(len - 1))
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    List,
    Set,
    ZSet,
}

fn sort_generic(ctx: &mut Ctx, readonly: bool) {
    let args = ctx.args;
    let o = match parse(args, readonly) {
        Ok(o) => o,
        Err(e) => return ctx.err(e),
    };
    let now = ctx.now;
    let key = &args[1];
    let db = &mut ctx.dbs[ctx.db];
    let (kind, len) = match db.get(key, now).map(|e| e.value) {
        None => (Kind::List, 0),
        Some(ValueRef::List(l)) => (Kind::List, l.len()),
        Some(ValueRef::Set(s)) => (Kind::Set, s.len()),
        Some(ValueRef::ZSet(z)) => (Kind::ZSet, z.len()),
        Some(_) => return ctx.wrongtype(),
    };
    let (mut dontsort, mut alpha, mut by) = (o.dontsort, o.alpha, o.by);
    // A set has no order of its own: sort it when the result is stored or a script reads it, so
    // that it is the same everywhere (replicas, AOF).
    if dontsort && kind == Kind::Set && (o.store.is_some() || crate::script::running()) {
        (dontsort, alpha, by) = (false, true, None);
    }
    // Redis converts a sorted set to its skiplist form for SORT (a scratch copy is left alone:
    // the conversion would be written back as a change).
    if kind == Kind::ZSet && !db.is_scratch() {
        to_skiplist(db, key, now);
    }
    let (start, end) = limit_range(o.limit_start, o.limit_count, len);
    // Lists and sorted sets not sorted keep their order: load just the range, in that order.
    let direct = dontsort && kind != Kind::Set;
    let elems: Vec<Box<[u8]>> = match db.get(key, now).map(|e| e.value) {
        Some(ValueRef::List(l)) if direct => {
            let n = (end - start + 1).max(0) as usize;
            let first = if o.desc { len as i64 - 1 - end } else { start };
            let mut v = Vec::with_capacity(n);
            l.for_range(first.max(0) as usize, n, |e| v.push(e.into()));
            if o.desc {
                v.reverse();
            }
            v
        }
        Some(ValueRef::List(l)) => l.iter().map(Into::into).collect(),
        Some(ValueRef::Set(s)) => s.members(),
        Some(ValueRef::ZSet(z)) if direct => {
            let n = (end - start + 1).max(0) as usize;
            let skip = start.max(0) as usize;
            if o.desc {
                z.iter()
                    .rev()
                    .skip(skip)
                    .take(n)
                    .map(|(m, _)| m.into())
                    .collect()
            } else {
                z.iter().skip(skip).take(n).map(|(m, _)| m.into()).collect()
            }
        }
        Some(ValueRef::ZSet(z)) => z.iter().map(|(m, _)| m.into()).collect(),
        _ => Vec::new(),
    };
    let (start, end) = if direct {
        (0, end - start)
    } else {
        (start, end)
    };
    let mut items: Vec<Item> = elems
        .into_iter()
        .map(|elem| Item {
            elem,
            score: 0.0,
            by: None,
        })
        .collect();
    let mut bad_score = false;
    if !dontsort {
        for it in &mut items {
            let val = match by {
                Some(p) => match p.lookup(db, &it.elem, now) {
                    Some(v) => v,
                    None => continue,
                },
                None if alpha => continue,
                None => it.elem.to_vec(),
            };
            if alpha {
                it.by = Some(val);
            } else {
                match strtod_score(&val) {
                    Some(s) => it.score = s,
                    None => bad_score = true,
                }
            }
        }
        let order = Order {
            desc: o.desc,
            alpha,
            by_pattern: by.is_some(),
            binary: o.store.is_some(),
        };
        // Scores that failed to parse make the reply an error: nothing to order.
        if !bad_score {
            if by.is_some() && (start != 0 || end != items.len() as i64 - 1) {
                pqsort(&mut items, |a, b| order.cmp(a, b), start, end);
            } else {
                items.sort_by(|a, b| order.cmp(a, b));
            }
        }
    }
    if bad_score {
        return ctx.err(NOT_DOUBLE);
    }
    let picked = if end >= start {
        &items[start as usize..=end as usize]
    } else {
        &[]
    };
    let outputlen = picked.len() * o.gets.len().max(1);
    let Some(dst) = o.store else {
        // A read: nothing to propagate (keys it found expired are propagated on their own).
        ctx.propagate_as(Vec::new());
        ctx.array(outputlen);
        for it in picked {
            if o.gets.is_empty() {
                ctx.bulk(&it.elem);
            }
            for g in &o.gets {
                match g.lookup(&mut ctx.dbs[ctx.db], &it.elem, now) {
                    Some(v) => ctx.bulk(&v),
                    None => ctx.null(),
                }
            }
        }
        return;
    };
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(outputlen);
    for it in picked {
        if o.gets.is_empty() {
            out.push(it.elem.to_vec());
        }
        for g in &o.gets {
            out.push(g.lookup(db, &it.elem, now).unwrap_or_default());
        }
    }
    if out.is_empty() {
        db.delete(dst);
    } else {
        db.insert(dst, Value::List(List::from_items(out)), 0);
    }
    ctx.int_reply(outputlen as i64)
}

/// Convert a sorted set to its skiplist form, as Redis's SORT does, without counting it as a
/// modification (WATCH, dirty): only the representation changes.
fn to_skiplist(db: &mut Db, key: &[u8], now: u64) {
    let quiet = std::mem::replace(&mut db.quiet, true);
    if let Ok(Some(z)) = super::types::zset_mut(db, key, now) {
        if let ZSet::Pack(_) = z {
            let mut t = ZTree::default();
            for (m, s) in z.iter() {
                t.dict.insert(m.into(), s);
                t.tree.insert((Score(s), m.into()));
            }
            *z = ZSet::Tree(Box::new(t));
        }
    }
    db.quiet = quiet;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    #[test]
    fn limits_clamp_like_redis() {
        assert_eq!(limit_range(0, -1, 5), (0, 4));
        assert_eq!(limit_range(1, 2, 5), (1, 2));
        assert_eq!(limit_range(-3, 2, 5), (0, 1));
        assert_eq!(limit_range(4, 10, 5), (4, 4));
        assert_eq!(limit_range(5, 1, 5), (4, 3));
        assert_eq!(limit_range(0, 0, 5), (0, -1));
        assert_eq!(limit_range(0, -1, 0), (-1, -2));
        assert_eq!(limit_range(i64::MAX, i64::MAX, 3), (2, 1));
    }

    #[test]
    fn patterns_split_like_lookup_key_by_pattern() {
        assert!(matches!(Pattern::parse(b"#"), Pattern::Element));
        assert!(matches!(Pattern::parse(b"#\0x"), Pattern::Element));
        assert!(matches!(Pattern::parse(b"##"), Pattern::Nothing));
        assert!(matches!(Pattern::parse(b"nosort"), Pattern::Nothing));
        assert!(matches!(Pattern::parse(b"a\0*"), Pattern::Nothing));
        let Pattern::Key {
            prefix,
            suffix,
            field,
        } = Pattern::parse(b"{u}h_*_x->f->g")
        else {
            panic!()
        };
        assert_eq!(
            (prefix, suffix, field),
            (&b"{u}h_"[..], &b"_x"[..], Some(&b"f->g"[..]))
        );
        // An empty field is no field: the arrow is part of the key.
        let Pattern::Key { suffix, field, .. } = Pattern::parse(b"w_*->") else {
            panic!()
        };
        assert_eq!((suffix, field), (&b"->"[..], None));
    }

    #[test]
    fn patterns_must_name_the_sorted_keys_slot() {
        assert_eq!(Pattern::parse(b"{u}w_*").slot(), Some(resp::slot(b"{u}l")));
        assert_eq!(Pattern::parse(b"w_{u}*").slot(), Some(resp::slot(b"u")));
        assert_eq!(Pattern::parse(b"w_*").slot(), None);
        assert_eq!(Pattern::parse(b"w_*{u}").slot(), None);
        assert_eq!(Pattern::parse(b"{w_*}").slot(), None);
        let denied = |s: &str| parse(&args(s), false).err();
        assert_eq!(denied("SORT {u}l BY w_*"), Some(BY_DENIED));
        assert_eq!(denied("SORT {u}l GET w_*"), Some(GET_DENIED));
        assert_eq!(denied("SORT {u}l BY nosort GET # GET k"), None);
        assert_eq!(denied("SORT {u}l BY {u}w_* GET {u}o_*->f"), None);
        assert_eq!(denied("SORT_RO {u}l STORE d"), None);
        assert_eq!(
            parse(&args("SORT_RO {u}l STORE d"), true).err(),
            Some(err::SYNTAX)
        );
    }

    #[test]
    fn pattern_reads_cover_the_keys_formed() {
        let sort = COMMANDS.iter().position(|c| c.name == "sort").unwrap();
        let a = args("SORT {u}l BY {u}w_* GET # GET {u}h_*->f STORE d");
        let r = pattern_reads(sort, &a, 3).unwrap();
        assert_eq!((r.db, r.slot), (3, resp::slot(b"u")));
        assert!(r.matches(b"{u}w_12") && r.matches(b"{u}w_") && r.matches(b"{u}h_a"));
        assert!(!r.matches(b"{u}x_1") && !r.matches(b"{v}w_1"));
        assert!(pattern_reads(sort, &args("SORT {u}l BY nosort GET #"), 0).is_none());
        assert!(pattern_reads(sort, &args("SORT {u}l BY nosort BY {u}w_*"), 0).is_none());
        assert!(pattern_reads(sort, &args("SORT {u}l BY w_*"), 0).is_none());
        let get = COMMANDS.iter().position(|c| c.name == "get").unwrap();
        assert!(pattern_reads(get, &args("GET {u}w_*"), 0).is_none());
    }

    /// The handler's STORE destination is always among the command's key positions (the routing
    /// and the multi-core copy only see those).
    #[test]
    fn store_key_is_a_key_position() {
        let spec = resp::command::lookup(b"sort").unwrap();
        for s in [
            "SORT k STORE d",
            "SORT k STORE d STORE e",
            "SORT k LIMIT 0 1 STORE d GET #",
            "SORT k STORE limit",
            "SORT k STORE get",
            "SORT k STORE by ALPHA",
            "SORT k STORE store STORE d",
            "SORT k GET store STORE d",
            "SORT k BY store STORE by",
        ] {
            let a = args(s);
            let o = parse(&a, false).unwrap_or_else(|e| panic!("{s}: {e}"));
            let dst = o.store.unwrap();
            let pos = spec.key_positions(&a);
            assert_eq!(pos[0], 1, "{s}");
            assert!(pos.iter().any(|&p| a[p] == dst), "{s}: {pos:?}");
            assert_eq!(pos.len(), 2, "{s}");
        }
    }
}
