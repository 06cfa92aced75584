//! The set-up of the throughput benchmark: the shared backends (one nginx
//! worker answering on three ports), and the three load balancers in front
//! of them: `shoal proxy` (following a registry where the three backends
//! are registered), nginx and HAProxy. Every process is stopped when the
//! [`Contenders`] are dropped, including when set-up fails half way.

use super::configs;
use super::daemon::Daemon;
use super::fleet::{self, free_port, RegistryClient, Spawned};
use crate::server::http_client;
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The service name behind `Host: web.localhost`.
pub const SERVICE: &str = "web";
/// How many backends.
pub const BACKENDS: usize = 3;

/// Where the external programs are.
pub struct Programs {
    /// The `shoal` binary.
    pub shoal: PathBuf,
    /// nginx.
    pub nginx: PathBuf,
    /// HAProxy.
    pub haproxy: PathBuf,
}

/// Which CPUs each side runs on (`taskset -c` lists), if pinned.
#[derive(Clone, Default)]
pub struct Pinning {
    /// The load balancer under test.
    pub proxy: Option<String>,
    /// Everything else: backends, registry, wrk.
    pub rest: Option<String>,
}

/// One load balancer under test.
pub struct Contender {
    /// `shoal`, `nginx` or `HAProxy`.
    pub name: &'static str,
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
    /// Its process (the nginx master, whose worker is its child).
    pub pid: u32,
    /// How it was started.
    pub command: String,
}

/// Everything running; dropped (stopped) in field order: the balancers,
/// the registry, then the backends.
pub struct Contenders {
    /// shoal, nginx, HAProxy.
    pub list: Vec<Contender>,
    /// The backends' ports.
    pub backend_ports: Vec<u16>,
    /// The registry's command line.
    pub registry_command: String,
    _proxy: Spawned,
    _nginx: Daemon,
    _haproxy: Daemon,
    _registry: Spawned,
    /// The backends' nginx (master pid: its worker is its child).
    pub backends: Daemon,
}

/// Starts the backends, the registry and the three load balancers, and
/// checks that each balancer reaches all three backends.
pub async fn start(programs: &Programs, pin: &Pinning, dir: &Path) -> Result<Contenders> {
    let client = http_client(Duration::from_secs(10))?;
    let backend_ports = (0..BACKENDS)
        .map(|_| free_port())
        .collect::<Result<Vec<_>>>()?;
    let backends = start_backends(programs, pin, dir, &backend_ports, &client).await?;
    let registry = fleet::start_registry(&programs.shoal, pin.rest.as_deref()).await?;
    let registry_client = RegistryClient::new(&registry.process.url)?;
    for (i, port) in backend_ports.iter().enumerate() {
        let id = format!("{SERVICE}-{}", i + 1);
        registry_client.register(&id, SERVICE, *port).await?;
    }
    let extra = fleet::strings(&["--worker-threads", "1", "--balance", "round_robin"]);
    let shoal = fleet::start_proxy(
        &programs.shoal,
        pin.proxy.as_deref(),
        &registry.process.url,
        free_port()?,
        &extra,
    )
    .await?;
    let (nginx, nginx_port) =
        start_nginx_balancer(programs, pin, dir, &backend_ports, &client).await?;
    let (haproxy, haproxy_port) =
        start_haproxy(programs, pin, dir, &backend_ports, &client).await?;
    let list = vec![
        Contender {
            name: "shoal",
            url: format!("{}/", shoal.process.url),
            pid: shoal.process.pid(),
            command: shoal.command.clone(),
        },
        contender("nginx", &nginx, nginx_port),
        contender("HAProxy", &haproxy, haproxy_port),
    ];
    for c in &list {
        reaches_all_backends(&client, &c.url)
            .await
            .with_context(|| format!("{} does not balance over the backends", c.name))?;
    }
    Ok(Contenders {
        list,
        backend_ports,
        backends,
        registry_command: registry.command.clone(),
        _proxy: shoal,
        _nginx: nginx,
        _haproxy: haproxy,
        _registry: registry,
    })
}

