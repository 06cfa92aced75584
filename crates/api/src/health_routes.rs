//! `/v1/health/*`: instances with their checks, and checks by state.

use crate::catalog_routes::{
    filtered, node_meta_filter, parse_filter, service_entries, wait_for_service,
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
    api.cached_json(&ctx, &snapshot, index, || {
        let mut entries = service_entries(&snapshot, &name, &ctx)?;
        if passing {
            entries.retain(|e| e.aggregate_status() == HealthStatus::Passing);
        }
        Ok(render(ctx.pretty, &filter::apply(expr.as_ref(), entries)))
    })
}

async fn checks(
    State(api): State<ApiState>,
    Path(name): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    let expr = parse_filter(&ctx)?;
    let out = api
        .registry
        .block(&[Topic::Service(name.clone())], ctx.q, |s| {
            s.service_checks(&name)
        })
        .await;
    Ok(filtered(out.index, &ctx, expr.as_ref(), out.value))
}

async fn state(
    State(api): State<ApiState>,
    Path(state): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    let expr = parse_filter(&ctx)?;
    let wanted = match state.as_str() {
        "any" => None,
        s => Some(HealthStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid state {s:?}: must be any, passing, warning or critical"
            ))
        })?),
    };
    let out = api
        .registry
        .block(&[Topic::Checks], ctx.q, |s| s.checks_in_state(wanted))
        .await;
    Ok(filtered(out.index, &ctx, expr.as_ref(), out.value))
}

async fn node(
    State(api): State<ApiState>,
    Path(name): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    let expr = parse_filter(&ctx)?;
    let out = api
        .registry
        .block(&[Topic::Node(name.clone())], ctx.q, |s| {
            (
                s.node_index(&name),
                s.checks_on_node(&name).cloned().collect::<Vec<_>>(),
            )
        })
        .await;
    Ok(filtered(out.index, &ctx, expr.as_ref(), out.value))
}
