//! JSON answers with Consul's blocking-query headers.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A JSON answer; with `index`, also `X-Consul-Index`,
/// `X-Consul-KnownLeader` and `X-Consul-LastContact` (this server is always
/// its own leader, so contact is immediate).
pub fn json<T: Serialize>(index: Option<u64>, pretty: bool, value: &T) -> Response {
    json_body(index, render(pretty, value))
}

/// A value as JSON bytes (`?pretty`: indented, with a final newline).
pub fn render<T: Serialize>(pretty: bool, value: &T) -> Vec<u8> {
    let body = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    // Our answer types are plain data: encoding them cannot fail.
    let mut body = body.unwrap_or_else(|_| b"null".to_vec());
    if pretty {
        body.push(b'\n');
    }
    body
}

/// A JSON answer from already rendered bytes, with the index headers.
pub fn json_body(index: Option<u64>, body: impl Into<axum::body::Body>) -> Response {
    let mut resp = (StatusCode::OK, body.into()).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(index) = index {
        headers.insert("X-Consul-Index", HeaderValue::from(index.max(1)));
        headers.insert("X-Consul-KnownLeader", HeaderValue::from_static("true"));
        headers.insert("X-Consul-LastContact", HeaderValue::from_static("0"));
    }
    resp
}

/// The `true`/`false` body Consul's write endpoints answer.
pub fn boolean(v: bool) -> Response {
    json(None, false, &v)
}

/// An empty 200 (agent endpoints answer nothing on success).
pub fn empty() -> Response {
    StatusCode::OK.into_response()
}

/// Says `X-Consul-Results-Filtered-By-ACLs: true` when `filtered`: ACLs
/// left out some of what the read would have answered.
pub fn filtered(mut resp: Response, filtered: bool) -> Response {
    if filtered {
        resp.headers_mut().insert(
            "X-Consul-Results-Filtered-By-ACLs",
            HeaderValue::from_static("true"),
        );
    }
    resp
}
