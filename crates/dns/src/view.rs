//! What DNS answers are made of, computed once per catalog snapshot: per
//! service, its instances that may receive traffic (not critical) with
//! their address, port, SRV weight and encoded SRV target; per node, its
//! address. Queries read a `View` without locks or allocation; when the
//! catalog's nodes, services or checks change (KV writes leave it alone)
//! the next one is derived from it with [`View::advance`]: only what the
//! catalog's change log names is recomputed (persistent maps make the
//! copy O(1)), so a write to one service costs DNS that service's work,
//! not the whole catalog's.

use crate::config::DnsConfig;
use crate::wire::encode_name;
use shoal_catalog::{topic_index, Change, HealthStatus, State, Topic};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

type Map<T> = imbl::HashMap<Box<[u8]>, Arc<T>>;

/// The DNS view of one catalog snapshot.
#[derive(Debug, Default, Clone)]
pub struct View {
    /// The nodes, services and checks table indexes of the snapshot it
    /// was built from ([`View::key`]).
    pub key: [u64; 3],
    /// The catalog index it reflects (where [`View::advance`] resumes).
    pub index: u64,
    services: Map<ServiceRecords>,
    nodes: Map<NodeRecord>,
}

/// A service's answerable instances.
#[derive(Debug)]
pub struct ServiceRecords {
    /// The service's name as registered (ACL rules match it exactly).
    pub name: Box<str>,
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
    /// Its node's name (ACLs: an instance is shown to `node:read` only).
    pub node: Box<str>,
    /// SRV target in wire format: `<node>.node.<dc>.<domain>` when it uses
    /// its node's address, `<hex-ip>.addr.<dc>.<domain>` when it has its
    /// own, or the host name itself when its address is not an IP.
    pub target: Box<[u8]>,
}

/// A node as DNS shows it.
#[derive(Debug)]
pub struct NodeRecord {
    /// The node's name as registered.
    pub name: Box<str>,
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

    /// Builds the view of `state` from scratch.
    pub fn build(state: &State, config: &DnsConfig) -> View {
        let names = Names::new(config);
        let mut services = Map::new();
        for name in state.services().1.keys() {
            let lower = name.to_ascii_lowercase().into_bytes().into_boxed_slice();
            services.insert(lower, Arc::new(names.service(state, name, config)));
        }
        let nodes = state
            .nodes()
            .1
            .iter()
            .map(|n| {
                (
                    n.name.to_ascii_lowercase().into_bytes().into(),
                    Arc::new(node_record(n)),
                )
            })
            .collect();
        View {
            key: View::key(state),
            index: state.index(),
            services,
            nodes,
        }
    }

    /// The view of `state`, derived from this one by recomputing only the
    /// services and nodes changed since it (a full build when the change
    /// log no longer reaches back to it).
    pub fn advance(&self, state: &State, config: &DnsConfig) -> View {
        let Some(changes) = (self.index > 0 && self.index <= state.index())
            .then(|| state.change_log().since(self.index))
            .flatten()
        else {
            return View::build(state, config);
        };
        let names = Names::new(config);
        let mut next = self.clone();
        // Each service and node once; an instance's change is its service's.
        let mut seen: std::collections::HashSet<(bool, &str)> = std::collections::HashSet::new();
        for change in changes.iter().map(|(_, c)| c) {
            let (service, name) = match change {
                Change::Service(name) | Change::Instance(name, _, _) => (true, name.as_str()),
                Change::Node(name) => (false, name.as_str()),
                Change::Kv(_) => continue,
            };
            if !seen.insert((service, name)) {
                continue;
            }
            let lower = name.to_ascii_lowercase().into_bytes().into_boxed_slice();
            if service {
                if state.has_service(name) {
                    next.services
                        .insert(lower, Arc::new(names.service(state, name, config)));
                } else {
                    next.services.remove(&lower);
                }
                continue;
            }
            match state.node(name) {
                Some(n) => {
                    next.nodes.insert(lower, Arc::new(node_record(&n)));
                }
                None => {
                    next.nodes.remove(&lower);
                }
            }
        }
        next.key = View::key(state);
        next.index = state.index();
        next
    }

    /// A service by lowercase name.
    pub fn service(&self, name: &[u8]) -> Option<&ServiceRecords> {
        self.services.get(name).map(|r| &**r)
    }

