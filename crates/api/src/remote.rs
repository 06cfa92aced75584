//! `RemoteCatalog`: the [`Catalog`] trait over Consul's HTTP API, so the
//! agent, proxy and renderer work against a shoal server elsewhere or a
//! real Consul. Reads are blocking queries; the index rules live in
//! [`shoal_catalog::blocking`].

use crate::tls_client::ClientTls;
use async_trait::async_trait;
use bytes::Bytes;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use shoal_catalog::{
    Catalog, Check, Error, HealthStatus, Indexed, InstanceFilter, KvEntry, Node, NodeContents,
    QueryOptions, Registration, Result, Service, ServiceEntry, StreamRequest, Subscription, Topic,
    MAX_WAIT,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where the remote catalog is and how to talk to it.
#[derive(Clone, Debug)]
pub struct RemoteConfig {
    /// Base URL, e.g. `http://127.0.0.1:8500` or `https://...` (a bare
    /// `host:port` works, http unless `tls.https`); several,
    /// comma-separated, to fail over between servers.
    pub address: String,
    /// Sent as `X-Consul-Token` when set.
    pub token: Option<String>,
    /// Timeout of non-blocking requests.
    pub timeout: Duration,
    /// Whether [`Catalog::subscribe`] may use a shoal server's change
    /// stream; `false` (`--no-stream`) always follows with blocking queries.
    pub stream: bool,
    /// How https servers are trusted and this client presents itself.
    pub tls: ClientTls,
}

impl RemoteConfig {
    /// Defaults for `address`.
    pub fn new(address: impl Into<String>) -> Self {
        RemoteConfig {
            address: address.into(),
            token: None,
            timeout: Duration::from_secs(10),
            stream: true,
            tls: ClientTls::default(),
        }
    }
}

/// A Consul-HTTP-API client implementing [`Catalog`].
#[derive(Clone, Debug)]
pub struct RemoteCatalog {
    http: reqwest::Client,
    /// Every server's base URL; requests go to `bases[current]` and move
    /// on to the next one when a connection cannot be made.
    bases: Arc<Vec<String>>,
    current: Arc<AtomicUsize>,
    config: RemoteConfig,
}

/// A response with its `X-Consul-Index`, or `None` for a 404.
struct Answer<T> {
    index: u64,
    body: Option<T>,
}

fn remote<E: std::fmt::Display>(what: String) -> impl FnOnce(E) -> Error {
    move |e| Error::Remote(format!("{what}: {e}"))
}

impl RemoteCatalog {
    /// A client of the API at `config.address`.
    pub fn new(config: RemoteConfig) -> Result<Self> {
        let bases = config
            .address
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| normalize_base(a, config.tls.default_scheme()))
            .collect::<Result<Vec<_>>>()?;
        if bases.is_empty() {
            return Err(Error::invalid("no registry URL given"));
        }
        let builder = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(CONNECT_TIMEOUT);
        let http = config
            .tls
            .apply(builder)
            .map_err(|e| Error::invalid(e.to_string()))?
            .build()
            .map_err(remote("cannot build HTTP client".into()))?;
        Ok(RemoteCatalog {
            http,
            bases: Arc::new(bases),
            current: Arc::default(),
            config,
        })
    }

    /// The base URL requests go to now.
    pub fn base_url(&self) -> &str {
        &self.bases[self.current.load(Ordering::Relaxed) % self.bases.len()]
    }

    /// Whether subscriptions skip the change stream (`--no-stream`).
    pub(crate) fn no_stream(&self) -> bool {
        !self.config.stream
    }

    /// Whether the registry offers shoal's change stream: `false` for a
    /// real Consul, a shoal server started with `--no-stream`, or this
    /// client's own `--no-stream`. Asks the server without starting one.
    pub async fn has_stream(&self) -> Result<bool> {
        if self.no_stream() {
            return Ok(false);
        }
        let what = "GET /v1/shoal/stream?probe";
        let resp = self
            .send(
                self.request(Method::GET, "/v1/shoal/stream")
                    .query(&[("probe", "")]),
                what,
            )
            .await?;
        Ok(resp.status() != StatusCode::NOT_FOUND)
    }

    /// Every server this client may talk to.
    pub fn base_urls(&self) -> &[String] {
        &self.bases
    }

    /// Sends a request as it came (method, path with query, headers,
    /// body) to the current server, failing over like every other call:
    /// how an agent passes on the API calls it does not answer itself.
    pub async fn forward(
        &self,
        method: Method,
        path_and_query: &str,
        headers: reqwest::header::HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response> {
        let url = format!("{}{}", self.base_url(), path_and_query);
        let rb = self
            .http
            .request(method, url)
            .headers(headers)
            .body(body)
            .timeout(MAX_WAIT + MAX_WAIT / 16 + self.config.timeout);
        let req = rb
            .build()
            .map_err(remote(format!("bad request {path_and_query}")))?;
        self.execute(req, path_and_query).await
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = format!("{}{}", self.base_url(), path);
        let mut rb = self.http.request(method, url).timeout(self.config.timeout);
        if let Some(token) = &self.config.token {
            rb = rb.header("X-Consul-Token", token);
        }
        rb
    }

    /// Sends `req` to the current server; when no connection can be made,
    /// to the next ones in turn (the first that answers becomes current).
    async fn execute(&self, req: reqwest::Request, what: &str) -> Result<reqwest::Response> {
        let first = self.current.load(Ordering::Relaxed);
        let mut last_error = None;
        for attempt in 0..self.bases.len() {
            let at = (first + attempt) % self.bases.len();
            let Some(mut req) = req.try_clone() else {
                break;
            };
            let path = match req.url().query() {
                Some(q) => format!("{}?{q}", req.url().path()),
                None => req.url().path().to_string(),
            };
            *req.url_mut() = format!("{}{}", self.bases[at], path)
                .parse()
                .map_err(remote(format!("{what}: bad URL")))?;
            match self.http.execute(req).await {
                Ok(resp) => {
                    if attempt > 0 {
                        self.current.store(at, Ordering::Relaxed);
                        tracing::info!(server = %self.bases[at], "registry: failed over");
                    }
                    return Ok(resp);
                }
                Err(e) if e.is_connect() => {
                    last_error = Some(format!("{what} ({}): {}", self.bases[at], with_causes(&e)));
                }
                Err(e) => {
                    let e = with_causes(&e);
                    return Err(Error::Remote(format!("{what} ({}): {e}", self.bases[at])));
                }
            }
        }
        Err(Error::Remote(last_error.unwrap_or_else(|| {
            format!("{what}: request body cannot be resent")
        })))
    }

    pub(crate) async fn send(&self, rb: RequestBuilder, what: &str) -> Result<reqwest::Response> {
        let req = rb.build().map_err(remote(format!("{what}: bad request")))?;
        let resp = self.execute(req, what).await?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let msg = format!("{what}: {status}: {}", body.trim());
        Err(match status {
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => Error::Invalid(msg),
            _ => Error::Remote(msg),
        })
    }

    /// A blocking GET; `q` sets `index` and `wait` and stretches the timeout.
    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        q: QueryOptions,
    ) -> Result<Answer<T>> {
        let (index, resp) = self.get_response(path, query, q).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(Answer { index, body: None });
        }
        let body = resp
            .json::<T>()
            .await
            .map_err(remote(format!("GET {path}: bad body")))?;
        Ok(Answer {
            index,
            body: Some(body),
        })
    }

    /// The answer's `X-Consul-Index` and the response, body unread.
    async fn get_response(
        &self,
        path: &str,
        query: &[(&str, String)],
        q: QueryOptions,
    ) -> Result<(u64, reqwest::Response)> {
        let mut params: Vec<(&str, String)> = query.to_vec();
        let mut rb = self.request(Method::GET, path);
        if q.index > 0 {
            let wait = q
                .wait
                .unwrap_or(shoal_catalog::DEFAULT_WAIT)
                .min(shoal_catalog::MAX_WAIT);
            params.push(("index", q.index.to_string()));
            params.push(("wait", format!("{}ms", wait.as_millis())));
            rb = rb.timeout(wait + wait / 16 + self.config.timeout);
        }
        let resp = self.send(rb.query(&params), &format!("GET {path}")).await?;
        let index = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok((index, resp))
    }

    async fn put_json(&self, path: &str, body: &Value) -> Result<reqwest::Response> {
        let resp = self
            .send(
                self.request(Method::PUT, path).json(body),
                &format!("PUT {path}"),
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            let text = resp.text().await.unwrap_or_default();
            return Err(Error::NotFound(format!("PUT {path}: {}", text.trim())));
        }
        Ok(resp)
    }

    /// Registers a service with the remote *agent* (`/v1/agent/service/register`),
    /// the way `consul services register` does. `definition` is a Consul
    /// service definition.
    pub async fn agent_register(&self, definition: &Value) -> Result<()> {
        self.put_json("/v1/agent/service/register", definition)
            .await
            .map(|_| ())
    }

    /// Removes a service from the remote agent.
    pub async fn agent_deregister(&self, service_id: &str) -> Result<()> {
        let path = format!(
            "/v1/agent/service/deregister/{}",
            encode_segment(service_id)
        );
        self.put_json(&path, &Value::Null).await.map(|_| ())
    }
}

