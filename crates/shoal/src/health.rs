//! `shoal health`: the probe of the container image's `HEALTHCHECK`. A
//! `FROM scratch` image has no curl, so the binary asks itself: it GETs
//! the given URLs (or the roles' default endpoints on loopback) and
//! succeeds when any answers 2xx in time. One image serves every role, and
//! the probe does not know which one runs, hence "any".

use anyhow::Context;
use std::time::Duration;

/// What each role answers on by default (reached over loopback inside the
/// container): server/dev/agent's HTTP API, the proxy's stats listener,
/// and `shoal hello` on the port the examples give it.
pub const DEFAULT_URLS: &[&str] = &[
    "http://127.0.0.1:8500/v1/agent/self",
    "http://127.0.0.1:9180/v1/proxy/stats",
    "http://127.0.0.1:8080/health",
];

/// Flags of `shoal health`.
#[derive(clap::Args, Debug, Clone)]
pub struct HealthArgs {
    /// URLs to probe (comma-separated or repeated; default: every role's
    /// default endpoint on 127.0.0.1). Healthy when any answers 2xx.
    #[arg(env = "SHOAL_HEALTH_URL", value_delimiter = ',')]
    urls: Vec<String>,
    /// How long each probe may take.
    #[arg(long, default_value = "2s", value_parser = shoal_catalog::duration::parse)]
    timeout: Duration,
}

/// Probes every URL at once; Ok when one answers 2xx, else an error that
/// lists what each one said.
pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let urls: Vec<String> = if args.urls.is_empty() {
        DEFAULT_URLS.iter().map(|u| u.to_string()).collect()
    } else {
        args.urls
    };
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .no_proxy()
        .build()
        .context("cannot build an HTTP client")?;
    // Concurrently, so a slow one does not eat the others' time.
    let mut probes = tokio::task::JoinSet::new();
    for (i, url) in urls.iter().cloned().enumerate() {
        let client = client.clone();
        probes.spawn(async move {
            let r = match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => Ok(url),
                Ok(r) => Err(format!("{url}: {}", r.status())),
                Err(e) => Err(format!("{url}: {}", error_chain(&e))),
            };
            (i, r)
        });
    }
    let mut results = probes.join_all().await;
    results.sort_by_key(|(i, _)| *i);
    let results: Vec<Result<String, String>> = results.into_iter().map(|(_, r)| r).collect();
    if let Some(ok) = results.iter().find_map(|r| r.as_ref().ok()) {
        println!("healthy: {ok}");
        return Ok(());
    }
    let why: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    anyhow::bail!("unhealthy: {}", why.join("; "))
}

/// The innermost cause ("Connection refused (os error 111)"): reqwest's
/// outer layers only repeat the URL.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}
