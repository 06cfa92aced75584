//! Agent liveness, on the server side: a node whose liveness check
//! ([`NODE_HEALTH_CHECK`]) carries a TTL is kept by a shoal agent that
//! refreshes it by re-registering the node. When the refreshes stop (the
//! agent or its host died), the node leaves the catalog with every
//! instance on it, so no traffic goes to a dead host.

use shoal_catalog::{Catalog, Registry, NODE_HEALTH_CHECK};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often heartbeats are looked at: the bound on removal is the
/// agent's TTL plus this.
const TICK: Duration = Duration::from_millis(250);

/// The nodes whose heartbeat is overdue at `now`. A node never heard
/// from since `started` (say, after a server restart) gets one full TTL.
fn overdue(registry: &Registry, started: Instant, now: Instant) -> Vec<(String, Duration)> {
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
            (now.duration_since(last) > ttl).then(|| (node.name.clone(), ttl))
        })
        .collect()
}

/// Removes nodes whose agent stopped heartbeating, until `cancel` fires.
pub async fn reap_dead_agents(registry: Arc<Registry>, cancel: CancellationToken) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (node, ttl) in overdue(&registry, started, Instant::now()) {
            let instances = registry.snapshot().node_services(&node).len();
            tracing::warn!(
                node = %node,
                ttl = ?ttl,
                instances,
                "agent missed its heartbeat: the node and its instances leave the catalog"
            );
            match registry.deregister_node(&node).await {
                Ok(_) => registry.heartbeats().forget(&node, NODE_HEALTH_CHECK),
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
    use shoal_catalog::{Check, CheckDefinition, HealthStatus, Node, Registration};

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
        let names = |v: Vec<(String, Duration)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
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
}
