//! Answer framing through the proxy's lean HTTP/1.1 path, byte for byte:
//! one client connection sends many pipelined requests to a scripted
//! backend whose answers end by length, chunked (with extensions and
//! trailers), at close, or carry no body at all.

mod common;

use common::stack::{fast_queue, Stack};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The canned answer for a request line.
fn answer(method: &str, path: &str, body: &[u8]) -> (Vec<u8>, bool) {
    let canned: &[u8] = match path {
        "/cl" if method == "HEAD" => b"HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 5\r\n\r\n",
        "/cl" => b"HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 5\r\n\r\nhello",
        "/chunked" => b"HTTP/1.1 200 OK\r\nDate: d\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        "/204" => b"HTTP/1.1 204 No Content\r\nDate: d\r\n\r\n",
        "/304" => b"HTTP/1.1 304 Not Modified\r\nDate: d\r\nContent-Length: 10\r\n\r\n",
        "/continue" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 2\r\n\r\nok",
        "/close" => return (b"HTTP/1.1 200 OK\r\nDate: d\r\n\r\nuntil close".to_vec(), true),
        "/big" => {
            let mut big = b"HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 1000000\r\n\r\n".to_vec();
            big.extend((0..1_000_000u32).map(|i| (i % 251) as u8));
            return (big, false);
        }
        "/bigchunked" => {
            let mut big = b"HTTP/1.1 200 OK\r\nDate: d\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..300 {
                big.extend_from_slice(b"d05\r\n");
                big.extend(std::iter::repeat_n(b'x', 3333));
                big.extend_from_slice(b"\r\n");
            }
            big.extend_from_slice(b"0\r\n\r\n");
            return (big, false);
        }
        _ => {
            let mut echo = format!("HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            echo.extend_from_slice(body);
            return (echo, false);
        }
    };
    (canned.to_vec(), false)
}

/// Serves one connection: reads each request (head and Content-Length
/// body) and writes its canned answer.
async fn script(mut stream: TcpStream) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < end + 4 + length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
        }
        let line: Vec<String> = head.split(' ').take(2).map(str::to_uppercase).collect();
        let (bytes, close) = answer(
            &line[0],
            &line[1].to_lowercase(),
            &buf[end + 4..end + 4 + length],
        );
        buf.drain(..end + 4 + length);
        stream.write_all(&bytes).await.unwrap();
        if close {
            return;
        }
    }
}

async fn scripted_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(script(stream));
        }
    });
    port
}

#[tokio::test]
async fn pipelined_requests_and_every_kind_of_answer_framing() {
    let s = Stack::start(fast_queue()).await;
    let port = scripted_backend().await;
    s.register("web", "scripted", port, &[]).await;
    s.until_routed("web.localhost").await;
    let requests = [
        "GET /cl HTTP/1.1\r\nHost: web.localhost\r\n\r\n",
        "HEAD /cl HTTP/1.1\r\nHost: web.localhost\r\n\r\n",
        "GET /chunked HTTP/1.1\r\nHost: web.localhost\r\n\r\n",
        "GET /204 HTTP/1.1\r\nHost: web.localhost\r\n\r\n",
        "GET /304 HTTP/1.1\r\nHost: web.localhost\r\n\r\n",
        "GET /continue HTTP/1.1\r\nHost: web.localhost\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 5\r\n\r\nabcde",
        "GET /close HTTP/1.1\r\nHost: web.localhost\r\nConnection: close\r\n\r\n",
    ];
    let mut client = TcpStream::connect(s.addr).await.unwrap();
    client
        .write_all(requests.concat().as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got))
        .await
        .expect("the proxy closes after the Connection: close request")
        .unwrap();
    let got = String::from_utf8(got).unwrap();
    let want = [
        "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nDate: d\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nDate: d\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nDate: d\r\nContent-Length: 10\r\n\r\n",
        "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 2\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 5\r\n\r\nabcde",
        "HTTP/1.1 200 OK\r\nDate: d\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
    ]
    .concat();
    assert!(got.starts_with(&want), "{got}");
    let last = &got[want.len()..];
    assert!(
        last.contains("until close") && last.ends_with("0\r\n\r\n"),
        "an answer that ends at close goes on chunked: {last:?}"
    );
    let stats = s.proxy.stats_json();
    let inst = &stats["services"]["web"]["instances"]["scripted"];
    assert!(inst["2xx"].as_u64().unwrap() >= 9, "{inst}");
    assert_eq!(inst["errors"], 0, "{inst}");
}

#[tokio::test]
async fn a_connection_moves_to_the_general_path_mid_stream_without_losing_bytes() {
    let s = Stack::start(fast_queue()).await;
    let web = common::stack::hello("web");
    s.register("web", &web.id, web.port, &[]).await;
    s.until_routed("web.localhost").await;
    // A lean GET, then (same write) a chunked POST the lean path hands
    // over with everything after it, then a GET served by the general path.
    let pipelined = concat!(
        "GET /json HTTP/1.1\r\nHost: web.localhost\r\nAccept: application/json\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: web.localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
        "5;x=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        "GET /json HTTP/1.1\r\nHost: web.localhost\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
    );
    let mut client = TcpStream::connect(s.addr).await.unwrap();
    client.write_all(pipelined.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got))
        .await
        .expect("closed after the last request")
        .unwrap();
    let got = String::from_utf8_lossy(&got);
    assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 3, "{got}");
    assert!(
        got.contains("\r\nhello\r\n") && got.contains("\r\n world\r\n"),
        "the chunked body was echoed (chunk by chunk): {got}"
    );
    assert_eq!(
        got.matches(&format!("\"id\":\"{}\"", web.id)).count(),
        2,
        "{got}"
    );
}

#[tokio::test]
async fn large_answers_stream_through_and_the_connection_stays_usable() {
    let s = Stack::start(fast_queue()).await;
    let port = scripted_backend().await;
    s.register("web", "scripted", port, &[]).await;
    s.until_routed("web.localhost").await;
    let mut client = TcpStream::connect(s.addr).await.unwrap();
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: web.localhost\r\n\r\nGET /bigchunked HTTP/1.1\r\nHost: web.localhost\r\n\r\nGET /cl HTTP/1.1\r\nHost: web.localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut got))
        .await
        .expect("closed after the last request")
        .unwrap();
    let head = b"HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 1000000\r\n\r\n";
    assert!(got.starts_with(head));
    let body = &got[head.len()..head.len() + 1_000_000];
    assert!(
        body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
        "1 MB intact"
    );
    let rest = String::from_utf8_lossy(&got[head.len() + 1_000_000..]);
    let chunked_head = "HTTP/1.1 200 OK\r\nDate: d\r\ntransfer-encoding: chunked\r\n\r\n";
    assert!(rest.starts_with(chunked_head), "{}", &rest[..80]);
    let chunks = &rest[chunked_head.len()..];
    assert_eq!(chunks.matches("d05\r\n").count(), 300);
    assert!(chunks.ends_with(
        "0\r\n\r\nHTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 5\r\nconnection: close\r\n\r\nhello"
    ));
}
