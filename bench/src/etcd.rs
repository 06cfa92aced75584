//! `shoal-bench etcd`: two `shoal server --store etcd` on one 3-member
//! etcd cluster on loopback (Debian's `etcd-server`, started by the
//! testkit: free ports, temporary data directories), and
//!
//! 1. durable registrations per second through both servers (clients
//!    alternate between them), side by side with raw etcd puts per second
//!    from the same HTTP client at the same concurrency (`PUT /v3/kv/put`
//!    on etcd's JSON gateway, the API shoal uses);
//! 2. the delay from a registration acknowledged by server A to the
//!    answers of 1,000 blocking queries parked on server B;
//! 3. the time from a registration acknowledged by A to the first request
//!    routed to the new instance by `shoal proxy` following B.

use crate::proxy::fleet::{self, free_port, RegistryClient, Spawned};
use crate::registry::{load, wakeup};
use crate::report::{print_summary, Figure};
use crate::server::{check_open_files, http_client};
use crate::stats::{ms, Summary};
use anyhow::{anyhow, bail, Result};
use base64::Engine;
use shoal_testkit::{EtcdCluster, ServerProcess};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Target: registrations/s through the servers, absolute...
const REGISTRATIONS_TARGET: f64 = 2_000.0;
/// ...and relative to raw etcd puts at the same concurrency.
const RAW_RATIO_TARGET: f64 = 0.5;
/// Target: p99 from A's acknowledgement to B's watchers' answers.
const WAKE_P99_TARGET: Duration = Duration::from_millis(50);
/// Target: p99 from A's acknowledgement to the first routed answer via B.
const ROUTE_P99_TARGET: Duration = Duration::from_millis(20);
/// Registrations are spread over this many service names.
const SERVICES: u64 = 100;
/// Size of each raw etcd value: about one registration's instance record.
const RAW_VALUE_BYTES: usize = 256;

/// Options of `shoal-bench etcd`.
#[derive(clap::Args)]
pub struct Args {
    /// Concurrent keep-alive clients for the write benchmarks.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Writes per write benchmark at most (it also stops at --seconds).
    #[arg(long, default_value_t = 20_000)]
    count: u64,
    /// Time limit per write benchmark, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Servers the registrations go to: 2 (A and B, alternating) or 1 (A).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=2))]
    write_servers: u64,
    /// Concurrent blocking queries on server B per wake-up round.
    #[arg(long, default_value_t = 1_000)]
    watchers: usize,
    /// Wake-up rounds.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Pause between all watchers being sent and the write, in milliseconds.
    #[arg(long, default_value_t = 500)]
    settle_ms: u64,
    /// Registrations timed through the proxy (one new service and backend each).
    #[arg(long, default_value_t = 100)]
    route_iterations: usize,
    /// Time limit of the time-to-route iterations, in seconds.
    #[arg(long, default_value_t = 60)]
    route_seconds: u64,
}

