//! Properties of the wire layer: frames round-trip through `encode` / `Frame::parse` and
//! `frame_len` agrees with the encoded length; multibulk requests parse back to their arguments
//! however the bytes are split; no input makes a parser panic.

use std::panic::catch_unwind;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use resp::frame::frame_len;
use resp::{Frame, RequestParser};

/// Bytes without CR or LF, for simple strings, errors and big numbers.
fn line_text() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(
        any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
        0..20,
    )
    .prop_map(Bytes::from)
}

fn blob() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from)
}

fn leaf() -> impl Strategy<Value = Frame> {
    prop_oneof![
        line_text().prop_map(Frame::Simple),
        line_text().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        blob().prop_map(Frame::Bulk),
        Just(Frame::Null),
        any::<f64>()
            .prop_filter("NaN never equals itself", |d| !d.is_nan())
            .prop_map(Frame::Double),
        any::<bool>().prop_map(Frame::Boolean),
        "-?[1-9][0-9]{0,40}".prop_map(|s| Frame::BigNumber(Bytes::from(s))),
        blob().prop_map(|b| Frame::Verbatim(Bytes::from([&b"txt:"[..], &b[..]].concat()))),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    leaf().prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Frame::Array),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Frame::Set),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Frame::Push),
            prop::collection::vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
        ]
    })
}

fn multibulk(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Split `data` into chunks whose sizes cycle through `sizes` (each at least 1).
fn chunks<'a>(data: &'a [u8], sizes: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut at = 0;
    let mut k = 0;
    std::iter::from_fn(move || {
        if at >= data.len() {
            return None;
        }
        let n = sizes
            .get(k % sizes.len().max(1))
            .copied()
            .unwrap_or(usize::MAX)
            .max(1);
        k += 1;
        let end = at.saturating_add(n).min(data.len());
        let c = &data[at..end];
        at = end;
        Some(c)
    })
}

/// RESP-looking noise: valid headers, numbers and bytes mixed, to reach deep parser states.
fn resp_noise() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        (prop::sample::select(&b"*$:+-%~>|=!,#(_"[..]), -3i64..8).prop_map(|(t, n)| [
            &[t][..],
            n.to_string().as_bytes(),
            b"\r\n"
        ]
        .concat()),
        Just(b"\r\n".to_vec()),
        Just(b"*-1\r\n".to_vec()),
        Just(b"$9223372036854775807\r\n".to_vec()),
        Just(b"*2147483648\r\n".to_vec()),
        Just(b"%9223372036854775807\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..6),
        "[a-z \"']{0,8}\n".prop_map(String::into_bytes),
    ];
    prop::collection::vec(token, 0..24).prop_map(|v| v.concat())
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..200), resp_noise()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frames_round_trip(f in frame()) {
        let wire = f.to_bytes();
        prop_assert_eq!(frame_len(&wire), Ok(Some(wire.len())));
        for cut in [0, wire.len() / 2, wire.len().saturating_sub(1)] {
            if cut < wire.len() {
                prop_assert_eq!(frame_len(&wire[..cut]), Ok(None), "prefix of {} bytes", cut);
            }
        }
        let mut buf = BytesMut::from(&wire[..]);
        buf.extend_from_slice(b"+next\r\n");
        let got = Frame::parse(&mut buf);
        prop_assert_eq!(got, Ok(Some(f)));
        prop_assert_eq!(&buf[..], b"+next\r\n");
    }

    #[test]
    fn requests_round_trip_in_any_chunking(
        reqs in prop::collection::vec(prop::collection::vec(prop::collection::vec(any::<u8>(), 0..50), 1..8), 1..5),
        sizes in prop::collection::vec(1usize..64, 1..8),
    ) {
        let wire: Vec<u8> = reqs.iter().flat_map(|r| multibulk(r)).collect();
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::new();
        let mut got: Vec<Vec<Vec<u8>>> = Vec::new();
        for c in chunks(&wire, &sizes) {
            buf.extend_from_slice(c);
            while let Some(args) = parser.parse(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                got.push(args.iter().map(|a| a.to_vec()).collect());
            }
        }
        prop_assert_eq!(got, reqs);
        prop_assert!(buf.is_empty());
        prop_assert_eq!(parser.pending_len(), 0);
    }

    #[test]
    fn request_parser_never_panics(data in input(), sizes in prop::collection::vec(1usize..40, 1..6), authed in any::<bool>()) {
        let mut parser = RequestParser::new(1 << 20);
        parser.set_authenticated(authed);
        let mut buf = BytesMut::new();
        'feed: for c in chunks(&data, &sizes) {
            buf.extend_from_slice(c);
            loop {
                match parser.parse(&mut buf) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => break 'feed, // the connection would be closed
                }
            }
        }
    }

    #[test]
    fn reply_parsers_never_panic(data in input()) {
        let len = match catch_unwind(|| frame_len(&data)) {
            Ok(len) => len,
            Err(_) => return Err(TestCaseError::fail(format!("frame_len panicked on {data:?}"))),
        };
        let mut buf = BytesMut::from(&data[..]);
        let parsed = Frame::parse(&mut buf);
        if let (Ok(Some(n)), Ok(Some(_))) = (&len, &parsed) {
            prop_assert_eq!(data.len() - buf.len(), *n, "parse consumes what frame_len measured");
        }
        if let Ok(None) = len {
            prop_assert_eq!(parsed, Ok(None));
        }
    }
}
