//! A small etcd v3 client over etcd's JSON gateway (`/v3/kv/range`,
//! `/v3/kv/txn`, `/v3/watch`, `/v3/lease/*`, `/v3/auth/authenticate`).
//!
//! Why the gateway and not gRPC: every etcd v3 server serves it on its
//! client port, it needs nothing beyond the HTTP client shoal already
//! builds with (no protobuf compiler, no gRPC stack), and shoal's use of
//! etcd is a handful of unary calls plus one watch stream. Keys and values
//! are base64 in the JSON; 64-bit integers are strings.
//!
//! Endpoints are tried in turn: a request that could not be sent (the
//! member is down) goes to the next one. A write whose outcome is unknown
//! (sent, then a timeout) is never sent again: the caller reports it
//! failed and the watch tells what really happened.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How to reach and log in to the etcd cluster.
#[derive(Clone, Debug, Default)]
pub struct EtcdConfig {
    /// Client URLs (`http://h1:2379`, `https://...`).
    pub endpoints: Vec<String>,
    /// `user` or `user:password` (as etcdctl's `--user`).
    pub user: Option<String>,
    /// The password, when not given in `user`.
    pub password: Option<String>,
    /// PEM CA bundle that signs the members' certificates.
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate and key, for members that require one.
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
}

/// An etcd error, with what was being done.
#[derive(Debug)]
pub enum EtcdError {
    /// No endpoint could be reached, or etcd did not answer in time; for a
    /// write, its outcome is unknown.
    Unavailable(String),
    /// etcd answered with an error.
    Refused(String),
    /// The answer could not be understood.
    Protocol(String),
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtcdError::Unavailable(m) => write!(f, "etcd unavailable: {m}"),
            EtcdError::Refused(m) => write!(f, "etcd refused: {m}"),
            EtcdError::Protocol(m) => write!(f, "etcd answer not understood: {m}"),
        }
    }
}

impl std::error::Error for EtcdError {}

pub type EtcdResult<T> = Result<T, EtcdError>;

/// One key-value pair as etcd returns it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct KeyValue {
    #[serde(default, deserialize_with = "b64")]
    pub key: Vec<u8>,
    #[serde(default, deserialize_with = "b64")]
    pub value: Vec<u8>,
    #[serde(default, deserialize_with = "int", alias = "modRevision")]
    pub mod_revision: u64,
    #[serde(default, deserialize_with = "int", alias = "createRevision")]
    pub create_revision: u64,
}

#[derive(Debug, Default, Deserialize)]
pub struct Header {
    #[serde(default, deserialize_with = "int")]
    pub revision: u64,
}

#[derive(Debug, Default, Deserialize)]
pub struct RangeResponse {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub kvs: Vec<KeyValue>,
}

/// A watch event.
#[derive(Debug, Default, Deserialize)]
pub struct Event {
    /// `PUT` is etcd's enum default and so is left out of the JSON.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub kv: KeyValue,
}

impl Event {
    pub fn is_delete(&self) -> bool {
        self.kind.as_deref() == Some("DELETE")
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct WatchResult {
    #[serde(default)]
    pub canceled: bool,
    #[serde(default, deserialize_with = "int", alias = "compactRevision")]
    pub compact_revision: u64,
    #[serde(default, alias = "cancelReason")]
    pub cancel_reason: String,
    #[serde(default)]
    pub events: Vec<Event>,
}

fn int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::String(s) => s.parse().map_err(serde::de::Error::custom),
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_i64().map(|i| i as u64))
            .ok_or_else(|| serde::de::Error::custom("not an integer")),
        Value::Null => Ok(0),
        _ => Err(serde::de::Error::custom("not an integer")),
    }
}

fn b64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = Option::<String>::deserialize(d)?.unwrap_or_default();
    B64.decode(s).map_err(serde::de::Error::custom)
}

