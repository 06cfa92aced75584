//! What the proxy records about each request, whatever the path: the
//! proxy-wide counters for answers it gave itself, and the access log line.

use crate::error::ProxyError;
use crate::Shared;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// A request arrived; returns when it started if the access log is on.
pub fn received(shared: &Shared) -> Option<Instant> {
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    shared.cfg.access_log.then(Instant::now)
}

/// Takes back [`received`] for a request one path passes to another,
/// which counts it again.
pub fn passed_on(shared: &Shared) {
    shared.stats.requests.fetch_sub(1, Ordering::Relaxed);
}

/// Counts a request the proxy answers itself.
pub fn answered_locally(shared: &Shared, e: &ProxyError) {
    match e {
        ProxyError::NoRoute { .. } => shared.stats.no_route.fetch_add(1, Ordering::Relaxed),
        ProxyError::Client(_)
        | ProxyError::HeadTooLarge(_)
        | ProxyError::VersionNotSupported(_)
        | ProxyError::NotImplemented(_) => shared.stats.rejected.fetch_add(1, Ordering::Relaxed),
        ProxyError::Loop { .. } | ProxyError::SeenBefore(_) => {
            tracing::warn!(error = %e, "proxy: request loop refused");
            shared.stats.loops.fetch_add(1, Ordering::Relaxed)
        }
        _ => 0,
    };
}

/// The access log line of one request (when `started` is set).
pub fn log(
    started: Option<Instant>,
    client: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    status: u16,
) {
    if let Some(started) = started {
        tracing::info!(target: "shoal::access", %client, %method, %host, %path, status, ms = started.elapsed().as_millis() as u64, "request");
    }
}
