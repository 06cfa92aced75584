//! `shoal agent` against a real `shoal server`: local registrations and
//! checks synced to the catalog (anti-entropy), calls forwarded, failover
//! between servers, and a dead agent's instances leaving the catalog.

mod common;

use common::client;
use common::stack::bin;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shoal_testkit::{assert_eventually, ServerProcess};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `shoal agent` on node `node` syncing to `registry` (comma-separated).
fn agent(registry: &str, node: &str, ttl: &str) -> ServerProcess {
    ServerProcess::start_agent(bin(), registry, node, &["--heartbeat-ttl", ttl])
}

async fn get_json(url: String) -> Option<Value> {
    let r = client().get(url).send().await.ok()?;
    if r.status() != StatusCode::OK {
        return None;
    }
    r.json().await.ok()
}

/// The instances of `service` on the server as (node, id, aggregate status).
async fn instances(server: &ServerProcess, service: &str) -> Vec<(String, String, String)> {
    let Some(Value::Array(entries)) =
        get_json(server.at(&format!("/v1/health/service/{service}"))).await
    else {
        return vec![];
    };
    entries
        .iter()
        .map(|e| {
            let worst = e["Checks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["Status"].as_str().unwrap().to_string())
                .max_by_key(|s| match s.as_str() {
                    "passing" => 0,
                    "warning" => 1,
                    _ => 2,
                })
                .unwrap_or_else(|| "passing".into());
            (
                e["Node"]["Node"].as_str().unwrap().to_string(),
                e["Service"]["ID"].as_str().unwrap().to_string(),
                worst,
            )
        })
        .collect()
}

async fn node_exists(server: &ServerProcess, node: &str) -> bool {
    get_json(server.at(&format!("/v1/catalog/node/{node}")))
        .await
        .is_some_and(|v| !v.is_null())
}

fn register_hello(agent: &ServerProcess, name: &str) -> ServerProcess {
    ServerProcess::start_role(
        bin(),
        &[
            "hello",
            "--name",
            name,
            "--register",
            &agent.url,
            "--log-level",
            "warn",
        ],
        "shoal hello",
    )
}

/// Registers a service definition with the agent; asserts a 200.
async fn register(agent: &ServerProcess, body: Value) {
    let r = client()
        .put(agent.at("/v1/agent/service/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert_eq!(status, StatusCode::OK, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn agent_syncs_registrations_and_check_results_to_the_server() {
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    let agent = agent(&server.url, "host-a", "3s");
    let web = register_hello(&agent, "web");
    let id = web
        .url
        .rsplit(':')
        .next()
        .map(|p| format!("web-{p}"))
        .unwrap();
    assert_eventually!(
        instances(&server, "web").await == vec![("host-a".into(), id.clone(), "passing".into())],
        "instance synced with a passing check: {:?}",
        instances(&server, "web").await
    );
    // The node carries the agent's liveness check, with its TTL.
    let checks = get_json(server.at("/v1/health/node/host-a")).await.unwrap();
    let alive = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == "serfHealth")
        .unwrap();
    assert_eq!(alive["Status"], "passing");
    assert_eq!(alive["Definition"]["TTL"], "3s");
    // The agent answers /v1/agent/* itself and forwards the rest.
    let local = get_json(agent.at("/v1/agent/services")).await.unwrap();
    assert_eq!(local[&id]["Service"], "web");
    let me = get_json(agent.at("/v1/agent/self")).await.unwrap();
    assert_eq!(me["Config"]["Server"], false);
    assert_eq!(me["Config"]["NodeName"], "host-a");
    let services = get_json(agent.at("/v1/catalog/services")).await.unwrap();
    assert!(services.get("web").is_some(), "{services}");
    let r = client()
        .put(agent.at("/v1/kv/through-agent"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = client()
        .get(server.at("/v1/kv/through-agent?raw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "v");

    // A failing backend: the agent's check result reaches the server.
    client().put(web.at("/health/fail")).send().await.unwrap();
    assert_eventually!(
        instances(&server, "web")
            .await
            .first()
            .is_some_and(|i| i.2 == "critical"),
        "critical on the server"
    );
    client().put(web.at("/health/ok")).send().await.unwrap();
    assert_eventually!(
        instances(&server, "web")
            .await
            .first()
            .is_some_and(|i| i.2 == "passing"),
        "passing again"
    );
    // Deregistered with the agent: gone from the server.
    let r = client()
        .put(agent.at(&format!("/v1/agent/service/deregister/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eventually!(instances(&server, "web").await.is_empty(), "deregistered");
}

#[tokio::test]
async fn catalog_changed_behind_the_agents_back_converges_back() {
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    let agent = agent(&server.url, "host-b", "10s");
    let body = json!({"ID": "api-1", "Name": "api", "Port": 9001, "Check": {"TTL": "1h", "Status": "passing"}});
    register(&agent, body).await;
    assert_eventually!(instances(&server, "api").await.len() == 1, "synced");
    // A lost write: the instance disappears from the server.
    let r = client()
        .put(server.at("/v1/catalog/deregister"))
        .json(&json!({"Node": "host-b", "ServiceID": "api-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A stray instance on this agent's node that the agent does not have.
    let stray = json!({"Node": "host-b", "Address": "127.0.0.1", "Service": {"ID": "stray", "Service": "api", "Port": 9}});
    let r = client()
        .put(server.at("/v1/catalog/register"))
        .json(&stray)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eventually!(
        instances(&server, "api").await
            == vec![("host-b".into(), "api-1".into(), "passing".into())],
        "converged back: {:?}",
        instances(&server, "api").await
    );
}

#[tokio::test]
async fn killed_agent_leaves_the_catalog_within_its_heartbeat_ttl() {
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    let mut agent = agent(&server.url, "host-c", "2s");
    let body = json!({"ID": "w1", "Name": "worker", "Port": 7000});
    register(&agent, body).await;
    assert_eventually!(instances(&server, "worker").await.len() == 1, "synced");
    // It stays while the agent beats, well past one TTL.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(node_exists(&server, "host-c").await);
    agent.kill();
    let killed = Instant::now();
    assert_eventually!(!node_exists(&server, "host-c").await, "node removed");
    let took = killed.elapsed();
    assert!(instances(&server, "worker").await.is_empty());
    // Bound: the TTL (2 s) plus the server's 250 ms sweep; the last beat
    // came at most a third of the TTL before the kill.
    assert!(
        took >= Duration::from_millis(1300),
        "removed too early: {took:?}"
    );
    assert!(
        took <= Duration::from_millis(3500),
        "removed too late: {took:?}"
    );
}

#[tokio::test]
async fn stopped_agent_leaves_at_once() {
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    let mut agent = agent(&server.url, "host-d", "30s");
    let body = json!({"ID": "w1", "Name": "batch", "Port": 7000});
    register(&agent, body).await;
    assert_eventually!(instances(&server, "batch").await.len() == 1, "synced");
    assert_eq!(agent.terminate(), Some(0));
    assert!(!node_exists(&server, "host-d").await, "left on SIGTERM");
}

#[tokio::test]
async fn agent_resyncs_after_the_server_restarts_empty_and_fails_over() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let server_args = [
        "server",
        "--in-memory",
        "--http-addr",
        &addr,
        // Port 0: the default DNS port (8600) may be taken by another shoal.
        "--dns-addr",
        "127.0.0.1:0",
        "--log-level",
        "warn",
    ];
    let mut server = ServerProcess::start_role(bin(), &server_args, "HTTP API");
    // The first registry in the list is dead: the agent fails over.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let agent = agent(&format!("{dead},{}", server.url), "host-e", "10s");
    let body = json!({"ID": "c1", "Name": "cache", "Port": 6379, "Check": {"TCP": format!("127.0.0.1:{port}"), "Interval": "1s"}});
    register(&agent, body).await;
    assert_eventually!(
        instances(&server, "cache").await.len() == 1,
        "synced through failover"
    );
    // Calls forwarded by the agent fail over too.
    assert!(get_json(agent.at("/v1/catalog/services")).await.is_some());

    server.restart();
    assert!(instances(&server, "cache").await.len() <= 1);
    assert_eventually!(
        instances(&server, "cache").await == vec![("host-e".into(), "c1".into(), "passing".into())],
        "re-synced after restart: {:?}",
        instances(&server, "cache").await
    );
    assert!(node_exists(&server, "host-e").await);
}

#[tokio::test]
async fn agent_refuses_script_checks() {
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    let agent = agent(&server.url, "host-f", "10s");
    let body =
        json!({"Name": "x", "Port": 1, "Check": {"Args": ["sh", "-c", "id"], "Interval": "10s"}});
    let r = client()
        .put(agent.at("/v1/agent/service/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Script checks (Args) are not supported"));
    assert!(get_json(agent.at("/v1/agent/services"))
        .await
        .unwrap()
        .as_object()
        .unwrap()
        .is_empty());
}
