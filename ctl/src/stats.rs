//! Live status of group servers (`INFO`) and proxies (admin HTTP stats), as the dashboard polls
//! them every second and `server list` / `proxy list` show them.

use std::time::Duration;

use serde::Serialize;

use crate::redis::{keyspace_dbs, RedisConn};

/// One group server as seen now.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ServerStatus {
    pub gid: u32,
    pub addr: String,
    /// What the topology says: `master` (servers[0]) or `slave`.
    pub expected_role: String,
    /// What `INFO replication` says (`master`/`slave`), if the server answered.
    pub role: Option<String>,
    /// `master_host:master_port` of a replica.
    pub master: Option<String>,
    /// `master_link_status` of a replica (`up`/`down`).
    pub link: Option<String>,
    pub keys: u64,
    pub used_memory: u64,
    pub ops_per_sec: u64,
    pub clients: u64,
    /// True when the server's role and master match the topology.
    pub in_sync: bool,
    /// Why it could not be read.
    pub error: Option<String>,
}

fn num(info: &std::collections::BTreeMap<String, String>, k: &str) -> u64 {
    info.get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Reads one server's status; `group_master` is servers[0] of its group.
pub async fn server_status(
    gid: u32,
    addr: &str,
    group_master: Option<&str>,
    auth: &str,
    timeout: Duration,
) -> ServerStatus {
    let expected_master = group_master == Some(addr);
    let mut st = ServerStatus {
        gid,
        addr: addr.to_string(),
        expected_role: if expected_master { "master" } else { "slave" }.to_string(),
        ..Default::default()
    };
    let info = async {
        let mut c = RedisConn::connect(addr, auth, timeout).await?;
        c.info(None).await
    };
    match tokio::time::timeout(timeout * 2, info).await {
        Ok(Ok(info)) => {
            let role = info.get("role").cloned().unwrap_or_default();
            if role == "slave" {
                let host = info.get("master_host").cloned().unwrap_or_default();
                let port = info.get("master_port").cloned().unwrap_or_default();
                st.master = Some(format!("{host}:{port}"));
                st.link = info.get("master_link_status").cloned();
            }
            st.in_sync = if expected_master {
                role == "master"
            } else {
                role == "slave" && st.master.as_deref() == group_master
            };
            st.role = Some(role);
            st.keys = keyspace_dbs(&info).iter().map(|(_, k)| k).sum();
            st.used_memory = num(&info, "used_memory");
            st.ops_per_sec = num(&info, "instantaneous_ops_per_sec");
            st.clients = num(&info, "connected_clients");
        }
        Ok(Err(e)) => st.error = Some(e.to_string()),
        Err(_) => st.error = Some("TIMEOUT".to_string()),
    }
    st
}
