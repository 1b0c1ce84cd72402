//! The proxy's configuration: defaults (Codis 3.2's `proxy.toml`), then a `proxy.toml`, then a
//! `config.ini` (`coordinator=`, `zk=`, `product=`, `dashboard_addr=`), then command-line flags.
//!
//! Listen addresses default to loopback (`127.0.0.1:19000`, admin `127.0.0.1:11000`), not to
//! Codis's `0.0.0.0`: exposing the proxy to the network is an explicit choice.

use std::time::Duration;

use coord::{CoordConfig, Kind};

/// How the proxy forwards a key of a migrating slot (Codis's `migration_method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrationMethod {
    /// `SLOTSMGRTTAGONE host port 3000 key` on the source, then the command on the target.
    Sync,
    /// `SLOTSMGRT-EXEC-WRAPPER key cmd args…` on the source; the target if the key is gone.
    SemiAsync,
}

/// A configuration error, printed before the process exits.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: String },
    #[error("{path}: {cause}")]
    Parse { path: String, cause: String },
    #[error("bad value for {key}: {value:?} ({why})")]
    Value {
        key: String,
        value: String,
        why: &'static str,
    },
    #[error("coordinator: {0}")]
    Coord(#[from] coord::Error),
}

/// Everything the proxy needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub product_name: String,
    /// Password sent with AUTH to every backend.
    pub product_auth: String,
    /// Password clients must send with AUTH ("" = none).
    pub session_auth: String,
    /// Client listener.
    pub proxy_addr: String,
    /// Admin HTTP listener.
    pub admin_addr: String,
    /// Executors (one per core).
    pub ncpu: usize,
    /// Where the topology lives (`None`: the proxy stays offline).
    pub coordinator: Option<CoordConfig>,
    /// The dashboard address, shown in the model only.
    pub dashboard_addr: String,
    pub proxy_datacenter: String,
    pub proxy_max_clients: usize,
    pub backend_ping_period: Duration,
    pub backend_recv_bufsize: usize,
    pub backend_recv_timeout: Duration,
    pub backend_send_bufsize: usize,
    pub backend_send_timeout: Duration,
    pub backend_max_pipeline: usize,
    pub backend_primary_only: bool,
    /// codis-rs: one connection per codis-server core, each request on its slot's core's
    /// connection (see `backend.rs`, "Lanes"). Off: one connection per server, as Codis.
    pub backend_core_lanes: bool,
    /// codis-rs: reach a server on this host through its `unixsocket` (asked with `CONFIG GET`
    /// when the TCP connection's two ends share an address) instead of loopback TCP.
    pub backend_prefer_unixsocket: bool,
    /// codis-rs: no transparent huge pages for this process (`disable_thp`, default true; see
    /// [`crate::runtime::disable_thp`]).
    pub disable_thp: bool,
    pub backend_keepalive_period: Duration,
    pub backend_number_databases: u32,
    pub session_recv_bufsize: usize,
    pub session_recv_timeout: Duration,
    pub session_send_bufsize: usize,
    pub session_send_timeout: Duration,
    pub session_max_pipeline: usize,
    pub session_keepalive_period: Duration,
    pub session_break_on_failure: bool,
    /// Largest bulk a client may send (`proto-max-bulk-len`).
    pub session_max_bulk: usize,
    /// Largest unparsed request bytes buffered per client before it is closed.
    pub session_max_bufsize: usize,
    pub migration_method: MigrationMethod,
    /// Requests slower than this go to the slow log.
    pub slowlog_slower_than: Duration,
    /// How many of the slowest requests the slow log keeps.
    pub slowlog_max_len: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            product_name: "codis-demo".into(),
            product_auth: String::new(),
            session_auth: String::new(),
            proxy_addr: "127.0.0.1:19000".into(),
            admin_addr: "127.0.0.1:11000".into(),
            ncpu: 1,
            coordinator: None,
            dashboard_addr: String::new(),
            proxy_datacenter: String::new(),
            proxy_max_clients: 1000,
            backend_ping_period: Duration::from_secs(5),
            backend_recv_bufsize: 128 * 1024,
            backend_recv_timeout: Duration::from_secs(30),
            backend_send_bufsize: 128 * 1024,
            backend_send_timeout: Duration::from_secs(30),
            backend_max_pipeline: 20480,
            backend_primary_only: false,
            backend_core_lanes: true,
            backend_prefer_unixsocket: true,
            disable_thp: true,
            backend_keepalive_period: Duration::from_secs(75),
            backend_number_databases: 16,
            session_recv_bufsize: 128 * 1024,
            session_recv_timeout: Duration::from_secs(30 * 60),
            session_send_bufsize: 64 * 1024,
            session_send_timeout: Duration::from_secs(30),
            session_max_pipeline: 10000,
            session_keepalive_period: Duration::from_secs(75),
            session_break_on_failure: false,
            session_max_bulk: 512 * 1024 * 1024,
            session_max_bufsize: 1024 * 1024 * 1024,
            migration_method: MigrationMethod::SemiAsync,
            slowlog_slower_than: Duration::from_millis(10),
            slowlog_max_len: 128,
        }
    }
}

