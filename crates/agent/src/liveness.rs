//! Agent liveness, on the server side: a node whose liveness check
//! ([`NODE_HEALTH_CHECK`]) carries a TTL is kept by a shoal agent that
//! refreshes it by re-registering the node. When the refreshes stop (the
//! agent or its host died), the node leaves the catalog with every
//! instance on it, so no traffic goes to a dead host.

use shoal_catalog::{Command, Registry, NODE_HEALTH_CHECK};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often heartbeats are looked at: the bound on removal is the
/// agent's TTL plus this.
const TICK: Duration = Duration::from_millis(250);

/// The nodes whose heartbeat is overdue at `now`, with their TTL and the
/// ModifyIndex of their liveness check. A node never heard from since
/// `started` (say, after a server restart) gets one full TTL.
fn overdue(registry: &Registry, started: Instant, now: Instant) -> Vec<(String, Duration, u64)> {
    let snapshot = registry.snapshot();
    let (_, nodes) = snapshot.nodes();
    nodes
        .iter()
        .filter_map(|node| {
            let check = snapshot.check(&node.name, NODE_HEALTH_CHECK)?;
            let ttl = check.definition.ttl?;
            let last = registry
                .heartbeats()
                .last(&node.name, NODE_HEALTH_CHECK)
                .map_or(started, Instant::from_std)
                .max(started);
            (now.duration_since(last) > ttl).then(|| (node.name.clone(), ttl, check.modify_index))
        })
        .collect()
}

/// Removes nodes whose agent stopped heartbeating, until `cancel` fires.
///
/// Each removal is a [`Command::ReapNode`] guarded by the liveness check
/// the decision was made on, so when reapers on several servers (a leader
/// and one that still thinks it leads) judge the same node dead, it is
/// removed once and counted once (`shoal_agents_reaped_total`), and a node
/// whose agent came back in between is left alone.
pub async fn reap_dead_agents(registry: Arc<Registry>, cancel: CancellationToken) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (node, ttl, check_index) in overdue(&registry, started, Instant::now()) {
            let instances = registry.snapshot().node_services(&node).len();
            let cmd = Command::ReapNode {
                node: node.clone(),
                check_index,
            };
            match registry.write(cmd).await {
                Ok(outcome) if outcome.applied => {
                    registry.metrics().agents_reaped.inc();
                    registry.heartbeats().forget(&node, NODE_HEALTH_CHECK);
                    tracing::warn!(
                        node = %node,
                        ttl = ?ttl,
                        instances,
                        "agent missed its heartbeat: the node and its instances left the catalog"
                    );
                }
                Ok(_) => tracing::info!(
                    node = %node,
                    "dead agent's node already removed or registered again"
                ),
                Err(e) => {
                    tracing::warn!(node = %node, error = %e, "cannot remove dead agent's node")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_catalog::{Catalog, Check, CheckDefinition, HealthStatus, Node, Registration};

    async fn register(registry: &Registry, node: &str, ttl: Option<Duration>) {
        let check = Check {
            check_id: NODE_HEALTH_CHECK.into(),
            status: HealthStatus::Passing,
            definition: CheckDefinition {
                ttl,
                ..Default::default()
            },
            ..Default::default()
        };
        let reg = Registration {
            node: Node {
                name: node.into(),
                address: "10.0.0.1".into(),
                ..Default::default()
            },
            checks: vec![check],
            ..Default::default()
        };
        registry.register(reg).await.unwrap();
    }

    #[tokio::test]
    async fn only_agent_nodes_past_their_ttl_are_overdue() {
        let registry = Registry::in_memory();
        let ttl = Duration::from_secs(10);
        register(&registry, "agent-quiet", Some(ttl)).await;
        register(&registry, "agent-beating", Some(ttl)).await;
        register(&registry, "plain", None).await;
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        registry
            .heartbeats()
            .beat("agent-beating", NODE_HEALTH_CHECK);
        let names =
            |v: Vec<(String, Duration, u64)>| v.into_iter().map(|(n, ..)| n).collect::<Vec<_>>();
        assert!(overdue(&registry, started, started + ttl / 2).is_empty());
        // One TTL after start only the node that never beat is overdue;
        // the other one once its own TTL passed without another beat.
        let later = Instant::now() + ttl + Duration::from_millis(1);
        assert_eq!(
            names(overdue(
                &registry,
                started,
                started + ttl + Duration::from_millis(1)
            )),
            vec!["agent-quiet"]
        );
        assert_eq!(
            names(overdue(&registry, started, later)),
            vec!["agent-beating", "agent-quiet"]
        );
    }

    #[tokio::test]
    async fn a_node_is_reaped_once_and_not_after_it_came_back() {
        let registry = Registry::in_memory();
        register(&registry, "agent-1", Some(Duration::from_secs(1))).await;
        let judged = |r: &Registry| {
            r.snapshot()
                .check("agent-1", NODE_HEALTH_CHECK)
                .unwrap()
                .modify_index
        };
        let reap = |check_index| Command::ReapNode {
            node: "agent-1".into(),
            check_index,
        };
        let seen = judged(&registry);
        // Two reapers judged the same check: one removes the node.
        let first = registry.write(reap(seen)).await.unwrap();
        let second = registry.write(reap(seen)).await.unwrap();
        assert!(first.applied);
        assert!(!second.applied, "the node was reaped twice");
        assert_eq!(second.index, first.index, "the second reap wrote something");
        assert!(registry.snapshot().node("agent-1").is_none());
        // Registered again since it was judged: it stays.
        register(&registry, "agent-1", Some(Duration::from_secs(1))).await;
        assert_ne!(judged(&registry), seen);
        assert!(!registry.write(reap(seen)).await.unwrap().applied);
        assert!(registry.snapshot().node("agent-1").is_some());
        // Nor is a node by an index its check never had.
        register(&registry, "plain", None).await;
        let plain = Command::ReapNode {
            node: "plain".into(),
            check_index: 0,
        };
        assert!(!registry.write(plain).await.unwrap().applied);
    }
}
