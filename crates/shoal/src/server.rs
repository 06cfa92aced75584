//! The `server` and `dev` roles: open the store, start the registry, serve
//! the HTTP API, and shut down cleanly on SIGINT/SIGTERM.

use crate::etcd::client::EtcdClient;
use crate::identity;
use crate::listen::{self, ListenAddr};
use crate::proxy::ProxyOptions;
use anyhow::Context;
use axum::Router;
use shoal_api::{ApiConfig, ApiState};
use shoal_catalog::{
    Catalog, MemoryStore, Node, RedbStore, Registration, Registry, Service, Store,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Flags of `shoal server` and `shoal dev`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address of the HTTP API (IP or host name; every address a name
    /// resolves to is bound).
    #[arg(long, env = "SHOAL_HTTP_ADDR", default_value_t = listen::default_at(8500))]
    pub http_addr: ListenAddr,
    #[command(flatten)]
    pub https: crate::tls::HttpsArgs,
    /// Directory of the durable catalog.
    #[arg(long, env = "SHOAL_DATA_DIR", default_value = "./shoal-data")]
    pub data_dir: PathBuf,
    /// Keep the catalog in memory only (lost on exit).
    #[arg(long, env = "SHOAL_IN_MEMORY")]
    pub in_memory: bool,
    /// This node's name (default: the hostname).
    #[arg(long, env = "SHOAL_NODE_NAME")]
    pub node_name: Option<String>,
    /// Datacenter name.
    #[arg(long, env = "SHOAL_DATACENTER", default_value = "dc1")]
    pub datacenter: String,
    /// This node's address in the catalog (default: the HTTP API's IP; when
    /// that is every address, 127.0.0.1 on a host and the container's own
    /// address in a container).
    #[arg(long, env = "SHOAL_ADVERTISE")]
    pub advertise: Option<std::net::IpAddr>,
    #[command(flatten)]
    pub dns: DnsArgs,
    #[command(flatten)]
    pub store: crate::etcd::StoreArgs,
    #[command(flatten)]
    pub access: crate::proxy::AccessLogArg,
    /// Do not offer the change stream (`/v1/shoal/stream` answers 404), so
    /// shoal proxies and agents follow this server with blocking queries,
    /// as they follow a Consul.
    #[arg(long, env = "SHOAL_NO_STREAM")]
    pub no_stream: bool,
    /// Changes kept in memory for stream consumers to resume from: one
    /// that falls further behind (or reconnects after that many changes)
    /// gets a full snapshot instead.
    #[arg(long, env = "SHOAL_CHANGE_LOG_SIZE", default_value_t = shoal_catalog::changelog::LOG_CAPACITY,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=16_777_216))]
    pub change_log_size: usize,
    #[command(flatten)]
    pub acl: AclArgs,
}

/// Access control (Consul's `acl` block).
#[derive(clap::Args, Debug, Clone)]
pub struct AclArgs {
    /// Check every request's token against ACL rules (Consul's
    /// `acl.enabled`). Bootstrap the first management token with
    /// `PUT /v1/acl/bootstrap` (once).
    #[arg(long, env = "SHOAL_ACL_ENABLED")]
    pub acl_enabled: bool,
    /// What no rule covers: `deny` (the production setting) or `allow`.
    #[arg(long, env = "SHOAL_ACL_DEFAULT_POLICY", default_value = "allow",
          value_parser = ["allow", "deny"])]
    pub acl_default_policy: String,
    /// Token used by requests without one and by DNS (Consul's
    /// `acl.tokens.default`); else the anonymous token.
    #[arg(long, env = "SHOAL_ACL_DEFAULT_TOKEN", hide_env_values = true)]
    pub acl_default_token: Option<String>,
}

impl AclArgs {
    /// The API's ACL settings.
    pub fn config(&self) -> shoal_api::acl::AclConfig {
        shoal_api::acl::AclConfig {
            enabled: self.acl_enabled,
            default_allow: self.acl_default_policy == "allow",
            default_token: self.acl_default_token.clone().filter(|t| !t.is_empty()),
        }
    }
}

