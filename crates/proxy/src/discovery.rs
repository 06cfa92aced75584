//! Keeps the routing table in step with the catalog: one blocking query on
//! the service list, one per service on its passing instances (the same
//! code against the in-process registry or a remote one), and a single
//! builder that applies every update, rebuilds the table beside the hot
//! path and swaps it in.

use crate::config::ProxyConfig;
use crate::table::{RoutingTable, StateRegistry};
use arc_swap::ArcSwap;
use shoal_catalog::blocking::{next_index, watch_instances, RateLimit};
use shoal_catalog::{Catalog, InstanceFilter, QueryOptions, ServiceEntry};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long each blocking query waits at most.
const WAIT: Duration = Duration::from_secs(60);

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

enum Update {
    Services(Vec<String>),
    Instances(String, Vec<ServiceEntry>),
}

/// Starts watching `catalog`; stops when `cancel` fires.
pub fn spawn(
    catalog: Arc<dyn Catalog>,
    cfg: Arc<ProxyConfig>,
    cancel: CancellationToken,
) -> Arc<Discovery> {
    let empty = RoutingTable::build(&BTreeMap::new(), &mut StateRegistry::new(), &cfg, 0);
    let discovery = Arc::new(Discovery {
        table: ArcSwap::from_pointee(empty),
        generation: watch::Sender::new(0),
        registry: watch::Sender::new(None),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(watch_service_list(
        discovery.clone(),
        catalog.clone(),
        tx.clone(),
        cancel.clone(),
    ));
    tokio::spawn(build_tables(
        discovery.clone(),
        catalog,
        cfg,
        tx,
        rx,
        cancel,
    ));
    discovery
}

async fn watch_service_list(
    discovery: Arc<Discovery>,
    catalog: Arc<dyn Catalog>,
    tx: mpsc::UnboundedSender<Update>,
    cancel: CancellationToken,
) {
    let mut index = 0;
    let mut pace = RateLimit::new(Duration::from_millis(20));
    let mut backoff = Duration::from_millis(100);
    loop {
        let query = catalog.services(QueryOptions::blocking(index, WAIT));
        let result = tokio::select! {
            r = query => r,
            _ = cancel.cancelled() => return,
        };
        match result {
            Ok(got) => {
                discovery.registry_is(None);
                backoff = Duration::from_millis(100);
                let changed = got.index != index;
                index = next_index(index, got.index);
                if tx
                    .send(Update::Services(got.value.into_keys().collect()))
                    .is_err()
                {
                    return;
                }
                pace.pace(changed).await;
            }
            Err(e) => {
                let reason = with_causes(&e);
                tracing::warn!(error = %reason, "proxy: service list query failed; retrying");
                discovery.registry_is(Some(reason));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Forwards one service's instance updates until aborted.
fn watch_service(
    catalog: Arc<dyn Catalog>,
    name: String,
    tx: mpsc::UnboundedSender<Update>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let passing = InstanceFilter {
            passing_only: true,
            ..Default::default()
        };
        let mut rx = watch_instances(catalog, name.clone(), passing, WAIT);
        while rx.changed().await.is_ok() {
            let entries = rx.borrow_and_update().as_ref().map(|i| i.value.clone());
            if let Some(entries) = entries {
                if tx.send(Update::Instances(name.clone(), entries)).is_err() {
                    return;
                }
            }
        }
    })
}

async fn build_tables(
    discovery: Arc<Discovery>,
    catalog: Arc<dyn Catalog>,
    cfg: Arc<ProxyConfig>,
    tx: mpsc::UnboundedSender<Update>,
    mut rx: mpsc::UnboundedReceiver<Update>,
    cancel: CancellationToken,
) {
    let mut services: BTreeMap<String, Vec<ServiceEntry>> = BTreeMap::new();
    let mut watchers: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut states = StateRegistry::new();
    let mut generation = 0;
    loop {
        let first = tokio::select! {
            u = rx.recv() => u,
            _ = cancel.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut changed = false;
        // Apply everything already queued, then rebuild once.
        let mut next = Some(first);
        while let Some(update) = next {
            match update {
                Update::Services(names) => {
                    watchers.retain(|name, handle| {
                        let keep = names.contains(name);
                        if !keep {
                            handle.abort();
                        }
                        keep
                    });
                    let before = services.len();
                    services.retain(|name, _| names.contains(name));
                    changed |= services.len() != before;
                    for name in names {
                        watchers
                            .entry(name.clone())
                            .or_insert_with(|| watch_service(catalog.clone(), name, tx.clone()));
                    }
                }
                Update::Instances(name, entries) => {
                    if watchers.contains_key(&name) {
                        services.insert(name, entries);
                        changed = true;
                    }
                }
            }
            next = rx.try_recv().ok();
        }
        if changed {
            generation += 1;
            let table = RoutingTable::build(&services, &mut states, &cfg, generation);
            discovery.table.store(Arc::new(table));
            discovery.generation.send_replace(generation);
        }
    }
    for (_, handle) in watchers {
        handle.abort();
    }
}
