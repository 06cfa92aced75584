//! Keeps the routing table in step with the catalog by following its one
//! stream of changes ([`Catalog::subscribe`]: the in-process registry's
//! change log, a shoal server's `/v1/shoal/stream`, or blocking queries
//! against a Consul): each batch of changed services, closed by a
//! `Synced`, becomes a new table built beside the hot path and swapped in.

use crate::config::ProxyConfig;
use crate::table::{RoutingTable, StateRegistry};
use arc_swap::ArcSwap;
use shoal_catalog::{Catalog, HealthStatus, Node, ServiceEntry, StreamEvent, StreamRequest};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The current table and a signal for every new one.
pub struct Discovery {
    table: ArcSwap<RoutingTable>,
    generation: watch::Sender<u64>,
    /// Why the registry cannot be reached now (the error and its causes);
    /// `None` while it answers.
    registry: watch::Sender<Option<Arc<str>>>,
}

impl Discovery {
    /// The current routing table.
    pub fn table(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// The current routing table, borrowed: cheaper than [`Discovery::table`]
    /// for a look on the request path (no reference count taken).
    pub fn current(&self) -> arc_swap::Guard<Arc<RoutingTable>> {
        self.table.load()
    }

    /// A receiver that changes with every new table.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// A receiver of the registry's reachability (see `registry`).
    pub fn watch_registry(&self) -> watch::Receiver<Option<Arc<str>>> {
        self.registry.subscribe()
    }

    fn registry_is(&self, problem: Option<String>) {
        self.registry.send_if_modified(|now| {
            let changed = now.as_deref() != problem.as_deref();
            *now = problem.map(Arc::from);
            changed
        });
    }
}

/// An error with every cause under it: "error sending request: ...:
/// Connection refused (os error 111)".
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// Starts following `catalog`; stops when `cancel` fires.
pub fn spawn(
    catalog: Arc<dyn Catalog>,
    cfg: Arc<ProxyConfig>,
    cancel: CancellationToken,
) -> Arc<Discovery> {
    let empty = RoutingTable::empty(&cfg);
    let discovery = Arc::new(Discovery {
        table: ArcSwap::from_pointee(empty),
        generation: watch::Sender::new(0),
        registry: watch::Sender::new(None),
    });
    tokio::spawn(follow(discovery.clone(), catalog, cfg, cancel));
    discovery
}

async fn follow(
    discovery: Arc<Discovery>,
    catalog: Arc<dyn Catalog>,
    cfg: Arc<ProxyConfig>,
    cancel: CancellationToken,
) {
    let mut builder = TableBuilder::new(cfg);
    let mut backoff = Duration::from_millis(100);
    loop {
        let subscribed = tokio::select! {
            s = catalog.subscribe(StreamRequest { delta: true, ..Default::default() }) => s,
            _ = cancel.cancelled() => return,
        };
        let mut events = match subscribed {
            Ok(events) => events,
            Err(e) => {
                let reason = with_causes(&e);
                tracing::warn!(error = %reason, "proxy: cannot follow the catalog; retrying");
                discovery.registry_is(Some(reason));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                e = events.recv() => e,
                _ = cancel.cancelled() => return,
            };
            let Some(next) = next else { break };
            let event = match next {
                Ok(event) => event,
                Err(e) => {
                    let reason = with_causes(&e);
                    tracing::warn!(error = %reason, "proxy: registry unreachable; retrying");
                    discovery.registry_is(Some(reason));
                    continue;
                }
            };
            // Apply everything already queued before building a table.
            let mut next = Some(event);
            while let Some(event) = next {
                if builder.apply(event) {
                    discovery.registry_is(None);
                    if let Some(table) = builder.build() {
                        let generation = table.generation;
                        discovery.table.store(Arc::new(table));
                        discovery.generation.send_replace(generation);
                    }
                }
                next = match events.try_recv() {
                    Ok(Ok(e)) => Some(e),
                    _ => None,
                };
            }
        }
        // The catalog went away (in-process shutdown): try again later.
        tokio::time::sleep(backoff).await;
    }
}

/// A service's passing instances by (node, instance ID), as the proxy
/// holds them to apply `Instances` events (checks left out: only passing
/// instances are kept, and their status is all the table needs of them).
type Instances = BTreeMap<(String, String), ServiceEntry>;

/// The current table and the services changed since it was built.
struct TableBuilder {
    cfg: Arc<ProxyConfig>,
    table: Arc<RoutingTable>,
    /// Every routed service's passing instances now.
    services: HashMap<String, Instances>,
    /// One copy of each node the instances are on (a remote stream
    /// decodes the node anew for every instance).
    nodes: HashMap<String, Arc<Node>>,
    /// Services changed since the table was built.
    pending: BTreeSet<String>,
    /// A `Reset` came: the next table starts from an empty one.
    reset: bool,
    states: StateRegistry,
    generation: u64,
}

impl TableBuilder {
    fn new(cfg: Arc<ProxyConfig>) -> Self {
        TableBuilder {
            table: Arc::new(RoutingTable::empty(&cfg)),
            cfg,
            services: HashMap::new(),
            nodes: HashMap::new(),
            pending: BTreeSet::new(),
            reset: false,
            states: StateRegistry::new(),
            generation: 0,
        }
    }

