//! `/metrics` and `/v1/agent/metrics` on every role that serves an API:
//! the Prometheus text exposition format (HELP and TYPE for each family,
//! samples grouped) and Consul's JSON shape, with the registry's own
//! metrics (writes, commit latency, store health, blocking queries,
//! watchers, check runs) and, in `shoal dev`, the proxy's.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shoal_catalog::metrics::text::validate;
use shoal_testkit::ServerProcess;
use std::path::Path;
use std::time::{Duration, Instant};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

/// `/metrics` (or `path`) of `base`: checked against the format; the text.
async fn scrape(url: String) -> String {
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{url}");
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8", "{url}");
    let text = r.text().await.unwrap();
    validate(&text).unwrap_or_else(|e| panic!("{url}: {e}\n{text}"));
    text
}

fn value(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(&format!("{sample} ")))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

const REGISTRY_FAMILIES: &[&str] = &[
    "# TYPE shoal_catalog_writes_total counter",
    "# TYPE shoal_catalog_commits_total counter",
    "# TYPE shoal_catalog_commit_seconds histogram",
    "# TYPE shoal_catalog_store_errors_total counter",
    "# TYPE shoal_catalog_commit_conflicts_total counter",
    "# TYPE shoal_catalog_store_failing gauge",
    "# TYPE shoal_catalog_blocking_queries gauge",
    "# TYPE shoal_catalog_watchers gauge",
    "# TYPE shoal_agent_check_runs_total counter",
    "# TYPE shoal_agent_docker_events_total counter",
    "# TYPE shoal_agents_reaped_total counter",
];

fn has_families(text: &str, families: &[&str]) {
    for f in families {
        assert!(text.lines().any(|l| l == *f), "{f:?} missing in\n{text}");
    }
}

#[tokio::test]
async fn server_serves_its_registry_metrics_in_both_formats() {
    let s = ServerProcess::start(bin(), &["--in-memory"]);
    let reg = json!({"ID": "web-1", "Name": "web", "Port": 1, "Check": {"TCP": "127.0.0.1:1", "Interval": "1s"}});
    ok(put_json(s.at("/v1/agent/service/register"), &reg).await);
    let text = scrape(s.at("/metrics")).await;
    has_families(&text, REGISTRY_FAMILIES);
    assert!(
        value(&text, "shoal_catalog_writes_total").unwrap() >= 2.0,
        "{text}"
    );
    assert!(
        value(&text, "shoal_catalog_commit_seconds_count").unwrap() >= 1.0,
        "{text}"
    );
    assert_eq!(value(&text, "shoal_catalog_store_failing"), Some(0.0));

    // A parked blocking query shows, and leaves when it returns (beside
    // the in-process watches, such as the check runner's).
    let parked = value(
        &scrape(s.at("/metrics")).await,
        "shoal_catalog_blocking_queries",
    )
    .unwrap();
    let index = get(s.at("/v1/health/service/web")).await.index;
    let blocked = tokio::spawn({
        let url = s.at(&format!("/v1/kv/x?index={}&wait=2s", index + 1000));
        async move { get(url).await }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(s.at("/metrics")).await;
        if value(&text, "shoal_catalog_blocking_queries") == Some(parked + 1.0) {
            assert!(
                value(&text, "shoal_catalog_watchers").unwrap() >= 1.0,
                "{text}"
            );
            assert!(
                value(&text, "shoal_agent_check_runs_total").unwrap() >= 1.0,
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no parked query in\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    blocked.await.unwrap();
    // It leaves the gauge once it returned: polled (bounded), as CI once
    // scraped it still counted right after the answer arrived (not seen
    // in 8 runs here; the cause is not known).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(s.at("/metrics")).await;
        let now = value(&text, "shoal_catalog_blocking_queries").unwrap();
        if now <= parked {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the returned query is still counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Consul's JSON, and the same text with ?format=prometheus.
    let j = ok(get(s.at("/v1/agent/metrics")).await).json();
    for key in ["Timestamp", "Gauges", "Points", "Counters", "Samples"] {
        assert!(j.get(key).is_some(), "{key} missing in {j}");
    }
    assert!(
        j["Timestamp"].as_str().unwrap().ends_with(" +0000 UTC"),
        "{j}"
    );
    let named = |list: &Value, name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|m| m["Name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing in {list}"))
    };
    assert!(
        named(&j["Counters"], "shoal.catalog.writes")["Count"]
            .as_f64()
            .unwrap()
            >= 2.0
    );
    assert_eq!(
        named(&j["Gauges"], "shoal.catalog.store.failing")["Value"],
        0
    );
    let commit = named(&j["Samples"], "shoal.catalog.commit");
    for key in [
        "Count", "Rate", "Sum", "Min", "Max", "Mean", "Stddev", "Labels",
    ] {
        assert!(commit.get(key).is_some(), "{key} missing in {commit}");
    }
    let text = scrape(s.at("/v1/agent/metrics?format=prometheus")).await;
    has_families(&text, REGISTRY_FAMILIES);
    let r = get(s.at("/v1/agent/metrics?format=xml")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text.contains("Invalid format"), "{}", r.text);
}

#[tokio::test]
async fn dev_adds_the_proxy_metrics_to_one_valid_exposition() {
    let (dev, proxy) = ServerProcess::start_dev(bin(), &["--demo", "2"]);
    for _ in 0..4 {
        let _ = client()
            .get(format!("{proxy}/"))
            .header("Host", "hello.localhost")
            .send()
            .await;
    }
    let text = scrape(dev.at("/metrics")).await;
    has_families(&text, REGISTRY_FAMILIES);
    has_families(
        &text,
        &[
            "# TYPE shoal_proxy_received_requests_total counter",
            "# TYPE shoal_proxy_requests_total counter",
            "# TYPE shoal_proxy_upstream_latency_seconds histogram",
        ],
    );
    let instances = text
        .lines()
        .filter(|l| l.starts_with("shoal_proxy_requests_total{service=\"hello\""))
        .count();
    assert_eq!(
        instances, 2,
        "one sample per instance in one group:\n{text}"
    );
    // The proxy's stats stay where they were.
    ok(get(dev.at("/v1/proxy/stats")).await);
}

#[tokio::test]
async fn agent_serves_its_own_metrics() {
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    let agent = ServerProcess::start_agent(bin(), &server.url, "metrics-node", &[]);
    let reg = json!({"ID": "a-1", "Name": "a", "Port": 1, "Check": {"TTL": "30s"}});
    ok(put_json(agent.at("/v1/agent/service/register"), &reg).await);
    let text = scrape(agent.at("/metrics")).await;
    has_families(&text, REGISTRY_FAMILIES);
    assert!(
        value(&text, "shoal_catalog_writes_total").unwrap() >= 1.0,
        "{text}"
    );
    let j = ok(get(agent.at("/v1/agent/metrics")).await).json();
    assert!(
        j["Counters"].as_array().is_some_and(|c| !c.is_empty()),
        "{j}"
    );
}
