//! `shoal-bench proxy edge`: the balancers as a TLS edge. In one run, on
//! one machine, `shoal proxy` (one worker thread), nginx (one worker
//! process) and HAProxy (one thread), each pinned to one core exactly as
//! `proxy throughput` pins them, in front of the same three plain HTTP/1.1
//! backends, all serving one certificate made with `openssl` at start:
//!
//! - `https`: HTTP/1.1 over TLS, keep-alive, under wrk (`https://` URL);
//! - `h2`: HTTP/2 over TLS (ALPN h2) under h2load (`-D` seconds);
//! - `full` and `resumed`: TLS handshakes per second, each connection a
//!   handshake, one `GET` with `Connection: close`, its answer and close,
//!   made by this benchmark's own rustls client ([`tls_client`]) without
//!   resumption, then with a session cache per task (how many handshakes
//!   were resumed is counted and printed, so a server that does not resume
//!   shows);
//! - `plain`: plain HTTP/1.1 under wrk on the same processes, the figure of
//!   `proxy throughput` (which remains the full no-regression check).
//!
//! Per measurement: requests (or handshakes) per second, p50 and p99, the
//! CPU of the balancer, the backends and the client, the ratios shoal /
//! nginx and shoal / HAProxy. `--only` picks the balancers (e.g. `nginx,
//! haproxy` for a shoal binary without `--tls-listen`), `--phases` the
//! measurements. Every load is bounded in time (and the handshake loop in
//! count); everything listens on 127.0.0.1 only.

use super::configs::{self, Tls};
use super::contenders::{self, Pinning, BACKENDS, SERVICE};
use super::cpu;
use super::daemon::Daemon;
use super::fleet::{self, RegistryClient, Spawned};
use super::h2load;
use super::machine::{find_program, pinning};
use super::tls_client::{self, Exchange, HandshakeLoad, Target, Versions};
use super::wrk;
use crate::report::{print_summary, Figure};
use crate::server::http_client;
use crate::stats::ms;
use anyhow::{anyhow, bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Options of `shoal-bench proxy edge`.
#[derive(clap::Args)]
pub struct Args {
    /// Length of each measurement, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Unmeasured load before each measurement, in seconds (0: none).
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Rounds; each balancer is measured once per round and phase, the
    /// order reversed every other round.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Which balancers, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "shoal,nginx,haproxy"
    )]
    only: Vec<Balancer>,
    /// Which measurements, comma-separated, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "https,h2,full,resumed,plain"
    )]
    phases: Vec<Phase>,
    /// wrk connections (`https` and `plain`).
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// h2load connections (`h2`).
    #[arg(long, default_value_t = 16)]
    h2_clients: u32,
    /// h2load concurrent streams per connection (`h2`).
    #[arg(long, default_value_t = 10)]
    h2_streams: u32,
    /// wrk and h2load threads [default: 1 per CPU left to the clients when pinned, at most 2].
    #[arg(long)]
    client_threads: Option<u32>,
    /// Concurrent connecting tasks of the handshake loop (`full`, `resumed`).
    #[arg(long, default_value_t = 16)]
    handshake_tasks: usize,
    /// Most connections per handshake measurement.
    #[arg(long, default_value_t = 200_000)]
    handshakes: u64,
    /// TLS versions the handshake loop offers.
    #[arg(long, value_enum, default_value = "tls13")]
    handshake_tls: Versions,
    /// The certificate's key.
    #[arg(long, value_enum, default_value = "p256")]
    key: KeyKind,
    /// Do not pin the balancer under test to a CPU of its own.
    #[arg(long)]
    no_pin: bool,
    /// nginx binary (also the backends).
    #[arg(long, default_value = "nginx")]
    nginx: PathBuf,
    /// HAProxy binary.
    #[arg(long, default_value = "haproxy")]
    haproxy: PathBuf,
    /// wrk binary.
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
    /// h2load binary (Debian: nghttp2-client).
    #[arg(long, default_value = "h2load")]
    h2load: PathBuf,
    /// openssl binary (makes the certificate).
    #[arg(long, default_value = "openssl")]
    openssl: PathBuf,
}

/// A load balancer under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Balancer {
    /// `shoal proxy --tls-listen`.
    Shoal,
    /// nginx `listen ... ssl`.
    Nginx,
    /// HAProxy `bind ... ssl crt`.
    Haproxy,
}

/// One kind of measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// HTTP/1.1 over TLS, keep-alive (wrk).
    Https,
    /// HTTP/2 over TLS (h2load).
    H2,
    /// Full TLS handshakes (one request per connection).
    Full,
    /// Resumed TLS handshakes (one request per connection).
    Resumed,
    /// Plain HTTP/1.1, keep-alive (wrk): the throughput figure.
    Plain,
}

