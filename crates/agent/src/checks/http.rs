//! HTTP checks, as Consul runs them: 2xx is passing, 429 warning, any
//! other status or no answer critical; the output carries the status line
//! and the first bytes of the body. Plain HTTP reuses idle connections
//! (see `http1`); HTTPS opens a new connection per run, as Consul does.

use super::http1::{IdleConnections, PlainRequest};
use super::probe::{Outcome, Probe};
use crate::error::{Error, Result};
use async_trait::async_trait;
use reqwest::header::{HeaderName, HeaderValue, ACCEPT, USER_AGENT};
use reqwest::{Client, Method};
use shoal_catalog::{CheckDefinition, HealthStatus};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Bytes of the body kept in the output, as Consul's default.
const OUTPUT_MAX: usize = 4096;

/// What every HTTP check shares: idle plain-HTTP connections, and the
/// full clients (TLS certificates verified, or not for `TLSSkipVerify`),
/// built on first use: each carries a root certificate store, which an
/// agent with only plain-HTTP checks need not hold.
#[derive(Debug, Default)]
pub(crate) struct HttpClients {
    verify: OnceLock<std::result::Result<Client, String>>,
    skip_verify: OnceLock<std::result::Result<Client, String>>,
    idle: IdleConnections,
}

impl HttpClients {
    pub fn new() -> Result<Arc<Self>> {
        Ok(Arc::default())
    }

    fn client(&self, skip_verify: bool) -> std::result::Result<&Client, String> {
        let cell = if skip_verify {
            &self.skip_verify
        } else {
            &self.verify
        };
        cell.get_or_init(|| {
            Client::builder()
                .pool_max_idle_per_host(0)
                .danger_accept_invalid_certs(skip_verify)
                .build()
                .map_err(|e| Error::HttpClient(e.to_string()).to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
    }
}

/// The headers of a check's requests.
fn headers_of(def: &CheckDefinition) -> std::result::Result<reqwest::header::HeaderMap, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, values) in &def.header {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        for v in values {
            let value =
                HeaderValue::from_str(v).map_err(|_| format!("invalid value of header {name}"))?;
            headers.append(name.clone(), value);
        }
    }
    if !headers.contains_key(USER_AGENT) {
        headers.insert(USER_AGENT, HeaderValue::from_static("Consul Health Check"));
    }
    if !headers.contains_key(ACCEPT) {
        headers.insert(ACCEPT, HeaderValue::from_static("text/plain, text/*, */*"));
    }
    Ok(headers)
}

/// One HTTP check. It keeps little of its own (thousands run at once):
/// the definition it runs (shared with the runner's record of it) and, for plain
/// HTTP, the request rendered once.
#[derive(Debug)]
pub(crate) struct HttpProbe {
    clients: Arc<HttpClients>,
    method: Method,
    def: Arc<CheckDefinition>,
    /// The request rendered once, for plain `http://` targets.
    plain: Option<PlainRequest>,
}

impl HttpProbe {
    /// A probe for `check`; fails on a method or header HTTP cannot carry.
    pub fn new(
        clients: &Arc<HttpClients>,
        def: Arc<CheckDefinition>,
    ) -> std::result::Result<Self, String> {
        let method = if def.method.is_empty() {
            Method::GET
        } else {
            Method::from_bytes(def.method.as_bytes())
                .map_err(|_| format!("invalid HTTP method {:?}", def.method))?
        };
        let headers = headers_of(&def)?;
        let plain = PlainRequest::build(&method, &def.http, &headers, &def.body);
        Ok(HttpProbe {
            clients: clients.clone(),
            method,
            plain,
            def,
        })
    }

    fn url(&self) -> &str {
        &self.def.http
    }

    fn failed(&self, e: impl std::fmt::Display) -> Outcome {
        Outcome::critical(format!("{} {:?}: {e}", self.method, self.url()))
    }

    fn outcome(&self, code: u16, status: impl std::fmt::Display, body: &[u8]) -> Outcome {
        Outcome {
            status: status_of(code),
            output: format!(
                "HTTP {} {}: {status} Output: {}",
                self.method,
                self.url(),
                String::from_utf8_lossy(body)
            ),
        }
    }

    /// Through the full client: HTTPS, and redirects to follow.
    async fn run_with_client(&self) -> Outcome {
        let def = &self.def;
        // Validated when the probe was made.
        let headers = headers_of(def).unwrap_or_default();
        let client = match self.clients.client(def.tls_skip_verify) {
            Ok(client) => client,
            Err(e) => return self.failed(e),
        };
        let mut request = client
            .request(self.method.clone(), &def.http)
            .headers(headers);
        if !def.body.is_empty() {
            request = request.body(def.body.clone());
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
        self.outcome(status.as_u16(), status, &body)
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
        let Some(plain) = &self.plain else {
            return self.run_with_client().await;
        };
        match plain.exchange(&self.clients.idle, OUTPUT_MAX).await {
            // Redirects are followed, as Go's client does.
            Ok(answer) if (300..400).contains(&answer.code) => self.run_with_client().await,
            Ok(answer) => self.outcome(answer.code, &answer.status, &answer.body),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                self.failed(format!("dial tcp {}: connect: {e}", plain.addr))
            }
            Err(e) => self.failed(e),
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
        let probe = |def: &CheckDefinition| HttpProbe::new(&clients, Arc::new(def.clone()));
        assert!(probe(&def).unwrap_err().contains("method"));
        def.method = "POST".into();
        def.header.insert("Bad Name".into(), vec!["x".into()]);
        assert!(probe(&def).unwrap_err().contains("header name"));
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
        let out = HttpProbe::new(&HttpClients::new().unwrap(), Arc::new(def))
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