/// How long to try to connect to one server before trying the next.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// `host:port` or a URL, as a base URL without a trailing slash; a bare
/// `host:port` gets `scheme`.
fn normalize_base(addr: &str, scheme: &str) -> Result<String> {
    let addr = addr.trim_end_matches('/');
    let base = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("{scheme}://{addr}")
    };
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(Error::invalid(format!(
            "unsupported registry URL {addr:?}: use http://host:port or https://host:port"
        )));
    }
    Ok(base)
}

/// Percent-encodes one path segment.
fn encode_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Percent-encodes a KV key, keeping its slashes.
fn encode_key(key: &str) -> String {
    key.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

fn registration_body(reg: &Registration) -> Value {
    let n = &reg.node;
    let mut body = json!({
        "ID": n.id,
        "Node": n.name,
        "Address": n.address,
        "TaggedAddresses": n.tagged_addresses,
        "NodeMeta": n.meta,
        "SkipNodeUpdate": reg.skip_node_update,
        "Checks": reg.checks.iter().map(|c| {
            let mut c = c.clone();
            c.node = n.name.clone();
            c
        }).collect::<Vec<Check>>(),
    });
    if !n.datacenter.is_empty() {
        body["Datacenter"] = json!(n.datacenter);
    }
    if let Some(s) = &reg.service {
        body["Service"] = json!({
            "ID": s.id,
            "Service": s.name,
            "Tags": s.tags,
            "Address": s.address,
            "Meta": s.meta,
            "Port": s.port,
            "Weights": s.weights,
            "EnableTagOverride": s.enable_tag_override,
        });
        if !s.tagged_addresses.is_empty() {
            body["Service"]["TaggedAddresses"] = json!(s.tagged_addresses);
        }
    }
    body
}

fn expect_bool(text: &str, what: &str) -> Result<bool> {
    match text.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(Error::Remote(format!(
            "{what}: expected true or false, got {other:?}"
        ))),
    }
}

