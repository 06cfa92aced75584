//! `/v1/catalog/node-services/:node`: a node and its instances as a list
//! (Consul's newer form of `/v1/catalog/node/:node`); an unknown node is
//! `{"Node": null, "Services": []}`, as Consul answers.

use crate::error::ApiError;
use crate::request::Ctx;
use crate::response::json;
use crate::ApiState;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::json as j;
use shoal_catalog::Topic;

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/catalog/node-services/{node}", get(node_services))
        .route("/v1/catalog/node-services/", get(missing))
}

async fn missing() -> ApiError {
    ApiError::bad_request("Missing node name")
}

async fn node_services(
    State(api): State<ApiState>,
    Path(name): Path<String>,
    ctx: Ctx,
) -> Response {
    let out = api
        .registry
        .block(&[Topic::Node(name.clone())], ctx.q, |s| {
            let readable = ctx.acl.can_read(shoal_catalog::acl::Resource::Node, &name);
            let mut services = if readable {
                s.node_services(&name)
            } else {
                Vec::new()
            };
            ctx.acl.retain(&mut services);
            let node = s.node(&name).filter(|_| readable);
            let body = j!({ "Node": node, "Services": services });
            (s.node_index(&name), body)
        })
        .await;
    json(Some(out.index), ctx.pretty, &out.value)
}
