//! Whose fault a failed request is, on both HTTP paths (the plain fast
//! path, and hyper's, reached here with HTTP/1.0): a client's malformed
//! body is not held against an instance; a truncated answer or a hung
//! instance is, and requests move on; a route back into the proxy gets
//! 508; an unreachable registry gets a 503 that says so at once.

mod common;

use common::recorder::Recorder;
use common::stack::{bin, fast_queue, hello, Stack};
use shoal_proxy::ProxyConfig;
use shoal_testkit::ServerProcess;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The two paths: a plain HTTP/1.1 request, and HTTP/1.0 (hyper's path).
const VERSIONS: [&str; 2] = ["HTTP/1.1", "HTTP/1.0"];

/// Sends `raw` on a new connection and reads until the proxy closes it
/// (at most 10 s): (status, whole answer).
async fn exchange(proxy: SocketAddr, raw: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(proxy).await.unwrap();
    conn.write_all(raw.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut got))
        .await
        .unwrap_or_else(|_| panic!("no answer within 10 s to {raw:?}"))
        .unwrap();
    let text = String::from_utf8_lossy(&got).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

fn get(version: &str, host: &str, path: &str) -> String {
    format!("GET {path} {version}\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

fn instance(s: &Stack, service: &str, id: &str) -> serde_json::Value {
    s.proxy.stats_json()["services"][service]["instances"][id].clone()
}

/// A backend that answers `answer` to every request, then closes.
async fn canned(answer: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if stream.read(&mut buf).await.unwrap_or(0) > 0 {
                    let _ = stream.write_all(answer).await;
                }
            });
        }
    });
    port
}

/// A backend that accepts and reads but never answers (a stopped process).
async fn hung() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while stream.read(&mut buf).await.unwrap_or(0) > 0 {}
            });
        }
    });
    port
}

