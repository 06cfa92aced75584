//! shoal's Consul-compatible HTTP API (`/v1/...`) over the in-process
//! [`Registry`], and [`RemoteCatalog`], a client of that same API (or of a
//! real Consul) that implements the catalog's [`Catalog`] trait.
//!
//! [`Catalog`]: shoal_catalog::Catalog
#![forbid(unsafe_code)]

mod agent_routes;
mod catalog_routes;
mod dto;
mod error;
pub mod filter;
mod health_routes;
mod kv_routes;
mod remote;

pub mod request;
pub mod response;
mod status_routes;

pub use error::{ApiError, ApiResult};
pub use remote::{RemoteCatalog, RemoteConfig};

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
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            node_name: "shoal".into(),
            node_id: String::new(),
            datacenter: "dc1".into(),
            node_address: "127.0.0.1".into(),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    /// The catalog.
    pub registry: Arc<Registry>,
    /// Identity.
    pub config: Arc<ApiConfig>,
}

/// The Consul version whose API shoal follows; reported by `/v1/agent/self`
/// for clients that gate features on it.
pub const CONSUL_COMPAT_VERSION: &str = "1.17.0";

/// The full `/v1` router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .merge(catalog_routes::routes())
        .merge(health_routes::routes())
        .merge(agent_routes::routes())
        .merge(kv_routes::routes())
        .merge(status_routes::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
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
    let app = router(state);
    let graceful =
        axum::serve(listener, app).with_graceful_shutdown(cancel.clone().cancelled_owned());
    tokio::select! {
        r = graceful => r,
        _ = async { cancel.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => Ok(()),
    }
}

/// Check ID of the node liveness check every Consul node carries.
pub const NODE_HEALTH_CHECK: &str = "serfHealth";

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
