//! Helpers for the `types_*` integration tests: a raw RESP client that returns reply bytes exactly
//! as the server sent them, and a differential runner comparing codis-server with redis-server.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A raw RESP client.
pub struct Raw {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Raw {
    /// Connect to 127.0.0.1:`port`.
    pub fn connect(port: u16) -> Raw {
        let w = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        w.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let r = BufReader::new(w.try_clone().expect("clone"));
        Raw { w, r }
    }

    /// Send one command without reading its reply.
    pub fn send(&mut self, args: &[&[u8]]) {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
        self.w.write_all(&buf).expect("write");
    }

    /// Send a command given as space-separated words.
    pub fn send_line(&mut self, line: &str) {
        let words = split(line);
        let args: Vec<&[u8]> = words.iter().map(|w| w.as_slice()).collect();
        self.send(&args);
    }

    /// Read one whole reply, raw.
    pub fn read(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        self.r.read_until(b'\n', &mut line).expect("read reply");
        assert!(!line.is_empty(), "connection closed");
        let n = || -> i64 {
            String::from_utf8_lossy(&line[1..line.len() - 2])
                .parse()
                .unwrap_or(0)
        };
        match line[0] {
            b'$' | b'=' | b'!' => {
                let len = n();
                if len >= 0 {
                    let mut body = vec![0u8; len as usize + 2];
                    self.r.read_exact(&mut body).expect("read bulk");
                    line.extend_from_slice(&body);
                }
            }
            b'*' | b'~' | b'>' | b'%' => {
                let mut k = n();
                if line[0] == b'%' {
                    k *= 2;
                }
                for _ in 0..k.max(0) {
                    let sub = self.read();
                    line.extend_from_slice(&sub);
                }
            }
            _ => {}
        }
        line
    }

    /// Run a command (space-separated words) and return its raw reply as text.
    pub fn q(&mut self, line: &str) -> String {
        self.send_line(line);
        String::from_utf8_lossy(&self.read()).into_owned()
    }

    /// Run a command given as byte arguments and return its raw reply.
    pub fn qb(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(args);
        self.read()
    }
}

/// Split on spaces; `"…"` groups words and `\xHH`-free text only (tests keep arguments simple).
pub fn split(line: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.bytes() {
        match c {
            b'"' => {
                quoted = !quoted;
                any = true;
            }
            b' ' if !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            _ => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A two-core codis-server.
pub fn codis2() -> testkit::Proc {
    testkit::codis_server(&["--cores", "2"])
}

/// Run every line of `script` on a two-core codis-server and on a real redis-server and assert
/// byte-identical replies. Lines starting with `sorted ` compare the reply's elements sorted (for
/// unordered replies); `skip ` runs a line on both without comparing. Returns false (and prints SKIPPED) when redis-server is missing.
pub fn differential(script: &str) -> bool {
    let Some((redis, _dir)) = testkit::redis_server(&[]) else {
        return false;
    };
    let codis = codis2();
    let mut a = Raw::connect(codis.port);
    let mut b = Raw::connect(redis.port);
    for line in script.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(cmd) = line.strip_prefix("skip ") {
            a.q(cmd);
            b.q(cmd);
            continue;
        }
        let (sorted, cmd) = match line.strip_prefix("sorted ") {
            Some(c) => (true, c),
            None => (false, line),
        };
        let (mut ra, mut rb) = (a.q(cmd), b.q(cmd));
        if sorted {
            ra = sort_reply(&ra);
            rb = sort_reply(&rb);
        }
        assert_eq!(
            ra, rb,
            "reply to `{cmd}` differs (left: codis-server, right: redis-server)"
        );
    }
    true
}

/// A reply's lines after the header, sorted (good enough for flat arrays of bulks/integers).
pub fn sort_reply(r: &str) -> String {
    let mut lines: Vec<&str> = r.split("\r\n").collect();
    if lines.len() < 3 {
        return r.to_string();
    }
    let head = lines.remove(0);
    let mut items: Vec<String> = lines
        .chunks(2)
        .map(|c| c.join("\r\n"))
        .filter(|s| !s.is_empty())
        .collect();
    items.sort();
    format!("{head}|{}", items.join("|"))
}
