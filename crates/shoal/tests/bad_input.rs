//! Bad input gets the right status and a message saying what is wrong,
//! never a panic and never a partial write.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use shoal_testkit::TestServer;

struct Case {
    method: Method,
    path: &'static str,
    body: Vec<u8>,
    status: StatusCode,
    says: &'static str,
}

fn case(
    method: Method,
    path: &'static str,
    body: &str,
    status: StatusCode,
    says: &'static str,
) -> Case {
    Case {
        method,
        path,
        body: body.as_bytes().to_vec(),
        status,
        says,
    }
}

#[tokio::test]
async fn every_bad_request_is_refused_clearly_and_changes_nothing() {
    use StatusCode as S;
    let s = TestServer::start().await;
    ok(put_json(
        s.at("/v1/agent/service/register"),
        &json!({"Name": "keep", "Port": 1}),
    )
    .await);
    let before = s.registry().snapshot().index();
    let put = Method::PUT;
    let gett = Method::GET;
    let cases = vec![
        // Malformed JSON and wrong types.
        case(
            put.clone(),
            "/v1/agent/service/register",
            "{\"Name\": ",
            S::BAD_REQUEST,
            "Request decode failed",
        ),
        case(
            put.clone(),
            "/v1/agent/service/register",
            "",
            S::BAD_REQUEST,
            "Request decode failed",
        ),
        case(
            put.clone(),
            "/v1/agent/service/register",
            "[1,2]",
            S::BAD_REQUEST,
            "Request decode failed",
        ),
        case(
            put.clone(),
            "/v1/agent/service/register",
            r#"{"Name":"x","Port":"80"}"#,
            S::BAD_REQUEST,
            "Request decode failed",
        ),
        case(
            put.clone(),
            "/v1/agent/service/register",
            r#"{"Name":"x","Port":70000}"#,
            S::BAD_REQUEST,
            "Request decode failed",
        ),
        case(
            put.clone(),
            "/v1/agent/service/register",
            r#"{"Name":"x","Tags":"a"}"#,
            S::BAD_REQUEST,
            "Request decode failed",
        ),
        case(
            put.clone(),
            "/v1/agent/service/register",
            r#"{"Name":"x","Check":{"TTL":"soon"}}"#,
            S::BAD_REQUEST,
            "invalid duration",
        ),
        // Missing or invalid fields.
        case(
            put.clone(),
            "/v1/agent/service/register",
            r#"{"Port":80}"#,
            S::BAD_REQUEST,
            "Missing service name",
        ),
        case(
            put.clone(),
            "/v1/agent/service/register",
            r#"{"Name":"x","Weights":{"Passing":0}}"#,
            S::BAD_REQUEST,
            "Passing must be greater than 0",
        ),
        case(
            put.clone(),
            "/v1/agent/service/register",
            r#"{"Name":"x","Check":{"HTTP":"http://a/"}}"#,
            S::BAD_REQUEST,
            "Interval must be > 0",
        ),
        case(
            put.clone(),
            "/v1/agent/service/register",
            r#"{"Name":"x","Check":{"Interval":"10s"}}"#,
            S::BAD_REQUEST,
            "Invalid check",
        ),
        case(
            put.clone(),
            "/v1/agent/service/register",
            r#"{"Name":"x","Check":{"TTL":"10s","Status":"ok"}}"#,
            S::BAD_REQUEST,
            "Invalid check status",
        ),
        case(
            put.clone(),
            "/v1/agent/service/register",
            r#"{"Name":"x","Kind":"connect-proxy"}"#,
            S::BAD_REQUEST,
            "not supported",
        ),
        // Script checks are a remote-code-execution hole: refused.
        case(
            put.clone(),
            "/v1/agent/service/register",
            r#"{"Name":"x","Check":{"Args":["sh","-c","id"],"Interval":"10s"}}"#,
            S::BAD_REQUEST,
            "Script checks",
        ),
        case(
            put.clone(),
            "/v1/agent/check/register",
            r#"{"Name":"c","ScriptArgs":["true"],"Interval":"10s"}"#,
            S::BAD_REQUEST,
            "Script checks",
        ),
        case(
            put.clone(),
            "/v1/agent/check/register",
            r#"{"Name":"c","TTL":"10s","ServiceID":"ghost"}"#,
            S::BAD_REQUEST,
            "does not exist",
        ),
        case(
            put.clone(),
            "/v1/agent/check/register",
            r#"{"TTL":"10s"}"#,
            S::BAD_REQUEST,
            "Missing check name",
        ),
        case(
            put.clone(),
            "/v1/catalog/register",
            r#"{"Address":"1.2.3.4"}"#,
            S::BAD_REQUEST,
            "Must provide node",
        ),
        case(
            put.clone(),
            "/v1/catalog/register",
            r#"{"Node":"n"}"#,
            S::BAD_REQUEST,
            "Must provide address",
        ),
        case(
            put.clone(),
            "/v1/catalog/register",
            r#"{"Node":"n","Address":"a","Service":{"Port":1}}"#,
            S::BAD_REQUEST,
            "Must provide service name",
        ),
        case(
            put.clone(),
            "/v1/catalog/register",
            r#"{"Node":"n","Address":"a","Service":{"Service":"s"},"Check":{"Name":"c","ServiceID":"nope"}}"#,
            S::BAD_REQUEST,
            "Unknown service ID",
        ),
        case(
            put.clone(),
            "/v1/catalog/register",
            r#"{"Node":"n","Address":"a","Check":{"Name":"c","Status":"fine"}}"#,
            S::BAD_REQUEST,
            "Invalid check status",
        ),
        case(
            put.clone(),
            "/v1/catalog/deregister",
            r#"{}"#,
            S::BAD_REQUEST,
            "Must provide node",
        ),
        // KV.
        case(
            put.clone(),
            "/v1/kv/",
            "v",
            S::BAD_REQUEST,
            "Missing key name",
        ),
        case(
            Method::DELETE,
            "/v1/kv/",
            "",
            S::BAD_REQUEST,
            "Missing key name",
        ),
        case(
            put.clone(),
            "/v1/kv/a?flags=x",
            "v",
            S::BAD_REQUEST,
            "Invalid flags",
        ),
        case(
            put.clone(),
            "/v1/kv/a?cas=-1",
            "v",
            S::BAD_REQUEST,
            "Invalid cas index",
        ),
        case(
            put.clone(),
            "/v1/kv/a%01b",
            "v",
            S::BAD_REQUEST,
            "control character",
        ),
        case(
            put.clone(),
            "/v1/kv/a?acquire=sess",
            "v",
            S::INTERNAL_SERVER_ERROR,
            "invalid session",
        ),
        case(
            Method::DELETE,
            "/v1/kv/a?recurse&cas=3",
            "",
            S::BAD_REQUEST,
            "Conflicting flags",
        ),
        // Query parameters.
        case(
            gett.clone(),
            "/v1/catalog/services?index=abc",
            "",
            S::BAD_REQUEST,
            "Invalid index",
        ),
        case(
            gett.clone(),
            "/v1/health/service/web?wait=forever",
            "",
            S::BAD_REQUEST,
            "Invalid wait time",
        ),
        case(
            gett.clone(),
            "/v1/catalog/service/web?filter=ServiceTags%20%3D",
            "",
            S::BAD_REQUEST,
            "Failed to create boolean expression",
        ),
        case(
            gett.clone(),
            "/v1/catalog/nodes?node-meta=nocolon",
            "",
            S::BAD_REQUEST,
            "Invalid node-meta",
        ),
        // Unknown endpoints and methods.
        case(gett.clone(), "/v1/nope", "", S::NOT_FOUND, "no endpoint"),
        case(
            gett.clone(),
            "/v2/catalog/services",
            "",
            S::NOT_FOUND,
            "no endpoint",
        ),
        case(
            gett.clone(),
            "/v1/catalog/register",
            "",
            S::METHOD_NOT_ALLOWED,
            "method GET not allowed",
        ),
        case(
            Method::POST,
            "/v1/kv/a",
            "",
            S::METHOD_NOT_ALLOWED,
            "not allowed",
        ),
        case(
            Method::DELETE,
            "/v1/catalog/services",
            "",
            S::METHOD_NOT_ALLOWED,
            "not allowed",
        ),
    ];
    for c in cases {
        let r = call(c.method.clone(), s.at(c.path), Some(c.body.clone())).await;
        assert_eq!(r.status, c.status, "{} {}: {}", c.method, c.path, r.text);
        assert!(
            r.text.contains(c.says),
            "{} {}: body {:?} should say {:?}",
            c.method,
            c.path,
            r.text,
            c.says
        );
    }
    assert_eq!(
        s.registry().snapshot().index(),
        before,
        "no refused request may write anything"
    );
    // The server is still fine.
    assert_eq!(
        ok(get(s.at("/v1/agent/services")).await).json()["keep"]["Service"],
        "keep"
    );
}

