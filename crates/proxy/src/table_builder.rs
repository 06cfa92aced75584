//! The next routing table from the current one and the services that
//! changed: each changed service's upstreams, `server_aliases` and
//! `urlprefix-` routes are taken out and its new ones put in, in time
//! proportional to that service (the table's maps are persistent, so the
//! copy is O(1)); the rest of the catalog is not looked at.

use crate::config::{redirects_to_https, Proto, ProxyConfig};
use crate::instance::Instance;
use crate::table::{
    instance_addr, parse_prefix_tag, PrefixRoute, RoutingTable, StateRegistry, Upstream,
    UpstreamKey,
};
use shoal_catalog::ServiceEntry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What one service contributes to a table.
#[derive(Debug, Default)]
pub(crate) struct ServiceRoutes {
    keys: Vec<UpstreamKey>,
    prefixes: Vec<PrefixRoute>,
    aliases: Vec<String>,
}

impl RoutingTable {
    /// A table with no service.
    pub fn empty(cfg: &ProxyConfig) -> RoutingTable {
        RoutingTable {
            domain: cfg.domain.to_ascii_lowercase(),
            ..Default::default()
        }
    }

    /// This table with `changes` applied: each named service's passing
    /// instances now (empty: it is gone). `states` keeps each instance's
    /// state across tables; a changed service's gone instances leave it.
    pub fn with_changes(
        &self,
        changes: &BTreeMap<String, Vec<ServiceEntry>>,
        states: &mut StateRegistry,
        cfg: &ProxyConfig,
        generation: u64,
    ) -> RoutingTable {
        let mut next = self.clone();
        next.generation = generation;
        let mut prefixes_changed = false;
        for (name, entries) in changes {
            if let Some(old) = next.routes.remove(name) {
                for key in &old.keys {
                    next.upstreams.remove(key);
                }
                for host in &old.aliases {
                    if next.aliases.get(host) == Some(name) {
                        next.aliases.remove(host);
                    }
                }
                prefixes_changed |= !old.prefixes.is_empty();
            }
            if entries.is_empty() {
                states.remove(name);
                continue;
            }
            let routes = service_routes(&mut next, name, entries, states, cfg);
            prefixes_changed |= !routes.prefixes.is_empty();
            next.routes.insert(name.clone(), Arc::new(routes));
        }
        if prefixes_changed {
            next.prefixes = Arc::new(all_prefixes(&next));
        }
        next
    }
}

/// Every prefix route of the table, most specific first: a named host
/// before any host, longer paths first.
fn all_prefixes(table: &RoutingTable) -> Vec<PrefixRoute> {
    let mut list: Vec<PrefixRoute> = Vec::new();
    for routes in table.routes.values() {
        for r in &routes.prefixes {
            if !list.contains(r) {
                list.push(r.clone());
            }
        }
    }
    list.sort_by(|a, b| {
        b.host
            .is_some()
            .cmp(&a.host.is_some())
            .then(b.path.len().cmp(&a.path.len()))
    });
    list
}

