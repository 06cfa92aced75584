//! Where requests on one client connection go, remembered: clients send
//! the same Host again and again, so the host is normalized only when it
//! changes, and the upstream found for it is reused while the routing
//! table is the same generation and the path cannot change the answer
//! (no `urlprefix-` routes, or a port route).

use crate::error::ProxyError;
use crate::http::full::headers::normalize_host;
use crate::request::forwarding::valid_host;
use crate::request::route::{target, wait_for_upstream};
use crate::table::Upstream;
use crate::Shared;
use std::sync::Arc;

/// The last route of a connection.
#[derive(Default)]
pub struct RouteCache {
    /// The Host value as sent.
    raw_host: Vec<u8>,
    /// It lowercase, without port (what routing and `X-Forwarded-Host` use).
    host: String,
    /// The upstream it led to, and the table generation that said so.
    found: Option<(u64, Arc<Upstream>)>,
    /// Whether the Host value is malformed (`forwarding::valid_host`).
    invalid: bool,
}

impl RouteCache {
    /// Takes this request's Host value; returns it normalized.
    pub fn host(&mut self, raw: &[u8]) -> &str {
        if raw != self.raw_host.as_slice() {
            self.raw_host.clear();
            self.raw_host.extend_from_slice(raw);
            self.host = normalize_host(&String::from_utf8_lossy(raw));
            self.found = None;
            self.invalid = !valid_host(raw);
        }
        &self.host
    }

    /// Whether the Host value last taken is well-formed; checked once
    /// per new value, not per request.
    pub fn host_is_valid(&self) -> bool {
        !self.invalid
    }

    /// The upstream for this request (after [`RouteCache::host`]), and a
    /// path prefix to strip; waits (bounded) for a first instance.
    pub async fn upstream<'p>(
        &mut self,
        shared: &Shared,
        fixed: Option<&Arc<str>>,
        path: impl FnOnce() -> &'p str,
    ) -> Result<(Arc<Upstream>, Option<String>), ProxyError> {
        let target = {
            let table = shared.discovery.current();
            let host_decides = fixed.is_some() || !table.path_matters();
            if let Some((generation, up)) = &self.found {
                if *generation == table.generation && host_decides {
                    return Ok((up.clone(), None));
                }
            }
            let target = if fixed.is_some() {
                target(&table, fixed, &self.host, "")?
            } else {
                target(&table, fixed, &self.host, path())?
            };
            if let Some(up) = table.upstream(&target.key) {
                self.found = host_decides.then(|| (table.generation, up.clone()));
                return Ok((up.clone(), target.strip));
            }
            target
        };
        self.found = None;
        let up = wait_for_upstream(shared, &target.key).await?;
        Ok((up, target.strip))
    }
}
