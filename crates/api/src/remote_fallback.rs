//! A subscription to a registry without a change stream (a real Consul,
//! or `--no-stream`): one catalog-wide blocking query learns the service
//! list, one blocking query per service follows its instances, and a
//! semaphore bounds how many are in flight at once, so a large catalog
//! never opens more connections than [`CONCURRENCY`]. Past that many
//! services, each query waits [`CROWDED_WAIT`] instead of a minute, so
//! every service gets its turn.

use crate::remote::RemoteCatalog;
use shoal_catalog::blocking::{next_index, RateLimit};
use shoal_catalog::{
    Catalog, InstanceFilter, QueryOptions, Result, ServiceEntry, StreamEvent, StreamRequest,
};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

/// Most blocking queries in flight at once.
pub const CONCURRENCY: usize = 256;
/// Blocking wait while every service has its own slot.
const WAIT: Duration = Duration::from_secs(60);
/// Blocking wait when there are more services than slots.
const CROWDED_WAIT: Duration = Duration::from_secs(5);

type Tx = mpsc::Sender<Result<StreamEvent>>;

/// What the per-service watchers report.
struct Update {
    name: String,
    index: u64,
    entries: Vec<ServiceEntry>,
}

struct Watchers {
    tasks: HashMap<String, JoinHandle<()>>,
    limit: Arc<Semaphore>,
    count: Arc<AtomicUsize>,
}

impl Drop for Watchers {
    fn drop(&mut self) {
        for (_, t) in self.tasks.drain() {
            t.abort();
        }
    }
}

/// Follows `client` with blocking queries until the receiver is dropped.
/// KV prefixes are not followed this way (the renderer watches its keys
/// itself against a Consul).
pub(crate) async fn run(client: RemoteCatalog, _req: StreamRequest, tx: Tx) {
    if tx.send(Ok(StreamEvent::Reset { index: 0 })).await.is_err() {
        return;
    }
    let client = Arc::new(client);
    let (updates_tx, mut updates) = mpsc::unbounded_channel::<Update>();
    let mut watchers = Watchers {
        tasks: HashMap::new(),
        limit: Arc::new(Semaphore::new(CONCURRENCY)),
        count: Arc::default(),
    };
    // Services whose first answer has not come yet: `Synced` waits for
    // them, so the first view is whole.
    let mut pending: HashSet<String> = HashSet::new();
    let mut synced = 0u64;
    let mut first_list = true;
    let (list_tx, mut lists) = mpsc::channel(1);
    let list_task = tokio::spawn(watch_list(client.clone(), list_tx, tx.clone()));
    let _list_task = AbortOnDrop(list_task);
    loop {
        tokio::select! {
            list = lists.recv() => {
                let Some((index, names)) = list else { return };
                let names: HashSet<String> = names;
                let gone: Vec<String> = watchers.tasks.keys().filter(|n| !names.contains(*n)).cloned().collect();
                for name in gone {
                    if let Some(t) = watchers.tasks.remove(&name) {
                        t.abort();
                    }
                    pending.remove(&name);
                    let event = StreamEvent::Service { name, index, entries: Vec::new() };
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                for name in names {
                    if !watchers.tasks.contains_key(&name) {
                        pending.insert(name.clone());
                        let task = tokio::spawn(watch_service(
                            client.clone(), name.clone(), watchers.limit.clone(),
                            watchers.count.clone(), updates_tx.clone(), tx.clone(),
                        ));
                        watchers.tasks.insert(name, task);
                    }
                }
                watchers.count.store(watchers.tasks.len(), Ordering::Relaxed);
                synced = synced.max(index);
                if pending.is_empty() || first_list && watchers.tasks.is_empty() {
                    first_list = false;
                    if tx.send(Ok(StreamEvent::Synced { index: synced })).await.is_err() {
                        return;
                    }
                }
            }
            Some(u) = updates.recv() => {
                if !watchers.tasks.contains_key(&u.name) {
                    continue;
                }
                synced = synced.max(u.index);
                let was_pending = pending.remove(&u.name);
                let event = StreamEvent::Service { name: u.name, index: u.index, entries: u.entries };
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
                if pending.is_empty() && (was_pending || !first_list) {
                    first_list = false;
                    if tx.send(Ok(StreamEvent::Synced { index: synced })).await.is_err() {
                        return;
                    }
                }
            }
            _ = tx.closed() => return,
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The one catalog-wide watch: the service list.
async fn watch_list(
    client: Arc<RemoteCatalog>,
    lists: mpsc::Sender<(u64, HashSet<String>)>,
    tx: Tx,
) {
    let mut index = 0;
    let mut pace = RateLimit::new(Duration::from_millis(20));
    let mut backoff = Duration::from_millis(100);
    loop {
        match client.services(QueryOptions::blocking(index, WAIT)).await {
            Ok(got) => {
                backoff = Duration::from_millis(100);
                let changed = got.index != index;
                index = next_index(index, got.index);
                if changed
                    && lists
                        .send((got.index, got.value.into_keys().collect()))
                        .await
                        .is_err()
                {
                    return;
                }
                pace.pace(changed).await;
            }
            Err(e) => {
                if tx.send(Err(e)).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One service's instances (all of them: filters are the consumer's).
async fn watch_service(
    client: Arc<RemoteCatalog>,
    name: String,
    limit: Arc<Semaphore>,
    count: Arc<AtomicUsize>,
    updates: mpsc::UnboundedSender<Update>,
    tx: Tx,
) {
    let mut index = 0;
    let mut pace = RateLimit::new(Duration::from_millis(50));
    let mut backoff = Duration::from_millis(100);
    let all = InstanceFilter::default();
    loop {
        let wait = if count.load(Ordering::Relaxed) > CONCURRENCY {
            CROWDED_WAIT
        } else {
            WAIT
        };
        let Ok(permit) = limit.acquire().await else {
            return;
        };
        let got = client
            .instances(&name, &all, QueryOptions::blocking(index, wait))
            .await;
        drop(permit);
        match got {
            Ok(got) => {
                backoff = Duration::from_millis(100);
                let changed = index == 0 || got.index != index;
                index = next_index(index, got.index);
                if changed {
                    let update = Update {
                        name: name.clone(),
                        index: got.index,
                        entries: got.value,
                    };
                    if updates.send(update).is_err() {
                        return;
                    }
                }
                pace.pace(changed).await;
            }
            Err(e) => {
                if tx.send(Err(e)).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
