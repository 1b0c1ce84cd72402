//! Fuzz `RequestParser::parse`: the first byte picks the chunk size and whether the client is
//! authenticated; the rest is fed in chunks, parsing until more bytes are needed or an error.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use resp::RequestParser;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(ctl & 0x3f) + 1;
    let mut parser = RequestParser::new(1 << 20);
    parser.set_authenticated(ctl & 0x40 == 0);
    let mut buf = BytesMut::new();
    for c in data.chunks(chunk) {
        buf.extend_from_slice(c);
        loop {
            match parser.parse(&mut buf) {
                Ok(Some(args)) => assert!(!args.is_empty()),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