    /// Applies one event; `true` at a `Synced` (time to publish).
    fn apply(&mut self, event: StreamEvent) -> bool {
        match event {
            StreamEvent::Reset { .. } => {
                self.pending.clear();
                self.services.clear();
                self.nodes.clear();
                self.reset = true;
            }
            StreamEvent::Service { name, entries, .. } => {
                let mut now = Instances::new();
                for e in entries {
                    self.keep(&mut now, e);
                }
                self.set(name, now);
            }
            StreamEvent::Instances {
                name,
                upsert,
                remove,
                ..
            } => {
                let mut now = self.services.remove(&name).unwrap_or_default();
                for k in remove {
                    now.remove(&(k.node, k.id));
                }
                for e in upsert {
                    now.remove(&(e.node.name.clone(), e.service.id.clone()));
                    self.keep(&mut now, e);
                }
                self.set(name, now);
            }
            StreamEvent::Node { .. } | StreamEvent::Kv { .. } => {}
            StreamEvent::Synced { .. } => {
                // Nodes no instance is on any more.
                if self.nodes.len() > 2 * self.services.len().max(64) {
                    self.nodes.retain(|_, n| Arc::strong_count(n) > 1);
                }
                return true;
            }
        }
        false
    }

    /// Puts `e` into `into` if it passes, on the one copy of its node.
    fn keep(&mut self, into: &mut Instances, mut e: ServiceEntry) {
        if e.aggregate_status() != HealthStatus::Passing {
            return;
        }
        e.checks = Vec::new();
        match self.nodes.get(&e.node.name) {
            Some(n) if **n == *e.node => e.node = n.clone(),
            _ => {
                self.nodes.insert(e.node.name.clone(), e.node.clone());
            }
        }
        into.insert((e.node.name.clone(), e.service.id.clone()), e);
    }

    fn set(&mut self, name: String, now: Instances) {
        if now.is_empty() {
            self.services.remove(&name);
        } else {
            self.services.insert(name.clone(), now);
        }
        self.pending.insert(name);
    }