/// Sends `parts` on a new connection, pausing between them (so the proxy
/// has read the head before the body comes), and reads until it closes.
async fn staged(proxy: SocketAddr, parts: &[&str]) -> (u16, String) {
    let mut conn = TcpStream::connect(proxy).await.unwrap();
    for part in parts {
        conn.write_all(part.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut got))
        .await
        .unwrap_or_else(|_| panic!("no answer within 10 s to {parts:?}"))
        .unwrap();
    let text = String::from_utf8_lossy(&got).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// Whatever the method (a GET's or HEAD's chunked body too), a malformed
/// chunked request body is the client's fault: 400 saying so, the
/// instance never sees a complete request, and nothing counts against it.
/// Sent whole, the request is refused before any of it goes upstream;
/// with the body after a pause, the request went on and is broken off.
#[tokio::test]
async fn a_malformed_request_body_is_a_400_and_never_ejects_the_instance() {
    let s = Stack::start(fast_queue()).await;
    let (a, b) = (Recorder::start().await, Recorder::start().await);
    s.register("rec", "rec-a", a.port, &[]).await;
    s.register("rec", "rec-b", b.port, &[]).await;
    s.until_routed("rec.localhost").await;
    let bodies = [
        "zz\r\nhello\r\n0\r\n\r\n",
        "ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        "-1\r\nhello\r\n0\r\n\r\n",
        "5\nhello\n0\n\n",
        "5\r\nhelloX0\r\n\r\n",
        "5;a\x01b\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\n0x1\r\n\r\n",
    ];
    let seen = || a.requests().len() + b.requests().len();
    let before = seen();
    let mut failures = Vec::new();
    for method in ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"] {
        for body in bodies {
            let head = format!("{method} /bad HTTP/1.1\r\nHost: rec.localhost\r\nTransfer-Encoding: chunked\r\n\r\n");
            let whole = exchange(s.addr, &format!("{head}{body}")).await;
            let paused = staged(s.addr, &[&head, body]).await;
            for (how, (status, text)) in [("whole", whole), ("paused", paused)] {
                let said = text.contains("bad request: malformed") || method == "HEAD";
                if status != 400 || !said {
                    failures.push(format!("{method} {body:?} ({how}): {text}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(seen(), before, "the instances saw a complete request");
    for id in ["rec-a", "rec-b"] {
        let inst = instance(&s, "rec", id);
        assert_eq!(inst["errors"], 0, "{id}: {inst}");
        assert_eq!(inst["ejections"], 0, "{id}: {inst}");
        assert_eq!(inst["ejected"], false, "{id}: {inst}");
    }
}

/// A chunked body reaches the instance as the client framed it, whatever
/// the method (hyper on its own sends a GET of unknown body length with no
/// body at all).
#[tokio::test]
async fn a_chunked_body_is_forwarded_whatever_the_method() {
    let s = Stack::start(fast_queue()).await;
    let rec = Recorder::start().await;
    s.register("rec", "rec-1", rec.port, &[]).await;
    s.until_routed("rec.localhost").await;
    for method in ["GET", "DELETE", "OPTIONS", "POST"] {
        let head = format!("{method} /body HTTP/1.1\r\nHost: rec.localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
        let body = "5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n";
        let (status, text) = exchange(s.addr, &format!("{head}{body}")).await;
        assert_eq!(status, 200, "{method}: {text}");
        let (status, text) = staged(s.addr, &[&head, body]).await;
        assert_eq!(status, 200, "{method} paused: {text}");
    }
    let got: Vec<_> = rec
        .requests()
        .into_iter()
        .filter(|r| r.target == "/body")
        .collect();
    assert_eq!(got.len(), 8, "{got:?}");
    for r in got {
        assert_eq!(r.body, b"hello world", "{} {r:?}", r.method);
        assert_eq!(r.header("transfer-encoding"), Some("chunked"), "{r:?}");
    }
}

#[tokio::test]
async fn a_truncated_answer_is_an_instance_failure_and_the_client_sees_it_cut() {
    for version in VERSIONS {
        let s = Stack::start(fast_queue()).await;
        let good = hello("web");
        let cut = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789").await;
        s.register("web", &good.id, good.port, &[]).await;
        s.until_routed("web.localhost").await;
        s.register("web", "cut", cut, &[]).await;
        // Routed once the cut instance shows in the stats.
        shoal_testkit::assert_eventually!(
            !instance(&s, "web", "cut").is_null(),
            "cut instance never routed"
        );
        let mut truncated = 0;
        for _ in 0..20 {
            let (status, text) = exchange(s.addr, &get(version, "web.localhost", "/json")).await;
            assert_eq!(status, 200, "{text}");
            if text.ends_with("0123456789") {
                truncated += 1;
                assert!(!text.contains(&good.id));
            }
        }
        let inst = instance(&s, "web", "cut");
        assert!(truncated >= 1, "{version}: the cut instance answered some");
        assert_eq!(
            inst["errors"], truncated,
            "{version}: each truncated answer counted: {inst}"
        );
        assert!(
            inst["ejections"].as_u64().unwrap() >= 1,
            "{version}: ejected: {inst}"
        );
        assert_eq!(inst["ejected"], true, "{version}: {inst}");
    }
}

#[tokio::test]
async fn a_hung_instance_costs_one_timeout_per_attempt_and_requests_go_elsewhere() {
    for version in VERSIONS {
        let cfg = ProxyConfig {
            answer_timeout: Duration::from_millis(300),
            ..fast_queue()
        };
        let s = Stack::start(cfg).await;
        let good = hello("web");
        s.register("web", &good.id, good.port, &[]).await;
        s.register("web", "hung", hung().await, &[]).await;
        s.until_routed("web.localhost").await;
        for i in 0..12 {
            let (status, text) = exchange(s.addr, &get(version, "web.localhost", "/json")).await;
            assert_eq!(status, 200, "{version} request {i}: {text}");
            assert!(text.contains(&good.id), "{text}");
        }
        let inst = instance(&s, "web", "hung");
        assert!(
            inst["errors"].as_u64().unwrap() >= 1,
            "{version}: timeouts counted: {inst}"
        );
        assert_eq!(inst["ejected"], true, "{version}: {inst}");
    }
}

#[tokio::test]
async fn a_request_that_cannot_be_resent_gets_504_from_a_hung_instance() {
    let cfg = ProxyConfig {
        answer_timeout: Duration::from_millis(200),
        ..fast_queue()
    };
    let s = Stack::start(cfg).await;
    s.register("web", "hung", hung().await, &[]).await;
    s.until_routed_status("web.localhost", 504).await;
    let raw = "POST /x HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi";
    let (status, text) = exchange(s.addr, raw).await;
    assert_eq!(status, 504, "{text}");
    assert!(text.contains("did not answer in time"), "{text}");
}

#[tokio::test]
async fn an_instance_that_is_the_proxy_itself_gets_508_naming_it() {
    let s = Stack::start(fast_queue()).await;
    // The README tour's mistake: port 8080 (here: the proxy's own port).
    s.register("loop", "web-1", s.addr.port(), &[]).await;
    for version in VERSIONS {
        let mut answer = (0, String::new());
        for _ in 0..100 {
            answer = exchange(s.addr, &get(version, "loop.localhost", "/")).await;
            if answer.0 != 503 {
                break;
            }
        }
        let (status, text) = answer;
        assert_eq!(status, 508, "{version}: {text}");
        assert!(
            text.contains("web-1") && text.contains("this proxy"),
            "{text}"
        );
    }
    assert!(s.proxy.stats_json()["proxy"]["loops"].as_u64().unwrap() >= 2);
}

/// An answer with both Content-Length and Transfer-Encoding is framed by
/// the chunks on both paths, and its Content-Length is not passed on (RFC
/// 9112 6.3): the client never frames it by the wrong one.
#[tokio::test]
async fn an_answer_with_both_lengths_is_framed_by_its_chunks_on_both_paths() {
    let s = Stack::start(fast_queue()).await;
    let port = canned(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    s.register("both", "both-1", port, &[]).await;
    s.until_routed_status("both.localhost", 200).await;
    for version in VERSIONS {
        let (status, text) = exchange(s.addr, &get(version, "both.localhost", "/")).await;
        assert_eq!(status, 200, "{version}: {text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            !head.to_ascii_lowercase().contains("content-length"),
            "{version}: {head}"
        );
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body.replace("5\r\n", "").replace("\r\n0\r\n\r\n", "")
        } else {
            body.to_string()
        };
        assert_eq!(body, "hello", "{version}: {text:?}");
    }
}

/// A TCP route whose instance is the route's own listener: the client's
/// connection is closed at once (not tunnelled into itself until the
/// descriptors run out), and the loop is counted.
#[tokio::test]
async fn a_tcp_route_into_itself_is_closed_and_counted_as_a_loop() {
    let (s, routes) = Stack::start_with_routes(fast_queue(), &[("self", true)]).await;
    s.register("self", "self-1", routes[0].port(), &[]).await;
    shoal_testkit::assert_eventually!(
        s.proxy.stats_json()["services"]["self"]["instances"]
            .as_object()
            .is_some_and(|m| m.len() == 1),
        "the instance is routed"
    );
    let mut conn = TcpStream::connect(routes[0]).await.unwrap();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut got)).await;
    assert!(matches!(closed, Ok(Ok(0))), "closed at once: {closed:?}");
    assert_eq!(s.proxy.stats_json()["proxy"]["loops"], 1);
}

/// A TCP forwarder in front of the proxy: the proxy cannot tell it is
/// itself by the address, only by its `Via` marker coming back.
#[tokio::test]
async fn a_request_that_comes_round_again_gets_508() {
    let s = Stack::start(fast_queue()).await;
    let forwarder = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = forwarder.local_addr().unwrap().port();
    let proxy = s.addr;
    tokio::spawn(async move {
        while let Ok((mut c, _)) = forwarder.accept().await {
            tokio::spawn(async move {
                if let Ok(mut p) = TcpStream::connect(proxy).await {
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut p).await;
                }
            });
        }
    });
    s.register("round", "round-1", port, &[]).await;
    for version in VERSIONS {
        let mut answer = (0, String::new());
        for _ in 0..100 {
            answer = exchange(s.addr, &get(version, "round.localhost", "/")).await;
            if answer.0 != 503 {
                break;
            }
        }
        let (status, text) = answer;
        assert_eq!(status, 508, "{version}: {text}");
        assert!(text.contains("loop"), "{text}");
    }
}

#[tokio::test]
async fn host_rules_one_host_and_the_absolute_target_wins() {
    let s = Stack::start(fast_queue()).await;
    let (rec, other) = (Recorder::start().await, Recorder::start().await);
    s.register("rec", "rec-1", rec.port, &[]).await;
    s.register("other", "other-1", other.port, &[]).await;
    s.until_routed("rec.localhost").await;
    s.until_routed("other.localhost").await;
    let before = (rec.requests().len(), other.requests().len());
    let refused = [
        "GET / HTTP/1.1\r\nHost: rec.localhost\r\nHost: rec.localhost\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: rec.localhost\r\nHost: other.localhost\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: rec.localhost\r\nHost: other.localhost\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: rec.localhost\r\nHost: rec.localhost\r\n\r\n",
        "GET http://rec.localhost@other.localhost/ HTTP/1.1\r\nHost: rec.localhost\r\n\r\n",
        "GET / HTTP/1.1\r\nX: no host\r\n\r\n",
        // Malformed Host values (userinfo, a space, a path, two ports), on
        // the plain path, on hyper's (HTTP/1.0), and after a plain request
        // with a good Host on the same connection.
        "GET / HTTP/1.1\r\nHost: a@rec.localhost\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: a@rec.localhost\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: rec.localhost other\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: rec.localhost/x\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: rec.localhost:1:2\r\n\r\n",
        "GET http://other.localhost/ HTTP/1.1\r\nHost: u@rec.localhost\r\n\r\n",
    ];
    for raw in refused {
        let (status, text) = exchange(s.addr, raw).await;
        assert_eq!(status, 400, "{raw:?}: {text}");
        assert!(text.contains("Host") || text.contains("userinfo"), "{text}");
    }
    let (status, text) = exchange(
        s.addr,
        "GET /x HTTP/1.1\r\nHost: rec.localhost\r\n\r\nGET / HTTP/1.1\r\nHost: a@rec.localhost\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("400 Bad Request")
            && text.contains("invalid Host header \"a@rec.localhost\""),
        "{text}"
    );
    let before = (before.0 + 1, before.1);
    let (status, text) = exchange(
        s.addr,
        "GET http://other.localhost/x HTTP/1.1\r\nHost: rec.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rec.requests().len(), before.0, "nothing reached rec");
    let got = &other.requests()[before.1..];
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].hosts,
        ["other.localhost"],
        "forwarded with the target's host"
    );
    assert!(rec.violations().is_empty() && other.violations().is_empty());
}

#[tokio::test]
async fn an_unreachable_registry_is_said_at_once_with_its_cause() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let proxy = ServerProcess::start_role(
        bin(),
        &[
            "proxy",
            "--registry",
            &registry,
            "--listen",
            "127.0.0.1:0",
            "--stats-addr",
            "127.0.0.1:0",
            "--queue-timeout",
            "60s",
            "--log-level",
            "error",
        ],
        "shoal proxy",
    );
    let addr: SocketAddr = proxy.url.trim_start_matches("http://").parse().unwrap();
    // The first query fails within moments; a request then waits no more.
    let mut answer = (0, String::new());
    for _ in 0..50 {
        answer = exchange(addr, &get("HTTP/1.1", "web.localhost", "/")).await;
        if answer.1.contains("unreachable") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, text) = answer;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("registry is unreachable"), "{text}");
    assert!(
        text.to_lowercase().contains("connection refused"),
        "the cause is named: {text}"
    );
}