pub fn enc(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The client: endpoints, HTTP client, auth token.
pub struct EtcdClient {
    http: reqwest::Client,
    /// No timeout: for the watch stream.
    streaming: reqwest::Client,
    endpoints: Vec<String>,
    current: AtomicUsize,
    credentials: Option<(String, String)>,
    token: Mutex<Option<String>>,
    /// How long a unary call may take.
    timeout: Duration,
}

/// A unary call that takes longer than this fails (etcd's own request
/// timeout is 5 s plus election time).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// Connecting to a member that takes longer than this fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What went wrong with a request, down to its cause: "cannot connect:
/// Connection refused (os error 111)", "no answer within 8s", or the
/// error with each of its sources.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    let mut chain = e.to_string();
    let mut root = chain.clone();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        root = c.to_string();
        if !chain.contains(&root) {
            chain = format!("{chain}: {root}");
        }
        cause = c.source();
    }
    match (e.is_connect(), e.is_timeout()) {
        (true, true) => format!("cannot connect: no answer within {CONNECT_TIMEOUT:?}"),
        (true, false) => format!("cannot connect: {root}"),
        (false, true) => format!("no answer within {timeout:?}"),
        (false, false) => chain,
    }
}

impl EtcdClient {
    pub fn new(config: &EtcdConfig) -> Result<EtcdClient, String> {
        EtcdClient::with_timeout(config, REQUEST_TIMEOUT)
    }

    /// Like [`EtcdClient::new`], with unary calls that fail after `timeout`.
    fn with_timeout(config: &EtcdConfig, timeout: Duration) -> Result<EtcdClient, String> {
        if config.endpoints.is_empty() {
            return Err("no etcd endpoint given (--etcd-endpoints)".into());
        }
        let mut endpoints = Vec::new();
        for e in &config.endpoints {
            let url = reqwest::Url::parse(e)
                .map_err(|err| format!("etcd endpoint {e:?} is not a URL: {err}"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(format!(
                    "etcd endpoint {e:?} must be http://HOST:PORT or https://HOST:PORT"
                ));
            }
            endpoints.push(e.trim_end_matches('/').to_string());
        }
        let credentials = match (&config.user, &config.password) {
            (None, None) => None,
            (None, Some(_)) => return Err("--etcd-password needs --etcd-user".into()),
            (Some(u), pw) => match (u.split_once(':'), pw) {
                (Some((name, p)), None) => Some((name.to_string(), p.to_string())),
                (Some(_), Some(_)) => {
                    return Err(
                        "give the etcd password in --etcd-user or --etcd-password, not both".into(),
                    )
                }
                (None, Some(p)) => Some((u.clone(), p.clone())),
                (None, None) => {
                    return Err(format!(
                        "--etcd-user {u:?} needs a password (user:password or --etcd-password)"
                    ))
                }
            },
        };
        let build = |timeout: Option<Duration>| -> Result<reqwest::Client, String> {
            let mut b = reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .pool_max_idle_per_host(128)
                .tcp_nodelay(true);
            if let Some(t) = timeout {
                b = b.timeout(t);
            }
            if let Some(ca) = &config.ca_file {
                let pem = std::fs::read(ca)
                    .map_err(|e| format!("cannot read etcd CA {}: {e}", ca.display()))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| format!("etcd CA {} is not PEM: {e}", ca.display()))?;
                if certs.is_empty() {
                    return Err(format!(
                        "etcd CA {} holds no PEM certificate (BEGIN CERTIFICATE)",
                        ca.display()
                    ));
                }
                for cert in certs {
                    b = b.add_root_certificate(cert);
                }
            }
            match (&config.cert_file, &config.key_file) {
                (Some(c), Some(k)) => {
                    let mut pem = std::fs::read(c).map_err(|e| {
                        format!("cannot read etcd client cert {}: {e}", c.display())
                    })?;
                    pem.extend(std::fs::read(k).map_err(|e| {
                        format!("cannot read etcd client key {}: {e}", k.display())
                    })?);
                    let id = reqwest::Identity::from_pem(&pem)
                        .map_err(|e| format!("etcd client cert/key unusable: {e}"))?;
                    b = b.identity(id);
                }
                (None, None) => {}
                _ => return Err("--etcd-cert and --etcd-key go together".into()),
            }
            b.build()
                .map_err(|e| format!("cannot build the etcd client: {e}"))
        };
        Ok(EtcdClient {
            http: build(Some(timeout))?,
            streaming: build(None)?,
            endpoints,
            current: AtomicUsize::new(0),
            credentials,
            token: Mutex::new(None),
            timeout,
        })
    }

