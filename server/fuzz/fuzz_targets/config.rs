//! Fuzz codis-server's configuration parsers: the input is a redis.conf-syntax file (loaded with
//! `Config::load_file`, as `--config` does), and every line of it is also applied as
//! `CONFIG SET key value` on a running config (first word = key, rest = value).
#![no_main]

use libfuzzer_sys::fuzz_target;
use server::config::Config;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        let mut c = Config::default();
        let _ = c.set(k, v, false);
        let _ = c.set(k, v, true);
        let _ = c.get(k.as_bytes());
    }
    let Ok(dir) = std::env::temp_dir().canonicalize() else {
        return;
    };
    let path = dir.join(format!("codis-server-fuzz-{}.conf", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        let mut c = Config::default();
        let _ = c.load_file(&path);
        let _ = c.get(b"*");
    }
});
