//! The catalog's data model. Field names serialize exactly as Consul's
//! HTTP API writes them, so the API crate can hand these types out as-is
//! and the durable store keeps them in the same form.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Check ID of the liveness check every node carries (Consul's serf
/// health check). On a node kept by a shoal agent it has a TTL: the
/// agent's heartbeat.
pub const NODE_HEALTH_CHECK: &str = "serfHealth";

/// A machine (or agent) that hosts service instances.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    /// Node UUID, may be empty for nodes registered through the catalog.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name: the node's identity in the catalog.
    #[serde(rename = "Node")]
    pub name: String,
    /// Address instances fall back to when they have none of their own.
    pub address: String,
    /// Datacenter the node belongs to.
    pub datacenter: String,
    /// Extra addresses (`lan`, `wan`, ...).
    #[serde(deserialize_with = "null_default")]
    pub tagged_addresses: BTreeMap<String, String>,
    /// Free-form node metadata.
    #[serde(deserialize_with = "null_default")]
    pub meta: BTreeMap<String, String>,
    /// Index of the commit that created the node.
    pub create_index: u64,
    /// Index of the commit that last changed the node.
    pub modify_index: u64,
}

/// Relative weights used by DNS SRV answers and the load balancer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    /// Weight while all checks pass.
    pub passing: i32,
    /// Weight while some check is warning.
    pub warning: i32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// One instance of a service on a node (Consul's `NodeService`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Service {
    /// Instance ID, unique per node; defaults to the service name.
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name shared by all instances.
    #[serde(rename = "Service")]
    pub name: String,
    /// Tags, used for filtering and routing.
    #[serde(deserialize_with = "null_default")]
    pub tags: Vec<String>,
    /// Instance address; empty means "use the node's address".
    pub address: String,
    /// Free-form instance metadata.
    #[serde(deserialize_with = "null_default")]
    pub meta: BTreeMap<String, String>,
    /// Port the instance listens on.
    pub port: u16,
    /// The instance's other addresses by name, as Consul's
    /// `TaggedAddresses` (`lan_ipv4`, `lan_ipv6`; the Docker registrator
    /// adds one per network the container is on). Omitted when empty, as
    /// Consul does.
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// Balancing weights.
    pub weights: Weights,
    /// Whether external tools may change the tags (kept for compatibility).
    pub enable_tag_override: bool,
    /// Index of the commit that created the instance.
    pub create_index: u64,
    /// Index of the commit that last changed the instance.
    pub modify_index: u64,
}

/// One of an instance's tagged addresses (Consul's `ServiceAddress`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceAddress {
    /// IP address or host name.
    #[serde(alias = "address")]
    pub address: String,
    /// Port at that address.
    #[serde(alias = "port")]
    pub port: u16,
}

/// Health of a check, and of an instance through its checks. Ordered from
/// best to worst, so the worst of several is their `max`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Healthy: receives traffic.
    Passing,
    /// Degraded but still in service.
    Warning,
    /// Failing: receives no traffic. New checks start here, as in Consul.
    #[default]
    Critical,
}

impl HealthStatus {
    /// The lowercase name Consul uses.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Passing => "passing",
            HealthStatus::Warning => "warning",
            HealthStatus::Critical => "critical",
        }
    }

    /// Parses Consul's lowercase names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "passing" => Some(HealthStatus::Passing),
            "warning" => Some(HealthStatus::Warning),
            "critical" => Some(HealthStatus::Critical),
            _ => None,
        }
    }
}

/// How a check is run. The catalog only stores it; the agent runs it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckDefinition {
    /// URL probed by an HTTP check.
    #[serde(rename = "HTTP", skip_serializing_if = "String::is_empty")]
    pub http: String,
    /// HTTP method of an HTTP check (GET when empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// Extra request headers of an HTTP check.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub header: BTreeMap<String, Vec<String>>,
    /// Request body of an HTTP check.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// Skip TLS verification for HTTPS checks.
    #[serde(rename = "TLSSkipVerify")]
    pub tls_skip_verify: bool,
    /// `host:port` dialled by a TCP check.
    #[serde(rename = "TCP", skip_serializing_if = "String::is_empty")]
    pub tcp: String,
    /// Time-to-live of a TTL check.
    #[serde(
        rename = "TTL",
        with = "crate::duration::opt_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl: Option<Duration>,
    /// How often the check runs.
    #[serde(with = "crate::duration::opt_serde")]
    pub interval: Option<Duration>,
    /// How long one run may take.
    #[serde(with = "crate::duration::opt_serde")]
    pub timeout: Option<Duration>,
    /// Remove the instance once the check stayed critical this long.
    #[serde(with = "crate::duration::opt_serde")]
    pub deregister_critical_service_after: Option<Duration>,
    /// Consecutive successes needed before the check turns passing.
    #[serde(skip_serializing_if = "is_zero")]
    pub success_before_passing: u32,
    /// Consecutive failures needed before the check turns warning.
    #[serde(skip_serializing_if = "is_zero")]
    pub failures_before_warning: u32,
    /// Consecutive failures needed before the check turns critical.
    #[serde(skip_serializing_if = "is_zero")]
    pub failures_before_critical: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl CheckDefinition {
    /// Consul's check `Type`: `http`, `tcp`, `ttl` or empty (set by hand).
    pub fn kind(&self) -> &'static str {
        if !self.http.is_empty() {
            "http"
        } else if !self.tcp.is_empty() {
            "tcp"
        } else if self.ttl.is_some() {
            "ttl"
        } else {
            ""
        }
    }
}

