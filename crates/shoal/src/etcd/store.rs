//! The catalog on etcd: the catalog's records (the same ones the embedded
//! store keeps) under `PREFIX/db/`, one etcd transaction per batch, guarded
//! by the mod revision of the `m/index` record that every commit writes
//! (so a commit succeeds only on the latest state: one winner of any race
//! between servers), and a watch of `PREFIX/db/` that hands every commit
//! to the registry in revision order.
//!
//! The store's position is that mod revision: loading reads it with the
//! records (one linearizable range, one revision), the watch resumes after
//! it, and a `?consistent` read waits until the view reaches it.

use super::client::{prefix_end, EtcdClient, EtcdError, Event};
use serde_json::json;
use shoal_catalog::{
    Error, FollowEvent, FollowSink, Followed, Guarded, Mutation, Result, SharedStore, State,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

/// The record every commit writes.
const INDEX_RECORD: &str = "m/index";
/// Present while a commit too large for one etcd transaction is being
/// written in parts (see `parts.rs`).
pub(super) const PARTS_RECORD: &str = "m/parts";
/// How often the follower checks that etcd answers with quorum.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Probes in a row that find the watch behind etcd before it is reopened.
const STUCK_PROBES: u32 = 3;

/// The catalog's records in an etcd cluster.
pub struct EtcdStore {
    client: Arc<EtcdClient>,
    /// `PREFIX/db/`.
    records: Vec<u8>,
    runtime: Handle,
}

pub(super) fn storage(e: EtcdError) -> Error {
    Error::Storage(e.to_string())
}

impl EtcdStore {
    /// A store under `prefix` (e.g. `/shoal/`). Its blocking calls run on
    /// `runtime`; make them from outside it.
    pub fn new(client: Arc<EtcdClient>, prefix: &str, runtime: Handle) -> EtcdStore {
        EtcdStore {
            client,
            records: format!("{prefix}db/").into_bytes(),
            runtime,
        }
    }

    fn key(&self, record: &str) -> Vec<u8> {
        let mut k = self.records.clone();
        k.extend_from_slice(record.as_bytes());
        k
    }

    fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }
}

/// Loads every record: the state and its position.
async fn load(client: &EtcdClient, records: &[u8]) -> Result<(State, u64)> {
    let r = client
        .range(records, Some(&prefix_end(records)))
        .await
        .map_err(storage)?;
    let mut position = 0;
    let mut raw = Vec::with_capacity(r.kvs.len());
    for kv in &r.kvs {
        let Some(record) = kv
            .key
            .strip_prefix(records)
            .and_then(|k| std::str::from_utf8(k).ok())
        else {
            continue;
        };
        if record == INDEX_RECORD {
            position = kv.mod_revision;
        }
        if record == PARTS_RECORD {
            return Err(super::parts::half_written(&kv.value));
        }
        raw.push((record, kv.value.as_slice()));
    }
    let state = State::from_records(raw)?;
    Ok((state, position))
}

async fn position(client: &EtcdClient, index_key: &[u8]) -> Result<u64> {
    let r = client.range(index_key, None).await.map_err(storage)?;
    Ok(r.kvs.first().map_or(0, |kv| kv.mod_revision))
}

/// A commit etcd did not take: said as Consul says it when the cluster
/// has no leader, since that is what it means for the client.
pub(super) fn commit_failed(e: EtcdError) -> Error {
    match &e {
        EtcdError::Unavailable(_) => Error::Storage(format!(
            "No cluster leader: etcd did not confirm the write ({e}); it may or may not be applied"
        )),
        EtcdError::Refused(m) if m.contains("leader") || m.contains("timed out") => {
            Error::Storage(format!("No cluster leader: {e}"))
        }
        EtcdError::Refused(m) if m.contains("too many operations") || m.contains("too large") => {
            Error::Storage(format!(
                "{e} (shoal writes at most {} operations and {} KiB per etcd transaction, \
                 within etcd's defaults: this etcd's --max-txn-ops or --max-request-bytes is lower)",
                super::parts::MAX_OPS,
                super::parts::MAX_BYTES / 1024
            ))
        }
        _ => Error::Storage(e.to_string()),
    }
}

impl SharedStore for EtcdStore {
    fn load(&self) -> Result<(State, u64)> {
        self.block_on(load(&self.client, &self.records))
    }

