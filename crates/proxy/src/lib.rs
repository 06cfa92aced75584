//! shoal's data plane: an HTTP and TCP load balancer whose routing table
//! follows the catalog live. The table is rebuilt beside the hot path on
//! every catalog change and swapped in atomically; requests read it
//! without locks. Requests for a service with no instance yet wait
//! (bounded) instead of failing; failed connects are retried on another
//! instance; instances that keep failing are ejected for a while.
//!
//! Layout: `listen` accepts connections and hands each to `http` (where
//! `http::dispatch` picks the plain fast path or the full hyper path for
//! each request, `http::tls` terminates TLS and `http::h2` serves HTTP/2
//! clients) or to `tcp`. `tls` holds the certificates (files and KV) and
//! the TLS towards `proto=https` instances. The rules of a request (routing, waiting,
//! attempts and retries, what counts as an instance failure, forwarding
//! headers, stats and the access log) live once in `request`; each path
//! only implements its exchange with an instance.
#![forbid(unsafe_code)]

mod balance;
pub mod config;
mod discovery;
mod error;
mod http;
mod instance;
mod listen;
mod request;
pub mod sni;
mod stats;
mod table;
mod table_builder;
mod tcp;
pub mod tls;

pub use config::{Balance, Cidr, EjectConfig, HashKey, PortRoute, Proto, ProxyConfig};
pub use error::ProxyError;
pub use listen::{raise_backlog, BACKLOG};
pub use tls::certs::CertFiles;

use arc_swap::ArcSwap;
use serde_json::{json, Map, Value};
use shoal_catalog::Catalog;
use std::net::SocketAddr;
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
    /// Addresses this proxy listens on: an instance there is a loop.
    listeners: ArcSwap<Vec<SocketAddr>>,
    /// This process's name in `Via` (`shoal-<random>`): a request that
    /// carries it came round again.
    via: String,
}

impl Shared {
    /// Whether connecting to `addr` would reach one of this proxy's own
    /// listeners (the same address, or the port of a wildcard listener on
    /// a local address).
    pub(crate) fn is_own_listener(&self, addr: SocketAddr) -> bool {
        let local = |ip: std::net::IpAddr| ip.is_loopback() || ip.is_unspecified();
        self.listeners.load().iter().any(|l| {
            l.port() == addr.port()
                && (l.ip() == addr.ip()
                    || (l.ip().is_unspecified() && local(addr.ip()))
                    || (addr.ip().is_unspecified() && local(l.ip())))
        })
    }

    /// Remembers a listener's address (see [`Shared::is_own_listener`]).
    pub(crate) fn add_listener(&self, addr: SocketAddr) {
        self.listeners.rcu(|now| {
            let mut next = Vec::clone(now);
            next.push(addr);
            next
        });
    }
}

/// A running proxy: the catalog watch and its routing table. Listeners are
/// added with [`Proxy::serve_http`], [`Proxy::serve_https`],
/// [`Proxy::serve_route`].
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
    catalog: Arc<dyn Catalog>,
}

/// What TLS listeners serve: the rustls configuration over the
/// certificate store (files, and KV kept current).
#[derive(Clone)]
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
}

impl Proxy {
    /// Starts following `catalog`; stops when `cancel` fires.
    pub fn start(catalog: Arc<dyn Catalog>, cfg: ProxyConfig, cancel: CancellationToken) -> Proxy {
        let cfg = Arc::new(cfg);
        let discovery = discovery::spawn(catalog.clone(), cfg.clone(), cancel);
        Proxy {
            catalog,
            shared: Arc::new(Shared {
                cfg,
                discovery,
                stats: Default::default(),
                queued: AtomicUsize::new(0),
                listeners: ArcSwap::default(),
                via: format!("shoal-{:08x}", rand::random::<u32>()),
            }),
        }
    }

    /// Serves host- and path-routed HTTP on `listener` until `cancel`.
    pub async fn serve_http(&self, listener: TcpListener, cancel: CancellationToken) {
        listen::serve(
            self.shared.clone(),
            listener,
            listen::Handler::Http(None),
            cancel,
        )
        .await
    }

    /// The certificates of this proxy's TLS listeners: `files` (the first
    /// pair is the default) and the KV's `shoal/certs/<host>` values,
    /// followed until `cancel`. Fails naming a file pair that cannot be
    /// used.
    pub fn tls(&self, files: &[CertFiles], cancel: CancellationToken) -> Result<Tls, String> {
        let unknown = self.shared.stats.unknown_sni.clone();
        let store = Arc::new(tls::certs::CertStore::from_files(files, unknown)?);
        let config = tls::server_config(store.clone())?;
        tokio::spawn(tls::watch_kv(self.catalog.clone(), store, cancel));
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(config),
        })
    }

    /// Serves HTTPS (HTTP/2 or HTTP/1.1 by ALPN) on `listener`, routed by
    /// host and path as [`Proxy::serve_http`] is, until `cancel`.
    pub async fn serve_https(&self, listener: TcpListener, tls: &Tls, cancel: CancellationToken) {
        let handler = listen::Handler::Https(None, tls.acceptor.clone());
        listen::serve(self.shared.clone(), listener, handler, cancel).await
    }

    /// Serves a port route: everything on `listener` goes to `route.service`
    /// (over HTTP, or as plain TCP with `route.tcp`).
    pub async fn serve_route(
        &self,
        listener: TcpListener,
        route: &PortRoute,
        cancel: CancellationToken,
    ) {
        let service: Arc<str> = Arc::from(route.service.as_str());
        let handler = if route.sni {
            listen::Handler::Sni
        } else if route.tcp {
            listen::Handler::Tcp(service)
        } else {
            listen::Handler::Http(Some(service))
        };
        listen::serve(self.shared.clone(), listener, handler, cancel).await
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
                    v["pooled_connections"] = json!(
                        i.state.pool.len()
                            + i.state.streams.len()
                            + usize::from(i.state.h2.is_open())
                    );
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
