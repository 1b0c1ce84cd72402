//! `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]` over the whole cluster.
//!
//! Codis 3.2 refused SCAN: the supported way to walk the keys was `SLOTSSCAN` slot by slot (Codis
//! issue #1152), so `redis-cli --scan`, `--bigkeys` and key browsers did not work through it.
//! Here each SCAN call is one `SLOTSSCAN` page of one slot, and the proxy's cursor says where:
//!
//! ```text
//!   cursor = inner << 11 | phase << 10 | slot
//! ```
//!
//! `slot` is the slot being walked (0..1024, in order), `inner` the `SLOTSSCAN` cursor within it
//! (codis-server's fits in 52 bits: a position in a fixed hash order, stable under writes), and
//! `phase` matters only while the slot migrates: phase 0 walks the source, phase 1 then the
//! target. Keys only ever move from source to target, and the target is walked after the source
//! is done, so a key that exists for the whole SCAN is returned at least once, as Redis
//! promises. A slot that is not migrating is walked on its master whatever the phase. The cursor
//! comes back 0 after slot 1023, and a page may be empty (small or empty slots): both as in
//! Redis.

use bytes::{Bytes, BytesMut};
use resp::encode;

/// Where a SCAN cursor points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub slot: u16,
    pub phase: u8,
    pub inner: u64,
}

/// How to turn the page's `SLOTSSCAN` cursor into the next SCAN cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    slot: u16,
    phase: u8,
    /// The page came from a migrating slot's source: the target comes next.
    then_target: bool,
}

const INNER_BITS: u32 = 64 - 11;

impl Cursor {
    pub fn decode(c: u64) -> Cursor {
        Cursor {
            slot: (c & 1023) as u16,
            phase: ((c >> 10) & 1) as u8,
            inner: c >> 11,
        }
    }

    pub fn encode(self) -> u64 {
        self.inner << 11 | u64::from(self.phase) << 10 | u64::from(self.slot)
    }
}

/// The cursor and the options to pass on (`MATCH`, `COUNT`, `TYPE`), or Redis's error.
pub fn parse(args: &[Bytes]) -> Result<(Cursor, Vec<Bytes>), &'static str> {
    let a = &args[1];
    let c = std::str::from_utf8(a)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or("ERR invalid cursor")?;
    let mut opts = Vec::new();
    for pair in args[2..].chunks(2) {
        let [name, value] = pair else {
            return Err("ERR syntax error");
        };
        if name.eq_ignore_ascii_case(b"count") {
            match resp::parse_i64(value) {
                Some(n) if n >= 1 => {}
                Some(_) => return Err("ERR syntax error"),
                None => return Err("ERR value is not an integer or out of range"),
            }
        } else if !name.eq_ignore_ascii_case(b"match") && !name.eq_ignore_ascii_case(b"type") {
            return Err("ERR syntax error");
        }
        opts.extend_from_slice(pair);
    }
    Ok((Cursor::decode(c), opts))
}

/// Which server to ask (`owner`: the slot's master; `source`: the master it migrates from) and
/// how the reply's cursor continues.
pub fn target(cur: Cursor, owner: u32, source: Option<u32>) -> (u32, Step) {
    let from_source = source.is_some() && cur.phase == 0;
    let addr = match source {
        Some(s) if from_source => s,
        _ => owner,
    };
    let step = Step {
        slot: cur.slot,
        phase: cur.phase,
        then_target: from_source,
    };
    (addr, step)
}

/// `SLOTSSCAN slot inner [options…]` for the page at `cur`.
pub fn request(cur: Cursor, opts: &[Bytes]) -> Vec<Bytes> {
    let mut v = Vec::with_capacity(3 + opts.len());
    v.push(Bytes::from_static(b"SLOTSSCAN"));
    v.push(Bytes::from(cur.slot.to_string()));
    v.push(Bytes::from(cur.inner.to_string()));
    v.extend_from_slice(opts);
    v
}

/// The SCAN cursor after a page whose `SLOTSSCAN` cursor is `inner`; None if it does not fit.
fn next(step: Step, inner: u64) -> Option<u64> {
    if inner != 0 {
        if inner >> INNER_BITS != 0 {
            return None;
        }
        let c = Cursor {
            slot: step.slot,
            phase: step.phase,
            inner,
        };
        return Some(c.encode());
    }
    if step.then_target {
        let c = Cursor {
            slot: step.slot,
            phase: 1,
            inner: 0,
        };
        return Some(c.encode());
    }
    Some(if step.slot as usize + 1 >= resp::MAX_SLOTS {
        0
    } else {
        u64::from(step.slot) + 1
    })
}