    fn token(&self) -> Option<String> {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn authenticate(&self, endpoint: &str) -> EtcdResult<()> {
        let Some((name, password)) = &self.credentials else {
            return Ok(());
        };
        let resp = self
            .http
            .post(format!("{endpoint}/v3/auth/authenticate"))
            .json(&json!({"name": name, "password": password}))
            .send()
            .await
            .map_err(|e| {
                EtcdError::Unavailable(format!(
                    "{endpoint}: authenticate: {}",
                    describe(&e, self.timeout)
                ))
            })?;
        let v = read_json(resp, self.timeout).await?;
        let token = v["token"]
            .as_str()
            .ok_or_else(|| EtcdError::Protocol("no token in the authenticate answer".into()))?;
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.to_string());
        Ok(())
    }

    /// POSTs `body` to `path`, moving on to the next endpoint while the
    /// request could not be sent. `idempotent`: also move on after a
    /// timeout (reads only).
    pub async fn call(&self, path: &str, body: &Value, idempotent: bool) -> EtcdResult<Value> {
        let n = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::new();
        for attempt in 0..n {
            let i = (start + attempt) % n;
            let endpoint = &self.endpoints[i];
            if self.credentials.is_some() && self.token().is_none() {
                if let Err(e) = self.authenticate(endpoint).await {
                    last = e.to_string();
                    continue;
                }
            }
            let mut req = self.http.post(format!("{endpoint}{path}")).json(body);
            if let Some(t) = self.token() {
                req = req.header("Authorization", t);
            }
            match req.send().await {
                Ok(resp) => {
                    self.current.store(i, Ordering::Relaxed);
                    match read_json(resp, self.timeout).await {
                        Err(EtcdError::Refused(m)) if m.contains("invalid auth token") => {
                            // Tokens expire; log in again once.
                            *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
                            self.authenticate(endpoint).await?;
                            return Box::pin(self.call(path, body, idempotent)).await;
                        }
                        Err(EtcdError::Refused(m))
                            if idempotent
                                && (m.contains("no leader") || m.contains("timed out")) =>
                        {
                            last = format!("{endpoint}: {m}");
                            continue;
                        }
                        other => return other,
                    }
                }
                Err(e) if e.is_connect() || (idempotent && e.is_timeout()) => {
                    last = format!("{endpoint}: {}", describe(&e, self.timeout));
                }
                Err(e) => {
                    return Err(EtcdError::Unavailable(format!(
                        "{endpoint}: {}{}",
                        describe(&e, self.timeout),
                        if idempotent {
                            ""
                        } else {
                            "; the write may or may not have been applied"
                        }
                    )))
                }
            }
        }
        Err(EtcdError::Unavailable(format!(
            "no etcd endpoint answered ({last})"
        )))
    }

    /// Every key in `[key, end)`, linearizable.
    pub async fn range(&self, key: &[u8], end: Option<&[u8]>) -> EtcdResult<RangeResponse> {
        let mut body = json!({"key": enc(key)});
        if let Some(end) = end {
            body["range_end"] = enc(end).into();
        }
        let v = self.call("/v3/kv/range", &body, true).await?;
        serde_json::from_value(v).map_err(|e| EtcdError::Protocol(format!("range: {e}")))
    }

    /// A transaction; returns (succeeded, header revision, raw answer).
    pub async fn txn(&self, body: &Value) -> EtcdResult<(bool, u64, Value)> {
        let v = self.call("/v3/kv/txn", body, false).await?;
        let succeeded = v["succeeded"].as_bool().unwrap_or(false);
        let header: Header = serde_json::from_value(v["header"].clone()).unwrap_or_default();
        Ok((succeeded, header.revision, v))
    }

    /// Grants a lease of `ttl` seconds; its ID.
    pub async fn lease_grant(&self, ttl: u64) -> EtcdResult<u64> {
        let v = self
            .call("/v3/lease/grant", &json!({"TTL": ttl.to_string()}), false)
            .await?;
        let id = v["ID"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| EtcdError::Protocol(format!("lease grant: {v}")))?;
        Ok(id)
    }

