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
/// `auto`, the socket's presence) ask for it.
pub fn start(
    args: &DockerArgs,
    auto: bool,
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
            host_ip: args
                .ip
                .map_or_else(|| node_address.to_string(), |ip| ip.to_string()),
            internal: args.internal,
            explicit: args.explicit,
            tags: args.tags.clone(),
        },
        resync: args.resync,
        cleanup: args.cleanup,
        deregister: args.deregister,
    };
    let registrator = Registrator::new(registry, config)?;
    tracing::info!(docker = %url, "Docker registrator started");
    tasks.spawn(registrator.run(cancel.clone()));
    Ok(())
}
