//! `shoal-bench registry`: against `shoal server` on the embedded durable
//! store (redb, fsync per commit, group commit), measures
//!
//! 1. registrations per second through `PUT /v1/agent/service/register`
//!    (distinct service IDs, so each is a real durable write);
//! 2. KV puts per second through `PUT /v1/kv/<key>` (distinct keys);
//! 3. the wake-up delay of blocking queries on one service after a write.

pub(crate) mod load;
pub(crate) mod raw;
pub(crate) mod wakeup;

use crate::report::{print_summary, Figure};
use crate::server::{check_open_files, http_client, DurableServer};
use crate::stats::{ms, Summary};
use anyhow::{bail, Result};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Target: durable registrations per second with 64 clients.
const REGISTRATIONS_TARGET: f64 = 5_000.0;
/// Target: p99 wake-up delay after the write is acknowledged.
const WAKE_P99_TARGET: Duration = Duration::from_millis(20);
/// Registrations are spread over this many service names.
const SERVICES: u64 = 100;
/// Size of each KV value.
const KV_VALUE_BYTES: usize = 64;

/// Options of `shoal-bench registry`.
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
    /// Concurrent blocking queries per wake-up round.
    #[arg(long, default_value_t = 1_000)]
    watchers: usize,
    /// Wake-up rounds.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Pause between all watchers being sent and the write, in milliseconds.
    #[arg(long, default_value_t = 500)]
    settle_ms: u64,
}

/// Runs the benchmark with the binary `shoal`; `command` is echoed in the summary.
pub async fn run(shoal: &Path, args: &Args, command: &str) -> Result<()> {
    if args.clients == 0 || args.count == 0 || args.watchers == 0 || args.rounds == 0 {
        bail!("--clients, --count, --watchers and --rounds must be at least 1");
    }
    check_open_files((args.watchers + args.clients) as u64 + 128)?;
    let server = DurableServer::start(shoal).await?;
    println!(
        "shoal server at {} (data dir {})",
        server.process.url,
        server.data_dir.path().display()
    );
    let base = server.process.url.clone();
    let (registrations, kv) = run_writes(args, &base).await?;
    println!(
        "wake-up: {} watchers on service {:?}, {} rounds ...",
        args.watchers,
        wakeup::SERVICE,
        args.rounds
    );
    let wake_plan = wakeup::Plan {
        watchers: args.watchers,
        rounds: args.rounds,
        settle: Duration::from_millis(args.settle_ms),
    };
    let rounds = wakeup::run(&base, wake_plan).await?;

    let mut figures = write_figures(args, &registrations, &kv);
    figures.extend(wake_figures(args, &rounds));
    let notes = vec![
        format!("command: {command}"),
        format!("server:  {}", server.command),
        "store:   embedded redb, fsync per commit, group commit; all traffic on 127.0.0.1".into(),
    ];
    print_summary("shoal-bench registry", &figures, &notes);
    Ok(())
}

/// The two closed-loop write benchmarks: registrations, then KV puts.
async fn run_writes(args: &Args, base: &str) -> Result<(load::Outcome, load::Outcome)> {
    let plan = load::Plan {
        clients: args.clients,
        count: args.count,
        limit: Duration::from_secs(args.seconds),
    };
    let client = http_client(Duration::from_secs(30))?;
    let (c, n, secs) = (args.clients, args.count, args.seconds);
    println!("registrations: {c} clients, up to {n} writes or {secs} s ...");
    let registrations = load::run(plan, register_writes(&client, base)).await;
    println!("  {}", registrations.line());
    println!("KV puts: {c} clients, up to {n} writes or {secs} s ...");
    let kv = load::run(plan, kv_writes(&client, base)).await;
    println!("  {}", kv.line());
    Ok((registrations, kv))
}

