//! Whatever bytes a client sends, the backend never receives more
//! requests than the proxy accounted for, and never an ambiguous head:
//! random request-shaped byte streams (bounded by `PROPTEST_CASES`,
//! default 24 here since each case is a real connection) against a
//! recording backend.

mod common;

use common::recorder::Recorder;
use common::stack::{fast_queue, Stack};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"GET /ok HTTP/1.1\r\n".to_vec()),
        Just(b"POST /ok HTTP/1.1\r\n".to_vec()),
        Just(b"GET /ok HTTP/1.0\r\n".to_vec()),
        Just(b"GET http://rec.localhost/ok HTTP/1.1\r\n".to_vec()),
        Just(b"Host: rec.localhost\r\n".to_vec()),
        Just(b"Host: other.localhost\r\n".to_vec()),
        Just(b"Content-Length: 5\r\n".to_vec()),
        Just(b"Content-Length: 0\r\n".to_vec()),
        Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
        Just(b"Connection: content-length\r\n".to_vec()),
        Just(b"Connection: close\r\n".to_vec()),
        Just(b"Expect: 100-continue\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"5\r\nhello\r\n".to_vec()),
        Just(b"0\r\n\r\n".to_vec()),
        Just(b"zz\r\n".to_vec()),
        Just(b"hello".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..12),
    ];
    proptest::collection::vec(piece, 1..14).prop_map(|p| p.concat())
}

#[test]
fn fuzz_backend_never_gets_more_requests_than_the_proxy_accounted() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (s, rec) = rt.block_on(async {
        let s = Stack::start(fast_queue()).await;
        let rec = Recorder::start().await;
        s.register("rec", "rec-1", rec.port, &[]).await;
        s.until_routed("rec.localhost").await;
        (s, rec)
    });
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let mut runner = TestRunner::new(Config::with_cases(cases));
    let result = runner.run(&request_bytes(), |bytes| {
        let (got, accounted, violations) = rt.block_on(async {
            let before = (rec.requests().len(), rec.violations().len());
            let stats = || s.proxy.stats_json()["proxy"]["requests"].as_u64().unwrap();
            let accounted_before = stats();
            if let Ok(mut conn) = TcpStream::connect(s.addr).await {
                let _ = conn.write_all(&bytes).await;
                let mut buf = [0u8; 4096];
                while let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(150), conn.read(&mut buf)).await
                {
                    if n == 0 {
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            (
                (rec.requests().len() - before.0) as u64,
                stats() - accounted_before,
                rec.violations()[before.1..].to_vec(),
            )
        });
        prop_assert!(
            got <= accounted,
            "backend got {} for {} accounted",
            got,
            accounted
        );
        prop_assert!(violations.is_empty(), "{:?}", violations);
        Ok(())
    });
    result.unwrap();
}