    /// A node by lowercase name.
    pub fn node(&self, name: &[u8]) -> Option<&NodeRecord> {
        self.nodes.get(name).map(|r| &**r)
    }
}

/// The suffixes of SRV targets.
pub(crate) struct Names {
    node_suffix: String,
    addr_suffix: String,
}

impl Names {
    pub(crate) fn new(config: &DnsConfig) -> Self {
        let suffix = |kind: &str| format!(".{kind}.{}.{}", config.datacenter, config.domain);
        Names {
            node_suffix: suffix("node"),
            addr_suffix: suffix("addr"),
        }
    }

    /// A service's answerable instances in `state`.
    fn service(&self, state: &State, name: &str, config: &DnsConfig) -> ServiceRecords {
        let lower = name.to_ascii_lowercase();
        let ttl = secs(config.service_ttl.get(&lower));
        let (_, entries) = state.service_entries(name);
        let instances = entries
            .iter()
            .filter(|e| e.aggregate_status() != HealthStatus::Critical)
            .filter_map(|e| self.instance(e))
            .collect();
        ServiceRecords {
            name: name.into(),
            ttl,
            instances,
        }
    }

    /// One instance as DNS answers it (the caller leaves critical ones
    /// out); `None` when it has no name to give as an SRV target.
    pub(crate) fn instance(&self, e: &shoal_catalog::ServiceEntry) -> Option<Instance> {
        let (node_suffix, addr_suffix) = (&self.node_suffix, &self.addr_suffix);
        let weights = e.service.weights;
        let weight = match e.aggregate_status() {
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
        let target = target
            .or_else(|| ip.and_then(|ip| encode_name(&format!("{}{addr_suffix}", hex_ip(ip)))))?;
        Some(Instance {
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
            node: e.node.name.as_str().into(),
        })
    }
}

fn node_record(n: &shoal_catalog::Node) -> NodeRecord {
    let txt = n.meta.iter().map(|(k, v)| txt_rdata(k, v)).collect();
    let ip = n.address.parse().ok();
    NodeRecord {
        name: n.name.as_str().into(),
        ip,
        txt,
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
    use shoal_catalog::{Catalog, Node, Registration, Registry, Service};

    fn reg(node: &str, id: &str, name: &str, address: &str) -> Registration {
        Registration {
            node: Node {
                name: node.into(),
                address: address.into(),
                ..Default::default()
            },
            service: Some(Service {
                id: id.into(),
                name: name.into(),
                port: 80,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Every service's and node's records, as text, looked up by name.
    fn contents(view: &View, state: &State) -> Vec<String> {
        let mut out = Vec::new();
        for name in ["web", "db", "gone", "new"] {
            out.push(format!("{name}: {:?}", view.service(name.as_bytes())));
        }
        for n in state
            .nodes()
            .1
            .iter()
            .map(|n| n.name.clone())
            .chain(["n-gone".into()])
        {
            out.push(format!("{n}: {:?}", view.node(n.as_bytes())));
        }
        out
    }

    #[tokio::test]
    async fn advancing_a_view_equals_building_it_anew() {
        let r = Registry::in_memory();
        let config = DnsConfig::default().validated().unwrap();
        r.register(reg("n1", "w1", "web", "10.0.0.1"))
            .await
            .unwrap();
        r.register(reg("n-gone", "g1", "gone", "10.0.0.9"))
            .await
            .unwrap();
        r.register(reg("n2", "d1", "db", "10.0.0.2")).await.unwrap();
        let start = View::build(&r.snapshot(), &config);
        r.register(reg("n1", "w2", "web", "10.0.0.1"))
            .await
            .unwrap();
        r.register(reg("n3", "x1", "new", "10.0.0.3"))
            .await
            .unwrap();
        // A node's new address reaches the services on it.
        r.register(reg("n2", "d1", "db", "10.0.0.22"))
            .await
            .unwrap();
        r.deregister_node("n-gone").await.unwrap();
        r.kv_put("k", bytes::Bytes::new(), 0, None).await.unwrap();
        let state = r.snapshot();
        let advanced = start.advance(&state, &config);
        let built = View::build(&state, &config);
        assert_eq!(contents(&advanced, &state), contents(&built, &state));
        assert_eq!((advanced.key, advanced.index), (built.key, built.index));
        assert!(advanced.service(b"gone").is_none() && advanced.node(b"n-gone").is_none());
        assert_eq!(advanced.service(b"web").unwrap().instances.len(), 2);
    }

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
