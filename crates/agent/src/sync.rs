//! Anti-entropy: the agent's local state (this host's node, its instances
//! and their checks, in an in-process registry) is the truth; the server's
//! catalog is brought back in line with it whenever either side changes,
//! and at least once per heartbeat. Pushing the node is the heartbeat: its
//! liveness check carries a TTL the server enforces.

use shoal_catalog::{
    blocking::next_index, Catalog, Check, CheckChange, CheckDefinition, HealthStatus, Node,
    NodeContents, QueryOptions, Registration, Registry, Service, State, Topic, NODE_HEALTH_CHECK,
};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What to sync and how often.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// This host's node, in the local registry and in the catalog.
    pub node: String,
    /// How long the server waits for a heartbeat before it removes this
    /// node; the agent beats three times per TTL.
    pub heartbeat_ttl: Duration,
    /// Remove this node from the catalog when the agent stops cleanly.
    pub leave_on_stop: bool,
}

/// Keeps a remote catalog in line with a local registry; see the module doc.
pub struct AntiEntropy {
    local: Arc<Registry>,
    remote: Arc<dyn Catalog>,
    config: SyncConfig,
}

/// How often the agent compares everything even when nothing seems to
/// have changed (a write lost without a trace, say).
const FULL_SYNC: Duration = Duration::from_secs(60);

/// How long after writes that may have interleaved with someone else's
/// the agent compares everything (one comparison covers every such write
/// meanwhile, so a busy server costs one full read per this period).
const VERIFY_AFTER: Duration = Duration::from_secs(1);

/// What this agent's writes of one round say about the server's node.
#[derive(Debug, PartialEq, Eq)]
enum OwnWrites {
    /// No index known (a Consul server answers writes without one), or
    /// no write: the next change seen is compared in full.
    Unknown,
    /// The writes were the only commits after the index last seen, up to
    /// this one: nothing else can have changed the node meanwhile.
    Alone(u64),
    /// Other commits came between (on any node): the node may have been
    /// changed by someone else.
    Interleaved(u64),
}

/// Classifies the indexes `own` this agent's writes answered with, in
/// order, after the node was last seen at `seen`. A write that changed
/// nothing answers the index current then (not above what it follows).
fn own_writes_follow(seen: u64, own: &[u64]) -> OwnWrites {
    if own.is_empty() || own.contains(&0) {
        return OwnWrites::Unknown;
    }
    let mut at = seen;
    let mut alone = true;
    for &w in own {
        if w <= at {
            // Changed nothing, unless the index is older than the last
            // seen (a restarted server): then nothing can be concluded.
            if w < seen {
                return OwnWrites::Unknown;
            }
            continue;
        }
        alone &= w == at + 1;
        at = w;
    }
    if at == seen {
        // Nothing written changed anything: the node is as last seen.
        return OwnWrites::Alone(seen);
    }
    if alone {
        OwnWrites::Alone(at)
    } else {
        OwnWrites::Interleaved(at)
    }
}

/// One write that brings the catalog in line.
#[derive(Debug, Clone)]
enum Action {
    /// The node with its node-level checks (the liveness check included).
    Node(Box<Registration>),
    /// One instance with its checks, by instance ID: the registration is
    /// built from the local snapshot when it is sent (see
    /// [`instance_registration`]), so a plan of 10,000 instances holds
    /// their IDs, not a copy of each with its node and checks.
    Service(String),
    DeregisterService(String),
    DeregisterCheck(String),
}

/// A service as compared: without the indexes the catalog assigns.
fn comparable_service(s: &Service) -> Service {
    Service {
        create_index: 0,
        modify_index: 0,
        ..s.clone()
    }
}

/// A check as compared: what the agent decides, not what the catalog fills in.
fn comparable_check(c: &Check) -> Check {
    Check {
        check_id: c.check_id.clone(),
        name: c.name.clone(),
        status: c.status,
        notes: c.notes.clone(),
        output: c.output.clone(),
        service_id: c.service_id.clone(),
        definition: c.definition.clone(),
        ..Default::default()
    }
}

