//! `shoal-bench acl`: what checking ACL tokens costs the API, in one run
//! against two `shoal server --in-memory`: one with ACLs off, one with
//! `--acl-enabled --acl-default-policy deny` and requests carrying a
//! token whose policy has a few rules (so each request resolves the
//! token, finds its cached authorizer and matches prefixes).
//!
//! Measured on each, with `--connections` keep-alive connections for
//! `--seconds` or `--count` requests: a KV read (`GET /v1/kv/bench/x`), a
//! KV write (`PUT /v1/kv/bench/w`) and a filtered list
//! (`GET /v1/catalog/services` over `--services` services). Reported:
//! requests/s of each and on/off (target ≥ 0.9×).

use crate::https::{plain, Load};
use crate::report::{print_summary, Figure};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use shoal_testkit::ServerProcess;
use std::path::Path;
use std::time::Duration;

/// Options of `shoal-bench acl`.
#[derive(clap::Args)]
pub struct Args {
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Most requests per measurement.
    #[arg(long, default_value_t = 200_000)]
    count: u64,
    /// Longest measurement, in seconds.
    #[arg(long, default_value_t = 2)]
    seconds: u64,
    /// Services registered for the list read.
    #[arg(long, default_value_t = 100)]
    services: usize,
    /// Both servers with ACLs off and no token: the spread of the
    /// measurement itself, to read the on/off ratios against.
    #[arg(long)]
    calibrate: bool,
}

/// Measurements of each server per figure, taken in turns.
const ROUNDS: usize = 3;

/// The token's rules: some the requests match, some they do not.
const RULES: &str = r#"key_prefix "bench/" { policy = "write" }
key "bench/secret" { policy = "deny" }
key_prefix "other/" { policy = "read" }
service_prefix "" { policy = "read" }
service "private" { policy = "deny" }
node_prefix "" { policy = "read" }"#;

/// Runs the benchmark with the binary `shoal`; `command` is echoed in the summary.
pub async fn run(shoal: &Path, args: &Args, command: &str) -> Result<()> {
    if args.connections == 0 || args.count == 0 || args.seconds == 0 {
        bail!("--connections, --count and --seconds must be at least 1");
    }
    crate::server::check_open_files(args.connections as u64 * 2 + 64)?;
    let off = start(shoal, &[]).await?;
    let acl: &[&str] = if args.calibrate {
        &[]
    } else {
        &["--acl-enabled", "--acl-default-policy", "deny"]
    };
    let on = start(shoal, acl).await?;
    let (root, token) = if args.calibrate {
        (None, None)
    } else {
        let (root, token) = tokens(&on.url).await?;
        (Some(root), Some(token))
    };
    seed(&off.url, None, args.services).await?;
    seed(&on.url, root.as_deref(), args.services).await?;
    let load = Load {
        connections: args.connections,
        count: args.count,
        seconds: args.seconds,
    };
    let mut figures = Vec::new();
    let cases = [
        ("KV read", "GET /v1/kv/bench/x", ""),
        ("KV write", "PUT /v1/kv/bench/w", "x"),
        ("service list (filtered)", "GET /v1/catalog/services", ""),
    ];
    for (what, line, body) in cases {
        // Off and on taken in turns, ROUNDS each, the best of each kept:
        // each is as exposed to the machine's other work as the other.
        let mut rates = [0f64; 2];
        for _ in 0..ROUNDS {
            for (i, (server, token)) in [(&off, None), (&on, token.as_deref())]
                .into_iter()
                .enumerate()
            {
                let addr = server.url.trim_start_matches("http://").to_string();
                let rate = load
                    .run(request(line, body, token).into(), || plain(&addr))
                    .await?;
                rates[i] = rates[i].max(rate);
            }
        }
        let ratio = rates[1] / rates[0];
        println!(
            "{what}: ACLs off {:.0}/s, on {:.0}/s, {ratio:.2}x",
            rates[0], rates[1]
        );
        figures.push(Figure::info(
            format!("{what}: ACLs off"),
            format!("{:.0}/s", rates[0]),
        ));
        figures.push(Figure::info(
            format!("{what}: ACLs on"),
            format!("{:.0}/s", rates[1]),
        ));
        figures.push(Figure::ratio_at_least(
            format!("{what}: on / off"),
            ratio,
            0.9,
        ));
    }
    let notes = vec![
        format!("command: {command}"),
        format!(
            "{} keep-alive connections, at most {} requests or {} s per figure, servers --in-memory",
            args.connections, args.count, args.seconds
        ),
    ];
    print_summary("acl", &figures, &notes);
    Ok(())
}

