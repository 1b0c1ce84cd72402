//! Multi-key commands split by backend and merged in key order: `MGET`, `MSET`, `DEL`, `EXISTS`,
//! `TOUCH`, `UNLINK`. Keys are grouped per backend server (one sub-request per server, not one
//! per key as Codis does); keys of a migrating slot go one by one through the migration path.
//! `DBSIZE` goes to every group master and the counts are summed; so do `SCRIPT` and what changes
//! `FUNCTION` libraries, their replies merged (`SplitKind::Same`, `First`, `All`, `Any`).

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use resp::encode;

use crate::commands::SplitKind;
use crate::core::{Channel, Core, CoreTable};
use crate::router::{self, SLOT_OFFLINE};
use crate::sync::Batch;

/// How a split request's replies are put back together.
#[derive(Clone, Copy, Debug)]
pub struct Merge {
    pub kind: SplitKind,
    /// Range in the session's `parts` (reply positions of the sub-requests).
    pub parts: (u32, u32),
    /// Range in the session's `map` (for each key: sub-request, position in it).
    pub map: (u32, u32),
}

/// Reused buffers of a session's split requests.
#[derive(Default)]
pub struct SplitBufs {
    pub parts: Vec<u32>,
    pub map: Vec<(u32, u32)>,
    groups: Vec<Group>,
}

struct Group {
    id: u64,
    slot: u16,
    key: Bytes,
    args: Vec<Bytes>,
}

/// Splits `args` per backend and sends the parts; `Err(())` if the request fits one backend and
/// should be sent as it is.
pub fn split(
    core: &Rc<Core>,
    t: &CoreTable,
    db: Channel,
    kind: SplitKind,
    args: &[Bytes],
    batch: &Rc<Batch>,
    bufs: &mut SplitBufs,
) -> Result<Merge, Option<u16>> {
    let step = if kind == SplitKind::Mset { 2 } else { 1 };
    let nkeys = (args.len() - 1) / step;
    bufs.groups.clear();
    let map_start = bufs.map.len();
    for k in 0..nkeys {
        let key = &args[1 + k * step];
        let slot = resp::slot(key);
        let route = &t.table.slots[slot as usize];
        // One sub-request per server and lane (server core): no key hops between cores.
        let id = match route.backend {
            None => u64::MAX - 1,
            Some(_) if route.migrate_from.is_some() => (1 << 40) | k as u64,
            Some(b) => (u64::from(core.backend(t, b, db).lane_of(slot)) << 32) | b as u64,
        };
        let gi = match bufs.groups.iter().position(|g| g.id == id) {
            Some(i) => i,
            None => {
                bufs.groups.push(Group {
                    id,
                    slot,
                    key: key.clone(),
                    args: vec![args[0].clone()],
                });
                bufs.groups.len() - 1
            }
        };
        let g = &mut bufs.groups[gi];
        let pos = (g.args.len() - 1) / step;
        g.args
            .extend_from_slice(&args[1 + k * step..1 + (k + 1) * step]);
        bufs.map.push((gi as u32, pos as u32));
    }
    if bufs.groups.len() == 1 {
        bufs.map.truncate(map_start);
        let g = &bufs.groups[0];
        return Err((g.id != u64::MAX - 1).then_some(g.slot));
    }
    let parts_start = bufs.parts.len();
    for g in bufs.groups.drain(..) {
        let idx = batch.push_slot();
        bufs.parts.push(idx as u32);
        if g.id == u64::MAX - 1 {
            batch.fill(idx, Bytes::from_static(SLOT_OFFLINE.as_bytes()));
            continue;
        }
        let target = router::target(core, t, g.slot, db, &g.key, false);
        router::send(core, target, &g.key, &g.args, batch, idx);
    }
    Ok(Merge {
        kind,
        parts: (parts_start as u32, (bufs.parts.len() - parts_start) as u32),
        map: (map_start as u32, (bufs.map.len() - map_start) as u32),
    })
}

