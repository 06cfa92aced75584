//! The `proxy` role (a standalone load balancer following a registry over
//! its HTTP API) and the proxy part of `shoal dev`.

use crate::listen::{self, ListenAddr};
use crate::route_flag::{RouteFlag, RouteKind};
use anyhow::Context;
use axum::routing::get;
use axum::Router;
use shoal_catalog::Catalog;
use shoal_proxy::{Balance, Cidr, PortRoute, Proxy, ProxyConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

fn parse_duration(s: &str) -> Result<Duration, String> {
    shoal_catalog::duration::parse(s)
}

/// Proxy flags shared by `shoal proxy` and `shoal dev`.
#[derive(clap::Args, Debug, Clone)]
pub struct ProxyOptions {
    /// Host-routed HTTP listener.
    #[arg(
        long = "listen",
        env = "SHOAL_PROXY_LISTEN",
        default_value_t = listen::default_at(8080)
    )]
    pub listen: ListenAddr,
    /// `Host: <service>.<domain>` routes to the service.
    #[arg(long, env = "SHOAL_DOMAIN", default_value = "localhost")]
    pub domain: String,
    /// Default balancing: round_robin, least_outstanding, hash_ip,
    /// hash_header:NAME, hash_cookie:NAME (a `shoal.balance=` tag overrides).
    #[arg(long, env = "SHOAL_BALANCE", default_value = "round_robin")]
    pub balance: Balance,
    /// Extra listener for one service: ADDR=SERVICE (HTTP; also
    /// ADDR=SERVICE/http) or ADDR=SERVICE/tcp (repeatable).
    #[arg(long = "route", value_name = "ADDR=SERVICE[/KIND]")]
    pub routes: Vec<RouteFlag>,
    /// How long a request waits for a service with no instance yet.
    #[arg(long, env = "SHOAL_QUEUE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub queue_timeout: Duration,
    /// Attempts on other instances after a failed one.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub retries: u8,
    /// Per attempt: time to connect to an instance.
    #[arg(long, env = "SHOAL_CONNECT_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Per attempt: time from sending a request to the first byte of the
    /// answer; past it the instance counts as failed and an idempotent
    /// request goes to another one.
    #[arg(long, env = "SHOAL_UPSTREAM_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,
    /// Peers whose X-Forwarded-* headers are believed (address or CIDR, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub trusted_proxies: Vec<Cidr>,
    /// Log one line per request (target shoal::access): set from the
    /// role's `--access-log` ([`AccessLogArg`]), shared with the API in `dev`.
    #[arg(skip)]
    pub access_log: bool,
    /// Also send an RFC 7239 `Forwarded` header to the instances.
    #[arg(long)]
    pub forwarded: bool,
    /// Runtime worker threads (default: one per core).
    #[arg(long, env = "SHOAL_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// HTTPS listener (TLS terminated here; HTTP/2 or HTTP/1.1 by ALPN),
    /// routed by host as --listen is (repeatable). Certificates: the
    /// --tls-cert/--tls-key pairs, and KV values under shoal/certs/<host>.
    #[arg(long = "tls-listen", value_name = "ADDR")]
    pub tls_listen: Vec<ListenAddr>,
    /// Certificate files of the TLS listeners (the first pair is the
    /// default): set from `shoal proxy`'s --tls-cert/--tls-key, or in
    /// `shoal dev` from the API's.
    #[arg(skip)]
    pub tls_files: Vec<shoal_proxy::CertFiles>,
}

/// `shoal proxy`'s certificate flags for --tls-listen.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ProxyCertArgs {
    /// Certificate chain (PEM) for --tls-listen, leaf first; repeatable,
    /// each with its --tls-key in the same order. The certificate for a
    /// connection is the one valid for the name it asks for (SNI); the
    /// first is the default.
    #[arg(long = "tls-cert", value_name = "FILE")]
    pub tls_cert: Vec<std::path::PathBuf>,
    /// Private key (PEM) of the --tls-cert at the same position.
    #[arg(long = "tls-key", value_name = "FILE")]
    pub tls_key: Vec<std::path::PathBuf>,
}

