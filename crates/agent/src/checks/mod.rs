//! The check runner: follows the checks registered on one node of an
//! in-process registry, runs each in its own task (so a slow check never
//! delays another), and removes instances whose check stayed critical
//! longer than their `DeregisterCriticalServiceAfter`.

mod http;
mod http1;
mod probe;
mod report;
mod schedule;
mod status;
mod task;
mod tcp;

use crate::error::Result;
use http::{HttpClients, HttpProbe};
use probe::Probe;
use report::Reporter;
use shoal_catalog::{
    Catalog, Check, CheckChange, CheckDefinition, HealthStatus, Registry, State, Topic,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tcp::TcpProbe;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longest the runner sleeps without looking at deregister deadlines.
const REAP_TICK: Duration = Duration::from_millis(500);
/// How long the runner waits for a change when no deadline is watched.
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// Which node's checks to run.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// The node whose checks this runner owns (this host's node).
    pub node: String,
}

/// Runs the checks of one node; see the module doc.
pub struct CheckRunner {
    registry: Arc<Registry>,
    node: String,
    clients: Arc<HttpClients>,
    counters: Arc<Counters>,
}

/// What a runner did: checks started and stopped (a restart is one of
/// each), and check changes looked at.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub started: AtomicU64,
    pub stopped: AtomicU64,
    pub visited: AtomicU64,
}

/// A check being run, with what it was started from: its definition
/// (shared with its task) and instance, not the whole check, whose
/// output and status the catalog replaces as the check runs.
struct Running {
    def: Arc<CheckDefinition>,
    service_id: String,
    task: AbortHandle,
}

impl Running {
    /// Whether it must restart to follow a new registration of `check`.
    fn same_job(&self, check: &Check) -> bool {
        *self.def == check.definition && self.service_id == check.service_id
    }
}

impl CheckRunner {
    /// A runner for `config.node`'s checks in `registry`.
    pub fn new(registry: Arc<Registry>, config: RunnerConfig) -> Result<Self> {
        Ok(CheckRunner {
            registry,
            node: config.node,
            clients: HttpClients::new()?,
            counters: Arc::default(),
        })
    }

    /// What the runner has done so far (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Runs until `cancel` fires.
    ///
    /// Each time the node's index moves, only the checks that changed
    /// since the snapshot last applied are looked at (a diff of the two
    /// snapshots that skips what they share): registering one instance on
    /// a node of 10,000 starts one check and touches nothing else.
    pub async fn run(self, cancel: CancellationToken) {
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut tasks = JoinSet::new();
        let mut critical_since: HashMap<String, Instant> = HashMap::new();
        // Checks with a DeregisterCriticalServiceAfter, as of the last
        // snapshot applied (kept current change by change).
        let mut with_deadline: HashMap<String, Arc<Check>> = HashMap::new();
        let mut applied: Option<Arc<State>> = None;
        let topic = Topic::Node(self.node.clone());
        loop {
            let snapshot = self.registry.snapshot();
            let index = snapshot.node_index(&self.node);
            let moved = applied
                .as_ref()
                .is_none_or(|old| old.node_index(&self.node) != index);
            if moved {
                let empty = State::default();
                let older = applied.as_deref().unwrap_or(&empty);
                for change in snapshot.check_changes_since(older, &self.node) {
                    self.counters.visited.fetch_add(1, Ordering::Relaxed);
                    let (check, gone) = match change {
                        CheckChange::Added(c) | CheckChange::Changed { new: c, .. } => (c, false),
                        CheckChange::Removed(c) => (c, true),
                    };
                    self.apply(check, gone, &mut running, &mut tasks);
                    let watched = !gone
                        && check.definition.deregister_critical_service_after.is_some()
                        && !check.service_id.is_empty();
                    if watched {
                        with_deadline.insert(check.check_id.clone(), check.clone());
                    } else {
                        with_deadline.remove(&check.check_id);
                    }
                }
                applied = Some(snapshot.clone());
            }
            self.reap(&with_deadline, &mut critical_since).await;
            while tasks.try_join_next().is_some() {}
            let wait = if with_deadline.is_empty() {
                IDLE_WAIT
            } else {
                REAP_TICK
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.registry.wait_for_change(&topic, index, wait) => {}
            }
        }
        tasks.shutdown().await;
    }

    /// Follows one check's change: starts a new check, restarts one whose
    /// definition or instance changed, stops a removed one. A change of
    /// status or output alone (the check's own results) leaves it running.
    fn apply(
        &self,
        check: &Arc<Check>,
        gone: bool,
        running: &mut HashMap<String, Running>,
        tasks: &mut JoinSet<()>,
    ) {
        let id = &check.check_id;
        let runnable = !gone && !check.definition.kind().is_empty();
        if let Some(r) = running.get(id) {
            if runnable && r.same_job(check) {
                return;
            }
            r.task.abort();
            running.remove(id);
            self.counters.stopped.fetch_add(1, Ordering::Relaxed);
            if gone {
                self.registry.heartbeats().forget(&self.node, id);
            }
        }
        if !runnable {
            return;
        }
        let def = Arc::new(check.definition.clone());
        let task = self.start(id, def.clone(), tasks);
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        running.insert(
            id.clone(),
            Running {
                def,
                service_id: check.service_id.clone(),
                task,
            },
        );
    }