#[tokio::test]
async fn oversize_bodies_get_413_and_the_kv_limit_is_512_kib() {
    let s = TestServer::start().await;
    let limit = 512 * 1024;
    let at_limit = vec![b'x'; limit];
    let r = call(Method::PUT, s.at("/v1/kv/big"), Some(at_limit)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a value of exactly 512 KiB is accepted"
    );
    let over = vec![b'x'; limit + 1];
    let r = call(Method::PUT, s.at("/v1/kv/bigger"), Some(over)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.text.contains("too large"), "{}", r.text);
    assert_eq!(
        get(s.at("/v1/kv/bigger")).await.status,
        StatusCode::NOT_FOUND
    );

    let mut huge = br#"{"Name":"x","Meta":{"k":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'y', 2 * 1024 * 1024));
    huge.extend(br#""}}"#);
    let r = call(Method::PUT, s.at("/v1/agent/service/register"), Some(huge)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.text.contains("too large"));
}

#[tokio::test]
async fn unknown_things_are_404_or_empty_as_in_consul() {
    let s = TestServer::start().await;
    let cases = [
        ("/v1/catalog/service/ghost", StatusCode::OK, "[]"),
        ("/v1/health/service/ghost", StatusCode::OK, "[]"),
        ("/v1/health/checks/ghost", StatusCode::OK, "[]"),
        ("/v1/catalog/node/ghost", StatusCode::OK, "null"),
        ("/v1/kv/ghost", StatusCode::NOT_FOUND, ""),
        (
            "/v1/agent/service/ghost",
            StatusCode::NOT_FOUND,
            "unknown service ID",
        ),
    ];
    for (path, status, body) in cases {
        let r = get(s.at(path)).await;
        assert_eq!(r.status, status, "{path}");
        assert!(r.text.starts_with(body), "{path}: {:?}", r.text);
    }
    for path in [
        "/v1/agent/check/pass/ghost",
        "/v1/agent/check/deregister/ghost",
        "/v1/agent/service/deregister/ghost",
    ] {
        assert_eq!(
            put(s.at(path), "").await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}
