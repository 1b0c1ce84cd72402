//! Blocking commands through the proxy (BLPOP, BRPOP, BRPOPLPUSH, BLMOVE, BLMPOP, BZPOPMIN,
//! BZPOPMAX, BZMPOP; Codis 3.2 refused them).
//!
//! A blocked command would stall a shared backend pipeline, so it runs on a connection of the
//! session's own to the master of its keys' slot (one slot: `CROSSSLOT` otherwise), kept for the
//! session's next blocking commands (a worker calling BRPOP in a loop dials once). The request
//! goes out once the slot is neither locked nor migrating and the requests before it in the
//! client's pipeline are answered, so a `LPUSH q x` pipelined before `BRPOP q 0` runs first.
//!
//! While it waits, the session watches the topology: when the slot gets locked, starts to
//! migrate or changes master, the proxy sends `CLIENT UNBLOCK <id>` (on a connection of its own)
//! to the server holding the wait. The server then answers either what it popped (a push won the
//! race: the element is delivered, never lost) or the timeout's null, after which the command
//! waits for the slot to settle and runs again on the slot's master, with what is left of the
//! client's timeout. A client that goes away while blocked is noticed within 200 ms and its
//! connection to the server closed, which ends the server's wait.

use std::time::{Duration, Instant};

use bytes::Bytes;

/// Where the timeout is among a blocking command's arguments (lowercase name).
pub fn timeout_at(name: &str, argc: usize) -> usize {
    match name {
        "blmpop" | "bzmpop" => 1,
        _ => argc - 1,
    }
}

/// The client's deadline, from the timeout argument (seconds, fractions allowed; 0: none).
/// `None` when it is not a valid timeout: the server's error is then the reply.
pub fn deadline(arg: &[u8], now: Instant) -> Option<Option<Instant>> {
    let t: f64 = std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|t: &f64| t.is_finite() && *t >= 0.0)?;
    if t == 0.0 {
        return Some(None);
    }
    Some(Some(now + Duration::from_secs_f64(t.min(1e9))))
}

/// `args` with the timeout replaced by what is left until `deadline` (at least 1 ms, so the
/// server still answers with its own timeout reply).
pub fn with_timeout(args: &[Bytes], at: usize, deadline: Option<Instant>) -> Vec<Bytes> {
    let mut v = args.to_vec();
    if let Some(d) = deadline {
        let left = d.saturating_duration_since(Instant::now()).as_secs_f64();
        v[at] = Bytes::from(format!("{:.3}", left.max(0.001)));
    }
    v
}

/// Whether `reply` is a null (a blocking command's timeout reply, RESP2 or RESP3).
pub fn is_null(reply: &[u8]) -> bool {
    matches!(reply, b"*-1\r\n" | b"$-1\r\n" | b"_\r\n")
}

/// Whether the client's socket `fd` was closed by the peer (or shut down by CLIENT KILL).
pub fn client_gone(fd: i32) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: a non-blocking peek of one byte on the session's own socket descriptor.
    let n = unsafe {
        libc::recv(
            fd,
            b.as_mut_ptr() as *mut libc::c_void,
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        let now = Instant::now();
        assert_eq!(deadline(b"0", now), Some(None));
        assert_eq!(
            deadline(b"1.5", now),
            Some(Some(now + Duration::from_millis(1500)))
        );
        assert!(deadline(b"-1", now).is_none());
        assert!(deadline(b"x", now).is_none());
        assert!(deadline(b"inf", now).is_none());
        assert_eq!(timeout_at("blpop", 4), 3);
        assert_eq!(timeout_at("bzmpop", 5), 1);
        let args: Vec<Bytes> = ["BLPOP", "q", "10"]
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect();
        let v = with_timeout(&args, 2, Some(Instant::now() + Duration::from_secs(4)));
        let left: f64 = std::str::from_utf8(&v[2]).unwrap().parse().unwrap();
        assert!(left > 3.0 && left <= 4.0, "{left}");
        let v = with_timeout(&args, 2, Some(Instant::now()));
        assert_eq!(&v[2][..], b"0.001");
        assert_eq!(with_timeout(&args, 2, None), args);
        assert!(is_null(b"*-1\r\n") && is_null(b"_\r\n") && !is_null(b"*0\r\n"));
    }
}
