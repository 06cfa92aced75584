//! `--docker` and the registrator's flags, shared by `shoal agent` (off
//! unless asked) and `shoal dev` (on when Docker's socket is there).

use shoal_agent::docker::{Deregister, DockerConfig, Registrator, Settings, DEFAULT_SOCKET};
use shoal_catalog::Registry;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

fn parse_resync(s: &str) -> Result<Duration, String> {
    let d = shoal_catalog::duration::parse(s)?;
    if d < Duration::from_secs(1) {
        return Err(format!("{s} is too short: at least 1s"));
    }
    Ok(d)
}

/// The Docker registrator's flags (gliderlabs/registrator's, same names).
#[derive(clap::Args, Debug, Clone)]
pub struct DockerArgs {
    /// Register this host's Docker containers (registrator's SERVICE_*
    /// conventions), from the daemon at URL (default: $DOCKER_HOST, else
    /// unix:///var/run/docker.sock). On by default in `shoal dev` when the
    /// socket exists.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "", env = "SHOAL_DOCKER")]
    pub docker: Option<String>,
    /// Do not watch Docker (`shoal dev`); `--docker` wins over it.
    #[arg(long, env = "SHOAL_NO_DOCKER")]
    pub no_docker: bool,
    /// Register containers' own IPs and exposed ports instead of published ports.
    #[arg(long)]
    pub internal: bool,
    /// Address registered for ports published on every host address
    /// (default: this node's address).
    #[arg(long, value_name = "IP")]
    pub ip: Option<IpAddr>,
    /// Also reconcile with Docker's container list this often (e.g. 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_resync)]
    pub resync: Option<Duration>,
    /// Remove this node's registrator instances whose container no longer runs.
    #[arg(long)]
    pub cleanup: bool,
    /// Only register containers that have a SERVICE_NAME (or SERVICE_<port>_NAME).
    #[arg(long)]
    pub explicit: bool,
    /// Tags added to every container instance (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub tags: Vec<String>,
    /// When a stopped container leaves the catalog: always, or on-success
    /// (only after exit code 0).
    #[arg(long, value_name = "always|on-success", default_value = "always")]
    pub deregister: Deregister,
    /// The Docker network containers are reached on when they name none
    /// (SERVICE_NETWORK / label shoal.network): a container on it is
    /// registered at its address there, with its exposed ports.
    #[arg(long, value_name = "NAME", env = "SHOAL_DOCKER_NETWORK")]
    pub network: Option<String>,
    /// The proxy's container (name or ID): a container sharing one of its
    /// networks is registered at its address on it. Default: this
    /// container, when shoal itself runs in one of the daemon's containers
    /// and serves the proxy (`shoal dev`).
    #[arg(long, value_name = "CONTAINER", env = "SHOAL_PROXY_CONTAINER")]
    pub proxy_container: Option<String>,
    /// Register containers' IPv6 addresses on dual-stack networks.
    #[arg(long)]
    pub prefer_ipv6: bool,
    /// Name instances after their docker-compose service when they have no
    /// SERVICE_NAME (instead of the image's name).
    #[arg(long, env = "SHOAL_COMPOSE_NAMES")]
    pub compose_names: bool,
}

impl DockerArgs {
    /// The daemon to watch, if any: asked for with `--docker`, or (when
    /// `auto`, in `shoal dev`) Docker's socket exists and `--no-docker` is
    /// not given.
    fn url(&self, auto: bool) -> Option<String> {
        let default = || {
            std::env::var("DOCKER_HOST")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| DEFAULT_SOCKET.to_string())
        };
        match &self.docker {
            Some(url) if !url.is_empty() => Some(url.clone()),
            Some(_) => Some(default()),
            None if auto && !self.no_docker => {
                let url = default();
                let path = url.strip_prefix("unix://").unwrap_or(&url);
                (!url.starts_with("unix://") || std::path::Path::new(path).exists()).then_some(url)
            }
            None => None,
        }
    }
}

/// Starts the registrator on `node` of `registry` if the flags (or, with
/// `auto`, the socket's presence) ask for it. `serves_proxy`: this process
/// is the proxy too (`shoal dev`), so its own container is the proxy's.
/// The address registered for ports published on every host address:
/// `--ip`; else, in one of the daemon's own containers (where the node
/// address is the container's, not the host's), the container's default
/// gateway, which is the Docker host on that network; else the node's
/// address. Logged with where it came from.
fn host_ip(args: &DockerArgs, node_address: &str) -> String {
    let (ip, from) = match args.ip {
        Some(ip) => (ip.to_string(), "--ip"),
        None => match crate::container::self_id().and(crate::container::default_gateway()) {
            Some(gw) => (
                gw.to_string(),
                "this container's default gateway (the Docker host); set --ip to the host's address if other hosts must reach published ports",
            ),
            None => (node_address.to_string(), "the node address"),
        },
    };
    tracing::info!(address = %ip, from, "Docker registrator: published ports are registered at this address");
    ip
}

#[allow(clippy::too_many_arguments)]
pub fn start(
    args: &DockerArgs,
    auto: bool,
    serves_proxy: bool,
    registry: Arc<Registry>,
    node: &str,
    node_address: &str,
    cancel: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let Some(url) = args.url(auto) else {
        return Ok(());
    };
    let config = DockerConfig {
        url: url.clone(),
        node: node.to_string(),
        settings: Settings {
            hostname: node.to_string(),
            host_ip: host_ip(args, node_address),
            internal: args.internal,
            explicit: args.explicit,
            tags: args.tags.clone(),
            network: args.network.clone(),
            proxy_networks: Vec::new(),
            prefer_ipv6: args.prefer_ipv6,
            compose_names: args.compose_names,
        },
        resync: args.resync,
        cleanup: args.cleanup,
        deregister: args.deregister,
        proxy_container: args
            .proxy_container
            .clone()
            .or_else(|| serves_proxy.then(crate::container::self_id).flatten()),
    };
    let registrator = Registrator::new(registry, config)?;
    tracing::info!(docker = %url, "Docker registrator started");
    tasks.spawn(registrator.run(cancel.clone()));
    Ok(())
}
