//! Reply encoding helpers over `BytesMut`, aware of the client's protocol (RESP2 or RESP3).
//!
//! In RESP2 the RESP3-only types degrade as Redis degrades them: null → `$-1` (or `*-1`), map → flat
//! array, set → array, double → bulk string, boolean → integer.

use bytes::{BufMut, BytesMut};

/// The client's protocol version (`HELLO 2|3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Proto {
    #[default]
    Resp2,
    Resp3,
}

/// `<t><text>\r\n`; any CR or LF inside `text` becomes a space so the reply stays one line.
pub fn line(buf: &mut BytesMut, t: u8, text: &[u8]) {
    buf.reserve(text.len() + 3);
    buf.put_u8(t);
    if memchr::memchr2(b'\r', b'\n', text).is_some() {
        buf.extend(
            text.iter()
                .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
        );
    } else {
        buf.extend_from_slice(text);
    }
    buf.extend_from_slice(b"\r\n");
}

/// `+OK\r\n`-style status.
pub fn simple(buf: &mut BytesMut, text: &str) {
    line(buf, b'+', text.as_bytes());
}

/// A `HELP` reply: an array of status lines.
pub fn help(buf: &mut BytesMut, lines: &[&str]) {
    array(buf, lines.len());
    for l in lines {
        simple(buf, l);
    }
}

/// `-ERR …\r\n`. `text` is the whole error, code included (`ERR syntax error`).
pub fn error(buf: &mut BytesMut, text: &str) {
    line(buf, b'-', text.as_bytes());
}

/// `+OK\r\n`
pub fn ok(buf: &mut BytesMut) {
    buf.extend_from_slice(b"+OK\r\n");
}

/// `<t><n>\r\n` aggregate or length header.
pub fn header(buf: &mut BytesMut, t: u8, n: i64) {
    if (0..10).contains(&n) {
        // One digit (short bulks, small arrays and integers): no itoa round trip.
        buf.extend_from_slice(&[t, b'0' + n as u8, b'\r', b'\n']);
        return;
    }
    let mut tmp = itoa::Buffer::new();
    let s = tmp.format(n);
    buf.reserve(s.len() + 3);
    buf.put_u8(t);
    buf.extend_from_slice(s.as_bytes());
    buf.extend_from_slice(b"\r\n");
}

/// `:n\r\n`
pub fn int(buf: &mut BytesMut, n: i64) {
    header(buf, b':', n);
}

/// `$len\r\n<bytes>\r\n`
pub fn bulk(buf: &mut BytesMut, b: &[u8]) {
    header(buf, b'$', b.len() as i64);
    buf.reserve(b.len() + 2);
    buf.extend_from_slice(b);
    buf.extend_from_slice(b"\r\n");
}

/// Text for people (`INFO`, `CLIENT LIST`): a verbatim string `=len txt:…` in RESP3, a bulk in
/// RESP2, as Redis replies.
pub fn verbatim(buf: &mut BytesMut, text: &[u8], p: Proto) {
    if p == Proto::Resp2 {
        return bulk(buf, text);
    }
    header(buf, b'=', text.len() as i64 + 4);
    buf.reserve(text.len() + 6);
    buf.extend_from_slice(b"txt:");
    buf.extend_from_slice(text);
    buf.extend_from_slice(b"\r\n");
}

/// A bulk holding an integer's decimal text.
pub fn bulk_int(buf: &mut BytesMut, n: i64) {
    let mut tmp = itoa::Buffer::new();
    bulk(buf, tmp.format(n).as_bytes());
}

/// The null bulk: `$-1` in RESP2, `_` in RESP3.
pub fn null(buf: &mut BytesMut, p: Proto) {
    buf.extend_from_slice(if p == Proto::Resp3 {
        b"_\r\n"
    } else {
        b"$-1\r\n"
    });
}

/// The null array: `*-1` in RESP2, `_` in RESP3.
pub fn null_array(buf: &mut BytesMut, p: Proto) {
    buf.extend_from_slice(if p == Proto::Resp3 {
        b"_\r\n"
    } else {
        b"*-1\r\n"
    });
}