#[async_trait]
impl Catalog for RemoteCatalog {
    /// Returns 0: Consul's write endpoints do not report the commit index.
    async fn register(&self, reg: Registration) -> Result<u64> {
        let resp = self
            .put_json("/v1/catalog/register", &registration_body(&reg))
            .await?;
        Ok(written_index(&resp))
    }

    async fn deregister_service(&self, node: &str, service_id: &str) -> Result<u64> {
        let resp = self
            .put_json(
                "/v1/catalog/deregister",
                &json!({"Node": node, "ServiceID": service_id}),
            )
            .await?;
        Ok(written_index(&resp))
    }

    async fn deregister_node(&self, node: &str) -> Result<u64> {
        let resp = self
            .put_json("/v1/catalog/deregister", &json!({"Node": node}))
            .await?;
        Ok(written_index(&resp))
    }

    /// Consul has no "set check status" catalog call: read the node's
    /// checks, change the one, and register it back without touching the node.
    async fn deregister_check(&self, node: &str, check_id: &str) -> Result<u64> {
        let resp = self
            .put_json(
                "/v1/catalog/deregister",
                &json!({"Node": node, "CheckID": check_id}),
            )
            .await?;
        Ok(written_index(&resp))
    }

    /// Two reads: the node with its instances (blocking), then its checks.
    async fn node_contents(
        &self,
        node: &str,
        q: QueryOptions,
    ) -> Result<Indexed<Option<NodeContents>>> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct NodeServices {
            node: Node,
            #[serde(default)]
            services: Option<BTreeMap<String, Service>>,
        }
        let path = format!("/v1/catalog/node/{}", encode_segment(node));
        let a = self.get::<Option<NodeServices>>(&path, &[], q).await?;
        let Some(Some(found)) = a.body else {
            return Ok(Indexed {
                index: a.index,
                value: None,
            });
        };
        let path = format!("/v1/health/node/{}", encode_segment(node));
        let checks: Vec<Check> = self
            .get(&path, &[], QueryOptions::default())
            .await?
            .body
            .unwrap_or_default();
        Ok(Indexed {
            index: a.index,
            value: Some(NodeContents {
                node: found.node,
                services: found.services.unwrap_or_default().into_values().collect(),
                checks,
            }),
        })
    }

    async fn update_check(
        &self,
        node: &str,
        check_id: &str,
        status: HealthStatus,
        output: Option<String>,
    ) -> Result<u64> {
        let path = format!("/v1/health/node/{}", encode_segment(node));
        let checks: Vec<Check> = self
            .get(&path, &[], QueryOptions::default())
            .await?
            .body
            .unwrap_or_default();
        let mut check = checks
            .into_iter()
            .find(|c| c.check_id == check_id)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "Unknown check ID \"{check_id}\" on node \"{node}\""
                ))
            })?;
        check.status = status;
        if let Some(out) = output {
            check.output = out;
        }
        let body = json!({"Node": node, "SkipNodeUpdate": true, "Check": check});
        self.put_json("/v1/catalog/register", &body).await?;
        Ok(0)
    }

    async fn services(&self, q: QueryOptions) -> Result<Indexed<BTreeMap<String, Vec<String>>>> {
        let a = self.get("/v1/catalog/services", &[], q).await?;
        Ok(Indexed {
            index: a.index,
            value: a.body.unwrap_or_default(),
        })
    }

    async fn instances(
        &self,
        service: &str,
        filter: &InstanceFilter,
        q: QueryOptions,
    ) -> Result<Indexed<Vec<ServiceEntry>>> {
        let path = format!("/v1/health/service/{}", encode_segment(service));
        let mut query: Vec<(&str, String)> =
            filter.tags.iter().map(|t| ("tag", t.clone())).collect();
        if filter.passing_only {
            query.push(("passing", "true".into()));
        }
        let a = self.get::<Vec<ServiceEntry>>(&path, &query, q).await?;
        // Filter again locally: older servers honour only one ?tag=.
        let value = a
            .body
            .unwrap_or_default()
            .into_iter()
            .filter(|e| filter.matches(e))
            .collect();
        Ok(Indexed {
            index: a.index,
            value,
        })
    }

    async fn kv_get(&self, key: &str, q: QueryOptions) -> Result<Indexed<Option<KvEntry>>> {
        let path = format!("/v1/kv/{}", encode_key(key));
        let a = self.get::<Vec<KvEntry>>(&path, &[], q).await?;
        Ok(Indexed {
            index: a.index,
            value: a.body.and_then(|v| v.into_iter().next()),
        })
    }

    async fn kv_list(&self, prefix: &str, q: QueryOptions) -> Result<Indexed<Vec<KvEntry>>> {
        let path = format!("/v1/kv/{}", encode_key(prefix));
        let a = self
            .get::<Vec<KvEntry>>(&path, &[("recurse", "true".into())], q)
            .await?;
        Ok(Indexed {
            index: a.index,
            value: a.body.unwrap_or_default(),
        })
    }

    async fn kv_put(&self, key: &str, value: Bytes, flags: u64, cas: Option<u64>) -> Result<bool> {
        let path = format!("/v1/kv/{}", encode_key(key));
        let mut query = vec![("flags", flags.to_string())];
        if let Some(cas) = cas {
            query.push(("cas", cas.to_string()));
        }
        let rb = self.request(Method::PUT, &path).query(&query).body(value);
        let resp = self.send(rb, &format!("PUT {path}")).await?;
        let text = resp.text().await.map_err(remote(format!("PUT {path}")))?;
        expect_bool(&text, &format!("PUT {path}"))
    }

    async fn kv_delete(&self, key: &str, recurse: bool, cas: Option<u64>) -> Result<bool> {
        let path = format!("/v1/kv/{}", encode_key(key));
        let mut query = Vec::new();
        if recurse {
            query.push(("recurse", "true".to_string()));
        }
        if let Some(cas) = cas {
            query.push(("cas", cas.to_string()));
        }
        let resp = self
            .send(
                self.request(Method::DELETE, &path).query(&query),
                &format!("DELETE {path}"),
            )
            .await?;
        let text = resp
            .text()
            .await
            .map_err(remote(format!("DELETE {path}")))?;
        expect_bool(&text, &format!("DELETE {path}"))
    }

    async fn subscribe(&self, req: StreamRequest) -> Result<Subscription> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(crate::remote_stream::run(self.clone(), req, tx));
        Ok(rx)
    }

    async fn wait_for_change(&self, topic: &Topic, index: u64, wait: Duration) -> Result<u64> {
        let q = QueryOptions::blocking(index.max(1), wait);
        let (path, query): (String, Vec<(&str, String)>) = match topic {
            Topic::Services => ("/v1/catalog/services".into(), vec![]),
            Topic::Service(name) => (format!("/v1/health/service/{}", encode_segment(name)), vec![]),
            Topic::Nodes => ("/v1/catalog/nodes".into(), vec![]),
            Topic::Node(name) => (format!("/v1/catalog/node/{}", encode_segment(name)), vec![]),
            Topic::Checks => ("/v1/health/state/any".into(), vec![]),
            Topic::KvPrefix(p) => (format!("/v1/kv/{}", encode_key(p)), vec![("keys", "true".into())]),
            Topic::Sessions => ("/v1/session/list".into(), vec![]),
            Topic::Queries => ("/v1/query".into(), vec![]),
            Topic::Acl => ("/v1/acl/tokens".into(), vec![]),
            Topic::Any => {
                return Err(Error::invalid(
                    "a remote catalog cannot wait on every change at once; wait on a service, node or KV prefix",
                ))
            }
        };
        // Only the index matters: the body (a node with thousands of
        // instances can be megabytes) is read and dropped chunk by chunk,
        // so the connection can be reused, without holding it whole.
        let (index, mut resp) = self.get_response(&path, &query, q).await?;
        while resp
            .chunk()
            .await
            .map_err(remote(format!("GET {path}: body")))?
            .is_some()
        {}
        Ok(index)
    }
}

