//! `/v1/query`: prepared queries — create (`POST`), list, read, update,
//! delete, and `/v1/query/:id/execute` (by ID or name), with Consul's
//! shapes. One datacenter: `Failovers` is always 0.

use crate::error::{ApiError, ApiResult};
use crate::request::{read_body, Ctx, MAX_JSON_BODY};
use crate::response::{empty, json};
use crate::session_routes::new_uuid;
use crate::ApiState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use rand::seq::SliceRandom;
use serde_json::json as j;
use shoal_catalog::acl::Resource;
use shoal_catalog::query::PreparedQuery;
use shoal_catalog::{Command, Topic};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/query", get(list).post(create))
        .route("/v1/query/{id}", get(read).put(update).delete(delete))
        .route("/v1/query/{id}/execute", get(execute))
}

fn not_found() -> ApiError {
    ApiError::not_found("Query not found")
}

async fn query_body(body: Body) -> ApiResult<PreparedQuery> {
    let bytes = read_body(body, MAX_JSON_BODY, |max| {
        format!("Request body too large, max size: {max} bytes")
    })
    .await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))
}

async fn create(State(api): State<ApiState>, ctx: Ctx, body: Body) -> ApiResult<Response> {
    let mut q = query_body(body).await?;
    ctx.acl.need_write(Resource::Query, &q.name)?;
    q.id = new_uuid();
    let id = q.id.clone();
    api.registry.write(Command::QueryPut(Box::new(q))).await?;
    Ok(json(None, false, &j!({ "ID": id })))
}

async fn update(
    State(api): State<ApiState>,
    access: std::sync::Arc<crate::acl::Access>,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let old = api.registry.snapshot().query(&id).filter(|q| q.id == id);
    let old = old.ok_or_else(not_found)?;
    access.need_write(Resource::Query, &old.name)?;
    let mut q = query_body(body).await?;
    access.need_write(Resource::Query, &q.name)?;
    q.id = id;
    api.registry.write(Command::QueryPut(Box::new(q))).await?;
    Ok(empty())
}

async fn delete(
    State(api): State<ApiState>,
    access: std::sync::Arc<crate::acl::Access>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    if let Some(old) = api.registry.snapshot().query(&id).filter(|q| q.id == id) {
        access.need_write(Resource::Query, &old.name)?;
    }
    api.registry.write(Command::QueryDelete { id }).await?;
    Ok(empty())
}

async fn list(State(api): State<ApiState>, ctx: Ctx) -> Response {
    let out = api
        .registry
        .block(&[Topic::Queries], ctx.q, |s| s.queries())
        .await;
    let mut out = out;
    let before = out.value.len();
    out.value
        .retain(|q| ctx.acl.can_read(Resource::Query, &q.name));
    let cut = ctx.acl.enforced && out.value.len() < before;
    crate::response::filtered(json(Some(out.index), ctx.pretty, &out.value), cut)
}

async fn read(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    let out = api
        .registry
        .block(&[Topic::Queries], ctx.q, |s| (s.queries().0, s.query(&id)))
        .await;
    let q = out.value.filter(|q| q.id == id).ok_or_else(not_found)?;
    ctx.acl.need_read(Resource::Query, &q.name)?;
    Ok(json(Some(out.index), ctx.pretty, &[q]))
}

async fn execute(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    let limit = ctx.params.u64("limit", "limit")?;
    let snapshot = api.registry.snapshot();
    let q = snapshot.query(&id).ok_or_else(not_found)?;
    let (index, mut nodes) = snapshot.execute_query(&q);
    ctx.acl.retain(&mut nodes);
    nodes.shuffle(&mut rand::thread_rng());
    if let Some(n) = limit.filter(|n| *n > 0) {
        nodes.truncate(n as usize);
    }
    let body = j!({
        "Service": q.service.service,
        "Nodes": nodes,
        "DNS": { "TTL": q.dns.ttl },
        "Datacenter": api.config.datacenter,
        "Failovers": 0,
    });
    Ok(json(Some(index), ctx.pretty, &body))
}
