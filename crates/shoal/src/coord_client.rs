//! The client side of Consul's coordination API, for `shoal lock`,
//! `shoal session` and `shoal kv put --acquire/--release`: sessions,
//! lock acquire/release and blocking KV reads, over the same failover
//! client as every other command.

use anyhow::{bail, Context};
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use shoal_api::RemoteCatalog;
use shoal_catalog::{KvEntry, Session};
use std::time::Duration;

/// A session-aware client of one registry.
pub struct CoordClient {
    remote: RemoteCatalog,
    token: Option<String>,
}

/// A reply: status, `X-Consul-Index` (0 when absent) and body.
struct Reply {
    status: StatusCode,
    index: u64,
    body: Bytes,
}

/// Percent-encodes a KV key for a URL path, keeping its slashes.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl CoordClient {
    /// A client over `remote`, sending `token` as `X-Consul-Token`.
    pub fn new(remote: RemoteCatalog, token: Option<String>) -> Self {
        CoordClient { remote, token }
    }

    async fn call(&self, method: Method, path: &str, body: Bytes) -> anyhow::Result<Reply> {
        let mut headers = HeaderMap::new();
        if let Some(t) = &self.token {
            headers.insert("X-Consul-Token", HeaderValue::from_str(t)?);
        }
        let resp = self
            .remote
            .forward(method.clone(), path, headers, body)
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let index = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = resp
            .bytes()
            .await
            .with_context(|| format!("{method} {path}"))?;
        Ok(Reply {
            status,
            index,
            body,
        })
    }

    async fn ok(&self, method: Method, path: &str, body: Bytes) -> anyhow::Result<Reply> {
        let r = self.call(method.clone(), path, body).await?;
        if !r.status.is_success() {
            bail!(
                "{method} {path}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body).trim()
            );
        }
        Ok(r)
    }

    /// Creates a session; returns its ID.
    pub async fn session_create(&self, spec: &Value) -> anyhow::Result<String> {
        let body = Bytes::from(serde_json::to_vec(spec)?);
        let r = self.ok(Method::PUT, "/v1/session/create", body).await?;
        let v: Value = serde_json::from_slice(&r.body).context("session/create answer")?;
        v["ID"]
            .as_str()
            .map(str::to_string)
            .context("session/create answered no ID")
    }

    /// Renews a session; `false` when it is gone (404).
    pub async fn session_renew(&self, id: &str) -> anyhow::Result<bool> {
        let path = format!("/v1/session/renew/{}", encode_key(id));
        let r = self.call(Method::PUT, &path, Bytes::new()).await?;
        match r.status {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            s => bail!(
                "PUT {path}: {s} {}",
                String::from_utf8_lossy(&r.body).trim()
            ),
        }
    }

    /// Destroys a session.
    pub async fn session_destroy(&self, id: &str) -> anyhow::Result<()> {
        let path = format!("/v1/session/destroy/{}", encode_key(id));
        self.ok(Method::PUT, &path, Bytes::new()).await?;
        Ok(())
    }

    /// Every session.
    pub async fn session_list(&self) -> anyhow::Result<Vec<Session>> {
        let r = self
            .ok(Method::GET, "/v1/session/list", Bytes::new())
            .await?;
        serde_json::from_slice(&r.body).context("session/list answer")
    }

    /// `?acquire=` (or `?release=`) with a value; whether it took.
    pub async fn kv_lock(
        &self,
        key: &str,
        value: Bytes,
        session: &str,
        acquire: bool,
        cas: Option<u64>,
        flags: Option<u64>,
    ) -> anyhow::Result<bool> {
        let op = if acquire { "acquire" } else { "release" };
        let mut path = format!("/v1/kv/{}?{op}={}", encode_key(key), encode_key(session));
        if let Some(cas) = cas {
            path.push_str(&format!("&cas={cas}"));
        }
        if let Some(flags) = flags {
            path.push_str(&format!("&flags={flags}"));
        }
        let r = self.ok(Method::PUT, &path, value).await?;
        Ok(r.body.as_ref().trim_ascii() == b"true")
    }

    /// Sets a key with check-and-set; whether it took.
    pub async fn kv_cas(&self, key: &str, value: Bytes, cas: u64) -> anyhow::Result<bool> {
        let path = format!("/v1/kv/{}?cas={cas}", encode_key(key));
        let r = self.ok(Method::PUT, &path, value).await?;
        Ok(r.body.as_ref().trim_ascii() == b"true")
    }

    /// Deletes a key.
    pub async fn kv_delete(&self, key: &str) -> anyhow::Result<()> {
        let path = format!("/v1/kv/{}", encode_key(key));
        self.ok(Method::DELETE, &path, Bytes::new()).await?;
        Ok(())
    }

    /// Entries under `prefix` (`recurse`) or the one at the key, read
    /// with a blocking query from `index` for at most `wait`.
    pub async fn kv_read(
        &self,
        key: &str,
        recurse: bool,
        index: u64,
        wait: Duration,
    ) -> anyhow::Result<(u64, Vec<KvEntry>)> {
        let mut path = format!(
            "/v1/kv/{}?index={index}&wait={}ms",
            encode_key(key),
            wait.as_millis()
        );
        if recurse {
            path.push_str("&recurse");
        }
        let r = self.call(Method::GET, &path, Bytes::new()).await?;
        match r.status {
            StatusCode::NOT_FOUND => Ok((r.index, vec![])),
            s if s.is_success() => Ok((
                r.index,
                serde_json::from_slice(&r.body).context("kv answer")?,
            )),
            s => bail!(
                "GET {path}: {s} {}",
                String::from_utf8_lossy(&r.body).trim()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_slashes_and_escape_the_rest() {
        let cases = [
            ("svc/leader/.lock", "svc/leader/.lock"),
            ("a b?c", "a%20b%3Fc"),
            ("ü", "%C3%BC"),
        ];
        for (key, want) in cases {
            assert_eq!(encode_key(key), want);
        }
    }
}
