//! Request smuggling, from a raw socket: every case of
//! `tests/corpus/smuggling.txt` is sent as is to the proxy, in front of a
//! recording backend (`common::recorder`) that reads requests leniently
//! (the first Content-Length wins). Whatever the bytes, the backend must
//! never get a request hidden inside another one (`/smuggled`, or a Host
//! the proxy would have routed elsewhere), never an ambiguous head, and
//! never more requests than the proxy accounted for.

mod common;

use common::recorder::Recorder;
use common::stack::{fast_queue, Stack};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The corpus: (name, the status the first answer must have if the case
/// says (`NAME @STATUS`), bytes).
fn corpus() -> Vec<(String, Option<u16>, Vec<u8>)> {
    let text = include_str!("corpus/smuggling.txt");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, raw) = l.split_once(" | ").expect("NAME | BYTES");
            let (name, status) = match name.split_once(" @") {
                Some((name, status)) => (name, Some(status.parse().expect("NAME @STATUS"))),
                None => (name, None),
            };
            (name.to_string(), status, unescape(raw))
        })
        .collect()
}

fn unescape(s: &str) -> Vec<u8> {
    let (mut out, b) = (Vec::new(), s.as_bytes());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let (byte, used) = match b[i + 1] {
                b'r' => (b'\r', 2),
                b'n' => (b'\n', 2),
                b't' => (b'\t', 2),
                b'\\' => (b'\\', 2),
                b'x' => (u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap(), 4),
                other => panic!("bad escape \\{}", other as char),
            };
            out.push(byte);
            i += used;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Sends `raw` on a new connection; reads what comes back until the proxy
/// closes or is quiet for a moment.
async fn send(proxy: std::net::SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut conn = TcpStream::connect(proxy).await.unwrap();
    let _ = conn.write_all(raw).await;
    let mut got = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(300), conn.read(&mut chunk)).await
    {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_case_of_the_corpus_smuggles_a_request_past_the_proxy() {
    let s = Stack::start(fast_queue()).await;
    let rec = Recorder::start().await;
    let other = Recorder::start().await;
    s.register("rec", "rec-1", rec.port, &[]).await;
    s.register("other", "other-1", other.port, &[]).await;
    s.until_routed("rec.localhost").await;
    s.until_routed("other.localhost").await;
    let cases = corpus();
    assert!(cases.len() >= 100, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for (name, status, raw) in &cases {
        let before = (rec.requests().len(), rec.violations().len());
        let accounted_before = s.proxy.stats_json()["proxy"]["requests"].as_u64().unwrap();
        let answer = send(s.addr, raw).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let accounted =
            s.proxy.stats_json()["proxy"]["requests"].as_u64().unwrap() - accounted_before;
        let seen = &rec.requests()[before.0..];
        let violations = &rec.violations()[before.1..];
        let smuggled: Vec<String> = seen
            .iter()
            .filter(|r| {
                r.target.contains("/smuggled")
                    || r.hosts
                        .iter()
                        .any(|h| !h.to_ascii_lowercase().starts_with("rec.localhost"))
            })
            .map(|r| format!("{} {} (Host {:?})", r.method, r.target, r.hosts))
            .collect();
        let status_ok = status.is_none_or(|st| {
            answer.starts_with(b"HTTP/1.") && answer.get(9..13) == Some(format!("{st} ").as_bytes())
        });
        if !smuggled.is_empty()
            || !violations.is_empty()
            || seen.len() as u64 > accounted
            || !status_ok
        {
            failures.push(format!(
                "{name}: smuggled {smuggled:?}, ambiguous {violations:?}, backend got {} for {accounted} accounted; answer {:?}",
                seen.len(),
                String::from_utf8_lossy(&answer[..answer.len().min(120)])
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The example: `Connection: Content-Length` on a plain POST whose
/// body is a second request with a forged X-Forwarded-For and another Host.
#[tokio::test]
async fn framing_named_in_connection_is_kept_and_the_body_stays_a_body() {
    let s = Stack::start(fast_queue()).await;
    let rec = Recorder::start().await;
    s.register("rec", "rec-1", rec.port, &[]).await;
    s.until_routed("rec.localhost").await;
    let inner =
        "GET /smuggled HTTP/1.1\r\nHost: other.localhost\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
    for connection in ["Content-Length", "close, content-length, host"] {
        let raw = format!(
            "POST /ok HTTP/1.1\r\nHost: rec.localhost\r\nConnection: {connection}\r\nContent-Length: {}\r\n\r\n{inner}",
            inner.len()
        );
        let answer = send(s.addr, raw.as_bytes()).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The probe of `until_routed` was a GET; the two POSTs follow it.
    let seen: Vec<_> = rec
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert_eq!(seen.len(), 2, "one request each: {seen:?}");
    for r in &seen {
        assert_eq!(r.target, "/ok");
        assert_eq!(r.hosts, ["rec.localhost"], "Host kept");
        assert_eq!(r.body, inner.as_bytes(), "the body arrives as a body");
    }
    assert!(rec.violations().is_empty(), "{:?}", rec.violations());
}

/// Every early refusal, on either path (a first request the plain path
/// hands over, or a later one on a connection already on the hyper path):
/// the status (400, 431, 505 for an HTTP version not spoken), a body
/// saying what is wrong, and Connection: close — never hyper's bare `400`
/// — and the backend never sees the refused request, nor any of it.
#[tokio::test]
async fn every_refused_head_gets_a_reason_and_the_connection_closes() {
    let s = Stack::start(fast_queue()).await;
    let rec = Recorder::start().await;
    s.register("rec", "rec-1", rec.port, &[]).await;
    s.until_routed("rec.localhost").await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: rec.localhost\r\nX: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("1.0 + TE", b"POST / HTTP/1.0\r\nHost: rec.localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), 400, "HTTP/1.0"),
        ("TE gzip", b"POST / HTTP/1.1\r\nHost: rec.localhost\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(), 400, "chunked"),
        ("CL abc", b"GET / HTTP/1.1\r\nHost: rec.localhost\r\nContent-Length: abc\r\n\r\n".to_vec(), 400, "Content-Length"),
        ("CL 1 and 2", b"GET / HTTP/1.1\r\nHost: rec.localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec(), 400, "Content-Length"),
        ("no colon", b"GET / HTTP/1.1\r\nHost: rec.localhost\r\nBad Header\r\n\r\n".to_vec(), 400, "malformed"),
        ("control in target", b"GET /\x01 HTTP/1.1\r\nHost: rec.localhost\r\n\r\n".to_vec(), 400, "malformed"),
        ("CL + TE", b"POST / HTTP/1.1\r\nHost: rec.localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), 400, "both"),
        ("huge head", big.into_bytes(), 431, "larger than"),
        // Versions: well-formed but not spoken is 505, malformed is 400.
        ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: rec.localhost\r\n\r\n".to_vec(), 505, "HTTP/2.0 (this proxy speaks HTTP/1.0 and HTTP/1.1)"),
        ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: rec.localhost\r\n\r\n".to_vec(), 505, "HTTP/1.2"),
        ("HTTP/3.0", b"POST / HTTP/3.0\r\nHost: rec.localhost\r\nContent-Length: 2\r\n\r\nhi".to_vec(), 505, "HTTP/3.0"),
        ("HTTP/0.9 version", b"GET / HTTP/0.9\r\nHost: rec.localhost\r\n\r\n".to_vec(), 505, "HTTP/0.9"),
        ("HTTP/0.9 line", b"GET /\r\n".to_vec(), 505, "HTTP/0.9"),
        // After an HTTP/1.1 request; first on a connection it opens h2c
        // (prior knowledge), skipped below and tested in proxy_edge.rs.
        ("h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), 505, "HTTP/2.0"),
        ("HTTP/1.x", b"GET / HTTP/1.x\r\nHost: rec.localhost\r\n\r\n".to_vec(), 400, "invalid HTTP version \"HTTP/1.x\""),
        ("HTTPS/1.1", b"GET / HTTPS/1.1\r\nHost: rec.localhost\r\n\r\n".to_vec(), 400, "invalid HTTP version \"HTTPS/1.1\""),
        ("HTTP/1.10", b"GET / HTTP/1.10\r\nHost: rec.localhost\r\n\r\n".to_vec(), 400, "invalid HTTP version"),
        ("http/1.1", b"GET / http/1.1\r\nHost: rec.localhost\r\n\r\n".to_vec(), 400, "invalid HTTP version"),
        // A malformed chunked body, whatever the method: refused before
        // any of the request goes upstream.
        ("GET chunk zz", b"GET / HTTP/1.1\r\nHost: rec.localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".to_vec(), 400, "malformed chunked request body"),
        ("HEAD chunk -1", b"HEAD / HTTP/1.1\r\nHost: rec.localhost\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nhello\r\n0\r\n\r\n".to_vec(), 400, "malformed chunked request body"),
        ("GET chunk overflow", b"GET / HTTP/1.1\r\nHost: rec.localhost\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nhello\r\n0\r\n\r\n".to_vec(), 400, "chunk size too large"),
        ("DELETE chunk bare LF", b"DELETE / HTTP/1.1\r\nHost: rec.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n".to_vec(), 400, "malformed chunked request body"),
        ("OPTIONS chunk no CRLF", b"OPTIONS / HTTP/1.1\r\nHost: rec.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX0\r\n\r\n".to_vec(), 400, "malformed chunked request body"),
        ("GET chunk ext control", b"GET / HTTP/1.1\r\nHost: rec.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x01b\r\nhello\r\n0\r\n\r\n".to_vec(), 400, "malformed chunked request body"),
        ("POST chunk ext too long", format!("POST / HTTP/1.1\r\nHost: rec.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(5000)).into_bytes(), 400, "chunk extension too long"),
    ];
    // Sent first on a connection, after a plain request (served by the
    // plain path, which then hands the connection over), and after a
    // chunked request that moved the connection to the hyper path.
    let before: [&[u8]; 3] = [
        b"",
        b"GET /first HTTP/1.1\r\nHost: rec.localhost\r\n\r\n",
        b"POST /first HTTP/1.1\r\nHost: rec.localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    let mut failures = Vec::new();
    for (name, raw, status, reason) in &cases {
        for (after, first) in before.iter().enumerate() {
            if *name == "h2 preface" && first.is_empty() {
                continue;
            }
            let seen = rec.requests().len();
            let mut stream = first.to_vec();
            stream.extend_from_slice(raw);
            stream.extend_from_slice(b"GET /never HTTP/1.1\r\nHost: rec.localhost\r\n\r\n");
            let answer = String::from_utf8_lossy(&send(s.addr, &stream).await).to_string();
            let last = answer.rfind("HTTP/1.1 ").map_or("", |i| &answer[i..]);
            let (head, body) = last.split_once("\r\n\r\n").unwrap_or((last, ""));
            let ok = head.starts_with(&format!("HTTP/1.1 {status} "))
                && head.to_ascii_lowercase().contains("connection: close")
                && body.contains(reason);
            if !ok {
                failures.push(format!("{name} (preamble {after}): {last:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            let got: Vec<String> = rec.requests()[seen..]
                .iter()
                .map(|r| format!("{} {}", r.method, r.target))
                .collect();
            let want = usize::from(!first.is_empty());
            if got.len() != want {
                failures.push(format!(
                    "{name} (preamble {after}): the backend got {got:?}"
                ));
            }
        }
    }
    assert!(
        !rec.requests().iter().any(|r| r.target.contains("/never")),
        "a request after a refused head reached the backend"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
