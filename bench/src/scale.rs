//! `shoal-bench scale`: a large catalog (10,000 services x 10 instances by
//! default, registered through the HTTP API) in `shoal dev` and in `shoal
//! server` + `shoal proxy --registry`. At each checkpoint (1,000, 3,000,
//! 10,000 services) it measures the time to route a new service and a new
//! instance of an existing one, RSS of every process and the registration
//! rate; at the end DNS SRV qps quiet and under writes to other services,
//! proxy start-up and the time SIGTERM takes. Every loop is bounded.

use crate::registry::raw::RawConn;
use crate::report::{print_summary, Figure};
use crate::server::http_client;
use crate::stats::{ms, Summary};
use anyhow::{anyhow, Context, Result};
use futures::stream::{self, StreamExt};
use serde_json::json;
use shoal_testkit::ServerProcess;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// Flags of `shoal-bench scale`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Services registered.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Instances per service.
    #[arg(long, default_value_t = 10)]
    instances: usize,
    /// Service counts at which the curve is measured (the last is `services`).
    #[arg(long, value_delimiter = ',', default_value = "1000,3000")]
    checkpoints: Vec<usize>,
    /// Time-to-route samples per checkpoint and kind.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// Registrations in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds of each DNS measurement.
    #[arg(long, default_value_t = 3)]
    dns_seconds: u64,
    /// Quiet and loaded DNS windows, alternating; their medians are compared.
    #[arg(long, default_value_t = 3)]
    dns_rounds: usize,
    /// Writes per second to other services during the loaded DNS measurement.
    #[arg(long, default_value_t = 1000)]
    write_rate: u64,
    /// `dev`, `server`, `agent`, `both` (dev and server) or `all`.
    #[arg(long, default_value = "all")]
    mode: String,
    /// Local instances of the agent (`--mode agent`), each with a TTL check.
    #[arg(long, default_value_t = 10_000)]
    agent_instances: usize,
    /// Local instance counts at which the agent's curve is measured.
    #[arg(long, value_delimiter = ',', default_value = "1000,3000")]
    agent_checkpoints: Vec<usize>,
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A backend answering every HTTP/1.1 request with `body`.
async fn backend(body: &'static str) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut have = Vec::new();
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    have.extend_from_slice(&buf[..n]);
                    while let Some(end) = have.windows(4).position(|w| w == b"\r\n\r\n") {
                        have.drain(..end + 4);
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

pub(crate) fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

struct Stack {
    api: String,
    proxy: String,
    dns: SocketAddr,
    server: ServerProcess,
    proxy_process: Option<ServerProcess>,
}

async fn start_stack(bin: &Path, dev: bool) -> Result<Stack> {
    let bin = bin.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<Stack> {
        if dev {
            let (p, proxy) = ServerProcess::try_start_dev(&bin, &[]).map_err(|e| anyhow!(e))?;
            let dns = p.dns_addr().context("no DNS address")?;
            return Ok(Stack {
                api: p.url.clone(),
                proxy,
                dns,
                server: p,
                proxy_process: None,
            });
        }
        let server = ServerProcess::try_start(&bin, &["--in-memory"]).map_err(|e| anyhow!(e))?;
        let proxy = start_proxy(&bin, &server.url)?;
        Ok(Stack {
            api: server.url.clone(),
            proxy: proxy.url.clone(),
            dns: server.dns_addr().context("no DNS address")?,
            server,
            proxy_process: Some(proxy),
        })
    })
    .await?
}

fn start_proxy(bin: &Path, registry: &str) -> Result<ServerProcess> {
    let args = [
        "proxy",
        "--registry",
        registry,
        "--listen",
        "127.0.0.1:0",
        "--stats-addr",
        "127.0.0.1:0",
        "--log-level",
        "warn",
    ];
    ServerProcess::try_start_role(bin, &args, "shoal proxy").map_err(|e| anyhow!(e))
}

fn registration(
    service: &str,
    id: &str,
    node: &str,
    backend: SocketAddr,
    critical: bool,
) -> String {
    let mut body = json!({
        "Node": node,
        "Address": "127.0.0.1",
        "Service": {"ID": id, "Service": service, "Address": backend.ip().to_string(), "Port": backend.port()},
    });
    if critical {
        body["Check"] = json!({"CheckID": format!("down-{id}"), "Name": "down", "ServiceID": id, "Status": "critical"});
    }
    body.to_string()
}

async fn register(http: &reqwest::Client, api: &str, body: String) -> Result<()> {
    let resp = http
        .put(format!("{api}/v1/catalog/register"))
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(resp.status().is_success(), "register: {}", resp.status());
    Ok(())
}

/// Registers services `from..to` with `instances` each; returns the rate.
async fn register_range(
    http: &reqwest::Client,
    api: &str,
    from: usize,
    to: usize,
    args: &Args,
    backend: SocketAddr,
) -> Result<f64> {
    let started = Instant::now();
    let bodies = (from..to).flat_map(|s| {
        (0..args.instances).map(move |i| {
            registration(
                &format!("s{s}"),
                &format!("s{s}-{i}"),
                &format!("node{i}"),
                backend,
                false,
            )
        })
    });
    let results: Vec<Result<()>> = stream::iter(bodies)
        .map(|b| register(http, api, b))
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<_>>>()?;
    Ok(((to - from) * args.instances) as f64 / started.elapsed().as_secs_f64())
}

/// Polls the proxy for `host` until it answers 200 with `body` (at most 10 s).
async fn until_routed(http: &reqwest::Client, proxy: &str, host: &str, body: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let r = http
            .get(format!("{proxy}/"))
            .header("Host", host)
            .send()
            .await;
        if let Ok(r) = r {
            if r.status().is_success() && r.text().await.unwrap_or_default() == body {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    Err(anyhow!("{host} never routed within 10 s"))
}

/// Time to route new services and new instances of existing ones.
async fn time_to_route(
    http: &reqwest::Client,
    stack: &Stack,
    tag: &str,
    samples: usize,
    a: SocketAddr,
    b: SocketAddr,
) -> Result<(Summary, Summary)> {
    let (mut new_service, mut new_instance) = (Vec::new(), Vec::new());
    for k in 0..samples {
        let name = format!("probe-{tag}-{k}");
        let t = Instant::now();
        register(
            http,
            &stack.api,
            registration(&name, &format!("{name}-a"), "probe", a, false),
        )
        .await?;
        until_routed(http, &stack.proxy, &format!("{name}.localhost"), "a").await?;
        new_service.push(t.elapsed());
        // An existing service whose only instance is down gets a new one.
        let old = format!("probe-{tag}-x{k}");
        register(
            http,
            &stack.api,
            registration(&old, &format!("{old}-a"), "probe", a, true),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let t = Instant::now();
        register(
            http,
            &stack.api,
            registration(&old, &format!("{old}-b"), "probe", b, false),
        )
        .await?;
        until_routed(http, &stack.proxy, &format!("{old}.localhost"), "b").await?;
        new_instance.push(t.elapsed());
    }
    Ok((
        Summary::of(&new_service).context("no samples")?,
        Summary::of(&new_instance).context("no samples")?,
    ))
}

/// An SRV question for `name` with ID `id`.
fn srv_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 33, 0, 1]);
    q
}

/// SRV answers per second from 4 clients asking one after another.
async fn dns_qps(dns: SocketAddr, name: &str, seconds: u64) -> Result<f64> {
    let answered = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..4u16 {
        let (answered, name) = (answered.clone(), name.to_string());
        tasks.push(tokio::spawn(async move {
            let sock = UdpSocket::bind("127.0.0.1:0").await?;
            sock.connect(dns).await?;
            let mut buf = vec![0u8; 4096];
            let mut id = c.wrapping_mul(16_000);
            while Instant::now() < deadline {
                id = id.wrapping_add(1);
                sock.send(&srv_query(id, &name)).await?;
                // Late answers to earlier questions are skipped: only the
                // answer with this ID counts, so one slow answer cannot
                // leave the client a question behind for the whole run.
                let give_up = tokio::time::Instant::now() + Duration::from_millis(500);
                while let Ok(Ok(n)) = tokio::time::timeout_at(give_up, sock.recv(&mut buf)).await {
                    if n > 12 && buf[..2] == id.to_be_bytes() {
                        answered.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(answered.load(Ordering::Relaxed) as f64 / seconds as f64)
}

/// Runs [`writer`] on a thread and runtime of its own, as another client
/// would be: on the benchmark's runtime its HTTP work would delay the DNS
/// clients' tasks and count as the server's slowness.
fn writer_thread(
    api: String,
    services: usize,
    rate: u64,
    backend: SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the writer");
        rt.block_on(writer(api, services, rate, backend, stop))
    })
}

/// Starts [`writer_thread`] at `--write-rate` on `api`; set the flag to stop it.
fn start_writer(
    api: &str,
    args: &Args,
    backend: SocketAddr,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer_thread(
        api.to_string(),
        args.services,
        args.write_rate,
        backend,
        stop.clone(),
    );
    (stop, w)
}

/// Connections the writer spreads its registrations over.
const WRITER_CONNS: u64 = 8;
/// A writer connection gives up on an answer after this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes at `rate`/s to services other than s0 until `stop`, over
/// [`WRITER_CONNS`] kept-alive connections of the thin client (each paced
/// at its share of the rate): on 2 cores a full client library would
/// spend as much CPU per write as the server, taken from the DNS figure
/// and charged to the server. Returns the writes acknowledged.
async fn writer(
    api: String,
    services: usize,
    rate: u64,
    backend: SocketAddr,
    stop: Arc<AtomicBool>,
) -> u64 {
    let per_conn = rate as f64 / WRITER_CONNS as f64;
    let conns = (0..WRITER_CONNS).map(|c| {
        let (api, stop) = (api.clone(), stop.clone());
        async move {
            let mut conn = match RawConn::connect(&api).await {
                Ok(conn) => conn,
                Err(e) => {
                    eprintln!("scale: writer {c} cannot connect: {e:#}");
                    return 0;
                }
            };
            let started = Instant::now();
            let mut done = 0u64;
            for k in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let due = started + Duration::from_secs_f64(k as f64 / per_conn);
                tokio::time::sleep_until(due.into()).await;
                let n = k * WRITER_CONNS + c;
                let s = 1 + (n as usize % (services - 1).max(1));
                let body = registration(
                    &format!("s{s}"),
                    &format!("s{s}-w{}", n % 7),
                    "writer",
                    backend,
                    n.is_multiple_of(2),
                );
                let sent = conn.send_put("/v1/catalog/register", body.as_bytes()).await;
                let answered = match sent {
                    Ok(()) => tokio::time::timeout(WRITE_TIMEOUT, conn.answer())
                        .await
                        .unwrap_or_else(|_| Err(format!("no answer within {WRITE_TIMEOUT:?}"))),
                    Err(e) => Err(e),
                };
                match answered.map(|a| a.status) {
                    Ok(200) => done += 1,
                    Ok(status) => eprintln!("scale: writer {c}: register answered {status}"),
                    Err(e) => {
                        eprintln!("scale: writer {c} stopped: {e}");
                        break;
                    }
                }
            }
            done
        }
    });
    futures::future::join_all(conns).await.into_iter().sum()
}

async fn run_mode(
    bin: &Path,
    args: &Args,
    dev: bool,
    figures: &mut Vec<Figure>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let label = if dev { "dev" } else { "server+proxy" };
    let (a, b) = (backend("a").await?, backend("b").await?);
    let http = http_client(Duration::from_secs(30))?;
    let mut stack = start_stack(bin, dev).await?;
    let mut checkpoints: Vec<usize> = args
        .checkpoints
        .iter()
        .copied()
        .filter(|c| *c < args.services)
        .collect();
    checkpoints.push(args.services);
    let mut done = 0;
    let mut first_rate = None;
    for &at in &checkpoints {
        let rate = register_range(&http, &stack.api, done, at, args, a).await?;
        let empty = *first_rate.get_or_insert(rate);
        done = at;
        let (svc, inst) = time_to_route(&http, &stack, &at.to_string(), args.samples, a, b).await?;
        let rss_server = rss_mib(stack.server.pid());
        let rss_proxy = stack.proxy_process.as_ref().map(|p| rss_mib(p.pid()));
        let line = format!(
            "{label} @ {at} services x {}: register {rate:.0}/s ({:.2}x of the first chunk); new service {}; new instance {}; RSS {} {rss_server:.0} MiB{}; load {}",
            args.instances,
            rate / empty,
            svc.line(),
            inst.line(),
            if dev { "dev" } else { "server" },
            rss_proxy.map_or(String::new(), |r| format!(", proxy {r:.0} MiB")),
            load_average()
        );
        println!("{line}");
        notes.push(line);
        if at == args.services {
            let target = Duration::from_millis(10);
            figures.push(Figure::delay_at_most(
                format!("{label}: new service routed, p99"),
                svc.p99,
                target,
            ));
            figures.push(Figure::delay_at_most(
                format!("{label}: new instance routed, p99"),
                inst.p99,
                target,
            ));
            figures.push(Figure::ratio_at_least(
                format!("{label}: registration rate full/empty"),
                rate / empty,
                0.8,
            ));
            if dev {
                figures.push(Figure::at_most("dev: RSS", rss_server, 300.0, "MiB"));
            } else {
                figures.push(Figure::at_most("server: RSS", rss_server, 250.0, "MiB"));
                figures.push(Figure::at_most(
                    "proxy: RSS",
                    rss_proxy.unwrap_or(0.0),
                    150.0,
                    "MiB",
                ));
            }
        }
    }
    // DNS SRV of s0: quiet, then while other services are written, in
    // alternating windows (`--dns-rounds`), compared by their medians:
    // one window of each swung 0.7-1.05x between runs on this machine.
    let (mut quiet, mut loaded) = (Vec::new(), Vec::new());
    let (mut writes, mut written_for) = (0u64, Duration::ZERO);
    for _ in 0..args.dns_rounds.max(1) {
        quiet.push(dns_qps(stack.dns, "s0.service.consul", args.dns_seconds).await?);
        let (stop, w) = start_writer(&stack.api, args, a);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        loaded.push(dns_qps(stack.dns, "s0.service.consul", args.dns_seconds).await?);
        written_for += started.elapsed() + Duration::from_millis(300);
        stop.store(true, Ordering::Relaxed);
        writes += w.await?;
    }
    let (quiet_m, loaded_m) = (median(&quiet), median(&loaded));
    let each = |v: &[f64]| {
        v.iter()
            .map(|q| format!("{q:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let line = format!(
        "{label}: DNS SRV qps quiet {quiet_m:.0} (median of {}), under writes {loaded_m:.0} (median of {}) ({:.2}x); writer did {writes} writes (~{:.0}/s); load {}",
        each(&quiet),
        each(&loaded),
        loaded_m / quiet_m.max(1.0),
        writes as f64 / written_for.as_secs_f64().max(0.001),
        load_average()
    );
    println!("{line}");
    notes.push(line);
    figures.push(Figure::ratio_at_least(
        format!("{label}: DNS SRV qps under writes / quiet"),
        loaded_m / quiet_m.max(1.0),
        0.8,
    ));
    if let Some(mut old) = stack.proxy_process.take() {
        old.kill();
        let t = Instant::now();
        let bin2 = bin.to_path_buf();
        let api = stack.api.clone();
        let proxy = tokio::task::spawn_blocking(move || start_proxy(&bin2, &api)).await??;
        let last = format!("s{}.localhost", args.services - 1);
        until_routed(&http, &proxy.url, &last, "a").await?;
        let took = t.elapsed();
        println!(
            "proxy start-up until s{} routes: {}",
            args.services - 1,
            ms(took)
        );
        figures.push(Figure::delay_at_most(
            "proxy start-up until every service routes",
            took,
            Duration::from_secs(2),
        ));
        stack.proxy_process = Some(proxy);
    }
    // SIGTERM while writes go on.
    let (stop, w) = start_writer(&stack.api, args, a);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let mut server = stack.server;
    let code = tokio::task::spawn_blocking(move || server.terminate()).await?;
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
    println!(
        "{label}: SIGTERM under writes stopped it in {} (exit {code:?})",
        ms(took)
    );
    figures.push(Figure::delay_at_most(
        format!("{label}: SIGTERM to exit under writes"),
        took,
        Duration::from_secs(3),
    ));
    Ok(())
}

/// Runs the benchmark.
pub async fn run(bin: &Path, args: &Args, command: &str) -> Result<()> {
    let mut figures = Vec::new();
    let mut notes = vec![
        format!("command: {command}"),
        format!("load average at start: {}", load_average()),
    ];
    let wants =
        |m: &str| args.mode == m || args.mode == "all" || (args.mode == "both" && m != "agent");
    anyhow::ensure!(
        ["dev", "server", "agent", "both", "all"].contains(&args.mode.as_str()),
        "--mode must be dev, server, agent, both or all, not {:?}",
        args.mode
    );
    if wants("dev") {
        run_mode(bin, args, true, &mut figures, &mut notes).await?;
    }
    if wants("server") {
        run_mode(bin, args, false, &mut figures, &mut notes).await?;
    }
    if wants("agent") {
        let mut at: Vec<usize> = args
            .agent_checkpoints
            .iter()
            .copied()
            .filter(|c| *c < args.agent_instances)
            .collect();
        at.push(args.agent_instances);
        crate::scale_agent::run(
            bin,
            &at,
            args.samples,
            args.concurrency,
            &mut figures,
            &mut notes,
        )
        .await?;
    }
    notes.push(
        "1,000 watchers (server RSS growth <= 8 MiB): shoal-bench watchers --count 1000".into(),
    );
    notes.push(format!("load average at end: {}", load_average()));
    print_summary("scale", &figures, &notes);
    Ok(())
}
