//! Input built to exhaust a parser — deep nesting, long chains, huge
//! bodies — gets a 400 (or 413) saying what is wrong, and the process
//! (in `shoal dev`, the load balancer too) keeps running.

mod common;

use common::*;
use reqwest::StatusCode;
use shoal_testkit::ServerProcess;
use std::path::Path;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

/// Whether the API and the proxy of `dev` still answer.
async fn still_alive(dev: &ServerProcess, proxy: &str) {
    ok(get(dev.at("/v1/catalog/services")).await);
    // Any answer will do (a 503 after the short queue timeout): the
    // proxy runs in the same process and must still be there.
    client()
        .get(format!("{proxy}/"))
        .header("Host", "nothing.localhost")
        .send()
        .await
        .unwrap_or_else(|e| panic!("the proxy died: {}", e.without_url()));
}

#[tokio::test]
async fn deep_filters_are_refused_and_nothing_dies() {
    let (dev, proxy) = ServerProcess::start_dev(bin(), &["--queue-timeout", "50ms"]);
    let leaf = r#"ServiceName=="web""#;
    let parens = |n: usize| format!("{}{leaf}{}", "(".repeat(n), ")".repeat(n));
    // (filter, status, the answer says)
    let cases = [
        (
            parens(3_000),
            StatusCode::BAD_REQUEST,
            "nested more than 64 levels",
        ),
        // A URI holds at most 64 KiB (the `http` crate's limit): as deep
        // as one can be.
        (
            parens(30_000),
            StatusCode::BAD_REQUEST,
            "nested more than 64 levels",
        ),
        (
            "(".repeat(60_000),
            StatusCode::BAD_REQUEST,
            "nested more than 64 levels",
        ),
        (
            format!("{}{leaf}", "not+".repeat(15_000)),
            StatusCode::BAD_REQUEST,
            "nested more than 64 levels",
        ),
        (parens(64), StatusCode::OK, ""),
        (vec![leaf; 2_000].join("+and+"), StatusCode::OK, ""),
        (vec![leaf; 2_000].join("+or+"), StatusCode::OK, ""),
    ];
    for path in [
        "/v1/catalog/service/web",
        "/v1/health/service/web",
        "/v1/catalog/nodes",
        "/v1/agent/services",
    ] {
        for (filter, status, says) in &cases {
            let url = format!("{}?filter={}", dev.at(path), urlencode(filter));
            let head = &filter[..filter.len().min(30)];
            let r = client()
                .get(&url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{path} {head}...: {}", e.without_url()));
            let got = r.status();
            let text = r.text().await.unwrap_or_default();
            assert_eq!(got, *status, "{path} {head}...: {text}");
            assert!(text.contains(says), "{path} {head}...: {text}");
        }
        still_alive(&dev, &proxy).await;
    }
}

/// Every endpoint that decodes a JSON body.
const JSON_ENDPOINTS: &[&str] = &[
    "/v1/catalog/register",
    "/v1/catalog/deregister",
    "/v1/agent/service/register",
    "/v1/agent/check/register",
    "/v1/agent/check/update/x",
];

#[tokio::test]
async fn deep_and_huge_json_bodies_are_refused_on_every_endpoint() {
    let (dev, proxy) = ServerProcess::start_dev(bin(), &["--queue-timeout", "50ms"]);
    ok(put(
        dev.at("/v1/agent/check/register"),
        r#"{"ID":"x","Name":"x","TTL":"30s"}"#,
    )
    .await);
    let deep_arrays = |n| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let deep_objects = |n| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
    let bodies = [
        (
            deep_arrays(100_000),
            StatusCode::BAD_REQUEST,
            "recursion limit exceeded",
        ),
        (
            deep_objects(100_000),
            StatusCode::BAD_REQUEST,
            "recursion limit exceeded",
        ),
        (
            deep_arrays(3_000),
            StatusCode::BAD_REQUEST,
            "recursion limit exceeded",
        ),
        (
            format!(r#"{{"Name":"x","Meta":{}}}"#, deep_objects(200)),
            StatusCode::BAD_REQUEST,
            "recursion limit exceeded",
        ),
        (
            deep_arrays(100),
            StatusCode::BAD_REQUEST,
            "Request decode failed",
        ),
        (
            format!("[{}1]", "1,".repeat(600_000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too large",
        ),
    ];
    for path in JSON_ENDPOINTS {
        for (body, status, says) in &bodies {
            let r = put(dev.at(path), body).await;
            let head = &body[..body.len().min(30)];
            assert_eq!(r.status, *status, "{path} {head}...: {}", r.text);
            assert!(r.text.contains(says), "{path} {head}...: {}", r.text);
        }
    }
    // 64 MiB sent to every body-taking endpoint: refused once past the
    // limit; the server may close before reading it all.
    let huge = vec![b'['; 64 << 20];
    for path in JSON_ENDPOINTS.iter().chain(&["/v1/kv/huge"]) {
        let sent = client().put(dev.at(path)).body(huge.clone()).send().await;
        if let Ok(r) = sent {
            assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        }
    }
    still_alive(&dev, &proxy).await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'(' | b')' | b'+' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