/// Registration `i`: instance `bench-<i>` of one of [`SERVICES`] services.
fn register_writes(client: &reqwest::Client, base: &str) -> Arc<load::MakeWrite> {
    let (client, url) = (client.clone(), format!("{base}/v1/agent/service/register"));
    Arc::new(move |i| {
        let body = serde_json::json!({
            "ID": format!("bench-{i}"),
            "Name": format!("bench-{}", i % SERVICES),
            "Port": 8080,
            "Address": "127.0.0.1",
            "Tags": ["bench"],
        });
        (client.put(&url).json(&body), None)
    })
}

/// KV put `i`: key `bench/<i>` with a [`KV_VALUE_BYTES`]-byte value.
fn kv_writes(client: &reqwest::Client, base: &str) -> Arc<load::MakeWrite> {
    let (client, base) = (client.clone(), base.to_string());
    let value = "v".repeat(KV_VALUE_BYTES);
    Arc::new(move |i| {
        (
            client
                .put(format!("{base}/v1/kv/bench/{i}"))
                .body(value.clone()),
            Some("true"),
        )
    })
}

/// Throughput rows: registrations (with target), KV puts, and any errors.
fn write_figures(args: &Args, reg: &load::Outcome, kv: &load::Outcome) -> Vec<Figure> {
    let c = args.clients;
    let mut figures = vec![
        Figure::rate_at_least(
            format!("registrations/s ({c} clients)"),
            reg.rate(),
            REGISTRATIONS_TARGET,
        ),
        Figure::info(
            format!("KV puts/s ({c} clients)"),
            format!("{:.0}/s", kv.rate()),
        ),
    ];
    for (what, out) in [("registration", reg), ("KV put", kv)] {
        if let Some(p99) = Summary::of(&out.latencies).map(|s| s.p99) {
            figures.push(Figure::info(format!("{what} latency p99"), ms(p99)));
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

/// Wake-up rows over all rounds. The target applies end to end: from the
/// moment the write is sent (so the durable commit is included) to each
/// watcher's whole answer. From the write's acknowledgement is shown too,
/// but on one machine most answers arrive before the acknowledgement does.
fn wake_figures(args: &Args, rounds: &[wakeup::Round]) -> Vec<Figure> {
    let all = |f: fn(&wakeup::Round) -> &Vec<Duration>| -> Vec<Duration> {
        rounds.iter().flat_map(|r| f(r).iter().copied()).collect()
    };
    let who = format!("{} watchers x {} rounds", args.watchers, args.rounds);
    let mut figures = Vec::new();
    match Summary::of(&all(|r| &r.from_sent)) {
        Some(s) => {
            figures.push(Figure::info(
                format!("wake-up after write sent p50 ({who})"),
                ms(s.p50),
            ));
            figures.push(Figure::info("wake-up after write sent p90", ms(s.p90)));
            figures.push(Figure::delay_at_most(
                "wake-up after write sent p99",
                s.p99,
                WAKE_P99_TARGET,
            ));
            figures.push(Figure::info("wake-up after write sent max", ms(s.max)));
        }
        None => figures.push(Figure::missing(
            "wake-up after write sent p99",
            "<= 20.00 ms",
        )),
    }
    if let Some(s) = Summary::of(&all(|r| &r.from_ack)) {
        figures.push(Figure::info("wake-up after ack p99", ms(s.p99)));
        figures.push(Figure::info("wake-up after ack max", ms(s.max)));
    }
    figures.extend(wake_counts(rounds));
    figures
}

/// The wake-up write's round trip and the watchers that did not count.
fn wake_counts(rounds: &[wakeup::Round]) -> Vec<Figure> {
    let sum = |f: fn(&wakeup::Round) -> usize| rounds.iter().map(f).sum::<usize>().to_string();
    let writes: Vec<Duration> = rounds.iter().map(|r| r.write).collect();
    let mut figures = Vec::new();
    if let Some(s) = Summary::of(&writes) {
        figures.push(Figure::info("wake-up write sent->ack (max)", ms(s.max)));
    }
    figures.push(Figure::info(
        "watchers answered before the ack",
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
