//! Request framing as `redis-server` does it: multibulk (`*n` of `$len` bulks) and inline commands.
//!
//! The parser is resumable: when a request is incomplete it remembers how far it got, so a huge
//! pipeline or a giant bulk arriving in small reads is scanned once. A complete request is split off
//! the buffer (`BytesMut::split_to`) and its arguments are zero-copy slices of it.

use bytes::{Bytes, BytesMut};

use crate::error::ProtocolError;

/// Longest inline request, and longest `*`/`$` count line (`PROTO_INLINE_MAX_SIZE`).
pub const INLINE_MAX: usize = 64 * 1024;
/// Default `proto-max-bulk-len`.
pub const DEFAULT_MAX_BULK: usize = 512 * 1024 * 1024;
/// Largest accepted multibulk count (`INT_MAX` in Redis 7).
pub const MAX_MULTIBULK: i64 = i32::MAX as i64;
/// Limits before AUTH when a password is required (Redis 7).
const UNAUTH_MAX_MULTIBULK: i64 = 10;
const UNAUTH_MAX_BULK: i64 = 16384;

/// One request: its arguments, name first.
pub type Args = Vec<Bytes>;

/// The largest spans vector kept for the next request (a huge multibulk's is freed).
const SPARE_SPANS_MAX: usize = 1024;

#[derive(Debug, Default)]
struct Partial {
    /// Arguments expected.
    argc: usize,
    /// Offsets (start, end) of the arguments parsed so far, relative to the buffer start.
    spans: Vec<(usize, usize)>,
    /// Where parsing resumes.
    pos: usize,
}

/// A resumable request parser. Keep one per connection.
#[derive(Debug)]
pub struct RequestParser {
    partial: Option<Partial>,
    /// The spans vector of the last complete request, kept for the next one (one allocation
    /// less per request).
    spare: Vec<(usize, usize)>,
    max_bulk: usize,
    authenticated: bool,
}

impl Default for RequestParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BULK)
    }
}

enum Step {
    Incomplete,
    Done(usize),
}

impl RequestParser {
    /// A parser that accepts bulks up to `max_bulk` bytes (`proto-max-bulk-len`).
    pub fn new(max_bulk: usize) -> Self {
        RequestParser {
            partial: None,
            spare: Vec::new(),
            max_bulk,
            authenticated: true,
        }
    }

    /// Apply Redis's stricter limits for clients that still owe an AUTH.
    pub fn set_authenticated(&mut self, yes: bool) {
        self.authenticated = yes;
    }

    /// Change `proto-max-bulk-len`.
    pub fn set_max_bulk(&mut self, max_bulk: usize) {
        self.max_bulk = max_bulk;
    }

