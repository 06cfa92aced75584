//! `/v1/health/*`: instances with their checks, and checks by state.

use crate::catalog_routes::{
    blocking_list, node_meta_filter, parse_filter, service_entries, wait_for_service,
};
use crate::error::{ApiError, ApiResult};
use crate::request::Ctx;
use crate::response::render;
use crate::{filter, ApiState};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use shoal_catalog::{HealthStatus, Topic};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/health/service/{service}", get(service))
        .route("/v1/health/checks/{service}", get(checks))
        .route("/v1/health/state/{state}", get(state))
        .route("/v1/health/node/{node}", get(node))
}

async fn service(
    State(api): State<ApiState>,
    Path(name): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    let expr = parse_filter(&ctx)?;
    let passing = ctx.params.has("passing");
    node_meta_filter(&ctx)?;
    let (snapshot, index) = wait_for_service(&api, &name, &ctx).await;
    api.cached_json_filtered(&ctx, &snapshot, index, || {
        let (mut entries, cut) = service_entries(&snapshot, &name, &ctx)?;
        if passing {
            entries.retain(|e| e.aggregate_status() == HealthStatus::Passing);
        }
        Ok((
            render(ctx.pretty, &filter::apply(expr.as_ref(), entries)),
            cut,
        ))
    })
}

async fn checks(
    State(api): State<ApiState>,
    Path(name): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    blocking_list(&api, &ctx, Topic::Service(name.clone()), |s| {
        s.service_checks(&name)
    })
    .await
}

async fn state(
    State(api): State<ApiState>,
    Path(state): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    let wanted = match state.as_str() {
        "any" => None,
        s => Some(HealthStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid state {s:?}: must be any, passing, warning or critical"
            ))
        })?),
    };
    blocking_list(&api, &ctx, Topic::Checks, |s| s.checks_in_state(wanted)).await
}

async fn node(
    State(api): State<ApiState>,
    Path(name): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    blocking_list(&api, &ctx, Topic::Node(name.clone()), |s| {
        let checks = s.checks_on_node(&name).cloned().collect();
        (s.node_index(&name), checks)
    })
    .await
}
