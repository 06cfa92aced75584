//! What DNS answers are made of, computed once per catalog snapshot: per
//! service, its instances that may receive traffic (not critical) with
//! their address, port, SRV weight and encoded SRV target; per node, its
//! address. Queries read a `View` without locks or allocation; a new one
//! is built beside it when the catalog's nodes, services or checks change
//! (KV writes leave it alone).

use crate::config::DnsConfig;
use crate::wire::encode_name;
use shoal_catalog::{topic_index, HealthStatus, State, Topic};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// The DNS view of one catalog snapshot.
#[derive(Debug, Default)]
pub struct View {
    /// The nodes, services and checks table indexes of the snapshot it
    /// was built from ([`View::key`]).
    pub key: [u64; 3],
    services: HashMap<Box<[u8]>, ServiceRecords>,
    nodes: HashMap<Box<[u8]>, NodeRecord>,
}

/// A service's answerable instances.
#[derive(Debug)]
pub struct ServiceRecords {
    /// TTL of its records, in seconds.
    pub ttl: u32,
    /// Instances that are passing or warning (Consul's default: only
    /// critical ones are left out), in catalog order.
    pub instances: Vec<Instance>,
}

/// One instance as DNS shows it.
#[derive(Debug)]
pub struct Instance {
    /// Its IP address, if its address (or its node's) is one.
    pub ip: Option<IpAddr>,
    /// Its port.
    pub port: u16,
    /// SRV weight: `Weights.Passing`, or `Weights.Warning` while warning.
    pub weight: u16,
    /// Lowercased tags, for tag filters.
    pub tags: Vec<Box<[u8]>>,
    /// SRV target in wire format: `<node>.node.<dc>.<domain>` when it uses
    /// its node's address, `<hex-ip>.addr.<dc>.<domain>` when it has its
    /// own, or the host name itself when its address is not an IP.
    pub target: Box<[u8]>,
}

/// A node as DNS shows it.
#[derive(Debug)]
pub struct NodeRecord {
    /// Its address, if it is an IP.
    pub ip: Option<IpAddr>,
    /// TXT rdata, one per metadata entry, as Consul answers them: `key=value`,
    /// or the bare value for keys starting with `rfc1035-`.
    pub txt: Vec<Box<[u8]>>,
}

impl View {
    /// What a view of `state` depends on: the last changes to nodes,
    /// services and checks.
    pub fn key(state: &State) -> [u64; 3] {
        [Topic::Nodes, Topic::Services, Topic::Checks].map(|t| topic_index(state, &t))
    }

    /// Builds the view of `state`.
    pub fn build(state: &State, config: &DnsConfig) -> View {
        let suffix = |kind: &str| format!(".{kind}.{}.{}", config.datacenter, config.domain);
        let (node_suffix, addr_suffix) = (suffix("node"), suffix("addr"));
        let mut services = HashMap::new();
        let (_, names) = state.services();
        for name in names.keys() {
            let lower = name.to_ascii_lowercase();
            let ttl = secs(config.service_ttl.get(&lower));
            let (_, entries) = state.service_entries(name);
            let mut instances = Vec::with_capacity(entries.len());
            for e in &entries {
                let status = e.aggregate_status();
                if status == HealthStatus::Critical {
                    continue;
                }
                let weights = e.service.weights;
                let weight = match status {
                    HealthStatus::Passing => weights.passing,
                    _ => weights.warning,
                };
                let address = e.address();
                let ip = address.parse::<IpAddr>().ok();
                let own = !e.service.address.is_empty() && e.service.address != e.node.address;
                let target = match ip {
                    _ if !own => encode_name(&format!("{}{node_suffix}", e.node.name)),
                    Some(ip) => encode_name(&format!("{}{addr_suffix}", hex_ip(ip))),
                    None => encode_name(address),
                };
                // A node name that is not a DNS name: fall back to the address form.
                let target = target.or_else(|| {
                    ip.and_then(|ip| encode_name(&format!("{}{addr_suffix}", hex_ip(ip))))
                });
                let Some(target) = target else { continue };
                instances.push(Instance {
                    ip,
                    port: e.service.port,
                    weight: weight.clamp(0, u16::MAX as i32) as u16,
                    tags: e
                        .service
                        .tags
                        .iter()
                        .map(|t| t.to_ascii_lowercase().into_bytes().into())
                        .collect(),
                    target: target.into(),
                });
            }
            services.insert(lower.into_bytes().into(), ServiceRecords { ttl, instances });
        }
        let nodes = state
            .nodes()
            .1
            .iter()
            .map(|n| {
                let key = n.name.to_ascii_lowercase().into_bytes().into();
                let txt = n.meta.iter().map(|(k, v)| txt_rdata(k, v)).collect();
                let ip = n.address.parse().ok();
                (key, NodeRecord { ip, txt })
            })
            .collect();
        View {
            key: View::key(state),
            services,
            nodes,
        }
    }

    /// A service by lowercase name.
    pub fn service(&self, name: &[u8]) -> Option<&ServiceRecords> {
        self.services.get(name)
    }

    /// A node by lowercase name.
    pub fn node(&self, name: &[u8]) -> Option<&NodeRecord> {
        self.nodes.get(name)
    }
}

/// One TXT character-string (at most 255 bytes) for a meta entry.
fn txt_rdata(key: &str, value: &str) -> Box<[u8]> {
    let text = match key.strip_prefix("rfc1035-") {
        Some(_) => value.to_string(),
        None => format!("{key}={value}"),
    };
    let bytes = &text.as_bytes()[..text.len().min(255)];
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
    out.into()
}

/// Seconds, saturating, for a TTL field.
pub fn secs(d: Duration) -> u32 {
    d.as_secs().min(u32::MAX as u64) as u32
}

/// Consul's `.addr.` label: the address's bytes in hex (8 digits for
/// IPv4, 32 for IPv6).
pub fn hex_ip(ip: IpAddr) -> String {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The address a `.addr.` label names, if it is one.
pub fn parse_hex_ip(label: &[u8]) -> Option<IpAddr> {
    if !label.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let hex = std::str::from_utf8(label).ok()?;
    let byte = |i: usize| u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok();
    match hex.len() {
        8 => {
            let mut o = [0u8; 4];
            for (i, b) in o.iter_mut().enumerate() {
                *b = byte(i)?;
            }
            Some(IpAddr::from(o))
        }
        32 => {
            let mut o = [0u8; 16];
            for (i, b) in o.iter_mut().enumerate() {
                *b = byte(i)?;
            }
            Some(IpAddr::from(o))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_addresses_round_trip() {
        for (ip, hex) in [
            ("127.0.0.1", "7f000001"),
            ("10.1.2.255", "0a0102ff"),
            ("::1", "00000000000000000000000000000001"),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(hex_ip(ip), hex);
            assert_eq!(parse_hex_ip(hex.as_bytes()), Some(ip));
        }
        for bad in ["7f00001", "zz000001", "", "+f000001"] {
            assert_eq!(parse_hex_ip(bad.as_bytes()), None, "{bad}");
        }
    }
}
