//! Sending one routed request: pick the slot's backend (or a replica for pure reads), and for a
//! migrating slot first have the source hand the key over (reference §4, `forward.go`):
//! - sync: `SLOTSMGRTTAGONE target_host target_port 3000 key` on the source, then the target;
//! - semi-async: `SLOTSMGRT-EXEC-WRAPPER key cmd args…` on the source; code 2 is the answer,
//!   code 0 sends the command to the target, code 1 (key in transfer, write) retries.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::backend::{encode_args, Backend, Waiter};
use crate::config::MigrationMethod;
use crate::core::{Channel, Core, CoreTable};
use crate::sync::Batch;

/// Error for a slot without a group.
pub const SLOT_OFFLINE: &str = "-ERR handle request, slot is not ready, may be offline\r\n";

/// Where one request goes.
pub enum Target {
    /// Send to this backend now.
    Direct(Rc<Backend>),
    /// Migrating slot: pull the key from `source` first, then `target`.
    Migrating {
        source: Rc<Backend>,
        target: Rc<Backend>,
        target_addr: String,
        slot: u16,
    },
    /// The slot has no group.
    Offline,
}

/// Chooses the target of a request for `slot` on channel `db` (database and protocol).
pub fn target(
    core: &Core,
    t: &CoreTable,
    slot: u16,
    db: Channel,
    key: &[u8],
    replica_ok: bool,
) -> Target {
    let Some(route) = t.table.slots.get(slot as usize) else {
        return Target::Offline;
    };
    let Some(be) = route.backend else {
        return Target::Offline;
    };
    if let Some(src) = route.migrate_from {
        if !key.is_empty() && src != be {
            return Target::Migrating {
                source: core.backend(t, src, db),
                target: core.backend(t, be, db),
                target_addr: t.table.addr(be).to_string(),
                slot,
            };
        }
    }
    if replica_ok && !core.cfg.backend_primary_only && route.state.is_nothing() {
        for &r in &route.replicas {
            if r == be {
                continue;
            }
            let head = core.backend(t, r, db);
            let rb = head.for_slot(slot);
            rb.kick();
            if rb.is_connected() {
                return Target::Direct(rb);
            }
            // The slot's lane is still connecting: the replica's lane 0 serves the read (its
            // cores forward it) rather than the master.
            if head.is_connected() {
                return Target::Direct(head);
            }
        }
    }
    Target::Direct(core.backend(t, be, db).for_slot(slot))
}

/// Sends `args` to `target`, the reply landing at `batch[idx]`. A migrating target runs as a
/// task of its own (it takes round trips); its reply still lands in order. A `Direct` backend
/// must be the lane chosen for the request (`Backend::for_slot`) right before this call.
pub fn send(
    core: &Rc<Core>,
    target: Target,
    key: &[u8],
    args: &[Bytes],
    batch: &Rc<Batch>,
    idx: usize,
) {
    match target {
        Target::Direct(b) => b.send(
            Waiter {
                batch: batch.clone(),
                idx: idx as u32,
            },
            args,
        ),
        Target::Offline => batch.fill(idx, Bytes::from_static(SLOT_OFFLINE.as_bytes())),
        Target::Migrating {
            source,
            target,
            target_addr,
            slot,
        } => {
            let method = core.cfg.migration_method;
            let key = Bytes::copy_from_slice(key);
            let args = args.to_vec();
            let batch = batch.clone();
            glommio::spawn_local(async move {
                let reply = match method {
                    MigrationMethod::Sync => {
                        forward_sync(&source, &target, &target_addr, slot, key, &args).await
                    }
                    MigrationMethod::SemiAsync => {
                        forward_semi_async(&source, &target, slot, key, &args).await
                    }
                };
                batch.fill(idx, reply);
            })
            .detach();
        }
    }
}

async fn call(b: &Rc<Backend>, encode: impl FnOnce(&mut bytes::BytesMut)) -> Bytes {
    let one = Rc::new(Batch::with_len(1));
    b.send_with(
        Waiter {
            batch: one.clone(),
            idx: 0,
        },
        encode,
    );
    one.done().await;
    one.get(0)
}

