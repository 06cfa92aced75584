//! The materialized view: an immutable, cheaply clonable snapshot of the
//! whole catalog. Readers hold an `Arc<State>`; the writer clones the
//! current one (structural sharing makes that O(1)), applies a batch of
//! commands to the clone, commits, and swaps it in.

use crate::model::{Check, HealthStatus, KvEntry, Node, Service, ServiceEntry};
use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) type NodeKey = (String, String);

/// Index of the last change per table, as Consul keeps them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TableIndexes {
    pub nodes: u64,
    pub services: u64,
    pub checks: u64,
    pub kv: u64,
    #[serde(default)]
    pub sessions: u64,
    #[serde(default)]
    pub queries: u64,
    #[serde(default)]
    pub acl: u64,
}

/// What happened to one check between two snapshots
/// ([`State::check_changes_since`]).
#[derive(Clone, Copy, Debug)]
pub enum CheckChange<'a> {
    /// Registered since.
    Added(&'a Arc<Check>),
    /// Still there, with something changed (definition, status, output...).
    Changed {
        /// As it was.
        old: &'a Arc<Check>,
        /// As it is now.
        new: &'a Arc<Check>,
    },
    /// Removed since.
    Removed(&'a Arc<Check>),
}

/// (node, instance ID) → the sorted IDs of that instance's checks.
///
/// An instance has few checks (usually one), so each entry is a shared
/// slice rebuilt on change, one small allocation cloned by reference: the
/// smallest node of a persistent set takes 2.6 KiB, which made this index
/// the largest part of an agent's memory with 10,000 local instances.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct InstanceChecks(OrdMap<NodeKey, Arc<[String]>>);

impl InstanceChecks {
    /// The check IDs of instance `id` on `node` (`""`: node-level checks).
    pub(crate) fn ids(&self, node: &str, id: &str) -> &[String] {
        self.0
            .get(&(node.to_string(), id.to_string()))
            .map_or(&[], |ids| ids)
    }

    /// Records check `check` as belonging to `instance`.
    pub(crate) fn link(&mut self, instance: NodeKey, check: &str) {
        let ids = self.0.get(&instance).map_or(&[][..], |ids| &ids[..]);
        if let Err(at) = ids.binary_search_by(|c| c.as_str().cmp(check)) {
            let mut next = ids.to_vec();
            next.insert(at, check.to_string());
            self.0.insert(instance, next.into());
        }
    }

    /// Forgets that check `check` belongs to `instance`.
    pub(crate) fn unlink(&mut self, instance: NodeKey, check: &str) {
        let Some(ids) = self.0.get(&instance) else {
            return;
        };
        if let Ok(at) = ids.binary_search_by(|c| c.as_str().cmp(check)) {
            if ids.len() == 1 {
                self.0.remove(&instance);
            } else {
                let mut next = ids.to_vec();
                next.remove(at);
                self.0.insert(instance, next.into());
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The catalog at one index.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub(crate) index: u64,
    pub(crate) nodes: OrdMap<String, Arc<Node>>,
    /// Instances keyed by (node, instance ID).
    pub(crate) services: OrdMap<NodeKey, Arc<Service>>,
    /// Service name → the (node, instance ID)s of its instances.
    pub(crate) by_name: OrdMap<String, OrdSet<NodeKey>>,
    /// Checks keyed by (node, check ID).
    pub(crate) checks: OrdMap<NodeKey, Arc<Check>>,
    pub(crate) kv: OrdMap<String, Arc<KvEntry>>,
    /// Index at which a KV key was deleted, so prefix indexes never go
    /// backwards when keys disappear.
    pub(crate) kv_tombstones: OrdMap<String, u64>,
    /// Last index that changed anything a reader of this service sees.
    pub(crate) service_index: OrdMap<String, u64>,
    /// Last index that changed the node, its instances or its checks.
    pub(crate) node_index: OrdMap<String, u64>,
    pub(crate) tables: TableIndexes,
    /// Sessions by ID.
    pub(crate) sessions: OrdMap<String, Arc<crate::session::Session>>,
    /// Session ID → the keys it holds locked (derived, not stored).
    pub(crate) session_keys: OrdMap<String, OrdSet<String>>,
    /// Node → the IDs of its sessions (derived, not stored), so that a
    /// node's deregistration looks only at its own sessions.
    pub(crate) sessions_by_node: OrdMap<String, OrdSet<String>>,
    /// (node, check ID) → the IDs of the sessions that depend on it
    /// (derived, not stored), so that a check going critical costs the
    /// sessions it ends, not a scan of every session.
    pub(crate) sessions_by_check: OrdMap<(String, String), OrdSet<String>>,
    /// Keys in their lock-delay after an invalidation, until when. Wall
    /// time on the server that applies; kept in memory only, as Consul
    /// keeps it (a restart ends every lock-delay).
    pub(crate) lock_delays: OrdMap<String, std::time::Instant>,
    /// ACL tokens by AccessorID (the anonymous one only once changed).
    pub(crate) acl_tokens: OrdMap<String, Arc<crate::acl::AclToken>>,
    /// SecretID → AccessorID (derived, not stored).
    pub(crate) acl_secrets: OrdMap<String, String>,
    /// ACL policies by ID (the built-in one is not stored).
    pub(crate) acl_policies: OrdMap<String, Arc<crate::acl::AclPolicy>>,
    /// Index of the commit that bootstrapped ACLs.
    pub(crate) acl_bootstrap: Option<u64>,
    /// Prepared queries by ID.
    pub(crate) queries: OrdMap<String, Arc<crate::query::PreparedQuery>>,
    /// (node, instance ID) → the IDs of that instance's checks; the
    /// node-level checks are under an empty instance ID. Derived, not
    /// stored: what makes reading or registering one instance independent
    /// of how many checks its node has.
    pub(crate) instance_checks: InstanceChecks,
    /// What changed recently, in order (memory only).
    pub(crate) log: crate::changelog::ChangeLog,
}

fn at_least_one(i: u64) -> u64 {
    i.max(1)
}

impl State {
    /// Index of the last commit reflected in this snapshot (never 0).
    pub fn index(&self) -> u64 {
        at_least_one(self.index)
    }

    /// Per-table indexes (each at least 1).
    pub(crate) fn table_indexes(&self) -> TableIndexes {
        let t = self.tables;
        TableIndexes {
            nodes: at_least_one(t.nodes),
            services: at_least_one(t.services),
            checks: at_least_one(t.checks),
            kv: at_least_one(t.kv),
            sessions: at_least_one(t.sessions),
            queries: at_least_one(t.queries),
            acl: at_least_one(t.acl),
        }
    }

    /// Every service name, in order (without building tag unions).
    pub fn service_names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Service names with the union of their instances' tags.
    pub fn services(&self) -> (u64, BTreeMap<String, Vec<String>>) {
        let mut out = BTreeMap::new();
        for (name, keys) in &self.by_name {
            let mut tags: Vec<String> = keys
                .iter()
                .filter_map(|k| self.services.get(k))
                .flat_map(|s| s.tags.iter().cloned())
                .collect();
            tags.sort();
            tags.dedup();
            out.insert(name.clone(), tags);
        }
        (at_least_one(self.tables.services), out)
    }

    /// Index a reader of service `name` should see.
    pub fn service_index(&self, name: &str) -> u64 {
        at_least_one(
            self.service_index
                .get(name)
                .copied()
                .unwrap_or(self.tables.services),
        )
    }

    /// Every instance of `name` with its node and the checks bearing on it.
    pub fn service_entries(&self, name: &str) -> (u64, Vec<ServiceEntry>) {
        let out = match self.by_name.get(name) {
            Some(keys) => keys.iter().filter_map(|key| self.entry_of(key)).collect(),
            None => Vec::new(),
        };
        (self.service_index(name), out)
    }

    /// Instance `id` on `node` with its node and checks (node-level
    /// first), as one entry of [`State::service_entries`].
    pub fn instance_entry(&self, node: &str, id: &str) -> Option<ServiceEntry> {
        self.entry_of(&(node.to_string(), id.to_string()))
    }

    fn entry_of(&self, key: &NodeKey) -> Option<ServiceEntry> {
        let (service, node) = (self.services.get(key)?, self.nodes.get(&key.0)?);
        let checks = self
            .checks_of(&key.0, "")
            .chain(self.checks_of(&key.0, &key.1))
            .collect();
        Some(ServiceEntry {
            node: node.clone(),
            service: service.clone(),
            checks,
        })
    }

    /// How many instances service `name` has.
    pub fn instance_count(&self, name: &str) -> usize {
        self.by_name.get(name).map_or(0, |keys| keys.len())
    }

    /// The recent changes, for consumers that follow them.
    pub fn change_log(&self) -> &crate::changelog::ChangeLog {
        &self.log
    }

    /// Whether service `name` has any instance.
    pub fn has_service(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// All nodes, by name.
    pub fn nodes(&self) -> (u64, Vec<Arc<Node>>) {
        (
            at_least_one(self.tables.nodes),
            self.nodes.values().cloned().collect(),
        )
    }

    /// Index a reader of node `name` should see.
    pub fn node_index(&self, name: &str) -> u64 {
        at_least_one(
            self.node_index
                .get(name)
                .copied()
                .unwrap_or(self.tables.nodes),
        )
    }

    /// One node.
    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.get(name).cloned()
    }

    /// The instances on a node.
    pub fn node_services(&self, node: &str) -> Vec<Arc<Service>> {
        self.services
            .range((node.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == node)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// One instance on a node.
    pub fn service(&self, node: &str, id: &str) -> Option<Arc<Service>> {
        self.services
            .get(&(node.to_string(), id.to_string()))
            .cloned()
    }

    /// The checks on a node (node-level and instance checks).
    pub fn checks_on_node<'a>(
        &'a self,
        node: &'a str,
    ) -> impl Iterator<Item = &'a Arc<Check>> + 'a {
        self.checks
            .range((node.to_string(), String::new())..)
            .take_while(move |((n, _), _)| n == node)
            .map(|(_, c)| c)
    }

    /// The checks of one instance on a node (`id` empty: the node-level
    /// checks), through the per-instance index: no scan of the node.
    pub fn checks_of<'a>(
        &'a self,
        node: &'a str,
        id: &str,
    ) -> impl Iterator<Item = Arc<Check>> + 'a {
        self.instance_checks
            .ids(node, id)
            .iter()
            .filter_map(move |c| self.checks.get(&(node.to_string(), c.clone())).cloned())
    }

    /// A node with copies of its instances and checks.
    pub fn node_contents(&self, name: &str) -> Option<crate::catalog::NodeContents> {
        let node = self.nodes.get(name)?;
        Some(crate::catalog::NodeContents {
            node: (**node).clone(),
            services: self
                .node_services(name)
                .iter()
                .map(|s| (**s).clone())
                .collect(),
            checks: self.checks_on_node(name).map(|c| (**c).clone()).collect(),
        })
    }

    /// One check on a node.
    pub fn check(&self, node: &str, id: &str) -> Option<Arc<Check>> {
        self.checks
            .get(&(node.to_string(), id.to_string()))
            .cloned()
    }

    /// The IDs of the instances on `node` whose record differs between
    /// `older` and this snapshot (added, changed or removed; their checks
    /// aside, see [`State::check_changes_since`]). Like that one, it does
    /// not visit what the two snapshots share.
    pub fn instance_changes_since<'a>(
        &'a self,
        older: &'a State,
        node: &'a str,
    ) -> impl Iterator<Item = &'a str> + 'a {
        older.services.diff(&self.services).filter_map(move |d| {
            let (n, id) = match d {
                imbl::ordmap::DiffItem::Add(k, _) => k,
                imbl::ordmap::DiffItem::Update { new: (k, _), .. } => k,
                imbl::ordmap::DiffItem::Remove(k, _) => k,
            };
            (n == node).then_some(id.as_str())
        })
    }

    /// The checks of `node` that differ between `older` and this
    /// snapshot, in check ID order. Parts of the catalog the two snapshots
    /// share are not visited, so when this one was derived from `older`
    /// (as every commit derives from the one before) the cost follows
    /// what changed in between, not how many checks there are.
    pub fn check_changes_since<'a>(
        &'a self,
        older: &'a State,
        node: &'a str,
    ) -> impl Iterator<Item = CheckChange<'a>> + 'a {
        older
            .checks
            .diff(&self.checks)
            .filter_map(move |d| match d {
                imbl::ordmap::DiffItem::Add((n, _), c) => {
                    (n == node).then_some(CheckChange::Added(c))
                }
                imbl::ordmap::DiffItem::Update {
                    old: ((n, _), old),
                    new: (_, new),
                } => (n == node).then_some(CheckChange::Changed { old, new }),
                imbl::ordmap::DiffItem::Remove((n, _), c) => {
                    (n == node).then_some(CheckChange::Removed(c))
                }
            })
    }

    /// Checks in a state (`None` = any state).
    pub fn checks_in_state(&self, status: Option<HealthStatus>) -> (u64, Vec<Arc<Check>>) {
        let list = self
            .checks
            .values()
            .filter(|c| status.is_none_or(|s| c.status == s))
            .cloned()
            .collect();
        (at_least_one(self.tables.checks), list)
    }

    /// The instance checks of every instance of service `name`.
    pub fn service_checks(&self, name: &str) -> (u64, Vec<Arc<Check>>) {
        let mut out = Vec::new();
        if let Some(keys) = self.by_name.get(name) {
            for (node, id) in keys {
                out.extend(self.checks_of(node, id));
            }
        }
        (self.service_index(name), out)
    }

    /// One KV entry, with the index a reader of that key should see.
    pub fn kv_get(&self, key: &str) -> (u64, Option<Arc<KvEntry>>) {
        let entry = self.kv.get(key).cloned();
        let idx = entry
            .as_ref()
            .map(|e| e.modify_index)
            .or_else(|| self.kv_tombstones.get(key).copied())
            .unwrap_or(self.tables.kv);
        (at_least_one(idx), entry)
    }

    /// Every KV entry under `prefix`, with the prefix's index: the greatest
    /// modify or delete index under it, else the KV table's.
    pub fn kv_list(&self, prefix: &str) -> (u64, Vec<Arc<KvEntry>>) {
        let entries: Vec<Arc<KvEntry>> = self
            .kv
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, e)| e.clone())
            .collect();
        let live = entries.iter().map(|e| e.modify_index).max().unwrap_or(0);
        let dead = self
            .kv_tombstones
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, i)| *i)
            .max()
            .unwrap_or(0);
        let idx = match live.max(dead) {
            0 => self.tables.kv,
            i => i,
        };
        (at_least_one(idx), entries)
    }
}

#[cfg(test)]
mod instance_checks_tests {
    use super::InstanceChecks;

    fn key(id: &str) -> (String, String) {
        ("n1".to_string(), id.to_string())
    }

    #[test]
    fn links_stay_sorted_unique_and_vanish_with_the_last() {
        let mut ix = InstanceChecks::default();
        for c in ["c", "a", "b", "a"] {
            ix.link(key("web-1"), c);
        }
        ix.link(key(""), "node-check");
        assert_eq!(ix.ids("n1", "web-1"), ["a", "b", "c"]);
        assert_eq!(ix.ids("n1", ""), ["node-check"]);
        assert!(ix.ids("n2", "web-1").is_empty());
        // A snapshot taken before a change keeps what it saw.
        let before = ix.clone();
        ix.unlink(key("web-1"), "b");
        ix.unlink(key("web-1"), "missing");
        assert_eq!(ix.ids("n1", "web-1"), ["a", "c"]);
        assert_eq!(before.ids("n1", "web-1"), ["a", "b", "c"]);
        for c in ["a", "c"] {
            ix.unlink(key("web-1"), c);
        }
        ix.unlink(key(""), "node-check");
        assert!(ix.is_empty(), "{ix:?}");
    }
}
