//! shoal's Consul-compatible HTTP API (`/v1/...`) over the in-process
//! [`Registry`], and [`RemoteCatalog`], a client of that same API (or of a
//! real Consul) that implements the catalog's [`Catalog`] trait.
//!
//! [`Catalog`]: shoal_catalog::Catalog
#![forbid(unsafe_code)]

mod access;
pub mod acl;
mod acl_remote;
mod acl_routes;
mod acl_write;
mod agent_health_routes;
mod agent_routes;
mod cache;
mod catalog_routes;
mod coordinate_routes;
mod dto;
mod edge;
mod error;
mod event_routes;
pub mod filter;
mod forward;
mod health_routes;
pub mod http1;
mod kv_routes;
pub mod leadership;
mod metrics_routes;
mod node_services_routes;
mod query_routes;
mod remote;
mod remote_fallback;
mod remote_stream;
mod session_routes;
pub mod tls;
pub mod tls_client;
pub mod tls_server;
mod transport;
mod txn_routes;
pub mod ui_routes;

pub mod request;
pub mod response;
mod snapshot_routes;
mod status_routes;
mod stream_routes;

pub use error::{ApiError, ApiResult};
pub use forward::agent_router;
pub use remote::{RemoteCatalog, RemoteConfig};
pub use stream_routes::HEARTBEAT as STREAM_HEARTBEAT;
pub use tls::TlsError;
pub use tls_client::ClientTls;
pub use tls_server::{ServerTls, ServerTlsFiles};

use axum::http::Method;
use axum::response::IntoResponse;
use axum::Router;
use shoal_catalog::{Catalog, Check, HealthStatus, Node, Registration, Registry};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Who this server is, as its API reports it.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// This server's node name (the node `/v1/agent/*` registers on).
    pub node_name: String,
    /// Node ID (a UUID) reported by `/v1/agent/self`.
    pub node_id: String,
    /// Datacenter name; `?dc=` must name it or be empty.
    pub datacenter: String,
    /// Address of this node in the catalog.
    pub node_address: String,
    /// Whether this is a server (`false` for an agent), as
    /// `/v1/agent/self` reports it.
    pub server: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            node_name: "shoal".into(),
            node_id: String::new(),
            datacenter: "dc1".into(),
            node_address: "127.0.0.1".into(),
            server: true,
        }
    }
}

/// Metrics of something served beside the API (the proxy in `shoal
/// dev`), read at each scrape of `/metrics` and `/v1/agent/metrics`.
pub type MetricSource = Arc<dyn Fn() -> Vec<shoal_catalog::metrics::Family> + Send + Sync>;

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    /// The catalog.
    pub registry: Arc<Registry>,
    /// Identity.
    pub config: Arc<ApiConfig>,
    /// Rendered answers shared by identical reads of one snapshot.
    cache: Arc<cache::ResponseCache>,
    /// `--access-log`: one line per request (see [`access`]).
    access_log: bool,
    /// More metrics than the registry's.
    metric_sources: Arc<Vec<MetricSource>>,
    /// When the API started (the rates of `/v1/agent/metrics`).
    started: std::time::Instant,
    /// User events this agent accepted (kept in memory, as Consul's).
    events: Arc<event_routes::EventLog>,
    /// Whether `/v1/shoal/stream` is offered (`--no-stream` turns it off,
    /// so clients fall back to blocking queries as against a real Consul).
    stream: bool,
    /// The live servers, when several share the catalog (etcd).
    servers: Option<Arc<dyn ServerSet>>,
    /// Token resolution (`--acl-enabled`; off by default).
    acl: Arc<acl::AclResolver>,
    /// On an agent: tokens resolved by the servers.
    remote_acl: Option<Arc<acl_remote::RemoteAcl>>,
}

/// The servers sharing a catalog, for `/v1/status/leader` and
/// `/v1/status/peers` (a lone server reports itself).
pub trait ServerSet: Send + Sync + 'static {
    /// The leader's address, `None` while it is not known.
    fn leader(&self) -> Option<String>;
    /// Every live server's address.
    fn peers(&self) -> Vec<String>;
}