    fn start(
        &self,
        check_id: &str,
        def: Arc<CheckDefinition>,
        tasks: &mut JoinSet<()>,
    ) -> AbortHandle {
        let reporter = Reporter::new(self.registry.clone(), &self.node, check_id);
        let probe: std::result::Result<Box<dyn Probe>, String> = match def.kind() {
            "http" => {
                HttpProbe::new(&self.clients, def.clone()).map(|p| Box::new(p) as Box<dyn Probe>)
            }
            "tcp" => Ok(Box::new(TcpProbe {
                target: def.tcp.clone(),
            })),
            _ => {
                let ttl = def.ttl.unwrap_or_default().max(Duration::from_millis(1));
                return tasks.spawn(task::run_ttl(ttl, reporter));
            }
        };
        match probe {
            Ok(probe) => tasks.spawn(async move { task::run_probe(probe, &def, reporter).await }),
            Err(why) => {
                let mut reporter = reporter;
                tasks.spawn(async move { reporter.report(HealthStatus::Critical, why).await })
            }
        }
    }

    /// Deregisters instances whose check stayed critical too long.
    async fn reap(
        &self,
        with_deadline: &HashMap<String, Arc<Check>>,
        critical_since: &mut HashMap<String, Instant>,
    ) {
        if with_deadline.is_empty() && critical_since.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut due = Vec::new();
        critical_since.retain(|id, _| with_deadline.contains_key(id));
        for listed in with_deadline.values() {
            let Some(after) = listed.definition.deregister_critical_service_after else {
                continue;
            };
            if listed.status != HealthStatus::Critical {
                critical_since.remove(&listed.check_id);
                continue;
            }
            let since = *critical_since.entry(listed.check_id.clone()).or_insert(now);
            if now.duration_since(since) >= after {
                due.push((listed.service_id.clone(), listed.check_id.clone(), after));
            }
        }
        for (service_id, check_id, after) in due {
            tracing::warn!(
                node = %self.node,
                service = %service_id,
                check = %check_id,
                after = ?after,
                "check critical for longer than DeregisterCriticalServiceAfter: deregistering the instance"
            );
            critical_since.remove(&check_id);
            if let Err(e) = self
                .registry
                .deregister_service(&self.node, &service_id)
                .await
            {
                tracing::warn!(service = %service_id, error = %e, "cannot deregister critical instance");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_catalog::{Node, Registration, Service};
    use std::sync::atomic::Ordering::Relaxed;

    const NODE: &str = "n1";

    fn instance(i: usize, ttl: Duration) -> Registration {
        let id = format!("i{i}");
        Registration {
            node: Node {
                name: NODE.into(),
                address: "127.0.0.1".into(),
                ..Default::default()
            },
            skip_node_update: false,
            service: Some(Service {
                id: id.clone(),
                name: format!("s{}", i % 10),
                port: 9000,
                ..Default::default()
            }),
            checks: vec![Check {
                check_id: format!("c{i}"),
                service_id: id,
                definition: CheckDefinition {
                    ttl: Some(ttl),
                    ..Default::default()
                },
                ..Default::default()
            }],
        }
    }

    /// Waits (at most 10 s) until `started` and `stopped` reach the
    /// given counts, then a little longer to see that they stay there.
    async fn settle(c: &Counters, started: u64, stopped: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while (c.started.load(Relaxed), c.stopped.load(Relaxed)) != (started, stopped)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            (c.started.load(Relaxed), c.stopped.load(Relaxed)),
            (started, stopped),
            "checks (started, stopped)"
        );
    }

    /// A change to a node of many checks starts, stops or restarts just
    /// the checks it changed, each once, and looks at nothing else.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn follows_each_check_change_once_without_scanning_the_node() {
        let registry = Registry::in_memory();
        let runner =
            CheckRunner::new(registry.clone(), RunnerConfig { node: NODE.into() }).unwrap();
        let counters = runner.counters();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(runner.run(cancel.clone()));
        let hour = Duration::from_secs(3600);
        const N: usize = 300;
        for i in 0..N {
            registry.register(instance(i, hour)).await.unwrap();
        }
        settle(&counters, N as u64, 0).await;

        // (what the writes do, started and stopped after them)
        let visited = counters.visited.load(Relaxed);
        // A new instance: one start.
        registry.register(instance(N, hour)).await.unwrap();
        // A changed definition: one restart.
        registry.register(instance(5, hour * 2)).await.unwrap();
        // The same definition again: nothing.
        registry.register(instance(6, hour)).await.unwrap();
        // A removed instance: one stop.
        registry.deregister_service(NODE, "i7").await.unwrap();
        // A result (status and output) only: nothing.
        registry
            .update_check(NODE, "c9", HealthStatus::Passing, Some("ok".into()))
            .await
            .unwrap();
        settle(&counters, N as u64 + 2, 2).await;
        let looked_at = counters.visited.load(Relaxed) - visited;
        assert!(
            looked_at <= 5,
            "{looked_at} check changes looked at for 5 writes on a node of {N} checks"
        );
        cancel.cancel();
        task.await.unwrap();
    }
}