/// `source` and `target` are lane 0 of their servers: each call picks the slot's lane as it
/// queues its request.
async fn forward_sync(
    source: &Rc<Backend>,
    target: &Rc<Backend>,
    target_addr: &str,
    slot: u16,
    key: Bytes,
    args: &[Bytes],
) -> Bytes {
    let (host, port) = target_addr.rsplit_once(':').unwrap_or((target_addr, "0"));
    let r = call(&source.for_slot(slot), |buf| {
        encode_args(
            buf,
            [
                &b"SLOTSMGRTTAGONE"[..],
                host.as_bytes(),
                port.as_bytes(),
                b"3000",
                &key,
            ]
            .into_iter(),
        )
    })
    .await;
    if r.first() == Some(&b'-') {
        return r;
    }
    call(&target.for_slot(slot), |buf| {
        encode_args(buf, args.iter().map(|a| &a[..]))
    })
    .await
}

async fn forward_semi_async(
    source: &Rc<Backend>,
    target: &Rc<Backend>,
    slot: u16,
    key: Bytes,
    args: &[Bytes],
) -> Bytes {
    let mut attempt: u64 = 0;
    loop {
        let r = call(&source.for_slot(slot), |buf| {
            let n = args.len() + 2;
            resp::encode::array(buf, n);
            resp::encode::bulk(buf, b"SLOTSMGRT-EXEC-WRAPPER");
            resp::encode::bulk(buf, &key);
            for a in args {
                resp::encode::bulk(buf, a);
            }
        })
        .await;
        match parse_wrapper(&r) {
            Wrapper::Error => return r,
            Wrapper::Done(inner) => return inner,
            Wrapper::NotHere => break,
            Wrapper::Busy => {
                attempt += 1;
                if attempt > 2000 {
                    return Bytes::from_static(
                        b"-ERR handle request, key is still being migrated, try again\r\n",
                    );
                }
                if attempt > 5 {
                    glommio::timer::sleep(Duration::from_millis(attempt.min(20))).await;
                } else {
                    glommio::yield_if_needed().await;
                }
            }
            Wrapper::Bad(msg) => return Bytes::from(format!("-ERR handle request, {msg}\r\n")),
        }
    }
    call(&target.for_slot(slot), |buf| {
        encode_args(buf, args.iter().map(|a| &a[..]))
    })
    .await
}

/// A `SLOTSMGRT-EXEC-WRAPPER` reply.
#[derive(Debug, PartialEq)]
pub enum Wrapper {
    /// An error reply (returned to the client as is).
    Error,
    /// Code 2: executed on the source; the inner reply.
    Done(Bytes),
    /// Code 0: the key is not on the source.
    NotHere,
    /// Code 1: the key is being transferred and the command writes.
    Busy,
    /// Code -1 or a malformed reply.
    Bad(String),
}

/// Reads `*2 :code <reply>`.
pub fn parse_wrapper(r: &Bytes) -> Wrapper {
    if r.first() == Some(&b'-') {
        return Wrapper::Error;
    }
    let bad = || {
        Wrapper::Bad(format!(
            "bad SLOTSMGRT-EXEC-WRAPPER reply {:?}",
            String::from_utf8_lossy(&r[..r.len().min(64)])
        ))
    };
    if !r.starts_with(b"*2\r\n:") {
        return bad();
    }
    let Some(eol) = r[5..].iter().position(|&c| c == b'\r').map(|p| p + 5) else {
        return bad();
    };
    let Some(code) = resp::parse_i64(&r[5..eol]) else {
        return bad();
    };
    let inner = r.slice((eol + 2).min(r.len())..);
    match code {
        2 => Wrapper::Done(inner),
        0 => Wrapper::NotHere,
        1 => Wrapper::Busy,
        _ => {
            let text = if inner.len() > 3 {
                String::from_utf8_lossy(&inner[1..inner.len() - 2]).into_owned()
            } else {
                String::new()
            };
            Wrapper::Bad(format!("migration wrapper refused the command: {text}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_replies() {
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        assert_eq!(
            parse_wrapper(&b("*2\r\n:2\r\n$1\r\nv\r\n")),
            Wrapper::Done(b("$1\r\nv\r\n"))
        );
        assert_eq!(parse_wrapper(&b("*2\r\n:0\r\n$-1\r\n")), Wrapper::NotHere);
        assert_eq!(parse_wrapper(&b("*2\r\n:1\r\n+busy\r\n")), Wrapper::Busy);
        assert_eq!(
            parse_wrapper(&b("-ERR unknown command\r\n")),
            Wrapper::Error
        );
        assert!(matches!(
            parse_wrapper(&b("*2\r\n:-1\r\n-ERR arity\r\n")),
            Wrapper::Bad(_)
        ));
        assert!(matches!(parse_wrapper(&b("+OK\r\n")), Wrapper::Bad(_)));
    }
}
