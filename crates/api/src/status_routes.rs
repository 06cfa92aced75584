//! `/v1/status/*`: a lone server is its own leader and only peer; servers
//! sharing a catalog on etcd report the live ones.

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
/// With several servers on etcd, the oldest live one (see the binary's
/// `etcd/cluster.rs`), by its HTTP address.
async fn leader(State(api): State<ApiState>, ctx: Ctx) -> Response {
    let leader = match (crate::leadership::failure(&api), &api.servers) {
        (Some(_), _) => String::new(),
        (None, Some(servers)) => servers.leader().unwrap_or_default(),
        (None, None) => server_addr(&api),
    };
    json(None, ctx.pretty, &leader)
}

async fn peers(State(api): State<ApiState>, ctx: Ctx) -> Response {
    if let Some(servers) = &api.servers {
        return json(None, ctx.pretty, &servers.peers());
    }
    json(None, ctx.pretty, &[server_addr(&api)])
}