/// Flags of the DNS interface (part of `shoal server` and `shoal dev`).
#[derive(clap::Args, Debug, Clone)]
pub struct DnsArgs {
    /// Address of the DNS interface, UDP and TCP on the same port (port 0:
    /// any free port, announced on stdout).
    #[arg(long, env = "SHOAL_DNS_ADDR", default_value_t = listen::default_at(8600))]
    pub dns_addr: ListenAddr,
    /// Domain answered authoritatively (`web.service.consul`).
    #[arg(long, env = "SHOAL_DNS_DOMAIN", default_value = "consul.")]
    pub dns_domain: String,
    /// Upstream DNS server (IP or IP:PORT, default port 53) for names
    /// outside the domain; repeatable, tried in order. Without one, such
    /// queries are refused.
    #[arg(long = "recursor", value_name = "ADDR", value_parser = parse_recursor)]
    pub recursors: Vec<SocketAddr>,
    /// TTL of a service's records, NAME=DURATION (e.g. web=30s; `*` as a
    /// suffix wildcard, `*=5s` for every service); repeatable. Default 0.
    #[arg(long = "dns-service-ttl", value_name = "NAME=DURATION")]
    pub dns_service_ttl: Vec<String>,
    /// TTL of node records (Go duration, e.g. 10s).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub dns_node_ttl: Duration,
}