    /// Refreshes a lease; `false` when it has expired.
    pub async fn lease_keepalive(&self, id: u64) -> EtcdResult<bool> {
        let v = self
            .call("/v3/lease/keepalive", &json!({"ID": id.to_string()}), true)
            .await?;
        let ttl = v["result"]["TTL"]
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0);
        Ok(ttl > 0)
    }

    /// Opens a watch of `[key, end)` from `start` on the current endpoint
    /// (or the next one that answers).
    pub async fn watch(&self, key: &[u8], end: &[u8], start: u64) -> EtcdResult<WatchStream> {
        let body = json!({"create_request": {
            "key": enc(key), "range_end": enc(end), "start_revision": start.to_string()
        }});
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut last = String::new();
        for attempt in 0..n {
            let i = (first + attempt) % n;
            let endpoint = &self.endpoints[i];
            if self.credentials.is_some() && self.token().is_none() {
                if let Err(e) = self.authenticate(endpoint).await {
                    last = e.to_string();
                    continue;
                }
            }
            let mut req = self
                .streaming
                .post(format!("{endpoint}/v3/watch"))
                .json(&body);
            if let Some(t) = self.token() {
                req = req.header("Authorization", t);
            }
            match tokio::time::timeout(self.timeout, req.send()).await {
                Ok(Ok(resp)) if resp.status().is_success() => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(WatchStream {
                        resp,
                        buf: Vec::new(),
                        endpoint: endpoint.clone(),
                    });
                }
                Ok(Ok(resp)) => {
                    let status = resp.status();
                    last = match read_json(resp, self.timeout).await {
                        Err(e) => format!("{endpoint}: {e}"),
                        Ok(_) => format!("{endpoint}: etcd answered {status}"),
                    }
                }
                Ok(Err(e)) => last = format!("{endpoint}: {}", describe(&e, self.timeout)),
                Err(_) => last = format!("{endpoint}: no answer within {:?}", self.timeout),
            }
        }
        Err(EtcdError::Unavailable(format!("cannot watch: {last}")))
    }

    /// Moves on to the next endpoint (the current one seems stuck).
    pub fn rotate(&self) {
        let n = self.endpoints.len();
        let _ = self
            .current
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| Some((c + 1) % n));
    }
}

async fn read_json(resp: reqwest::Response, timeout: Duration) -> EtcdResult<Value> {
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| {
        EtcdError::Unavailable(format!(
            "reading the answer ({status}): {}",
            describe(&e, timeout)
        ))
    })?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        EtcdError::Protocol(format!(
            "{status}: {e}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ))
    })?;
    if !status.is_success() || v.get("error").is_some() || v.get("code").is_some_and(|c| c != 0) {
        let msg = v["message"]
            .as_str()
            .or(v["error"].as_str())
            .or(v["error"]["message"].as_str())
            .unwrap_or("")
            .to_string();
        if msg.is_empty() {
            let body = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
            return Err(EtcdError::Refused(format!("{status}: {body}")));
        }
        return Err(EtcdError::Refused(format!("{status}: {msg}")));
    }
    Ok(v)
}

/// An open watch: newline-separated JSON messages.
pub struct WatchStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
    pub endpoint: String,
}

