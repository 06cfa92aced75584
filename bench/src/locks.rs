//! `shoal-bench locks`: coordination against `shoal server` on the
//! embedded store, or (`--store etcd`) against two `shoal server --store
//! etcd` on a 3-member etcd on loopback, where waiters alternate between
//! the servers and every session is renewed through the server it was
//! not created on (so every renewal reaches the leader through etcd).
//!
//! 1. Lock hand-over latency. `--waiters` sessions contend for one key as
//!    Consul's lock clients do: try `?acquire`; when refused, a blocking
//!    `GET /v1/kv/<key>?index=` until the key changes, and try again
//!    once it is free. The holder keeps the lock for `--hold-ms`, then
//!    releases it and goes back to waiting. Each sample is from the
//!    moment the release is sent to the moment the next holder's
//!    `?acquire` is acknowledged (two durable writes and a wake-up of every
//!    waiter in between). Target: p99 <= 20 ms.
//! 2. Session renewals/s. `--sessions` TTL sessions are created, then
//!    `--clients` connections renew them round-robin for `--seconds`.
//!    Target: >= 2,000/s, what 10,000 sessions at the shortest TTL (10 s)
//!    need when renewed every TTL/2, as `shoal lock` and Consul's
//!    clients renew. Afterwards every session must still exist.
//!
//! Every loop is bounded in count and in time.

use crate::report::{print_summary, Figure};
use crate::server::{check_open_files, http_client, DurableServer};
use crate::stats::Summary;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Target: p99 of the lock hand-over.
const HANDOVER_P99: Duration = Duration::from_millis(20);
/// Target: renewals per second.
const RENEWALS: f64 = 2_000.0;
/// The contended key.
const KEY: &str = "bench/leader/.lock";
/// Bound on the whole hand-over phase.
const HANDOVER_LIMIT: Duration = Duration::from_secs(120);

/// Options of `shoal-bench locks`.
#[derive(clap::Args)]
pub struct Args {
    /// Sessions contending for the lock.
    #[arg(long, default_value_t = 100)]
    waiters: usize,
    /// Hand-overs to measure.
    #[arg(long, default_value_t = 300)]
    handovers: u64,
    /// How long each holder keeps the lock, in milliseconds.
    #[arg(long, default_value_t = 2)]
    hold_ms: u64,
    /// TTL sessions kept alive in the renewal phase.
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Concurrent renewing connections.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Length of the renewal phase, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// `embedded` (one server) or `etcd` (two servers on a 3-member etcd).
    #[arg(long, default_value = "embedded", value_parser = ["embedded", "etcd"])]
    store: String,
}

/// The servers under test, kept alive for the run.
enum Servers {
    Embedded(DurableServer),
    Etcd(
        // Servers first: dropped (stopped) before etcd.
        Box<(
            shoal_testkit::ServerProcess,
            shoal_testkit::ServerProcess,
            shoal_testkit::EtcdCluster,
        )>,
    ),
}