impl ApiState {
    /// The state of an API over `registry`.
    pub fn new(registry: Arc<Registry>, config: Arc<ApiConfig>) -> Self {
        ApiState {
            registry,
            config,
            cache: Arc::default(),
            access_log: false,
            metric_sources: Arc::default(),
            started: std::time::Instant::now(),
            events: Arc::default(),
            stream: true,
            servers: None,
            acl: Arc::default(),
            remote_acl: None,
        }
    }

    /// An agent's API: callers' tokens are resolved by `servers`, which
    /// decide whether ACLs are on.
    pub fn with_remote_acl(mut self, servers: RemoteCatalog) -> Self {
        self.remote_acl = Some(Arc::new(acl_remote::RemoteAcl::new(servers)));
        self
    }

    /// With ACLs as `config` says (see [`acl`]).
    pub fn with_acl(mut self, config: acl::AclConfig) -> Self {
        self.acl = Arc::new(acl::AclResolver::new(config));
        self
    }

    /// The token resolver (DNS filters its answers with it).
    pub fn acl(&self) -> Arc<acl::AclResolver> {
        self.acl.clone()
    }

    /// With `false`: no change stream; `/v1/shoal/stream` answers 404.
    pub fn with_stream(mut self, on: bool) -> Self {
        self.stream = on;
        self
    }

    /// The live servers sharing this catalog (etcd).
    pub fn with_servers(mut self, servers: Arc<dyn ServerSet>) -> Self {
        self.servers = Some(servers);
        self
    }

    /// With `--access-log`: logs one line per request.
    pub fn with_access_log(mut self, on: bool) -> Self {
        self.access_log = on;
        self
    }

    /// Also reports `source`'s metrics on `/metrics` and `/v1/agent/metrics`.
    pub fn with_metrics(mut self, source: MetricSource) -> Self {
        Arc::make_mut(&mut self.metric_sources).push(source);
        self
    }

    /// A JSON answer for `ctx`'s request read from `snapshot`: `render`
    /// runs once per snapshot and request key however many readers ask.
    pub(crate) fn cached_json(
        &self,
        ctx: &request::Ctx,
        snapshot: &shoal_catalog::State,
        index: u64,
        render: impl FnOnce() -> ApiResult<Vec<u8>>,
    ) -> ApiResult<axum::response::Response> {
        let body = self.cache.body(&ctx.cache_key, snapshot.index(), render)?;
        Ok(response::json_body(Some(index), body))
    }

    /// Like [`ApiState::cached_json`], for a render that also says whether
    /// ACLs left something out (the answer then says so).
    pub(crate) fn cached_json_filtered(
        &self,
        ctx: &request::Ctx,
        snapshot: &shoal_catalog::State,
        index: u64,
        render: impl FnOnce() -> ApiResult<(Vec<u8>, bool)>,
    ) -> ApiResult<axum::response::Response> {
        let (body, cut) = self
            .cache
            .body_filtered(&ctx.cache_key, snapshot.index(), render)?;
        Ok(response::filtered(
            response::json_body(Some(index), body),
            cut,
        ))
    }
}

/// The Consul version whose API shoal follows; reported by `/v1/agent/self`
/// for clients that gate features on it.
pub const CONSUL_COMPAT_VERSION: &str = "1.17.0";

/// The full `/v1` router (and `/metrics`).
pub fn router(state: ApiState) -> Router {
    let routes = Router::new()
        .merge(catalog_routes::routes())
        .merge(health_routes::routes())
        .merge(agent_routes::routes())
        .merge(kv_routes::routes())
        .merge(status_routes::routes())
        .merge(metrics_routes::routes())
        .merge(stream_routes::routes())
        .merge(coordination_routes())
        .merge(ui_routes::routes())
        .merge(acl_routes::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    with_layers(routes, state)
}

/// What wraps every route of a server's or an agent's API, outermost
/// first: the request log, then what the API says while the store fails
/// (see [`edge`]).
fn with_layers(routes: Router<ApiState>, state: ApiState) -> Router {
    routes
        .layer(edge::EdgeLayer::new(state.clone()))
        .with_state(state)
}

/// Sessions, transactions, events, prepared queries and the agent and
/// catalog endpoints that coordination tools call.
fn coordination_routes() -> Router<ApiState> {
    Router::new()
        .merge(session_routes::routes())
        .merge(txn_routes::routes())
        .merge(event_routes::routes())
        .merge(query_routes::routes())
        .merge(coordinate_routes::routes())
        .merge(node_services_routes::routes())
        .merge(snapshot_routes::routes())
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("Not found: no endpoint at {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> impl IntoResponse {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} not allowed on {}", uri.path()),
    )
}