/// A health check on a node or on one service instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Check {
    /// Node the check belongs to.
    pub node: String,
    /// Check ID, unique per node.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Human-readable name.
    pub name: String,
    /// Current status.
    pub status: HealthStatus,
    /// Operator notes.
    pub notes: String,
    /// Output of the last run.
    pub output: String,
    /// Instance the check belongs to; empty for a node-level check.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Name of that instance's service (filled in by the catalog).
    pub service_name: String,
    /// Tags of that instance (filled in by the catalog).
    #[serde(deserialize_with = "null_default")]
    pub service_tags: Vec<String>,
    /// `http`, `tcp`, `ttl` or empty.
    #[serde(rename = "Type")]
    pub kind: String,
    /// How the check runs.
    pub definition: CheckDefinition,
    /// Index of the commit that created the check.
    pub create_index: u64,
    /// Index of the commit that last changed the check.
    pub modify_index: u64,
}

/// One KV entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct KvEntry {
    /// Incremented each time a lock is acquired on the key.
    pub lock_index: u64,
    /// The full key.
    pub key: String,
    /// Opaque client flags.
    pub flags: u64,
    /// The value, base64 in JSON (null when empty), as Consul writes it.
    #[serde(with = "base64_value")]
    pub value: Bytes,
    /// The session holding the key's lock, if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub session: String,
    /// Index of the commit that created the key.
    pub create_index: u64,
    /// Index of the commit that last changed the key.
    pub modify_index: u64,
}

pub(crate) mod base64_value {
    use base64::Engine;
    use bytes::Bytes;
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        if v.is_empty() {
            s.serialize_none()
        } else {
            s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(Bytes::new()),
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(Bytes::from)
                .map_err(de::Error::custom),
        }
    }
}

/// An instance with its node and every check that bears on its health
/// (node-level checks included), as `/v1/health/service/:name` returns it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceEntry {
    /// The node hosting the instance.
    pub node: Arc<Node>,
    /// The instance.
    pub service: Arc<Service>,
    /// Node checks and the instance's own checks.
    #[serde(default, deserialize_with = "null_default")]
    pub checks: Vec<Arc<Check>>,
}

impl ServiceEntry {
    /// The worst status among the checks; passing when there are none.
    pub fn aggregate_status(&self) -> HealthStatus {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(HealthStatus::Passing)
    }

    /// The address to reach the instance: its own, else its node's.
    pub fn address(&self) -> &str {
        if self.service.address.is_empty() {
            &self.node.address
        } else {
            &self.service.address
        }
    }
}

/// Go writes empty slices and maps as `null`; read that as empty.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_consul_json_with_nulls_and_unknown_fields() {
        let raw = r#"{
            "Node": {"ID": "x", "Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1",
                     "TaggedAddresses": null, "Meta": null, "PeerName": "", "CreateIndex": 5, "ModifyIndex": 6},
            "Service": {"ID": "web-1", "Service": "web", "Tags": null, "Address": "", "Meta": null,
                        "Port": 80, "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false,
                        "Proxy": {"Mode": ""}, "Connect": {}, "Kind": "", "CreateIndex": 7, "ModifyIndex": 7},
            "Checks": [{"Node": "n1", "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing",
                        "Notes": "", "Output": "Agent alive and reachable", "ServiceID": "", "ServiceName": "",
                        "ServiceTags": null, "Type": "", "Interval": "", "Timeout": "", "ExposedPort": 0,
                        "Definition": {"Interval": "0s", "Timeout": "0s", "DeregisterCriticalServiceAfter": "0s",
                                       "HTTP": "", "Header": null, "Method": "", "Body": "", "TLSServerName": "",
                                       "TLSSkipVerify": false, "TCP": "", "TCPUseTLS": false, "UDP": "",
                                       "GRPC": "", "OSService": "", "GRPCUseTLS": false},
                        "CreateIndex": 5, "ModifyIndex": 5}]
        }"#;
        let e: ServiceEntry = serde_json::from_str(raw).unwrap();
        assert_eq!(e.service.id, "web-1");
        assert!(e.service.tags.is_empty() && e.node.meta.is_empty());
        assert_eq!(e.checks[0].status, HealthStatus::Passing);
        assert_eq!(e.checks[0].definition.interval, None);
        assert_eq!(e.aggregate_status(), HealthStatus::Passing);
        assert_eq!(e.address(), "10.0.0.1");
    }
}
