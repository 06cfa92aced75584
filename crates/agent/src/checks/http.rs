//! HTTP checks, as Consul runs them: 2xx is passing, 429 warning, any
//! other status or no answer critical; the output carries the status line
//! and the first bytes of the body. Every run opens a new connection (no
//! keep-alive), so a backend that stopped accepting connections fails.

use super::probe::{Outcome, Probe};
use crate::error::{Error, Result};
use async_trait::async_trait;
use reqwest::header::{HeaderName, HeaderValue, ACCEPT, USER_AGENT};
use reqwest::{Client, Method};
use shoal_catalog::{CheckDefinition, HealthStatus};
use std::time::Duration;

/// Bytes of the body kept in the output, as Consul's default.
const OUTPUT_MAX: usize = 4096;

/// The HTTP clients every HTTP check shares: one that verifies TLS
/// certificates and one for checks with `TLSSkipVerify`.
#[derive(Clone, Debug)]
pub(crate) struct HttpClients {
    verify: Client,
    skip_verify: Client,
}

impl HttpClients {
    pub fn new() -> Result<Self> {
        let build = |skip: bool| {
            Client::builder()
                .pool_max_idle_per_host(0)
                .danger_accept_invalid_certs(skip)
                .build()
                .map_err(|e| Error::HttpClient(e.to_string()))
        };
        Ok(HttpClients {
            verify: build(false)?,
            skip_verify: build(true)?,
        })
    }
}

#[derive(Debug)]
pub(crate) struct HttpProbe {
    client: Client,
    method: Method,
    url: String,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl HttpProbe {
    /// A probe for `def`; fails on a method or header that HTTP cannot carry.
    pub fn new(clients: &HttpClients, def: &CheckDefinition) -> std::result::Result<Self, String> {
        let method = if def.method.is_empty() {
            Method::GET
        } else {
            Method::from_bytes(def.method.as_bytes())
                .map_err(|_| format!("invalid HTTP method {:?}", def.method))?
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, values) in &def.header {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid header name {name:?}"))?;
            for v in values {
                let value = HeaderValue::from_str(v)
                    .map_err(|_| format!("invalid value of header {name}"))?;
                headers.append(name.clone(), value);
            }
        }
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, HeaderValue::from_static("Consul Health Check"));
        }
        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, HeaderValue::from_static("text/plain, text/*, */*"));
        }
        let client = if def.tls_skip_verify {
            clients.skip_verify.clone()
        } else {
            clients.verify.clone()
        };
        Ok(HttpProbe {
            client,
            method,
            url: def.http.clone(),
            headers,
            body: def.body.clone(),
        })
    }

    fn failed(&self, e: impl std::fmt::Display) -> Outcome {
        Outcome::critical(format!("{} {:?}: {e}", self.method, self.url))
    }
}

/// An error with its causes, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Maps a status code to a check status, as Consul does.
pub(crate) fn status_of(code: u16) -> HealthStatus {
    match code {
        200..=299 => HealthStatus::Passing,
        429 => HealthStatus::Warning,
        _ => HealthStatus::Critical,
    }
}

#[async_trait]
impl Probe for HttpProbe {
    async fn run(&self) -> Outcome {
        let mut request = self
            .client
            .request(self.method.clone(), &self.url)
            .headers(self.headers.clone());
        if !self.body.is_empty() {
            request = request.body(self.body.clone());
        }
        let mut resp = match request.send().await {
            Ok(resp) => resp,
            Err(e) => return self.failed(chain(&e)),
        };
        let status = resp.status();
        let mut body = Vec::new();
        while body.len() < OUTPUT_MAX {
            match resp.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => return self.failed(chain(&e)),
            }
        }
        body.truncate(OUTPUT_MAX);
        Outcome {
            status: status_of(status.as_u16()),
            output: format!(
                "HTTP {} {}: {} Output: {}",
                self.method,
                self.url,
                status,
                String::from_utf8_lossy(&body)
            ),
        }
    }

    fn timed_out(&self, after: Duration) -> Outcome {
        self.failed(format!("timed out after {after:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_as_in_consul() {
        let cases = [
            (200, HealthStatus::Passing),
            (204, HealthStatus::Passing),
            (299, HealthStatus::Passing),
            (301, HealthStatus::Critical),
            (429, HealthStatus::Warning),
            (500, HealthStatus::Critical),
            (503, HealthStatus::Critical),
        ];
        for (code, want) in cases {
            assert_eq!(status_of(code), want, "{code}");
        }
    }

    #[test]
    fn bad_methods_and_headers_are_refused() {
        let clients = HttpClients::new().unwrap();
        let mut def = CheckDefinition {
            http: "http://127.0.0.1:1/".into(),
            method: "GE T".into(),
            ..Default::default()
        };
        assert!(HttpProbe::new(&clients, &def)
            .unwrap_err()
            .contains("method"));
        def.method = "POST".into();
        def.header.insert("Bad Name".into(), vec!["x".into()]);
        assert!(HttpProbe::new(&clients, &def)
            .unwrap_err()
            .contains("header name"));
    }

    #[tokio::test]
    async fn refused_connection_is_critical_with_the_reason() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        drop(listener);
        let def = CheckDefinition {
            http: url.clone(),
            ..Default::default()
        };
        let out = HttpProbe::new(&HttpClients::new().unwrap(), &def)
            .unwrap()
            .run()
            .await;
        assert_eq!(out.status, HealthStatus::Critical);
        assert!(
            out.output.starts_with(&format!("GET {url:?}: ")),
            "{}",
            out.output
        );
        assert!(
            out.output.to_lowercase().contains("refused"),
            "{}",
            out.output
        );
    }
}
