//! The registry: the current [`State`] snapshot, the single writer thread
//! that applies commands in batches and commits them durably (group
//! commit: writes that arrive while one fsync runs share the next one),
//! and blocking reads that wait on the topics they read.

use crate::apply::Txn;
use crate::catalog::{Catalog, Indexed, InstanceFilter, NodeContents, QueryOptions};
use crate::command::{Command, Outcome, Registration};
use crate::error::{Error, Result};
use crate::heartbeat::Heartbeats;
use crate::metrics::{Family, RegistryMetrics};
use crate::model::{HealthStatus, KvEntry, ServiceEntry};
use crate::state::State;
use crate::store::Store;
pub use crate::store_health::StoreFailure;
use crate::store_health::StoreHealth;
use crate::stream::{StreamEvent, StreamRequest};
use crate::watch::{Topic, WatchHub};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Consul's default blocking wait.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Consul's longest blocking wait.
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// Most commands applied in one durable transaction.
const MAX_BATCH: usize = 4096;
/// A durable commit slower than this is logged as a warning.
const SLOW_COMMIT: Duration = Duration::from_millis(500);
/// Queued writes before callers wait for room.
const QUEUE: usize = 16 * 1024;

struct Request {
    cmd: Command,
    reply: oneshot::Sender<Result<Outcome>>,
}

enum Msg {
    Write(Request),
    Shutdown(oneshot::Sender<()>),
    /// Commits of other servers on a shared store (see `follow.rs`).
    Follow(crate::store::FollowEvent),
}

mod follow;
mod forward;
pub use forward::{Forwarded, Forwarder};

struct Shared {
    current: ArcSwap<State>,
    hub: WatchHub,
    metrics: RegistryMetrics,
    store_health: StoreHealth,
}

impl Shared {
    /// What readers and the writer share, starting at `state`.
    fn at(state: State) -> Arc<Shared> {
        Arc::new(Shared {
            current: ArcSwap::from_pointee(state),
            hub: WatchHub::new(),
            metrics: RegistryMetrics::default(),
            store_health: StoreHealth::default(),
        })
    }
}

/// Starts the writer thread; `run` returns whom to tell it has stopped.
fn spawn_writer(run: impl FnOnce() -> Option<oneshot::Sender<()>> + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name("shoal-catalog-writer".into())
        .spawn(move || {
            if let Some(done) = run() {
                let _ = done.send(());
            }
        })
        .map(|_| ())
        .map_err(|e| Error::Storage(format!("cannot start writer thread: {e}")))
}

/// The in-process catalog.
pub struct Registry {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Msg>,
    heartbeats: Heartbeats,
    session_timers: crate::session_timers::SessionTimers,
    /// `Some` on a shared store (etcd): what `?consistent` reads wait on.
    follow: Option<follow::Follow>,
    /// Set on a shared store: who takes this server's writes when it
    /// does not lead (see `registry/forward.rs`).
    forwarder: std::sync::OnceLock<Arc<dyn Forwarder>>,
}

impl Registry {
    /// Loads the store's state and starts the writer thread.
    pub fn open(store: Box<dyn Store>) -> Result<Arc<Registry>> {
        Registry::open_with_log(store, crate::changelog::LOG_CAPACITY)
    }

    /// Like [`Registry::open`], keeping `log_capacity` entries of change
    /// log: how far behind a stream consumer may fall and still resume
    /// without a snapshot.
    pub fn open_with_log(store: Box<dyn Store>, log_capacity: usize) -> Result<Arc<Registry>> {
        let mut state = store.load()?;
        state.log = crate::changelog::ChangeLog::with_capacity(state.index, log_capacity);
        let shared = Shared::at(state);
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer_shared = shared.clone();
        spawn_writer(move || {
            let done = writer_loop(&writer_shared, store.as_ref(), rx);
            // Close the store (and its file lock) before saying we are done.
            drop(store);
            done
        })?;
        Ok(Registry::assemble(shared, tx, None))
    }

    /// The registry around a started writer.
    fn assemble(
        shared: Arc<Shared>,
        tx: mpsc::Sender<Msg>,
        follow: Option<follow::Follow>,
    ) -> Arc<Registry> {
        Arc::new(Registry {
            shared,
            tx,
            heartbeats: Heartbeats::default(),
            session_timers: Default::default(),
            follow,
            forwarder: std::sync::OnceLock::new(),
        })
    }

