//! A server that does not lead has the leader commit its writes (one
//! writer batches everyone's, no races between servers), still answers
//! only once its own view holds the write, takes writes from servers of
//! its own catalog only, and commits by itself when the leader is gone.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use shoal_testkit::{EtcdCluster, ServerProcess};
use std::path::Path;
use std::time::{Duration, Instant};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

async fn metric(server: &ServerProcess, name: &str) -> u64 {
    let text = ok(get(server.at("/metrics")).await).text;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in /metrics"))
}

/// Waits until both servers name the same leader; returns (leader, other).
async fn leader_and_follower<'a>(
    a: &'a ServerProcess,
    b: &'a ServerProcess,
) -> (&'a ServerProcess, &'a ServerProcess) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let la = get(a.at("/v1/status/leader")).await.json();
        let lb = get(b.at("/v1/status/leader")).await.json();
        let peers = get(b.at("/v1/status/peers")).await.json();
        if la == lb && peers.as_array().is_some_and(|p| p.len() == 2) {
            let leader = la.as_str().unwrap_or_default().to_string();
            if a.url.ends_with(&leader) {
                return (a, b);
            }
            if b.url.ends_with(&leader) {
                return (b, a);
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader: {la} / {lb}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn kv_value(entry: &Value) -> String {
    use base64::Engine;
    let b64 = entry[0]["Value"].as_str().unwrap_or_default();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_follower_has_the_leader_commit_its_writes_and_reads_them_at_once() {
    let etcd = EtcdCluster::start(3);
    let a = etcd.start_shoal(bin(), "server-a", &[]);
    let b = etcd.start_shoal(bin(), "server-b", &[]);
    let (leader, follower) = leader_and_follower(&a, &b).await;
    let forwarded = metric(follower, "shoal_catalog_writes_forwarded_total").await;
    let follower_commits = metric(follower, "shoal_catalog_commits_total").await;
    let leader_commits = metric(leader, "shoal_catalog_commits_total").await;
    // Counted from here: before forwarding starts, each server commits its
    // own node and `consul` service itself, and the leader's first commit
    // after the follower's last one loses until its view has that one: a
    // consistent read has the leader's view reach etcd's head first.
    ok(get(leader.at("/v1/catalog/service/consul?consistent")).await);
    let leader_conflicts = metric(leader, "shoal_catalog_commit_conflicts_total").await;

    for i in 0..20 {
        let key = format!("fwd/k{i}");
        let done = ok(put(follower.at(&format!("/v1/kv/{key}?cas=0")), format!("v{i}")).await);
        assert_eq!(done.text.trim(), "true");
        // Read-your-writes on the server that acknowledged, no ?consistent.
        let read = ok(get(follower.at(&format!("/v1/kv/{key}"))).await);
        assert_eq!(kv_value(&read.json()), format!("v{i}"));
        let index = read.index;
        // The leader has it at the same index.
        let there = ok(get(leader.at(&format!("/v1/kv/{key}"))).await);
        assert_eq!(kv_value(&there.json()), format!("v{i}"));
        assert_eq!(there.json()[0]["ModifyIndex"], json!(index));
        // A check-and-set decided by the leader: the key exists now.
        let again = ok(put(follower.at(&format!("/v1/kv/{key}?cas=0")), "other").await);
        assert_eq!(again.text.trim(), "false");
    }
    // A registration and its deregistration through the follower.
    let reg = json!({"ID": "web-1", "Name": "web", "Port": 80, "Address": "127.0.0.1"});
    ok(put_json(follower.at("/v1/agent/service/register"), &reg).await);
    let listed = ok(get(follower.at("/v1/catalog/service/web")).await).json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    ok(put(follower.at("/v1/agent/service/deregister/web-1"), "").await);
    let listed = ok(get(follower.at("/v1/catalog/service/web")).await).json();
    assert_eq!(listed, json!([]));

    let now_forwarded = metric(follower, "shoal_catalog_writes_forwarded_total").await;
    assert!(
        now_forwarded >= forwarded + 42,
        "the follower forwarded {} writes",
        now_forwarded - forwarded
    );
    assert_eq!(
        metric(follower, "shoal_catalog_commits_total").await,
        follower_commits,
        "the follower committed nothing itself"
    );
    assert!(metric(leader, "shoal_catalog_commits_total").await >= leader_commits + 22);
    assert_eq!(
        metric(leader, "shoal_catalog_commit_conflicts_total").await,
        leader_conflicts,
        "the leader, the only one committing, never lost a race"
    );
}

#[tokio::test]
async fn the_leader_takes_forwarded_writes_only_from_its_own_catalog() {
    let etcd = EtcdCluster::start(3);
    let a = etcd.start_shoal(bin(), "server-a", &[]);
    let b = etcd.start_shoal(bin(), "server-b", &[]);
    let (leader, _) = leader_and_follower(&a, &b).await;
    let cmd = json!({"KvPut": {"key": "stolen", "value": "eA==", "flags": 0, "cas": null}});
    let url = leader.at("/v1/internal/shoal/write");
    let body = serde_json::to_vec(&cmd).unwrap();
    // No token, then a wrong one: refused, nothing written.
    let none = call(Method::POST, &url, Some(body.clone())).await;
    assert_eq!(none.status, 403, "{}", none.text);
    assert!(
        none.text.contains("not a server of this catalog"),
        "{}",
        none.text
    );
    let wrong = client()
        .post(&url)
        .header("x-shoal-forward-token", "guess")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let read = get(leader.at("/v1/kv/stolen?consistent")).await;
    assert_eq!(read.status, 404, "nothing was written: {}", read.text);
}

#[tokio::test]
async fn a_follower_commits_by_itself_once_the_leader_is_gone() {
    let etcd = EtcdCluster::start(3);
    let mut a = etcd.start_shoal(bin(), "server-a", &[]);
    let mut b = etcd.start_shoal(bin(), "server-b", &[]);
    let a_leads = {
        let (leader, _) = leader_and_follower(&a, &b).await;
        leader.url == a.url
    };
    let (leader, follower) = if a_leads { (&mut a, &b) } else { (&mut b, &a) };
    ok(put(follower.at("/v1/kv/before"), "1").await);
    leader.kill();
    // Right away (the leader is still listed) and later (it is not): every
    // write is acknowledged and read back on the follower.
    for i in 0..10 {
        let key = format!("after/k{i}");
        let done = ok(put(follower.at(&format!("/v1/kv/{key}")), "x").await);
        assert_eq!(done.text.trim(), "true");
        let read = ok(get(follower.at(&format!("/v1/kv/{key}"))).await);
        assert_eq!(kv_value(&read.json()), "x");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let all = ok(get(follower.at("/v1/kv/?recurse&consistent")).await).json();
    assert_eq!(all.as_array().unwrap().len(), 11, "{all}");
}
