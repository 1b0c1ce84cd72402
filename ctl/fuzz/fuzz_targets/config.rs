//! Fuzz codisctl's `config.ini` parser (`CtlConfig::from_ini`, which also runs the
//! coordinator's `CoordConfig::from_ini`), the flags applied over it, and the size and
//! duration parsers on every value.
#![no_main]

use ctl::config::{parse_bytes, parse_duration, CtlConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(mut c) = CtlConfig::from_ini(&text) {
        let mut words = text.split_whitespace();
        let (a, b, p) = (words.next(), words.next(), words.next());
        let _ = c.apply_flags(a, b, p, None, None);
    }
    for line in text.lines() {
        let v = line.split_once('=').map_or(line, |(_, v)| v);
        let _ = parse_bytes(v);
        let _ = parse_duration(v);
    }
});