    /// A registry that keeps nothing on disk.
    pub fn in_memory() -> Arc<Registry> {
        // The memory store's load cannot fail and thread spawn failing
        // means the process cannot run at all.
        Registry::open(Box::new(crate::store::MemoryStore)).expect("start in-memory registry")
    }

    /// The current snapshot. Cheap; never blocks on writers.
    pub fn snapshot(&self) -> Arc<State> {
        self.shared.current.load_full()
    }

    /// The registry's counters (the agent side adds check runs and Docker
    /// events to them).
    pub fn metrics(&self) -> &RegistryMetrics {
        &self.shared.metrics
    }

    /// Every metric of this registry, ready to render.
    pub fn metric_families(&self) -> Vec<Family> {
        self.shared
            .metrics
            .families(self.shared.hub.subscriptions())
    }

    /// `Some` while the store cannot commit: writes fail, and what reads
    /// return may be stale (check results that could not be recorded).
    pub fn store_failure(&self) -> Option<StoreFailure> {
        self.shared.store_health.failure()
    }

    /// When TTL checks were last refreshed (kept in memory only).
    pub fn heartbeats(&self) -> &Heartbeats {
        &self.heartbeats
    }

    /// TTL timers of sessions (kept in memory only).
    pub fn session_timers(&self) -> &crate::session_timers::SessionTimers {
        &self.session_timers
    }

    /// Applies a command; returns once it is durable (or rejected), and
    /// in this server's view. On a shared store, a server that does not
    /// lead has the leader commit it (see `registry/forward.rs`).
    pub async fn write(&self, cmd: Command) -> Result<Outcome> {
        if let Some(answer) = self.forwarded(&cmd).await {
            return answer;
        }
        self.write_local(cmd).await
    }

