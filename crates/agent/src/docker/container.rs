//! The part of Docker's container and event JSON the registrator reads
//! (`GET /containers/{id}/json`, `GET /events`), deserialized leniently:
//! every field is optional, `null` is empty.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `GET /containers/{id}/json`, the fields used.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Container {
    /// Full container ID.
    #[serde(rename = "Id")]
    pub id: String,
    /// Name with Docker's leading `/`.
    pub name: String,
    /// Running, paused, exit code, health.
    #[serde(deserialize_with = "null_default")]
    pub state: ContainerState,
    /// Image, env, labels, exposed ports.
    #[serde(deserialize_with = "null_default")]
    pub config: ContainerConfig,
    /// Network mode (`host` publishes every exposed port as is).
    #[serde(deserialize_with = "null_default")]
    pub host_config: HostConfig,
    /// The container's addresses and published ports.
    #[serde(deserialize_with = "null_default")]
    pub network_settings: NetworkSettings,
}

impl Container {
    /// The name without Docker's leading `/`.
    pub fn short_name(&self) -> &str {
        self.name.strip_prefix('/').unwrap_or(&self.name)
    }

    /// The first 12 characters of the ID, as `docker ps` shows it.
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }

    /// The container's own IP: the default bridge's, else the first
    /// network's that has one.
    pub fn ip(&self) -> String {
        let ns = &self.network_settings;
        if !ns.ip_address.is_empty() {
            return ns.ip_address.clone();
        }
        ns.networks
            .values()
            .map(|n| n.ip_address.clone())
            .find(|ip| !ip.is_empty())
            .unwrap_or_default()
    }
}

/// The first 12 characters of a container ID (characters, not bytes: an
/// ID from the daemon is hex, but one that is not must not panic).
pub fn short_id(id: &str) -> &str {
    id.char_indices().nth(12).map_or(id, |(end, _)| &id[..end])
}

/// `State` of a container.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerState {
    /// The process runs (paused containers are running too).
    pub running: bool,
    /// Frozen by `docker pause`.
    pub paused: bool,
    /// Exit code of the last run.
    pub exit_code: i64,
    /// Present when the image or run defines a HEALTHCHECK.
    pub health: Option<Health>,
}

/// `State.Health`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
}

/// `Config` of a container.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    /// Image reference as given to `docker run`.
    pub image: String,
    /// `KEY=value` strings.
    #[serde(deserialize_with = "null_default")]
    pub env: Vec<String>,
    /// Labels.
    #[serde(deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    /// `80/tcp` → `{}`.
    #[serde(deserialize_with = "null_default")]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
}

/// `HostConfig` of a container.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    /// `bridge`, `host`, `none`, a network name...
    pub network_mode: String,
}

/// `NetworkSettings` of a container.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkSettings {
    /// The default bridge's address (empty on other networks).
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    /// `80/tcp` → bindings on the host (`null`: exposed, not published).
    #[serde(deserialize_with = "null_default")]
    pub ports: BTreeMap<String, Option<Vec<PortBinding>>>,
    /// Attached networks.
    #[serde(deserialize_with = "null_default")]
    pub networks: BTreeMap<String, Network>,
}

/// One host binding of a container port.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    /// Host address (`0.0.0.0`, `::`, or a specific one).
    pub host_ip: String,
    /// Host port, as a string.
    pub host_port: String,
}

/// One attached network.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Network {
    /// The container's IPv4 address on it.
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    /// The container's IPv6 address on it (on a network with IPv6 enabled).
    #[serde(rename = "GlobalIPv6Address")]
    pub global_ipv6_address: String,
}

/// One entry of `GET /containers/json`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerSummary {
    /// Full container ID.
    #[serde(rename = "Id")]
    pub id: String,
}

/// One object of the `GET /events` stream.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Event {
    /// `container`, `network`, ...
    #[serde(rename = "Type")]
    pub kind: String,
    /// `start`, `die`, `health_status: healthy`, ...
    #[serde(rename = "Action")]
    pub action: String,
    /// The object the event is about.
    #[serde(rename = "Actor", deserialize_with = "null_default")]
    pub actor: Actor,
    /// Unix time in seconds.
    pub time: i64,
    /// Unix time in nanoseconds.
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

/// `Actor` of an event.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Actor {
    /// Container ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Labels and event details (`exitCode` of `die`, `name`, ...).
    #[serde(deserialize_with = "null_default")]
    pub attributes: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_json_is_read_with_nulls() {
        let json = r#"{
          "Id": "0123456789abcdef", "Name": "/web-1",
          "State": {"Running": true, "Paused": false, "ExitCode": 0, "Health": {"Status": "starting"}},
          "Config": {"Image": "repo/web:1", "Env": ["A=b"], "Labels": null, "ExposedPorts": {"80/tcp": {}}},
          "HostConfig": {"NetworkMode": "bridge"},
          "NetworkSettings": {"IPAddress": "", "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "49153"}], "81/tcp": null},
             "Networks": {"x": {"IPAddress": "172.18.0.5"}}}
        }"#;
        let c: Container = serde_json::from_str(json).unwrap();
        assert_eq!(c.short_name(), "web-1");
        assert_eq!(c.short_id(), "0123456789ab");
        assert_eq!(c.ip(), "172.18.0.5");
        assert!(c.config.labels.is_empty());
        assert_eq!(c.state.health.unwrap().status, "starting");
        assert_eq!(c.network_settings.ports["81/tcp"], None);
    }

    #[test]
    fn event_json_is_read() {
        let json = r#"{"status":"die","id":"abc","Type":"container","Action":"die",
          "Actor":{"ID":"abc","Attributes":{"exitCode":"137","name":"x"}},"scope":"local","time":1,"timeNano":1000000001}"#;
        let e: Event = serde_json::from_str(json).unwrap();
        assert_eq!((e.kind.as_str(), e.action.as_str()), ("container", "die"));
        assert_eq!(e.actor.attributes["exitCode"], "137");
        assert_eq!(e.time_nano, 1_000_000_001);
    }
}