/// `*n`
pub fn array(buf: &mut BytesMut, n: usize) {
    header(buf, b'*', n as i64);
}

/// A map of `n` pairs: `%n` in RESP3, `*2n` in RESP2.
pub fn map(buf: &mut BytesMut, n: usize, p: Proto) {
    match p {
        Proto::Resp3 => header(buf, b'%', n as i64),
        Proto::Resp2 => header(buf, b'*', 2 * n as i64),
    }
}

/// A set of `n` members: `~n` in RESP3, `*n` in RESP2.
pub fn set(buf: &mut BytesMut, n: usize, p: Proto) {
    header(buf, if p == Proto::Resp3 { b'~' } else { b'*' }, n as i64);
}

/// A push message of `n` items: `>n` in RESP3, `*n` in RESP2.
pub fn push(buf: &mut BytesMut, n: usize, p: Proto) {
    header(buf, if p == Proto::Resp3 { b'>' } else { b'*' }, n as i64);
}

/// A boolean: `#t`/`#f` in RESP3, `:1`/`:0` in RESP2.
pub fn boolean(buf: &mut BytesMut, v: bool, p: Proto) {
    match p {
        Proto::Resp3 => buf.extend_from_slice(if v { b"#t\r\n" } else { b"#f\r\n" }),
        Proto::Resp2 => int(buf, v as i64),
    }
}

/// A double: `,d` in RESP3, a bulk string in RESP2, formatted as Redis 7.0 does (`%.17g`).
pub fn double(buf: &mut BytesMut, d: f64, p: Proto) {
    let mut tmp = BytesMut::with_capacity(32);
    push_double_text(&mut tmp, d);
    match p {
        Proto::Resp3 => line(buf, b',', &tmp),
        Proto::Resp2 => bulk(buf, &tmp),
    }
}

/// Append a double's text as Redis prints it (see [`format_double`]).
pub fn push_double_text(buf: &mut BytesMut, d: f64) {
    buf.extend_from_slice(format_double(d).as_bytes());
}

/// A double's text as Redis 7.0 prints it: C's `%.17g` (`1.1` prints as `1.1000000000000001`),
/// with `inf`, `-inf` and `nan` spelled out.
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        return "nan".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    format_g(d, 17)
}

/// C's `%.<prec>g`.
pub fn format_g(d: f64, prec: usize) -> String {
    if d == 0.0 {
        return if d.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{:.*e}", prec - 1, d);
    let (mant, exp) = sci.split_at(sci.find('e').unwrap_or(sci.len()));
    let exp: i32 = exp.get(1..).and_then(|e| e.parse().ok()).unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let mant = trim_zeros(mant);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{:.*}", decimals, d)).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_like_redis() {
        assert_eq!(format_double(1.5), "1.5");
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(-0.1), "-0.10000000000000001");
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(1e20), "1e+20");
        assert_eq!(format_double(1.5e-7), "1.4999999999999999e-07");
        assert_eq!(format_double(1.1), "1.1000000000000001");
        assert_eq!(format_double(0.5), "0.5");
        assert_eq!(format_double(-2.0), "-2");
        assert_eq!(format_g(3.14159, 6), "3.14159");
    }

    #[test]
    fn resp2_degrades() {
        let mut b = BytesMut::new();
        null(&mut b, Proto::Resp2);
        map(&mut b, 2, Proto::Resp2);
        boolean(&mut b, true, Proto::Resp2);
        double(&mut b, 1.5, Proto::Resp2);
        assert_eq!(&b[..], b"$-1\r\n*4\r\n:1\r\n$3\r\n1.5\r\n");
        let mut b = BytesMut::new();
        null(&mut b, Proto::Resp3);
        map(&mut b, 2, Proto::Resp3);
        double(&mut b, 1.5, Proto::Resp3);
        assert_eq!(&b[..], b"_\r\n%2\r\n,1.5\r\n");
    }

    #[test]
    fn error_lines_stay_one_line() {
        let mut b = BytesMut::new();
        error(&mut b, "ERR a\r\nb");
        assert_eq!(&b[..], b"-ERR a  b\r\n");
    }
}
