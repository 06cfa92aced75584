//! `shoal-bench proxy time-to-route`: how long after a registration is
//! acknowledged the first request reaches the new instance through
//! `shoal proxy` (registry and proxy in separate processes, the proxy
//! following the registry by blocking queries).
//!
//! Each iteration uses a new service `ttr-<i>` with one new `shoal hello`
//! instance (ID `ttr-<i>`), so no route can exist beforehand. A request for
//! `ttr-<i>.localhost` is sent first and waits in the proxy's queue (the
//! proxy's stats confirm it is queued); then the instance is registered.
//! The delay is from the registration's acknowledgement (PUT answered 200)
//! to that request's answer, which must be a 200 from the new instance
//! (its `/json` names its ID). Should the queued request fail, requests
//! are repeated until one reaches the instance, and the delay runs to that.

use super::fleet::{self, free_port, RegistryClient, Spawned};
use crate::report::{print_summary, Figure};
use crate::server::http_client;
use crate::stats::{ms, Summary};
use anyhow::{bail, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// Target: p99 delay from acknowledgement to the first routed answer.
const P99_TARGET: Duration = Duration::from_millis(10);
/// How long the queued request may wait for its route (the proxy's
/// `--queue-timeout` is set to the same).
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the proxy to count the request as queued.
const QUEUED_LIMIT: Duration = Duration::from_secs(2);

/// Options of `shoal-bench proxy time-to-route`.
#[derive(clap::Args)]
pub struct Args {
    /// Registrations to time (one new service and instance each).
    #[arg(long, default_value_t = 200)]
    iterations: usize,
    /// Time limit for all iterations, in seconds.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Pause after each iteration's clean-up (deregistration), in milliseconds.
    #[arg(long, default_value_t = 50)]
    settle_ms: u64,
}

/// What all iterations measured.
#[derive(Default)]
struct Outcome {
    /// Acknowledgement → first answer from the new instance.
    delays: Vec<Duration>,
    /// The registrations' own round trips.
    writes: Vec<Duration>,
    /// Answers that arrived before the acknowledgement (delay counted 0).
    before_ack: usize,
    /// Iterations whose request was not seen queued before the write.
    not_queued: usize,
    /// Iterations where the queued request failed and others were needed.
    retried: usize,
    /// Iterations that never reached the instance.
    failed: usize,
    /// The first failure of a queued request, if any.
    first_error: Option<String>,
}

/// The shoal processes and clients of the benchmark (the proxy is
/// stopped before the registry it follows).
struct Setup {
    proxy: Spawned,
    registry: Spawned,
    stats_port: u16,
    client: reqwest::Client,
    writes: RegistryClient,
}

/// Runs the benchmark with the binary `shoal`; `command` is echoed in the summary.
pub async fn run(shoal: &Path, args: &Args, command: &str) -> Result<()> {
    if args.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let registry = fleet::start_registry(shoal, None).await?;
    let stats_port = free_port()?;
    let extra = fleet::strings(&["--queue-timeout", "10s"]);
    let proxy = fleet::start_proxy(shoal, None, &registry.process.url, stats_port, &extra).await?;
    println!(
        "registry {}  proxy {}",
        registry.process.url, proxy.process.url
    );
    let setup = Setup {
        writes: RegistryClient::new(&registry.process.url)?,
        client: http_client(QUEUE_TIMEOUT + Duration::from_secs(5))?,
        registry,
        proxy,
        stats_port,
    };
    let limit = Instant::now() + Duration::from_secs(args.seconds);
    let mut out = Outcome::default();
    let mut hello_command = String::new();
    for i in 0..args.iterations {
        if Instant::now() >= limit {
            println!("time limit reached after {i} iterations");
            break;
        }
        let hello = fleet::start_hello(shoal, &format!("ttr-{i}"), &format!("ttr-{i}")).await?;
        hello_command = hello.command.replace(&format!("ttr-{i}"), "ttr-<i>");
        iteration(&setup, i, &hello, &mut out).await?;
        setup.writes.deregister(&format!("ttr-{i}")).await?;
        drop(hello);
        tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
        if (i + 1) % 50 == 0 || i + 1 == args.iterations {
            let s = Summary::of(&out.delays).map_or("-".into(), |s| s.line());
            println!("  {} iterations: delay after ack {s}", i + 1);
        }
    }
    let figures = figures(&out);
    let notes = vec![
        format!("command:  {command}"),
        format!("registry: {}", setup.registry.command),
        format!("proxy:    {}", setup.proxy.command),
        format!("backend:  {hello_command}  (one per iteration, i = 0, 1, ...)"),
        "per iteration: GET /json with Host: ttr-<i>.localhost sent first (queued in the proxy), \
         then PUT /v1/agent/service/register {ID: ttr-<i>, Name: ttr-<i>}; delay = PUT answered \
         -> the queued request's 200 from instance ttr-<i>; then deregister, stop the backend"
            .into(),
    ];
    print_summary("shoal-bench proxy time-to-route", &figures, &notes);
    Ok(())
}

/// One registration and the request that waits for its route.
async fn iteration(setup: &Setup, i: usize, hello: &Spawned, out: &mut Outcome) -> Result<()> {
    let (name, port) = (format!("ttr-{i}"), hello.port()?);
    let queued_before = queued(setup).await;
    let request = tokio::spawn(ask(
        setup.client.clone(),
        setup.proxy.process.url.clone(),
        name.clone(),
    ));
    if !wait_queued(setup, queued_before).await {
        out.not_queued += 1;
    }
    let sent = Instant::now();
    setup.writes.register(&name, &name, port).await?;
    let acked = Instant::now();
    out.writes.push(acked - sent);
    let answer = match request.await {
        Ok(answer) => answer,
        Err(e) => Err(e.to_string()),
    };
    let reached = match answer {
        Ok(at) => Some(at),
        Err(e) => {
            out.retried += 1;
            out.first_error.get_or_insert(e);
            ask_until_routed(setup, &name).await
        }
    };
    match reached {
        Some(at) if at < acked => {
            out.before_ack += 1;
            out.delays.push(Duration::ZERO);
        }
        Some(at) => out.delays.push(at - acked),
        None => out.failed += 1,
    }
    Ok(())
}

/// `GET /json` for `service` through the proxy: the moment a 200 answer
/// from instance `service` was fully read, or why not.
async fn ask(client: reqwest::Client, proxy: String, service: String) -> Result<Instant, String> {
    let response = client
        .get(format!("{proxy}/json"))
        .header("Host", format!("{service}.localhost"))
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| format!("body: {e}"))?;
    let at = Instant::now();
    if status != reqwest::StatusCode::OK {
        return Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    let id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_string));
    match id {
        Some(id) if id == service => Ok(at),
        other => Err(format!("answered by {other:?}, not {service}")),
    }
}