    fn commit(&self, base: u64, mutations: &[Mutation]) -> Result<Guarded> {
        if !mutations.iter().any(|m| m.key == INDEX_RECORD) {
            return Err(Error::Storage(
                "internal: a commit must write the index record".into(),
            ));
        }
        if super::parts::too_large(mutations) {
            return self.block_on(super::parts::commit(
                &self.client,
                &self.records,
                base,
                mutations,
            ));
        }
        let index_key = self.key(INDEX_RECORD);
        let ops: Vec<_> = mutations
            .iter()
            .map(|m| match &m.value {
                Some(v) => json!({"request_put": {
                    "key": super::client::enc(&self.key(&m.key)),
                    "value": super::client::enc(v),
                }}),
                None => json!({"request_delete_range": {
                    "key": super::client::enc(&self.key(&m.key)),
                }}),
            })
            .collect();
        let body = json!({
            "compare": [{
                "target": "MOD", "result": "EQUAL",
                "key": super::client::enc(&index_key),
                "mod_revision": base.to_string(),
            }],
            "success": ops,
            "failure": [
                {"request_range": {"key": super::client::enc(&index_key)}},
                {"request_range": {"key": super::client::enc(&self.key(PARTS_RECORD))}},
            ],
        });
        let (succeeded, revision, raw) = self
            .block_on(self.client.txn(&body))
            .map_err(commit_failed)?;
        if succeeded {
            return Ok(Guarded::Committed(revision));
        }
        if let Some(parts) = raw["responses"][1]["response_range"]["kvs"][0]["value"].as_str() {
            // Catching up cannot help: no view moves on until it is done.
            return Err(super::parts::in_the_way(parts));
        }
        let head = raw["responses"][0]["response_range"]["kvs"][0]["mod_revision"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(revision);
        Ok(Guarded::Behind(head))
    }

    fn position(&self) -> Result<u64> {
        self.block_on(position(&self.client, &self.key(INDEX_RECORD)))
    }

    fn follow(&self, from: u64, sink: FollowSink) {
        let follower = Follower {
            client: self.client.clone(),
            records: self.records.clone(),
            seen: Arc::new(AtomicU64::new(from)),
            sink: Arc::new(sink),
            stuck: Arc::new(tokio::sync::Notify::new()),
            holding: Arc::default(),
        };
        self.runtime.spawn(follower.clone().probe());
        self.runtime.spawn(follower.watch());
    }
}

#[derive(Clone)]
struct Follower {
    client: Arc<EtcdClient>,
    records: Vec<u8>,
    /// The position of the last commit handed to the registry.
    seen: Arc<AtomicU64>,
    sink: Arc<FollowSink>,
    /// Told when the watch seems stuck (etcd is ahead of it).
    stuck: Arc<tokio::sync::Notify>,
    /// Whether the watch holds parts of a commit written in parts: etcd
    /// is ahead of `seen` then on purpose, the watch is not stuck.
    holding: Arc<std::sync::atomic::AtomicBool>,
}

impl Follower {
    /// Follows `PREFIX/db/` from `seen + 1` until the registry is gone,
    /// reopening the watch on another member after any failure, and
    /// loading everything again when etcd compacted what it needs.
    async fn watch(self) {
        let end = prefix_end(&self.records);
        loop {
            let from = self.seen.load(Ordering::Acquire) + 1;
            let mut stream = match self.client.watch(&self.records, &end, from).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "etcd watch cannot start; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            };
            // Parts of a commit written in parts, held until its last one
            // (the watch starts before its first part again if it breaks).
            let mut partial = super::parts::Partial::default();
            self.holding.store(false, Ordering::Release);
            loop {
                let next = tokio::select! {
                    n = stream.next() => n,
                    _ = self.stuck.notified() => {
                        tracing::warn!(endpoint = %stream.endpoint, "etcd watch is behind; reopening it on another member");
                        self.client.rotate();
                        break;
                    }
                };
                let result = match next {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, endpoint = %stream.endpoint, "etcd watch broke; reopening it");
                        self.client.rotate();
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        break;
                    }
                };
                if result.canceled {
                    if result.compact_revision > 0 {
                        tracing::warn!(
                            compacted = result.compact_revision,
                            needed = from,
                            "etcd compacted revisions this server still needed; loading the catalog again"
                        );
                        if !self.reload().await {
                            return;
                        }
                    } else {
                        tracing::warn!(reason = %result.cancel_reason, "etcd cancelled the watch; reopening it");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    break;
                }
                if result.events.is_empty() {
                    continue;
                }
                let commits = partial.take_whole(self.group(result.events));
                self.holding.store(partial.holding(), Ordering::Release);
                if commits.is_empty() {
                    continue;
                }
                let last = commits.last().map_or(0, |c| c.position);
                if !(self.sink)(FollowEvent::Commits(commits)).await {
                    return;
                }
                self.seen.fetch_max(last, Ordering::AcqRel);
            }
        }
    }

    /// Loads the whole catalog and hands it over; `false` once the
    /// registry is gone.
    async fn reload(&self) -> bool {
        loop {
            match load(&self.client, &self.records).await {
                Ok((state, position)) => {
                    self.seen.store(position, Ordering::Release);
                    return (self.sink)(FollowEvent::Reload(Box::new(state), position)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot load the catalog from etcd; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Events in revision order, one commit per revision.
    fn group(&self, events: Vec<Event>) -> Vec<Followed> {
        let mut out: Vec<Followed> = Vec::new();
        for ev in events {
            let Some(record) = ev
                .kv
                .key
                .strip_prefix(self.records.as_slice())
                .and_then(|k| std::str::from_utf8(k).ok())
            else {
                continue;
            };
            let mutation = Mutation {
                key: record.to_string(),
                value: (!ev.is_delete()).then(|| ev.kv.value.clone()),
            };
            match out.last_mut() {
                Some(c) if c.position == ev.kv.mod_revision => c.mutations.push(mutation),
                _ => out.push(Followed {
                    position: ev.kv.mod_revision,
                    mutations: vec![mutation],
                }),
            }
        }
        out
    }

    /// Every second: does etcd answer with quorum (the API's
    /// `X-Consul-KnownLeader`), and is the watch keeping up?
    async fn probe(self) {
        let index_key = {
            let mut k = self.records.clone();
            k.extend_from_slice(INDEX_RECORD.as_bytes());
            k
        };
        let mut behind = 0;
        loop {
            tokio::time::sleep(PROBE_EVERY).await;
            let outcome = position(&self.client, &index_key).await;
            let health = match &outcome {
                Ok(head) => {
                    if *head > self.seen.load(Ordering::Acquire)
                        && !self.holding.load(Ordering::Acquire)
                    {
                        behind += 1;
                        if behind >= STUCK_PROBES {
                            behind = 0;
                            self.stuck.notify_one();
                        }
                    } else {
                        behind = 0;
                    }
                    Ok(())
                }
                Err(e) => Err(e.clone()),
            };
            if !(self.sink)(FollowEvent::Health(health)).await {
                return;
            }
        }
    }
}
