//! Several shoal servers on one etcd: who is alive, who leads, and agents'
//! heartbeats seen by all.
//!
//! - Each server keeps `PREFIX/servers/NODE` (its HTTP address) alive on
//!   an etcd lease: when it dies the key goes with the lease. The live
//!   server whose key is oldest (lowest create revision) is the leader;
//!   `/v1/status/leader` and `/v1/status/peers` report these keys.
//! - Only the leader reaps: agents whose heartbeat stopped, and the
//!   `consul` service of servers that are gone. A new leader gives every
//!   node one full TTL first, so a leader change reaps nothing by itself.
//! - A heartbeat (an agent's re-registration that changes nothing, so no
//!   catalog write) received by any server is written to
//!   `PREFIX/beats/NODE\0CHECK` (at most once a second per check and
//!   server); every server watches those keys and records the beats.

use super::client::{enc, prefix_end, EtcdClient};
use arc_swap::ArcSwap;
use serde_json::json;
use shoal_catalog::{Catalog, Registry};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The lease of a server's key: how long a dead server stays listed.
const LEASE_TTL: u64 = 5;
/// How often the lease is refreshed and the member list read.
const TICK: Duration = Duration::from_secs(1);
/// Least time between two writes of one check's heartbeat by one server.
const BEAT_EVERY: Duration = Duration::from_secs(1);
/// The service every server registers on its own node, as Consul does.
pub const SERVER_SERVICE: &str = "consul";

/// The live servers, as last read from etcd.
#[derive(Clone, Debug, Default)]
pub struct Members {
    /// HTTP address (`IP:PORT`) of every live server, oldest first.
    pub addresses: Vec<String>,
    /// Node names, in the same order.
    pub nodes: Vec<String>,
    /// Whether this server is the oldest, i.e. the leader.
    pub leading: bool,
    /// Whether etcd answered the last read.
    pub known: bool,
}

/// This server's membership in the cluster.
pub struct Cluster {
    client: Arc<EtcdClient>,
    prefix: String,
    node: String,
    address: String,
    members: ArcSwap<Members>,
}

impl Cluster {
    pub fn new(client: Arc<EtcdClient>, prefix: &str, node: &str, address: &str) -> Arc<Cluster> {
        Arc::new(Cluster {
            client,
            prefix: prefix.to_string(),
            node: node.to_string(),
            address: address.to_string(),
            members: ArcSwap::from_pointee(Members::default()),
        })
    }

    pub fn members(&self) -> Arc<Members> {
        self.members.load_full()
    }

    fn servers_prefix(&self) -> Vec<u8> {
        format!("{}servers/", self.prefix).into_bytes()
    }

    fn beats_prefix(&self) -> Vec<u8> {
        format!("{}beats/", self.prefix).into_bytes()
    }

