//! A subscription to a registry without a change stream (a real Consul,
//! or `--no-stream`): one catalog-wide blocking query learns the service
//! list, one blocking query per service follows its instances, one on the
//! requested KV prefix (recursive) follows its keys, and a semaphore
//! bounds how many are in flight at once, so a large catalog never opens
//! more connections than [`CONCURRENCY`]. Past that many services, each
//! query waits [`CROWDED_WAIT`] instead of a minute, so every service gets
//! its turn.

use crate::remote::RemoteCatalog;
use shoal_catalog::blocking::{next_index, RateLimit};
use shoal_catalog::{
    Catalog, InstanceFilter, KvEntry, QueryOptions, Result, ServiceEntry, StreamEvent,
    StreamRequest,
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

/// What the KV watcher reports: the keys that changed under the prefix
/// (as `Kv` events), after an answer at `index`.
struct KvUpdate {
    index: u64,
    events: Vec<StreamEvent>,
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

/// Follows `client` with blocking queries until the receiver is dropped:
/// the services, and the keys under `req.kv_prefix` when one is given.
/// `Synced` comes once every service and the KV prefix have answered, then
/// after each change.
pub(crate) async fn run(client: RemoteCatalog, req: StreamRequest, tx: Tx) {
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
    let mut list_seen = false;
    let mut kv_pending = req.kv_prefix.is_some();
    let mut synced = 0u64;
    let (list_tx, mut lists) = mpsc::channel(1);
    let list_task = tokio::spawn(watch_list(client.clone(), list_tx, tx.clone()));
    let _list_task = AbortOnDrop(list_task);
    let (kv_tx, mut kv_updates) = mpsc::channel::<KvUpdate>(1);
    let _kv_task = req.kv_prefix.clone().map(|prefix| {
        AbortOnDrop(tokio::spawn(watch_kv(
            client.clone(),
            prefix,
            watchers.limit.clone(),
            watchers.count.clone(),
            kv_tx,
            tx.clone(),
        )))
    });
    loop {
        tokio::select! {
            list = lists.recv() => {
                let Some((index, names)) = list else { return };
                let names: HashSet<String> = names;
                list_seen = true;
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
            }
            Some(u) = updates.recv() => {
                if !watchers.tasks.contains_key(&u.name) {
                    continue;
                }
                synced = synced.max(u.index);
                pending.remove(&u.name);
                let event = StreamEvent::Service { name: u.name, index: u.index, entries: u.entries };
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            Some(u) = kv_updates.recv() => {
                synced = synced.max(u.index);
                kv_pending = false;
                for event in u.events {
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
            }
            _ = tx.closed() => return,
        }
        // Whole: the list, every service on it and the KV prefix answered.
        let whole = list_seen && pending.is_empty() && !kv_pending;
        if whole
            && tx
                .send(Ok(StreamEvent::Synced { index: synced }))
                .await
                .is_err()
        {
            return;
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

/// The keys under `prefix`: one recursive blocking query, reporting the
/// keys added, changed (by `ModifyIndex`) and deleted since its last answer.
async fn watch_kv(
    client: Arc<RemoteCatalog>,
    prefix: String,
    limit: Arc<Semaphore>,
    count: Arc<AtomicUsize>,
    updates: mpsc::Sender<KvUpdate>,
    tx: Tx,
) {
    let mut index = 0;
    let mut known: HashMap<String, u64> = HashMap::new();
    let mut pace = RateLimit::new(Duration::from_millis(50));
    let mut backoff = Duration::from_millis(100);
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
            .kv_list(&prefix, QueryOptions::blocking(index, wait))
            .await;
        drop(permit);
        match got {
            Ok(got) => {
                backoff = Duration::from_millis(100);
                let changed = index == 0 || got.index != index;
                index = next_index(index, got.index);
                if changed {
                    let events = kv_changes(&mut known, got.index, got.value);
                    let update = KvUpdate {
                        index: got.index,
                        events,
                    };
                    if updates.send(update).await.is_err() {
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

/// The `Kv` events that take a consumer from `known` (key → ModifyIndex,
/// updated here) to `now`, the prefix's entries at `index`.
fn kv_changes(known: &mut HashMap<String, u64>, index: u64, now: Vec<KvEntry>) -> Vec<StreamEvent> {
    let mut events = Vec::new();
    let mut seen = HashMap::with_capacity(now.len());
    for entry in now {
        seen.insert(entry.key.clone(), entry.modify_index);
        if known.get(&entry.key) != Some(&entry.modify_index) {
            events.push(StreamEvent::Kv {
                key: entry.key.clone(),
                index: entry.modify_index,
                entry: Some(Arc::new(entry)),
            });
        }
    }
    let mut gone: Vec<&String> = known.keys().filter(|k| !seen.contains_key(*k)).collect();
    gone.sort();
    for key in gone {
        events.push(StreamEvent::Kv {
            key: key.clone(),
            index,
            entry: None,
        });
    }
    *known = seen;
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, modify_index: u64) -> KvEntry {
        KvEntry {
            key: key.into(),
            modify_index,
            ..Default::default()
        }
    }

    fn summary(events: &[StreamEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                StreamEvent::Kv {
                    key,
                    entry: Some(_),
                    ..
                } => format!("put {key}"),
                StreamEvent::Kv {
                    key,
                    entry: None,
                    index,
                } => format!("delete {key} @{index}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn kv_answers_become_the_changes_since_the_last_one() {
        let mut known = HashMap::new();
        // (answer index, entries, events expected)
        let steps: Vec<(u64, Vec<KvEntry>, Vec<&str>)> = vec![
            (
                5,
                vec![entry("a/1", 3), entry("a/2", 5)],
                vec!["put a/1", "put a/2"],
            ),
            (5, vec![entry("a/1", 3), entry("a/2", 5)], vec![]),
            (8, vec![entry("a/1", 8), entry("a/2", 5)], vec!["put a/1"]),
            (
                9,
                vec![entry("a/2", 5), entry("a/3", 9)],
                vec!["put a/3", "delete a/1 @9"],
            ),
            (12, vec![], vec!["delete a/2 @12", "delete a/3 @12"]),
        ];
        for (index, now, want) in steps {
            let got = summary(&kv_changes(&mut known, index, now));
            assert_eq!(got, want, "at {index}");
        }
    }
}