    /// A new table if anything changed since the last one: the changed
    /// services swapped into the current table (work proportional to
    /// them), or after a `Reset` a table of the snapshot alone.
    fn build(&mut self) -> Option<RoutingTable> {
        if self.pending.is_empty() && !self.reset {
            return None;
        }
        self.generation += 1;
        let base = if std::mem::take(&mut self.reset) {
            let keep = &self.pending;
            self.states.retain(|name, _| keep.contains(name));
            RoutingTable::empty(&self.cfg)
        } else {
            (*self.table).clone()
        };
        let pending: BTreeMap<String, Vec<ServiceEntry>> = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|name| {
                let now = self.services.get(&name);
                let entries = now
                    .map(|m| m.values().cloned().collect())
                    .unwrap_or_default();
                (name, entries)
            })
            .collect();
        let table = base.with_changes(&pending, &mut self.states, &self.cfg, self.generation);
        self.table = Arc::new(table.clone());
        Some(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::entry;
    use shoal_catalog::{Check, InstanceKey};

    /// The instance IDs `table` routes for `service`, sorted.
    fn routed(table: &RoutingTable, service: &str) -> Vec<String> {
        let mut ids: Vec<String> = table
            .services()
            .iter()
            .filter(|u| u.service == service)
            .flat_map(|u| u.instances.iter().map(|i| i.id.clone()))
            .collect();
        ids.sort();
        ids
    }

    fn critical(mut e: ServiceEntry) -> ServiceEntry {
        e.checks = vec![Arc::new(Check {
            check_id: "c".into(),
            status: HealthStatus::Critical,
            ..Default::default()
        })];
        e
    }

    /// Applies `events` and a `Synced`; the table built, if any.
    fn batch(b: &mut TableBuilder, events: Vec<StreamEvent>) -> Option<RoutingTable> {
        for e in events {
            assert!(!b.apply(e));
        }
        assert!(b.apply(StreamEvent::Synced { index: 1 }));
        b.build()
    }

    fn key(id: &str) -> InstanceKey {
        InstanceKey {
            node: "n".into(),
            id: id.into(),
        }
    }

    #[test]
    fn whole_services_and_deltas_both_keep_the_table_right() {
        let mut b = TableBuilder::new(Arc::new(ProxyConfig::default()));
        let web = |ids: &[(&str, u16)]| {
            ids.iter()
                .map(|(id, p)| entry(id, "web", *p, &[]))
                .collect()
        };
        let t = batch(
            &mut b,
            vec![
                StreamEvent::Reset { index: 1 },
                StreamEvent::Service {
                    name: "web".into(),
                    index: 1,
                    entries: web(&[("a", 9001), ("b", 9002), ("c", 9003)]),
                },
            ],
        )
        .unwrap();
        assert_eq!(routed(&t, "web"), ["a", "b", "c"]);
        // A delta: b goes critical, c leaves, d comes; a stays as it was.
        let t = batch(
            &mut b,
            vec![StreamEvent::Instances {
                name: "web".into(),
                index: 2,
                upsert: vec![
                    critical(entry("b", "web", 9002, &[])),
                    entry("d", "web", 9004, &[]),
                ],
                remove: vec![key("c")],
            }],
        )
        .unwrap();
        assert_eq!(routed(&t, "web"), ["a", "d"]);
        // b passes again.
        let t = batch(
            &mut b,
            vec![StreamEvent::Instances {
                name: "web".into(),
                index: 3,
                upsert: vec![entry("b", "web", 9002, &[])],
                remove: vec![],
            }],
        )
        .unwrap();
        assert_eq!(routed(&t, "web"), ["a", "b", "d"]);
        // The whole service again, then empty: no route is left behind.
        let t = batch(
            &mut b,
            vec![StreamEvent::Service {
                name: "web".into(),
                index: 4,
                entries: web(&[("a", 9001)]),
            }],
        )
        .unwrap();
        assert_eq!(routed(&t, "web"), ["a"]);
        let t = batch(
            &mut b,
            vec![StreamEvent::Service {
                name: "web".into(),
                index: 5,
                entries: vec![],
            }],
        )
        .unwrap();
        assert!(routed(&t, "web").is_empty());
        assert!(b.services.is_empty(), "nothing kept of a service that went");
        // A delta on top of nothing (after it went) starts it again.
        let t = batch(
            &mut b,
            vec![StreamEvent::Instances {
                name: "web".into(),
                index: 6,
                upsert: vec![entry("e", "web", 9005, &[])],
                remove: vec![key("a")],
            }],
        )
        .unwrap();
        assert_eq!(routed(&t, "web"), ["e"]);
    }
}
