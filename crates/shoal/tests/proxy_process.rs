//! `shoal proxy` as its own process following a registry over HTTP, and
//! `shoal dev --demo`, end to end with real processes.

mod common;

use common::client;
use common::stack::{bin, hello};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shoal_testkit::{assert_eventually, ServerProcess};

async fn get_id(proxy: &str, host: &str) -> Option<String> {
    common::proxied_field(proxy, host, "id").await
}

/// `shoal dev` on port-0 listeners, in memory, plus `extra` flags;
/// returns the process and the proxy's URL.
fn dev(extra: &[&str]) -> (ServerProcess, String) {
    ServerProcess::start_dev(bin(), extra)
}

#[tokio::test]
async fn standalone_proxy_follows_a_remote_registry() {
    let registry = ServerProcess::start(bin(), &["--in-memory"]);
    let proxy = ServerProcess::start_role(
        bin(),
        &[
            "proxy",
            "--registry",
            &registry.url,
            "--listen",
            "127.0.0.1:0",
            "--stats-addr",
            "127.0.0.1:0",
            "--worker-threads",
            "1",
            "--queue-timeout",
            "200ms",
            "--log-level",
            "warn",
        ],
        "shoal proxy",
    );
    let web = hello("web");
    let body = json!({"ID": web.id, "Name": "web", "Address": "127.0.0.1", "Port": web.port});
    let r = client()
        .put(registry.at("/v1/agent/service/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eventually!(
        get_id(&proxy.url, "web.localhost").await.as_deref() == Some(web.id.as_str()),
        "routed through the remote registry"
    );
    let r = client()
        .put(registry.at(&format!("/v1/agent/service/deregister/{}", web.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eventually!(
        get_id(&proxy.url, "web.localhost").await.is_none(),
        "gone once deregistered"
    );
}

#[tokio::test]
async fn dev_with_demo_instances_round_robins_and_serves_stats() {
    let (dev, proxy) = dev(&["--demo", "3"]);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..9 {
        seen.insert(
            get_id(&proxy, "hello.localhost")
                .await
                .expect("demo instances answer"),
        );
    }
    assert_eq!(seen.len(), 3, "three demo instances in rotation: {seen:?}");
    let stats: Value = client()
        .get(dev.at("/v1/proxy/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats["services"]["hello"]["instances"]
            .as_object()
            .unwrap()
            .len(),
        3
    );
    let metrics = client()
        .get(dev.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("shoal_proxy_requests_total{service=\"hello\""),
        "{metrics}"
    );
    // The API is still all there beside the stats routes.
    let services: Value = client()
        .get(dev.at("/v1/catalog/services"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(services.get("hello").is_some());
}

#[tokio::test]
async fn a_self_registered_hello_is_routable_at_once_and_leaves_on_sigterm() {
    let (dev, proxy) = dev(&["--queue-timeout", "200ms"]);
    let mut backend = ServerProcess::start_role(
        bin(),
        &[
            "hello",
            "--name",
            "greeter",
            "--id",
            "greeter-1",
            "--register",
            &dev.url,
            "--log-level",
            "warn",
        ],
        "shoal hello",
    );
    assert_eventually!(
        get_id(&proxy, "greeter.localhost").await.as_deref() == Some("greeter-1"),
        "routable"
    );
    assert_eq!(backend.terminate(), Some(0));
    assert_eventually!(
        get_id(&proxy, "greeter.localhost").await.is_none(),
        "gone after SIGTERM"
    );
}
