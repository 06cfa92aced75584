//! The proxy's HTTP handling over real sockets: framing and limits,
//! forwarded headers, streaming, upgrades, TCP routes and sticky sessions.

mod common;

use common::stack::{fast_queue, hello, Stack};
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::Value;
use shoal_proxy::{Cidr, ProxyConfig};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes to `addr` and reads until the server closes or 3 s pass.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn ambiguous_framing_is_refused_and_never_reaches_the_backend() {
    let s = Stack::start(fast_queue()).await;
    let web = hello("web");
    s.register("web", &web.id, web.port, &[]).await;
    s.until_routed("web.localhost").await;
    let before = web.requests().await;
    let cases: [(&str, &[u8]); 4] = [
        ("CL + TE", b"POST /echo HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web.localhost\r\n\r\n"),
        ("differing CL", b"POST /echo HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ("obs-fold", b"GET /json HTTP/1.1\r\nHost: web.localhost\r\nX-Folded: a\r\n  b\r\n\r\n"),
        ("bad TE", b"POST /echo HTTP/1.1\r\nHost: web.localhost\r\nTransfer-Encoding: gzip\r\n\r\nxx"),
    ];
    for (what, request) in cases {
        let answer = raw(s.addr, request).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{what}: {answer}");
        assert!(!answer.contains("smuggled"), "{what}: {answer}");
    }
    // The backend's own counter moved only by our two direct reads.
    assert_eq!(
        web.requests().await,
        before + 1,
        "no refused request reached the backend"
    );
}

#[tokio::test]
async fn oversized_heads_get_431_and_slow_heads_are_cut() {
    let s = Stack::start(ProxyConfig {
        header_read_timeout: Duration::from_millis(300),
        ..fast_queue()
    })
    .await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: web.localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let answer = raw(s.addr, big.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    // Slowloris: a head that never ends is closed after the header timeout.
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: web.localhost\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection must be closed by the proxy");
    // An idle connection that never sends a byte is closed too.
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "an idle connection must be closed by the proxy"
    );
}

#[tokio::test]
async fn forwarded_headers_hop_by_hop_and_streaming_bodies() {
    let s = Stack::start(fast_queue()).await;
    let web = hello("web");
    s.register("web", &web.id, web.port, &[]).await;
    s.until_routed("web.localhost").await;
    let r = s
        .client()
        .get(format!("http://{}/json", s.addr))
        .header("Host", "web.localhost")
        .header("X-Forwarded-For", "6.6.6.6")
        .header("Connection", "X-Private")
        .header("X-Private", "secret")
        .header("Keep-Alive", "timeout=5")
        .header("X-Kept", "yes")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let h = &v["headers"];
    assert_eq!(
        h["x-forwarded-for"], "127.0.0.1",
        "a forged X-Forwarded-For is replaced: {h}"
    );
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "web.localhost");
    assert_eq!(h["host"], "web.localhost");
    assert_eq!(h["x-kept"], "yes");
    assert!(
        h.get("x-private").is_none() && h.get("keep-alive").is_none(),
        "hop-by-hop headers removed: {h}"
    );

    let body: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let r = s
        .client()
        .post(format!("http://{}/echo", s.addr))
        .header("Host", "web.localhost")
        .header("Content-Type", "application/x-test")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/x-test");
    assert!(
        r.bytes().await.unwrap() == body,
        "4 MiB streamed both ways intact"
    );
}

#[tokio::test]
async fn trusted_proxies_extend_x_forwarded_for() {
    let cfg = ProxyConfig {
        trusted_proxies: vec!["127.0.0.0/8".parse::<Cidr>().unwrap()],
        ..fast_queue()
    };
    let s = Stack::start(cfg).await;
    let web = hello("web");
    s.register("web", &web.id, web.port, &[]).await;
    s.until_routed("web.localhost").await;
    let r = s
        .client()
        .get(format!("http://{}/json", s.addr))
        .header("Host", "web.localhost")
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["headers"]["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let s = Stack::start(fast_queue()).await;
    let web = hello("web");
    s.register("web", &web.id, web.port, &[]).await;
    s.until_routed("web.localhost").await;
    let stream = TcpStream::connect(s.addr).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://web.localhost/ws", stream)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    for text in ["hello", "through", "the proxy"] {
        ws.send(tokio_tungstenite::tungstenite::Message::text(text))
            .await
            .unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), text);
    }
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn tcp_route_balances_connections() {
    let (s, routes) = Stack::start_with_routes(fast_queue(), &[("echo", true)]).await;
    let a = hello("echo");
    let b = hello("echo");
    s.register("echo", &a.id, a.port, &[]).await;
    s.register("echo", &b.id, b.port, &[]).await;
    shoal_testkit::assert_eventually!(
        s.proxy.stats_json()["services"]["echo"]["instances"]
            .as_object()
            .is_some_and(|m| m.len() == 2),
        "both routed"
    );
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        let answer = raw(routes[0], b"GET /json HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        let v: Value = serde_json::from_str(body).unwrap();
        seen.insert(v["id"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 2, "connections spread over both instances");
}

#[tokio::test]
async fn sticky_sessions_by_cookie() {
    let s = Stack::start(fast_queue()).await;
    let backends: Vec<_> = (0..3).map(|_| hello("app")).collect();
    for b in &backends {
        s.register("app", &b.id, b.port, &["shoal.balance=hash_cookie:sid"])
            .await;
    }
    shoal_testkit::assert_eventually!(
        s.proxy.stats_json()["services"]["app"]["instances"]
            .as_object()
            .is_some_and(|m| m.len() == 3),
        "3 instances routed"
    );
    let mut homes = std::collections::HashSet::new();
    for user in 0..12 {
        let ask = || async {
            let r = s
                .client()
                .get(format!("http://{}/json", s.addr))
                .header("Host", "app.localhost")
                .header("Cookie", format!("theme=dark; sid=user{user}"))
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let first = ask().await;
        for _ in 0..4 {
            assert_eq!(ask().await, first, "user{user} stays on one instance");
        }
        homes.insert(first);
    }
    assert!(
        homes.len() >= 2,
        "different users land on different instances: {homes:?}"
    );
}
