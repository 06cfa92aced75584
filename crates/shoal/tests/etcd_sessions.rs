//! Sessions on a catalog shared by two servers on etcd: a renewal
//! received by either server keeps a session alive, only the leader
//! invalidates an expired one (once: `shoal_sessions_expired_total` over
//! all servers), a leader that dies hands the job to the other, and a
//! lock-delay started by an invalidation on one server holds on the other.

mod common;

use common::*;
use serde_json::{json, Value};
use shoal_testkit::{EtcdCluster, ServerProcess};
use std::path::Path;
use std::time::{Duration, Instant};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

async fn eventually(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn two_servers(etcd: &EtcdCluster) -> (ServerProcess, ServerProcess) {
    let a = etcd.start_shoal(bin(), "server-a", &[]);
    let b = etcd.start_shoal(bin(), "server-b", &[]);
    for s in [&a, &b] {
        eventually("both servers are peers", 15, async || {
            let peers = ok(get(s.at("/v1/status/peers")).await).json();
            peers.as_array().is_some_and(|p| p.len() == 2)
        })
        .await;
    }
    (a, b)
}

async fn create(server: &ServerProcess, body: Value) -> String {
    let r = ok(put_json(server.at("/v1/session/create"), &body).await);
    r.json()["ID"].as_str().unwrap().to_string()
}

async fn acquire(server: &ServerProcess, key: &str, session: &str) -> bool {
    let r = ok(put(server.at(&format!("/v1/kv/{key}?acquire={session}")), "v").await);
    r.text.trim() == "true"
}

async fn exists(server: &ServerProcess, session: &str) -> bool {
    let r = ok(get(server.at(&format!("/v1/session/info/{session}?consistent"))).await);
    r.json().as_array().is_some_and(|a| !a.is_empty())
}

async fn holder(server: &ServerProcess, key: &str) -> String {
    let r = ok(get(server.at(&format!("/v1/kv/{key}?consistent"))).await);
    r.json()[0]["Session"].as_str().unwrap_or("").to_string()
}

async fn expired(server: &ServerProcess) -> u64 {
    let text = ok(get(server.at("/metrics")).await).text;
    text.lines()
        .find_map(|l| l.strip_prefix("shoal_sessions_expired_total "))
        .unwrap_or_else(|| panic!("no shoal_sessions_expired_total on {}", server.url))
        .trim()
        .parse()
        .unwrap()
}

fn ttl_session(name: &str) -> Value {
    json!({"Name": name, "TTL": "10s", "LockDelay": "0s"})
}

/// A session created on A and renewed only on B (and one the other way
/// round) lives past its 2 × TTL; once renewals stop each is invalidated
/// exactly once over both servers, and a contender on the other server
/// then takes its lock.
#[tokio::test]
async fn a_session_renewed_on_either_server_lives_then_expires_once() {
    let etcd = EtcdCluster::start(3);
    let (a, b) = two_servers(&etcd).await;
    let on_a = create(&a, ttl_session("made-on-a")).await;
    let on_b = create(&b, ttl_session("made-on-b")).await;
    assert!(acquire(&a, "locks/one", &on_a).await);
    assert!(acquire(&b, "locks/two", &on_b).await);
    // 36 s of renewals, each on the server that did not create the session
    // (2 × TTL is 20 s: a server that never saw them would expire both).
    for _ in 0..9 {
        ok(put(b.at(&format!("/v1/session/renew/{on_a}")), "").await);
        ok(put(a.at(&format!("/v1/session/renew/{on_b}")), "").await);
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    for s in [&a, &b] {
        assert!(exists(s, &on_a).await, "renewed on B, invalidated anyway");
        assert!(exists(s, &on_b).await, "renewed on A, invalidated anyway");
    }
    assert_eq!(expired(&a).await + expired(&b).await, 0);
    assert_eq!(holder(&b, "locks/one").await, on_a);
    // Renewals stop: contenders on the other servers wait for the locks.
    let wants_one = create(&b, json!({"Name": "contender-b", "LockDelay": "0s"})).await;
    let wants_two = create(&a, json!({"Name": "contender-a", "LockDelay": "0s"})).await;
    assert!(
        !acquire(&b, "locks/one", &wants_one).await,
        "lock still held"
    );
    eventually("the contender on B takes locks/one", 60, async || {
        acquire(&b, "locks/one", &wants_one).await
    })
    .await;
    eventually("the contender on A takes locks/two", 60, async || {
        acquire(&a, "locks/two", &wants_two).await
    })
    .await;
    for s in [&a, &b] {
        assert!(!exists(s, &on_a).await && !exists(s, &on_b).await);
    }
    // A second invalidation (by a server that also thought it led, or
    // late) would show here.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let total = expired(&a).await + expired(&b).await;
    assert_eq!(total, 2, "2 expired sessions invalidated {total} times");
}

/// The leader dies (SIGKILL) while a session's TTL runs: the other server
/// takes the lead, gives the session a full TTL, and invalidates it.
#[tokio::test]
async fn the_other_server_invalidates_a_session_when_the_leader_dies() {
    let etcd = EtcdCluster::start(3);
    let (a, b) = two_servers(&etcd).await;
    let leader = ok(get(a.at("/v1/status/leader")).await).json();
    let (mut lead, other) = if leader == Value::String(a.url.trim_start_matches("http://").into()) {
        (a, b)
    } else {
        (b, a)
    };
    let id = create(&lead, ttl_session("dies-with-the-leader")).await;
    assert!(acquire(&lead, "locks/leader", &id).await);
    ok(put(other.at(&format!("/v1/session/renew/{id}")), "").await);
    lead.kill();
    let contender = create(&other, json!({"Name": "next", "LockDelay": "0s"})).await;
    // Lease of the dead server (5 s), then a full 2 × TTL (20 s).
    eventually("the survivor invalidates the session", 90, async || {
        !exists(&other, &id).await
    })
    .await;
    assert!(holder(&other, "locks/leader").await.is_empty());
    assert!(acquire(&other, "locks/leader", &contender).await);
    assert_eq!(expired(&other).await, 1);
}

/// Invalidations other than a TTL — destroy, a check going critical —
/// are one write on one server; the other follows it, lock-delay included.
#[tokio::test]
async fn an_invalidation_on_one_server_holds_its_lock_delay_on_the_other() {
    let etcd = EtcdCluster::start(3);
    let (a, b) = two_servers(&etcd).await;
    // Destroyed on A with Consul's default lock-delay (15 s): a contender
    // on B is refused at once, then takes the key.
    let holder_id = create(&a, json!({"Name": "holder"})).await;
    assert!(acquire(&a, "locks/delay", &holder_id).await);
    ok(put(a.at(&format!("/v1/session/destroy/{holder_id}")), "").await);
    let contender = create(&b, json!({"Name": "contender", "LockDelay": "0s"})).await;
    eventually("B sees the lock released", 10, async || {
        holder(&b, "locks/delay").await.is_empty()
    })
    .await;
    assert!(
        !acquire(&b, "locks/delay", &contender).await,
        "B ignored the lock-delay started on A"
    );
    eventually(
        "the contender takes the key after the delay",
        40,
        async || acquire(&b, "locks/delay", &contender).await,
    )
    .await;
    // A session on B tied to a check that goes critical through A.
    let node = json!({"Node": "app-1", "Address": "10.0.0.9",
        "Check": {"CheckID": "app", "Name": "app", "Status": "passing"}});
    ok(put_json(a.at("/v1/catalog/register"), &node).await);
    let bound = json!({"Name": "bound", "Node": "app-1", "NodeChecks": ["app"], "LockDelay": "0s"});
    eventually("B has the node", 10, async || {
        let r = get(b.at("/v1/catalog/node/app-1")).await;
        r.status == reqwest::StatusCode::OK && r.json()["Node"].is_object()
    })
    .await;
    let bound_id = create(&b, bound).await;
    assert!(acquire(&b, "locks/bound", &bound_id).await);
    let mut critical = node.clone();
    critical["Check"]["Status"] = "critical".into();
    ok(put_json(a.at("/v1/catalog/register"), &critical).await);
    for s in [&a, &b] {
        eventually("the check-bound session is invalidated", 10, async || {
            !exists(s, &bound_id).await && holder(s, "locks/bound").await.is_empty()
        })
        .await;
    }
    assert_eq!(expired(&a).await + expired(&b).await, 0, "not a TTL expiry");
}
