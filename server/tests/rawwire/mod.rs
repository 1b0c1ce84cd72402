//! Raw-socket helpers shared by the integration tests: send exact request bytes, read back whole
//! RESP replies as bytes (framed with `resp::frame::frame_len`), notice when the server closes.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// What came back for one expected reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// One complete reply, as wire bytes.
    Frame(Vec<u8>),
    /// The server closed the connection (after `rest` unparsed bytes).
    Closed(Vec<u8>),
    /// Nothing complete arrived in time (with what did arrive).
    Timeout(Vec<u8>),
}

impl Reply {
    /// The frame bytes, panicking with a readable message otherwise.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Reply::Frame(b) => b,
            other => panic!("expected a reply, got {}", other.show()),
        }
    }

    /// A printable form.
    pub fn show(&self) -> String {
        match self {
            Reply::Frame(b) => show(b),
            Reply::Closed(r) => format!("<closed after {}>", show(r)),
            Reply::Timeout(r) => format!("<timeout after {}>", show(r)),
        }
    }
}

/// A raw connection.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
    closed: bool,
}

impl Raw {
    /// Connect to 127.0.0.1:`port`.
    pub fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        Raw {
            stream,
            buf: Vec::new(),
            closed: false,
        }
    }

    /// Set how long a read waits.
    pub fn timeout(&mut self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).expect("read timeout");
    }

    /// Send bytes as they are (errors are ignored: the server may have closed already).
    pub fn send(&mut self, b: &[u8]) {
        let _ = self.stream.write_all(b);
    }

    /// Read one complete reply.
    pub fn read(&mut self) -> Reply {
        loop {
            match resp::frame::frame_len(&self.buf) {
                Ok(Some(n)) => {
                    let f: Vec<u8> = self.buf.drain(..n).collect();
                    return Reply::Frame(f);
                }
                Ok(None) => {}
                Err(e) => panic!("unparsable reply {}: {e}", show(&self.buf)),
            }
            if self.closed {
                return Reply::Closed(self.buf.clone());
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Reply::Timeout(self.buf.clone())
                }
                Err(_) => self.closed = true,
            }
        }
    }

    /// Send one command (as multibulk) and read its reply bytes.
    pub fn cmd(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(&multibulk(args));
        self.read().bytes().to_vec()
    }

    /// Like [`Raw::cmd`] with an inline-style line split by `sdssplitargs` rules.
    pub fn line(&mut self, line: &str) -> Vec<u8> {
        let args = split(line);
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        self.cmd(&refs)
    }

    /// Whether the server has closed the connection (waits up to the read timeout for EOF).
    pub fn is_closed(&mut self) -> bool {
        matches!(self.read(), Reply::Closed(_))
    }
}

/// Encode a command as a RESP multibulk request.
pub fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// Split a line into arguments the way redis-cli / inline requests do (quotes, `\xHH`).
pub fn split(line: &str) -> Vec<Vec<u8>> {
    resp::request::split_args(line.as_bytes()).expect("balanced quotes in test line")
}

/// Bytes with `\r\n` and non-printables escaped, for messages.
pub fn show(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b.iter().take(600) {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    if b.len() > 600 {
        s.push_str(&format!("...({} bytes)", b.len()));
    }
    s
}

/// Two keys (from `prefix0`, `prefix1`, …) whose slots belong to different cores of a two-core
/// server (`owner = slot % 2`).
pub fn keys_on_two_cores(prefix: &str) -> (String, String) {
    let mut even = None;
    let mut odd = None;
    for i in 0.. {
        let k = format!("{prefix}{i}");
        if resp::slot(k.as_bytes()).is_multiple_of(2) {
            even.get_or_insert(k);
        } else {
            odd.get_or_insert(k);
        }
        if let (Some(a), Some(b)) = (&even, &odd) {
            return (a.clone(), b.clone());
        }
    }
    unreachable!()
}