/// Sends `args` to every group master of `t` (each address once, a migrating slot's source
/// included) and returns the merge of their replies by `kind` (`DBSIZE`: summed; `SCRIPT`,
/// `FUNCTION`); None when no slot has a master. For `All`, `known[i]` makes element `i` 1
/// whatever the groups say (`SCRIPT EXISTS` of a script this core can send to any group,
/// `scripts`).
#[allow(clippy::too_many_arguments)]
pub fn to_every_master(
    core: &Rc<Core>,
    t: &CoreTable,
    db: Channel,
    kind: SplitKind,
    args: &[Bytes],
    known: &[bool],
    batch: &Rc<Batch>,
    bufs: &mut SplitBufs,
) -> Option<Merge> {
    let mut addrs: Vec<u32> = t
        .table
        .slots
        .iter()
        .flat_map(|s| [s.backend, s.migrate_from])
        .flatten()
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    if addrs.is_empty() {
        return None;
    }
    let parts_start = bufs.parts.len();
    for a in addrs {
        let idx = batch.push_slot();
        bufs.parts.push(idx as u32);
        let b = core.backend(t, a, db);
        router::send(core, router::Target::Direct(b), &[], args, batch, idx);
    }
    let map_start = bufs.map.len();
    if kind == SplitKind::All && known.contains(&true) {
        bufs.map.extend(known.iter().map(|&k| (k as u32, 0)));
    }
    Some(Merge {
        kind,
        parts: (parts_start as u32, (bufs.parts.len() - parts_start) as u32),
        map: (map_start as u32, (bufs.map.len() - map_start) as u32),
    })
}

/// Writes the merged reply of `m` to `out`; returns whether it is an error.
pub fn merge(m: &Merge, bufs: &SplitBufs, batch: &Batch, out: &mut BytesMut) -> bool {
    let parts = &bufs.parts[m.parts.0 as usize..(m.parts.0 + m.parts.1) as usize];
    let map = &bufs.map[m.map.0 as usize..(m.map.0 + m.map.1) as usize];
    batch.with_replies(|replies| {
        let reply = |i: u32| &replies[parts[i as usize] as usize];
        if m.kind == SplitKind::Any {
            let n = parts.len() as u32;
            let pick = (0..n)
                .find(|&i| reply(i).first() == Some(&b'+'))
                .or_else(|| (0..n).find(|&i| !reply(i).starts_with(b"-NOTBUSY")))
                .unwrap_or(0);
            let r = reply(pick);
            out.extend_from_slice(r);
            return r.first() == Some(&b'-');
        }
        for i in 0..parts.len() as u32 {
            let r = reply(i);
            if r.first() == Some(&b'-') {
                out.extend_from_slice(r);
                return true;
            }
        }
        let bad = |out: &mut BytesMut| {
            encode::error(out, "ERR handle response, unexpected reply from backend");
            true
        };
        match m.kind {
            SplitKind::Mset | SplitKind::Any => {
                encode::ok(out);
                false
            }
            SplitKind::First => {
                out.extend_from_slice(reply(0));
                false
            }
            SplitKind::Same => {
                let first = reply(0);
                if (1..parts.len() as u32).any(|i| reply(i) != first) {
                    encode::error(out, "ERR handle response, backends answered differently");
                    return true;
                }
                out.extend_from_slice(first);
                false
            }
            SplitKind::All => {
                let mut all: Vec<bool> = Vec::new();
                for i in 0..parts.len() as u32 {
                    let r = reply(i);
                    let Some(elems) = elements(r) else {
                        return bad(out);
                    };
                    if i == 0 {
                        all = vec![true; elems.len()];
                    } else if elems.len() != all.len() {
                        return bad(out);
                    }
                    for (a, &(s, e)) in all.iter_mut().zip(&elems) {
                        match &r[s..e] {
                            b":1\r\n" => {}
                            b":0\r\n" => *a = false,
                            _ => return bad(out),
                        }
                    }
                }
                for (a, m) in all.iter_mut().zip(map) {
                    *a |= m.0 == 1;
                }
                encode::array(out, all.len());
                for a in all {
                    encode::int(out, a as i64);
                }
                false
            }
            SplitKind::Sum => {
                let mut sum = 0i64;
                for i in 0..parts.len() as u32 {
                    let r = reply(i);
                    if r.len() < 4 || r[0] != b':' {
                        return bad(out);
                    }
                    match resp::parse_i64(&r[1..r.len() - 2]) {
                        Some(n) => sum += n,
                        None => return bad(out),
                    }
                }
                encode::int(out, sum);
                false
            }
            SplitKind::Mget => {
                // Element boundaries of each part's array.
                let mut elems: Vec<Vec<(usize, usize)>> = Vec::with_capacity(parts.len());
                for i in 0..parts.len() as u32 {
                    match elements(reply(i)) {
                        Some(e) => elems.push(e),
                        None => return bad(out),
                    }
                }
                encode::array(out, map.len());
                for &(p, pos) in map {
                    let Some(&(s, e)) = elems[p as usize].get(pos as usize) else {
                        return bad(out);
                    };
                    out.extend_from_slice(&reply(p)[s..e]);
                }
                false
            }
        }
    })
}

