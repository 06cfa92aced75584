//! Small HTTP helpers shared by the integration tests.
#![allow(dead_code)]

pub mod dns;
pub mod recorder;
pub mod stack;
pub mod tls;

use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// A reply: status, `X-Consul-Index` (0 when absent) and body text.
pub struct Reply {
    pub status: StatusCode,
    pub index: u64,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

pub async fn call(method: Method, url: impl AsRef<str>, body: Option<Vec<u8>>) -> Reply {
    let url = url.as_ref();
    let client = Client::new();
    let mut rb = client.request(method, url);
    if let Some(b) = body {
        rb = rb.body(b);
    }
    let resp = rb.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status();
    let index = resp
        .headers()
        .get("X-Consul-Index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let text = resp.text().await.unwrap_or_default();
    Reply {
        status,
        index,
        text,
    }
}

pub async fn get(url: impl AsRef<str>) -> Reply {
    call(Method::GET, url, None).await
}

pub async fn put(url: impl AsRef<str>, body: impl AsRef<str>) -> Reply {
    call(Method::PUT, url, Some(body.as_ref().as_bytes().to_vec())).await
}

pub async fn put_json(url: impl AsRef<str>, body: &Value) -> Reply {
    call(Method::PUT, url, Some(serde_json::to_vec(body).unwrap())).await
}

pub async fn delete(url: impl AsRef<str>) -> Reply {
    call(Method::DELETE, url, None).await
}

/// A client that never goes through an HTTP proxy from the environment.
pub fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

/// A string field of the `/json` answer of whichever `shoal hello`
/// instance the proxy at `proxy` picked for `host`; `None` unless 200.
pub async fn proxied_field(proxy: &str, host: &str, field: &str) -> Option<String> {
    let r = client()
        .get(format!("{proxy}/json"))
        .header("Host", host)
        .send()
        .await
        .ok()?;
    if r.status() != StatusCode::OK {
        return None;
    }
    r.json::<Value>().await.ok()?[field]
        .as_str()
        .map(str::to_string)
}

/// Asserts a 200 and returns the reply.
pub fn ok(r: Reply) -> Reply {
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.text);
    r
}