impl ProxyCertArgs {
    /// The pairs, or what is wrong with the flags.
    pub fn pairs(&self) -> anyhow::Result<Vec<shoal_proxy::CertFiles>> {
        if self.tls_cert.len() != self.tls_key.len() {
            anyhow::bail!(
                "{} --tls-cert and {} --tls-key given: give one --tls-key for each --tls-cert, in the same order",
                self.tls_cert.len(),
                self.tls_key.len()
            );
        }
        Ok(self
            .tls_cert
            .iter()
            .zip(&self.tls_key)
            .map(|(cert, key)| shoal_proxy::CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            })
            .collect())
    }
}

impl ProxyOptions {
    fn config(&self) -> ProxyConfig {
        ProxyConfig {
            domain: self.domain.clone(),
            balance: self.balance.clone(),
            queue_timeout: self.queue_timeout,
            retries: usize::from(self.retries),
            connect_timeout: self.connect_timeout,
            answer_timeout: self.upstream_timeout,
            trusted_proxies: self.trusted_proxies.clone(),
            access_log: self.access_log,
            forwarded: self.forwarded,
            ..ProxyConfig::default()
        }
    }
}

/// `--access-log`, one flag per role: in `shoal dev` it logs the API's
/// requests and the proxy's alike.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AccessLogArg {
    /// Log one line per request (target shoal::access).
    #[arg(long)]
    pub access_log: bool,
}

/// Flags of `shoal proxy`.
#[derive(clap::Args, Debug, Clone)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub options: ProxyOptions,
    #[command(flatten)]
    pub access: AccessLogArg,
    #[command(flatten)]
    pub certs: ProxyCertArgs,
    /// Registry HTTP API to follow (a shoal server or a Consul agent).
    #[arg(
        long,
        env = "CONSUL_HTTP_ADDR",
        default_value = "http://127.0.0.1:8500"
    )]
    pub registry: String,
    /// How the registry's https certificate is trusted (`--ca-file`, ...).
    #[command(flatten)]
    pub registry_tls: crate::tls::ClientTlsArgs,
    /// Where to serve /v1/proxy/stats and /metrics.
    #[arg(long, env = "SHOAL_STATS_ADDR", default_value_t = listen::default_at(9180))]
    pub stats_addr: ListenAddr,
    /// Follow the registry with blocking queries even when it offers shoal's
    /// change stream (as against a Consul).
    #[arg(long, env = "SHOAL_NO_STREAM")]
    pub no_stream: bool,
    /// ACL token the proxy reads the catalog with (it needs `service_prefix
    /// ""` and `node_prefix ""` read, and with --tls-listen `key_prefix
    /// "shoal/certs/"` read).
    #[arg(long, env = "CONSUL_HTTP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `/v1/proxy/stats` (JSON): beside the API in `shoal dev`, whose
/// `/metrics` then includes the proxy's ([`metric_source`]).
pub fn stats_json_route(proxy: Proxy) -> Router {
    Router::new().route(
        "/v1/proxy/stats",
        get(move || {
            let p = proxy.clone();
            async move {
                let body = serde_json::to_string_pretty(&p.stats_json()).unwrap_or_default();
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        }),
    )
}

/// The proxy's metrics, for the API's `/metrics` in `shoal dev`.
pub fn metric_source(proxy: Proxy) -> shoal_api::MetricSource {
    Arc::new(move || proxy.metric_families())
}

/// `/v1/proxy/stats` (JSON) and `/metrics` (Prometheus text) for
/// `proxy`, passed through `guard` (ACLs), and the dashboard's pages.
pub fn stats_routes(proxy: Proxy, guard: impl FnOnce(Router) -> Router) -> Router {
    guard(stats_data_routes(proxy))
        .merge(shoal_api::ui_routes::routes())
        .merge(shoal_api::ui_routes::root_redirect())
}

fn stats_data_routes(proxy: Proxy) -> Router {
    let p = proxy.clone();
    stats_json_route(proxy).route(
        "/metrics",
        get(move || {
            let p = p.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        shoal_catalog::metrics::text::CONTENT_TYPE,
                    )],
                    p.prometheus(),
                )
            }
        }),
    )
}

