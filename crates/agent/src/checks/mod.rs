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
use shoal_catalog::{Catalog, Check, CheckDefinition, HealthStatus, Registry, State, Topic};
use std::collections::HashMap;
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
        })
    }

    /// Runs until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut tasks = JoinSet::new();
        let mut critical_since: HashMap<String, Instant> = HashMap::new();
        // Checks with a DeregisterCriticalServiceAfter, looked at every tick.
        let mut with_deadline: Vec<Arc<Check>> = Vec::new();
        let mut seen_index = None;
        let topic = Topic::Node(self.node.clone());
        loop {
            let snapshot = self.registry.snapshot();
            let index = snapshot.node_index(&self.node);
            if seen_index != Some(index) {
                self.reconcile(&snapshot, &mut running, &mut tasks);
                with_deadline = snapshot
                    .checks_on_node(&self.node)
                    .filter(|c| c.definition.deregister_critical_service_after.is_some())
                    .filter(|c| !c.service_id.is_empty())
                    .cloned()
                    .collect();
                seen_index = Some(index);
            }
            self.reap(&snapshot, &with_deadline, &mut critical_since)
                .await;
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

    /// Starts new checks, restarts changed ones, stops removed ones.
    fn reconcile(
        &self,
        snapshot: &State,
        running: &mut HashMap<String, Running>,
        tasks: &mut JoinSet<()>,
    ) {
        let mut seen = 0;
        for check in snapshot.checks_on_node(&self.node) {
            if check.definition.kind().is_empty() {
                continue;
            }
            seen += 1;
            if let Some(r) = running.get(&check.check_id) {
                if r.same_job(check) {
                    continue;
                }
                r.task.abort();
            }
            let def = Arc::new(check.definition.clone());
            let task = self.start(&check.check_id, def.clone(), tasks);
            running.insert(
                check.check_id.clone(),
                Running {
                    def,
                    service_id: check.service_id.clone(),
                    task,
                },
            );
        }
        if running.len() > seen {
            running.retain(|id, r| {
                let keep = snapshot.check(&self.node, id).is_some();
                if !keep {
                    r.task.abort();
                    self.registry.heartbeats().forget(&self.node, id);
                }
                keep
            });
        }
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
        snapshot: &State,
        with_deadline: &[Arc<Check>],
        critical_since: &mut HashMap<String, Instant>,
    ) {
        let now = Instant::now();
        let mut due = Vec::new();
        critical_since.retain(|id, _| with_deadline.iter().any(|c| &c.check_id == id));
        for listed in with_deadline {
            let Some(after) = listed.definition.deregister_critical_service_after else {
                continue;
            };
            let critical = snapshot
                .check(&self.node, &listed.check_id)
                .is_some_and(|c| c.status == HealthStatus::Critical);
            if !critical {
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
