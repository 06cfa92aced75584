//! `shoal-bench watchers`: memory per blocking query. Opens `--count`
//! blocking queries (`GET /v1/health/service/<svc>?index=<current>&wait=`),
//! each on its own kept-alive connection, against `shoal server`, and
//! reads the server's resident memory (`VmRSS`) before and after they are
//! all parked. Then one write wakes them all, to prove every one was a
//! live blocking query (not refused, not answered at once).
//!
//! The figure is (RSS after - RSS before) / count: everything the server
//! holds for a parked query — the connection's buffers, its task, the
//! query's own allocations — as the kernel sees it.

use crate::registry::raw::RawConn;
use crate::report::{print_summary, Figure};
use crate::server::{check_open_files, http_client, DurableServer};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Target: resident memory per parked blocking query.
const TARGET_KIB: f64 = 8.0;
/// The service every watcher blocks on.
const SERVICE: &str = "watched";
/// Bound on opening every connection and sending every query.
const OPEN_LIMIT: Duration = Duration::from_secs(120);
/// Bound on collecting the answers after the waking write.
const ANSWER_LIMIT: Duration = Duration::from_secs(60);

/// Options of `shoal-bench watchers`.
#[derive(clap::Args)]
pub struct Args {
    /// Blocking queries held open at once.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Pause once every query was sent, before RSS is read, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    settle_ms: u64,
}

/// Runs the benchmark with the binary `shoal`; `command` is echoed in the summary.
pub async fn run(shoal: &Path, args: &Args, command: &str) -> Result<()> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    check_open_files(args.count as u64 + 128)?;
    let server = DurableServer::start(shoal).await?;
    let base = server.process.url.trim_end_matches('/').to_string();
    let pid = server.process.pid();
    let client = http_client(Duration::from_secs(30))?;
    register(&client, &base, 0).await?;
    let index = current_index(&client, &base).await?;
    // Warm up the paths a query takes once, so the "before" figure
    // already holds what one-off initialisation costs.
    let mut warm = RawConn::connect(&base).await?;
    warm.send(&format!("/v1/health/service/{SERVICE}"))
        .await
        .map_err(anyhow::Error::msg)?;
    warm.answer().await.map_err(anyhow::Error::msg)?;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid).context("cannot read the server's VmRSS")?;
    println!(
        "shoal-bench watchers: {} blocking queries against {base} (RSS before: {} KiB)",
        args.count, before
    );

    let started = Instant::now();
    let path = format!("/v1/health/service/{SERVICE}?index={index}&wait=120s");
    let mut conns = Vec::with_capacity(args.count);
    for _ in 0..args.count {
        if started.elapsed() > OPEN_LIMIT {
            bail!(
                "could not open {} queries within {OPEN_LIMIT:?}",
                args.count
            );
        }
        let mut conn = RawConn::connect(&base).await?;
        conn.send(&path).await.map_err(anyhow::Error::msg)?;
        conns.push(conn);
    }
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
    let after = rss_kib(pid).context("cannot read the server's VmRSS")?;
    let hwm = hwm_kib(pid).unwrap_or(0);

    // Wake them all; each must answer with a newer index.
    let mut set = JoinSet::new();
    for mut conn in conns {
        set.spawn(async move {
            match conn.answer().await {
                Ok(a) if a.status == 200 && a.index.is_some_and(|i| i > index) => Ok(()),
                Ok(a) => Err(format!("HTTP {} with index {:?}", a.status, a.index)),
                Err(e) => Err(e),
            }
        });
    }
    register(&client, &base, 1).await?;
    let (mut woken, mut failed, mut first_error) = (0usize, 0usize, None);
    let deadline = tokio::time::Instant::now() + ANSWER_LIMIT;
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, set.join_next()).await {
        match joined.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(()) => woken += 1,
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    failed += set.len();
    set.abort_all();

    let per_query = (after.saturating_sub(before)) as f64 / args.count as f64;
    let mut figures = vec![
        Figure::at_most("RSS per blocking query", per_query, TARGET_KIB, "KiB"),
        Figure::info("RSS before", format!("{:.1} MiB", before as f64 / 1024.0)),
        Figure::info(
            "RSS with all queries parked",
            format!("{:.1} MiB", after as f64 / 1024.0),
        ),
        Figure::info(
            "peak RSS (VmHWM)",
            format!("{:.1} MiB", hwm as f64 / 1024.0),
        ),
        Figure::info(
            "time to open and send all",
            format!("{:.1} s", opened.as_secs_f64()),
        ),
        Figure::count_at_most("queries not woken by the write", failed as u64, 0),
    ];
    if woken == 0 {
        figures.push(Figure::missing("queries woken", format!("{}", args.count)));
    }
    let mut notes = vec![
        format!("command: {command}"),
        format!("server: {}", server.command),
    ];
    if let Some(e) = first_error {
        notes.push(format!("first failure: {e}"));
    }
    print_summary("shoal-bench watchers", &figures, &notes);
    Ok(())
}

/// Registers instance `<SERVICE>-<n>`; returns once durable.
async fn register(client: &reqwest::Client, base: &str, n: usize) -> Result<()> {
    let body = serde_json::json!({
        "ID": format!("{SERVICE}-{n}"), "Name": SERVICE, "Port": 9000 + n, "Address": "127.0.0.1",
    });
    let response = client
        .put(format!("{base}/v1/agent/service/register"))
        .json(&body)
        .send()
        .await
        .context("registering an instance")?;
    if !response.status().is_success() {
        bail!("registering an instance: HTTP {}", response.status());
    }
    Ok(())
}

/// The service's current `X-Consul-Index`.
async fn current_index(client: &reqwest::Client, base: &str) -> Result<u64> {
    let url = format!("{base}/v1/health/service/{SERVICE}");
    let response = client.get(url).send().await.context("reading the index")?;
    response
        .headers()
        .get("X-Consul-Index")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .context("no X-Consul-Index on the health answer")
}

fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

fn hwm_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
