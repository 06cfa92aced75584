//! Several shoal servers on one etcd: who is alive, who leads, and agents'
//! heartbeats seen by all.
//!
//! - Each server keeps `PREFIX/servers/NODE` (its HTTP address) alive on
//!   an etcd lease: when it dies the key goes with the lease. The live
//!   server whose key is oldest (lowest create revision) is the leader;
//!   `/v1/status/leader` and `/v1/status/peers` report these keys.
//! - Only the leader reaps: agents whose heartbeat stopped, the `consul`
//!   service of servers that are gone, and sessions whose TTL ran out. A
//!   new leader gives every node and session one full TTL first, so a
//!   leader change reaps nothing by itself. Session renewals reach it
//!   through etcd (see `renewals.rs`).
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

/// How long after the last member list etcd answered a leader goes on
/// leading while the list cannot be read. Its own key was kept alive just
/// before that read, on a lease of [`LEASE_TTL`]: no other server can be
/// the oldest live one before the lease runs out, so a moment's trouble
/// reading etcd (a slow disk, an election) does not stop and restart what
/// the leader runs (session timers start again from a full TTL then).
const STALE_LEADING: Duration = Duration::from_secs(LEASE_TTL - 2);

/// The live servers, as last read from etcd.
#[derive(Clone, Debug, Default)]
pub struct Members {
    /// HTTP address (`IP:PORT`) of every live server, oldest first.
    pub addresses: Vec<String>,
    /// Node names, in the same order.
    pub nodes: Vec<String>,
    /// Whether this server was the oldest, i.e. the leader, in the last
    /// list read ([`Members::leads`] says whether it still is).
    pub leading: bool,
    /// Whether etcd answered the last read. When it did not, the lists
    /// above are the last it answered.
    pub known: bool,
    /// When the last read that etcd answered was sent: it lists every
    /// server whose key existed then, and says nothing about later ones.
    pub read_at: Option<Instant>,
}

impl Members {
    /// Whether this server leads: as the last list says, while it is
    /// fresh or was read within [`STALE_LEADING`].
    pub fn leads(&self) -> bool {
        self.leading && (self.known || self.read_at.is_some_and(|at| at.elapsed() < STALE_LEADING))
    }

    /// The server to send writes to: `None` when this one leads (or may,
    /// the list being too old to say) or no list was ever read. While
    /// etcd cannot be read, the last leader seen: if it is gone, the
    /// write finds that out by not getting through.
    pub fn leader_elsewhere(&self) -> Option<&str> {
        if self.leading {
            return None;
        }
        self.addresses.first().map(String::as_str)
    }
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