    /// Has this server's writer apply and commit `cmd`.
    async fn write_local(&self, cmd: Command) -> Result<Outcome> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Write(Request { cmd, reply }))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Stops taking writes, lets queued ones finish, and stops the writer.
    pub async fn shutdown(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(done)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Runs `read` on the current snapshot; with `q.index > 0`, waits until
    /// the index `read` reports passes `q.index` (woken only by commits that
    /// touch `topics`) or the wait (plus up to 1/16 jitter) runs out.
    pub async fn block<T>(
        &self,
        topics: &[Topic],
        q: QueryOptions,
        read: impl Fn(&State) -> (u64, T),
    ) -> Indexed<T> {
        self.block_at(topics, q, read).await.1
    }

    /// Like [`Registry::block`], also returning the snapshot the answer was
    /// read from, so a caller can derive more from that same snapshot (or
    /// cache what it renders from it).
    pub async fn block_at<T>(
        &self,
        topics: &[Topic],
        q: QueryOptions,
        read: impl Fn(&State) -> (u64, T),
    ) -> (Arc<State>, Indexed<T>) {
        let deadline = (q.index > 0).then(|| Instant::now() + blocking_wait(q.wait));
        // Subscribed once, on the first miss; the snapshot is read again
        // right after subscribing so no commit can slip in between.
        let mut receivers: Option<Vec<_>> = None;
        loop {
            let snapshot = self.snapshot();
            let (index, value) = read(&snapshot);
            let Some(deadline) = deadline else {
                return (snapshot, Indexed { index, value });
            };
            if index > q.index || Instant::now() >= deadline || topics.is_empty() {
                return (snapshot, Indexed { index, value });
            }
            drop(value);
            drop(snapshot);
            let Some(receivers) = receivers.as_mut() else {
                receivers = Some(
                    topics
                        .iter()
                        .map(|t| self.shared.hub.subscribe(t))
                        .collect(),
                );
                continue;
            };
            let any_change =
                futures::future::select_all(receivers.iter_mut().map(|r| Box::pin(r.changed())));
            let _parked = Parked::new(&self.shared.metrics.blocking_queries);
            tokio::select! {
                _ = any_change => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

/// Counts one parked blocking query for as long as it lives (a query
/// whose client went away is dropped mid-wait, and uncounted then).
struct Parked<'a>(&'a crate::metrics::Gauge);

impl<'a> Parked<'a> {
    fn new(gauge: &'a crate::metrics::Gauge) -> Self {
        gauge.add(1);
        Parked(gauge)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}

/// The wait a blocking query gets: the asked one (default 5 min, at most
/// 10 min) plus a random jitter of up to 1/16 of it, as Consul does, so
/// that many watchers do not all return at once.
pub fn blocking_wait(asked: Option<Duration>) -> Duration {
    let wait = asked.unwrap_or(DEFAULT_WAIT).min(MAX_WAIT);
    let jitter_max = wait.as_millis() as u64 / 16;
    let jitter = if jitter_max > 0 {
        rand::thread_rng().gen_range(0..=jitter_max)
    } else {
        0
    };
    wait + Duration::from_millis(jitter)
}

/// While the store fails, how often it is probed when no write comes.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// While the store fails, how often the queue is polled between probes.
const FAILING_POLL: Duration = Duration::from_millis(20);

/// What the writer does next.
enum Next {
    Msg(Msg),
    /// Try the failing store again (no write came for a while).
    Probe,
    /// Every sender is gone.
    Closed,
}

/// The next message; while the store fails, polls the queue so the store
/// can be probed every [`PROBE_INTERVAL`] even when no write comes.
fn next_message(rx: &mut mpsc::Receiver<Msg>, health: &StoreHealth) -> Next {
    if health.failure().is_none() {
        return rx.blocking_recv().map_or(Next::Closed, Next::Msg);
    }
    let since = std::time::Instant::now();
    loop {
        match rx.try_recv() {
            Ok(msg) => return Next::Msg(msg),
            Err(mpsc::error::TryRecvError::Disconnected) => return Next::Closed,
            Err(mpsc::error::TryRecvError::Empty) if since.elapsed() >= PROBE_INTERVAL => {
                return Next::Probe
            }
            Err(mpsc::error::TryRecvError::Empty) => std::thread::sleep(FAILING_POLL),
        }
    }
}

/// Runs until shutdown (returning who to tell) or until every sender is gone.
fn writer_loop(
    shared: &Shared,
    store: &dyn Store,
    mut rx: mpsc::Receiver<Msg>,
) -> Option<oneshot::Sender<()>> {
    loop {
        let first = match next_message(&mut rx, &shared.store_health) {
            Next::Msg(msg) => msg,
            Next::Probe => {
                let probed = store.probe();
                shared.store_health.record(&probed, &shared.metrics);
                continue;
            }
            Next::Closed => return None,
        };
        let mut batch = Vec::new();
        let mut shutdown = None;
        match first {
            Msg::Write(r) => batch.push(r),
            Msg::Shutdown(done) => shutdown = Some(done),
            Msg::Follow(_) => {}
        }
        while shutdown.is_none() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Write(r)) => batch.push(r),
                Ok(Msg::Shutdown(done)) => shutdown = Some(done),
                Ok(Msg::Follow(_)) => {}
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            commit_batch(shared, store, batch);
        }
        if let Some(done) = shutdown {
            rx.close();
            while let Ok(msg) = rx.try_recv() {
                if let Msg::Write(r) = msg {
                    let _ = r.reply.send(Err(Error::Closed));
                }
            }
            return Some(done);
        }
    }
}

fn commit_batch(shared: &Shared, store: &dyn Store, batch: Vec<Request>) {
    shared.metrics.writes.add(batch.len() as u64);
    let mut next = (*shared.current.load_full()).clone();
    let mut txn = Txn::new(&mut next);
    let mut replies = Vec::with_capacity(batch.len());
    for req in batch {
        let result = txn.apply(req.cmd);
        replies.push((req.reply, result));
    }
    let (mutations, changes) = txn.into_mutations();
    if !mutations.is_empty() {
        let started = std::time::Instant::now();
        let committed = store.commit(&mutations);
        let took = started.elapsed();
        shared.metrics.commit_seconds.observe(took);
        if committed.is_ok() && shared.store_health.failure().is_some() {
            // Durable, so acknowledged below; but it may have fitted only in
            // space the store kept for itself: only a probe ends a failure.
            let probed = store.probe();
            shared.store_health.record(&probed, &shared.metrics);
        } else {
            shared.store_health.record(&committed, &shared.metrics);
        }
        tracing::debug!(
            writes = replies.len(),
            records = mutations.len(),
            took_us = took.as_micros() as u64,
            "durable commit"
        );
        if took > SLOW_COMMIT {
            tracing::warn!(
                writes = replies.len(),
                took_ms = took.as_millis() as u64,
                "slow durable commit"
            );
        }
        if let Err(e) = committed {
            tracing::error!(error = %e, writes = replies.len(), "durable commit failed; batch rejected");
            for (reply, _) in replies {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
        shared.metrics.commits.inc();
        let index = next.index();
        shared.current.store(Arc::new(next));
        shared.hub.notify(&changes, index);
    }
    for (reply, result) in replies {
        let _ = reply.send(result);
    }
}

#[async_trait]
impl Catalog for Registry {
    async fn register(&self, reg: Registration) -> Result<u64> {
        Ok(self.write(Command::Register(Box::new(reg))).await?.index)
    }

    async fn deregister_service(&self, node: &str, service_id: &str) -> Result<u64> {
        let cmd = Command::DeregisterService {
            node: node.to_string(),
            service_id: service_id.to_string(),
        };
        Ok(self.write(cmd).await?.index)
    }

    async fn deregister_node(&self, node: &str) -> Result<u64> {
        let cmd = Command::DeregisterNode {
            node: node.to_string(),
        };
        Ok(self.write(cmd).await?.index)
    }

    async fn deregister_check(&self, node: &str, check_id: &str) -> Result<u64> {
        let cmd = Command::DeregisterCheck {
            node: node.to_string(),
            check_id: check_id.to_string(),
        };
        Ok(self.write(cmd).await?.index)
    }

    async fn node_contents(
        &self,
        node: &str,
        q: QueryOptions,
    ) -> Result<Indexed<Option<NodeContents>>> {
        let topic = Topic::Node(node.to_string());
        Ok(self
            .block(&[topic], q, |s| (s.node_index(node), s.node_contents(node)))
            .await)
    }

    async fn update_check(
        &self,
        node: &str,
        check_id: &str,
        status: HealthStatus,
        output: Option<String>,
    ) -> Result<u64> {
        let cmd = Command::UpdateCheck {
            node: node.to_string(),
            check_id: check_id.to_string(),
            status,
            output,
        };
        Ok(self.write(cmd).await?.index)
    }

    async fn services(&self, q: QueryOptions) -> Result<Indexed<BTreeMap<String, Vec<String>>>> {
        Ok(self.block(&[Topic::Services], q, |s| s.services()).await)
    }

    async fn instances(
        &self,
        service: &str,
        filter: &InstanceFilter,
        q: QueryOptions,
    ) -> Result<Indexed<Vec<ServiceEntry>>> {
        let topic = Topic::Service(service.to_string());
        Ok(self
            .block(&[topic], q, |s| {
                let (index, mut entries) = s.service_entries(service);
                entries.retain(|e| filter.matches(e));
                (index, entries)
            })
            .await)
    }

    async fn kv_get(&self, key: &str, q: QueryOptions) -> Result<Indexed<Option<KvEntry>>> {
        let topic = Topic::KvPrefix(key.to_string());
        Ok(self
            .block(&[topic], q, |s| {
                let (i, e) = s.kv_get(key);
                (i, e.map(|e| (*e).clone()))
            })
            .await)
    }

    async fn kv_list(&self, prefix: &str, q: QueryOptions) -> Result<Indexed<Vec<KvEntry>>> {
        let topic = Topic::KvPrefix(prefix.to_string());
        Ok(self
            .block(&[topic], q, |s| {
                let (i, list) = s.kv_list(prefix);
                (i, list.iter().map(|e| (**e).clone()).collect())
            })
            .await)
    }

    async fn kv_put(&self, key: &str, value: Bytes, flags: u64, cas: Option<u64>) -> Result<bool> {
        let cmd = Command::KvPut {
            key: key.to_string(),
            value,
            flags,
            cas,
        };
        Ok(self.write(cmd).await?.applied)
    }

    async fn kv_delete(&self, key: &str, recurse: bool, cas: Option<u64>) -> Result<bool> {
        let cmd = Command::KvDelete {
            key: key.to_string(),
            recurse,
            cas,
        };
        Ok(self.write(cmd).await?.applied)
    }

    async fn wait_for_change(&self, topic: &Topic, index: u64, wait: Duration) -> Result<u64> {
        let q = QueryOptions::blocking(index.max(1), wait);
        let read = |s: &State| (topic_index(s, topic), ());
        Ok(self.block(std::slice::from_ref(topic), q, read).await.index)
    }

    async fn subscribe(&self, req: StreamRequest) -> Result<crate::catalog::Subscription> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(follow(self.shared.clone(), req, tx));
        Ok(rx)
    }
}

/// Events buffered between the registry and a slow stream consumer.
const STREAM_BUFFER: usize = 1024;

/// Sends `tx` the events from `req.index` on, then after every commit the
/// changes since the last one sent, until the receiver is dropped. A slow
/// consumer does not slow the writer: it catches up from the change log
/// (or gets a snapshot when it fell behind the log).
async fn follow(
    shared: Arc<Shared>,
    mut req: StreamRequest,
    tx: mpsc::Sender<Result<StreamEvent>>,
) {
    // Subscribed before the first read, so no commit slips between.
    let mut commits = shared.hub.subscribe(&Topic::Any);
    let mut first = true;
    loop {
        let snapshot = shared.current.load_full();
        if first || snapshot.index() != req.index {
            first = false;
            for event in crate::stream::events_since(&snapshot, &req) {
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            req.index = snapshot.index();
        }
        drop(snapshot);
        tokio::select! {
            changed = commits.changed() => if changed.is_err() { return },
            _ = tx.closed() => return,
        }
    }
}

/// The index a reader of `topic` sees in `s`.
pub fn topic_index(s: &State, topic: &Topic) -> u64 {
    match topic {
        Topic::Any => s.index(),
        Topic::Services => s.table_indexes().services,
        Topic::Service(name) => s.service_index(name),
        Topic::Nodes => s.table_indexes().nodes,
        Topic::Node(name) => s.node_index(name),
        Topic::Checks => s.table_indexes().checks,
        Topic::KvPrefix(p) => s.kv_list(p).0,
        Topic::Sessions => s.table_indexes().sessions,
        Topic::Queries => s.table_indexes().queries,
        Topic::Acl => s.table_indexes().acl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Node, Service};
    use crate::store::RedbStore;

    fn reg(node: &str, id: &str, name: &str) -> Registration {
        Registration {
            node: Node {
                name: node.into(),
                address: "127.0.0.1".into(),
                ..Default::default()
            },
            service: Some(Service {
                id: id.into(),
                name: name.into(),
                port: 1,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn concurrent_writes_get_distinct_indexes() {
        let r = Registry::in_memory();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let r = r.clone();
            tasks
                .spawn(async move { r.register(reg("n", &format!("w{i}"), "web")).await.unwrap() });
        }
        let mut idx: Vec<u64> = tasks.join_all().await;
        idx.sort();
        idx.dedup();
        assert_eq!(idx.len(), 200);
        assert_eq!(r.snapshot().index(), 200);
    }

    #[tokio::test]
    async fn redb_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let r = Registry::open(Box::new(RedbStore::open(dir.path()).unwrap())).unwrap();
            r.register(reg("n", "w1", "web")).await.unwrap();
            r.kv_put("a/b", Bytes::from_static(b"hello"), 3, None)
                .await
                .unwrap();
            r.shutdown().await;
        }
        let r = Registry::open(Box::new(RedbStore::open(dir.path()).unwrap())).unwrap();
        let s = r.snapshot();
        assert_eq!(s.index(), 2);
        assert_eq!(s.service_entries("web").1.len(), 1);
        let kv = s.kv_get("a/b").1.unwrap();
        assert_eq!((kv.value.as_ref(), kv.flags), (&b"hello"[..], 3));
        // The index keeps counting from where it was.
        assert_eq!(
            r.kv_put("c", Bytes::new(), 0, None)
                .await
                .map(|_| r.snapshot().index())
                .unwrap(),
            3
        );
    }

    #[tokio::test]
    async fn blocking_read_wakes_only_for_its_service() {
        let r = Registry::in_memory();
        let idx = r.register(reg("n", "w1", "web")).await.unwrap();
        let watcher = {
            let r = r.clone();
            tokio::spawn(async move {
                let q = QueryOptions::blocking(idx, Duration::from_secs(30));
                r.instances("web", &InstanceFilter::default(), q)
                    .await
                    .unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        r.register(reg("n", "d1", "db")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !watcher.is_finished(),
            "a change to db must not wake a watcher of web"
        );
        r.register(reg("n", "w2", "web")).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), watcher)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.value.len(), 2);
        assert!(got.index > idx);
    }

    #[tokio::test]
    async fn blocking_read_returns_at_wait() {
        let r = Registry::in_memory();
        let idx = r.register(reg("n", "w1", "web")).await.unwrap();
        let start = Instant::now();
        let q = QueryOptions::blocking(idx, Duration::from_millis(200));
        let got = r
            .instances("web", &InstanceFilter::default(), q)
            .await
            .unwrap();
        assert_eq!(got.index, idx);
        assert!(start.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn writes_after_shutdown_are_refused() {
        let r = Registry::in_memory();
        r.shutdown().await;
        assert!(matches!(
            r.register(reg("n", "w", "web")).await,
            Err(Error::Closed)
        ));
    }
}
