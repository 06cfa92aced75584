//! shoal's data plane: an HTTP and TCP load balancer whose routing table
//! follows the catalog live. The table is rebuilt beside the hot path on
//! every catalog change and swapped in atomically; requests read it
//! without locks. Requests for a service with no instance yet wait
//! (bounded) instead of failing; failed connects are retried on another
//! instance; instances that keep failing are ejected for a while.
//!
//! HTTP/1.1 takes two paths. The lean path (`lean`, over the wire-level
//! `h1`) serves plain requests with a reusable buffer per connection and
//! plain pooled upstream sockets: it is what keeps the proxy's CPU per
//! request below nginx's. Whatever it does not take (upgrades, `Expect`,
//! chunked or large request bodies, HTTP/1.0, anything malformed or
//! ambiguous) it hands, with the bytes already read, to the general path
//! (`server`, `forward`: hyper), which refuses or serves it as before.
#![forbid(unsafe_code)]

mod balance;
pub mod config;
mod discovery;
mod error;
mod forward;
mod framing;
mod h1;
mod headers;
mod instance;
mod lean;
mod pool;
mod server;
mod stats;
mod table;
mod tcp;

pub use config::{Balance, Cidr, EjectConfig, HashKey, PortRoute, ProxyConfig};
pub use error::ProxyError;

use serde_json::{json, Map, Value};
use shoal_catalog::Catalog;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What every request handler shares.
pub(crate) struct Shared {
    cfg: Arc<ProxyConfig>,
    discovery: Arc<discovery::Discovery>,
    stats: stats::ProxyStats,
    /// Requests waiting for a first instance now.
    queued: AtomicUsize,
}

/// A running proxy: the catalog watch and its routing table. Listeners are
/// added with [`Proxy::serve_http`], [`Proxy::serve_route`].
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

impl Proxy {
    /// Starts following `catalog`; stops when `cancel` fires.
    pub fn start(catalog: Arc<dyn Catalog>, cfg: ProxyConfig, cancel: CancellationToken) -> Proxy {
        let cfg = Arc::new(cfg);
        let discovery = discovery::spawn(catalog, cfg.clone(), cancel);
        Proxy {
            shared: Arc::new(Shared {
                cfg,
                discovery,
                stats: Default::default(),
                queued: AtomicUsize::new(0),
            }),
        }
    }

    /// Serves host- and path-routed HTTP on `listener` until `cancel`.
    pub async fn serve_http(&self, listener: TcpListener, cancel: CancellationToken) {
        server::serve_http(self.shared.clone(), listener, None, cancel).await
    }

    /// Serves a port route: everything on `listener` goes to `route.service`
    /// (over HTTP, or as plain TCP with `route.tcp`).
    pub async fn serve_route(
        &self,
        listener: TcpListener,
        route: &PortRoute,
        cancel: CancellationToken,
    ) {
        if route.tcp {
            tcp::serve_tcp(self.shared.clone(), listener, route.service.clone(), cancel).await
        } else {
            let fixed: Arc<str> = Arc::from(route.service.as_str());
            server::serve_http(self.shared.clone(), listener, Some(fixed), cancel).await
        }
    }

    /// Requests waiting for a first instance right now.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// Counters per service and instance, as `/v1/proxy/stats` shows them.
    pub fn stats_json(&self) -> Value {
        let table = self.shared.discovery.table();
        let mut services = Map::new();
        for up in table.services() {
            let instances: Map<String, Value> = up
                .instances
                .iter()
                .map(|i| {
                    let active = i.state.outstanding.load(Ordering::Relaxed);
                    let mut v = i.state.stats.to_json(active);
                    v["address"] = json!(i.addr.to_string());
                    v["ejected"] = json!(i.state.is_ejected(instance::now_ms()));
                    v["pooled_connections"] = json!(i.state.pool.len() + i.state.streams.len());
                    (i.id.clone(), v)
                })
                .collect();
            services.insert(up.service.clone(), json!({ "instances": instances }));
        }
        json!({ "proxy": self.shared.stats.to_json(), "generation": table.generation, "services": services })
    }

    /// The same counters as metric families (for `/metrics`).
    pub fn metric_families(&self) -> Vec<shoal_catalog::metrics::Family> {
        let table = self.shared.discovery.table();
        let services = table.services();
        let mut instances = Vec::new();
        for up in &services {
            for i in &up.instances {
                instances.push(stats::InstanceSample {
                    service: &up.service,
                    instance: &i.id,
                    stats: &i.state.stats,
                    active: i.state.outstanding.load(Ordering::Relaxed),
                });
            }
        }
        stats::families(&self.shared.stats, &instances)
    }

    /// The same counters in Prometheus text format.
    pub fn prometheus(&self) -> String {
        shoal_catalog::metrics::text::render(&self.metric_families())
    }
}
