//! `/v1/snapshot`: GET saves the whole catalog and KV, PUT restores one
//! (see `shoal_catalog::snapshot` for the format). Consul's own snapshot
//! is a Raft archive no other tool reads; shoal's is its records, so the
//! same file moves a catalog between the embedded store and etcd.

use crate::error::{ApiError, ApiResult};
use crate::request::read_body;
use crate::ApiState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use shoal_catalog::snapshot::{Snapshot, MAX_SNAPSHOT_BYTES};
use shoal_catalog::Command;
use std::sync::Arc;

pub(crate) fn routes() -> Router<ApiState> {
    Router::new().route("/v1/snapshot", get(save).put(restore))
}

/// Snapshots hold every secret: management tokens only, as Consul.
async fn save(State(api): State<ApiState>, access: Arc<crate::acl::Access>) -> ApiResult<Response> {
    access.need_acl_write()?;
    let snapshot = api.registry.snapshot();
    let index = snapshot.index();
    let bytes = Snapshot::of(&snapshot).encode();
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-shoal-snapshot"),
    );
    h.insert("X-Consul-Index", HeaderValue::from(index));
    Ok(resp)
}

async fn restore(
    State(api): State<ApiState>,
    access: Arc<crate::acl::Access>,
    body: Body,
) -> ApiResult<Response> {
    access.need_acl_write()?;
    let bytes = read_body(body, MAX_SNAPSHOT_BYTES, |max| {
        format!("Snapshot too large, max size: {max} bytes")
    })
    .await?;
    let snapshot = Snapshot::decode(&bytes)?;
    let outcome = api
        .registry
        .write(Command::Restore(Arc::new(snapshot)))
        .await
        .map_err(ApiError::from)?;
    let mut resp = ().into_response();
    resp.headers_mut()
        .insert("X-Consul-Index", HeaderValue::from(outcome.index));
    Ok(resp)
}