impl Phase {
    /// Issue 18's targets: HTTPS at least as fast as nginx and HAProxy
    /// with a p99 no worse; HTTP/2 at least as fast as nginx. The rest is
    /// reported without one (plain HTTP/1.1 has its own in `throughput`).
    fn ratio_target(self, other: &str) -> Option<f64> {
        match (self, other) {
            (Phase::Https, _) | (Phase::H2, "nginx") => Some(1.0),
            _ => None,
        }
    }

    /// Whether shoal's p99 should be at most `other`'s.
    fn p99_target(self, _other: &str) -> bool {
        self == Phase::Https
    }
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::Https => "HTTPS/1.1",
            Phase::H2 => "HTTP/2 TLS",
            Phase::Full => "full handshakes",
            Phase::Resumed => "resumed handshakes",
            Phase::Plain => "plain HTTP/1.1",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Phase::Full | Phase::Resumed => "handshakes",
            _ => "requests",
        }
    }
}

/// The certificate's key type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyKind {
    /// ECDSA P-256.
    P256,
    /// RSA 2048 bits.
    Rsa2048,
}

/// The certificate every balancer serves.
struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    /// Certificate then key (HAProxy).
    pem: PathBuf,
    der: CertificateDer<'static>,
    command: String,
}

/// External programs.
struct Programs {
    shoal: PathBuf,
    nginx: PathBuf,
    haproxy: Option<PathBuf>,
    wrk: Option<PathBuf>,
    h2load: Option<PathBuf>,
    openssl: PathBuf,
}

/// One balancer, running.
struct Edge {
    name: &'static str,
    pid: u32,
    plain_url: String,
    tls_port: u16,
    command: String,
    /// What the TLS check saw (HTTP/1.1 offered).
    tls: Exchange,
    /// The protocol chosen when h2 and http/1.1 are offered.
    alpn: Option<String>,
}

impl Edge {
    fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.tls_port)
    }

    fn target(&self) -> Target {
        Target {
            addr: format!("127.0.0.1:{}", self.tls_port),
            host: format!("{SERVICE}.localhost"),
        }
    }
}

/// Everything running; dropped (stopped) in field order: balancers,
/// registry, backends.
struct EdgeSet {
    list: Vec<Edge>,
    registry_command: Option<String>,
    _shoal: Option<Spawned>,
    _nginx: Option<Daemon>,
    _haproxy: Option<Daemon>,
    _registry: Option<Spawned>,
    backends: Daemon,
}

/// One measurement.
#[derive(Clone, Default)]
struct Sample {
    /// Requests (or handshakes) per second.
    rate: f64,
    p50: Option<Duration>,
    p99: Option<Duration>,
    /// Failed requests or connections.
    errors: u64,
    /// (resumed, completed) of a handshake run.
    resumed: Option<(u64, u64)>,
    /// Percent of one core: the balancer, the backends, the client.
    cpu: [f64; 3],
    /// Anything worth showing (first error, protocol).
    note: String,
}

