//! codisctl's configuration: the coordinator (`coordinator`, `zk`, `product`, `auth`), the
//! product auth, the dashboard address and Codis' migration settings, from a `config.ini`
//! and/or flags.

use std::time::Duration;

use coord::{CoordConfig, Kind};

use crate::error::{CtlError, Result};

/// Default dashboard HTTP address (loopback only unless told otherwise).
pub const DEFAULT_DASHBOARD_ADDR: &str = "127.0.0.1:18087";

/// How the executor drains a slot on the source master.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationMethod {
    /// `SLOTSMGRTTAGSLOT host port timeout slot`.
    Sync,
    /// `SLOTSMGRTTAGSLOT-ASYNC host port timeout maxbulks maxbytes slot numkeys`.
    SemiAsync,
}

/// Codis' `migration_*` settings (dashboard.toml).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MigrationSettings {
    pub method: MigrationMethod,
    pub async_maxbulks: u64,
    pub async_maxbytes: u64,
    pub async_numkeys: u64,
    /// Redis timeout of one migration command.
    pub timeout_ms: u64,
    /// Maximum slots in flight at once (locked, opening or draining), over all group pairs
    /// (each group with one partner group at a time): every pair's batch runs three waves at a
    /// time, so a wave is at most `parallel_slots / (3 × pairs)` slots.
    pub parallel_slots: usize,
    /// Slots of a batch locked (`prepared`) together: a batch advances in waves of this many
    /// slots, so only a wave's requests are ever held (`migration_wave_slots`).
    #[serde(default = "default_wave_slots")]
    pub wave_slots: usize,
    /// Slots of a wave drained at once, each over its own connection to the source master
    /// (`migration_drain_parallel`). 0 (the default): one per executor core of the source
    /// master (`executor_cores` in its INFO; 1 for a server that does not report it).
    #[serde(default = "default_drain_parallel")]
    pub drain_parallel: usize,
}

/// 32: half as many coordinator writes and pushes per migration as 16, the default until
/// session 36. With the filesystem coordinator on this VM's disk every write brought on
/// periodic stalls of the CPUs, and a 512-slot migration under load had its GET p99 at a median
/// of 1.22 ms with waves of 32-33 slots against 1.90 with 16, and moved keys faster
/// (BENCHMARKS.md, session 36). A wave is locked for one push round trip (about 2 ms), so its
/// slots' requests wait no longer for it being bigger.
fn default_wave_slots() -> usize {
    32
}

fn default_drain_parallel() -> usize {
    0
}

impl Default for MigrationSettings {
    fn default() -> Self {
        MigrationSettings {
            method: MigrationMethod::SemiAsync,
            async_maxbulks: 200,
            async_maxbytes: 32 << 20,
            async_numkeys: 500,
            timeout_ms: 30_000,
            parallel_slots: 100,
            wave_slots: default_wave_slots(),
            drain_parallel: default_drain_parallel(),
        }
    }
}

/// Everything codisctl needs to know.
#[derive(Clone, Debug)]
pub struct CtlConfig {
    /// The coordinator, when one is configured.
    pub coord: Option<CoordConfig>,
    /// The product name.
    pub product: String,
    /// `product_auth`: the password of servers, and the secret the API token derives from.
    pub product_auth: String,
    /// `dashboard_addr`.
    pub dashboard_addr: Option<String>,
    /// Migration settings.
    pub migration: MigrationSettings,
}

/// Parses a size such as `32mb`, `512kb`, `1024`.
pub fn parse_bytes(v: &str) -> Result<u64> {
    let s = v.trim().to_ascii_lowercase();
    let (num, mul) = if let Some(n) = s.strip_suffix("gb") {
        (n, 1u64 << 30)
    } else if let Some(n) = s.strip_suffix("mb") {
        (n, 1 << 20)
    } else if let Some(n) = s.strip_suffix("kb") {
        (n, 1 << 10)
    } else if let Some(n) = s.strip_suffix('b') {
        (n, 1)
    } else {
        (s.as_str(), 1)
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| CtlError::invalid(format!("bad size {v:?} (want e.g. 32mb, 512kb, 1024)")))
}

/// Parses a duration such as `30s`, `500ms`, `2m`, or plain milliseconds.
pub fn parse_duration(v: &str) -> Result<Duration> {
    let s = v.trim().to_ascii_lowercase();
    let bad = || CtlError::invalid(format!("bad duration {v:?} (want e.g. 30s, 500ms)"));
    let (num, unit_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        (s.as_str(), 1)
    };
    let n: u64 = num.trim().parse().map_err(|_| bad())?;
    Ok(Duration::from_millis(
        n.checked_mul(unit_ms).ok_or_else(bad)?,
    ))
}

impl CtlConfig {
    /// A config for `product` with no coordinator and defaults elsewhere.
    pub fn new(product: &str) -> Self {
        CtlConfig {
            coord: None,
            product: product.to_string(),
            product_auth: String::new(),
            dashboard_addr: None,
            migration: MigrationSettings::default(),
        }
    }