    /// Bytes of `buf` already known to belong to the pending (incomplete) request.
    pub fn pending_len(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.pos)
    }

    /// Parse the next request from `buf`. `Ok(None)`: need more bytes. Empty inline lines and
    /// `*0`/`*-1` headers are consumed silently, as Redis does.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Args>, ProtocolError> {
        loop {
            if buf.is_empty() {
                return Ok(None);
            }
            if self.partial.is_none() && buf[0] != b'*' {
                match self.parse_inline(buf)? {
                    InlineOutcome::Incomplete => return Ok(None),
                    InlineOutcome::Empty => continue,
                    InlineOutcome::Args(a) => return Ok(Some(a)),
                }
            }
            match self.parse_multibulk(buf)? {
                None => return Ok(None),
                Some(args) if args.is_empty() => continue,
                Some(args) => return Ok(Some(args)),
            }
        }
    }

    fn parse_multibulk(&mut self, buf: &mut BytesMut) -> Result<Option<Args>, ProtocolError> {
        let mut p = match self.partial.take() {
            Some(p) => p,
            None => {
                let next = match count_line(buf, 0, ProtocolError::TooBigMbulkCount)? {
                    Some(x) => x,
                    None => return Ok(None),
                };
                let n =
                    parse_i64(&buf[1..next - 2]).ok_or(ProtocolError::InvalidMultibulkLength)?;
                if n > MAX_MULTIBULK {
                    return Err(ProtocolError::InvalidMultibulkLength);
                }
                if !self.authenticated && n > UNAUTH_MAX_MULTIBULK {
                    return Err(ProtocolError::UnauthenticatedMultibulk);
                }
                if n <= 0 {
                    let _ = buf.split_to(next);
                    return Ok(Some(Vec::new()));
                }
                let argc = n as usize;
                let mut spans = std::mem::take(&mut self.spare);
                spans.reserve(argc.min(1024));
                Partial {
                    argc,
                    spans,
                    pos: next,
                }
            }
        };
        while p.spans.len() < p.argc {
            match self.bulk(buf, p.pos)? {
                Step::Incomplete => {
                    self.partial = Some(p);
                    return Ok(None);
                }
                Step::Done(end) => {
                    // `end` points after the bulk's trailing two bytes (which Redis does not check).
                    let (start, stop) = bulk_span(buf, p.pos, end);
                    p.spans.push((start, stop));
                    p.pos = end;
                }
            }
        }
        let frame = buf.split_to(p.pos).freeze();
        let args = p.spans.iter().map(|&(s, e)| frame.slice(s..e)).collect();
        if p.spans.capacity() <= SPARE_SPANS_MAX {
            p.spans.clear();
            self.spare = p.spans;
        }
        Ok(Some(args))
    }

    /// Parse one `$len\r\n<bytes>\r\n` starting at `at`; returns the offset after it.
    fn bulk(&self, buf: &BytesMut, at: usize) -> Result<Step, ProtocolError> {
        if at >= buf.len() {
            return Ok(Step::Incomplete);
        }
        if buf[at] != b'$' {
            return Err(ProtocolError::ExpectedBulk(buf[at] as char));
        }
        let next = match count_line(buf, at, ProtocolError::TooBigBulkCount)? {
            Some(x) => x,
            None => return Ok(Step::Incomplete),
        };
        let len = parse_i64(&buf[at + 1..next - 2]).ok_or(ProtocolError::InvalidBulkLength)?;
        if len < 0 || len as u64 > self.max_bulk as u64 {
            return Err(ProtocolError::InvalidBulkLength);
        }
        if !self.authenticated && len > UNAUTH_MAX_BULK {
            return Err(ProtocolError::UnauthenticatedBulk);
        }
        let end = next + len as usize + 2;
        if end > buf.len() {
            return Ok(Step::Incomplete);
        }
        Ok(Step::Done(end))
    }

    fn parse_inline(&mut self, buf: &mut BytesMut) -> Result<InlineOutcome, ProtocolError> {
        let nl = match memchr::memchr(b'\n', buf) {
            Some(i) => i,
            None => {
                if buf.len() > INLINE_MAX {
                    return Err(ProtocolError::TooBigInline);
                }
                return Ok(InlineOutcome::Incomplete);
            }
        };
        let line = buf.split_to(nl + 1).freeze();
        let mut text = &line[..nl];
        if text.last() == Some(&b'\r') {
            text = &text[..text.len() - 1];
        }
        let args = split_args(text)?;
        if args.is_empty() {
            return Ok(InlineOutcome::Empty);
        }
        Ok(InlineOutcome::Args(
            args.into_iter().map(Bytes::from).collect(),
        ))
    }
}

enum InlineOutcome {
    Incomplete,
    Empty,
    Args(Args),
}

/// Find the `\r` ending a count line starting at `at` (`*n` or `$n`) and return the offset after
/// its `\r\n`. Like Redis, the byte after `\r` is assumed to be `\n`.
fn count_line(
    buf: &[u8],
    at: usize,
    too_big: ProtocolError,
) -> Result<Option<usize>, ProtocolError> {
    match memchr::memchr(b'\r', &buf[at..]) {
        Some(i) => {
            if at + i + 2 > buf.len() {
                return Ok(None);
            }
            Ok(Some(at + i + 2))
        }
        None => {
            if buf.len() - at > INLINE_MAX {
                return Err(too_big);
            }
            Ok(None)
        }
    }
}

/// The data span of a bulk whose header starts at `at` and which ends (with its CRLF) at `end`.
fn bulk_span(buf: &[u8], at: usize, end: usize) -> (usize, usize) {
    let cr = at + memchr::memchr(b'\r', &buf[at..]).unwrap_or(0);
    (cr + 2, end - 2)
}