    /// Keeps this server's key alive and the member list fresh.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut lease = None;
        let key = [self.servers_prefix(), self.node.as_bytes().to_vec()].concat();
        let value = json!({"Node": self.node, "Address": self.address}).to_string();
        loop {
            if lease.is_none() {
                lease = self.join(&key, &value).await;
            } else if let Some(id) = lease {
                match self.client.lease_keepalive(id).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("this server's etcd lease expired; joining again");
                        lease = None;
                        continue;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot refresh this server's etcd lease"),
                }
            }
            self.refresh().await;
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
        // Leave at once on a clean shutdown instead of after the lease TTL.
        if let Some(id) = lease {
            let _ = self
                .client
                .call("/v3/lease/revoke", &json!({"ID": id.to_string()}), false)
                .await;
        }
    }

    async fn join(&self, key: &[u8], value: &str) -> Option<u64> {
        let id = match self.client.lease_grant(LEASE_TTL).await {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "cannot get an etcd lease for this server");
                return None;
            }
        };
        let put = json!({"key": enc(key), "value": enc(value.as_bytes()), "lease": id.to_string()});
        match self.client.call("/v3/kv/put", &put, false).await {
            Ok(_) => Some(id),
            Err(e) => {
                tracing::warn!(error = %e, "cannot register this server in etcd");
                None
            }
        }
    }

    async fn refresh(&self) {
        let prefix = self.servers_prefix();
        let members = match self.client.range(&prefix, Some(&prefix_end(&prefix))).await {
            Ok(r) => {
                let mut live: Vec<(u64, String, String)> = r
                    .kvs
                    .iter()
                    .filter_map(|kv| {
                        let v: serde_json::Value = serde_json::from_slice(&kv.value).ok()?;
                        Some((
                            kv.create_revision,
                            v["Node"].as_str()?.to_string(),
                            v["Address"].as_str()?.to_string(),
                        ))
                    })
                    .collect();
                live.sort();
                Members {
                    leading: live.first().is_some_and(|(_, n, _)| *n == self.node),
                    nodes: live.iter().map(|(_, n, _)| n.clone()).collect(),
                    addresses: live.into_iter().map(|(_, _, a)| a).collect(),
                    known: true,
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the server list from etcd");
                Members::default()
            }
        };
        self.members.store(Arc::new(members));
    }

    /// Runs `reaper` while this server leads, stopping it when it does not.
    pub async fn while_leading<F, Fut>(self: Arc<Self>, cancel: CancellationToken, reaper: F)
    where
        F: Fn(CancellationToken) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        loop {
            while !self.members().leading {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
            tracing::info!(node = %self.node, "this server leads: it reaps dead agents");
            let term = cancel.child_token();
            let task = tokio::spawn(reaper(term.clone()));
            while self.members().leading && !cancel.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            term.cancel();
            let _ = task.await;
            if cancel.is_cancelled() {
                return;
            }
            tracing::info!(node = %self.node, "this server no longer leads");
        }
    }

    /// On the leader: removes the `consul` service of servers that left.
    pub async fn reap_servers(self: Arc<Self>, registry: Arc<Registry>, cancel: CancellationToken) {
        let started = Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            let members = self.members();
            // A new leader first lets every server's lease be read once more.
            if !members.known || started.elapsed() < Duration::from_secs(LEASE_TTL) {
                continue;
            }
            let snapshot = registry.snapshot();
            let (_, entries) = snapshot.service_entries(SERVER_SERVICE);
            for e in entries {
                if !members.nodes.contains(&e.node.name) {
                    tracing::warn!(node = %e.node.name, "server left the cluster: its consul service goes");
                    let _ = registry
                        .deregister_service(&e.node.name, &e.service.id)
                        .await;
                }
            }
        }
    }

    /// Passes this server's heartbeats on to the others (see the module doc).
    pub fn share_beats(self: &Arc<Self>, registry: &Arc<Registry>, cancel: CancellationToken) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
        registry
            .heartbeats()
            .forward_to(Box::new(move |node, check| {
                let _ = tx.send((node.to_string(), check.to_string()));
            }));
        let me = self.clone();
        let writer_cancel = cancel.clone();
        tokio::spawn(async move {
            let mut written: HashMap<(String, String), Instant> = HashMap::new();
            loop {
                let beat = tokio::select! {
                    _ = writer_cancel.cancelled() => return,
                    b = rx.recv() => match b { Some(b) => b, None => return },
                };
                if written.get(&beat).is_some_and(|t| t.elapsed() < BEAT_EVERY) {
                    continue;
                }
                let key = [
                    me.beats_prefix(),
                    format!("{}\0{}", beat.0, beat.1).into_bytes(),
                ]
                .concat();
                let put = json!({"key": enc(&key), "value": ""});
                if me.client.call("/v3/kv/put", &put, false).await.is_ok() {
                    written.insert(beat, Instant::now());
                }
                if written.len() > 100_000 {
                    written.retain(|_, t| t.elapsed() < BEAT_EVERY);
                }
            }
        });
        let me = self.clone();
        let registry = registry.clone();
        tokio::spawn(async move {
            let prefix = me.beats_prefix();
            let end = prefix_end(&prefix);
            loop {
                // From now on: beats older than this moment do not matter.
                let from = match me.client.range(&prefix, None).await {
                    Ok(r) => r.header.revision + 1,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                let Ok(mut stream) = me.client.watch(&prefix, &end, from).await else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                };
                loop {
                    let next = tokio::select! {
                        _ = cancel.cancelled() => return,
                        n = stream.next() => n,
                    };
                    let Ok(result) = next else { break };
                    if result.canceled {
                        break;
                    }
                    for ev in result.events {
                        let Some(rest) = ev.kv.key.strip_prefix(prefix.as_slice()) else {
                            continue;
                        };
                        let rest = String::from_utf8_lossy(rest);
                        if let Some((node, check)) = rest.split_once('\0') {
                            registry.heartbeats().beat_seen(node, check);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
}

impl shoal_api::ServerSet for Cluster {
    fn leader(&self) -> Option<String> {
        let members = self.members();
        members.known.then(|| members.addresses.first().cloned())?
    }

    fn peers(&self) -> Vec<String> {
        self.members().addresses.clone()
    }
}