    /// Reads `config.ini` text: the coordinator keys (see `coord::CoordConfig::from_ini`),
    /// `product_auth`, `dashboard_addr` and `migration_*`.
    pub fn from_ini(text: &str) -> Result<Self> {
        let mut product = None;
        let mut has_coord = false;
        let mut cfg = CtlConfig::new("codis-demo");
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').to_string();
            let m = &mut cfg.migration;
            match k.trim() {
                "zk" | "coordinator_addr" => has_coord = true,
                "product" | "product_name" => product = Some(v),
                "product_auth" => cfg.product_auth = v,
                "dashboard_addr" | "dashboard" if !v.is_empty() => cfg.dashboard_addr = Some(v),
                "migration_method" => {
                    m.method = match v.as_str() {
                        "sync" => MigrationMethod::Sync,
                        "semi-async" => MigrationMethod::SemiAsync,
                        _ => {
                            return Err(CtlError::invalid(format!(
                                "migration_method {v:?}: want sync or semi-async"
                            )))
                        }
                    }
                }
                "migration_async_maxbulks" => m.async_maxbulks = parse_bytes(&v)?,
                "migration_async_maxbytes" => m.async_maxbytes = parse_bytes(&v)?,
                "migration_async_numkeys" => m.async_numkeys = parse_bytes(&v)?,
                "migration_timeout" => m.timeout_ms = parse_duration(&v)?.as_millis() as u64,
                "migration_parallel_slots" => m.parallel_slots = parse_bytes(&v)?.max(1) as usize,
                "migration_wave_slots" => m.wave_slots = parse_bytes(&v)?.max(1) as usize,
                "migration_drain_parallel" => m.drain_parallel = parse_bytes(&v)? as usize,
                _ => {}
            }
        }
        if let Some(p) = product {
            coord::paths::validate_product(&p)?;
            cfg.product = p;
        }
        if has_coord {
            cfg.coord = Some(CoordConfig::from_ini(text)?);
        }
        Ok(cfg)
    }

    /// Applies flags over the file's values.
    pub fn apply_flags(
        &mut self,
        coordinator: Option<&str>,
        zk: Option<&str>,
        product: Option<&str>,
        product_auth: Option<&str>,
        dashboard: Option<&str>,
    ) -> Result<()> {
        if let Some(p) = product {
            coord::paths::validate_product(p)?;
            self.product = p.to_string();
        }
        if let Some(a) = product_auth {
            self.product_auth = a.to_string();
        }
        if let Some(d) = dashboard {
            self.dashboard_addr = Some(d.to_string());
        }
        let kind = match coordinator {
            Some(k) => Some(k.parse::<Kind>()?),
            None => None,
        };
        match (&mut self.coord, zk) {
            (Some(c), _) => {
                if let Some(k) = kind {
                    c.kind = k;
                }
                if let Some(z) = zk {
                    c.addr = z.to_string();
                }
                c.product = self.product.clone();
            }
            (None, Some(z)) => {
                self.coord = Some(CoordConfig::new(
                    kind.unwrap_or(Kind::Filesystem),
                    z,
                    &self.product,
                ))
            }
            (None, None) if kind.is_some() => {
                return Err(CtlError::invalid(
                    "--coordinator needs --zk (the coordinator address or filesystem root)",
                ))
            }
            (None, None) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_and_flags() {
        let c = CtlConfig::from_ini(
            "coordinator=filesystem\nzk=/tmp/x\nproduct=demo\nproduct_auth=pw\ndashboard_addr=127.0.0.1:1\nmigration_method=sync\nmigration_async_maxbytes=1mb\nmigration_timeout=5s\n",
        )
        .unwrap();
        assert_eq!(c.product, "demo");
        assert_eq!(c.product_auth, "pw");
        assert_eq!(c.dashboard_addr.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(c.migration.method, MigrationMethod::Sync);
        assert_eq!(c.migration.async_maxbytes, 1 << 20);
        assert_eq!(c.migration.timeout_ms, 5000);
        assert_eq!(c.coord.as_ref().unwrap().addr, "/tmp/x");
        let mut c = CtlConfig::new("p");
        c.apply_flags(Some("zk"), Some("127.0.0.1:2181"), Some("q"), None, None)
            .unwrap();
        let cc = c.coord.unwrap();
        assert_eq!((cc.kind, cc.product.as_str()), (Kind::ZooKeeper, "q"));
        assert!(CtlConfig::new("p")
            .apply_flags(Some("zk"), None, None, None, None)
            .is_err());
        assert!(CtlConfig::from_ini("migration_method=fast").is_err());
    }

    /// The default wave fits the default bound on slots in flight for one pair of groups (three
    /// waves at a time), so a plain two-group migration runs waves of the documented size.
    #[test]
    fn default_wave_fits_the_default_slots_in_flight() {
        let m = CtlConfig::new("p").migration;
        assert_eq!(m.wave_slots, 32);
        assert!(m.wave_slots <= m.parallel_slots / 3, "{m:?}");
    }

    /// Found by `scripts/fuzz` (ctl/config): a huge number times its unit overflowed.
    #[test]
    fn huge_sizes_and_durations_are_errors() {
        assert!(parse_duration("99999999999999999m").is_err());
        assert!(parse_duration("18446744073709552s").is_err());
        assert!(parse_bytes("99999999999999999gb").is_err());
        assert!(CtlConfig::from_ini("migration_timeout=99999999999999999m").is_err());
        assert_eq!(parse_bytes("16gb").ok(), Some(16 << 30));
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
    }
}
