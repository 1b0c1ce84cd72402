//! Fuzz the reply side: `frame_len` and `Frame::parse` must agree, and a parsed frame must
//! re-encode to bytes that parse back to an equal frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use resp::frame::frame_len;
use resp::Frame;

/// NaN never equals itself, and a line frame (`+`, `-`, `(`, or a blob error `!` parsed into
/// an error) may hold a lone CR that the encoder deliberately turns into a space (a line reply
/// must not smuggle a line break).
fn not_reencodable(f: &Frame) -> bool {
    let crlf = |t: &[u8]| t.iter().any(|b| *b == b'\r' || *b == b'\n');
    match f {
        Frame::Double(d) => d.is_nan(),
        Frame::Error(t) | Frame::Simple(t) | Frame::BigNumber(t) => crlf(t),
        Frame::Array(v) | Frame::Set(v) | Frame::Push(v) => v.iter().any(not_reencodable),
        Frame::Map(kv) => kv
            .iter()
            .any(|(k, v)| not_reencodable(k) || not_reencodable(v)),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let len = frame_len(data);
    let mut buf = BytesMut::from(data);
    let parsed = Frame::parse(&mut buf);
    match (&len, &parsed) {
        (Ok(Some(n)), Ok(Some(frame))) => {
            assert_eq!(data.len() - buf.len(), *n);
            if !not_reencodable(frame) {
                let mut again = BytesMut::from(&frame.to_bytes()[..]);
                assert_eq!(
                    Frame::parse(&mut again).ok().flatten().as_ref(),
                    Some(frame)
                );
            }
        }
        (Ok(None), _) => assert!(matches!(parsed, Ok(None))),
        _ => {}
    }
});