/// Whether two checks agree on what the agent decides.
fn same_check(a: &Check, b: &Check) -> bool {
    a.check_id == b.check_id
        && a.name == b.name
        && a.status == b.status
        && a.notes == b.notes
        && a.output == b.output
        && a.service_id == b.service_id
        && a.definition == b.definition
}

/// Whether two lists sorted by check ID agree check by check.
fn same_checks(a: &[&Check], b: &[&Check]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_check(x, y))
}

/// Whether two instances agree, the catalog's indexes aside.
fn same_service(a: &Service, b: &Service) -> bool {
    comparable_service(a) == comparable_service(b)
}

/// A node's checks grouped by instance (`""`: node checks) and sorted by
/// ID, borrowed: a full comparison of thousands of instances should not
/// copy them all.
fn by_service(contents: &NodeContents) -> HashMap<&str, Vec<&Check>> {
    let mut groups: HashMap<&str, Vec<&Check>> = HashMap::new();
    for c in &contents.checks {
        groups.entry(c.service_id.as_str()).or_default().push(c);
    }
    for list in groups.values_mut() {
        list.sort_by(|a, b| a.check_id.cmp(&b.check_id));
    }
    groups
}

/// The liveness check the agent keeps alive on its node.
fn alive_check(ttl: Duration) -> Check {
    Check {
        check_id: NODE_HEALTH_CHECK.into(),
        name: "Serf Health Status".into(),
        status: HealthStatus::Passing,
        output: "Agent alive and reachable".into(),
        definition: CheckDefinition {
            ttl: Some(ttl),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The node with its node-level checks and the liveness check.
fn node_registration<'a>(
    node: &Node,
    node_checks: impl IntoIterator<Item = &'a Check>,
    alive: &Check,
) -> Registration {
    let mut checks: Vec<Check> = node_checks.into_iter().map(comparable_check).collect();
    checks.push(comparable_check(alive));
    checks.sort_by(|a, b| a.check_id.cmp(&b.check_id));
    Registration {
        node: node.clone(),
        skip_node_update: false,
        service: None,
        checks,
    }
}

/// Node `node` of the local snapshot `local` with its node-level checks and
/// the liveness check, as the agent pushes it.
fn node_push(local: &State, node: &str, alive: &Check) -> Option<Registration> {
    let n = local.node(node)?;
    let checks: Vec<Arc<Check>> = local.checks_of(node, "").collect();
    Some(node_registration(&n, checks.iter().map(|c| &**c), alive))
}

/// Instance `id` of `node` with its checks, as the agent registers it on
/// the server, from the local snapshot `local`.
fn instance_registration(local: &State, node: &str, id: &str) -> Option<Registration> {
    Some(Registration {
        node: (*local.node(node)?).clone(),
        skip_node_update: true,
        service: Some(comparable_service(&*local.service(node, id)?)),
        checks: local
            .checks_of(node, id)
            .map(|c| comparable_check(&c))
            .collect(),
    })
}

/// The writes that make `remote` equal `local` (plus the liveness check).
/// With `beat`, the node is pushed even when unchanged.
fn plan(
    local: &NodeContents,
    remote: Option<&NodeContents>,
    alive: &Check,
    beat: bool,
) -> Vec<Action> {
    let empty = NodeContents::default();
    let remote_or_empty = remote.unwrap_or(&empty);
    let mut actions = Vec::new();
    // Grouped once: a node may carry thousands of instances.
    let mut local_checks = by_service(local);
    let remote_checks = by_service(remote_or_empty);
    let node = node_registration(
        &local.node,
        local_checks.remove("").unwrap_or_default(),
        alive,
    );
    let node_differs = remote.is_none_or(|r| {
        let (a, b) = (&r.node, &local.node);
        a.address != b.address || a.meta != b.meta || a.tagged_addresses != b.tagged_addresses
    }) || !same_checks(
        remote_checks.get("").map_or(&[][..], Vec::as_slice),
        &node.checks.iter().collect::<Vec<_>>(),
    );
    if beat || node_differs {
        actions.push(Action::Node(Box::new(node)));
    }
    let remote_services: HashMap<&str, &Service> = remote_or_empty
        .services
        .iter()
        .map(|s| (s.id.as_str(), s))
        .collect();
    for service in &local.services {
        let theirs = remote_services.get(service.id.as_str());
        let checks = local_checks.remove(service.id.as_str()).unwrap_or_default();
        // Extra checks on the server are dropped below; registering the
        // instance again would not remove them.
        let mut their_checks = remote_checks
            .get(service.id.as_str())
            .cloned()
            .unwrap_or_default();
        their_checks.retain(|c| checks.iter().any(|m| m.check_id == c.check_id));
        if !theirs.is_some_and(|t| same_service(t, service)) || !same_checks(&their_checks, &checks)
        {
            actions.push(Action::Service(service.id.clone()));
        }
    }
    let local_services: HashSet<&str> = local.services.iter().map(|s| s.id.as_str()).collect();
    let local_check_ids: HashSet<&str> = local.checks.iter().map(|c| c.check_id.as_str()).collect();
    let known = |id: &str| id.is_empty() || local_services.contains(id);
    for service in &remote_or_empty.services {
        if !known(&service.id) {
            actions.push(Action::DeregisterService(service.id.clone()));
        }
    }
    for check in &remote_or_empty.checks {
        let gone_with_service = !known(&check.service_id);
        let kept = check.check_id == NODE_HEALTH_CHECK
            || local_check_ids.contains(check.check_id.as_str());
        if !kept && !gone_with_service {
            actions.push(Action::DeregisterCheck(check.check_id.clone()));
        }
    }
    actions
}

/// The writes that carry the changes between two local snapshots, `older`
/// (which the catalog is in line with) and `now`, to the catalog: each
/// instance whose record or checks changed is registered again (or
/// deregistered when gone), a removed check is deregistered, and the node
/// is pushed when it or its node-level checks changed. Costs what changed,
/// not the node's size (see [`State::check_changes_since`]).
fn plan_changes(older: &State, now: &State, node: &str, alive: &Check) -> Vec<Action> {
    let Some(current) = now.node(node) else {
        // The node left the local state: nothing here to carry over.
        return Vec::new();
    };
    // What the catalog keeps of the node record; its indexes aside.
    let mut push_node = older.node(node).is_none_or(|o| {
        o.address != current.address
            || o.meta != current.meta
            || o.tagged_addresses != current.tagged_addresses
    });
    let mut instances: BTreeSet<&str> = now.instance_changes_since(older, node).collect();
    let mut dropped = Vec::new();
    for change in now.check_changes_since(older, node) {
        let (before, after) = match change {
            CheckChange::Added(c) => (None, Some(c)),
            CheckChange::Changed { old, new } => (Some(old), Some(new)),
            CheckChange::Removed(c) => {
                dropped.push(c);
                (Some(c), None)
            }
        };
        for c in before.into_iter().chain(after) {
            if c.service_id.is_empty() {
                push_node = true;
            } else {
                instances.insert(c.service_id.as_str());
            }
        }
    }
    let mut actions = Vec::new();
    if push_node {
        actions.extend(node_push(now, node, alive).map(|r| Action::Node(Box::new(r))));
    }
    for id in instances {
        match now.service(node, id) {
            Some(_) => actions.push(Action::Service(id.to_string())),
            None => actions.push(Action::DeregisterService(id.to_string())),
        }
    }
    for check in dropped {
        let owner_left =
            !check.service_id.is_empty() && now.service(node, &check.service_id).is_none();
        let back = now.check(node, &check.check_id).is_some();
        if check.check_id != NODE_HEALTH_CHECK && !owner_left && !back {
            actions.push(Action::DeregisterCheck(check.check_id.clone()));
        }
    }
    actions
}

impl AntiEntropy {
    /// Syncs `local`'s node `config.node` to `remote`.
    pub fn new(local: Arc<Registry>, remote: Arc<dyn Catalog>, config: SyncConfig) -> Self {
        AntiEntropy {
            local,
            remote,
            config,
        }
    }

    fn beat_every(&self) -> Duration {
        self.config.heartbeat_ttl / 3
    }

    /// Syncs until `cancel` fires; then, with `leave_on_stop`, removes the
    /// node from the catalog.
    ///
    /// A local change is carried over by itself: the writes for what
    /// changed since the snapshot the catalog was last brought in line
    /// with ([`plan_changes`]), without reading the node back from the
    /// server. The server's node changing is followed by a full
    /// comparison, unless it is this agent's own writes: those that were
    /// the only commits on the server since the node was last seen are
    /// known not to hide anything; otherwise a full comparison follows
    /// [`VERIFY_AFTER`] later (see [`own_writes_follow`]).
    pub async fn run(self, cancel: CancellationToken) {
        let node = self.config.node.clone();
        let topic = Topic::Node(node.clone());
        let mut last_beat: Option<Instant> = None;
        let mut remote_index = 0;
        // The catalog's indexes of this agent's writes in one round.
        let mut own = Vec::new();
        // When to compare everything because someone else may have
        // written between this agent's writes.
        let mut verify_at: Option<Instant> = None;
        let mut backoff = Duration::from_millis(100);
        let mut failing = false;
        // The local snapshot the catalog was last brought in line with.
        let mut synced: Option<Arc<State>> = None;
        // A full comparison reads the node from the server; otherwise
        // local changes are pushed alone, and a heartbeat pushes the node.
        // Full: at start, on a change on the server, after an error, and
        // every FULL_SYNC.
        let mut full = true;
        let mut last_full = Instant::now();
        while !cancel.is_cancelled() {
            let snapshot = self.local.snapshot();
            let local_index = snapshot.node_index(&node);
            own.clear();
            let result = match &synced {
                _ if full => self.sync_once(&snapshot, &mut last_beat, &mut own).await,
                Some(old) if old.node_index(&node) != local_index => {
                    self.sync_changes(old, &snapshot, &mut last_beat, &mut own)
                        .await
                }
                _ => self.beat(&mut last_beat, &mut own).await.map(|()| 0),
            };
            match result {
                Ok(writes) => {
                    if full {
                        // Compared just now; this round's own writes are
                        // looked at below.
                        verify_at = None;
                    }
                    // The server's node moved by this agent's own writes:
                    // no need to be woken for them (the blocking query
                    // would send the whole node back each time). When
                    // they were not the only commits since the node was
                    // last seen, someone else may have changed it in
                    // between: compare everything a little later (once
                    // for any number of such rounds).
                    match own_writes_follow(remote_index, &own) {
                        OwnWrites::Unknown => {}
                        OwnWrites::Alone(last) => remote_index = last,
                        OwnWrites::Interleaved(last) => {
                            remote_index = last;
                            verify_at.get_or_insert(Instant::now() + VERIFY_AFTER);
                        }
                    }
                    if failing || (full && writes > 0) {
                        tracing::info!(node = %node, writes, "catalog in sync");
                    }
                    if full {
                        last_full = Instant::now();
                    }
                    synced = Some(snapshot);
                    full = false;
                    failing = false;
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    let refused = e.to_string().contains("Permission denied")
                        || e.to_string().contains("ACL not found");
                    if !failing && refused {
                        tracing::error!(node = %node, error = %e, "the registry refuses this agent's writes: give the agent a token (--agent-token) with node write on its node and write on the services it registers; retrying");
                    } else if !failing {
                        tracing::warn!(node = %node, error = %e, "cannot sync with the registry; retrying");
                    }
                    failing = true;
                    full = true;
                    // The server may have restarted with other indexes.
                    remote_index = 0;
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
            let beat_in = last_beat.map_or(Duration::ZERO, |t| {
                self.beat_every().saturating_sub(t.elapsed())
            });
            let beat_in = verify_at.map_or(beat_in, |t| {
                beat_in.min(t.saturating_duration_since(Instant::now()))
            });
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.local.wait_for_change(&topic, local_index, beat_in) => {}
                r = self.remote.wait_for_change(&topic, remote_index.max(1), beat_in) => {
                    // An error (say, the server restarted under the
                    // blocking query) may have lost anything: compare all.
                    full = r.as_ref().map_or(true, |&index| index != remote_index);
                    if let Ok(index) = r {
                        remote_index = next_index(remote_index, index);
                    }
                }
            }
            full |= last_full.elapsed() >= FULL_SYNC;
            full |= verify_at.is_some_and(|t| Instant::now() >= t);
        }
        if self.config.leave_on_stop {
            match self.remote.deregister_node(&node).await {
                Ok(_) => tracing::info!(node = %node, "left the catalog"),
                Err(e) => tracing::warn!(node = %node, error = %e, "cannot leave the catalog"),
            }
        }
    }

    /// Carries the local changes from `older` to `now` over to the
    /// catalog (and beats, if due); returns how many writes it made.
    async fn sync_changes(
        &self,
        older: &State,
        now: &State,
        last_beat: &mut Option<Instant>,
        own: &mut Vec<u64>,
    ) -> shoal_catalog::Result<usize> {
        let alive = alive_check(self.config.heartbeat_ttl);
        let mut actions = plan_changes(older, now, &self.config.node, &alive);
        let beat_due = last_beat.is_none_or(|t| t.elapsed() >= self.beat_every());
        if beat_due && !actions.iter().any(|a| matches!(a, Action::Node(_))) {
            if let Some(reg) = node_push(now, &self.config.node, &alive) {
                actions.insert(0, Action::Node(Box::new(reg)));
            }
        }
        self.execute(actions, now, last_beat, own).await
    }

    /// Pushes the node alone: the heartbeat between full comparisons.
    async fn beat(
        &self,
        last_beat: &mut Option<Instant>,
        own: &mut Vec<u64>,
    ) -> shoal_catalog::Result<()> {
        let alive = alive_check(self.config.heartbeat_ttl);
        let Some(reg) = node_push(&self.local.snapshot(), &self.config.node, &alive) else {
            return Ok(());
        };
        own.push(self.remote.register(reg).await?);
        *last_beat = Some(Instant::now());
        Ok(())
    }

    /// Compares the catalog's node with `local`'s and writes what
    /// differs; returns how many writes it made.
    async fn sync_once(
        &self,
        snapshot: &State,
        last_beat: &mut Option<Instant>,
        own: &mut Vec<u64>,
    ) -> shoal_catalog::Result<usize> {
        let node = &self.config.node;
        let Some(local) = snapshot.node_contents(node) else {
            return Ok(0);
        };
        let remote = self
            .remote
            .node_contents(node, QueryOptions::default())
            .await?
            .value;
        let beat = last_beat.is_none_or(|t| t.elapsed() >= self.beat_every());
        let actions = plan(
            &local,
            remote.as_ref(),
            &alive_check(self.config.heartbeat_ttl),
            beat,
        );
        drop(local);
        self.execute(actions, snapshot, last_beat, own).await
    }

    /// Makes the writes, instances as they are in `local` (the snapshot
    /// the actions were planned from); returns how many (the node push
    /// aside).
    async fn execute(
        &self,
        actions: Vec<Action>,
        local: &State,
        last_beat: &mut Option<Instant>,
        own: &mut Vec<u64>,
    ) -> shoal_catalog::Result<usize> {
        let node = &self.config.node;
        let mut writes = 0;
        for action in actions {
            let index = match action {
                Action::Node(reg) => {
                    own.push(self.remote.register(*reg).await?);
                    *last_beat = Some(Instant::now());
                    continue;
                }
                Action::Service(id) => match instance_registration(local, node, &id) {
                    Some(reg) => self.remote.register(reg).await?,
                    None => continue,
                },
                Action::DeregisterService(id) => self.remote.deregister_service(node, &id).await?,
                Action::DeregisterCheck(id) => self.remote.deregister_check(node, &id).await?,
            };
            own.push(index);
            writes += 1;
        }
        Ok(writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_catalog::Node;

    fn node() -> Node {
        Node {
            name: "host1".into(),
            address: "10.0.0.5".into(),
            ..Default::default()
        }
    }

    fn svc(id: &str, port: u16) -> Service {
        Service {
            id: id.into(),
            name: "web".into(),
            port,
            ..Default::default()
        }
    }

    fn check(id: &str, service: &str, status: HealthStatus) -> Check {
        Check {
            check_id: id.into(),
            service_id: service.into(),
            status,
            ..Default::default()
        }
    }

    fn contents(services: Vec<Service>, checks: Vec<Check>) -> NodeContents {
        NodeContents {
            node: node(),
            services,
            checks,
        }
    }

    /// Actions as short strings, for readable expectations.
    fn summary(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Node(_) => "node".to_string(),
                Action::Service(id) => format!("register {id}"),
                Action::DeregisterService(id) => format!("deregister {id}"),
                Action::DeregisterCheck(id) => format!("drop check {id}"),
            })
            .collect()
    }

    #[test]
    fn plans_only_the_writes_that_differ() {
        use HealthStatus::{Critical, Passing};
        let alive = alive_check(Duration::from_secs(10));
        let synced_remote = |services: Vec<Service>, mut checks: Vec<Check>| {
            checks.push(alive.clone());
            let mut c = contents(services, checks);
            // What the catalog fills in must not count as a difference.
            for s in &mut c.services {
                s.create_index = 7;
                s.modify_index = 9;
            }
            for ch in &mut c.checks {
                ch.node = "host1".into();
                ch.service_name = "web".into();
                ch.modify_index = 9;
            }
            c
        };
        let local = contents(vec![svc("a", 1)], vec![check("ca", "a", Passing)]);
        let in_sync = synced_remote(vec![svc("a", 1)], vec![check("ca", "a", Passing)]);
        // (case, local, remote, beat, expected)
        type Case<'a> = (
            &'a str,
            NodeContents,
            Option<NodeContents>,
            bool,
            Vec<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "empty server",
                local.clone(),
                None,
                false,
                vec!["node", "register a"],
            ),
            (
                "in sync",
                local.clone(),
                Some(in_sync.clone()),
                false,
                vec![],
            ),
            (
                "heartbeat due",
                local.clone(),
                Some(in_sync.clone()),
                true,
                vec!["node"],
            ),
            (
                "status changed here",
                contents(vec![svc("a", 1)], vec![check("ca", "a", Critical)]),
                Some(in_sync.clone()),
                false,
                vec!["register a"],
            ),
            (
                "port changed here",
                contents(vec![svc("a", 2)], vec![check("ca", "a", Passing)]),
                Some(in_sync.clone()),
                false,
                vec!["register a"],
            ),
            (
                "stale instance and check on the server",
                local.clone(),
                Some(synced_remote(
                    vec![svc("a", 1), svc("old", 3)],
                    vec![
                        check("ca", "a", Passing),
                        check("cold", "old", Passing),
                        check("stray", "a", Passing),
                    ],
                )),
                false,
                vec!["deregister old", "drop check stray"],
            ),
            (
                "liveness check lost on the server",
                local.clone(),
                Some(contents(vec![svc("a", 1)], vec![check("ca", "a", Passing)])),
                false,
                vec!["node"],
            ),
        ];
        for (name, local, remote, beat, want) in cases {
            let got = summary(&plan(&local, remote.as_ref(), &alive, beat));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn node_push_carries_the_liveness_check_with_its_ttl() {
        let alive = alive_check(Duration::from_secs(9));
        let actions = plan(&contents(vec![], vec![]), None, &alive, false);
        let Action::Node(reg) = &actions[0] else {
            panic!("expected a node push first: {actions:?}");
        };
        assert_eq!(reg.node.address, "10.0.0.5");
        let live = reg
            .checks
            .iter()
            .find(|c| c.check_id == NODE_HEALTH_CHECK)
            .unwrap();
        assert_eq!(live.definition.ttl, Some(Duration::from_secs(9)));
        assert_eq!(live.status, HealthStatus::Passing);
    }

    fn registration(id: &str, port: u16, checks: Vec<Check>) -> Registration {
        Registration {
            node: node(),
            skip_node_update: false,
            service: (!id.is_empty()).then(|| svc(id, port)),
            checks,
        }
    }

    /// Each local change becomes the one write that carries it, and
    /// nothing else of the node is written again.
    #[tokio::test]
    async fn plans_the_writes_for_local_changes_only() {
        use HealthStatus::{Critical, Passing};
        let alive = alive_check(Duration::from_secs(10));
        let local = Registry::in_memory();
        for i in 0..50 {
            let id = format!("i{i}");
            let c = check(&format!("c{i}"), &id, Passing);
            local.register(registration(&id, 1, vec![c])).await.unwrap();
        }
        local
            .register(registration("i1", 1, vec![check("extra", "i1", Passing)]))
            .await
            .unwrap();
        let before = local.snapshot();
        let mut last = before;
        let mut step = |name, want: Vec<&'static str>, now: Arc<State>| {
            let got = summary(&plan_changes(&last, &now, "host1", &alive));
            assert_eq!(got, want, "{name}");
            last = now;
        };
        step("nothing", vec![], local.snapshot());
        local
            .register(registration("new", 5, vec![]))
            .await
            .unwrap();
        step("new instance", vec!["register new"], local.snapshot());
        local.register(registration("i3", 2, vec![])).await.unwrap();
        step("port changed", vec!["register i3"], local.snapshot());
        local
            .update_check("host1", "c4", Critical, Some("down".into()))
            .await
            .unwrap();
        step("check status", vec!["register i4"], local.snapshot());
        local.deregister_service("host1", "i5").await.unwrap();
        step("instance gone", vec!["deregister i5"], local.snapshot());
        local.deregister_check("host1", "extra").await.unwrap();
        step(
            "check gone, instance kept",
            vec!["register i1", "drop check extra"],
            local.snapshot(),
        );
        local
            .register(registration("", 0, vec![check("disk", "", Passing)]))
            .await
            .unwrap();
        step("node check", vec!["node"], local.snapshot());
        // Several changes at once: each once, in one plan.
        local.register(registration("i6", 7, vec![])).await.unwrap();
        local.deregister_service("host1", "i7").await.unwrap();
        local.register(registration("i6", 8, vec![])).await.unwrap();
        step(
            "batch",
            vec!["register i6", "deregister i7"],
            local.snapshot(),
        );
    }

    #[test]
    fn own_writes_tell_whether_someone_else_may_have_written_between() {
        use OwnWrites::{Alone, Interleaved, Unknown};
        // (node index last seen, indexes the writes answered, verdict)
        let cases: &[(u64, &[u64], OwnWrites)] = &[
            (10, &[], Unknown),
            (10, &[0, 0], Unknown),
            (10, &[11], Alone(11)),
            (10, &[11, 12, 13], Alone(13)),
            (10, &[12], Interleaved(12)),
            (10, &[11, 13], Interleaved(13)),
            // A heartbeat that changed nothing answers the current index.
            (10, &[10], Alone(10)),
            (10, &[11, 11, 12], Alone(12)),
            // An index below the one seen: the server restarted.
            (10, &[3], Unknown),
        ];
        for (seen, own, want) in cases {
            assert_eq!(own_writes_follow(*seen, own), *want, "{seen} {own:?}");
        }
    }
}
