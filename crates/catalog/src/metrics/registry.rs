//! The registry's own metrics: writes and their durable commits, the
//! store's health, blocking queries, and what the agent side (check runs,
//! Docker events) records through the registry it writes to.

use super::{Counter, Family, Gauge, Histogram, Kind, Value};

/// Counters of one registry; see [`crate::Registry::metric_families`].
#[derive(Debug, Default)]
pub struct RegistryMetrics {
    /// Write commands answered (applied, refused or failed).
    pub writes: Counter,
    /// Durable commits (one per batch of writes that changed something).
    pub commits: Counter,
    /// Time of each durable commit.
    pub commit_seconds: Histogram,
    /// Commits (and store probes) that failed.
    pub store_errors: Counter,
    /// Guarded commits on a shared store (etcd) that lost to another
    /// server's and were tried again.
    pub commit_conflicts: Counter,
    /// Writes this server had the leading server commit (shared store).
    pub writes_forwarded: Counter,
    /// 1 while the store cannot commit, else 0.
    pub store_failing: Gauge,
    /// Blocking queries parked now, waiting for a change.
    pub blocking_queries: Gauge,
    /// Health check runs (HTTP, TCP probes and TTL expiries).
    pub check_runs: Counter,
    /// Docker events received by the registrator.
    pub docker_events: Counter,
    /// Nodes of dead agents this server removed (see `Command::ReapNode`).
    pub agents_reaped: Counter,
    /// Sessions whose TTL ran out that this server invalidated.
    pub sessions_expired: Counter,
}

impl RegistryMetrics {
    /// The families, with `watchers` (subscriptions to change
    /// notifications, read from the watch hub) beside the counters.
    pub fn families(&self, watchers: usize) -> Vec<Family> {
        let int = |v: u64| Value::Int(i64::try_from(v).unwrap_or(i64::MAX));
        vec![
            Family::single(
                "shoal_catalog_writes_total",
                "Write commands answered (applied, refused or failed).",
                Kind::Counter,
                int(self.writes.get()),
            ),
            Family::single(
                "shoal_catalog_commits_total",
                "Durable commits of batches of writes.",
                Kind::Counter,
                int(self.commits.get()),
            ),
            Family::single(
                "shoal_catalog_commit_seconds",
                "Time of each durable commit (fsync included).",
                Kind::Histogram,
                Value::Histogram(self.commit_seconds.snapshot()),
            ),
            Family::single(
                "shoal_catalog_store_errors_total",
                "Commits and store probes that failed (disk full, I/O error).",
                Kind::Counter,
                int(self.store_errors.get()),
            ),
            Family::single(
                "shoal_catalog_commit_conflicts_total",
                "Commits to a shared store (etcd) that lost to another server's and were tried again.",
                Kind::Counter,
                int(self.commit_conflicts.get()),
            ),
            Family::single(
                "shoal_catalog_writes_forwarded_total",
                "Writes this server had the leading server commit (shared store).",
                Kind::Counter,
                int(self.writes_forwarded.get()),
            ),
            Family::single(
                "shoal_catalog_store_failing",
                "1 while the store cannot commit writes (reads then report no known leader), else 0.",
                Kind::Gauge,
                Value::Int(self.store_failing.get()),
            ),
            Family::single(
                "shoal_catalog_blocking_queries",
                "Blocking queries waiting for a change now.",
                Kind::Gauge,
                Value::Int(self.blocking_queries.get()),
            ),
            Family::single(
                "shoal_catalog_watchers",
                "Subscriptions to change notifications now (blocking queries and in-process watches).",
                Kind::Gauge,
                int(watchers as u64),
            ),
            Family::single(
                "shoal_agent_check_runs_total",
                "Health check runs.",
                Kind::Counter,
                int(self.check_runs.get()),
            ),
            Family::single(
                "shoal_agent_docker_events_total",
                "Docker events received by the registrator.",
                Kind::Counter,
                int(self.docker_events.get()),
            ),
            Family::single(
                "shoal_agents_reaped_total",
                "Nodes of agents whose heartbeat stopped that this server removed.",
                Kind::Counter,
                int(self.agents_reaped.get()),
            ),
            Family::single(
                "shoal_sessions_expired_total",
                "Sessions whose TTL ran out without a renewal that this server invalidated.",
                Kind::Counter,
                int(self.sessions_expired.get()),
            ),
        ]
    }
}
