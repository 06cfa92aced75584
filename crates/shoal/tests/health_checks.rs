//! Health checks run by `shoal dev` (the same runner as `shoal server` and
//! `shoal agent`), end to end: real processes, real backends, the proxy
//! following check status.

mod common;

use common::client;
use common::stack::{bin, hello};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shoal_testkit::{assert_eventually, ServerProcess};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// `shoal dev` in memory on port-0 listeners; returns it and the proxy URL.
fn dev() -> (ServerProcess, String) {
    ServerProcess::start_dev(bin(), &["--queue-timeout", "100ms"])
}

async fn put(url: String, body: Value) -> (StatusCode, String) {
    let r = client().put(url).json(&body).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// A check as `/v1/agent/checks` reports it, if it exists.
async fn check(api: &ServerProcess, id: &str) -> Option<Value> {
    let all: Value = client()
        .get(api.at("/v1/agent/checks"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    all.get(id).cloned()
}

async fn status(api: &ServerProcess, id: &str) -> String {
    check(api, id).await.map_or_else(
        || "absent".to_string(),
        |c| c["Status"].as_str().unwrap_or_default().to_string(),
    )
}

/// Which instances answer through the proxy over `n` requests.
async fn answering(proxy: &str, host: &str, n: usize) -> HashSet<String> {
    let mut ids = HashSet::new();
    for _ in 0..n {
        ids.extend(common::proxied_field(proxy, host, "id").await);
    }
    ids
}

fn set(ids: &[&str]) -> HashSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn http_check_failing_backend_leaves_the_proxy_and_comes_back() {
    let (api, proxy) = dev();
    let (a, b) = (hello("web"), hello("web"));
    for backend in [&a, &b] {
        let body = json!({
            "ID": backend.id, "Name": "web", "Address": "127.0.0.1", "Port": backend.port,
            "Check": {"CheckID": format!("chk-{}", backend.id),
                      "HTTP": format!("http://127.0.0.1:{}/health", backend.port),
                      "Interval": "1s", "Timeout": "1s"},
        });
        let (code, text) = put(api.at("/v1/agent/service/register"), body).await;
        assert_eq!(code, StatusCode::OK, "{text}");
    }
    let (ca, cb) = (format!("chk-{}", a.id), format!("chk-{}", b.id));
    // New checks start critical and pass after their first run.
    assert_eventually!(
        status(&api, &ca).await == "passing" && status(&api, &cb).await == "passing",
        "both checks pass"
    );
    let out = check(&api, &ca).await.unwrap()["Output"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        out.starts_with("HTTP GET http://127.0.0.1:") && out.contains(": 200 OK Output: ok"),
        "{out}"
    );
    assert_eventually!(
        answering(&proxy, "web.localhost", 10).await == set(&[&a.id, &b.id]),
        "both routed"
    );

    let r = client()
        .put(a.process.at("/health/fail"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let failed_at = Instant::now();
    assert_eventually!(status(&api, &ca).await == "critical", "a turns critical");
    // One interval (1 s) plus the run itself; generous for a loaded machine.
    assert!(
        failed_at.elapsed() < Duration::from_secs(4),
        "took {:?}",
        failed_at.elapsed()
    );
    let out = check(&api, &ca).await.unwrap()["Output"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        out.contains("503 Service Unavailable Output: unhealthy"),
        "{out}"
    );
    assert_eventually!(
        answering(&proxy, "web.localhost", 10).await == set(&[&b.id]),
        "only b routed"
    );
    assert_eq!(status(&api, &cb).await, "passing");

    client()
        .put(a.process.at("/health/ok"))
        .send()
        .await
        .unwrap();
    assert_eventually!(status(&api, &ca).await == "passing", "a recovers");
    assert_eventually!(
        answering(&proxy, "web.localhost", 10).await == set(&[&a.id, &b.id]),
        "a routed again"
    );
}

#[tokio::test]
async fn first_run_is_immediate_and_unchanged_results_write_nothing() {
    let (api, _proxy) = dev();
    let web = hello("web");
    // A long interval: only the immediate first run can make it pass.
    let body = json!({
        "ID": "slow", "Name": "slow", "Port": web.port,
        "Check": {"CheckID": "slow-check", "HTTP": format!("http://127.0.0.1:{}/health", web.port), "Interval": "1h"},
    });
    let registered = Instant::now();
    assert_eq!(
        put(api.at("/v1/agent/service/register"), body).await.0,
        StatusCode::OK
    );
    assert_eventually!(
        status(&api, "slow-check").await == "passing",
        "first run passes"
    );
    assert!(registered.elapsed() < Duration::from_secs(5));

    let body = json!({
        "ID": "steady", "Name": "steady", "Port": web.port,
        "Check": {"CheckID": "steady-check", "HTTP": format!("http://127.0.0.1:{}/health", web.port), "Interval": "1s"},
    });
    assert_eq!(
        put(api.at("/v1/agent/service/register"), body).await.0,
        StatusCode::OK
    );
    assert_eventually!(
        status(&api, "steady-check").await == "passing",
        "steady passes"
    );
    let index = |c: Value| c["ModifyIndex"].as_u64().unwrap();
    let before = index(check(&api, "steady-check").await.unwrap());
    let runs_before = web.requests().await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // It kept running (the backend saw the probes) and wrote nothing.
    assert!(web.requests().await >= runs_before + 3, "the check ran");
    assert_eq!(index(check(&api, "steady-check").await.unwrap()), before);
}

#[tokio::test]
async fn tcp_checks_pass_on_open_ports_and_fail_on_closed_ones() {
    let (api, _proxy) = dev();
    let open = hello("db");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    for (id, port) in [("open", open.port), ("closed", closed_port)] {
        let body = json!({
            "ID": id, "Name": "db", "Port": port,
            "Check": {"CheckID": format!("tcp-{id}"), "TCP": format!("127.0.0.1:{port}"),
                      "Interval": "1s", "Timeout": "500ms", "Status": "passing"},
        });
        assert_eq!(
            put(api.at("/v1/agent/service/register"), body).await.0,
            StatusCode::OK
        );
    }
    assert_eventually!(
        status(&api, "tcp-closed").await == "critical",
        "closed port fails"
    );
    let out = check(&api, "tcp-closed").await.unwrap()["Output"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        out.starts_with(&format!("dial tcp 127.0.0.1:{closed_port}: ")),
        "{out}"
    );
    assert_eventually!(
        check(&api, "tcp-open").await.is_some_and(|c| c["Output"]
            == format!("TCP connect 127.0.0.1:{}: Success", open.port)),
        "open port passes"
    );
    assert_eq!(status(&api, "tcp-open").await, "passing");
}

#[tokio::test]
async fn ttl_checks_expire_unless_refreshed() {
    let (api, _proxy) = dev();
    let body = json!({"ID": "job", "Name": "job", "Port": 1, "Check": {"CheckID": "job-ttl", "TTL": "1500ms"}});
    assert_eq!(
        put(api.at("/v1/agent/service/register"), body).await.0,
        StatusCode::OK
    );
    assert_eq!(
        status(&api, "job-ttl").await,
        "critical",
        "TTL checks start critical"
    );
    // Refreshed faster than the TTL, it stays passing for several TTLs,
    // even though every refresh after the first changes nothing.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let r = client()
            .put(api.at("/v1/agent/check/pass/job-ttl?note=alive"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            status(&api, "job-ttl").await,
            "passing",
            "after {:?}",
            started.elapsed()
        );
    }
    // Left alone, it expires, keeping the last output.
    let last = Instant::now();
    assert_eventually!(status(&api, "job-ttl").await == "critical", "expires");
    assert!(
        last.elapsed() >= Duration::from_millis(1000),
        "expired early: {:?}",
        last.elapsed()
    );
    let out = check(&api, "job-ttl").await.unwrap()["Output"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        out,
        "TTL expired (last output before timeout follows): alive"
    );
    // A refresh brings it back.
    client()
        .put(api.at("/v1/agent/check/warn/job-ttl"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(&api, "job-ttl").await, "warning");
}

#[tokio::test]
async fn thresholds_delay_status_changes() {
    let (api, _proxy) = dev();
    let web = hello("web");
    let body = json!({
        "ID": "t", "Name": "t", "Port": web.port,
        "Check": {"CheckID": "t-check", "HTTP": format!("http://127.0.0.1:{}/health", web.port),
                  "Interval": "1s", "SuccessBeforePassing": 3,
                  "FailuresBeforeWarning": 1, "FailuresBeforeCritical": 3},
    });
    assert_eq!(
        put(api.at("/v1/agent/service/register"), body).await.0,
        StatusCode::OK
    );
    // Two successes are not enough to pass (the third comes a whole
    // interval after the second). The backend counts our reads too.
    let mut reads = 0;
    loop {
        reads += 1;
        if web.requests().await - reads >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status(&api, "t-check").await, "critical");
    assert_eventually!(
        status(&api, "t-check").await == "passing",
        "passes after three successes"
    );
    client()
        .put(web.process.at("/health/fail"))
        .send()
        .await
        .unwrap();
    assert_eventually!(
        status(&api, "t-check").await == "warning",
        "one failure: warning"
    );
    assert_eventually!(
        status(&api, "t-check").await == "critical",
        "three failures: critical"
    );
}

#[tokio::test]
async fn instances_critical_too_long_are_deregistered() {
    let (api, proxy) = dev();
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = gone.local_addr().unwrap().port();
    drop(gone);
    let body = json!({
        "ID": "doomed", "Name": "doomed", "Port": port,
        "Check": {"CheckID": "doomed-check", "TCP": format!("127.0.0.1:{port}"), "Interval": "1s",
                  "DeregisterCriticalServiceAfter": "2s"},
    });
    assert_eq!(
        put(api.at("/v1/agent/service/register"), body).await.0,
        StatusCode::OK
    );
    let keep = json!({"ID": "kept", "Name": "kept", "Port": port, "Check": {"TTL": "1h"}});
    assert_eq!(
        put(api.at("/v1/agent/service/register"), keep).await.0,
        StatusCode::OK
    );
    let registered = Instant::now();
    let exists = |id: &'static str| {
        let url = api.at(&format!("/v1/agent/service/{id}"));
        async move { client().get(url).send().await.unwrap().status() == StatusCode::OK }
    };
    assert!(exists("doomed").await);
    assert_eventually!(!exists("doomed").await, "deregistered");
    assert!(
        registered.elapsed() >= Duration::from_secs(2),
        "too early: {:?}",
        registered.elapsed()
    );
    assert!(check(&api, "doomed-check").await.is_none());
    // A critical check without the option leaves its instance alone.
    assert!(exists("kept").await);
    drop(proxy);
}

/// `openssl s_server` with a fresh self-signed certificate, killed on drop.
struct TlsServer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_server() -> TlsServer {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect(
            "openssl is needed for this test: run scripts/test as root, or apt-get install openssl",
        );
    assert!(made.success(), "openssl req failed");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
        ])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = TlsServer {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

#[tokio::test]
async fn https_checks_verify_certificates_unless_told_not_to() {
    let (api, _proxy) = dev();
    let tls = tls_server();
    let url = format!("https://127.0.0.1:{}/", tls.port);
    for (id, skip) in [("tls-skip", true), ("tls-verify", false)] {
        let body = json!({
            "ID": id, "Name": "secure", "Port": tls.port,
            "Check": {"CheckID": id, "HTTP": url, "Interval": "1s", "TLSSkipVerify": skip},
        });
        assert_eq!(
            put(api.at("/v1/agent/service/register"), body).await.0,
            StatusCode::OK
        );
    }
    assert_eventually!(
        status(&api, "tls-skip").await == "passing",
        "self-signed accepted when told"
    );
    let out = check(&api, "tls-skip").await.unwrap()["Output"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(out.starts_with(&format!("HTTP GET {url}: 200 OK")), "{out}");
    assert_eventually!(
        check(&api, "tls-verify").await.is_some_and(|c| c["Output"]
            .as_str()
            .unwrap_or_default()
            .contains("certificate")),
        "self-signed refused otherwise: {:?}",
        check(&api, "tls-verify").await
    );
    assert_eq!(status(&api, "tls-verify").await, "critical");
}

#[tokio::test]
async fn a_slow_check_delays_no_other() {
    let (api, _proxy) = dev();
    let web = hello("web");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    // Hangs for 8 s on every run (timeout 9 s), on the same node as a
    // quick check that must keep its one-second pace meanwhile.
    let slow = json!({"ID": "slow", "Name": "slow", "Port": web.port, "Check": {"CheckID": "slow-check",
        "HTTP": format!("http://127.0.0.1:{}/delay/8000", web.port), "Interval": "1s", "Timeout": "9s", "Status": "passing"}});
    assert_eq!(
        put(api.at("/v1/agent/service/register"), slow).await.0,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let quick = json!({"ID": "quick", "Name": "quick", "Port": closed_port, "Check": {"CheckID": "quick-check",
        "TCP": format!("127.0.0.1:{closed_port}"), "Interval": "1s", "Status": "passing"}});
    let registered = Instant::now();
    assert_eq!(
        put(api.at("/v1/agent/service/register"), quick).await.0,
        StatusCode::OK
    );
    assert_eventually!(
        status(&api, "quick-check").await == "critical",
        "quick check ran"
    );
    assert!(
        registered.elapsed() < Duration::from_secs(3),
        "{:?}",
        registered.elapsed()
    );
    // The slow one is still waiting for its first answer.
    assert_eq!(status(&api, "slow-check").await, "passing");
}

/// A free port on 127.0.0.1 that nothing listens on (yet).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_starting_app_is_passing_moments_after_it_listens() {
    let (api, _proxy) = dev();
    // Two HTTP and two TCP checks with a 10 s interval, registered before
    // their app listens; each app listens 1.5 s later. The first run fails;
    // waiting a random part of the interval for the next would miss the
    // bound below for most of them.
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    for (i, port) in ports.iter().enumerate() {
        let check = if i % 2 == 0 {
            json!({"CheckID": format!("start-{i}"), "HTTP": format!("http://127.0.0.1:{port}/health"), "Interval": "10s"})
        } else {
            json!({"CheckID": format!("start-{i}"), "TCP": format!("127.0.0.1:{port}"), "Interval": "10s"})
        };
        let body =
            json!({"ID": format!("start-{i}"), "Name": "start", "Port": port, "Check": check});
        assert_eq!(
            put(api.at("/v1/agent/service/register"), body).await.0,
            StatusCode::OK
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut apps = Vec::new();
    for port in &ports {
        let app = ServerProcess::start_role(
            bin(),
            &["hello", "--port", &port.to_string(), "--log-level", "warn"],
            "shoal hello",
        );
        apps.push((app, Instant::now()));
    }
    let mut late = Vec::new();
    for (i, (_app, listening)) in apps.iter().enumerate() {
        let id = format!("start-{i}");
        while status(&api, &id).await != "passing" && listening.elapsed() < Duration::from_secs(12)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = listening.elapsed();
        if took >= Duration::from_secs(2) {
            late.push((id, took));
        }
    }
    assert!(
        late.is_empty(),
        "passing too long after listening: {late:?}"
    );
}