fn request(line: &str, body: &str, token: Option<&str>) -> Vec<u8> {
    let mut r = format!("{line} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if let Some(t) = token {
        r.push_str(&format!("X-Consul-Token: {t}\r\n"));
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    r.into_bytes()
}

async fn start(shoal: &Path, flags: &[&str]) -> Result<ServerProcess> {
    let bin = shoal.to_path_buf();
    let mut all = vec!["--in-memory".to_string()];
    all.extend(flags.iter().map(|f| f.to_string()));
    tokio::task::spawn_blocking(move || {
        let flags: Vec<&str> = all.iter().map(String::as_str).collect();
        ServerProcess::try_start(&bin, &flags)
            .map_err(|e| anyhow!("cannot start shoal server: {e}"))
    })
    .await?
}

async fn send(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> Result<Value> {
    let mut rb = client.put(&url).json(&body);
    if let Some(t) = token {
        rb = rb.header("X-Consul-Token", t);
    }
    let resp = rb.send().await.with_context(|| format!("PUT {url}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("PUT {url}: {status}: {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Bootstraps `base`; returns the management token and the benchmark's.
async fn tokens(base: &str) -> Result<(String, String)> {
    let client = crate::server::http_client(Duration::from_secs(10))?;
    let root = send(&client, format!("{base}/v1/acl/bootstrap"), None, json!({})).await?;
    let root = root["SecretID"]
        .as_str()
        .context("bootstrap: no SecretID")?
        .to_string();
    send(
        &client,
        format!("{base}/v1/acl/policy"),
        Some(&root),
        json!({"Name": "bench", "Rules": RULES}),
    )
    .await?;
    let t = send(
        &client,
        format!("{base}/v1/acl/token"),
        Some(&root),
        json!({"Policies": [{"Name": "bench"}]}),
    )
    .await?;
    let bench = t["SecretID"].as_str().context("token: no SecretID")?;
    Ok((root, bench.to_string()))
}

/// The key read, and `services` services for the list, written with
/// `token` (the management token where ACLs are on).
async fn seed(base: &str, token: Option<&str>, services: usize) -> Result<()> {
    let client = crate::server::http_client(Duration::from_secs(10))?;
    let mut rb = client
        .put(format!("{base}/v1/kv/bench/x"))
        .body(vec![b'x'; 64]);
    if let Some(t) = token {
        rb = rb.header("X-Consul-Token", t);
    }
    let resp = rb.send().await.context("PUT /v1/kv/bench/x")?;
    if !resp.status().is_success() {
        bail!("PUT /v1/kv/bench/x: {}", resp.status());
    }
    for i in 0..services {
        let body = json!({"ID": format!("svc-{i}"), "Name": format!("svc-{i}"), "Port": 80});
        let url = format!("{base}/v1/agent/service/register");
        let mut rb = client.put(&url).json(&body);
        if let Some(t) = token {
            rb = rb.header("X-Consul-Token", t);
        }
        let resp = rb.send().await.with_context(|| format!("PUT {url}"))?;
        if !resp.status().is_success() {
            bail!("PUT {url}: {}", resp.status());
        }
    }
    Ok(())
}