/// Puts one service's upstreams and aliases into `table`; returns what it put.
fn service_routes(
    table: &mut RoutingTable,
    name: &str,
    entries: &[ServiceEntry],
    states: &mut StateRegistry,
    cfg: &ProxyConfig,
) -> ServiceRoutes {
    let mut routes = ServiceRoutes::default();
    let mut instances = Vec::new();
    let mut balance = cfg.balance.clone();
    let old_states = states.remove(name).unwrap_or_default();
    let mut live = HashMap::new();
    for e in entries {
        let Some(addr) = instance_addr(e) else {
            tracing::warn!(service = %name, instance = %e.service.id, address = %e.address(), "instance address is not an IP; skipped");
            continue;
        };
        for tag in &e.service.tags {
            if let Some(route) = parse_prefix_tag(tag, name) {
                if !routes.prefixes.contains(&route) {
                    routes.prefixes.push(route);
                }
            } else if let Some(hosts) = tag.strip_prefix("server_aliases=") {
                for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
                    let host = host.to_ascii_lowercase();
                    table.aliases.insert(host.clone(), name.to_string());
                    routes.aliases.push(host);
                }
            } else if let Some(b) = tag.strip_prefix("shoal.balance=") {
                match b.parse() {
                    Ok(parsed) => balance = parsed,
                    Err(e) => {
                        tracing::warn!(service = %name, error = %e, "bad shoal.balance tag ignored")
                    }
                }
            }
        }
        let key = (e.service.id.clone(), addr);
        let state = old_states.get(&key).cloned().unwrap_or_default();
        live.insert(key, state.clone());
        instances.push(Instance {
            id: e.service.id.clone(),
            addr,
            weight: e.service.weights.passing.max(1) as u32,
            tags: e.service.tags.clone(),
            state,
        });
    }
    states.insert(name.to_string(), live);
    let all_tags = || {
        instances
            .iter()
            .flat_map(|i| i.tags.iter().map(String::as_str))
    };
    let (proto, redirect) = (Proto::from_tags(all_tags()), redirects_to_https(all_tags()));
    let mut tags: Vec<&String> = instances.iter().flat_map(|i| i.tags.iter()).collect();
    tags.sort();
    tags.dedup();
    for tag in tags {
        let subset: Vec<Instance> = instances
            .iter()
            .filter(|i| i.tags.contains(tag))
            .cloned()
            .collect();
        let key = (name.to_string(), Some(tag.clone()));
        table.upstreams.insert(
            key.clone(),
            Arc::new(Upstream::new(name, subset, &balance).with_options(proto, redirect)),
        );
        routes.keys.push(key);
    }
    let key = (name.to_string(), None);
    table.upstreams.insert(
        key.clone(),
        Arc::new(Upstream::new(name, instances, &balance).with_options(proto, redirect)),
    );
    routes.keys.push(key);
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::table::tests::entry;

    /// (host, path) → where it goes, for a fixed set of requests.
    fn routes(t: &RoutingTable) -> Vec<Option<(String, Option<String>, usize)>> {
        [
            ("web.localhost", "/"),
            ("v2.web.localhost", "/"),
            ("www.example.com", "/"),
            ("x.test", "/api/v1"),
            ("shop.example.com", "/"),
            ("api.localhost", "/"),
        ]
        .iter()
        .map(|(h, p)| {
            let target = t.resolve(h, p)?;
            let n = t.upstream(&target.key).map_or(0, |u| u.instances.len());
            Some((target.key.0, target.key.1, n))
        })
        .collect()
    }

    #[test]
    fn applying_changes_equals_building_anew() {
        let cfg = ProxyConfig::default();
        let mut all: BTreeMap<String, Vec<ServiceEntry>> = BTreeMap::new();
        all.insert(
            "web".into(),
            vec![entry(
                "w1",
                "web",
                1,
                &["v2", "server_aliases=www.example.com"],
            )],
        );
        all.insert(
            "api".into(),
            vec![entry("a1", "api", 2, &["urlprefix-/api"])],
        );
        all.insert("shop".into(), vec![entry("s1", "shop", 3, &[])]);
        let mut states = StateRegistry::new();
        let first = RoutingTable::build(&all, &mut states, &cfg, 1);
        // web loses its alias and gains an instance, api goes, shop gets a prefix.
        let mut changes = BTreeMap::new();
        changes.insert(
            "web".to_string(),
            vec![
                entry("w1", "web", 1, &["v2"]),
                entry("w2", "web", 5, &["v2"]),
            ],
        );
        changes.insert("api".to_string(), vec![]);
        changes.insert(
            "shop".to_string(),
            vec![entry("s1", "shop", 3, &["urlprefix-shop.example.com/"])],
        );
        let w1 = first.upstream(&("web".into(), None)).unwrap().instances[0]
            .state
            .clone();
        let next = first.with_changes(&changes, &mut states, &cfg, 2);
        for (name, entries) in &changes {
            if entries.is_empty() {
                all.remove(name);
            } else {
                all.insert(name.clone(), entries.clone());
            }
        }
        let fresh = RoutingTable::build(&all, &mut StateRegistry::new(), &cfg, 2);
        assert_eq!(routes(&next), routes(&fresh));
        assert_eq!(
            routes(&first)[2].as_ref().unwrap().0,
            "web",
            "the old table is untouched"
        );
        assert!(
            Arc::ptr_eq(
                &next.upstream(&("web".into(), None)).unwrap().instances[0].state,
                &w1
            ),
            "an unchanged instance keeps its state"
        );
        assert!(!states.contains_key("api"));
    }
}
