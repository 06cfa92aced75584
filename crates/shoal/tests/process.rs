//! The real binary as a process: durability across SIGKILL, clean
//! shutdown on SIGTERM, and clear failures when it cannot start.

mod common;

use common::*;
use serde_json::json;
use shoal_testkit::ServerProcess;
use std::path::Path;
use std::process::Command;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

#[tokio::test]
async fn every_acknowledged_write_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let mut server = ServerProcess::start(bin(), &["--data-dir", &data]);
    // Concurrent writers (so writes share group commits); the process is
    // killed the moment the last acknowledgement arrives.
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..16 {
        let base = server.url.clone();
        tasks.spawn(async move {
            let mut acked = Vec::new();
            for i in 0..25 {
                let id = format!("svc-{w}-{i}");
                let body = json!({"ID": id, "Name": format!("svc{w}"), "Port": 1000 + i});
                let r = put_json(format!("{base}/v1/agent/service/register"), &body).await;
                assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.text);
                let k = put(format!("{base}/v1/kv/w{w}/k{i}"), format!("v{i}")).await;
                assert_eq!(k.text, "true");
                acked.push((id, format!("w{w}/k{i}"), format!("v{i}")));
            }
            acked
        });
    }
    let acked: Vec<_> = tasks.join_all().await.into_iter().flatten().collect();
    server.kill();

    let server = ServerProcess::start(bin(), &["--data-dir", &data]);
    let services = ok(get(server.at("/v1/agent/services")).await).json();
    for (id, key, value) in &acked {
        assert!(
            services.get(id).is_some(),
            "acknowledged registration {id} lost"
        );
        let v = ok(get(server.at(&format!("/v1/kv/{key}?raw"))).await).text;
        assert_eq!(&v, value, "acknowledged KV write {key} lost");
    }
    assert_eq!(acked.len(), 400);
}

#[tokio::test]
async fn state_and_index_come_back_exactly_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let mut server = ServerProcess::start(bin(), &["--data-dir", &data, "--node-name", "n1"]);
    ok(put_json(
        server.at("/v1/agent/service/register"),
        &json!({"Name": "web", "Port": 80, "Check": {"TTL": "10s"}}),
    )
    .await);
    ok(put(server.at("/v1/agent/check/pass/service:web?note=up"), "").await);
    ok(put(server.at("/v1/kv/a"), "1").await);
    ok(put(server.at("/v1/kv/b"), "2").await);
    ok(delete(server.at("/v1/kv/b")).await);
    let paths = [
        "/v1/health/service/web",
        "/v1/catalog/services",
        "/v1/kv/a",
        "/v1/kv/b",
        "/v1/agent/checks",
        "/v1/catalog/nodes",
    ];
    let mut before = Vec::new();
    for p in paths {
        let r = get(server.at(p)).await;
        before.push((r.status, r.index, r.text));
    }
    assert_eq!(server.terminate(), Some(0), "SIGTERM exits cleanly");
    let server = ServerProcess::start(bin(), &["--data-dir", &data, "--node-name", "n1"]);
    for (p, (status, index, text)) in paths.iter().zip(before) {
        let r = get(server.at(p)).await;
        assert_eq!(
            (r.status, r.index, &r.text),
            (status, index, &text),
            "{p} differs after restart"
        );
    }
    ok(put(server.at("/v1/kv/c"), "3").await);
    let c = ok(get(server.at("/v1/kv/c")).await).json();
    assert!(
        c[0]["ModifyIndex"].as_u64().unwrap() > 5,
        "the index keeps counting up after restart"
    );
}

#[tokio::test]
async fn in_memory_keeps_nothing() {
    let mut server = ServerProcess::start(bin(), &["--in-memory"]);
    ok(put(server.at("/v1/kv/a"), "1").await);
    server.restart();
    assert_eq!(
        get(server.at("/v1/kv/a")).await.status,
        reqwest::StatusCode::NOT_FOUND
    );
}

fn run_fail(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn port_taken_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = run_fail(&["server", "--in-memory", "--http-addr", &addr]);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(
        err.to_lowercase().contains("address already in use") || err.contains("in use"),
        "{err}"
    );
}

#[test]
fn unusable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a dir").unwrap();
    let data = file.join("sub");
    let (code, err) = run_fail(&[
        "server",
        "--http-addr",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("is unusable"), "{err}");

    let second = tempfile::tempdir().unwrap();
    let data = second.path().to_str().unwrap();
    let _running = ServerProcess::start(bin(), &["--data-dir", data]);
    let (code, err) = run_fail(&["server", "--http-addr", "127.0.0.1:0", "--data-dir", data]);
    assert_ne!(code, 0, "two servers on one data dir must not both run");
    assert!(err.contains("is unusable"), "{err}");
}

#[test]
fn bad_flags_are_reported() {
    let (code, err) = run_fail(&["server", "--http-addr", "nowhere"]);
    assert_eq!(code, 2);
    assert!(err.contains("--http-addr"), "{err}");
    let (code, err) = run_fail(&["--log-level", "loud=[", "server", "--in-memory"]);
    assert_ne!(code, 0);
    assert!(err.contains("invalid --log-level"), "{err}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(bin())
        // No "running in a container" line first on a CI container.
        .env("SHOAL_IN_CONTAINER", "0")
        .args([
            "--log-format",
            "json",
            "server",
            "--in-memory",
            "--http-addr",
            "127.0.0.1:0",
            "--dns-addr",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let first = BufReader::new(stderr).lines().next().unwrap().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let line: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["fields"]["message"], "shoal started");
    assert_eq!(line["fields"]["store"], "memory");
}
