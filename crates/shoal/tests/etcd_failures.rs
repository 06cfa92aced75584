//! `shoal server --store etcd` while etcd members die: nothing
//! acknowledged is lost, a cluster without quorum refuses writes clearly
//! and still serves reads, and servers catch up by themselves (also after
//! etcd compacted the history they needed).

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;
use shoal_testkit::EtcdCluster;
use std::path::Path;
use std::time::{Duration, Instant};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

async fn known_leader(url: String) -> Option<String> {
    let r = client().get(url).send().await.ok()?;
    r.headers()
        .get("X-Consul-KnownLeader")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tokio::test]
async fn one_member_killed_under_write_load_loses_no_acknowledged_write() {
    let mut etcd = EtcdCluster::start(3);
    let a = etcd.start_shoal(bin(), "server-a", &[]);
    let b = etcd.start_shoal(bin(), "server-b", &[]);
    let urls = [a.url.clone(), b.url.clone()];
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let urls = urls.clone();
        writers.spawn(async move {
            let mut acked = Vec::new();
            for i in 0..40 {
                let key = format!("load/w{w}-{i}");
                let url = format!("{}/v1/kv/{key}", urls[(w + i) % 2]);
                let r = client().put(url).body(format!("v{i}")).send().await;
                if let Ok(r) = r {
                    if r.status() == StatusCode::OK && r.text().await.unwrap_or_default() == "true"
                    {
                        acked.push((key, format!("v{i}")));
                    }
                }
            }
            acked
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    etcd.kill(0);
    let acked: Vec<(String, String)> = writers.join_all().await.into_iter().flatten().collect();
    assert!(
        acked.len() >= 200,
        "writes must go on with 2 of 3 members: {} acked",
        acked.len()
    );
    for server in [&a, &b] {
        let all = ok(get(server.at("/v1/kv/load/?recurse&consistent")).await).json();
        let have: std::collections::HashMap<String, String> = all
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let v = base64_decode(e["Value"].as_str().unwrap_or(""));
                (e["Key"].as_str().unwrap().to_string(), v)
            })
            .collect();
        for (key, value) in &acked {
            assert_eq!(
                have.get(key),
                Some(value),
                "{key} acknowledged, lost on {}",
                server.url
            );
        }
    }
}

fn base64_decode(s: &str) -> String {
    use base64::Engine;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
}