impl WatchStream {
    /// The next message; `Err` when the stream broke or etcd sent an error.
    pub async fn next(&mut self) -> EtcdResult<WatchResult> {
        loop {
            if let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let v: Value = serde_json::from_slice(&line)
                    .map_err(|e| EtcdError::Protocol(format!("watch message: {e}")))?;
                if let Some(err) = v.get("error") {
                    return Err(EtcdError::Refused(format!("watch: {err}")));
                }
                return serde_json::from_value(v["result"].clone())
                    .map_err(|e| EtcdError::Protocol(format!("watch result: {e}")));
            }
            match self.resp.chunk().await {
                Ok(Some(chunk)) => {
                    if self.buf.len() + chunk.len() > 256 * 1024 * 1024 {
                        return Err(EtcdError::Protocol("watch message too large".into()));
                    }
                    self.buf.extend_from_slice(&chunk);
                }
                Ok(None) => return Err(EtcdError::Unavailable("watch stream ended".into())),
                Err(e) => {
                    return Err(EtcdError::Unavailable(format!(
                        "watch stream: {}",
                        describe(&e, Duration::ZERO)
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end(b"/shoal/"), b"/shoal0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn parses_gateway_json() {
        let v = json!({"header": {"revision": "12"}, "kvs": [
            {"key": enc(b"k"), "value": enc(b"v"), "mod_revision": "9"}
        ]});
        let r: RangeResponse = serde_json::from_value(v).unwrap();
        assert_eq!(r.header.revision, 12);
        assert_eq!(r.kvs[0].key, b"k");
        assert_eq!(r.kvs[0].mod_revision, 9);
        let e: Event = serde_json::from_value(json!({"kv": {"key": enc(b"k")}})).unwrap();
        assert!(!e.is_delete());
    }

    #[test]
    fn bad_config_is_refused_with_a_reason() {
        let cases = [
            (vec![], None, None, "no etcd endpoint"),
            (vec!["h1:2379"], None, None, "must be http"),
            (vec!["http://h:1"], None, Some("pw"), "needs --etcd-user"),
            (vec!["http://h:1"], Some("root"), None, "needs a password"),
            (vec!["http://h:1"], Some("root:a"), Some("b"), "not both"),
        ];
        for (endpoints, user, password, want) in cases {
            let config = EtcdConfig {
                endpoints: endpoints.iter().map(|s| s.to_string()).collect(),
                user: user.map(String::from),
                password: password.map(String::from),
                ..Default::default()
            };
            let err = EtcdClient::new(&config).err().unwrap();
            assert!(err.contains(want), "{err} should say {want}");
        }
    }

    /// A server on loopback that answers each of at most 4 connections
    /// with `answer`, or holds it open without a word when `None`.
    async fn http_server(answer: Option<String>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            for _ in 0..4 {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0; 64 * 1024];
                    let _ = conn.read(&mut buf).await;
                    if let Some(a) = answer {
                        let _ = conn.write_all(a.as_bytes()).await;
                    }
                    tokio::time::sleep(Duration::from_secs(5)).await;
                });
            }
        });
        url
    }

    fn client(url: &str, timeout: Duration) -> EtcdClient {
        let config = EtcdConfig {
            endpoints: vec![url.to_string()],
            ..Default::default()
        };
        EtcdClient::with_timeout(&config, timeout).unwrap()
    }

    #[tokio::test]
    async fn an_error_names_a_refused_connection() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let err = client(&closed, REQUEST_TIMEOUT)
            .range(b"k", None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("etcd unavailable: no etcd endpoint answered"),
            "{err}"
        );
        assert!(err.contains(&closed), "{err}");
        assert!(err.contains("cannot connect: Connection refused"), "{err}");
    }

    #[tokio::test]
    async fn an_error_names_etcds_status_and_message() {
        let body =
            r#"{"error":"etcdserver: no leader","code":14,"message":"etcdserver: no leader"}"#;
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let url = http_server(Some(answer)).await;
        let err = client(&url, REQUEST_TIMEOUT)
            .txn(&json!({}))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "etcd refused: 503 Service Unavailable: etcdserver: no leader"
        );
        // An answer that is not etcd's JSON is quoted.
        let answer = "HTTP/1.1 502 Bad Gateway\r\ncontent-length: 7\r\n\
                      connection: close\r\n\r\nno etcd"
            .to_string();
        let url = http_server(Some(answer)).await;
        let err = client(&url, REQUEST_TIMEOUT)
            .txn(&json!({}))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("502 Bad Gateway"), "{err}");
        assert!(err.contains("no etcd"), "{err}");
    }

    #[tokio::test]
    async fn an_error_names_a_timeout_and_what_it_means_for_a_write() {
        let url = http_server(None).await;
        let err = client(&url, Duration::from_millis(300))
            .txn(&json!({}))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "etcd unavailable: {url}: no answer within 300ms; \
                 the write may or may not have been applied"
            )
        );
        // A read is tried on the next member, then said as not answered.
        let err = client(&url, Duration::from_millis(300))
            .range(b"k", None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no answer within 300ms"), "{err}");
    }
}