/// How long in-flight requests (blocking queries included) get to finish
/// once shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Serves the API on an already bound listener until `cancel` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, state, Router::new(), cancel).await
}

/// Like [`serve`], with more routes beside the API (the binary adds the
/// proxy's `/v1/proxy/stats` and `/metrics` this way).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: ApiState,
    extra: Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    serve_router(listener, router(state).merge(extra), cancel).await
}

/// Serves any router (an agent's, say) on an already bound listener until
/// `cancel` fires, with the same grace for in-flight requests.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    http1::serve(listener, app, cancel, SHUTDOWN_GRACE).await
}

/// Like [`serve_router`], over TLS: HTTPS beside the plain listeners (as
/// Consul's `ports.https`), with `tls`'s current certificate.
pub async fn serve_router_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Arc<ServerTls>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    tls_server::serve_tls(listener, app, tls, cancel, SHUTDOWN_GRACE).await
}

pub use shoal_catalog::NODE_HEALTH_CHECK;

/// Registers this server's own node with its liveness check, as a Consul
/// server does for itself. Idempotent: an unchanged node writes nothing.
pub async fn register_local_node(
    registry: &Registry,
    config: &ApiConfig,
) -> shoal_catalog::Result<u64> {
    let node = Node {
        id: config.node_id.clone(),
        name: config.node_name.clone(),
        address: config.node_address.clone(),
        datacenter: config.datacenter.clone(),
        tagged_addresses: [("lan".to_string(), config.node_address.clone())].into(),
        ..Default::default()
    };
    let check = Check {
        check_id: NODE_HEALTH_CHECK.into(),
        name: "Serf Health Status".into(),
        status: HealthStatus::Passing,
        output: "Agent alive and reachable".into(),
        ..Default::default()
    };
    registry
        .register(Registration {
            node,
            checks: vec![check],
            ..Default::default()
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        body: &str,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    async fn app() -> Router {
        let registry = Registry::in_memory();
        let config = ApiConfig::default();
        register_local_node(&registry, &config).await.unwrap();
        router(ApiState::new(registry, Arc::new(config)))
    }

    #[tokio::test]
    async fn routes_answer_with_consul_statuses_and_headers() {
        let app = app().await;
        // (method, uri, body, status, body starts with)
        let cases = [
            ("GET", "/v1/catalog/services", "", StatusCode::OK, "{}"),
            ("PUT", "/v1/kv/a", "1", StatusCode::OK, "true"),
            ("GET", "/v1/kv/a?raw", "", StatusCode::OK, "1"),
            ("GET", "/v1/kv/b", "", StatusCode::NOT_FOUND, ""),
            ("GET", "/v1/unknown", "", StatusCode::NOT_FOUND, "Not found"),
            (
                "PATCH",
                "/v1/kv/a",
                "",
                StatusCode::METHOD_NOT_ALLOWED,
                "method PATCH not allowed",
            ),
            (
                "GET",
                "/v1/status/leader",
                "",
                StatusCode::OK,
                "\"127.0.0.1:8300\"",
            ),
        ];
        for (method, uri, body, status, starts) in cases {
            let (got, _, text) = call(&app, method, uri, body).await;
            assert_eq!(got, status, "{method} {uri}: {text}");
            assert!(text.starts_with(starts), "{method} {uri}: {text:?}");
        }
        let (_, headers, _) = call(&app, "GET", "/v1/health/service/x", "").await;
        assert_eq!(headers["X-Consul-KnownLeader"], "true");
        assert_eq!(headers["X-Consul-LastContact"], "0");
        assert!(
            headers["X-Consul-Index"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                >= 1
        );
        assert_eq!(headers["content-type"], "application/json");
    }

    #[tokio::test]
    async fn pretty_output_is_indented() {
        let app = app().await;
        let (_, _, text) = call(&app, "GET", "/v1/catalog/datacenters?pretty", "").await;
        assert_eq!(text, "[\n  \"dc1\"\n]\n");
    }
}