fn contender(name: &'static str, daemon: &Daemon, port: u16) -> Contender {
    Contender {
        name,
        url: format!("http://127.0.0.1:{port}/"),
        pid: daemon.pid(),
        command: daemon.command.clone(),
    }
}

/// nginx's arguments: prefix, startup error log and configuration in `dir`.
pub(super) fn nginx_args(dir: &Path, name: &str) -> Vec<String> {
    let d = dir.display();
    vec![
        "-p".into(),
        format!("{d}/"),
        "-e".into(),
        format!("{d}/{name}-startup.log"),
        "-c".into(),
        format!("{d}/{name}.conf"),
        "-g".into(),
        "daemon off;".into(),
    ]
}

pub(super) async fn start_backends(
    programs: &Programs,
    pin: &Pinning,
    dir: &Path,
    ports: &[u16],
    client: &reqwest::Client,
) -> Result<Daemon> {
    write(dir, "backends.conf", &configs::nginx_backends(dir, ports))?;
    let args = nginx_args(dir, "backends");
    let log = dir.join("backends.out");
    let mut daemon = Daemon::spawn(
        "nginx (backends)",
        &programs.nginx,
        &args,
        pin.rest.as_deref(),
        log,
    )?;
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}/"))
        .collect();
    daemon
        .wait_ready(|| async { all_answer(client, &urls).await })
        .await?;
    Ok(daemon)
}

async fn all_answer(client: &reqwest::Client, urls: &[String]) -> bool {
    for url in urls {
        if get_body(client, url).await.is_none() {
            return false;
        }
    }
    true
}

async fn start_nginx_balancer(
    programs: &Programs,
    pin: &Pinning,
    dir: &Path,
    backends: &[u16],
    client: &reqwest::Client,
) -> Result<(Daemon, u16)> {
    let port = free_port()?;
    write(
        dir,
        "balancer.conf",
        &configs::nginx_balancer(dir, port, backends),
    )?;
    let args = nginx_args(dir, "balancer");
    let log = dir.join("balancer.out");
    let mut daemon = Daemon::spawn("nginx", &programs.nginx, &args, pin.proxy.as_deref(), log)?;
    let url = format!("http://127.0.0.1:{port}/");
    daemon
        .wait_ready(|| async { get_body(client, &url).await.is_some() })
        .await?;
    Ok((daemon, port))
}

async fn start_haproxy(
    programs: &Programs,
    pin: &Pinning,
    dir: &Path,
    backends: &[u16],
    client: &reqwest::Client,
) -> Result<(Daemon, u16)> {
    let port = free_port()?;
    write(dir, "haproxy.cfg", &configs::haproxy(port, backends))?;
    let cfg = dir.join("haproxy.cfg").display().to_string();
    let args = vec!["-f".to_string(), cfg, "-db".to_string()];
    let log = dir.join("haproxy.out");
    let mut daemon = Daemon::spawn(
        "HAProxy",
        &programs.haproxy,
        &args,
        pin.proxy.as_deref(),
        log,
    )?;
    let url = format!("http://127.0.0.1:{port}/");
    daemon
        .wait_ready(|| async { get_body(client, &url).await.is_some() })
        .await?;
    Ok((daemon, port))
}

pub(super) fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// A 200 answer's body to `GET url` with `Host: web.localhost`.
pub(super) async fn get_body(client: &reqwest::Client, url: &str) -> Option<String> {
    let response = client
        .get(url)
        .header("Host", format!("{SERVICE}.localhost"))
        .send()
        .await
        .ok()?;
    if response.status() != reqwest::StatusCode::OK {
        return None;
    }
    response.text().await.ok()
}

/// Waits (bounded: the shoal proxy may still be reading the registry)
/// until answers through `url` came from every backend.
pub(super) async fn reaches_all_backends(client: &reqwest::Client, url: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = BTreeSet::new();
    let mut last = None;
    while Instant::now() < deadline {
        match get_body(client, url).await {
            Some(body) => {
                seen.insert(body.clone());
                last = Some(body);
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
        if seen.len() == BACKENDS {
            return Ok(());
        }
    }
    bail!("after 10 s only {seen:?} answered (last answer {last:?})")
}
