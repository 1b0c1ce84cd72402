//! Fuzz codis-proxy's configuration parsers: the same text as a `proxy.toml`
//! (`Config::apply_toml`) and as a `config.ini` (`Config::apply_ini`), then `finish`; every
//! `key = value` line also goes through `Config::set` (the command-line path), and the value
//! through the duration and size parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy::config::{parse_duration, parse_size};
use proxy::Config;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut c = Config::default();
    let _ = c.apply_toml("fuzz.toml", &text);
    c.finish();
    let mut c = Config::default();
    let _ = c.apply_ini(&text);
    c.finish();
    for line in text.lines() {
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        let mut c = Config::default();
        let _ = c.set(k.trim(), v.trim());
        let _ = parse_duration(v);
        let _ = parse_size(v);
    }
});