#[tokio::test]
async fn quorum_lost_refuses_writes_serves_reads_and_recovers() {
    let mut etcd = EtcdCluster::start(3);
    let a = etcd.start_shoal(bin(), "server-a", &[]);
    let b = etcd.start_shoal(bin(), "server-b", &[]);
    ok(put(a.at("/v1/kv/k"), "before").await);
    let index = ok(get(b.at("/v1/kv/k?consistent")).await).index;
    let waiter = tokio::spawn(get(b.at(&format!("/v1/kv/k?index={index}&wait=120s"))));
    etcd.kill(0);
    etcd.kill(1);
    let w = put(a.at("/v1/kv/k"), "during").await;
    assert_eq!(w.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", w.text);
    assert!(w.text.contains("No cluster leader"), "{}", w.text);
    assert!(!w.text.contains("error: storage error"), "{}", w.text);
    // Reads go on from memory, saying there is no known leader: default
    // reads (unlike on one embedded server, see disk_full.rs) as well as
    // `?stale` ones. Only `?consistent` reads, which need etcd, fail.
    let deadline = Instant::now() + Duration::from_secs(30);
    while known_leader(b.at("/v1/kv/k")).await.as_deref() != Some("false") {
        assert!(
            Instant::now() < deadline,
            "B never noticed etcd lost quorum"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for mode in ["", "&stale"] {
        let read = client()
            .get(b.at(&format!("/v1/kv/k?raw{mode}")))
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), StatusCode::OK, "read ?raw{mode}");
        assert_eq!(read.headers()["X-Consul-KnownLeader"], "false");
        assert!(read.headers().contains_key("X-Consul-LastContact"));
        assert_eq!(read.text().await.unwrap(), "before");
    }
    let listed = ok(get(b.at("/v1/catalog/services")).await);
    assert!(listed.json().get("consul").is_some(), "{}", listed.text);
    let consistent = get(b.at("/v1/kv/k?consistent")).await;
    assert_eq!(
        consistent.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        consistent.text
    );
    assert!(
        consistent.text.starts_with("No cluster leader"),
        "{}",
        consistent.text
    );
    // A blocking query started while quorum is lost waits too.
    let late = tokio::spawn(get(b.at(&format!("/v1/kv/k?index={index}&wait=120s"))));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "a blocking query must keep waiting");
    assert!(!late.is_finished(), "a blocking query must keep waiting");
    etcd.restart(0);
    etcd.restart(1);
    etcd.wait_healthy();
    // Writes are taken again once etcd has a leader, without a restart.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = put(a.at("/v1/kv/k"), "after").await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not recover: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let woken = tokio::time::timeout(Duration::from_secs(15), waiter)
        .await
        .expect("the blocking query on B was not woken after recovery")
        .unwrap();
    assert!(ok(woken).index > index);
    let woken = tokio::time::timeout(Duration::from_secs(15), late)
        .await
        .expect("the blocking query started without quorum was not woken")
        .unwrap();
    assert!(ok(woken).index > index);
    let deadline = Instant::now() + Duration::from_secs(30);
    while known_leader(b.at("/v1/kv/k")).await.as_deref() != Some("true") {
        assert!(
            Instant::now() < deadline,
            "B kept saying there is no leader"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ok(get(b.at("/v1/kv/k?consistent&raw")).await).text, "after");
}

/// Sends an idempotent write until it is acknowledged (200), trying again
/// on 500 (etcd electing a leader) for at most 30 s.
async fn until_taken<F, Fut>(send: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = send().await;
        if r.status == StatusCode::OK {
            return;
        }
        assert!(
            r.status == StatusCode::INTERNAL_SERVER_ERROR && Instant::now() < deadline,
            "write not taken: {} {}",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_server_behind_etcds_compaction_reloads_and_carries_on() {
    let mut etcd = EtcdCluster::start(3);
    let a = etcd.start_shoal_on(
        bin(),
        "server-a",
        &format!("{},{}", etcd.endpoint(0), etcd.endpoint(1)),
        &[],
    );
    // B talks to member 2 only: while it is down, B misses commits.
    let b = etcd.start_shoal_on(bin(), "server-b", &etcd.endpoint(2), &[]);
    ok(put(a.at("/v1/kv/x"), "1").await);
    etcd.kill(2);
    // Member 2 may have been etcd's leader: until the other two elect one,
    // a write may answer 500 (refused, not acknowledged). Each write here
    // is idempotent, so it is tried again until the cluster takes it.
    for i in 0..20 {
        let body = json!({"Node": format!("n{i}"), "Address": "10.0.0.1",
                          "Service": {"ID": "web", "Service": "web", "Port": 80}});
        until_taken(|| put_json(a.at("/v1/catalog/register"), &body)).await;
    }
    until_taken(|| put(a.at("/v1/kv/x"), "2")).await;
    etcd.compact();
    etcd.restart(2);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = get(b.at("/v1/kv/x?stale&raw")).await;
        if r.text == "2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B did not catch up past the compaction: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let web = ok(get(b.at("/v1/catalog/service/web?stale")).await).json();
    assert_eq!(web.as_array().unwrap().len(), 20);
    // And it follows on after the reload.
    ok(put(a.at("/v1/kv/x"), "3").await);
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(b.at("/v1/kv/x?stale&raw")).await.text != "3" {
        assert!(
            Instant::now() < deadline,
            "B stopped following after the reload"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A server whose etcd cannot be reached does not start, and says why:
/// the member's address and the cause, each error said once (not
/// "storage error: storage error: ...").
#[test]
fn a_server_that_cannot_reach_etcd_says_why() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(bin());
    cmd.args([
        "server",
        "--http-addr",
        "127.0.0.1:0",
        "--dns-addr",
        "127.0.0.1:0",
    ])
    .args(["--store", "etcd", "--etcd-endpoints", &closed, "--data-dir"])
    .arg(dir.path())
    .env("SHOAL_NO_DOCKER", "true");
    let (status, stderr) = shoal_testkit::run_to_exit(cmd, Duration::from_secs(30));
    let Some(status) = status else {
        panic!("a server without etcd neither started nor exited in 30 s");
    };
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains(&closed), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert_eq!(stderr.matches("storage error").count(), 1, "{stderr}");
}