/// Parse a signed decimal exactly as Redis's `string2ll` does (no `+`, no spaces, no leading zeros
/// other than a lone `0`).
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let (neg, digits) = if s[0] == b'-' {
        (true, &s[1..])
    } else {
        (false, s)
    };
    // Redis's string2ll: no leading zeros, and no "-0".
    if digits.is_empty() || (digits[0] == b'0' && (digits.len() > 1 || neg)) {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        Some((v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

/// Split an inline request line into arguments with `sdssplitargs` rules.
pub fn split_args(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n {
            return Ok(out);
        }
        let mut cur = Vec::new();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                if i >= n {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                let c = line[i];
                if c == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && is_hex(line[i + 2])
                    && is_hex(line[i + 3])
                {
                    cur.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else if in_sq {
                if i >= n {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        i += 1;
                        break;
                    }
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    c => cur.push(c),
                }
            }
            i += 1;
        }
        out.push(cur);
    }
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Result<Vec<Vec<String>>, ProtocolError> {
        let mut p = RequestParser::default();
        let mut buf = BytesMut::from(input);
        let mut out = vec![];
        while let Some(a) = p.parse(&mut buf)? {
            out.push(
                a.iter()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .collect(),
            );
        }
        Ok(out)
    }

    #[test]
    fn multibulk_and_inline() {
        assert_eq!(all(b"*1\r\n$4\r\nPING\r\n").unwrap(), vec![vec!["PING"]]);
        assert_eq!(all(b"PING\r\n").unwrap(), vec![vec!["PING"]]);
        assert_eq!(all(b"\r\nPING\n").unwrap(), vec![vec!["PING"]]);
        assert_eq!(
            all(b"*-1\r\n*1\r\n$4\r\nPING\r\n").unwrap(),
            vec![vec!["PING"]]
        );
        assert_eq!(all(b"*1\r\n$4\r\nPINGxx").unwrap(), vec![vec!["PING"]]);
        assert_eq!(
            all(b"SET \"k 1\" 'v\\x41'\r\n").unwrap(),
            vec![vec!["SET", "k 1", "v\\x41"]]
        );
        assert_eq!(
            all(b"SET \"a\\x41\\n\" b\r\n").unwrap(),
            vec![vec!["SET", "aA\n", "b"]]
        );
    }

    #[test]
    fn errors_match_redis() {
        assert_eq!(
            all(b"*abc\r\n").unwrap_err().to_string(),
            "ERR Protocol error: invalid multibulk length"
        );
        assert_eq!(
            all(b"*2147483648\r\n").unwrap_err(),
            ProtocolError::InvalidMultibulkLength
        );
        assert_eq!(
            all(b"*1\r\n$-1\r\n").unwrap_err(),
            ProtocolError::InvalidBulkLength
        );
        assert_eq!(
            all(b"*1\r\n$536870913\r\n").unwrap_err(),
            ProtocolError::InvalidBulkLength
        );
        assert_eq!(
            all(b"*1\r\n:12\r\n").unwrap_err().to_string(),
            "ERR Protocol error: expected '$', got ':'"
        );
        assert_eq!(
            all(b"SET \"a b\r\n").unwrap_err(),
            ProtocolError::UnbalancedQuotes
        );
        assert_eq!(
            all(b"SET \"a\"b c\r\n").unwrap_err(),
            ProtocolError::UnbalancedQuotes
        );
        assert_eq!(
            all(&vec![b'a'; INLINE_MAX + 1]).unwrap_err(),
            ProtocolError::TooBigInline
        );
    }

    #[test]
    fn incomplete_and_resumed() {
        let whole = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        let mut p = RequestParser::default();
        let mut buf = BytesMut::new();
        for (i, &b) in whole.iter().enumerate() {
            buf.extend_from_slice(&[b]);
            let r = p.parse(&mut buf).unwrap();
            if i + 1 < whole.len() {
                assert!(r.is_none(), "complete too early at {i}");
            } else {
                assert_eq!(
                    r.unwrap(),
                    vec![Bytes::from("SET"), Bytes::from("k"), Bytes::from("hello")]
                );
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn big_headers_do_not_allocate() {
        // A 4 GB bulk header is refused; a 1M-element header just waits for more data.
        assert_eq!(
            all(b"*1\r\n$4294967296\r\n").unwrap_err(),
            ProtocolError::InvalidBulkLength
        );
        assert_eq!(all(b"*1000000\r\n").unwrap(), Vec::<Vec<String>>::new());
    }

    #[test]
    fn unauthenticated_limits() {
        let mut p = RequestParser::default();
        p.set_authenticated(false);
        let mut buf = BytesMut::from(&b"*11\r\n"[..]);
        assert_eq!(
            p.parse(&mut buf).unwrap_err(),
            ProtocolError::UnauthenticatedMultibulk
        );
    }

    #[test]
    fn string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"01"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert_eq!(parse_i64(b""), None);
        assert_eq!(parse_i64(b"-"), None);
        assert_eq!(parse_i64(b"-0"), None);
        assert_eq!(parse_i64(b"-01"), None);
    }
}
