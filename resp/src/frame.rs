//! RESP2/RESP3 reply frames: a value type, a parser (for clients, the proxy and the bench) and an
//! encoder. `frame_len` finds where the next complete reply ends without building it, which is all
//! a pass-through proxy needs.

use bytes::{Buf, Bytes, BytesMut};

use crate::encode;
use crate::error::ProtocolError;
use crate::request::parse_i64;

/// Deepest nesting accepted when parsing replies (guards the stack against hostile peers).
const MAX_DEPTH: usize = 64;

/// A RESP value.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+text`
    Simple(Bytes),
    /// `-text`
    Error(Bytes),
    /// `:n`
    Integer(i64),
    /// `$n` bulk string
    Bulk(Bytes),
    /// `$-1`, `*-1` or RESP3 `_`
    Null,
    /// `*n`
    Array(Vec<Frame>),
    /// RESP3 `%n`, as key/value pairs
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~n`
    Set(Vec<Frame>),
    /// RESP3 `,d`
    Double(f64),
    /// RESP3 `#t` / `#f`
    Boolean(bool),
    /// RESP3 `(n`, kept as its digits
    BigNumber(Bytes),
    /// RESP3 `=n\r\nfmt:text`
    Verbatim(Bytes),
    /// RESP3 `>n`
    Push(Vec<Frame>),
}

impl Frame {
    /// A bulk string frame.
    pub fn bulk(b: impl Into<Bytes>) -> Frame {
        Frame::Bulk(b.into())
    }

    /// An array of bulk strings.
    pub fn command<I, T>(args: I) -> Frame
    where
        I: IntoIterator<Item = T>,
        T: Into<Bytes>,
    {
        Frame::Array(args.into_iter().map(|a| Frame::Bulk(a.into())).collect())
    }

    /// Append this frame's wire form to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            Frame::Simple(s) => encode::line(buf, b'+', s),
            Frame::Error(s) => encode::line(buf, b'-', s),
            Frame::Integer(i) => encode::int(buf, *i),
            Frame::Bulk(b) => encode::bulk(buf, b),
            Frame::Null => buf.extend_from_slice(b"$-1\r\n"),
            Frame::Array(v) | Frame::Set(v) | Frame::Push(v) => {
                let t = match self {
                    Frame::Array(_) => b'*',
                    Frame::Set(_) => b'~',
                    _ => b'>',
                };
                encode::header(buf, t, v.len() as i64);
                for f in v {
                    f.encode(buf);
                }
            }
            Frame::Map(kv) => {
                encode::header(buf, b'%', kv.len() as i64);
                for (k, v) in kv {
                    k.encode(buf);
                    v.encode(buf);
                }
            }
            Frame::Double(d) => {
                buf.extend_from_slice(b",");
                encode::push_double_text(buf, *d);
                buf.extend_from_slice(b"\r\n");
            }
            Frame::Boolean(b) => buf.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Frame::BigNumber(n) => encode::line(buf, b'(', n),
            Frame::Verbatim(v) => {
                encode::header(buf, b'=', v.len() as i64);
                buf.extend_from_slice(v);
                buf.extend_from_slice(b"\r\n");
            }
        }
    }

    /// The frame's wire bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::new();
        self.encode(&mut b);
        b.freeze()
    }

    /// Parse one complete frame from the front of `buf`, consuming it. `Ok(None)`: incomplete.
    pub fn parse(buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        let n = match frame_len(buf)? {
            Some(n) => n,
            None => return Ok(None),
        };
        let bytes = buf.split_to(n).freeze();
        let mut cur = bytes.clone();
        let f = parse_complete(&bytes, &mut cur, 0)?;
        Ok(Some(f))
    }
}