/// Parses Codis durations: `"5s"`, `"30m"`, `"100ms"`, `"1h"`, `"0"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "us" | "µs" => n / 1_000_000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    // A huge number (or one that overflows to infinity) is an error, not a panic.
    Duration::try_from_secs_f64(secs).ok()
}

/// Parses Codis sizes: `"128kb"`, `"1024mb"`, `"1gb"`, `"4096"`.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().ok()?;
    let mul = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mul)
}

fn bad(key: &str, value: &str, why: &'static str) -> ConfigError {
    ConfigError::Value {
        key: key.into(),
        value: value.into(),
        why,
    }
}

impl Config {
    /// Applies one `key = value` setting (proxy.toml names). `Ok(false)`: not a proxy key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        let dur = |v: &str| parse_duration(v).ok_or_else(|| bad(key, v, "want a duration like 5s"));
        let size = |v: &str| parse_size(v).ok_or_else(|| bad(key, v, "want a size like 128kb"));
        let num = |v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| bad(key, v, "want a number"))
        };
        let boolean = |v: &str| match v.trim() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(bad(key, v, "want true or false")),
        };
        match key {
            "product_name" | "product" => {
                coord::paths::validate_product(value)?;
                self.product_name = value.into();
            }
            "product_auth" => self.product_auth = value.into(),
            "session_auth" => self.session_auth = value.into(),
            "proxy_addr" => self.proxy_addr = value.into(),
            "admin_addr" => self.admin_addr = value.into(),
            "dashboard_addr" => self.dashboard_addr = value.into(),
            "proxy_datacenter" => self.proxy_datacenter = value.into(),
            "proxy_max_clients" => self.proxy_max_clients = num(value)?,
            "backend_ping_period" => self.backend_ping_period = dur(value)?,
            "backend_recv_bufsize" => self.backend_recv_bufsize = size(value)?,
            "backend_recv_timeout" => self.backend_recv_timeout = dur(value)?,
            "backend_send_bufsize" => self.backend_send_bufsize = size(value)?,
            "backend_send_timeout" => self.backend_send_timeout = dur(value)?,
            "backend_max_pipeline" => self.backend_max_pipeline = num(value)?.max(1),
            "backend_primary_only" => self.backend_primary_only = boolean(value)?,
            "backend_core_lanes" => self.backend_core_lanes = boolean(value)?,
            "backend_prefer_unixsocket" => self.backend_prefer_unixsocket = boolean(value)?,
            "disable_thp" => self.disable_thp = boolean(value)?,
            "backend_keepalive_period" => self.backend_keepalive_period = dur(value)?,
            "backend_number_databases" => {
                let n = num(value)?;
                if n == 0 || n > 1024 {
                    return Err(bad(key, value, "want 1..1024"));
                }
                self.backend_number_databases = n as u32;
            }
            "session_recv_bufsize" => self.session_recv_bufsize = size(value)?,
            "session_recv_timeout" => self.session_recv_timeout = dur(value)?,
            "session_send_bufsize" => self.session_send_bufsize = size(value)?,
            "session_send_timeout" => self.session_send_timeout = dur(value)?,
            "session_max_pipeline" => self.session_max_pipeline = num(value)?.max(1),
            "session_keepalive_period" => self.session_keepalive_period = dur(value)?,
            "session_break_on_failure" => self.session_break_on_failure = boolean(value)?,
            "session_max_bulk" => self.session_max_bulk = size(value)?,
            "session_max_bufsize" => self.session_max_bufsize = size(value)?,
            "migration_method" => {
                self.migration_method = match value.trim() {
                    "sync" => MigrationMethod::Sync,
                    "semi-async" => MigrationMethod::SemiAsync,
                    _ => return Err(bad(key, value, "want sync or semi-async")),
                }
            }
            "slowlog_slower_than" => self.slowlog_slower_than = dur(value)?,
            "slowlog_max_len" => self.slowlog_max_len = num(value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Applies a `proxy.toml` (Codis 3.2 keys; `coordinator_name`/`coordinator_addr`/
    /// `coordinator_auth` choose the coordinator). Keys of Codis features this proxy does not have
    /// (jodis, metrics exporters, Go heap tuning) are logged and ignored.
    pub fn apply_toml(&mut self, path: &str, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: path.into(),
                cause: e.to_string(),
            })?;
        let mut coord_name = None;
        let mut coord_addr = None;
        let mut coord_auth = None;
        for (k, v) in &table {
            let value = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Float(f) => f.to_string(),
                _ => return Err(bad(k, &v.to_string(), "want a string, number or boolean")),
            };
            match k.as_str() {
                "coordinator_name" => coord_name = Some(value),
                "coordinator_addr" => coord_addr = Some(value),
                "coordinator_auth" => coord_auth = Some(value),
                _ => {
                    if !self.set(k, &value)? {
                        tracing::warn!("{path}: ignoring {k} (not used by this proxy)");
                    }
                }
            }
        }
        if let Some(addr) = coord_addr.filter(|a| !a.is_empty()) {
            let kind: Kind = coord_name.as_deref().unwrap_or("filesystem").parse()?;
            let mut cc = CoordConfig::new(kind, &addr, &self.product_name);
            cc.auth = coord_auth.filter(|a| !a.is_empty());
            self.coordinator = Some(cc);
        }
        Ok(())
    }

    /// Applies a Codis-seed `config.ini` (`coordinator=`, `zk=`, `product=`, `dashboard_addr=`,
    /// and any proxy.toml key written as `key=value`).
    pub fn apply_ini(&mut self, text: &str) -> Result<(), ConfigError> {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim().trim_matches('"'));
            match k {
                "coordinator" | "zk" | "auth" | "coordinator_auth" | "zk_auth"
                | "session_timeout_ms" | "coordinator_name" | "coordinator_addr" => {}
                _ => {
                    self.set(k, v)?;
                }
            }
        }
        if text.lines().any(|l| {
            l.trim_start().starts_with("zk") || l.trim_start().starts_with("coordinator_addr")
        }) {
            let mut with_product = text.to_string();
            if !text.lines().any(|l| {
                let l = l.trim_start();
                l.starts_with("product=")
                    || l.starts_with("product_name")
                    || l.starts_with("product ")
            }) {
                with_product.push_str(&format!("\nproduct={}\n", self.product_name));
            }
            self.coordinator = Some(CoordConfig::from_ini(&with_product)?);
        }
        Ok(())
    }

    /// Points the coordinator config (if any) at the final product name.
    pub fn finish(&mut self) {
        if let Some(c) = &mut self.coordinator {
            c.product = self.product_name.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_size("128kb"), Some(128 * 1024));
        assert_eq!(parse_size("1024mb"), Some(1 << 30));
        assert_eq!(parse_size("12q"), None);
    }

    /// Found by `scripts/fuzz` (proxy/config): a huge duration panicked in `from_secs_f64`.
    #[test]
    fn huge_durations_are_errors() {
        let huge = "8".repeat(400);
        assert_eq!(parse_duration(&huge), None);
        assert_eq!(parse_duration("99999999999999999999999h"), None);
        assert!(Config::default().set("backend_ping_period", &huge).is_err());
        assert!(Config::default()
            .apply_toml("x", &format!("session_recv_timeout = {huge}.0"))
            .is_err());
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn toml_and_ini() {
        let mut c = Config::default();
        c.apply_toml(
            "proxy.toml",
            r#"
product_name = "demo"
product_auth = "pw"
session_auth = "s"
proxy_max_clients = 7
backend_ping_period = "2s"
backend_primary_only = true
session_max_pipeline = 99
jodis_name = ""
coordinator_name = "zookeeper"
coordinator_addr = "127.0.0.1:2181"
"#,
        )
        .unwrap();
        assert_eq!(c.product_name, "demo");
        assert_eq!(c.proxy_max_clients, 7);
        assert_eq!(c.backend_ping_period, Duration::from_secs(2));
        assert!(c.backend_primary_only);
        assert_eq!(c.session_max_pipeline, 99);
        assert_eq!(c.coordinator.as_ref().unwrap().kind, Kind::ZooKeeper);
        let mut c = Config::default();
        c.apply_ini(
            "coordinator=filesystem\nzk=/tmp/x\nproduct=p1\ndashboard_addr=127.0.0.1:18087\n",
        )
        .unwrap();
        c.finish();
        assert_eq!(c.product_name, "p1");
        assert_eq!(c.dashboard_addr, "127.0.0.1:18087");
        let cc = c.coordinator.unwrap();
        assert_eq!(
            (cc.kind, cc.addr.as_str(), cc.product.as_str()),
            (Kind::Filesystem, "/tmp/x", "p1")
        );
        let mut c = Config::default();
        assert!(c.apply_toml("x", "backend_ping_period = \"soon\"").is_err());
        assert!(c.set("product_name", "bad/name").is_err());
    }
}
