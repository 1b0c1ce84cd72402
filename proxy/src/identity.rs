//! Who this proxy is: its token, its Codis `Proxy` model, and the admin API's `xauth`.
//!
//! Like Codis, the token is a digest of the host and the addresses, so a restarted proxy keeps
//! its registration path; unlike Codis (md5 of MAC addresses), it is the first 128 bits of a
//! SHA-256 of `hostname-product-proxy_addr-admin_addr`. `xauth` is computed exactly as Codis's
//! `rpc.NewXAuth(product, product_auth, token)`: the first 128 bits of the SHA-256 of
//! `Codis-XAuth-[product]-[product_auth]-[token]`, in hex, so Codis's own tools (codis-admin
//! `--proxy`, codis-dashboard) can drive this proxy's admin API.

use sha2::{Digest, Sha256};

use crate::config::Config;

fn digest128(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b"-");
        }
        h.update(p.as_bytes());
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The host name (from `gethostname`).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn uname() -> String {
    // SAFETY: uname fills a utsname we own; its fields are NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return String::new();
        }
        let f = |s: &[libc::c_char]| {
            std::ffi::CStr::from_ptr(s.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        format!(
            "{} {} {} {} {}",
            f(&u.sysname),
            f(&u.nodename),
            f(&u.release),
            f(&u.version),
            f(&u.machine)
        )
    }
}

/// The address others should use: an unspecified IP (`0.0.0.0`) becomes the host name.
pub fn public_addr(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some((ip, port)) if ip == "0.0.0.0" || ip == "[::]" || ip.is_empty() => {
            format!("{}:{port}", hostname())
        }
        _ => addr.to_string(),
    }
}

/// This proxy's token.
pub fn token(cfg: &Config) -> String {
    digest128(&[
        &hostname(),
        &cfg.product_name,
        &public_addr(&cfg.proxy_addr),
        &public_addr(&cfg.admin_addr),
    ])
}

/// The admin API credential, as Codis's `rpc.NewXAuth(product, product_auth, token)`.
pub fn xauth(cfg: &Config, token: &str) -> String {
    codis_xauth(&[&cfg.product_name, &cfg.product_auth, token])
}

/// Codis's `NewXAuth(segs…)`: hex of the first 16 bytes of SHA-256(`Codis-XAuth-[s1]-[s2]…`).
pub fn codis_xauth(segs: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(b"Codis-XAuth");
    for s in segs {
        h.update(b"-[");
        h.update(s.as_bytes());
        h.update(b"]");
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix time.
pub fn format_time(unix: u64) -> String {
    let days = (unix / 86400) as i64;
    let rem = unix % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The Codis `Proxy` model this proxy registers.
pub fn model(cfg: &Config, token: &str, start_unix: u64) -> coord::Proxy {
    coord::Proxy {
        id: 0,
        token: token.to_string(),
        start_time: format_time(start_unix),
        admin_addr: public_addr(&cfg.admin_addr),
        proto_type: "tcp4".into(),
        proxy_addr: public_addr(&cfg.proxy_addr),
        jodis_path: String::new(),
        product_name: cfg.product_name.clone(),
        pid: std::process::id(),
        pwd: std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        sys: uname(),
        hostname: hostname(),
        datacenter: cfg.proxy_datacenter.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_and_tokens() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13:20");
        let cfg = Config::default();
        let t = token(&cfg);
        assert_eq!(t.len(), 32);
        assert_eq!(t, token(&cfg));
        assert_ne!(xauth(&cfg, &t), t);
        // Golden value of Codis's NewXAuth, computed independently (Python hashlib).
        assert_eq!(
            codis_xauth(&["codis-demo", "secret", "0123456789abcdef0123456789abcdef"]),
            "12fe2f50058c50af6b7884f0b3e88567"
        );
        assert_eq!(public_addr("127.0.0.1:1"), "127.0.0.1:1");
    }
}
