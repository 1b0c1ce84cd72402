//! Every mutating operation as a value: the CLI builds one, then either applies it to the
//! coordinator itself ([`crate::topom::Ctx::apply`]) or sends it to the dashboard, whose HTTP
//! routes (Codis 3.2's `/api/topom/...` shape) decode it back. One definition, two transports.

use serde::{Deserialize, Serialize};

/// A server's role in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `servers[0]`: takes writes.
    Master,
    /// A replica of the group's master.
    Slave,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "master" => Ok(Role::Master),
            "slave" | "replica" => Ok(Role::Slave),
            _ => Err(format!("role {s:?}: want master or slave")),
        }
    }
}

impl Role {
    /// `master` / `slave`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Slave => "slave",
        }
    }
}

/// A mutating operation on the product.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Write all 1024 slots offline (`force` resets assigned ones).
    SlotInit { force: bool },
    /// Force one slot to a group (`online`) or offline, clearing its action.
    SlotSet { slot: u32, gid: u32, status: String },
    /// Assign a range of slots without moving data.
    SlotRangeSet {
        from: u32,
        to: u32,
        gid: u32,
        status: String,
    },
    /// Create migration actions for a range of slots.
    SlotMigrate {
        from: u32,
        to: u32,
        gid: u32,
        delay_ms: Option<u64>,
    },
    /// Compute (and with `confirm`, apply) Codis' rebalance plan.
    SlotRebalance { confirm: bool },
    /// Pause the migration executor.
    SlotActionPause,
    /// Resume it.
    SlotActionResume,
    /// Remove not-yet-migrating actions (one slot, or all).
    SlotActionCancel { slot: Option<u32> },
    /// Add a server to a group, configuring replication.
    ServerAdd { gid: u32, addr: String, role: Role },
    /// Remove a server from a group.
    ServerRemove { gid: u32, addr: String },
    /// Promote a replica to master.
    ServerPromote { gid: u32, addr: String },
    /// Create an empty group.
    GroupCreate { gid: u32 },
    /// Remove an empty group.
    GroupRemove { gid: u32 },
    /// Register a proxy from its admin address.
    ProxyOnline { addr: String },
    /// Remove a proxy registration (by id, token or address).
    ProxyOffline { id: String },
    /// Restore a `config dump` JSON.
    ConfigRestore {
        config: serde_json::Value,
        force: bool,
    },
}

fn enc(s: &str) -> String {
    // Addresses and tokens only ever hold [A-Za-z0-9.:_-]; escape anything else.
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b':' | b'_' | b'-' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Decodes `%XX` escapes in a path segment.
pub fn dec(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Request {
    /// The dashboard path (PUT) and JSON body of this request, authenticated by `xauth`.
    pub fn http(&self, xauth: &str) -> (String, Option<serde_json::Value>) {
        let x = xauth;
        let p = match self {
            Request::SlotInit { force } => format!("/api/topom/slots/init/{x}/{}", *force as u8),
            Request::SlotSet { slot, gid, status } => {
                format!("/api/topom/slots/set/{x}/{slot}/{gid}/{}", enc(status))
            }
            Request::SlotRangeSet {
                from,
                to,
                gid,
                status,
            } => format!(
                "/api/topom/slots/assign-range/{x}/{from}/{to}/{gid}/{}",
                enc(status)
            ),
            Request::SlotMigrate {
                from,
                to,
                gid,
                delay_ms,
            } => match delay_ms {
                Some(d) => format!(
                    "/api/topom/slots/action/create-range/{x}/{from}/{to}/{gid}?delay_ms={d}"
                ),
                None => format!("/api/topom/slots/action/create-range/{x}/{from}/{to}/{gid}"),
            },
            Request::SlotRebalance { confirm } => {
                format!("/api/topom/slots/rebalance/{x}/{}", *confirm as u8)
            }
            Request::SlotActionPause => format!("/api/topom/slots/action/disabled/{x}/1"),
            Request::SlotActionResume => format!("/api/topom/slots/action/disabled/{x}/0"),
            Request::SlotActionCancel { slot } => match slot {
                Some(s) => format!("/api/topom/slots/action/remove/{x}/{s}"),
                None => format!("/api/topom/slots/action/remove/{x}/all"),
            },
            Request::ServerAdd { gid, addr, role } => format!(
                "/api/topom/group/add/{x}/{gid}/{}/{}",
                enc(addr),
                role.as_str()
            ),
            Request::ServerRemove { gid, addr } => {
                format!("/api/topom/group/del/{x}/{gid}/{}", enc(addr))
            }
            Request::ServerPromote { gid, addr } => {
                format!("/api/topom/group/promote/{x}/{gid}/{}", enc(addr))
            }
            Request::GroupCreate { gid } => format!("/api/topom/group/create/{x}/{gid}"),
            Request::GroupRemove { gid } => format!("/api/topom/group/remove/{x}/{gid}"),
            Request::ProxyOnline { addr } => {
                format!("/api/topom/proxy/online/{x}/{}", enc(addr))
            }
            Request::ProxyOffline { id } => format!("/api/topom/proxy/remove/{x}/{}", enc(id)),
            Request::ConfigRestore { config, force } => {
                return (
                    format!("/api/topom/config/restore/{x}/{}", *force as u8),
                    Some(config.clone()),
                )
            }
        };
        (p, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let r = Request::ServerAdd {
            gid: 1,
            addr: "127.0.0.1:6379".into(),
            role: Role::Slave,
        };
        assert_eq!(
            r.http("tok").0,
            "/api/topom/group/add/tok/1/127.0.0.1:6379/slave"
        );
        assert_eq!(dec("a%2Fb"), "a/b");
        assert_eq!(dec("%"), "%");
        assert_eq!(enc("a/b c"), "a%2Fb%20c");
    }
}