/// The index a write answered with: shoal sends its commit index as
/// `X-Consul-Index` on catalog writes; Consul sends none (0: unknown).
fn written_index(resp: &reqwest::Response) -> u64 {
    resp.headers()
        .get("X-Consul-Index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// An error with every cause under it, as reqwest's own text leaves
/// them out ("error sending request for url (...)" says nothing of a
/// refused connection).
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    match crate::tls_client::explain(e) {
        Some(meaning) => format!("{text} ({meaning})"),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_slashes_and_escape_the_rest() {
        assert_eq!(encode_key("app/my key/ü"), "app/my%20key/%C3%BC");
        assert_eq!(encode_segment("a/b"), "a%2Fb");
    }

    #[test]
    fn addresses_normalize() {
        let cases = [
            ("127.0.0.1:8500", "http://127.0.0.1:8500"),
            ("http://h:1/", "http://h:1"),
        ];
        for (input, want) in cases {
            assert_eq!(
                RemoteCatalog::new(RemoteConfig::new(input))
                    .unwrap()
                    .base_url(),
                want
            );
        }
        assert!(RemoteCatalog::new(RemoteConfig::new("ftp://x")).is_err());
        assert!(RemoteCatalog::new(RemoteConfig::new(" , ")).is_err());
        let several = RemoteCatalog::new(RemoteConfig::new("a:1, http://b:2/")).unwrap();
        assert_eq!(several.base_urls(), ["http://a:1", "http://b:2"]);
        assert_eq!(several.base_url(), "http://a:1");
    }
}