    /// The etcd client this server's membership uses.
    pub fn client(&self) -> Arc<EtcdClient> {
        self.client.clone()
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

    fn server_key(&self) -> (Vec<u8>, String) {
        let key = [self.servers_prefix(), self.node.as_bytes().to_vec()].concat();
        let value = json!({"Node": self.node, "Address": self.address}).to_string();
        (key, value)
    }

    /// Puts this server's key in etcd now, on a new lease (hand it to
    /// [`Cluster::run`]). Done before this server registers its `consul`
    /// service, so that a member list read after the service appeared
    /// always lists a live server (see [`SeenServers`]).
    pub async fn join_now(&self) -> Option<u64> {
        let (key, value) = self.server_key();
        let lease = self.join(&key, &value).await;
        self.refresh().await;
        lease
    }

    /// Keeps this server's key alive (on `lease`, from
    /// [`Cluster::join_now`], or a new one) and the member list fresh.
    pub async fn run(self: Arc<Self>, mut lease: Option<u64>, cancel: CancellationToken) {
        let (key, value) = self.server_key();
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
        let sent = Instant::now();
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
                    read_at: Some(sent),
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the server list from etcd");
                Members {
                    known: false,
                    ..(*self.members()).clone()
                }
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
            while !self.members().leads() {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
            tracing::info!(node = %self.node, "this server leads: it reaps dead agents and expires sessions");
            let term = cancel.child_token();
            let task = tokio::spawn(reaper(term.clone()));
            while self.members().leads() && !cancel.is_cancelled() {
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
        let mut seen = SeenServers::default();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            // A new leader first lets every server's lease be read once more.
            if started.elapsed() < Duration::from_secs(LEASE_TTL) {
                continue;
            }
            let snapshot = registry.snapshot();
            let (_, entries) = snapshot.service_entries(SERVER_SERVICE);
            let listed: Vec<(String, String)> = entries
                .iter()
                .map(|e| (e.node.name.clone(), e.service.id.clone()))
                .collect();
            for (node, service_id) in seen.gone(&listed, &self.members(), Instant::now()) {
                tracing::warn!(node = %node, "server left the cluster: its consul service goes");
                let _ = registry.deregister_service(&node, &service_id).await;
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

/// Which servers listed in the catalog have left, judged only on member
/// lists read after the reaper first saw each server's `consul` service.
///
/// A member list is a read of etcd at one moment: a server that joined
/// after it is missing from it without being gone. While etcd has no
/// quorum, reads hang and the last list answered grows old; the catalog,
/// meanwhile, may already show a server that joined after that list was
/// read (as the quorum-lost test once saw: the leader removed the other,
/// live, server's `consul` service). A server registers its `consul`
/// service only after its own key is in etcd, so a list read after its
/// service was seen lists it for as long as it lives.
#[derive(Debug, Default)]
struct SeenServers {
    /// Node → when its `consul` service was first seen by this reaper.
    since: HashMap<String, Instant>,
}

impl SeenServers {
    /// The `(node, service ID)` entries of `listed` whose server is not a
    /// member according to a list read after their service was seen.
    fn gone(
        &mut self,
        listed: &[(String, String)],
        members: &Members,
        now: Instant,
    ) -> Vec<(String, String)> {
        self.since
            .retain(|node, _| listed.iter().any(|(n, _)| n == node));
        for (node, _) in listed {
            self.since.entry(node.clone()).or_insert(now);
        }
        let Some(read_at) = members.read_at.filter(|_| members.known) else {
            return Vec::new();
        };
        listed
            .iter()
            .filter(|(node, _)| {
                !members.nodes.contains(node) && self.since.get(node).is_some_and(|s| *s < read_at)
            })
            .cloned()
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn members(nodes: &[&str], read_at: Option<Instant>) -> Members {
        Members {
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            known: read_at.is_some(),
            read_at,
            ..Default::default()
        }
    }

    #[test]
    fn only_a_list_read_after_a_server_was_seen_can_say_it_left() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let both = vec![
            ("a".to_string(), "consul".to_string()),
            ("b".to_string(), "consul".to_string()),
        ];
        // (member list, time the reaper looks, expected gone)
        let cases: Vec<(Members, Instant, Vec<&str>)> = vec![
            // The list was read before B's service appeared (B joined
            // later; etcd lost quorum, so no newer read): B stays.
            (members(&["a"], Some(t0)), s(10), vec![]),
            // No answer from etcd: nobody goes.
            (members(&[], None), s(11), vec![]),
            // A list read after B was seen, without B: B left.
            (members(&["a"], Some(s(12))), s(13), vec!["b"]),
            // Back in a fresh list: stays.
            (members(&["a", "b"], Some(s(14))), s(15), vec![]),
        ];
        let mut seen = SeenServers::default();
        // The reaper sees both services first at t0 + 1 s.
        assert!(seen
            .gone(&both, &members(&["a"], Some(t0)), s(1))
            .is_empty());
        for (i, (m, now, want)) in cases.into_iter().enumerate() {
            let got: Vec<String> = seen
                .gone(&both, &m, now)
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn a_list_etcd_cannot_refresh_keeps_its_leader_for_a_while() {
        let listed = |leading: bool, known: bool, age: Duration| Members {
            addresses: vec!["10.0.0.1:8500".into(), "10.0.0.2:8500".into()],
            nodes: vec!["a".into(), "b".into()],
            leading,
            known,
            read_at: Instant::now().checked_sub(age),
        };
        let fresh = Duration::from_millis(100);
        let old = STALE_LEADING + Duration::from_secs(1);
        // The leader: leads on a fresh list, on a stale one read a moment
        // ago (its lease cannot have run out), not on an old stale one.
        assert!(listed(true, true, fresh).leads());
        assert!(listed(true, false, fresh).leads());
        assert!(!listed(true, false, old).leads());
        // It never forwards, even when it no longer knows it leads.
        assert_eq!(listed(true, false, old).leader_elsewhere(), None);
        // A follower forwards to the last leader it read, fresh or not.
        for (known, age) in [(true, fresh), (false, fresh), (false, old)] {
            let m = listed(false, known, age);
            assert!(!m.leads());
            assert_eq!(m.leader_elsewhere(), Some("10.0.0.1:8500"));
        }
        // Nothing read yet: no leader, nothing to forward to.
        assert!(!Members::default().leads());
        assert_eq!(Members::default().leader_elsewhere(), None);
    }

    #[test]
    fn a_server_seen_again_is_judged_from_then_on() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let b = vec![("b".to_string(), "consul".to_string())];
        let mut seen = SeenServers::default();
        assert!(seen.gone(&b, &members(&[], Some(t0)), s(1)).is_empty());
        assert_eq!(seen.gone(&b, &members(&[], Some(s(2))), s(3)).len(), 1);
        // B's service went at s(4) and came back at s(5): the list read
        // at s(4) says nothing about the new one; a later list does.
        assert!(seen.gone(&[], &members(&[], Some(s(4))), s(4)).is_empty());
        assert!(seen.gone(&b, &members(&[], Some(s(4))), s(5)).is_empty());
        assert_eq!(seen.gone(&b, &members(&[], Some(s(6))), s(7)).len(), 1);
    }
}
