//! [`Source`] over a shoal server's change stream: one subscription for
//! every dependency of every template, instead of one blocking query per
//! dependency (consul-template's "one connection per dependency").
//!
//! A task follows the stream into a local mirror of the catalog (services
//! with their instances, nodes, and KV), built on persistent maps so that
//! publishing it after each `Synced` costs nothing per entry. A
//! dependency's read is then local: it answers from the mirror at once,
//! or, when the caller already has what it holds, waits until an event
//! that concerns that dependency arrives (or the wait runs out). Nothing
//! is answered before the first `Synced`, so no template renders from a
//! half-loaded catalog.
//!
//! Each dependency reports the index of the last event that concerned it
//! (a service's own index, a key's), so a change elsewhere in the catalog
//! wakes no one. A `Reset` (the server's history did not reach back to
//! where the subscription resumed) may have dropped anything, so it wakes
//! every dependency once.

use crate::deps::{
    CatalogNode, CatalogSnippet, Data, Dependency, HealthService, KeyPair, NodeInfo,
};
use crate::source::{CatalogExtras, Source};
use crate::Result;
use async_trait::async_trait;
use imbl::OrdMap;
use shoal_catalog::{
    Catalog, Indexed, InstanceFilter, KvEntry, Node, ServiceEntry, StreamEvent, StreamRequest,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The catalog as the stream has delivered it, up to `index`.
#[derive(Clone, Debug, Default)]
struct Mirror {
    /// Whether a `Synced` has been applied: before it, nothing is answered.
    synced: bool,
    /// The index of the last `Synced`.
    index: u64,
    /// The last subscription error, while not yet synced (said to readers
    /// instead of waiting on a registry that cannot be reached).
    error: Option<String>,
    /// Service name → its instances and the index of its last event.
    services: OrdMap<String, (u64, Arc<Vec<ServiceEntry>>)>,
    nodes: OrdMap<String, Arc<Node>>,
    kv: OrdMap<String, (u64, Arc<KvEntry>)>,
    /// Index of the last event of each kind (the lists' indexes).
    services_at: u64,
    nodes_at: u64,
    kv_at: u64,
    /// Index of the last `Reset`: everything counts as changed there.
    reset_at: u64,
}

impl Mirror {
    fn apply(&mut self, event: StreamEvent) -> bool {
        match event {
            StreamEvent::Reset { index } => {
                let keep = (self.synced, self.index);
                *self = Mirror::default();
                (self.synced, self.index) = keep;
                self.reset_at = index;
            }
            StreamEvent::Service {
                name,
                index,
                entries,
            } => {
                self.services_at = self.services_at.max(index);
                if entries.is_empty() {
                    self.services.remove(&name);
                } else {
                    self.services.insert(name, (index, Arc::new(entries)));
                }
            }
            StreamEvent::Instances {
                name,
                index,
                upsert,
                remove,
            } => {
                self.services_at = self.services_at.max(index);
                let mut list = self
                    .services
                    .get(&name)
                    .map(|(_, l)| (**l).clone())
                    .unwrap_or_default();
                shoal_catalog::apply_instances(&mut list, upsert, &remove);
                if list.is_empty() {
                    self.services.remove(&name);
                } else {
                    self.services.insert(name, (index, Arc::new(list)));
                }
            }
            StreamEvent::Node { name, index, node } => {
                self.nodes_at = self.nodes_at.max(index);
                match node {
                    Some(n) => {
                        self.nodes.insert(name, n);
                    }
                    None => {
                        self.nodes.remove(&name);
                    }
                }
            }
            StreamEvent::Kv { key, index, entry } => {
                self.kv_at = self.kv_at.max(index);
                match entry {
                    Some(e) => {
                        self.kv.insert(key, (index, e));
                    }
                    None => {
                        self.kv.remove(&key);
                    }
                }
            }
            StreamEvent::Synced { index } => {
                self.synced = true;
                self.error = None;
                self.index = index;
                return true;
            }
        }
        false
    }

    /// The index of the last event that concerned `dep`. A service or key
    /// that is not there reports its table's index, as Consul does, so a
    /// reader of one wakes when it goes and when it comes back, and the
    /// mirror need not remember what was deleted.
    fn index_of(&self, dep: &Dependency) -> u64 {
        let own = match dep {
            Dependency::Health(q) => self
                .services
                .get(&q.name)
                .map_or(self.services_at, |(i, _)| *i),
            Dependency::CatalogServices { .. } => self.services_at,
            Dependency::CatalogNodes { .. } => self.nodes_at,
            Dependency::CatalogNode { .. } => self.nodes_at.max(self.services_at),
            Dependency::KvGet { key, .. } => self.kv.get(key).map_or(self.kv_at, |(i, _)| *i),
            Dependency::KvList { .. } => self.kv_at,
            Dependency::File(_) => 0,
        };
        own.max(self.reset_at).max(1)
    }

    fn service_entries(&self, name: &str, filter: &InstanceFilter) -> Vec<ServiceEntry> {
        self.services
            .get(name)
            .map(|(_, entries)| {
                entries
                    .iter()
                    .filter(|e| filter.matches(e))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What `dep` reads, from this mirror (`node` needs the node's name).
    fn data(&self, dep: &Dependency, node_name: Option<&str>) -> Data {
        match dep {
            Dependency::Health(query) => {
                let filter = InstanceFilter {
                    tags: query.tag.iter().cloned().collect(),
                    passing_only: query.passing_only(),
                };
                let entries = self.service_entries(&query.name, &filter);
                Data::Health(HealthService::from_entries(query, &entries))
            }
            Dependency::CatalogServices { .. } => {
                let mut services: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (name, (_, entries)) in self.services.iter() {
                    let tags = services.entry(name.clone()).or_default();
                    for e in entries.iter() {
                        for t in &e.service.tags {
                            if !tags.contains(t) {
                                tags.push(t.clone());
                            }
                        }
                    }
                }
                Data::Services(CatalogSnippet::from_catalog(&services))
            }
            Dependency::CatalogNodes { .. } => {
                let nodes: Vec<Node> = self.nodes.values().map(|n| (**n).clone()).collect();
                Data::Nodes(NodeInfo::list(&nodes))
            }
            Dependency::CatalogNode { .. } => {
                let Some(node) = node_name.and_then(|n| self.nodes.get(n)) else {
                    return Data::Node(CatalogNode::default());
                };
                let services: Vec<_> = self
                    .services
                    .values()
                    .flat_map(|(_, entries)| entries.iter())
                    .filter(|e| e.node.name == node.name)
                    .map(|e| (*e.service).clone())
                    .collect();
                Data::Node(CatalogNode::from_contents(node, &services))
            }
            Dependency::KvGet { key, .. } => Data::Kv(
                self.kv
                    .get(key)
                    .map(|(_, e)| String::from_utf8_lossy(&e.value).into_owned()),
            ),
            Dependency::KvList { prefix, .. } => {
                let entries: Vec<KvEntry> = self
                    .kv
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(prefix.as_str()))
                    .map(|(_, (_, e))| (**e).clone())
                    .collect();
                Data::KvList(KeyPair::list(prefix, &entries))
            }
            Dependency::File(_) => unreachable!("files are read by the fallback source"),
        }
    }
}

/// See the module doc.
pub struct StreamSource {
    mirror: watch::Receiver<Arc<Mirror>>,
    /// For what the stream does not carry: files, and the agent's own
    /// node name for `node` without a name.
    fallback: Arc<dyn Source>,
    extras: Option<Arc<dyn CatalogExtras>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StreamSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StreamSource {
    /// Follows `catalog`'s change stream (all of the catalog and all of
    /// KV); `fallback` serves files and `extras` names the agent's node.
    pub async fn new(
        catalog: Arc<dyn Catalog>,
        fallback: Arc<dyn Source>,
        extras: Option<Arc<dyn CatalogExtras>>,
    ) -> Result<Self> {
        let mut events = catalog
            .subscribe(StreamRequest {
                index: 0,
                kv_prefix: Some(String::new()),
                delta: true,
            })
            .await?;
        let (tx, rx) = watch::channel(Arc::new(Mirror::default()));
        let task = tokio::spawn(async move {
            let mut mirror = Mirror::default();
            while let Some(event) = events.recv().await {
                match event {
                    Ok(event) => {
                        if mirror.apply(event) && tx.send(Arc::new(mirror.clone())).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "render: change stream interrupted; resuming");
                        if !mirror.synced {
                            mirror.error = Some(e.to_string());
                            if tx.send(Arc::new(mirror.clone())).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        Ok(StreamSource {
            mirror: rx,
            fallback,
            extras,
            task,
        })
    }
}

#[async_trait]
impl Source for StreamSource {
    async fn fetch(&self, dep: &Dependency, index: u64, wait: Duration) -> Result<Indexed<Data>> {
        if matches!(dep, Dependency::File(_)) {
            return self.fallback.fetch(dep, index, wait).await;
        }
        let node_name = match (dep, &self.extras) {
            (Dependency::CatalogNode { name: Some(n), .. }, _) => Some(n.clone()),
            (Dependency::CatalogNode { name: None, .. }, Some(extras)) => {
                Some(extras.agent_node_name().await?)
            }
            _ => None,
        };
        let deadline = Instant::now() + wait;
        let mut rx = self.mirror.clone();
        loop {
            let mirror = rx.borrow_and_update().clone();
            if mirror.synced {
                let at = mirror.index_of(dep);
                if index == 0 || at > index || Instant::now() >= deadline {
                    return Ok(Indexed {
                        index: at,
                        value: mirror.data(dep, node_name.as_deref()),
                    });
                }
            } else if let Some(e) = &mirror.error {
                return Err(shoal_catalog::Error::Remote(e.clone()).into());
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Err(shoal_catalog::Error::Remote(
                            "the change stream ended".into(),
                        )
                        .into());
                    }
                }
                _ = tokio::time::sleep_until(deadline), if mirror.synced => {}
            }
        }
    }
}
