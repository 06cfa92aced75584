//! Blocking queries over real HTTP: they return when what they read
//! changes, and only then (or at their wait).

mod common;

use common::*;
use serde_json::json;
use shoal_testkit::TestServer;
use std::time::Duration;
use tokio::task::JoinHandle;

async fn register(s: &TestServer, id: &str, name: &str) {
    ok(put_json(
        s.at("/v1/agent/service/register"),
        &json!({"ID": id, "Name": name, "Port": 80}),
    )
    .await);
}

/// Starts a blocking GET of `path` at `index` (wait 30 s) in the background.
fn watch(s: &TestServer, path: &str, index: u64) -> JoinHandle<Reply> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = s.at(&format!("{path}{sep}index={index}&wait=30s"));
    tokio::spawn(async move { get(url).await })
}

/// Gives a watcher time to be parked on the server, then checks it still waits.
async fn still_waiting(h: &JoinHandle<Reply>, what: &str) {
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        !h.is_finished(),
        "{what}: returned although nothing it reads changed"
    );
}

async fn returns(h: JoinHandle<Reply>, what: &str) -> Reply {
    tokio::time::timeout(Duration::from_secs(5), h)
        .await
        .unwrap_or_else(|_| panic!("{what}: did not wake up after a change"))
        .unwrap()
}

#[tokio::test]
async fn service_watchers_wake_for_their_service_only() {
    let s = TestServer::start().await;
    register(&s, "web-1", "web").await;
    for path in [
        "/v1/health/service/web",
        "/v1/catalog/service/web",
        "/v1/health/checks/web",
    ] {
        let idx = ok(get(s.at(path)).await).index;
        let h = watch(&s, path, idx);
        still_waiting(&h, path).await;
        register(&s, &format!("db-{path}"), "db").await;
        ok(put(s.at("/v1/kv/unrelated"), "x").await);
        still_waiting(&h, path).await;
        register(&s, &format!("web-{}", path.len()), "web").await;
        let r = returns(h, path).await;
        assert!(r.index > idx, "{path}: index must move");
    }
}

#[tokio::test]
async fn health_watcher_wakes_on_check_status_change() {
    let s = TestServer::start().await;
    ok(put_json(
        s.at("/v1/agent/service/register"),
        &json!({"Name": "api", "Port": 1, "Check": {"TTL": "30s"}}),
    )
    .await);
    let idx = ok(get(s.at("/v1/health/service/api?passing")).await).index;
    let h = watch(&s, "/v1/health/service/api?passing", idx);
    still_waiting(&h, "passing watcher").await;
    ok(put(s.at("/v1/agent/check/pass/service:api"), "").await);
    let r = returns(h, "passing watcher").await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    // Refreshing a TTL with the same status and output changes nothing.
    let h = watch(&s, "/v1/health/service/api", r.index);
    ok(put(s.at("/v1/agent/check/pass/service:api"), "").await);
    still_waiting(&h, "an identical TTL refresh").await;
    h.abort();
}

#[tokio::test]
async fn list_and_node_watchers() {
    let s = TestServer::start().await;
    let services_idx = ok(get(s.at("/v1/catalog/services")).await).index;
    let nodes_idx = ok(get(s.at("/v1/catalog/nodes")).await).index;
    let node_idx = ok(get(s.at("/v1/catalog/node/test-node")).await).index;
    let state_idx = ok(get(s.at("/v1/health/state/any")).await).index;
    let services = watch(&s, "/v1/catalog/services", services_idx);
    let nodes = watch(&s, "/v1/catalog/nodes", nodes_idx);
    let node = watch(&s, "/v1/catalog/node/test-node", node_idx);
    let agent = watch(&s, "/v1/agent/services", node_idx);
    let state = watch(&s, "/v1/health/state/any", state_idx);
    still_waiting(&services, "services").await;
    register(&s, "web-1", "web").await;
    assert!(returns(services, "catalog services")
        .await
        .json()
        .get("web")
        .is_some());
    assert!(returns(node, "catalog node").await.json()["Services"]
        .get("web-1")
        .is_some());
    assert!(returns(agent, "agent services")
        .await
        .json()
        .get("web-1")
        .is_some());
    still_waiting(&nodes, "nodes (no node changed)").await;
    still_waiting(&state, "checks (no check changed)").await;
    ok(put_json(
        s.at("/v1/catalog/register"),
        &json!({"Node": "n2", "Address": "10.1.1.1"}),
    )
    .await);
    returns(nodes, "catalog nodes").await;
    ok(put_json(
        s.at("/v1/agent/check/register"),
        &json!({"Name": "c", "TTL": "10s"}),
    )
    .await);
    returns(state, "health state").await;
}

#[tokio::test]
async fn kv_watchers_follow_their_prefix() {
    let s = TestServer::start().await;
    ok(put(s.at("/v1/kv/app/a"), "1").await);
    let key_idx = ok(get(s.at("/v1/kv/app/a")).await).index;
    let prefix_idx = ok(get(s.at("/v1/kv/app/?recurse")).await).index;
    let key = watch(&s, "/v1/kv/app/a", key_idx);
    let prefix = watch(&s, "/v1/kv/app/?recurse", prefix_idx);
    let keys = watch(&s, "/v1/kv/app/?keys", prefix_idx);
    ok(put(s.at("/v1/kv/other/z"), "x").await);
    register(&s, "web-1", "web").await;
    still_waiting(&prefix, "kv prefix").await;
    ok(put(s.at("/v1/kv/app/b"), "2").await);
    let r = returns(prefix, "kv prefix").await;
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    returns(keys, "kv keys").await;
    still_waiting(&key, "kv key (a sibling changed)").await;
    ok(delete(s.at("/v1/kv/app/a")).await);
    let r = returns(key, "kv key delete").await;
    assert_eq!(r.status, reqwest::StatusCode::NOT_FOUND);
    assert!(r.index > key_idx);
}

#[tokio::test]
async fn wait_bounds_the_block_and_index_zero_never_blocks() {
    let s = TestServer::start().await;
    register(&s, "web-1", "web").await;
    let idx = ok(get(s.at("/v1/health/service/web")).await).index;
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        get(s.at(&format!("/v1/health/service/web?index={idx}&wait=100ms"))),
    )
    .await
    .expect("wait=100ms must return on its own");
    assert_eq!(r.index, idx, "no change: same index back");
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        get(s.at("/v1/health/service/web?index=0&wait=1m")),
    )
    .await
    .expect("index=0 answers at once");
    assert_eq!(r.index, idx);
}

#[tokio::test]
async fn many_watchers_all_wake_on_one_write() {
    let s = TestServer::start().await;
    register(&s, "web-1", "web").await;
    let idx = ok(get(s.at("/v1/health/service/web")).await).index;
    let watchers: Vec<_> = (0..200)
        .map(|_| watch(&s, "/v1/health/service/web", idx))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(watchers.iter().all(|h| !h.is_finished()));
    register(&s, "web-2", "web").await;
    for h in watchers {
        let r = returns(h, "one of 200 watchers").await;
        assert_eq!(r.json().as_array().unwrap().len(), 2);
    }
}