/// The value in a `CONFIG GET <one key>` reply (an array in RESP2, a map in RESP3).
pub fn config_value(reply: &[u8]) -> Option<String> {
    let mut buf = bytes::BytesMut::from(reply);
    let value = match Frame::parse(&mut buf).ok()?? {
        Frame::Array(mut v) if v.len() == 2 => v.pop(),
        Frame::Map(mut m) if m.len() == 1 => m.pop().map(|(_, v)| v),
        _ => None,
    };
    match value? {
        Frame::Bulk(v) | Frame::Simple(v) => Some(String::from_utf8_lossy(&v).into_owned()),
        _ => None,
    }
}

/// Whether `reply`, the answer to `CONFIG GET port` through a Unix socket, shows the server
/// expected at `port`: a socket path that another server on the host holds is refused.
pub fn expect_port(reply: &[u8], port: u16) -> Result<(), String> {
    let said = config_value(reply);
    if said.as_deref() == Some(port.to_string().as_str()) {
        return Ok(());
    }
    Err(format!(
        "the server behind it listens on port {}, not {port}",
        said.unwrap_or_else(|| "?".into())
    ))
}

/// Length of the complete reply at the front of `buf`, or `None` when more bytes are needed.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    let mut pos = 0;
    // Explicit stack of "frames still owed" so deep nesting costs no recursion.
    let mut owed: Vec<i64> = Vec::new();
    let mut remaining: i64 = 1;
    loop {
        while remaining == 0 {
            match owed.pop() {
                Some(r) => remaining = r,
                None => return Ok(Some(pos)),
            }
        }
        if pos >= buf.len() {
            return Ok(None);
        }
        let t = buf[pos];
        let eol = match memchr::memchr(b'\n', &buf[pos..]) {
            Some(i) => pos + i,
            None => return Ok(None),
        };
        if eol <= pos + 1 || buf[eol - 1] != b'\r' {
            return Err(ProtocolError::BadReplyLine);
        }
        let line = &buf[pos + 1..eol - 1];
        pos = eol + 1;
        remaining -= 1;
        match t {
            b'+' | b'-' | b':' | b',' | b'#' | b'(' | b'_' => {}
            b'$' | b'=' | b'!' => {
                let n = parse_i64(line).ok_or(ProtocolError::BadReplyLine)?;
                if n >= 0 {
                    pos += n as usize + 2;
                    if pos > buf.len() {
                        return Ok(None);
                    }
                }
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let mut n = parse_i64(line).ok_or(ProtocolError::BadReplyLine)?;
                if t == b'%' || t == b'|' {
                    n = n.checked_mul(2).ok_or(ProtocolError::BadReplyLine)?;
                }
                if t == b'|' {
                    // An attribute precedes the real reply: it is owed too.
                    remaining += 1;
                }
                if n > 0 {
                    if owed.len() >= MAX_DEPTH {
                        return Err(ProtocolError::BadReplyLine);
                    }
                    owed.push(remaining);
                    remaining = n;
                }
            }
            other => return Err(ProtocolError::BadReplyType(other)),
        }
    }
}

