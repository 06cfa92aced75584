//! Where a request goes: the target its host and path (or a port route)
//! name, and the upstream for it, waited for (bounded) while the service
//! has no instance yet. A service that does not exist yet looks the same
//! as one whose first instance is on its way, so a request for it waits
//! the queue timeout; only an unreachable registry ends the wait at once,
//! since no instance can become known then.

use crate::error::ProxyError;
use crate::table::{RoutingTable, Target, Upstream, UpstreamKey};
use crate::Shared;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The target for a request to `host` (lowercase, no port) and `path`, or
/// the port route's service when `fixed`.
pub fn target(
    table: &RoutingTable,
    fixed: Option<&Arc<str>>,
    host: &str,
    path: &str,
) -> Result<Target, ProxyError> {
    match fixed {
        Some(service) => Ok(Target {
            key: (service.to_string(), None),
            strip: None,
        }),
        None => table
            .resolve(host, path)
            .ok_or_else(|| ProxyError::NoRoute {
                host: host.to_string(),
                path: path.to_string(),
            }),
    }
}

/// `tag.service`, or the service, as errors name an upstream.
pub fn service_label(key: &UpstreamKey) -> String {
    match &key.1 {
        Some(tag) => format!("{tag}.{}", key.0),
        None => key.0.clone(),
    }
}

struct Leave<'a>(&'a Shared);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The upstream for `key`, waiting (bounded by the queue timeout) for a
/// first instance; at once an error when the registry is unreachable.
pub async fn wait_for_upstream(
    shared: &Shared,
    key: &UpstreamKey,
) -> Result<Arc<Upstream>, ProxyError> {
    if let Some(up) = shared.discovery.table().upstream(key) {
        return Ok(up.clone());
    }
    let mut changes = shared.discovery.subscribe();
    let mut registry = shared.discovery.watch_registry();
    let waiting = shared.queued.fetch_add(1, Ordering::Relaxed);
    let _leave = Leave(shared);
    if waiting >= shared.cfg.max_queued {
        return Err(ProxyError::QueueFull(service_label(key)));
    }
    shared.stats.queued.fetch_add(1, Ordering::Relaxed);
    let started = tokio::time::Instant::now();
    let deadline = started + shared.cfg.queue_timeout;
    loop {
        if let Some(up) = shared.discovery.table().upstream(key) {
            return Ok(up.clone());
        }
        if let Some(reason) = registry.borrow_and_update().clone() {
            shared.stats.queue_timeouts.fetch_add(1, Ordering::Relaxed);
            return Err(ProxyError::RegistryUnreachable {
                service: service_label(key),
                reason: reason.to_string(),
            });
        }
        let woke = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                r = changes.changed() => r.is_ok(),
                r = registry.changed() => r.is_ok(),
            }
        })
        .await;
        if woke != Ok(true) {
            shared.stats.queue_timeouts.fetch_add(1, Ordering::Relaxed);
            return Err(ProxyError::NoInstance {
                service: service_label(key),
                waited: started.elapsed(),
            });
        }
    }
}
