//! The API's HTTP/1.1 server over raw sockets: framing it refuses, framing
//! it accepts (chunked bodies, `Expect: 100-continue`, pipelining,
//! HTTP/1.0), and what it does when a client goes away mid-query.

use shoal_testkit::TestServer;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);

/// Sends `raw` and reads until the server closes (or LIMIT passes).
async fn exchange(s: &TestServer, raw: &[u8]) -> String {
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(raw).await.unwrap();
    read_to_close(&mut c).await
}

async fn read_to_close(c: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(LIMIT, c.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one answer of known shape: head, then Content-Length bytes.
/// Bytes read past it (the next pipelined answer) stay in `got`.
async fn read_answer(c: &mut TcpStream, got: &mut Vec<u8>) -> String {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Some(end) = find(got, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if got.len() >= end + 4 + len {
                let answer: Vec<u8> = got.drain(..end + 4 + len).collect();
                return String::from_utf8_lossy(&answer).into_owned();
            }
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, c.read(&mut buf))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(
            n > 0,
            "closed early; got {:?}",
            String::from_utf8_lossy(got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

#[tokio::test]
async fn framing_it_cannot_be_sure_of_is_refused_with_the_reason() {
    let s = TestServer::start().await;
    // (request, status, what the body says)
    let cases: &[(&str, u16, &str)] = &[
        ("GET /v1/catalog/services HTTP/2.0\r\nHost: a\r\n\r\n", 505, "HTTP/2.0 is not supported"),
        ("GET /v1/catalog/services HTTP/1.2\r\nHost: a\r\n\r\n", 505, "HTTP/1.2"),
        ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "HTTP/2.0"),
        ("GET /v1/catalog/services HTTP/1.x\r\nHost: a\r\n\r\n", 400, "malformed request line"),
        ("GET /v1/catalog/services HTTPS/1.1\r\nHost: a\r\n\r\n", 400, "malformed"),
        ("GET /v1/catalog/services HTTP/1.1\r\n\r\n", 400, "without a Host"),
        ("GET /v1/catalog/services HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, "more than one Host"),
        ("GET /v1/catalog/services HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400, "more than one Host"),
        (
            "PUT /v1/kv/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            400,
            "ambiguous",
        ),
        ("PUT /v1/kv/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "does not end in chunked"),
        ("PUT /v1/kv/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "only chunked"),
        ("PUT /v1/kv/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "HTTP/1.0"),
        ("PUT /v1/kv/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\nab", 400, "conflicting Content-Length"),
        ("PUT /v1/kv/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, "conflicting"),
        ("PUT /v1/kv/x HTTP/1.1\r\nHost: a\r\nContent-Length: +2\r\n\r\nab", 400, "malformed Content-Length"),
        ("PUT /v1/kv/x HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400, "malformed Content-Length"),
        ("GET /v1/kv/x HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417, "100-continue"),
        ("GET /v1/kv/x HTTP/1.1\r\nHost: a\r\nBad Name: 1\r\n\r\n", 400, "malformed request head"),
        ("GET /v1/kv/x HTTP/1.1\r\nHost: a\r\n folded: 1\r\n\r\n", 400, "malformed request head"),
        ("GET /v1/kv/x HTTP/1.1\r\nHost: a\nX: 1\r\r\n\r\n", 400, "malformed"),
    ];
    for (raw, want, says) in cases {
        let answer = exchange(&s, raw.as_bytes()).await;
        assert_eq!(status(&answer), *want, "{raw:?} got {answer:?}");
        assert!(
            answer.contains(says),
            "{raw:?}: body should say {says:?}: {answer:?}"
        );
        assert!(
            answer.to_lowercase().contains("connection: close"),
            "{raw:?}: a refused request closes the connection: {answer:?}"
        );
    }
    // A head larger than the limit.
    let mut big = b"GET /v1/kv/x HTTP/1.1\r\nHost: a\r\n".to_vec();
    while big.len() < 70 * 1024 {
        big.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let answer = exchange(&s, &big).await;
    assert_eq!(status(&answer), 431, "{answer:?}");
    // None of it wrote anything.
    let kv = exchange(
        &s,
        b"GET /v1/kv/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&kv), 404, "{kv:?}");
}

#[tokio::test]
async fn chunked_bodies_are_decoded_and_malformed_ones_refused() {
    let s = TestServer::start().await;
    let put = "PUT /v1/kv/chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
               5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n";
    let answer = exchange(&s, put.as_bytes()).await;
    assert_eq!(status(&answer), 200, "{answer:?}");
    assert!(answer.ends_with("true"), "{answer:?}");
    let raw = exchange(
        &s,
        b"GET /v1/kv/chunked?raw HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(raw.ends_with("\r\n\r\nhello, world"), "{raw:?}");

    for body in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "fffffffffffffffff\r\nx\r\n0\r\n\r\n",
        "5\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
    ] {
        let put = format!(
            "PUT /v1/kv/bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        let answer = exchange(&s, put.as_bytes()).await;
        assert_eq!(status(&answer), 400, "{body:?}: {answer:?}");
        assert!(
            answer.contains("chunk"),
            "{body:?}: should name the chunk: {answer:?}"
        );
    }
    // A body cut off by the client's close writes nothing.
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"PUT /v1/kv/bad HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    c.shutdown().await.unwrap();
    let _ = read_to_close(&mut c).await;
    let kv = exchange(
        &s,
        b"GET /v1/kv/bad HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&kv), 404, "{kv:?}");
}

#[tokio::test]
async fn expect_continue_pipelining_and_http10_work_as_clients_expect() {
    let s = TestServer::start().await;
    let mut pending = Vec::new();
    // 100-continue: the interim answer comes before the body is sent.
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(
        b"PUT /v1/kv/e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(LIMIT, c.read_exact(&mut interim))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(b"value").await.unwrap();
    let answer = read_answer(&mut c, &mut pending).await;
    assert_eq!(status(&answer), 200, "{answer:?}");

    // Two pipelined requests, answered in order on one connection.
    c.write_all(
        b"GET /v1/kv/e?raw HTTP/1.1\r\nHost: a\r\n\r\nGET /v1/status/leader HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await
    .unwrap();
    let first = read_answer(&mut c, &mut pending).await;
    assert!(first.ends_with("\r\n\r\nvalue"), "{first:?}");
    let second = read_answer(&mut c, &mut pending).await;
    assert_eq!(status(&second), 200, "{second:?}");
    assert!(second.contains("127.0.0.1"), "{second:?}");

    // HTTP/1.0: closed after the answer unless asked to keep alive.
    let answer = exchange(&s, b"GET /v1/kv/e?raw HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer:?}");
    assert!(answer.ends_with("value"), "{answer:?}");
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    for _ in 0..2 {
        c.write_all(b"GET /v1/kv/e?raw HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let answer = read_answer(&mut c, &mut pending).await;
        assert!(
            answer.to_lowercase().contains("connection: keep-alive"),
            "{answer:?}"
        );
    }
    // HEAD: the length of what GET would send, and no body.
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"HEAD /v1/kv/e?raw HTTP/1.1\r\nHost: a\r\n\r\nGET /v1/kv/e?raw HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let head = read_head_only(&mut c).await;
    assert!(
        head.to_lowercase().contains("content-length: 5"),
        "{head:?}"
    );
    let get = read_answer(&mut c, &mut pending).await;
    assert!(get.starts_with("HTTP/1.1 200"), "HEAD sent a body: {get:?}");
}

/// Reads exactly one head (for HEAD answers, which have no body).
async fn read_head_only(c: &mut TcpStream) -> String {
    let mut got = Vec::new();
    while find(&got, b"\r\n\r\n").is_none() {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(LIMIT, c.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.push(b[0]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_blocking_query_whose_client_left_is_dropped_at_once() {
    let s = TestServer::start().await;
    let index = s.registry().snapshot().index();
    let parked = || s.registry().metrics().blocking_queries.get();
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let q = format!(
            "GET /v1/health/service/nothing?index={index}&wait=5m HTTP/1.1\r\nHost: a\r\n\r\n"
        );
        c.write_all(q.as_bytes()).await.unwrap();
        clients.push(c);
    }
    let deadline = tokio::time::Instant::now() + LIMIT;
    while parked() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} parked",
            parked()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(clients);
    while parked() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} queries still parked after their clients closed",
            parked()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