fn parse_complete(all: &Bytes, cur: &mut Bytes, depth: usize) -> Result<Frame, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError::BadReplyLine);
    }
    let t = cur[0];
    let eol = memchr::memchr(b'\n', cur).ok_or(ProtocolError::BadReplyLine)?;
    let line = cur.slice(1..eol - 1);
    cur.advance(eol + 1);
    let count = || parse_i64(&line).ok_or(ProtocolError::BadReplyLine);
    Ok(match t {
        b'+' => Frame::Simple(line),
        b'-' => Frame::Error(line),
        b':' => Frame::Integer(count()?),
        b'_' => Frame::Null,
        b'#' => Frame::Boolean(&line[..] == b"t"),
        b'(' => Frame::BigNumber(line),
        b',' => Frame::Double(parse_double(&line).ok_or(ProtocolError::BadReplyLine)?),
        b'$' | b'=' | b'!' => {
            let n = count()?;
            if n < 0 {
                Frame::Null
            } else {
                let body = cur.slice(..n as usize);
                cur.advance(n as usize + 2);
                match t {
                    b'$' => Frame::Bulk(body),
                    b'=' => Frame::Verbatim(body),
                    _ => Frame::Error(body),
                }
            }
        }
        b'*' | b'~' | b'>' => {
            let n = count()?;
            if n < 0 {
                return Ok(Frame::Null);
            }
            let mut v = Vec::with_capacity((n as usize).min(4096));
            for _ in 0..n {
                v.push(parse_complete(all, cur, depth + 1)?);
            }
            match t {
                b'*' => Frame::Array(v),
                b'~' => Frame::Set(v),
                _ => Frame::Push(v),
            }
        }
        b'%' => {
            let n = count()?;
            let mut v = Vec::with_capacity((n.max(0) as usize).min(4096));
            for _ in 0..n {
                let k = parse_complete(all, cur, depth + 1)?;
                let val = parse_complete(all, cur, depth + 1)?;
                v.push((k, val));
            }
            Frame::Map(v)
        }
        b'|' => {
            // Skip the attribute map, return the value it annotates.
            let n = count()?;
            for _ in 0..n * 2 {
                parse_complete(all, cur, depth + 1)?;
            }
            parse_complete(all, cur, depth + 1)?
        }
        other => return Err(ProtocolError::BadReplyType(other)),
    })
}

fn parse_double(s: &[u8]) -> Option<f64> {
    match s {
        b"inf" => Some(f64::INFINITY),
        b"-inf" => Some(f64::NEG_INFINITY),
        b"nan" => Some(f64::NAN),
        _ => std::str::from_utf8(s).ok()?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_get_replies() {
        let two = b"*2\r\n$4\r\nport\r\n$4\r\n6379\r\n";
        assert_eq!(config_value(two).as_deref(), Some("6379"));
        let map = b"%1\r\n$10\r\nunixsocket\r\n$9\r\n/tmp/r.so\r\n";
        assert_eq!(config_value(map).as_deref(), Some("/tmp/r.so"));
        assert_eq!(config_value(b"*0\r\n"), None, "an unknown key");
        assert_eq!(config_value(b"-NOAUTH Authentication required.\r\n"), None);
        assert!(expect_port(two, 6379).is_ok());
        let e = expect_port(two, 7000).unwrap_err();
        assert_eq!(e, "the server behind it listens on port 6379, not 7000");
    }

    #[test]
    fn round_trip_nested() {
        let f = Frame::Array(vec![
            Frame::Integer(-3),
            Frame::bulk("a\r\nb"),
            Frame::Null,
            Frame::Map(vec![(Frame::Simple("k".into()), Frame::Double(1.5))]),
            Frame::Array(vec![]),
            Frame::Boolean(true),
        ]);
        let mut b = BytesMut::new();
        f.encode(&mut b);
        b.extend_from_slice(b"+next\r\n");
        assert_eq!(Frame::parse(&mut b).unwrap().unwrap(), f);
        assert_eq!(
            Frame::parse(&mut b).unwrap().unwrap(),
            Frame::Simple("next".into())
        );
        assert!(b.is_empty());
    }

    #[test]
    fn incomplete_replies() {
        let full = b"*2\r\n$3\r\nfoo\r\n:1\r\n";
        for i in 0..full.len() {
            assert_eq!(frame_len(&full[..i]).unwrap(), None, "prefix {i}");
        }
        assert_eq!(frame_len(full).unwrap(), Some(full.len()));
        assert_eq!(frame_len(b"*-1\r\n").unwrap(), Some(5));
        assert_eq!(frame_len(b"*0\r\n").unwrap(), Some(4));
    }

    #[test]
    fn empty_reply_lines_are_errors_not_panics() {
        assert_eq!(frame_len(b"\r\n"), Err(ProtocolError::BadReplyLine));
        assert_eq!(frame_len(b"*1\r\n\r\n"), Err(ProtocolError::BadReplyLine));
        assert_eq!(frame_len(b"\n"), Err(ProtocolError::BadReplyLine));
    }
}