/// Runs the benchmark with the binary `shoal`; `command` is echoed in the summary.
pub async fn run(shoal: &Path, args: &Args, command: &str) -> Result<()> {
    if args.clients == 0 || args.count == 0 || args.watchers == 0 || args.rounds == 0 {
        bail!("--clients, --count, --watchers and --rounds must be at least 1");
    }
    check_open_files((args.watchers + args.clients) as u64 + 256)?;
    println!("starting a 3-member etcd cluster and two shoal servers on it ...");
    let bin = shoal.to_path_buf();
    let (etcd, a, b) = tokio::task::spawn_blocking(move || {
        let etcd = EtcdCluster::start(3);
        let a = etcd.start_shoal(&bin, "server-a", &[]);
        let b = etcd.start_shoal(&bin, "server-b", &[]);
        (etcd, a, b)
    })
    .await
    .map_err(|e| anyhow!("cannot start etcd and the servers: {e}"))?;
    println!(
        "etcd {}\nserver A {}  server B {}",
        etcd.endpoints(),
        a.url,
        b.url
    );
    let plan = load::Plan {
        clients: args.clients,
        count: args.count,
        limit: Duration::from_secs(args.seconds),
    };
    let client = http_client(Duration::from_secs(30))?;
    let (c, n, secs) = (args.clients, args.count, args.seconds);
    println!("raw etcd puts: {c} clients, up to {n} puts or {secs} s ...");
    let raw = load::run(plan, raw_puts(&client, &etcd.endpoint(0))).await;
    println!("  {}", raw.line());
    println!("registrations through A and B: {c} clients, up to {n} writes or {secs} s ...");
    let before = [counters(&client, &a).await, counters(&client, &b).await];
    let regs = load::run(plan, registrations(&client, [&a, &b], args.write_servers)).await;
    println!("  {}", regs.line());
    let after = [counters(&client, &a).await, counters(&client, &b).await];
    let commits: Vec<Counters> = (0..2).map(|i| after[i].since(&before[i])).collect();
    for (name, c) in ["A", "B"].iter().zip(&commits) {
        println!(
            "  server {name}: {} commits, {} lost to the other server and retried, \
             {} writes forwarded to the leader",
            c.commits, c.conflicts, c.forwarded
        );
    }

    println!(
        "wake-up: write on A, {} watchers on B, {} rounds ...",
        args.watchers, args.rounds
    );
    let wake_plan = wakeup::Plan {
        watchers: args.watchers,
        rounds: args.rounds,
        settle: Duration::from_millis(args.settle_ms),
    };
    let rounds = wakeup::run_across(&a.url, &b.url, wake_plan).await?;

    println!("time to route: register on A, proxy following B ...");
    let route = time_to_route(shoal, &a, &b, args).await?;

    let mut figures = write_figures(args, &regs, &raw);
    let (commits, conflicts) = commits
        .iter()
        .fold((0, 0), |(c, x), s| (c + s.commits, x + s.conflicts));
    figures.push(Figure::info(
        "etcd commits of A+B (lost and retried)",
        format!("{commits} ({conflicts})"),
    ));
    figures.push(Figure::info(
        "registrations per commit",
        format!("{:.1}", regs.ok as f64 / commits.max(1) as f64),
    ));
    figures.extend(wake_figures(args, &rounds));
    figures.extend(route_figures(&route));
    let server_cmd = format!(
        "{} server --http-addr 127.0.0.1:0 --dns-addr 127.0.0.1:0 --log-level warn --store etcd \
         --etcd-endpoints {} --data-dir <temp> --node-name server-a|server-b",
        shoal.display(),
        etcd.endpoints()
    );
    let notes = vec![
        format!("command: {command}"),
        format!("servers: {server_cmd}"),
        "etcd:    3 members of Debian's etcd-server on 127.0.0.1 (testkit: --heartbeat-interval 50 \
         --election-timeout 500, data in a temp dir); raw puts: POST /v3/kv/put to member 0, \
         which both servers use first"
            .into(),
        format!(
            "proxy:   {}",
            route.proxy_command.as_deref().unwrap_or("-")
        ),
        "all traffic on 127.0.0.1".into(),
    ];
    print_summary("shoal-bench etcd", &figures, &notes);
    drop((a, b));
    drop(etcd);
    Ok(())
}

/// A server's commit counters, from its `/metrics`.
#[derive(Default)]
struct Counters {
    commits: u64,
    conflicts: u64,
    /// Writes the server had the leading server commit.
    forwarded: u64,
}

impl Counters {
    fn since(&self, before: &Counters) -> Counters {
        Counters {
            commits: self.commits.saturating_sub(before.commits),
            conflicts: self.conflicts.saturating_sub(before.conflicts),
            forwarded: self.forwarded.saturating_sub(before.forwarded),
        }
    }
}

