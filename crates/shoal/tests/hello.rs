//! `shoal hello`, the demo backend, as a real process on 127.0.0.1 port 0:
//! every endpoint, registration with a registry, and clean shutdown.

use futures::{SinkExt, StreamExt};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use shoal_testkit::{assert_eventually, TestServer};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

/// Bounds every wait on a child, so a broken binary fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(20);

/// A `shoal hello` child process, killed when dropped.
struct Hello {
    child: Child,
    /// `http://127.0.0.1:PORT` it announced.
    url: String,
    /// Kept open so the child never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal"));
    // These tests check a host's defaults (127.0.0.1), also where the
    // test machine itself is a container (CI's often are).
    cmd.env("SHOAL_IN_CONTAINER", "0")
        .args(["hello", "--log-level", "warn"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

impl Hello {
    /// Starts `shoal hello ARGS...` and waits for its listening line.
    async fn start(args: &[&str]) -> Hello {
        let mut child = command(args)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn shoal hello");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        timeout(PATIENCE, stdout.read_line(&mut line))
            .await
            .expect("shoal hello did not announce its address in time")
            .expect("read stdout");
        let (_, url) = line
            .split_once("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Hello {
            url: url.trim().to_string(),
            child,
            _stdout: stdout,
        }
    }

    fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    fn port(&self) -> u16 {
        let port = self.url.rsplit(':').next().unwrap_or_default();
        port.parse()
            .unwrap_or_else(|_| panic!("no port in {}", self.url))
    }

    /// Sends `signal` (TERM, INT) and returns the exit code.
    async fn stop(&mut self, signal: &str) -> Option<i32> {
        let pid = self.child.id().expect("child still running").to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {pid} failed");
        let status = timeout(PATIENCE, self.child.wait())
            .await
            .expect("shoal hello did not exit after the signal")
            .expect("wait for shoal hello");
        status.code()
    }
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

async fn get_json(url: &str) -> Value {
    let resp = client().get(url).send().await.expect(url);
    assert_eq!(resp.status(), StatusCode::OK, "{url}");
    resp.json().await.expect("JSON body")
}

async fn status_of(method: reqwest::Method, url: &str) -> StatusCode {
    client()
        .request(method, url)
        .send()
        .await
        .expect(url)
        .status()
}

#[tokio::test]
async fn home_page_says_which_instance_answered() {
    let hello = Hello::start(&["--id", "hello-a"]).await;
    let resp = client().get(hello.at("/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = resp.text().await.unwrap();
    assert!(page.contains("Hosted by hello-a"), "{page}");
    let addr = hello.url.trim_start_matches("http://");
    assert!(
        page.contains(addr),
        "the page shows the listening address: {page}"
    );
    assert!(page.contains("request <b>#1</b>"), "{page}");
    let again = client().get(hello.at("/")).send().await.unwrap();
    assert!(again.text().await.unwrap().contains("request <b>#2</b>"));
}

#[tokio::test]
async fn json_reports_the_instance_and_echoes_the_request() {
    let hello = Hello::start(&["--name", "web"]).await;
    let port = hello.port();
    let resp = client()
        .get(hello.at("/json"))
        .header("X-Forwarded-For", "203.0.113.7")
        .header("X-Custom", "a")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let info: Value = resp.json().await.unwrap();
    assert_eq!(info["id"], format!("web-{port}"), "default ID is NAME-PORT");
    assert_eq!(info["name"], "web");
    assert_eq!(info["addr"], format!("127.0.0.1:{port}"));
    assert_eq!(info["method"], "GET");
    assert_eq!(info["path"], "/json");
    assert_eq!(info["headers"]["x-forwarded-for"], "203.0.113.7");
    assert_eq!(info["headers"]["x-custom"], "a");
    assert!(info["hostname"].as_str().is_some_and(|h| !h.is_empty()));
    assert_eq!(info["requests"], 1);

    let negotiated = client()
        .get(hello.at("/"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let info: Value = negotiated.json().await.unwrap();
    assert_eq!(info["path"], "/");
    assert_eq!(info["requests"], 2);
}

#[tokio::test]
async fn health_switches_between_ok_and_failing() {
    let hello = Hello::start(&[]).await;
    let resp = client().get(hello.at("/health")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap().trim(), "ok");

    let put = reqwest::Method::PUT;
    assert_eq!(
        status_of(put.clone(), &hello.at("/health/fail")).await,
        StatusCode::OK
    );
    let health = hello.at("/health");
    for _ in 0..2 {
        assert_eq!(
            status_of(reqwest::Method::GET, &health).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(
        status_of(put, &hello.at("/health/ok")).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(reqwest::Method::GET, &health).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(reqwest::Method::GET, &hello.at("/health/fail")).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "the switch is PUT only"
    );
}

#[tokio::test]
async fn fail_after_turns_health_unhealthy_after_n_probes() {
    let hello = Hello::start(&["--fail-after", "3"]).await;
    let health = hello.at("/health");
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(status_of(reqwest::Method::GET, &health).await.as_u16());
    }
    assert_eq!(seen, [200, 200, 200, 503, 503]);
}

#[tokio::test]
async fn delay_waits_then_answers() {
    let hello = Hello::start(&[]).await;
    let started = Instant::now();
    let info = get_json(&hello.at("/delay/50")).await;
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(info["path"], "/delay/50");
    assert_eq!(
        status_of(reqwest::Method::GET, &hello.at("/delay/soon")).await,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn echo_streams_a_large_body_back_byte_for_byte() {
    let hello = Hello::start(&[]).await;
    let body: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    for method in [reqwest::Method::POST, reqwest::Method::PUT] {
        let resp = client()
            .request(method.clone(), hello.at("/echo"))
            .header("Content-Type", "application/x-test")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{method}");
        assert_eq!(resp.headers()["content-type"], "application/x-test");
        let back = resp.bytes().await.unwrap();
        assert_eq!(back.len(), body.len(), "{method}");
        assert!(back == body, "{method}: the echoed body differs");
    }
}

#[tokio::test]
async fn status_answers_the_code_asked_for() {
    let hello = Hello::start(&[]).await;
    let resp = client().get(hello.at("/status/418")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::IM_A_TEAPOT);
    let info: Value = resp.json().await.unwrap();
    assert_eq!(info["path"], "/status/418");
    let post = status_of(reqwest::Method::POST, &hello.at("/status/503")).await;
    assert_eq!(post, StatusCode::SERVICE_UNAVAILABLE);
    for bad in ["99", "600", "abc", "-1"] {
        let got = status_of(reqwest::Method::GET, &hello.at(&format!("/status/{bad}"))).await;
        assert_eq!(got, StatusCode::BAD_REQUEST, "/status/{bad}");
    }
}

#[tokio::test]
async fn websocket_echoes_messages() {
    let hello = Hello::start(&[]).await;
    let url = format!("ws://127.0.0.1:{}/ws", hello.port());
    let (mut ws, _) = timeout(PATIENCE, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake in time")
        .expect("WebSocket handshake");
    let sent = [
        Message::text("hello, shoal"),
        Message::binary(vec![0u8, 1, 2, 255]),
    ];
    for message in sent {
        ws.send(message.clone()).await.unwrap();
        let back = timeout(PATIENCE, ws.next()).await.expect("echo in time");
        assert_eq!(back.expect("a message").expect("no error"), message);
    }
    ws.close(None).await.unwrap();
    let rest = timeout(PATIENCE, ws.next()).await.expect("close in time");
    assert!(
        matches!(rest, None | Some(Ok(Message::Close(_)))),
        "the server answers the close: {rest:?}"
    );
}

async fn health_entries(registry: &TestServer, service: &str) -> Vec<Value> {
    let url = registry.at(&format!("/v1/health/service/{service}"));
    get_json(&url).await.as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn registers_with_an_http_check_and_deregisters_on_sigterm() {
    let registry = TestServer::start().await;
    let mut hello = Hello::start(&[
        "--register",
        &registry.url,
        "--name",
        "web",
        "--id",
        "web-a",
        "--tag",
        "v1",
        "--tag",
        "blue",
    ])
    .await;
    let port = hello.port();
    let entries = health_entries(&registry, "web").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let service = &entries[0]["Service"];
    assert_eq!(service["ID"], "web-a");
    assert_eq!(service["Address"], "127.0.0.1");
    assert_eq!(service["Port"], port);
    assert_eq!(service["Tags"], serde_json::json!(["v1", "blue"]));
    let checks = entries[0]["Checks"].as_array().unwrap();
    let http = checks
        .iter()
        .find(|c| c["Type"] == "http")
        .unwrap_or_else(|| panic!("no HTTP check in {checks:?}"));
    let definition = &http["Definition"];
    assert_eq!(
        definition["HTTP"],
        format!("http://127.0.0.1:{port}/health")
    );
    assert_eq!(definition["Interval"], "1s");
    assert_eq!(definition["Timeout"], "1s");

    assert_eq!(hello.stop("TERM").await, Some(0));
    assert_eventually!(
        health_entries(&registry, "web").await.is_empty(),
        "web-a is still registered after SIGTERM"
    );
    let snapshot = registry.registry().snapshot();
    assert!(snapshot.service("test-node", "web-a").is_none());
    assert!(
        snapshot.service_checks("web").1.is_empty(),
        "its check went too"
    );
}

#[tokio::test]
async fn registration_failure_exits_non_zero_with_a_clear_message() {
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    for (register, expected) in [
        (url.as_str(), "cannot register"),
        ("ftp://x", "bad --register"),
    ] {
        let child = command(&["--register", register])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = timeout(PATIENCE, child.wait_with_output())
            .await
            .expect("shoal hello exits when it cannot register")
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{register}: {stderr}");
        assert!(stderr.contains(expected), "{register}: {stderr}");
    }
}

#[tokio::test]
async fn in_flight_requests_complete_on_sigint() {
    let mut hello = Hello::start(&[]).await;
    let slow = tokio::spawn(client().get(hello.at("/delay/500")).send());
    // Wait until the slow request is in flight.
    let url = hello.at("/json");
    assert_eventually!(
        get_json(&url).await["requests"].as_u64().unwrap_or(0) >= 2,
        "the slow request never arrived"
    );
    assert_eq!(hello.stop("INT").await, Some(0));
    let resp = slow
        .await
        .unwrap()
        .expect("the in-flight request was answered");
    assert_eq!(resp.status(), StatusCode::OK);
    let info: Value = resp.json().await.expect("the whole body arrived");
    assert_eq!(info["path"], "/delay/500");
}

#[tokio::test]
async fn with_drain_it_answers_after_sigterm_with_health_failing_then_closes() {
    let mut hello = Hello::start(&["--drain", "3s"]).await;
    assert_eq!(
        status_of(reqwest::Method::GET, &hello.at("/health")).await,
        StatusCode::OK
    );
    let pid = hello.child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let signalled = Instant::now();
    // Still answering, new connections included, but no longer healthy.
    let url = hello.at("/health");
    assert_eventually!(
        status_of(reqwest::Method::GET, &url).await == StatusCode::SERVICE_UNAVAILABLE,
        "/health did not fail while draining"
    );
    let page = get_json(&hello.at("/json")).await;
    assert_eq!(page["path"], "/json");
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "the checks above took the whole drain: {:?}",
        signalled.elapsed()
    );
    // Then it stops by itself, after the drain and not long after.
    let status = timeout(PATIENCE, hello.child.wait())
        .await
        .expect("shoal hello did not exit after draining")
        .unwrap();
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "exited {took:?} after SIGTERM with --drain 3s"
    );
}

#[tokio::test]
async fn a_second_signal_ends_the_drain_and_a_bad_drain_is_refused() {
    let mut hello = Hello::start(&["--drain", "60s"]).await;
    let pid = hello.child.id().expect("running").to_string();
    let term = || {
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
    };
    assert!(term().success());
    let url = hello.at("/health");
    assert_eventually!(
        status_of(reqwest::Method::GET, &url).await == StatusCode::SERVICE_UNAVAILABLE,
        "/health did not fail while draining"
    );
    assert!(term().success());
    let status = timeout(PATIENCE, hello.child.wait())
        .await
        .expect("a second SIGTERM did not end the drain")
        .unwrap();
    assert_eq!(status.code(), Some(0));

    for bad in ["soon", "10m"] {
        let out = command(&["--drain", bad])
            .stderr(Stdio::piped())
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "--drain {bad} was taken");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--drain"), "--drain {bad}: {err}");
    }
}
