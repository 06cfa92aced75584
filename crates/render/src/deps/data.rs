//! The values dependencies resolve to, shaped as consul-template's Go
//! structs (`HealthService`, `CatalogSnippet`, `KeyPair`, ...) and
//! converted from the catalog's types with its rules: tags sorted (not
//! deduplicated), an empty service address falling back to the node's,
//! instances sorted stably by node then ID, services by name.

use super::HealthQuery;
use shoal_catalog::{Check, KvEntry, Node, Service, ServiceEntry};
use std::collections::BTreeMap;
use std::sync::Arc;

/// consul-template's `HealthService`.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthService {
    /// Node name.
    pub node: String,
    /// Node ID.
    pub node_id: String,
    /// Node address.
    pub node_address: String,
    /// Node tagged addresses.
    pub node_tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    pub node_meta: BTreeMap<String, String>,
    /// Instance metadata.
    pub service_meta: BTreeMap<String, String>,
    /// The instance address, or the node's when the instance has none.
    pub address: String,
    /// Instance ID.
    pub id: String,
    /// Service name.
    pub name: String,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Checks bearing on the instance.
    pub checks: Vec<Arc<Check>>,
    /// Aggregated status: passing, warning, critical or maintenance.
    pub status: String,
    /// Port.
    pub port: u16,
    /// Weights (passing, warning).
    pub weights: (i32, i32),
}

/// consul-template's `CatalogSnippet` (an element of `services`).
#[derive(Clone, Debug, PartialEq)]
pub struct CatalogSnippet {
    /// Service name.
    pub name: String,
    /// Union of the instances' tags, sorted.
    pub tags: Vec<String>,
}

/// consul-template's `Node` (an element of `nodes`, and `.Node` of `node`).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    /// Node ID.
    pub id: String,
    /// Node name.
    pub node: String,
    /// Address.
    pub address: String,
    /// Datacenter.
    pub datacenter: String,
    /// Tagged addresses.
    pub tagged_addresses: BTreeMap<String, String>,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
}

/// consul-template's `CatalogNodeService` (an element of `.Services` of `node`).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeService {
    /// Instance ID.
    pub id: String,
    /// Service name.
    pub service: String,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// Port.
    pub port: u16,
    /// Instance address as registered (no fallback here, as in Consul).
    pub address: String,
    /// Whether tags may be overridden.
    pub enable_tag_override: bool,
}

/// consul-template's `CatalogNode` (what `node` returns).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct CatalogNode {
    /// The node; `None` when it does not exist (Go's empty `CatalogNode`).
    pub node: Option<NodeInfo>,
    /// Its services sorted by name then ID.
    pub services: Vec<NodeService>,
}

/// consul-template's `KeyPair`.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyPair {
    /// The full key.
    pub path: String,
    /// The key relative to the prefix asked for.
    pub key: String,
    /// The value, as text.
    pub value: String,
    /// Create index.
    pub create_index: u64,
    /// Modify index.
    pub modify_index: u64,
    /// Lock index.
    pub lock_index: u64,
    /// Client flags.
    pub flags: u64,
}

/// What one dependency resolved to.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// `service`.
    Health(Vec<HealthService>),
    /// `services`.
    Services(Vec<CatalogSnippet>),
    /// `node`.
    Node(CatalogNode),
    /// `nodes`.
    Nodes(Vec<NodeInfo>),
    /// `key` & co: the value, `None` when the key does not exist.
    Kv(Option<String>),
    /// `ls` & `tree`: pairs under the prefix.
    KvList(Vec<KeyPair>),
    /// `file`: the contents, `None` when the file does not exist.
    File(Option<String>),
}

fn sorted(tags: &[String]) -> Vec<String> {
    let mut tags = tags.to_vec();
    tags.sort();
    tags
}

/// Consul's `HealthChecks.AggregatedStatus`: maintenance wins, then
/// critical, then warning; no checks is passing.
pub fn aggregated_status(checks: &[Arc<Check>]) -> &'static str {
    let maint = checks.iter().any(|c| {
        c.check_id == "_node_maintenance" || c.check_id.starts_with("_service_maintenance:")
    });
    if maint {
        return "maintenance";
    }
    let worst = checks.iter().map(|c| c.status).max();
    match worst {
        Some(shoal_catalog::HealthStatus::Critical) => "critical",
        Some(shoal_catalog::HealthStatus::Warning) => "warning",
        _ => "passing",
    }
}

impl HealthService {
    /// Converts the instances of a service as `service` returns them:
    /// filtered by the query's health filters and sorted by node then ID.
    pub fn from_entries(query: &HealthQuery, entries: &[ServiceEntry]) -> Vec<HealthService> {
        let mut list: Vec<HealthService> = entries
            .iter()
            .filter_map(|e| {
                let status = aggregated_status(&e.checks);
                super::StatusFilter::accepts(&query.filters, status)
                    .then(|| HealthService::from_entry(e, status))
            })
            .collect();
        // A stable sort, byte order of node then ID (Go's string `<`).
        list.sort_by(|a, b| a.node.cmp(&b.node).then_with(|| a.id.cmp(&b.id)));
        list
    }

    fn from_entry(e: &ServiceEntry, status: &str) -> HealthService {
        let (n, s) = (&e.node, &e.service);
        HealthService {
            node: n.name.clone(),
            node_id: n.id.clone(),
            node_address: n.address.clone(),
            node_tagged_addresses: n.tagged_addresses.clone(),
            node_meta: n.meta.clone(),
            service_meta: s.meta.clone(),
            address: e.address().to_string(),
            id: s.id.clone(),
            name: s.name.clone(),
            tags: sorted(&s.tags),
            checks: e.checks.clone(),
            status: status.to_string(),
            port: s.port,
            weights: (s.weights.passing, s.weights.warning),
        }
    }
}