async fn counters(client: &reqwest::Client, server: &ServerProcess) -> Counters {
    let text = match client.get(server.at("/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    };
    Counters {
        commits: value("shoal_catalog_commits_total"),
        conflicts: value("shoal_catalog_commit_conflicts_total"),
        forwarded: value("shoal_catalog_writes_forwarded_total"),
    }
}

/// Raw etcd put `i`: key `/bench/raw/<i>`, a [`RAW_VALUE_BYTES`] value.
fn raw_puts(client: &reqwest::Client, endpoint: &str) -> Arc<load::MakeWrite> {
    let (client, url) = (client.clone(), format!("{endpoint}/v3/kv/put"));
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let value = b64("v".repeat(RAW_VALUE_BYTES).as_bytes());
    Arc::new(move |i| {
        let body = serde_json::json!({
            "key": b64(format!("/bench/raw/{i}").as_bytes()),
            "value": value,
        });
        (client.post(&url).json(&body), None)
    })
}

/// Registration `i` on server A (even `i`) or B (odd; A only when
/// `spread` is 1): instance `bench-<i>` of one of [`SERVICES`] services.
fn registrations(
    client: &reqwest::Client,
    servers: [&ServerProcess; 2],
    spread: u64,
) -> Arc<load::MakeWrite> {
    let client = client.clone();
    let urls = servers.map(|s| format!("{}/v1/agent/service/register", s.url));
    Arc::new(move |i| {
        let body = serde_json::json!({
            "ID": format!("bench-{i}"),
            "Name": format!("bench-{}", i % SERVICES),
            "Port": 8080,
            "Address": "127.0.0.1",
            "Tags": ["bench"],
        });
        (client.put(&urls[(i % spread) as usize]).json(&body), None)
    })
}

fn write_figures(args: &Args, regs: &load::Outcome, raw: &load::Outcome) -> Vec<Figure> {
    let c = args.clients;
    let mut figures = vec![
        Figure::rate_at_least(
            format!(
                "registrations/s via {} ({c} clients)",
                if args.write_servers == 2 { "A+B" } else { "A" }
            ),
            regs.rate(),
            REGISTRATIONS_TARGET,
        ),
        Figure::info(
            format!("raw etcd puts/s ({c} clients)"),
            format!("{:.0}/s", raw.rate()),
        ),
        Figure::ratio_at_least(
            "registrations / raw etcd puts",
            regs.rate() / raw.rate().max(1e-9),
            RAW_RATIO_TARGET,
        ),
    ];
    for (what, out) in [("registration", regs), ("raw etcd put", raw)] {
        if let Some(s) = Summary::of(&out.latencies) {
            figures.push(Figure::info(
                format!("{what} latency p50 / p99"),
                format!("{} / {}", ms(s.p50), ms(s.p99)),
            ));
        }
        if out.errors > 0 {
            let first = out.first_error.as_deref().unwrap_or("?");
            figures.push(Figure::info(
                format!("{what} errors"),
                format!("{} (first: {first})", out.errors),
            ));
        }
    }
    figures
}

fn wake_figures(args: &Args, rounds: &[wakeup::Round]) -> Vec<Figure> {
    let all = |f: fn(&wakeup::Round) -> &Vec<Duration>| -> Vec<Duration> {
        rounds.iter().flat_map(|r| f(r).iter().copied()).collect()
    };
    let who = format!("{} watchers on B x {} rounds", args.watchers, args.rounds);
    let mut figures = Vec::new();
    match Summary::of(&all(|r| &r.from_ack)) {
        Some(s) => {
            figures.push(Figure::info(
                format!("A ack -> B watchers answered p50 ({who})"),
                ms(s.p50),
            ));
            figures.push(Figure::delay_at_most(
                "A ack -> B watchers answered p99",
                s.p99,
                WAKE_P99_TARGET,
            ));
            figures.push(Figure::info("A ack -> B watchers answered max", ms(s.max)));
        }
        None => figures.push(Figure::missing(
            "A ack -> B watchers answered p99",
            format!("<= {}", ms(WAKE_P99_TARGET)),
        )),
    }
    if let Some(s) = Summary::of(&all(|r| &r.from_sent)) {
        figures.push(Figure::info(
            "A write sent -> B watchers answered p99",
            ms(s.p99),
        ));
    }
    let sum = |f: fn(&wakeup::Round) -> usize| rounds.iter().map(f).sum::<usize>().to_string();
    figures.push(Figure::info(
        "watchers answered before A's ack (counted 0)",
        sum(|r| r.before_ack),
    ));
    figures.push(Figure::info(
        "watchers returned before the write",
        sum(|r| r.early),
    ));
    figures.push(Figure::info("watchers failed", sum(|r| r.failed)));
    if let Some(e) = rounds.iter().find_map(|r| r.first_error.as_deref()) {
        figures.push(Figure::info("first watcher failure", e));
    }
    figures
}

/// What the time-to-route iterations measured.
#[derive(Default)]
struct Route {
    /// A's acknowledgement -> first answer from the new instance via B's proxy.
    delays: Vec<Duration>,
    /// Answers before the acknowledgement (counted 0).
    before_ack: usize,
    /// Iterations that never reached the instance.
    failed: usize,
    first_error: Option<String>,
    proxy_command: Option<String>,
}

/// Per iteration: a new `shoal hello` `etr-<i>`, registered on A; requests
/// for `etr-<i>.localhost` through the proxy that follows B, repeated from
/// the acknowledgement on until one reaches the new instance.
async fn time_to_route(
    shoal: &Path,
    a: &ServerProcess,
    b: &ServerProcess,
    args: &Args,
) -> Result<Route> {
    let stats_port = free_port()?;
    let proxy = fleet::start_proxy(shoal, None, &b.url, stats_port, &[]).await?;
    let writes = RegistryClient::new(&a.url)?;
    let client = http_client(Duration::from_secs(5))?;
    let mut out = Route {
        proxy_command: Some(proxy.command.clone()),
        ..Route::default()
    };
    let limit = Instant::now() + Duration::from_secs(args.route_seconds);
    for i in 0..args.route_iterations {
        if Instant::now() >= limit {
            println!("  time limit reached after {i} iterations");
            break;
        }
        let name = format!("etr-{i}");
        let hello = fleet::start_hello(shoal, &name, &name).await?;
        writes.register(&name, &name, hello.port()?).await?;
        let acked = Instant::now();
        match routed(&client, &proxy, &name, acked + Duration::from_secs(5)).await {
            Ok(at) if at < acked => {
                out.before_ack += 1;
                out.delays.push(Duration::ZERO);
            }
            Ok(at) => out.delays.push(at - acked),
            Err(e) => {
                out.failed += 1;
                out.first_error.get_or_insert(e);
            }
        }
        writes.deregister(&name).await?;
        drop(hello);
        if (i + 1) % 25 == 0 {
            let s = Summary::of(&out.delays).map_or("-".into(), |s| s.line());
            println!("  {} iterations: {s}", i + 1);
        }
    }
    drop(proxy);
    Ok(out)
}

/// Asks through the proxy until instance `service` answers (or `deadline`):
/// the moment its whole answer arrived.
async fn routed(
    client: &reqwest::Client,
    proxy: &Spawned,
    service: &str,
    deadline: Instant,
) -> Result<Instant, String> {
    let mut last = String::from("no request sent");
    while Instant::now() < deadline {
        let response = client
            .get(format!("{}/json", proxy.process.url))
            .header("Host", format!("{service}.localhost"))
            .send()
            .await;
        match response {
            Ok(r) if r.status() == reqwest::StatusCode::OK => {
                let body = r.bytes().await.map_err(|e| e.to_string())?;
                let at = Instant::now();
                let id = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_string));
                if id.as_deref() == Some(service) {
                    return Ok(at);
                }
                last = format!("answered by {id:?}");
            }
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    Err(format!("not routed within 5 s: {last}"))
}

fn route_figures(out: &Route) -> Vec<Figure> {
    let mut figures = Vec::new();
    match Summary::of(&out.delays) {
        Some(s) => {
            figures.push(Figure::info(
                format!(
                    "A ack -> routed via B's proxy p50 ({} registrations)",
                    s.count
                ),
                ms(s.p50),
            ));
            figures.push(Figure::delay_at_most(
                "A ack -> routed via B's proxy p99",
                s.p99,
                ROUTE_P99_TARGET,
            ));
            figures.push(Figure::info("A ack -> routed via B's proxy max", ms(s.max)));
        }
        None => figures.push(Figure::missing(
            "A ack -> routed via B's proxy p99",
            format!("<= {}", ms(ROUTE_P99_TARGET)),
        )),
    }
    figures.push(Figure::info(
        "routed before A's ack (counted 0)",
        out.before_ack.to_string(),
    ));
    figures.push(Figure::info("never routed", out.failed.to_string()));
    if let Some(e) = &out.first_error {
        figures.push(Figure::info("first routing failure", e.clone()));
    }
    figures
}