fn parse_recursor(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| {
            s.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .map_err(|_| format!("{s:?} is not an IP address or IP:PORT"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    shoal_catalog::duration::parse(s)
}

impl DnsArgs {
    fn config(&self, datacenter: &str) -> anyhow::Result<shoal_dns::DnsConfig> {
        let service_ttl = shoal_dns::ServiceTtl::parse(&self.dns_service_ttl)
            .context("invalid --dns-service-ttl")?;
        shoal_dns::DnsConfig {
            domain: self.dns_domain.clone(),
            datacenter: datacenter.to_string(),
            node_ttl: self.dns_node_ttl,
            service_ttl,
            recursors: self.recursors.clone(),
            ..Default::default()
        }
        .validated()
        .context("invalid DNS settings")
    }
}

fn open_store(args: &ServerArgs) -> anyhow::Result<Box<dyn Store>> {
    if args.in_memory {
        return Ok(Box::new(MemoryStore));
    }
    let store = RedbStore::open(&args.data_dir)
        .with_context(|| format!("data dir {} is unusable", args.data_dir.display()))?;
    Ok(Box::new(store))
}

/// Opens the registry on the store the flags name: the embedded one, or
/// an etcd cluster shared with other servers.
async fn open_registry(
    args: &ServerArgs,
) -> anyhow::Result<(Arc<Registry>, Option<Arc<EtcdClient>>)> {
    if args.store.store == crate::etcd::StoreKind::Embedded {
        let store = open_store(args)?;
        let registry = Registry::open_with_log(store, args.change_log_size)
            .context("cannot load the catalog")?;
        return Ok((registry, None));
    }
    let config = args
        .store
        .etcd_config()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let client = Arc::new(EtcdClient::new(&config).map_err(|e| anyhow::anyhow!("{e}"))?);
    let store = crate::etcd::store::EtcdStore::new(
        client.clone(),
        &args.store.etcd_prefix,
        tokio::runtime::Handle::current(),
    );
    let endpoints = config.endpoints.join(",");
    let log_size = args.change_log_size;
    let registry = tokio::task::spawn_blocking(move || {
        Registry::open_shared_with_log(Arc::new(store), log_size)
    })
    .await
    .context("loading the catalog")?
    .with_context(|| format!("cannot load the catalog from etcd at {endpoints}"))?;
    Ok((registry, Some(client)))
}

/// On etcd: joins the cluster of servers (a lease-kept key), registers
/// this server's `consul` service, shares heartbeats, and reaps dead
/// agents only while this server leads (see `etcd/cluster.rs`).
async fn join_cluster(
    client: Arc<EtcdClient>,
    args: &ServerArgs,
    registry: &Arc<Registry>,
    config: &ApiConfig,
    http: SocketAddr,
    cancel: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<(Arc<crate::etcd::cluster::Cluster>, Router)> {
    use crate::etcd::cluster::{Cluster, SERVER_SERVICE};
    use crate::etcd::forward;
    let address = format!("{}:{}", config.node_address, http.port());
    let token = forward::cluster_token(&client, &args.store.etcd_prefix)
        .await
        .context("cannot read the catalog's forwarding token from etcd")?;
    let cluster = Cluster::new(client, &args.store.etcd_prefix, &config.node_name, &address);
    let lease = cluster.join_now().await;
    tasks.spawn(cluster.clone().run(lease, cancel.clone()));
    cluster.share_beats(registry, cancel.clone());
    if let Some(node) = registry.snapshot().node(&config.node_name) {
        registry
            .register(Registration {
                node: (*node).clone(),
                service: Some(Service {
                    id: SERVER_SERVICE.into(),
                    name: SERVER_SERVICE.into(),
                    address: config.node_address.clone(),
                    port: http.port(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .context("cannot register this server's consul service")?;
    }
    crate::etcd::renewals::share(
        cluster.client(),
        &args.store.etcd_prefix,
        &config.node_name,
        registry,
        cancel.clone(),
    );
    // Only the leader acts on expiries: of agents, servers and sessions.
    let (r, c) = (registry.clone(), cluster.clone());
    tasks.spawn(cluster.clone().while_leading(cancel.clone(), move |term| {
        let (r, c) = (r.clone(), c.clone());
        async move {
            tokio::join!(
                shoal_agent::reap_dead_agents(r.clone(), term.clone()),
                expire_sessions(r.clone(), term.clone()),
                c.reap_servers(r, term)
            );
        }
    }));
    // From here on, writes go to the leading server (it batches them all).
    let forwarder = forward::LeaderForwarder::new(cluster.clone(), token.clone(), address)
        .context("cannot build the HTTP client that forwards writes")?;
    registry
        .forward_writes(Arc::new(forwarder))
        .context("cannot forward writes")?;
    Ok((cluster, forward::routes(registry.clone(), token)))
}

/// Invalidates sessions whose TTL ran out until `cancel` fires (on etcd:
/// while this server leads; it then starts every timer from a full TTL).
async fn expire_sessions(registry: Arc<Registry>, cancel: CancellationToken) {
    tokio::select! {
        _ = shoal_catalog::expire_sessions(registry) => {}
        _ = cancel.cancelled() => {}
    }
}

/// Flags of `shoal dev`: the server's, the proxy's, and demo instances.
#[derive(clap::Args, Debug, Clone)]
pub struct DevArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub proxy: ProxyOptions,
    /// Start this many `shoal hello` instances of service `hello`, so
    /// http://hello.localhost:8080/ shows round robin at once.
    #[arg(long, default_value_t = 0)]
    pub demo: usize,
    /// The Docker registrator: on when Docker's socket exists (`--no-docker`).
    #[command(flatten)]
    pub docker: crate::docker::DockerArgs,
}

/// Runs `shoal server` until a signal arrives.
pub async fn run(args: ServerArgs, role: &str) -> anyhow::Result<()> {
    run_with(args, role, None).await
}

/// Runs `shoal dev` until a signal arrives.
pub async fn run_dev(args: DevArgs) -> anyhow::Result<()> {
    let DevArgs {
        mut server,
        mut proxy,
        demo,
        docker,
    } = args;
    proxy.access_log = server.access.access_log;
    // One certificate in dev: the API's serves the proxy's TLS listeners too.
    if let (Some(cert), Some(key)) = (&server.https.tls_cert, &server.https.tls_key) {
        proxy.tls_files = vec![shoal_proxy::CertFiles {
            cert: cert.clone(),
            key: key.clone(),
        }];
        // Given for the proxy alone: the API stays plain HTTP.
        if server.https.https_addr.is_none() && !proxy.tls_listen.is_empty() {
            (server.https.tls_cert, server.https.tls_key) = (None, None);
        }
    }
    run_with(server, "dev", Some((proxy, demo, docker))).await
}

async fn run_with(
    args: ServerArgs,
    role: &str,
    dev: Option<(ProxyOptions, usize, crate::docker::DockerArgs)>,
) -> anyhow::Result<()> {
    // Every flag is checked before anything is opened or bound.
    let mut dns_config = args.dns.config(&args.datacenter)?;
    if args.acl.acl_enabled {
        let acl = args.acl.config();
        dns_config.acl = Some(shoal_dns::DnsAcl {
            token: acl.default_token,
            default_allow: acl.default_allow,
        });
    }
    let tls = args.https.load()?;
    if !args.in_memory {
        // The node ID is kept there (on etcd, only that), before the store opens.
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("data dir {} is unusable", args.data_dir.display()))?;
    }
    let node_id = identity::node_id((!args.in_memory).then_some(args.data_dir.as_path()))?;
    let (registry, etcd) = open_registry(&args).await?;
    let listeners = listen::bind_tcp(&args.http_addr, "the HTTP API").await?;
    let local = listeners[0].addr;
    let https = args.https.bind(tls, "the HTTPS API").await?;
    let dns_sockets = listen::bind_all(&args.dns.dns_addr, "DNS", shoal_dns::bind, |s| {
        s.0.local_addr()
    })
    .await?;
    for s in &dns_sockets {
        shoal_proxy::raise_backlog(&s.socket.1);
    }
    let (address, address_from) = node_address(args.advertise, local.ip());
    let config = ApiConfig {
        node_name: args.node_name.clone().unwrap_or_else(identity::hostname),
        node_id,
        datacenter: args.datacenter.clone(),
        node_address: address.clone(),
        server: true,
    };
    shoal_api::register_local_node(&registry, &config)
        .await
        .context("cannot register this node in the catalog")?;
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    let mut tasks = JoinSet::new();
    // This node's checks (services registered through /v1/agent/*) run
    // here, as on a Consul server; agents' nodes expire without heartbeats.
    let runner = shoal_agent::CheckRunner::new(
        registry.clone(),
        shoal_agent::RunnerConfig {
            node: config.node_name.clone(),
        },
    )?;
    tasks.spawn(runner.run(cancel.clone()));
    let mut extra = Router::new();
    let cluster = match etcd {
        Some(client) => {
            let (cluster, routes) = join_cluster(
                client, &args, &registry, &config, local, &cancel, &mut tasks,
            )
            .await?;
            extra = extra.merge(routes);
            Some(cluster)
        }
        None => {
            tasks.spawn(shoal_agent::reap_dead_agents(
                registry.clone(),
                cancel.clone(),
            ));
            // Sessions whose TTL ran out are invalidated here, the one writer.
            tasks.spawn(expire_sessions(registry.clone(), cancel.clone()));
            None
        }
    };
    let (http_locals, dns_locals) = (listen::addrs(&listeners), listen::addrs(&dns_sockets));
    // Each address is served on its own; a second one (::1 beside
    // 127.0.0.1) costs one more view of the catalog.
    for listen::Bound {
        socket: (udp, tcp), ..
    } in dns_sockets
    {
        let (registry, cancel, config) = (registry.clone(), cancel.clone(), dns_config.clone());
        tasks.spawn(async move {
            if let Err(e) = shoal_dns::serve(udp, tcp, registry, config, cancel).await {
                tracing::error!(error = %e, "DNS server failed");
            }
        });
    }
    if !args.acl.acl_enabled {
        let https_addrs = https.as_ref().map(|h| h.addrs()).unwrap_or_default();
        for addr in listeners.iter().map(|l| l.addr).chain(https_addrs) {
            if !addr.ip().is_loopback() {
                tracing::warn!(
                    addr = %addr,
                    "the HTTP API listens beyond the loopback with ACLs off: anyone who reaches it can change the catalog; run with --acl-enabled --acl-default-policy deny"
                );
            }
        }
    }
    let mut state = ApiState::new(registry.clone(), Arc::new(config.clone()))
        .with_acl(args.acl.config())
        .with_access_log(args.access.access_log)
        .with_stream(!args.no_stream);
    if let Some(cluster) = cluster {
        state = state.with_servers(cluster);
    }
    if let Some((proxy_options, demo, docker)) = dev {
        let catalog: Arc<dyn Catalog> = registry.clone();
        let proxy =
            crate::proxy::start(&proxy_options, catalog, cancel.clone(), &mut tasks).await?;
        extra = extra
            .merge(shoal_api::acl::agent_read_only(
                crate::proxy::stats_json_route(proxy.clone()),
                state.clone(),
            ))
            .merge(shoal_api::ui_routes::root_redirect());
        state = state.with_metrics(crate::proxy::metric_source(proxy));
        start_demo(&registry, &config, demo, &cancel).await?;
        crate::docker::start(
            &docker,
            true,
            true,
            registry.clone(),
            &config.node_name,
            &config.node_address,
            &cancel,
            &mut tasks,
        )?;
    }
    tracing::info!(
        role,
        http = %listen::list(&http_locals),
        dns = %listen::list(&dns_locals),
        node = %config.node_name,
        address = %address,
        address_from,
        datacenter = %config.datacenter,
        store = match (args.store.store, args.in_memory) {
            (crate::etcd::StoreKind::Etcd, _) => "etcd",
            (_, true) => "memory",
            _ => "redb",
        },
        index = registry.snapshot().index(),
        "shoal started"
    );
    // Stable, parseable lines for people and for test harnesses; the HTTP
    // API's come last: they say the process is ready.
    for dns in &dns_locals {
        println!("shoal {role}: DNS listening on dns://{dns} (UDP and TCP)");
    }
    if let Some(https) = https {
        let app = shoal_api::router(state.clone()).merge(extra.clone());
        https.serve(
            &format!("shoal {role}: HTTPS API"),
            app,
            &cancel,
            &mut tasks,
        )?;
    }
    let mut listeners = listeners.into_iter();
    let first = listeners.next().context("no HTTP API listener")?;
    println!("shoal {role}: HTTP API listening on http://{}", first.addr);
    for more in listeners {
        println!("shoal {role}: HTTP API listening on http://{}", more.addr);
        let (state, extra, cancel) = (state.clone(), extra.clone(), cancel.clone());
        tasks.spawn(async move {
            if let Err(e) = shoal_api::serve_with(more.socket, state, extra, cancel).await {
                tracing::error!(error = %e, addr = %more.addr, "HTTP API server failed");
            }
        });
    }
    let served = shoal_api::serve_with(first.socket, state, extra, cancel.clone()).await;
    wind_down(&cancel, tasks, &registry).await;
    tracing::info!("shoal stopped");
    served.context("HTTP API server failed")
}

/// After the API stopped: stops every task (giving them a few seconds to
/// finish, e.g. an agent leaving the catalog), then the registry's writer.
pub(crate) async fn wind_down(
    cancel: &CancellationToken,
    mut tasks: JoinSet<()>,
    registry: &Registry,
) {
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(6), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    registry.shutdown().await;
}

/// The server's node address: `--advertise`, else the API's own IP, else
/// (listening on every address) the container's own address in a
/// container, 127.0.0.1 on a host; and where it came from, for the log.
fn node_address(
    advertise: Option<std::net::IpAddr>,
    bound: std::net::IpAddr,
) -> (String, &'static str) {
    let (ip, from) = match advertise {
        Some(ip) => (ip, "--advertise"),
        None if !bound.is_unspecified() => (bound, "the HTTP API's address"),
        None => match crate::container::detected().and(crate::container::own_address()) {
            Some(own) => (own, "this container's address on its default route"),
            None => (
                std::net::Ipv4Addr::LOCALHOST.into(),
                "loopback (API on every address)",
            ),
        },
    };
    (ip.to_string(), from)
}

/// Starts `count` hello instances on 127.0.0.1 and registers them as
/// service `hello` on this node.
async fn start_demo(
    registry: &Registry,
    config: &ApiConfig,
    count: usize,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    for _ in 0..count {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot listen for a demo instance")?;
        let port = listener
            .local_addr()
            .context("listener has no address")?
            .port();
        let id = crate::hello::serve_embedded(listener, "hello", cancel.clone())?;
        let node = Node {
            name: config.node_name.clone(),
            ..Default::default()
        };
        let service = Service {
            id: id.clone(),
            name: "hello".into(),
            address: "127.0.0.1".into(),
            port,
            tags: vec!["demo".into()],
            ..Default::default()
        };
        registry
            .register(Registration {
                node,
                skip_node_update: true,
                service: Some(service),
                // The runner keeps it honest: PUT /health/fail on an
                // instance and watch the proxy leave it out.
                checks: vec![shoal_catalog::Check {
                    check_id: format!("service:{id}"),
                    name: "Service 'hello' check".into(),
                    status: shoal_catalog::HealthStatus::Passing,
                    service_id: id.clone(),
                    definition: shoal_catalog::CheckDefinition {
                        http: format!("http://127.0.0.1:{port}/health"),
                        interval: Some(Duration::from_secs(5)),
                        timeout: Some(Duration::from_secs(2)),
                        ..Default::default()
                    },
                    ..Default::default()
                }],
            })
            .await
            .context("cannot register a demo instance")?;
        println!("shoal dev: demo instance {id} on http://127.0.0.1:{port}");
    }
    Ok(())
}

pub(crate) async fn stop_on_signal(cancel: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term => tracing::info!("SIGTERM: shutting down"),
    }
    cancel.cancel();
}