/// Writes the SCAN reply for the backend's `SLOTSSCAN` reply (`*2 $n cursor *m keys…`); an
/// error or anything unexpected is passed on as it is.
pub fn reply(step: Step, page: &[u8], out: &mut BytesMut) {
    let Some((inner, rest)) = split_cursor(page) else {
        out.extend_from_slice(page);
        return;
    };
    match next(step, inner) {
        Some(c) => {
            encode::array(out, 2);
            encode::bulk(out, c.to_string().as_bytes());
            out.extend_from_slice(rest);
        }
        None => encode::error(
            out,
            "ERR handle response, SLOTSSCAN cursor too large for the proxy's SCAN",
        ),
    }
}

/// The cursor of a `*2\r\n$n\r\n<cursor>\r\n…` reply and the bytes after it.
fn split_cursor(page: &[u8]) -> Option<(u64, &[u8])> {
    let rest = page.strip_prefix(b"*2\r\n$")?;
    let nl = memchr_crlf(rest)?;
    let len: usize = std::str::from_utf8(&rest[..nl]).ok()?.parse().ok()?;
    let body = rest.get(nl + 2..)?;
    let digits = body.get(..len)?;
    let inner = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let after = body.get(len..)?.strip_prefix(b"\r\n")?;
    Some((inner, after))
}

fn memchr_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testutil::args;

    #[test]
    fn cursor_walks_slots_and_both_sides_of_a_migration() {
        let c = Cursor {
            slot: 1023,
            phase: 1,
            inner: (1 << INNER_BITS) - 1,
        };
        assert_eq!(Cursor::decode(c.encode()), c);
        // A slot that is not migrating: its master, then the next slot.
        let (addr, step) = target(Cursor::decode(5), 7, None);
        assert_eq!(addr, 7);
        assert_eq!(next(step, 0), Some(6));
        assert_eq!(Cursor::decode(next(step, 99).unwrap()).inner, 99);
        // Migrating: source first (phase 0), then the target (phase 1) from its start.
        let (addr, step) = target(Cursor::decode(5), 7, Some(3));
        assert_eq!(addr, 3);
        let t = next(step, 0).unwrap();
        assert_eq!(t, 1 << 10 | 5);
        let (addr, step) = target(Cursor::decode(t), 7, Some(3));
        assert_eq!(addr, 7);
        assert_eq!(next(step, 0), Some(6));
        // The last slot ends the iteration; a cursor that cannot be carried is an error.
        let (_, step) = target(Cursor::decode(1023), 7, None);
        assert_eq!(next(step, 0), Some(0));
        assert_eq!(next(step, 1 << INNER_BITS), None);
    }

    #[test]
    fn reply_rewrites_only_the_cursor() {
        let (_, step) = target(Cursor::decode(3), 1, None);
        let mut out = BytesMut::new();
        reply(step, b"*2\r\n$2\r\n42\r\n*1\r\n$1\r\nk\r\n", &mut out);
        let want = format!(
            "*2\r\n${}\r\n{}\r\n*1\r\n$1\r\nk\r\n",
            (42u64 << 11 | 3).to_string().len(),
            42u64 << 11 | 3
        );
        assert_eq!(&out[..], want.as_bytes());
        out.clear();
        reply(step, b"*2\r\n$1\r\n0\r\n*0\r\n", &mut out);
        assert_eq!(&out[..], b"*2\r\n$1\r\n4\r\n*0\r\n");
        out.clear();
        reply(step, b"-ERR boom\r\n", &mut out);
        assert_eq!(&out[..], b"-ERR boom\r\n");
    }

    #[test]
    fn parse_checks_like_redis() {
        assert_eq!(
            parse(&args(&["SCAN", "x"])).unwrap_err(),
            "ERR invalid cursor"
        );
        assert_eq!(
            parse(&args(&["SCAN", "-1"])).unwrap_err(),
            "ERR invalid cursor"
        );
        assert_eq!(
            parse(&args(&["SCAN", "0", "COUNT"])).unwrap_err(),
            "ERR syntax error"
        );
        assert_eq!(
            parse(&args(&["SCAN", "0", "COUNT", "0"])).unwrap_err(),
            "ERR syntax error"
        );
        assert_eq!(
            parse(&args(&["SCAN", "0", "BOGUS", "1"])).unwrap_err(),
            "ERR syntax error"
        );
        let (c, opts) = parse(&args(&["SCAN", "2049", "match", "k*", "COUNT", "5"])).unwrap();
        assert_eq!((c.slot, c.phase, c.inner), (1, 0, 1));
        assert_eq!(opts.len(), 4);
    }
}
