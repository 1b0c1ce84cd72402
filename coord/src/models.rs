//! The stored models, field for field Codis 3.2's JSON (`pkg/models/*`), plus this project's
//! proxy acknowledgements and liveness records.

use serde::{Deserialize, Serialize};

/// Number of slots (`MaxSlotNum`).
pub const MAX_SLOT_NUM: u32 = 1024;
/// Highest group id (`MaxGroupId`); group 0 means offline.
pub const MAX_GROUP_ID: u32 = 9999;

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// The dashboard's record; its node is also the product lock (`/codis3/{p}/topom`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Topom {
    pub token: String,
    pub start_time: String,
    pub admin_addr: String,
    pub product_name: String,
    pub pid: u32,
    pub pwd: String,
    pub sys: String,
}

/// Migration state of one slot: `"" → pending → preparing → prepared → migrating → finished → ""`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum SlotState {
    /// No action (`""`).
    #[default]
    #[serde(rename = "")]
    Nothing,
    #[serde(rename = "pending")]
    Pending,
    #[serde(rename = "preparing")]
    Preparing,
    #[serde(rename = "prepared")]
    Prepared,
    #[serde(rename = "migrating")]
    Migrating,
    #[serde(rename = "finished")]
    Finished,
}

impl SlotState {
    /// The string Codis stores.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotState::Nothing => "",
            SlotState::Pending => "pending",
            SlotState::Preparing => "preparing",
            SlotState::Prepared => "prepared",
            SlotState::Migrating => "migrating",
            SlotState::Finished => "finished",
        }
    }
    /// True for `""`.
    pub fn is_nothing(&self) -> bool {
        *self == SlotState::Nothing
    }
}

/// A slot's pending or running migration (`SlotMapping.Action`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlotAction {
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub index: u64,
    #[serde(skip_serializing_if = "SlotState::is_nothing")]
    pub state: SlotState,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub target_id: u32,
}

/// `/codis3/{p}/slots/slot-{%04d}`: which group serves a slot, and its migration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlotMapping {
    pub id: u32,
    pub group_id: u32,
    pub action: SlotAction,
}

impl SlotMapping {
    /// The mapping of an absent node: offline, group 0.
    pub fn offline(id: u32) -> Self {
        SlotMapping {
            id,
            ..Default::default()
        }
    }
}

/// A server's or a group's action (`{index, state}`); states are free-form strings in Codis
/// (`pending`, `syncing`, `synced`, `synced_failed`; `preparing`, `prepared`, `finished`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IndexState {
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub index: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub state: String,
}

/// One server of a group; `servers[0]` is the master.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupServer {
    #[serde(rename = "server")]
    pub addr: String,
    pub datacenter: String,
    pub action: IndexState,
    pub replica_group: bool,
}

/// `/codis3/{p}/group/group-{%04d}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Group {
    pub id: u32,
    pub servers: Vec<GroupServer>,
    pub promoting: IndexState,
    pub out_of_sync: bool,
}

impl Group {
    /// The master's address (`servers[0]`), if the group has servers.
    pub fn master(&self) -> Option<&str> {
        self.servers.first().map(|s| s.addr.as_str())
    }
}

/// `/codis3/{p}/proxy/proxy-{token}`: a registered proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Proxy {
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub id: u32,
    pub token: String,
    pub start_time: String,
    pub admin_addr: String,
    pub proto_type: String,
    pub proxy_addr: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub jodis_path: String,
    pub product_name: String,
    pub pid: u32,
    pub pwd: String,
    pub sys: String,
    pub hostname: String,
    pub datacenter: String,
}

/// `/codis3/{p}/sentinel`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sentinel {
    pub servers: Vec<String>,
    pub out_of_sync: bool,
}

/// One slot as a proxy has applied it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AckedSlot {
    pub id: u32,
    pub group_id: u32,
    pub state: SlotState,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub index: u64,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub target_id: u32,
}

/// `/codis3/{p}/ack/proxy-{token}`: what a proxy has applied, written by the proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProxyAck {
    pub token: String,
    /// The topology version the proxy runs.
    pub topology_version: u64,
    /// The slots it has applied (all of them, or only those not in the `""` state).
    pub slots: Vec<AckedSlot>,
}

impl ProxyAck {
    /// The acknowledged record of slot `sid`, if any.
    pub fn slot(&self, sid: u32) -> Option<&AckedSlot> {
        self.slots.iter().find(|s| s.id == sid)
    }
    /// True when the proxy acknowledged `mapping`'s state, action index and target.
    pub fn has_applied(&self, mapping: &SlotMapping) -> bool {
        match self.slot(mapping.id) {
            Some(a) => {
                a.state == mapping.action.state
                    && a.index == mapping.action.index
                    && a.target_id == mapping.action.target_id
                    && a.group_id == mapping.group_id
            }
            None => mapping.action.state.is_nothing() && self.topology_version > 0,
        }
    }
}

/// The body of a proxy's `PUT /api/proxy/fillslots/{xauth}` (this project's form of Codis'
/// fillslots push): slot mappings and the groups they name, exactly as stored in the coordinator
/// at topology `version`. The proxy merges them into its snapshot, applies the result on every
/// core (a `prepared` slot is drained, then locked) and answers only then.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FillSlots {
    /// The topology version these records were written at (or any later one).
    pub version: u64,
    pub slots: Vec<SlotMapping>,
    pub groups: Vec<Group>,
}

/// `/codis3/{p}/alive/proxy-{token}`: ephemeral, exists while the proxy process runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProxyAlive {
    pub token: String,
    pub proxy_addr: String,
    pub admin_addr: String,
    pub pid: u32,
    pub start_time: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_mapping_json_matches_codis() {
        let m = SlotMapping::offline(3);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"id":3,"group_id":0,"action":{}}"#
        );
        let m = SlotMapping {
            id: 5,
            group_id: 1,
            action: SlotAction {
                index: 9,
                state: SlotState::Migrating,
                target_id: 2,
            },
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(
            s,
            r#"{"id":5,"group_id":1,"action":{"index":9,"state":"migrating","target_id":2}}"#
        );
        assert_eq!(serde_json::from_str::<SlotMapping>(&s).unwrap(), m);
        assert!(
            serde_json::from_str::<SlotMapping>(r#"{"id":1,"action":{"state":"bogus"}}"#).is_err()
        );
    }

    #[test]
    fn group_json_matches_codis() {
        let g: Group = serde_json::from_str(
            r#"{"id":1,"servers":[{"server":"127.0.0.1:6379","datacenter":"","action":{},"replica_group":false}],"promoting":{},"out_of_sync":false}"#,
        )
        .unwrap();
        assert_eq!(g.master(), Some("127.0.0.1:6379"));
        assert_eq!(
            serde_json::to_string(&g).unwrap(),
            r#"{"id":1,"servers":[{"server":"127.0.0.1:6379","datacenter":"","action":{},"replica_group":false}],"promoting":{},"out_of_sync":false}"#
        );
    }
}