/// Byte ranges of the elements of a RESP array reply.
fn elements(r: &[u8]) -> Option<Vec<(usize, usize)>> {
    if r.first() != Some(&b'*') {
        return None;
    }
    let eol = r.iter().position(|&c| c == b'\n')?;
    let n = resp::parse_i64(&r[1..eol.checked_sub(1)?])?;
    let mut pos = eol + 1;
    let mut v = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let len = resp::frame::frame_len(&r[pos..]).ok()??;
        v.push((pos, pos + len));
        pos += len;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_in_key_order() {
        let batch = Batch::with_len(2);
        batch.fill(0, Bytes::from_static(b"*2\r\n$1\r\na\r\n$-1\r\n"));
        batch.fill(1, Bytes::from_static(b"*1\r\n$1\r\nb\r\n"));
        let bufs = SplitBufs {
            parts: vec![0, 1],
            map: vec![(1, 0), (0, 0), (0, 1)],
            groups: Vec::new(),
        };
        let m = Merge {
            kind: SplitKind::Mget,
            parts: (0, 2),
            map: (0, 3),
        };
        let mut out = BytesMut::new();
        assert!(!merge(&m, &bufs, &batch, &mut out));
        assert_eq!(&out[..], b"*3\r\n$1\r\nb\r\n$1\r\na\r\n$-1\r\n");
        let batch = Batch::with_len(2);
        batch.fill(0, Bytes::from_static(b":2\r\n"));
        batch.fill(1, Bytes::from_static(b":3\r\n"));
        let m = Merge {
            kind: SplitKind::Sum,
            parts: (0, 2),
            map: (0, 0),
        };
        let mut out = BytesMut::new();
        merge(&m, &bufs, &batch, &mut out);
        assert_eq!(&out[..], b":5\r\n");
        let batch = Batch::with_len(2);
        batch.fill(0, Bytes::from_static(b":2\r\n"));
        batch.fill(1, Bytes::from_static(b"-ERR x\r\n"));
        let mut out = BytesMut::new();
        assert!(merge(&m, &bufs, &batch, &mut out));
        assert_eq!(&out[..], b"-ERR x\r\n");
    }

    /// `FUNCTION LOAD` through every master: the first reply, or the first error.
    #[test]
    fn first_reply_unless_an_error() {
        let bufs = SplitBufs {
            parts: vec![0, 1],
            ..Default::default()
        };
        let m = Merge {
            kind: SplitKind::First,
            parts: (0, 2),
            map: (0, 0),
        };
        let batch = Batch::with_len(2);
        batch.fill(0, Bytes::from_static(b"$3\r\nlib\r\n"));
        batch.fill(1, Bytes::from_static(b"$3\r\nlib\r\n"));
        let mut out = BytesMut::new();
        assert!(!merge(&m, &bufs, &batch, &mut out));
        assert_eq!(&out[..], b"$3\r\nlib\r\n");
        let batch = Batch::with_len(2);
        batch.fill(0, Bytes::from_static(b"$3\r\nlib\r\n"));
        batch.fill(
            1,
            Bytes::from_static(b"-ERR Library 'lib' already exists\r\n"),
        );
        let mut out = BytesMut::new();
        assert!(merge(&m, &bufs, &batch, &mut out));
        assert_eq!(&out[..], b"-ERR Library 'lib' already exists\r\n");
    }

    /// `SCRIPT KILL`, `FUNCTION KILL`: the group that runs a script answers.
    #[test]
    fn kill_answer_comes_from_the_busy_group() {
        let bufs = SplitBufs {
            parts: vec![0, 1, 2],
            ..Default::default()
        };
        let m = Merge {
            kind: SplitKind::Any,
            parts: (0, 3),
            map: (0, 0),
        };
        let notbusy: &[u8] = b"-NOTBUSY No scripts in execution right now.\r\n";
        let unkillable: &[u8] = b"-UNKILLABLE Sorry the script already executed write commands\r\n";
        let cases: [(&[&[u8]; 3], &[u8]); 3] = [
            (&[notbusy, b"+OK\r\n", unkillable], b"+OK\r\n"),
            (&[notbusy, unkillable, notbusy], unkillable),
            (&[notbusy, notbusy, notbusy], notbusy),
        ];
        for (replies, want) in cases {
            let batch = Batch::with_len(3);
            for (i, r) in replies.iter().enumerate() {
                batch.fill(i, Bytes::copy_from_slice(r));
            }
            let mut out = BytesMut::new();
            assert_eq!(merge(&m, &bufs, &batch, &mut out), want[0] == b'-');
            assert_eq!(&out[..], want);
        }
    }
}
