//! `/v1/status/*`: this server is its own leader and only peer.

use crate::request::Ctx;
use crate::response::json;
use crate::ApiState;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/status/leader", get(leader))
        .route("/v1/status/peers", get(peers))
}

/// The server RPC address Consul reports: this node's address, port 8300.
fn server_addr(api: &ApiState) -> String {
    let host = &api.config.node_address;
    if host.contains(':') {
        format!("[{host}]:8300")
    } else {
        format!("{host}:8300")
    }
}

/// This server while its store can commit; `""` (Consul's answer when
/// there is no leader) while it cannot: see [`crate::leadership`].
async fn leader(State(api): State<ApiState>, ctx: Ctx) -> Response {
    let leader = match crate::leadership::failure(&api) {
        None => server_addr(&api),
        Some(_) => String::new(),
    };
    json(None, ctx.pretty, &leader)
}

async fn peers(State(api): State<ApiState>, ctx: Ctx) -> Response {
    json(None, ctx.pretty, &[server_addr(&api)])
}
