//! Redis 7 Functions follow the slots: before the slots of a wave move from one group to
//! another, the executor copies the source master's libraries to the target master
//! (`FUNCTION DUMP` on the source, `FUNCTION RESTORE payload REPLACE` on the target), so an
//! `FCALL` on a migrated key finds its function on the group that now owns the key, even when
//! the library was loaded on the source group only (straight on its server, or before the
//! target group existed). Libraries loaded through codis-proxy are on every group already.
//!
//! A server that predates Functions (Codis's codis-server, redis-server before 7.0) answers
//! `ERR unknown command`: there is nothing to copy and the migration goes on. Any other error
//! (a library whose function name the target already has in another library, a timeout) stops
//! the migration before any slot of the wave moves.

use bytes::Bytes;
use resp::Frame;

use crate::error::{CtlError, Result};
use crate::redis::RedisConn;

/// Bytes of a `FUNCTION DUMP` that holds no library: the RDB version (2) and the CRC64 (8).
pub const EMPTY_DUMP: usize = 10;

/// What [`copy`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copied {
    /// The source (or the target) does not know `FUNCTION`.
    Unsupported,
    /// The source has no library.
    Nothing,
    /// The target restored a payload of this many bytes.
    Libraries(usize),
}

/// Copies `source`'s function libraries to `target`, replacing libraries of the same names.
pub async fn copy(source: &mut RedisConn, target: &mut RedisConn) -> Result<Copied> {
    let payload = match source.call(&["FUNCTION", "DUMP"]).await {
        Ok(Frame::Bulk(b)) => b,
        Ok(other) => {
            return Err(CtlError::redis(
                source.addr(),
                format!("FUNCTION DUMP: unexpected reply {other:?}"),
            ))
        }
        Err(e) if unknown_command(&e) => {
            tracing::debug!("{}: no functions to copy ({e})", source.addr());
            return Ok(Copied::Unsupported);
        }
        Err(e) => return Err(e),
    };
    if !holds_libraries(&payload) {
        return Ok(Copied::Nothing);
    }
    let restore: [&[u8]; 4] = [b"FUNCTION", b"RESTORE", &payload, b"REPLACE"];
    match target.call(&restore).await {
        Ok(_) => {
            tracing::debug!(
                "copied the functions of {} to {} ({} bytes)",
                source.addr(),
                target.addr(),
                payload.len()
            );
            Ok(Copied::Libraries(payload.len()))
        }
        Err(e) if unknown_command(&e) => {
            // The source has libraries: an FCALL on a migrated key will not find them.
            tracing::warn!(
                "{} does not know FUNCTION: the functions of {} are not copied ({e})",
                target.addr(),
                source.addr()
            );
            Ok(Copied::Unsupported)
        }
        Err(e) => Err(CtlError::redis(
            target.addr(),
            format!(
                "cannot copy the functions of {} before its slots move: {}",
                source.addr(),
                cause(&e)
            ),
        )),
    }
}

/// Whether a `FUNCTION DUMP` payload holds any library.
pub fn holds_libraries(payload: &Bytes) -> bool {
    payload.len() > EMPTY_DUMP
}

/// Whether `e` is a server's `ERR unknown command` (it does not know `FUNCTION`).
fn unknown_command(e: &CtlError) -> bool {
    cause(e).starts_with("ERR unknown command")
}

/// The server's reply in a [`CtlError::Redis`] (without the command name
/// [`RedisConn::call`] puts first).
fn cause(e: &CtlError) -> &str {
    match e {
        CtlError::Redis { cause, .. } => cause.strip_prefix("FUNCTION: ").unwrap_or(cause),
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_command_and_empty_dump() {
        let old = CtlError::redis(
            "127.0.0.1:1",
            "FUNCTION: ERR unknown command 'FUNCTION', with args beginning with: 'DUMP' ",
        );
        assert!(unknown_command(&old));
        let taken = CtlError::redis("127.0.0.1:1", "FUNCTION: ERR Library 'lib' already exists");
        assert!(!unknown_command(&taken));
        assert_eq!(cause(&taken), "ERR Library 'lib' already exists");
        assert!(!unknown_command(&CtlError::redis(
            "127.0.0.1:1",
            "FUNCTION: timed out"
        )));
        // FUNCTION DUMP of redis-server 7.0.15 without a library, then with one.
        let empty = Bytes::from_static(b"\x0a\x00\x5d\x9b\x5c\x40\x0f\x7f\xa2\xda");
        assert!(!holds_libraries(&empty));
        let one = Bytes::from_static(
            b"\xf5@B#!lua name=l\nredis.register_function('f', function() return 1 end)\n\
              \x00b\x95h\xe6_A+\xe2",
        );
        assert!(holds_libraries(&one));
    }
}
