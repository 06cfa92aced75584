//! `/v1/coordinate/*`: network coordinates. shoal runs no gossip, so it
//! has none to report; tools that read them (sorting by `?near=`, `consul
//! rtt`) get Consul's shapes, empty.

use crate::request::Ctx;
use crate::response::json;
use crate::ApiState;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::json as j;
use shoal_catalog::Topic;

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/coordinate/datacenters", get(datacenters))
        .route("/v1/coordinate/nodes", get(nodes))
}

async fn datacenters(State(api): State<ApiState>, ctx: Ctx) -> Response {
    let body = j!([{ "Datacenter": api.config.datacenter, "AreaID": "wan", "Coordinates": [] }]);
    json(None, ctx.pretty, &body)
}

async fn nodes(State(api): State<ApiState>, ctx: Ctx) -> Response {
    let out = api
        .registry
        .block(&[Topic::Nodes], ctx.q, |s| (s.nodes().0, ()))
        .await;
    json(Some(out.index), ctx.pretty, &Vec::<()>::new())
}
