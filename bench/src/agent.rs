//! `shoal-bench agent`: one `shoal agent` running many HTTP checks against
//! local backends (served by this process, which notes when each probe
//! arrives). Measures the agent's CPU (user+system time over a window of
//! whole intervals), its memory (RSS), and how evenly check runs spread
//! over the interval. Target: under 5 % of one core and 50 MiB RSS for
//! 10,000 checks every 10 s.

use crate::proxy::cpu::{ticks_per_second, tree_ticks};
use crate::report::{print_summary, Figure};
use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use shoal_testkit::ServerProcess;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CPU_TARGET_PERCENT: f64 = 5.0;
const RSS_TARGET_MIB: f64 = 50.0;

/// Options of `shoal-bench agent`.
#[derive(clap::Args)]
pub struct Args {
    /// HTTP checks registered with the agent.
    #[arg(long, default_value_t = 10_000)]
    checks: usize,
    /// Interval of every check, in seconds.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Backend listeners the checks are spread over.
    #[arg(long, default_value_t = 8)]
    backends: usize,
    /// Whole intervals measured (after one interval of warm-up).
    #[arg(long, default_value_t = 3)]
    intervals: u64,
}

/// When each probe reached a backend.
type Arrivals = Arc<Mutex<Vec<Instant>>>;

/// A backend: answers every request `200 ok` (keeping the connection
/// open, as most servers do), noting when each arrived.
async fn backend(arrivals: Arrivals) -> Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let mut seen = Vec::new();
                loop {
                    // Requests carry no body: one head is one request.
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        arrivals.lock().unwrap().push(Instant::now());
                        if stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    Ok(port)
}

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Registers `count` services, each with an HTTP check, through the agent.
async fn register_all(agent: &str, ports: &[u16], count: usize, interval: u64) -> Result<()> {
    let http = reqwest::Client::new();
    let results = futures::stream::iter(0..count)
        .map(|i| {
            let port = ports[i % ports.len()];
            let body = serde_json::json!({
                "ID": format!("svc-{i}"), "Name": format!("svc-{}", i % 100), "Port": port,
                "Check": {"HTTP": format!("http://127.0.0.1:{port}/c/{i}"),
                          "Interval": format!("{interval}s"), "Timeout": "2s"},
            });
            let req = http
                .put(format!("{agent}/v1/agent/service/register"))
                .json(&body);
            async move {
                let r = req.send().await?;
                if !r.status().is_success() {
                    bail!("register: {}", r.status());
                }
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<Result<()>>>()
        .await;
    results.into_iter().collect()
}

/// Probes per 100 ms slot over the window: (min, mean, max).
fn spread(arrivals: &[Instant], from: Instant, window: Duration) -> (u64, f64, u64) {
    let slots = (window.as_millis() / 100).max(1) as usize;
    let mut counts = vec![0u64; slots];
    for t in arrivals {
        if let Some(d) = t.checked_duration_since(from) {
            let slot = (d.as_millis() / 100) as usize;
            if slot < slots {
                counts[slot] += 1;
            }
        }
    }
    let sum: u64 = counts.iter().sum();
    let min = counts.iter().copied().min().unwrap_or(0);
    let max = counts.iter().copied().max().unwrap_or(0);
    (min, sum as f64 / slots as f64, max)
}

/// Runs the benchmark with the binary `shoal`.
pub async fn run(shoal: &Path, args: &Args, command: &str) -> Result<()> {
    if args.checks == 0 || args.backends == 0 || args.interval == 0 || args.intervals == 0 {
        bail!("--checks, --backends, --interval and --intervals must be at least 1");
    }
    let arrivals: Arrivals = Arc::default();
    let mut ports = Vec::new();
    for _ in 0..args.backends {
        ports.push(backend(arrivals.clone()).await?);
    }
    let (server, agent) = server_and_agent(shoal).await?;
    println!(
        "agent pid {} at {}, server at {}",
        agent.pid(),
        agent.url,
        server.url
    );
    let started = Instant::now();
    register_all(&agent.url, &ports, args.checks, args.interval)
        .await
        .context("registering the checks")?;
    let registered = started.elapsed();
    println!(
        "{} checks registered in {:.1} s",
        args.checks,
        registered.as_secs_f64()
    );

    let interval = Duration::from_secs(args.interval);
    // Warm-up: every check's first run, then one whole interval so the
    // phases are settled.
    tokio::time::sleep(interval + Duration::from_secs(2)).await;
    let window = interval * args.intervals as u32;
    let (ticks0, t0) = (tree_ticks(agent.pid()), Instant::now());
    println!("measuring for {} s ...", window.as_secs());
    tokio::time::sleep(window).await;
    let (ticks1, elapsed) = (tree_ticks(agent.pid()), t0.elapsed());
    let cpu = (ticks1 - ticks0) as f64 / ticks_per_second() as f64 / elapsed.as_secs_f64() * 100.0;
    let rss = rss_kib(agent.pid(), "VmRSS:").unwrap_or(0) as f64 / 1024.0;
    let hwm = rss_kib(agent.pid(), "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    let seen = arrivals.lock().unwrap().clone();
    let in_window = seen
        .iter()
        .filter(|t| t.checked_duration_since(t0).is_some_and(|d| d < window))
        .count();
    let expected = args.checks as u64 * args.intervals;
    let (min, mean, max) = spread(&seen, t0, window);
    let figures = vec![
        Figure::at_most("agent CPU, % of one core", cpu, CPU_TARGET_PERCENT, "%"),
        Figure::at_most("agent RSS at the end", rss, RSS_TARGET_MIB, "MiB"),
        Figure::info("agent peak RSS (VmHWM)", format!("{hwm:.1} MiB")),
        Figure::info(
            "check runs in the window / expected",
            format!("{in_window} / {expected}"),
        ),
        Figure::info(
            "runs per 100 ms slot: min / mean / max",
            format!("{min} / {mean:.1} / {max}"),
        ),
        Figure::info(
            "registration of all checks",
            format!("{:.1} s", registered.as_secs_f64()),
        ),
    ];
    print_summary(
        "agent",
        &figures,
        &[
            format!("command: {command}"),
            format!(
                "{} HTTP checks every {} s over {} backends (plain HTTP, idle connections reused); window {} s after {} s of warm-up",
                args.checks, args.interval, args.backends, window.as_secs(), interval.as_secs() + 2
            ),
        ],
    );
    drop(agent);
    drop(server);
    Ok(())
}

/// A `shoal server --in-memory` and a `shoal agent` (node `bench-agent`)
/// syncing to it, both started and ready.
pub async fn server_and_agent(shoal: &Path) -> Result<(ServerProcess, ServerProcess)> {
    let bin = shoal.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<_> {
        let server = ServerProcess::try_start(&bin, &["--in-memory"]).map_err(|e| anyhow!(e))?;
        let agent = ServerProcess::try_start_role(
            &bin,
            &[
                "agent",
                "--registry",
                &server.url,
                "--node-name",
                "bench-agent",
                "--http-addr",
                "127.0.0.1:0",
                "--log-level",
                "warn",
            ],
            "shoal agent",
        )
        .map_err(|e| anyhow!(e))?;
        Ok((server, agent))
    })
    .await?
}
