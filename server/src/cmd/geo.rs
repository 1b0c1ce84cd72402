//! GEO commands (Redis's `geo.c`): a GEO set is a sorted set whose scores are 52-bit geohashes
//! (see `geohash.rs`), so GEOADD is ZADD with computed scores and a search scans the score
//! ranges of nine geohash boxes, then keeps the points within the exact shape.

use bytes::{Bytes, BytesMut};
use resp::encode;

use super::geohash::{self, Shape};
use super::types::{float_arg, zset_ref};
use super::{err, Ctx, Handler};
use crate::value::{Value, ZSet};

/// The GEO commands served by shards.
pub static HANDLERS: &[(&str, Handler)] = &[
    ("geoadd", geoadd),
    ("geopos", geopos),
    ("geodist", geodist),
    ("geohash", geohash_cmd),
    ("geosearch", geosearch),
    ("geosearchstore", geosearchstore),
    ("georadius", georadius),
    ("georadius_ro", georadius_ro),
    ("georadiusbymember", georadiusbymember),
    ("georadiusbymember_ro", georadiusbymember_ro),
];

const BAD_UNIT: &str = "ERR unsupported unit provided. please use M, KM, FT, MI";
const NO_MEMBER: &str = "ERR could not decode requested zset member";

/// Meters per unit, or `None` for an unknown unit.
fn unit(b: &[u8]) -> Option<f64> {
    match b.to_ascii_lowercase().as_slice() {
        b"m" => Some(1.0),
        b"km" => Some(1000.0),
        b"ft" => Some(0.3048),
        b"mi" => Some(1609.34),
        _ => None,
    }
}

/// `lon lat` at `args[i..i + 2]`, or the reply of an error.
fn lon_lat(ctx: &mut Ctx, i: usize) -> Option<(f64, f64)> {
    let (Some(lon), Some(lat)) = (float_arg(ctx.arg(i)), float_arg(ctx.arg(i + 1))) else {
        ctx.err(err::NOT_FLOAT);
        return None;
    };
    // Both parsed first, then range-checked together (`extractLongLatOrReply`).
    let ok = (geohash::LONG_MIN..=geohash::LONG_MAX).contains(&lon)
        && (geohash::LAT_MIN..=geohash::LAT_MAX).contains(&lat);
    if !ok {
        ctx.err(&format!(
            "ERR invalid longitude,latitude pair {lon:.6},{lat:.6}"
        ));
        return None;
    }
    Some((lon, lat))
}

/// A number then its unit's name, for `BYRADIUS`/`BYBOX`: the values and meters per unit.
fn sizes(ctx: &mut Ctx, i: usize, names: &[&str]) -> Option<(Vec<f64>, f64)> {
    let mut v = Vec::with_capacity(names.len());
    for (k, name) in names.iter().enumerate() {
        match float_arg(ctx.arg(i + k)) {
            Some(x) => v.push(x),
            None => {
                ctx.err(&format!("ERR need numeric {name}"));
                return None;
            }
        }
    }
    if v.iter().any(|x| *x < 0.0) {
        ctx.err(if names.len() == 1 {
            "ERR radius cannot be negative"
        } else {
            "ERR height or width cannot be negative"
        });
        return None;
    }
    match unit(ctx.arg(i + names.len())) {
        Some(u) => Some((v, u)),
        None => {
            ctx.err(BAD_UNIT);
            None
        }
    }
}

/// GEOADD key [NX|XX] [CH] lon lat member …: ZADD with the members' geohash scores.
fn geoadd(ctx: &mut Ctx) {
    let (mut nx, mut xx, mut at) = (false, false, 2);
    while at < ctx.args.len() {
        if ctx.is(at, "nx") {
            nx = true;
        } else if ctx.is(at, "xx") {
            xx = true;
        } else if !ctx.is(at, "ch") {
            break;
        }
        at += 1;
    }
    if !(ctx.args.len() - at).is_multiple_of(3) || (nx && xx) {
        return ctx.err(err::SYNTAX);
    }
    let mut zargs: Vec<Bytes> = Vec::with_capacity(at + (ctx.args.len() - at) / 3 * 2);
    zargs.push(Bytes::from_static(b"zadd"));
    zargs.extend_from_slice(&ctx.args[1..at]);
    for i in (at..ctx.args.len()).step_by(3) {
        let Some((lon, lat)) = lon_lat(ctx, i) else {
            return;
        };
        let score = geohash::score_of(lon, lat).unwrap_or(0);
        zargs.push(Bytes::from(score.to_string()));
        zargs.push(ctx.args[i + 2].clone());
    }
    let Some(zadd) =
        resp::command::lookup(b"zadd").and_then(|s| super::handler(super::index_of(s)))
    else {
        return ctx.err("ERR ZADD is not available");
    };
    let mut z = Ctx {
        dbs: &mut *ctx.dbs,
        db: ctx.db,
        args: &zargs,
        out: &mut *ctx.out,
        proto: ctx.proto,
        now: ctx.now,
        rewrite: None,
    };
    zadd(&mut z);
}

