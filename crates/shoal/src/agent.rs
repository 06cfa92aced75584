//! The `agent` role: this host's local state (services and checks
//! registered with it), its check runner, its `/v1/agent/*` API (other
//! calls go on to a server) and the anti-entropy sync that keeps the
//! servers' catalog in line, with a heartbeat the servers enforce.

use crate::identity;
use crate::listen::{self, ListenAddr};
use anyhow::Context;
use shoal_agent::{AntiEntropy, CheckRunner, RunnerConfig, SyncConfig};
use shoal_api::{ApiConfig, ApiState, RemoteCatalog, RemoteConfig};
use shoal_catalog::{Catalog, Node, Registration, Registry};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = shoal_catalog::duration::parse(s)?;
    if d < Duration::from_millis(300) {
        return Err(format!("{s} is too short: at least 300ms"));
    }
    Ok(d)
}

/// Flags of `shoal agent`.
#[derive(clap::Args, Debug, Clone)]
pub struct AgentArgs {
    /// Server(s) to sync with, failing over in order (repeatable or comma-separated).
    #[arg(
        long = "registry",
        env = "SHOAL_REGISTRY",
        value_delimiter = ',',
        required = true
    )]
    pub registry: Vec<String>,
    /// Address of the agent's HTTP API (local apps register here; IP or
    /// host name, every address a name resolves to is bound).
    #[arg(long, env = "SHOAL_HTTP_ADDR", default_value_t = listen::default_at(8500))]
    pub http_addr: ListenAddr,
    #[command(flatten)]
    pub https: crate::tls::HttpsArgs,
    /// How the servers' https certificates are trusted (`--ca-file`, ...).
    #[command(flatten)]
    pub registry_tls: crate::tls::ClientTlsArgs,
    /// This host's node name (default: the hostname).
    #[arg(long, env = "SHOAL_NODE_NAME")]
    pub node_name: Option<String>,
    /// This host's address in the catalog (default: the local address
    /// that reaches the first server).
    #[arg(long, env = "SHOAL_ADVERTISE")]
    pub advertise: Option<IpAddr>,
    /// Datacenter name.
    #[arg(long, env = "SHOAL_DATACENTER", default_value = "dc1")]
    pub datacenter: String,
    /// How long servers wait for this agent's heartbeat before its node
    /// and instances leave the catalog.
    #[arg(long, env = "SHOAL_HEARTBEAT_TTL", default_value = "10s", value_parser = parse_duration)]
    pub heartbeat_ttl: Duration,
    /// Runtime worker threads: checks are I/O; one thread is enough for
    /// thousands and wakes no other core.
    #[arg(long, env = "SHOAL_WORKER_THREADS", default_value_t = 1)]
    pub worker_threads: usize,
    /// Keep this node in the catalog when the agent stops cleanly
    /// (default: leave it, as a Consul client does).
    #[arg(long)]
    pub no_leave_on_stop: bool,
    /// The Docker registrator (`--docker`).
    #[command(flatten)]
    pub docker: crate::docker::DockerArgs,
    #[command(flatten)]
    pub access: crate::proxy::AccessLogArg,
    /// The token this agent's own writes to the servers carry (its node,
    /// anti-entropy, check results, the Docker registrator), as Consul's
    /// `acl.tokens.agent`; default: `CONSUL_HTTP_TOKEN`.
    #[arg(long, env = "SHOAL_AGENT_TOKEN", hide_env_values = true)]
    pub agent_token: Option<String>,
}

/// Runs `shoal agent` until a signal arrives.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let tls = args.https.load()?;
    let mut remote = RemoteConfig::new(args.registry.join(","));
    remote.token = args
        .agent_token
        .clone()
        .or_else(|| std::env::var("CONSUL_HTTP_TOKEN").ok())
        .filter(|t| !t.is_empty());
    remote.tls = args.registry_tls.client_tls();
    let servers = RemoteCatalog::new(remote).context("bad --registry")?;
    let node_name = args.node_name.clone().unwrap_or_else(identity::hostname);
    let address = args
        .advertise
        .unwrap_or_else(|| identity::route_ip(servers.base_url()));
    let listeners = listen::bind_tcp(&args.http_addr, "the agent API").await?;
    let locals = listen::addrs(&listeners);
    let https = args.https.bind(tls, "the agent's HTTPS API").await?;
    let config = ApiConfig {
        node_name: node_name.clone(),
        node_id: identity::node_id(None)?,
        datacenter: args.datacenter.clone(),
        node_address: address.to_string(),
        server: false,
    };
    let local = Registry::in_memory();
    local
        .register(Registration {
            node: Node {
                id: config.node_id.clone(),
                name: node_name.clone(),
                address: config.node_address.clone(),
                datacenter: config.datacenter.clone(),
                tagged_addresses: [("lan".to_string(), config.node_address.clone())].into(),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .context("cannot set up the agent's local state")?;

    let cancel = CancellationToken::new();
    tokio::spawn(crate::server::stop_on_signal(cancel.clone()));
    let mut tasks = JoinSet::new();
    let runner = CheckRunner::new(
        local.clone(),
        RunnerConfig {
            node: node_name.clone(),
        },
    )?;
    tasks.spawn(runner.run(cancel.clone()));
    let sync = AntiEntropy::new(
        local.clone(),
        Arc::new(servers.clone()),
        SyncConfig {
            node: node_name.clone(),
            heartbeat_ttl: args.heartbeat_ttl,
            leave_on_stop: !args.no_leave_on_stop,
        },
    );
    tasks.spawn(sync.run(cancel.clone()));
    crate::docker::start(
        &args.docker,
        false,
        false,
        local.clone(),
        &node_name,
        &config.node_address,
        &cancel,
        &mut tasks,
    )?;

    tracing::info!(
        node = %node_name,
        address = %address,
        http = %listen::list(&locals),
        registry = %args.registry.join(","),
        heartbeat_ttl = ?args.heartbeat_ttl,
        "shoal agent started"
    );
    let app = shoal_api::agent_router(
        ApiState::new(local.clone(), Arc::new(config))
            .with_access_log(args.access.access_log)
            .with_remote_acl(servers.clone()),
        servers,
    );
    if let Some(https) = https {
        https.serve("shoal agent: HTTPS API", app.clone(), &cancel, &mut tasks)?;
    }
    for addr in &locals {
        println!("shoal agent: HTTP API listening on http://{addr}");
    }
    let mut listeners = listeners.into_iter();
    let first = listeners.next().context("no agent API listener")?;
    for more in listeners {
        let (app, cancel) = (app.clone(), cancel.clone());
        tasks.spawn(async move {
            if let Err(e) = shoal_api::serve_router(more.socket, app, cancel).await {
                tracing::error!(error = %e, addr = %more.addr, "agent HTTP API failed");
            }
        });
    }
    let served = shoal_api::serve_router(first.socket, app, cancel.clone()).await;
    crate::server::wind_down(&cancel, tasks, &local).await;
    tracing::info!("shoal agent stopped");
    served.context("agent HTTP API failed")
}