impl CatalogSnippet {
    /// The `services` list: sorted by name, tags sorted.
    pub fn from_catalog(services: &BTreeMap<String, Vec<String>>) -> Vec<CatalogSnippet> {
        // A BTreeMap iterates by name in byte order already.
        services
            .iter()
            .map(|(name, tags)| CatalogSnippet {
                name: name.clone(),
                tags: sorted(tags),
            })
            .collect()
    }
}

impl NodeInfo {
    /// Converts a catalog node.
    pub fn from_node(n: &Node) -> NodeInfo {
        NodeInfo {
            id: n.id.clone(),
            node: n.name.clone(),
            address: n.address.clone(),
            datacenter: n.datacenter.clone(),
            tagged_addresses: n.tagged_addresses.clone(),
            meta: n.meta.clone(),
        }
    }

    /// The `nodes` list, sorted by name then address.
    pub fn list(nodes: &[Node]) -> Vec<NodeInfo> {
        let mut list: Vec<NodeInfo> = nodes.iter().map(NodeInfo::from_node).collect();
        list.sort_by(|a, b| a.node.cmp(&b.node).then_with(|| a.address.cmp(&b.address)));
        list
    }
}

impl CatalogNode {
    /// What `node` returns for a node and its services.
    pub fn from_contents(node: &Node, services: &[Service]) -> CatalogNode {
        let mut list: Vec<NodeService> = services
            .iter()
            .map(|s| NodeService {
                id: s.id.clone(),
                service: s.name.clone(),
                tags: sorted(&s.tags),
                meta: s.meta.clone(),
                port: s.port,
                address: s.address.clone(),
                enable_tag_override: s.enable_tag_override,
            })
            .collect();
        list.sort_by(|a, b| a.service.cmp(&b.service).then_with(|| a.id.cmp(&b.id)));
        CatalogNode {
            node: Some(NodeInfo::from_node(node)),
            services: list,
        }
    }
}

impl KeyPair {
    /// The pairs under `prefix`, keys made relative as consul-template
    /// does (prefix trimmed, then leading slashes).
    pub fn list(prefix: &str, entries: &[KvEntry]) -> Vec<KeyPair> {
        entries
            .iter()
            .map(|e| KeyPair {
                path: e.key.clone(),
                key: e
                    .key
                    .strip_prefix(prefix)
                    .unwrap_or(&e.key)
                    .trim_start_matches('/')
                    .to_string(),
                value: String::from_utf8_lossy(&e.value).into_owned(),
                create_index: e.create_index,
                modify_index: e.modify_index,
                lock_index: e.lock_index,
                flags: e.flags,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_health, Dependency};
    use super::*;
    use shoal_catalog::HealthStatus;

    fn entry(
        node: &str,
        id: &str,
        addr: &str,
        tags: &[&str],
        checks: &[(&str, HealthStatus)],
    ) -> ServiceEntry {
        ServiceEntry {
            node: Arc::new(Node {
                name: node.into(),
                address: "10.0.0.9".into(),
                ..Default::default()
            }),
            service: Arc::new(Service {
                id: id.into(),
                name: "web".into(),
                address: addr.into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                port: 80,
                ..Default::default()
            }),
            checks: checks
                .iter()
                .map(|(cid, st)| {
                    Arc::new(Check {
                        check_id: cid.to_string(),
                        status: *st,
                        ..Default::default()
                    })
                })
                .collect(),
        }
    }

    fn query(s: &str) -> HealthQuery {
        match parse_health(s).unwrap() {
            Dependency::Health(q) => q,
            _ => unreachable!(),
        }
    }

    #[test]
    fn instances_sort_by_node_then_id_and_filter_by_health() {
        use HealthStatus::*;
        let entries = vec![
            entry("n2", "a", "", &["b", "a", "a"], &[]),
            entry("n1", "z", "10.0.0.1", &[], &[("c1", Warning)]),
            entry("n1", "b", "10.0.0.2", &[], &[("c1", Critical)]),
            entry(
                "n1",
                "B",
                "10.0.0.3",
                &[],
                &[("_node_maintenance", Passing)],
            ),
        ];
        let cases = [
            ("web", vec!["n2/a"]),
            ("web|any", vec!["n1/B", "n1/b", "n1/z", "n2/a"]),
            ("web|passing,warning", vec!["n1/z", "n2/a"]),
            ("web|maintenance", vec!["n1/B"]),
            ("web|critical", vec!["n1/b"]),
        ];
        for (q, want) in cases {
            let got: Vec<String> = HealthService::from_entries(&query(q), &entries)
                .iter()
                .map(|h| format!("{}/{}", h.node, h.id))
                .collect();
            assert_eq!(got, want, "{q}");
        }
        let all = HealthService::from_entries(&query("web"), &entries);
        assert_eq!(
            all[0].address, "10.0.0.9",
            "empty address falls back to the node's"
        );
        assert_eq!(all[0].tags, ["a", "a", "b"], "sorted, not deduplicated");
    }

    #[test]
    fn kv_keys_are_relative_to_the_prefix() {
        let e = |k: &str| KvEntry {
            key: k.into(),
            ..Default::default()
        };
        let got: Vec<String> = KeyPair::list("cfg", &[e("cfg/a"), e("cfgx/b"), e("cfg/")])
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(got, ["a", "x/b", ""]);
    }
}