/// The scores of members `args[from..]` of the set at `args[1]`; `Err` when WRONGTYPE was replied.
fn scores(ctx: &mut Ctx, from: usize) -> Result<Vec<Option<f64>>, ()> {
    let now = ctx.now;
    let key = ctx.args[1].clone();
    match zset_ref(&mut ctx.dbs[ctx.db], &key, now) {
        Err(_) => {
            ctx.wrongtype();
            Err(())
        }
        Ok(z) => Ok(ctx.args[from..]
            .iter()
            .map(|m| z.as_ref().and_then(|z| z.score(m)))
            .collect()),
    }
}

/// A coordinate as Redis's `addReplyHumanLongDouble` prints it (`%.17Lf`, trailing zeros cut).
fn human(out: &mut BytesMut, x: f64, proto: resp::Proto) {
    let mut s = format!("{x:.17}");
    if s.contains('.') {
        let t = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(t);
    }
    if s == "-0" {
        s = "0".into();
    }
    match proto {
        resp::Proto::Resp2 => encode::bulk(out, s.as_bytes()),
        resp::Proto::Resp3 => {
            out.extend_from_slice(b",");
            out.extend_from_slice(s.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// A distance as Redis's `addReplyDoubleDistance` prints it: four fixed decimals.
fn distance_text(d: f64) -> String {
    if d == 0.0 {
        return "0.0000".into();
    }
    let v = (d * 10000.0).round_ties_even() as i64;
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    format!("{sign}{}.{:04}", a / 10000, a % 10000)
}

fn geopos(ctx: &mut Ctx) {
    let Ok(found) = scores(ctx, 2) else { return };
    ctx.array(found.len());
    for s in found {
        match s.and_then(geohash::decode_score) {
            None => ctx.null_array(),
            Some((lon, lat)) => {
                ctx.array(2);
                human(ctx.out, lon, ctx.proto);
                human(ctx.out, lat, ctx.proto);
            }
        }
    }
}

fn geodist(ctx: &mut Ctx) {
    let mut per = 1.0;
    if ctx.args.len() == 5 {
        match unit(ctx.arg(4)) {
            Some(u) => per = u,
            None => return ctx.err(BAD_UNIT),
        }
    } else if ctx.args.len() > 5 {
        return ctx.err(err::SYNTAX);
    }
    let Ok(found) = scores(ctx, 2) else { return };
    let (Some(a), Some(b)) = (found[0], found[1]) else {
        return ctx.null();
    };
    match (geohash::decode_score(a), geohash::decode_score(b)) {
        (Some(a), Some(b)) => {
            let d = geohash::distance(a.0, a.1, b.0, b.1) / per;
            ctx.bulk(distance_text(d).as_bytes())
        }
        _ => ctx.null(),
    }
}

fn geohash_cmd(ctx: &mut Ctx) {
    let Ok(found) = scores(ctx, 2) else { return };
    ctx.array(found.len());
    for s in found {
        match s.and_then(geohash::geohash_string) {
            Some(h) => ctx.bulk(&h),
            None => ctx.null(),
        }
    }
}

/// Which command shape is being parsed.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// GEORADIUS[_RO] key lon lat radius unit …
    Coords,
    /// GEORADIUSBYMEMBER[_RO] key member radius unit …
    Member,
    /// GEOSEARCH key FROM… BY… …
    Search,
    /// GEOSEARCHSTORE dest src FROM… BY… …
    SearchStore,
}

/// A point found by a search.
struct Point {
    member: Box<[u8]>,
    lon: f64,
    lat: f64,
    dist: f64,
    score: f64,
}

fn georadius(ctx: &mut Ctx) {
    search(ctx, Kind::Coords, true)
}
fn georadius_ro(ctx: &mut Ctx) {
    search(ctx, Kind::Coords, false)
}
fn georadiusbymember(ctx: &mut Ctx) {
    search(ctx, Kind::Member, true)
}
fn georadiusbymember_ro(ctx: &mut Ctx) {
    search(ctx, Kind::Member, false)
}
fn geosearch(ctx: &mut Ctx) {
    search(ctx, Kind::Search, false)
}
fn geosearchstore(ctx: &mut Ctx) {
    search(ctx, Kind::SearchStore, false)
}

/// The position of member `args[i]` in the source set `args[src]`, or the reply of an error.
fn member_pos(ctx: &mut Ctx, src: usize, i: usize) -> Option<(f64, f64)> {
    let now = ctx.now;
    let score = match zset_ref(&mut ctx.dbs[ctx.db], &ctx.args[src], now) {
        Ok(Some(z)) => z.score(&ctx.args[i]),
        _ => None,
    };
    let p = score.and_then(geohash::decode_score);
    if p.is_none() {
        ctx.err(NO_MEMBER);
    }
    p
}

/// The common body of GEORADIUS*, GEOSEARCH and GEOSEARCHSTORE (Redis's `georadiusGeneric`).
fn search(ctx: &mut Ctx, kind: Kind, store_ok: bool) {
    let src = if kind == Kind::SearchStore { 2 } else { 1 };
    let now = ctx.now;
    let key = ctx.args[src].clone();
    let exists = match zset_ref(&mut ctx.dbs[ctx.db], &key, now) {
        Err(_) => return ctx.wrongtype(),
        Ok(z) => z.is_some(),
    };
    let mut center = (0.0, 0.0);
    let mut shape = None;
    let mut per = 1.0;
    let base = match kind {
        Kind::Coords => {
            let Some(c) = lon_lat(ctx, 2) else { return };
            center = c;
            let Some((v, u)) = sizes(ctx, 4, &["radius"]) else {
                return;
            };
            (shape, per) = (Some(Shape::Circle(v[0] * u)), u);
            6
        }
        Kind::Member if !exists => 5,
        Kind::Member => {
            let Some(c) = member_pos(ctx, src, 2) else {
                return;
            };
            center = c;
            let Some((v, u)) = sizes(ctx, 3, &["radius"]) else {
                return;
            };
            (shape, per) = (Some(Shape::Circle(v[0] * u)), u);
            5
        }
        Kind::Search => 2,
        Kind::SearchStore => 3,
    };
    let searching = matches!(kind, Kind::Search | Kind::SearchStore);
    let mut store: Option<usize> = (kind == Kind::SearchStore).then_some(1);
    let (mut storedist, mut withdist, mut withhash, mut withcoord) = (false, false, false, false);
    let (mut from_member, mut from_loc, mut by_radius, mut by_box) = (false, false, false, false);
    let (mut any, mut count, mut sort) = (false, 0i64, None::<bool>);
    let n = ctx.args.len();
    let mut i = base;
    while i < n {
        let left = n - i - 1;
        if ctx.is(i, "withdist") {
            withdist = true;
        } else if ctx.is(i, "withhash") {
            withhash = true;
        } else if ctx.is(i, "withcoord") {
            withcoord = true;
        } else if ctx.is(i, "any") {
            any = true;
        } else if ctx.is(i, "asc") {
            sort = Some(true);
        } else if ctx.is(i, "desc") {
            sort = Some(false);
        } else if ctx.is(i, "count") && left >= 1 {
            let Some(c) = ctx.int(i + 1) else { return };
            if c <= 0 {
                return ctx.err("ERR COUNT must be > 0");
            }
            count = c;
            i += 1;
        } else if (ctx.is(i, "store") || ctx.is(i, "storedist"))
            && left >= 1
            && store_ok
            && !searching
        {
            store = Some(i + 1);
            storedist = ctx.is(i, "storedist");
            i += 1;
        } else if ctx.is(i, "storedist") && kind == Kind::SearchStore {
            storedist = true;
        } else if ctx.is(i, "frommember") && left >= 1 && searching && !from_loc {
            if exists {
                let Some(c) = member_pos(ctx, src, i + 1) else {
                    return;
                };
                center = c;
            }
            from_member = true;
            i += 1;
        } else if ctx.is(i, "fromlonlat") && left >= 2 && searching && !from_member {
            let Some(c) = lon_lat(ctx, i + 1) else { return };
            center = c;
            from_loc = true;
            i += 2;
        } else if ctx.is(i, "byradius") && left >= 2 && searching && !by_box {
            let Some((v, u)) = sizes(ctx, i + 1, &["radius"]) else {
                return;
            };
            (shape, per) = (Some(Shape::Circle(v[0] * u)), u);
            by_radius = true;
            i += 2;
        } else if ctx.is(i, "bybox") && left >= 3 && searching && !by_radius {
            let Some((v, u)) = sizes(ctx, i + 1, &["width", "height"]) else {
                return;
            };
            (shape, per) = (Some(Shape::Box(v[0] * u, v[1] * u)), u);
            by_box = true;
            i += 3;
        } else {
            return ctx.err(err::SYNTAX);
        }
        i += 1;
    }
    if store.is_some() && (withdist || withhash || withcoord) {
        let what = if kind == Kind::SearchStore {
            "GEOSEARCHSTORE"
        } else {
            "STORE option in GEORADIUS"
        };
        return ctx.err(&format!(
            "ERR {what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        ));
    }
    let name = String::from_utf8_lossy(ctx.arg(0)).into_owned();
    if searching && !(from_member || from_loc) {
        return ctx.err(&format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        ));
    }
    if searching && !(by_radius || by_box) {
        return ctx.err(&format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {name}"
        ));
    }
    if any && count == 0 {
        return ctx.err("ERR the ANY argument requires COUNT argument");
    }
    let (true, Some(shape)) = (exists, shape) else {
        return match store {
            Some(d) => {
                let dest = ctx.args[d].clone();
                ctx.db().delete(&dest);
                ctx.int_reply(0)
            }
            None => ctx.array(0),
        };
    };
    if count != 0 && sort.is_none() && !any {
        sort = Some(true);
    }
    let limit = if any { count as usize } else { 0 };
    let mut found = match zset_ref(&mut ctx.dbs[ctx.db], &key, now) {
        Ok(Some(z)) => collect(z, shape, center, limit),
        _ => Vec::new(),
    };
    if found.is_empty() && store.is_none() {
        return ctx.array(0);
    }
    if let Some(asc) = sort {
        found.sort_by(|a, b| {
            let o = a
                .dist
                .partial_cmp(&b.dist)
                .unwrap_or(std::cmp::Ordering::Equal);
            if asc {
                o
            } else {
                o.reverse()
            }
        });
    }
    if count > 0 {
        found.truncate(count as usize);
    }
    match store {
        None => reply(ctx, &found, per, withdist, withhash, withcoord),
        Some(d) => {
            let dest = ctx.args[d].clone();
            let db = ctx.db();
            db.delete(&dest);
            let pairs = found.iter().map(|p| {
                let s = if storedist { p.dist / per } else { p.score };
                (p.member.clone(), s)
            });
            let n = found.len();
            if n > 0 {
                db.insert(&dest, Value::ZSet(ZSet::from_pairs(pairs)), 0);
            }
            ctx.int_reply(n as i64)
        }
    }
}

/// The points of `z` within the shape, box by box (at most `limit` when not 0).
fn collect(z: &ZSet, shape: Shape, center: (f64, f64), limit: usize) -> Vec<Point> {
    let boxes = geohash::search_areas(shape, center);
    let mut found = Vec::new();
    let mut last: Option<usize> = None;
    for (i, h) in boxes.iter().enumerate() {
        if h.step == 0 && h.bits == 0 {
            continue;
        }
        if last.is_some_and(|l| boxes[l] == *h) {
            continue;
        }
        if limit > 0 && found.len() >= limit {
            break;
        }
        let (min, max) = geohash::score_range(*h);
        for (m, score) in z.iter_from(min) {
            if score >= max {
                break;
            }
            if let Some((lon, lat)) = geohash::decode_score(score) {
                if let Some(dist) = geohash::within(shape, center, (lon, lat)) {
                    found.push(Point {
                        member: m.into(),
                        lon,
                        lat,
                        dist,
                        score,
                    });
                }
            }
            if limit > 0 && found.len() >= limit {
                break;
            }
        }
        last = Some(i);
    }
    found
}

fn reply(ctx: &mut Ctx, found: &[Point], per: f64, dist: bool, hash: bool, coord: bool) {
    let extra = dist as usize + hash as usize + coord as usize;
    ctx.array(found.len());
    for p in found {
        if extra > 0 {
            ctx.array(extra + 1);
        }
        ctx.bulk(&p.member);
        if dist {
            ctx.bulk(distance_text(p.dist / per).as_bytes());
        }
        if hash {
            ctx.int_reply(p.score as i64);
        }
        if coord {
            ctx.array(2);
            human(ctx.out, p.lon, ctx.proto);
            human(ctx.out, p.lat, ctx.proto);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geo_distance_text_has_four_decimals() {
        assert_eq!(distance_text(0.0), "0.0000");
        assert_eq!(distance_text(166274.15156960033), "166274.1516");
        // 0.77505 * 10000 is 7750.4999…: rounded down, as Redis's llrint does.
        assert_eq!(distance_text(0.77505), "0.7750");
        assert_eq!(distance_text(-1.23456), "-1.2346");
        assert_eq!(unit(b"KM"), Some(1000.0));
        assert_eq!(unit(b"yd"), None);
    }
}