/// Repeats requests (bounded) until one reaches instance `service`.
async fn ask_until_routed(setup: &Setup, service: &str) -> Option<Instant> {
    let deadline = Instant::now() + QUEUE_TIMEOUT;
    while Instant::now() < deadline {
        let url = setup.proxy.process.url.clone();
        if let Ok(at) = ask(setup.client.clone(), url, service.to_string()).await {
            return Some(at);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// The proxy's count of requests that ever waited in its queue.
async fn queued(setup: &Setup) -> u64 {
    let stats = fleet::proxy_stats(&setup.client, setup.stats_port).await;
    stats["proxy"]["queued"].as_u64().unwrap_or(0)
}

/// Waits (bounded) until the proxy has queued one more request.
async fn wait_queued(setup: &Setup, before: u64) -> bool {
    let deadline = Instant::now() + QUEUED_LIMIT;
    while Instant::now() < deadline {
        if queued(setup).await > before {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    false
}

fn figures(out: &Outcome) -> Vec<Figure> {
    let mut figures = Vec::new();
    match Summary::of(&out.delays) {
        Some(s) => {
            let n = s.count;
            figures.push(Figure::info(
                format!("ack -> first routed answer p50 ({n} registrations)"),
                ms(s.p50),
            ));
            figures.push(Figure::info("ack -> first routed answer p90", ms(s.p90)));
            figures.push(Figure::delay_at_most(
                "ack -> first routed answer p99",
                s.p99,
                P99_TARGET,
            ));
            figures.push(Figure::info("ack -> first routed answer max", ms(s.max)));
        }
        None => figures.push(Figure::missing(
            "ack -> first routed answer p99",
            format!("<= {}", ms(P99_TARGET)),
        )),
    }
    if let Some(s) = Summary::of(&out.writes) {
        figures.push(Figure::info(
            "registration PUT round trip p50 / p99",
            format!("{} / {}", ms(s.p50), ms(s.p99)),
        ));
    }
    figures.extend([
        Figure::info(
            "answered before the ack (counted 0)",
            out.before_ack.to_string(),
        ),
        Figure::info(
            "request not seen queued before the write",
            out.not_queued.to_string(),
        ),
        Figure::info("queued request failed, retried", out.retried.to_string()),
        Figure::info("never routed", out.failed.to_string()),
    ]);
    if let Some(e) = &out.first_error {
        figures.push(Figure::info("first failure", e.clone()));
    }
    figures
}