impl Servers {
    async fn start(shoal: &Path, store: &str) -> Result<Servers> {
        if store == "embedded" {
            return Ok(Servers::Embedded(DurableServer::start(shoal).await?));
        }
        println!("starting a 3-member etcd cluster and two shoal servers on it ...");
        let bin = shoal.to_path_buf();
        let (etcd, a, b) = tokio::task::spawn_blocking(move || {
            let etcd = shoal_testkit::EtcdCluster::start(3);
            let a = etcd.start_shoal(&bin, "server-a", &[]);
            let b = etcd.start_shoal(&bin, "server-b", &[]);
            (etcd, a, b)
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot start etcd and the servers: {e}"))?;
        Ok(Servers::Etcd(Box::new((a, b, etcd))))
    }

    fn bases(&self) -> Vec<String> {
        let trim = |u: &str| u.trim_end_matches('/').to_string();
        match self {
            Servers::Embedded(s) => vec![trim(&s.process.url)],
            Servers::Etcd(e) => vec![trim(&e.0.url), trim(&e.1.url)],
        }
    }

    fn describe(&self) -> String {
        match self {
            Servers::Embedded(s) => s.command.clone(),
            Servers::Etcd(e) => format!(
                "two `shoal server --store etcd` ({} and {}) on a 3-member etcd on loopback ({}; \
                 testkit's flags, etcd's default limits)",
                e.0.url,
                e.1.url,
                e.2.endpoints()
            ),
        }
    }
}

/// Runs the benchmark with the binary `shoal`; `command` is echoed in the summary.
pub async fn run(shoal: &Path, args: &Args, command: &str) -> Result<()> {
    if args.waiters < 2 || args.handovers == 0 || args.sessions == 0 || args.clients == 0 {
        bail!("--waiters must be at least 2; --handovers, --sessions and --clients at least 1");
    }
    check_open_files((args.waiters + args.clients) as u64 + 128)?;
    let servers = Servers::start(shoal, &args.store).await?;
    let bases = servers.bases();
    let mut figures = Vec::new();

    println!(
        "hand-over: {} waiters, {} hand-overs",
        args.waiters, args.handovers
    );
    match handover(&bases, args).await? {
        Some(s) => {
            println!("  {}", s.line());
            figures.push(Figure::delay_at_most(
                "lock hand-over p99",
                s.p99,
                HANDOVER_P99,
            ));
            figures.push(Figure::info("lock hand-over p50", crate::stats::ms(s.p50)));
        }
        None => figures.push(Figure::missing("lock hand-over p99", "<= 20.00 ms")),
    }

    println!(
        "renewals: {} sessions, {} clients, {} s",
        args.sessions, args.clients, args.seconds
    );
    let (rate, worst, alive) = renewals(&bases, args).await?;
    figures.push(Figure::rate_at_least("session renewals", rate, RENEWALS));
    figures.push(Figure::info(
        "slowest one-second window",
        format!("{worst:.0}/s"),
    ));
    figures.push(Figure::count_at_most(
        "sessions lost during renewals",
        (args.sessions - alive) as u64,
        0,
    ));
    let notes = vec![
        format!("command: {command}"),
        format!("server: {}", servers.describe()),
        format!("load average at the end: {}", load_average()),
    ];
    print_summary("locks", &figures, &notes);
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

async fn create_session(client: &reqwest::Client, base: &str, spec: &Value) -> Result<String> {
    let r = client
        .put(format!("{base}/v1/session/create"))
        .json(spec)
        .send()
        .await
        .context("session/create")?;
    if !r.status().is_success() {
        bail!("session/create: HTTP {}", r.status());
    }
    let v: Value = r.json().await.context("session/create answer")?;
    v["ID"]
        .as_str()
        .map(str::to_string)
        .context("no session ID")
}

/// What the contenders share.
struct Contest {
    /// When the current holder sent its release (None: nobody released yet).
    released: Mutex<Option<Instant>>,
    samples: Mutex<Vec<Duration>>,
    done: AtomicBool,
    handovers: AtomicU64,
}

async fn handover(bases: &[String], args: &Args) -> Result<Option<Summary>> {
    let client = http_client(Duration::from_secs(60))?;
    let contest = Arc::new(Contest {
        released: Mutex::new(None),
        samples: Mutex::new(Vec::new()),
        done: AtomicBool::new(false),
        handovers: AtomicU64::new(0),
    });
    let mut tasks = JoinSet::new();
    for n in 0..args.waiters {
        let spec = json!({"Name": format!("waiter-{n}"), "LockDelay": "0s"});
        let base = &bases[n % bases.len()];
        let session = create_session(&client, base, &spec).await?;
        let (client, base, contest) = (client.clone(), base.to_string(), contest.clone());
        let (hold, want) = (Duration::from_millis(args.hold_ms), args.handovers);
        tasks.spawn(async move { contend(&client, &base, &session, &contest, hold, want).await });
    }
    let deadline = tokio::time::sleep(HANDOVER_LIMIT);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                None => break,
                Some(Ok(Err(e))) => {
                    contest.done.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                Some(_) => {}
            },
            _ = &mut deadline => {
                println!("  stopped after {HANDOVER_LIMIT:?} (bounded)");
                contest.done.store(true, Ordering::Relaxed);
                tasks.abort_all();
                break;
            }
        }
    }
    let samples = contest.samples.lock().unwrap().clone();
    Ok(Summary::of(&samples))
}

/// One contender: acquire, hold, release, wait again; as a Consul client.
async fn contend(
    client: &reqwest::Client,
    base: &str,
    session: &str,
    contest: &Contest,
    hold: Duration,
    want: u64,
) -> Result<()> {
    let mut index = 0u64;
    while !contest.done.load(Ordering::Relaxed) {
        let url = format!("{base}/v1/kv/{KEY}?acquire={session}");
        let r = client.put(&url).body("held").send().await?;
        let took = r.text().await? == "true";
        if took {
            let acquired = Instant::now();
            if let Some(sent) = contest.released.lock().unwrap().take() {
                contest.samples.lock().unwrap().push(acquired - sent);
                if contest.handovers.fetch_add(1, Ordering::Relaxed) + 1 >= want {
                    contest.done.store(true, Ordering::Relaxed);
                }
            }
            tokio::time::sleep(hold).await;
            *contest.released.lock().unwrap() = Some(Instant::now());
            let url = format!("{base}/v1/kv/{KEY}?release={session}");
            client.put(&url).body("").send().await?.error_for_status()?;
            index = 0;
            continue;
        }
        // Refused: block until the key changes, then try once it is free.
        loop {
            if contest.done.load(Ordering::Relaxed) {
                return Ok(());
            }
            let url = format!("{base}/v1/kv/{KEY}?index={index}&wait=10s");
            let r = client.get(&url).send().await?;
            let next: u64 = r
                .headers()
                .get("X-Consul-Index")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(0);
            let entries: Value = r.json().await.unwrap_or(Value::Null);
            index = if next < index { 0 } else { next };
            let holder = entries[0]["Session"].as_str().unwrap_or("");
            if holder.is_empty() {
                break;
            }
        }
    }
    Ok(())
}

/// Renews every session round-robin, each through the server after the
/// one it was created on; (rate, slowest second, alive after).
async fn renewals(bases: &[String], args: &Args) -> Result<(f64, f64, usize)> {
    let base = &bases[0];
    let client = http_client(Duration::from_secs(30))?;
    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(args.sessions);
    let mut creating = JoinSet::new();
    for n in 0..args.sessions {
        let (client, at) = (client.clone(), bases[n % bases.len()].clone());
        let renew_at = bases[(n + 1) % bases.len()].clone();
        let spec = json!({"Name": format!("renewed-{n}"), "TTL": "60s"});
        creating.spawn(async move {
            create_session(&client, &at, &spec)
                .await
                .map(|id| format!("{renew_at}/v1/session/renew/{id}"))
        });
        if creating.len() >= 64 {
            ids.push(creating.join_next().await.context("join")???);
        }
    }
    while let Some(id) = creating.join_next().await {
        ids.push(id??);
    }
    println!(
        "  created {} sessions in {:.1} s",
        ids.len(),
        t0.elapsed().as_secs_f64()
    );
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicU64::new(0));
    let period = Duration::from_secs(args.seconds.max(1));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..args.clients {
        let (client, ids, next) = (client.clone(), ids.clone(), next.clone());
        tasks.spawn(async move {
            // Per-second counts of this client.
            let mut per_second = vec![0u64; period.as_secs() as usize];
            while started.elapsed() < period {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize % ids.len();
                let r = client.put(&ids[i]).send().await?;
                if !r.status().is_success() {
                    bail!("renew: HTTP {}", r.status());
                }
                r.bytes().await?;
                let second = started.elapsed().as_secs() as usize;
                if let Some(c) = per_second.get_mut(second) {
                    *c += 1;
                }
            }
            Ok::<_, anyhow::Error>(per_second)
        });
    }
    let mut seconds = vec![0u64; period.as_secs() as usize];
    while let Some(done) = tasks.join_next().await {
        for (total, c) in seconds.iter_mut().zip(done??) {
            *total += c;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total: u64 = seconds.iter().sum();
    let worst = seconds.iter().copied().min().unwrap_or(0) as f64;
    let list: Value = client
        .get(format!("{base}/v1/session/list"))
        .send()
        .await?
        .json()
        .await?;
    let alive = list
        .as_array()
        .map_or(0, |a| a.iter().filter(|s| s["TTL"] == "60s").count());
    Ok((total as f64 / elapsed, worst, alive))
}