/// Runs the benchmark with the binary `shoal`; `command` is echoed in the summary.
pub async fn run(shoal: &Path, args: &Args, command: &str) -> Result<()> {
    if args.seconds == 0 || args.rounds == 0 || args.connections == 0 {
        bail!("--seconds, --rounds and --connections must be at least 1");
    }
    if args.h2_clients == 0 || args.h2_streams == 0 || args.handshake_tasks == 0 {
        bail!("--h2-clients, --h2-streams and --handshake-tasks must be at least 1");
    }
    if args.handshakes == 0 || args.only.is_empty() || args.phases.is_empty() {
        bail!("--handshakes, --only and --phases must not be empty");
    }
    let balancers: BTreeSet<Balancer> = args.only.iter().copied().collect();
    let need = u64::from(args.connections.max(args.h2_clients)) + args.handshake_tasks as u64;
    crate::server::check_open_files(need * 2 + 256)?;
    let programs = locate_programs(shoal, args, &balancers)?;
    let pin = pinning(args.no_pin);
    let threads = args
        .client_threads
        .unwrap_or_else(|| match &pin.rest {
            Some(rest) => rest.split(',').count().min(2) as u32,
            None => 2,
        })
        .max(1);
    let dir = tempfile::Builder::new()
        .prefix("shoal-bench-edge-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    println!("configuration and logs in {}", dir.path().display());
    let cert = make_certificate(&programs.openssl, dir.path(), args.key)?;
    let nginx_version = nginx_version(&programs.nginx)?;
    let set = start(
        &programs,
        &pin,
        dir.path(),
        &cert,
        &balancers,
        nginx_version,
    )
    .await?;
    for e in &set.list {
        println!(
            "{:<8} {} and {}  ({}; {} {}, ALPN h2+http/1.1 -> {})",
            e.name,
            e.plain_url,
            e.https_url(),
            e.command,
            e.tls.version,
            e.tls.suite,
            e.alpn.as_deref().unwrap_or("none"),
        );
    }
    // The handshake loop runs in this process: off the balancer's CPU.
    let self_pinned = pin_self(&pin);
    let bench = Bench {
        args,
        wrk: programs.wrk.clone(),
        h2load: programs.h2load.clone(),
        pin: pin.clone(),
        threads,
        tck: cpu::ticks_per_second(),
        dir: dir.path().to_path_buf(),
    };
    let runs = bench.rounds(&set).await?;
    let figures = figures(&set, args, &runs);
    let notes = notes(command, &set, &bench, &cert, nginx_version, self_pinned);
    print_summary("shoal-bench proxy edge", &figures, &notes);
    Ok(())
}

/// The programs the chosen balancers and phases need, or one error
/// naming every missing one.
fn locate_programs(shoal: &Path, args: &Args, balancers: &BTreeSet<Balancer>) -> Result<Programs> {
    let uses = |p: Phase| args.phases.contains(&p);
    let mut missing = Vec::new();
    let mut find = |wanted: bool, program: &Path| -> Option<PathBuf> {
        if !wanted {
            return None;
        }
        let found = find_program(program);
        if found.is_none() {
            missing.push(program.display().to_string());
        }
        found
    };
    let nginx = find(true, &args.nginx);
    let openssl = find(true, &args.openssl);
    let haproxy = find(balancers.contains(&Balancer::Haproxy), &args.haproxy);
    let wrk = find(uses(Phase::Https) || uses(Phase::Plain), &args.wrk);
    let h2load = find(uses(Phase::H2), &args.h2load);
    if !missing.is_empty() {
        bail!(
            "not found: {}. Install them (Debian: `apt-get install -y nginx-light haproxy wrk \
             nghttp2-client openssl`; bench/proxy.sh does that when run as root) or pass \
             --nginx/--haproxy/--wrk/--h2load/--openssl PATH",
            missing.join(", ")
        );
    }
    Ok(Programs {
        shoal: shoal.to_path_buf(),
        nginx: nginx.unwrap_or_default(),
        haproxy,
        wrk,
        h2load,
        openssl: openssl.unwrap_or_default(),
    })
}

/// One self-signed certificate for `web.localhost`, `*.localhost`,
/// `localhost` and 127.0.0.1, made with openssl in `dir`.
fn make_certificate(openssl: &Path, dir: &Path, key: KeyKind) -> Result<Certificate> {
    let (cert, key_path, pem) = (
        dir.join("edge.crt"),
        dir.join("edge.key"),
        dir.join("edge.pem"),
    );
    let mut args: Vec<String> = ["req", "-x509", "-nodes", "-days", "2", "-newkey"]
        .map(String::from)
        .into();
    match key {
        KeyKind::P256 => {
            args.extend(["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"].map(String::from))
        }
        KeyKind::Rsa2048 => args.push("rsa:2048".into()),
    }
    args.extend(
        [
            "-subj",
            "/CN=web.localhost",
            "-addext",
            "subjectAltName=DNS:web.localhost,DNS:*.localhost,DNS:localhost,IP:127.0.0.1",
        ]
        .map(String::from),
    );
    args.extend([
        "-keyout".into(),
        key_path.display().to_string(),
        "-out".into(),
        cert.display().to_string(),
    ]);
    let shown = fleet::command_line(openssl, &args);
    let out = std::process::Command::new(openssl)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", openssl.display()))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let (cert_text, key_text) = (std::fs::read(&cert)?, std::fs::read(&key_path)?);
    std::fs::write(&pem, [cert_text.as_slice(), key_text.as_slice()].concat())
        .with_context(|| format!("writing {}", pem.display()))?;
    let der = CertificateDer::from_pem_slice(&cert_text)
        .map_err(|e| anyhow!("reading {}: {e:?}", cert.display()))?;
    Ok(Certificate {
        cert,
        key: key_path,
        pem,
        der,
        command: shown,
    })
}

/// nginx's version from `nginx -v` (`nginx version: nginx/1.22.1`).
fn nginx_version(nginx: &Path) -> Result<(u32, u32, u32)> {
    let out = std::process::Command::new(nginx)
        .arg("-v")
        .output()
        .with_context(|| format!("cannot run {} -v", nginx.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    parse_nginx_version(&text).ok_or_else(|| anyhow!("no version in `nginx -v`: {text:?}"))
}

fn parse_nginx_version(text: &str) -> Option<(u32, u32, u32)> {
    let version = text.split("nginx/").nth(1)?.split_whitespace().next()?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// `http2 on;` exists from nginx 1.25.1 (before: `listen ... ssl http2`).
fn nginx_has_http2_directive(version: (u32, u32, u32)) -> bool {
    version >= (1, 25, 1)
}

/// `n` distinct ports free a moment ago (all held until all are picked).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let held = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0"))
        .collect::<Result<Vec<_>>>()?;
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// Pins this process (every thread: the TLS client's) to the CPUs of the
/// clients and backends; says whether it could.
fn pin_self(pin: &Pinning) -> bool {
    let Some(rest) = &pin.rest else {
        return false;
    };
    std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", rest, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts the backends, then the chosen balancers, and checks each.
async fn start(
    programs: &Programs,
    pin: &Pinning,
    dir: &Path,
    cert: &Certificate,
    balancers: &BTreeSet<Balancer>,
    nginx_version: (u32, u32, u32),
) -> Result<EdgeSet> {
    let client = http_client(Duration::from_secs(10))?;
    let backend_ports = free_ports(BACKENDS)?;
    let backends_programs = contenders::Programs {
        shoal: programs.shoal.clone(),
        nginx: programs.nginx.clone(),
        haproxy: programs.haproxy.clone().unwrap_or_default(),
    };
    let backends =
        contenders::start_backends(&backends_programs, pin, dir, &backend_ports, &client).await?;
    let mut set = EdgeSet {
        list: Vec::new(),
        registry_command: None,
        _shoal: None,
        _nginx: None,
        _haproxy: None,
        _registry: None,
        backends,
    };
    for balancer in balancers {
        let [plain, tls_port] = free_ports(2)?[..] else {
            unreachable!("two ports")
        };
        let tls = Tls {
            port: tls_port,
            cert: &cert.cert,
            key: &cert.key,
            pem: &cert.pem,
        };
        let (name, pid, command) = match balancer {
            Balancer::Shoal => {
                let registry = fleet::start_registry(&programs.shoal, pin.rest.as_deref()).await?;
                let registry_client = RegistryClient::new(&registry.process.url)?;
                for (i, port) in backend_ports.iter().enumerate() {
                    let id = format!("{SERVICE}-{}", i + 1);
                    registry_client.register(&id, SERVICE, *port).await?;
                }
                set.registry_command = Some(registry.command.clone());
                let proxy = start_shoal(programs, pin, &registry.process.url, plain, &tls)
                    .await
                    .context(
                        "shoal proxy with --tls-listen did not start (a shoal without TLS \
                         listeners? `--only nginx,haproxy` measures the others)",
                    )?;
                set._registry = Some(registry);
                let started = ("shoal", proxy.process.pid(), proxy.command.clone());
                set._shoal = Some(proxy);
                started
            }
            Balancer::Nginx => {
                let http2 = nginx_has_http2_directive(nginx_version);
                let conf = configs::nginx_edge_balancer(dir, plain, &tls, &backend_ports, http2);
                contenders::write(dir, "balancer.conf", &conf)?;
                let args = contenders::nginx_args(dir, "balancer");
                let daemon = Daemon::spawn(
                    "nginx",
                    &programs.nginx,
                    &args,
                    pin.proxy.as_deref(),
                    dir.join("balancer.out"),
                )?;
                let started = ("nginx", daemon.pid(), daemon.command.clone());
                set._nginx = Some(ready(daemon, &client, plain).await?);
                started
            }
            Balancer::Haproxy => {
                let cfg = configs::haproxy_edge(plain, &tls, &backend_ports);
                contenders::write(dir, "haproxy.cfg", &cfg)?;
                let cfg = dir.join("haproxy.cfg").display().to_string();
                let args = vec!["-f".to_string(), cfg, "-db".to_string()];
                let daemon = Daemon::spawn(
                    "HAProxy",
                    programs.haproxy.as_deref().unwrap_or(Path::new("haproxy")),
                    &args,
                    pin.proxy.as_deref(),
                    dir.join("haproxy.out"),
                )?;
                let started = ("HAProxy", daemon.pid(), daemon.command.clone());
                set._haproxy = Some(ready(daemon, &client, plain).await?);
                started
            }
        };
        let plain_url = format!("http://127.0.0.1:{plain}/");
        contenders::reaches_all_backends(&client, &plain_url)
            .await
            .with_context(|| format!("{name} does not balance plain HTTP over the backends"))?;
        let mut edge = Edge {
            name,
            pid,
            plain_url,
            tls_port,
            command,
            tls: empty_exchange(),
            alpn: None,
        };
        edge.tls = tls_reaches_all_backends(&edge.target(), &cert.der)
            .await
            .with_context(|| format!("{name} over TLS"))?;
        let h2 = tls_client::config(Versions::Tls13, false, &[b"h2", b"http/1.1"])?;
        edge.alpn = tls_client::get(&edge.target(), &h2, false)
            .await
            .with_context(|| format!("{name}: TLS handshake offering h2"))?
            .alpn;
        set.list.push(edge);
    }
    Ok(set)
}

fn empty_exchange() -> Exchange {
    Exchange {
        status: 0,
        body: String::new(),
        kind: None,
        version: String::new(),
        suite: String::new(),
        alpn: None,
        certificate: None,
    }
}

/// `shoal proxy` with a plain and a TLS listener, following `registry`.
async fn start_shoal(
    programs: &Programs,
    pin: &Pinning,
    registry: &str,
    plain: u16,
    tls: &Tls<'_>,
) -> Result<Spawned> {
    let stats = free_ports(1)?[0];
    let mut args = fleet::strings(&["proxy", "--registry", registry]);
    args.extend([
        "--listen".into(),
        format!("127.0.0.1:{plain}"),
        "--tls-listen".into(),
        format!("127.0.0.1:{}", tls.port),
        "--tls-cert".into(),
        tls.cert.display().to_string(),
        "--tls-key".into(),
        tls.key.display().to_string(),
        "--stats-addr".into(),
        format!("127.0.0.1:{stats}"),
    ]);
    args.extend(fleet::strings(&[
        "--log-level",
        "warn",
        "--worker-threads",
        "1",
        "--balance",
        "round_robin",
    ]));
    fleet::start(&programs.shoal, pin.proxy.as_deref(), &args, "shoal proxy").await
}

/// Waits until `daemon` answers on its plain port.
async fn ready(mut daemon: Daemon, client: &reqwest::Client, plain: u16) -> Result<Daemon> {
    let url = format!("http://127.0.0.1:{plain}/");
    daemon
        .wait_ready(|| async { contenders::get_body(client, &url).await.is_some() })
        .await?;
    Ok(daemon)
}

/// Waits (bounded) until HTTPS answers through `target` came from every
/// backend, each connection showing the certificate `der`; returns the
/// last connection's view.
async fn tls_reaches_all_backends(target: &Target, der: &CertificateDer<'_>) -> Result<Exchange> {
    let config = tls_client::config(Versions::Tls13, false, &[b"http/1.1"])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = BTreeSet::new();
    let mut last: Option<String> = None;
    while Instant::now() < deadline {
        match tls_client::get(target, &config, true).await {
            Ok(e) if e.status == 200 => {
                if e.certificate.as_ref() != Some(der) {
                    bail!("the certificate served is not the one made for this run");
                }
                seen.insert(e.body.clone());
                if seen.len() == BACKENDS {
                    return Ok(e);
                }
            }
            Ok(e) => last = Some(format!("HTTP {} {:?}", e.status, e.body)),
            Err(e) => last = Some(format!("{e:#}")),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("after 10 s only {seen:?} answered over TLS (last failure: {last:?})")
}

/// What every measurement shares.
struct Bench<'a> {
    args: &'a Args,
    wrk: Option<PathBuf>,
    h2load: Option<PathBuf>,
    pin: Pinning,
    threads: u32,
    tck: u64,
    dir: PathBuf,
}

impl Bench<'_> {
    /// Every round: every phase, every balancer (order reversed every
    /// other round), each after its warm-up. Indexed [phase][balancer].
    async fn rounds(&self, set: &EdgeSet) -> Result<Vec<Vec<Vec<Sample>>>> {
        let phases = &self.args.phases;
        let mut runs = vec![vec![Vec::new(); set.list.len()]; phases.len()];
        for round in 0..self.args.rounds {
            for (p, phase) in phases.iter().enumerate() {
                let mut order: Vec<usize> = (0..set.list.len()).collect();
                if round % 2 == 1 {
                    order.reverse();
                }
                for i in order {
                    let edge = &set.list[i];
                    println!("round {}: {} {} ...", round + 1, phase.label(), edge.name);
                    let s = self.measure(*phase, edge, set).await?;
                    println!("  {}", line(*phase, &s));
                    runs[p][i].push(s);
                }
            }
        }
        Ok(runs)
    }

    fn wrk_load(&self, seconds: u64) -> wrk::Load {
        wrk::Load {
            threads: self.threads,
            connections: self.args.connections,
            seconds,
            host: format!("{SERVICE}.localhost"),
        }
    }

    fn h2_load(&self) -> h2load::Load {
        h2load::Load {
            threads: self.threads,
            clients: self.args.h2_clients,
            streams: self.args.h2_streams,
            seconds: self.args.seconds,
            warmup: self.args.warmup,
            authority: format!("{SERVICE}.localhost"),
        }
    }

    fn handshake_load(&self, seconds: u64) -> HandshakeLoad {
        HandshakeLoad {
            count: self.args.handshakes,
            seconds,
        }
    }

    fn h2_log(&self) -> PathBuf {
        self.dir.join("h2load.log")
    }

    /// One warmed-up measurement of `phase` against `edge`, with the CPU
    /// each side used meanwhile.
    async fn measure(&self, phase: Phase, edge: &Edge, set: &EdgeSet) -> Result<Sample> {
        let (seconds, warmup) = (self.args.seconds, self.args.warmup);
        let rest = self.pin.rest.as_deref();
        let wrk_bin = || self.wrk.as_deref().unwrap_or(Path::new("wrk"));
        let url = match phase {
            Phase::Plain => edge.plain_url.clone(),
            _ => edge.https_url(),
        };
        // One configuration per task; when resuming, each with its own
        // session cache, kept from the warm-up to the measurement.
        let hello = match phase {
            Phase::Full | Phase::Resumed => {
                let resume = phase == Phase::Resumed;
                let one = || tls_client::config(self.args.handshake_tls, resume, &[b"http/1.1"]);
                (0..self.args.handshake_tasks)
                    .map(|_| one())
                    .collect::<Result<Vec<_>>>()?
            }
            _ => Vec::new(),
        };
        // Warm-up (h2load does its own: --warm-up-time).
        if warmup > 0 {
            match phase {
                Phase::Https | Phase::Plain => {
                    let (_, argv) = wrk::command(wrk_bin(), &self.wrk_load(warmup), &url, rest);
                    wrk::run(&argv, warmup).await?;
                }
                Phase::Full | Phase::Resumed => {
                    tls_client::handshakes(&edge.target(), &hello, self.handshake_load(warmup))
                        .await;
                }
                Phase::H2 => {}
            }
        }
        let backends = set.backends.pid();
        let ticks = || {
            [
                cpu::tree_ticks(edge.pid),
                cpu::tree_ticks(backends),
                cpu::reaped_children_ticks() + cpu::self_ticks(),
            ]
        };
        let before = ticks();
        let started = Instant::now();
        let mut sample = match phase {
            Phase::Https | Phase::Plain => {
                let (_, argv) = wrk::command(wrk_bin(), &self.wrk_load(seconds), &url, rest);
                let r = wrk::run(&argv, seconds).await?;
                Sample {
                    rate: r.rate,
                    p50: Some(r.p50),
                    p99: Some(r.p99),
                    errors: r.errors(),
                    ..Sample::default()
                }
            }
            Phase::H2 => {
                let bin = self.h2load.as_deref().unwrap_or(Path::new("h2load"));
                let load = self.h2_load();
                let (_, argv) = h2load::command(bin, &load, &url, &self.h2_log(), rest);
                let r = h2load::run(&argv, &load, &self.h2_log()).await?;
                let mut note = format!("{} {}", r.tls, r.protocol);
                if r.protocol != "h2" {
                    note.push_str(" (not h2!)");
                }
                Sample {
                    rate: r.rate,
                    p50: r.latency.map(|l| l.p50),
                    p99: r.latency.map(|l| l.p99),
                    errors: r.failed,
                    note,
                    ..Sample::default()
                }
            }
            Phase::Full | Phase::Resumed => {
                let r =
                    tls_client::handshakes(&edge.target(), &hello, self.handshake_load(seconds))
                        .await;
                Sample {
                    rate: r.rate,
                    p50: r.latency.map(|l| l.p50),
                    p99: r.latency.map(|l| l.p99),
                    errors: r.failed,
                    resumed: Some((r.resumed, r.done)),
                    note: r
                        .first_error
                        .map_or_else(String::new, |e| format!("first failure: {e}")),
                    ..Sample::default()
                }
            }
        };
        let wall = started.elapsed();
        let after = ticks();
        sample.cpu = std::array::from_fn(|i| cpu::percent(after[i] - before[i], self.tck, wall));
        Ok(sample)
    }
}

fn line(phase: Phase, s: &Sample) -> String {
    let opt = |d: Option<Duration>| d.map_or_else(|| "n/a".to_string(), ms);
    let mut text = format!(
        "{:.0} {}/s; p50 {} p99 {}; {} failed; CPU % of a core: balancer {:.0}, backends {:.0}, client {:.0}",
        s.rate,
        phase.unit(),
        opt(s.p50),
        opt(s.p99),
        s.errors,
        s.cpu[0],
        s.cpu[1],
        s.cpu[2]
    );
    if let Some((resumed, done)) = s.resumed {
        text.push_str(&format!("; resumed {resumed} of {done}"));
    }
    if !s.note.is_empty() {
        text.push_str(&format!("; {}", s.note));
    }
    text
}

/// The mean of a balancer's samples of one phase (errors and handshakes summed).
fn mean(samples: &[Sample]) -> Sample {
    let n = samples.len().max(1) as f64;
    let avg = |f: fn(&Sample) -> Option<Duration>| {
        let all: Vec<Duration> = samples.iter().filter_map(f).collect();
        (!all.is_empty()).then(|| all.iter().sum::<Duration>().div_f64(all.len() as f64))
    };
    let resumed = samples
        .iter()
        .filter_map(|s| s.resumed)
        .reduce(|a, b| (a.0 + b.0, a.1 + b.1));
    Sample {
        rate: samples.iter().map(|s| s.rate).sum::<f64>() / n,
        p50: avg(|s| s.p50),
        p99: avg(|s| s.p99),
        errors: samples.iter().map(|s| s.errors).sum(),
        resumed,
        cpu: std::array::from_fn(|i| samples.iter().map(|s| s.cpu[i]).sum::<f64>() / n),
        note: samples
            .iter()
            .map(|s| s.note.as_str())
            .find(|n| !n.is_empty())
            .unwrap_or("")
            .to_string(),
    }
}

fn figures(set: &EdgeSet, args: &Args, runs: &[Vec<Vec<Sample>>]) -> Vec<Figure> {
    let mut figures = Vec::new();
    for (phase, per_balancer) in args.phases.iter().zip(runs) {
        let label = phase.label();
        let means: Vec<Sample> = per_balancer.iter().map(|s| mean(s)).collect();
        for (edge, m) in set.list.iter().zip(&means) {
            let opt = |d: Option<Duration>| d.map_or_else(|| "n/a".to_string(), ms);
            let mut value = format!("{:.0}/s, p50 {}, p99 {}", m.rate, opt(m.p50), opt(m.p99));
            if let Some((resumed, done)) = m.resumed {
                value.push_str(&format!(", resumed {resumed} of {done}"));
            }
            figures.push(Figure::info(format!("{label}: {}", edge.name), value));
        }
        let rate_of = |name: &str| {
            set.list
                .iter()
                .zip(&means)
                .find(|(e, _)| e.name == name)
                .map(|(_, m)| m)
        };
        if let Some(shoal) = rate_of("shoal") {
            for other in ["nginx", "HAProxy"] {
                if let Some(o) = rate_of(other) {
                    let ratio = if o.rate > 0.0 {
                        shoal.rate / o.rate
                    } else {
                        0.0
                    };
                    let name = format!("{label}: shoal / {other} {}/s", phase.unit());
                    figures.push(match phase.ratio_target(other) {
                        Some(target) => Figure::ratio_at_least(name, ratio, target),
                        None => Figure::info(name, format!("{ratio:.2}x")),
                    });
                    if let (true, Some(mine), Some(theirs)) =
                        (phase.p99_target(other), shoal.p99, o.p99)
                    {
                        let name = format!("{label}: shoal p99 (target: {other} p99)");
                        figures.push(Figure::delay_at_most(name, mine, theirs));
                    }
                }
            }
        }
        for (edge, m) in set.list.iter().zip(&means) {
            figures.push(Figure::info(
                format!(
                    "{label}: {} CPU % (balancer/backends/client); failed",
                    edge.name
                ),
                format!(
                    "{:.0} / {:.0} / {:.0}; {}",
                    m.cpu[0], m.cpu[1], m.cpu[2], m.errors
                ),
            ));
        }
    }
    figures
}

fn notes(
    command: &str,
    set: &EdgeSet,
    bench: &Bench,
    cert: &Certificate,
    nginx_version: (u32, u32, u32),
    self_pinned: bool,
) -> Vec<String> {
    let args = bench.args;
    let mut notes = vec![format!("command:  {command}")];
    notes.push(format!(
        "certificate (one, served by all): {}",
        cert.command
    ));
    notes.push(format!("backends: {}", set.backends.command));
    if let Some(r) = &set.registry_command {
        notes.push(format!("registry: {r}"));
    }
    for e in &set.list {
        notes.push(format!("{:<8}  {}", format!("{}:", e.name), e.command));
        notes.push(format!(
            "{:<8}  TLS (rustls client, HTTP/1.1): {} {}; offering h2 and http/1.1 -> {}",
            "",
            e.tls.version,
            e.tls.suite,
            e.alpn.as_deref().unwrap_or("no ALPN")
        ));
    }
    let (v0, v1, v2) = nginx_version;
    notes.push(format!(
        "nginx {v0}.{v1}.{v2}: {}",
        if nginx_has_http2_directive(nginx_version) {
            "`listen ... ssl; http2 on;`"
        } else {
            "`listen ... ssl http2;`"
        }
    ));
    let rest = bench.pin.rest.as_deref();
    let (x, y) = ("https://127.0.0.1:PORT/", "http://127.0.0.1:PORT/");
    for phase in &args.phases {
        let shown = match phase {
            Phase::Https | Phase::Plain => {
                let url = if *phase == Phase::Https { x } else { y };
                let wrk_bin = bench.wrk.as_deref().unwrap_or(Path::new("wrk"));
                wrk::command(wrk_bin, &bench.wrk_load(args.seconds), url, rest).0
            }
            Phase::H2 => {
                let bin = bench.h2load.as_deref().unwrap_or(Path::new("h2load"));
                h2load::command(bin, &bench.h2_load(), x, &bench.h2_log(), rest).0
            }
            Phase::Full | Phase::Resumed => format!(
                "{} tasks, each: connect, TLS handshake ({}, SNI and Host {SERVICE}.localhost, \
                 {}), GET / with Connection: close, whole answer, close_notify, close; \
                 at most {} connections or {} s",
                args.handshake_tasks,
                args.handshake_tls.label(),
                if *phase == Phase::Full {
                    "resumption disabled"
                } else {
                    "each task its own session cache, kept from the warm-up"
                },
                args.handshakes,
                args.seconds
            ),
        };
        notes.push(format!("load ({}): {shown}", phase.label()));
    }
    notes.push(format!(
        "figures: mean of {} round(s), each measurement {} s after a {} s unmeasured warm-up \
         (h2load: its --warm-up-time); p50/p99 from wrk, h2load's --log-file, or the \
         handshake loop (connect to whole answer)",
        args.rounds, args.seconds, args.warmup
    ));
    notes.push(match (&bench.pin.proxy, &bench.pin.rest) {
        (Some(p), Some(r)) => format!(
            "CPUs: balancer under test pinned to CPU {p}; wrk, h2load, backends, registry and \
             this process (the handshake client{}) to CPU(s) {r}",
            if self_pinned {
                ""
            } else {
                ": NOT pinned, taskset -p failed"
            }
        ),
        _ => "CPUs: not pinned (--no-pin, one CPU, or no taskset)".into(),
    });
    notes.push(
        "backends: one nginx worker answering `200 hello-<n>` on 3 ports, plain HTTP/1.1, as \
         in `proxy throughput`; every balancer round-robins over them; the TLS client, like \
         wrk and h2load, does not verify the certificate (each balancer was checked to serve \
         the one made for this run)"
            .into(),
    );
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_versions() {
        assert_eq!(
            parse_nginx_version("nginx version: nginx/1.22.1\n"),
            Some((1, 22, 1))
        );
        assert_eq!(
            parse_nginx_version("nginx version: nginx/1.26.0 (Ubuntu)"),
            Some((1, 26, 0))
        );
        assert_eq!(parse_nginx_version("nginx version: openresty/1.2"), None);
        assert!(!nginx_has_http2_directive((1, 22, 1)));
        assert!(!nginx_has_http2_directive((1, 25, 0)));
        assert!(nginx_has_http2_directive((1, 25, 1)));
        assert!(nginx_has_http2_directive((1, 26, 0)));
    }

    #[test]
    fn mean_of_samples() {
        let s = |rate: f64, p99: u64, resumed: Option<(u64, u64)>| Sample {
            rate,
            p99: Some(Duration::from_millis(p99)),
            errors: 1,
            resumed,
            cpu: [rate / 10.0, 0.0, 0.0],
            ..Sample::default()
        };
        let m = mean(&[s(100.0, 2, Some((9, 10))), s(300.0, 4, Some((10, 10)))]);
        assert_eq!(m.rate, 200.0);
        assert_eq!(m.p99, Some(Duration::from_millis(3)));
        assert_eq!(m.p50, None);
        assert_eq!((m.errors, m.resumed), (2, Some((19, 20))));
        assert_eq!(m.cpu[0], 20.0);
    }
}
