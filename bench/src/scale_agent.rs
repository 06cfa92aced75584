//! The agent part of `shoal-bench scale`: one `shoal agent` (its own node,
//! synced to a `shoal server --in-memory`) with many local instances, each
//! with a TTL check, registered through the agent's API. At each
//! checkpoint it measures the agent's RSS and the time one more
//! registration on the agent takes to be visible on the server (the
//! agent's local write, its check runner and its anti-entropy included),
//! so the curve from 1,000 to 10,000 local instances is visible.

use crate::report::Figure;
use crate::server::http_client;
use crate::stats::Summary;
use anyhow::{anyhow, Context, Result};
use futures::stream::{self, StreamExt};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// RSS target of an agent with 10,000 local instances (issue 11).
const RSS_TARGET_MIB: f64 = 60.0;
/// What one registration on the agent may take to reach the server: the
/// same budget as routing a new service.
const EFFECT_TARGET: Duration = Duration::from_millis(10);
/// Longest a sample waits for its registration to reach the server.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A registration body for the agent's API: one instance with a TTL check
/// nobody refreshes within the run (so no status change adds writes).
fn body(id: &str, name: &str, port: u16) -> String {
    json!({
        "ID": id, "Name": name, "Port": port, "Address": "127.0.0.1",
        "Check": {"CheckID": format!("ttl-{id}"), "TTL": "1h"},
    })
    .to_string()
}

async fn put(http: &reqwest::Client, url: &str, body: String) -> Result<()> {
    let r = http.put(url).body(body).send().await?;
    anyhow::ensure!(r.status().is_success(), "PUT {url}: {}", r.status());
    Ok(())
}

/// The peak RSS (VmHWM) of a process, in MiB.
fn hwm_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Registers instances `from..to` on the agent; returns the rate.
async fn register_range(
    http: &reqwest::Client,
    agent: &str,
    from: usize,
    to: usize,
    concurrency: usize,
) -> Result<f64> {
    let url = format!("{agent}/v1/agent/service/register");
    let started = Instant::now();
    let results: Vec<Result<()>> = stream::iter(from..to)
        .map(|i| {
            put(
                http,
                &url,
                body(&format!("a{i}"), &format!("a{}", i % 1000), 9000),
            )
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<_>>>()?;
    Ok((to - from) as f64 / started.elapsed().as_secs_f64())
}

/// The server's `X-Consul-Index` and instance count of service `name`.
async fn catalog_service(
    http: &reqwest::Client,
    server: &str,
    name: &str,
    index: u64,
) -> Result<(u64, usize)> {
    let r = http
        .get(format!(
            "{server}/v1/catalog/service/{name}?index={index}&wait=10s"
        ))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "catalog/service: {}", r.status());
    let index = r
        .headers()
        .get("X-Consul-Index")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    let list: Vec<serde_json::Value> = r.json().await?;
    Ok((index, list.len()))
}

/// Waits until `registered` instances have reached the server (the agent
/// syncs them behind its own acknowledgements).
async fn until_synced(http: &reqwest::Client, server: &str, registered: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let r = http
            .get(format!("{server}/v1/catalog/node/bench-agent"))
            .send()
            .await?;
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        let n = v["Services"].as_object().map_or(0, |m| m.len());
        if n >= registered {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(anyhow!(
        "the server never held the agent's {registered} instances within 120 s"
    ))
}

/// Times `samples` registrations on the agent until the server lists them.
async fn time_to_effect(
    http: &reqwest::Client,
    agent: &str,
    server: &str,
    tag: usize,
    samples: usize,
) -> Result<(Summary, Summary)> {
    let url = format!("{agent}/v1/agent/service/register");
    let mut took = Vec::new();
    let mut acks = Vec::new();
    for k in 0..samples {
        let name = format!("probe-{tag}-{k}");
        let (index, _) = catalog_service(http, server, &name, 0).await?;
        let t = Instant::now();
        put(http, &url, body(&name, &name, 9001)).await?;
        acks.push(t.elapsed());
        let mut index = index;
        loop {
            let (i, n) = catalog_service(http, server, &name, index).await?;
            if n > 0 {
                break;
            }
            if t.elapsed() > SAMPLE_TIMEOUT {
                return Err(anyhow!("{name} never reached the server within 10 s"));
            }
            index = i;
        }
        took.push(t.elapsed());
        // Spread the samples, so one does not queue behind the last.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((
        Summary::of(&took).context("no samples")?,
        Summary::of(&acks).context("no samples")?,
    ))
}

/// Runs the agent part; `checkpoints` are local instance counts, the last
/// one the total.
pub async fn run(
    bin: &Path,
    checkpoints: &[usize],
    samples: usize,
    concurrency: usize,
    figures: &mut Vec<Figure>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let (server, agent) = crate::agent::server_and_agent(bin).await?;
    let http = http_client(Duration::from_secs(30))?;
    let mut done = 0;
    let mut first = None;
    let last = checkpoints.last().copied().unwrap_or(0);
    for &at in checkpoints {
        let rate = register_range(&http, &agent.url, done, at, concurrency).await?;
        done = at;
        let t = Instant::now();
        until_synced(&http, &server.url, at).await?;
        let synced = t.elapsed();
        // Let the agent's own follow-up work (the last syncs) settle.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (effect, ack) = time_to_effect(&http, &agent.url, &server.url, at, samples).await?;
        done += samples;
        let rss = crate::scale::rss_mib(agent.pid());
        let hwm = hwm_mib(agent.pid());
        let p99 = effect.p99;
        let base = *first.get_or_insert(p99);
        let line = format!(
            "agent @ {at} local instances (TTL checks): registered {rate:.0}/s, on the server {:.1} s after the last ack; one more registration reaches the server {} ({:.2}x of the first checkpoint's p99), the agent acknowledged it {}; agent RSS {rss:.0} MiB (peak {hwm:.0}), server {:.0} MiB",
            synced.as_secs_f64(),
            effect.line(),
            p99.as_secs_f64() / base.as_secs_f64().max(1e-9),
            ack.line(),
            crate::scale::rss_mib(server.pid()),
        );
        println!("{line}");
        notes.push(line);
        if at == last {
            figures.push(Figure::at_most(
                format!("agent with {at} local instances: RSS"),
                rss,
                RSS_TARGET_MIB,
                "MiB",
            ));
            figures.push(Figure::delay_at_most(
                format!("agent with {at} local instances: one registration on the server, p99"),
                p99,
                EFFECT_TARGET,
            ));
        }
    }
    drop(agent);
    drop(server);
    Ok(())
}