/// Binds every listener first (so a taken port fails start-up clearly),
/// then serves them all until `cancel`.
pub async fn start(
    options: &ProxyOptions,
    catalog: Arc<dyn Catalog>,
    cancel: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<Proxy> {
    let main = listen::bind_tcp(&options.listen, "the proxy").await?;
    let mut secure = Vec::new();
    for addr in &options.tls_listen {
        secure.extend(listen::bind_tcp(addr, "the proxy's TLS listener").await?);
    }
    let mut routes = Vec::new();
    for flag in &options.routes {
        let what = format!("the route to {}", flag.service);
        for bound in listen::bind_tcp(&flag.listen, &what).await? {
            let route = PortRoute {
                listen: bound.addr,
                service: flag.service.clone(),
                tcp: flag.kind == RouteKind::Tcp,
                sni: flag.kind == RouteKind::Sni,
            };
            routes.push((bound.socket, route, flag.kind));
        }
    }
    let proxy = Proxy::start(catalog, options.config(), cancel.clone());
    for bound in main {
        println!(
            "shoal proxy: listening on http://{} (http://<service>.{}:{})",
            bound.addr,
            options.domain,
            bound.addr.port()
        );
        let (p, c) = (proxy.clone(), cancel.clone());
        tasks.spawn(async move { p.serve_http(bound.socket, c).await });
    }
    if !secure.is_empty() {
        let tls = proxy
            .tls(&options.tls_files, cancel.clone())
            .map_err(|e| anyhow::anyhow!("--tls-cert/--tls-key: {e}"))?;
        if options.tls_files.is_empty() {
            println!("shoal proxy: no --tls-cert given: TLS listeners serve only the certificates under KV shoal/certs/<host>");
        }
        for bound in secure {
            println!(
                "shoal proxy: TLS listening on https://{} (https://<service>.{}:{}, HTTP/2 and HTTP/1.1)",
                bound.addr,
                options.domain,
                bound.addr.port()
            );
            let (p, c, t) = (proxy.clone(), cancel.clone(), tls.clone());
            tasks.spawn(async move { p.serve_https(bound.socket, &t, c).await });
        }
    }
    for (listener, route, kind) in routes {
        println!(
            "shoal proxy: route to {} listening on {}://{}",
            route.service,
            kind.name(),
            route.listen
        );
        let (p, c) = (proxy.clone(), cancel.clone());
        tasks.spawn(async move { p.serve_route(listener, &route, c).await });
    }
    Ok(proxy)
}

/// Runs `shoal proxy` until a signal arrives.
pub async fn run(mut args: ProxyArgs) -> anyhow::Result<()> {
    args.options.access_log = args.access.access_log;
    args.options.tls_files = args.certs.pairs()?;
    let mut config = shoal_api::RemoteConfig::new(args.registry.clone());
    config.stream = !args.no_stream;
    config.tls = args.registry_tls.client_tls();
    config.token = args.token.clone().filter(|t| !t.is_empty());
    let catalog = shoal_api::RemoteCatalog::new(config).context("bad --registry")?;
    // Callers of the statistics are checked with the servers' ACLs (with
    // their own tokens: `forward` sends only the caller's headers).
    let servers = catalog.clone();
    let cancel = CancellationToken::new();
    tokio::spawn(crate::server::stop_on_signal(cancel.clone()));
    let mut tasks = JoinSet::new();
    let proxy = start(&args.options, Arc::new(catalog), cancel.clone(), &mut tasks).await?;
    let node = crate::identity::hostname();
    let app = stats_routes(proxy, |r| {
        shoal_api::acl::agent_read_only_remote(r, servers, node)
    });
    for stats in listen::bind_tcp(&args.stats_addr, "proxy stats").await? {
        println!("shoal proxy: stats listening on http://{}", stats.addr);
        let (app, c) = (app.clone(), cancel.clone());
        tasks.spawn(async move {
            let _ = axum::serve(stats.socket, app)
                .with_graceful_shutdown(c.cancelled_owned())
                .await;
        });
    }
    tracing::info!(registry = %args.registry, "shoal proxy started");
    while tasks.join_next().await.is_some() {}
    tracing::info!("shoal proxy stopped");
    Ok(())
}
