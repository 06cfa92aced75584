//! `GET /v1/shoal/stream`: the catalog's changes as one long-lived chunked
//! response of newline-delimited JSON events (see `docs/api-stream.md`),
//! so a remote consumer of the whole catalog needs one connection, not one
//! blocking query per service.

use crate::error::{ApiError, ApiResult};
use crate::ApiState;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde::Deserialize;
use shoal_catalog::{Catalog, StreamEvent, StreamRequest};
use std::time::Duration;

/// A `Synced` is sent at least this often, so both ends notice a dead
/// connection (the client gives up after a few missed ones).
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// Events are written in chunks of about this many bytes.
const CHUNK: usize = 64 * 1024;

pub(crate) fn routes() -> Router<ApiState> {
    Router::new().route("/v1/shoal/stream", get(stream))
}

#[derive(Debug, Deserialize)]
struct Params {
    /// The last `Synced` index the client saw; absent or 0: a snapshot.
    #[serde(default)]
    index: Option<String>,
    /// Follow KV keys under this prefix too.
    #[serde(default)]
    kv: Option<String>,
    /// `delta=1`: a change of some instances of a service comes as an
    /// `Instances` event with just those.
    #[serde(default)]
    delta: Option<String>,
    /// Only say that the stream is there (204), without starting one.
    #[serde(default)]
    probe: Option<String>,
}

/// The stream carries the whole catalog: its reader must be allowed to
/// read every service and node (`service_prefix ""` and `node_prefix ""`).
async fn stream(
    State(api): State<ApiState>,
    access: std::sync::Arc<crate::acl::Access>,
    Query(p): Query<Params>,
) -> ApiResult<Response> {
    use shoal_catalog::acl::Resource;
    for (r, what) in [(Resource::Service, "service"), (Resource::Node, "node")] {
        if !access.authz.read_prefix(r, "") {
            return Err(ApiError::permission_denied(
                &access.accessor,
                &format!("{what}:read"),
                "every name (the stream carries the whole catalog)",
            ));
        }
    }
    if let Some(kv) = &p.kv {
        if !access.authz.read_prefix(Resource::Key, kv) {
            return Err(ApiError::permission_denied(
                &access.accessor,
                "key:read",
                &format!("every key under {kv:?}"),
            ));
        }
    }
    if !api.stream {
        return Err(ApiError::not_found(
            "Not found: the change stream is off on this server (--no-stream)",
        ));
    }
    if p.probe.is_some() {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        return Ok(resp);
    }
    let index = match p.index.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(raw) => raw.parse::<u64>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("Invalid index {raw:?}: expected a non-negative integer"),
            )
        })?,
    };
    let delta = match p.delta.as_deref().map(str::trim) {
        None | Some("0") | Some("false") => false,
        Some("" | "1" | "true") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("Invalid delta {other:?}: expected 1, true, 0 or false"),
            ))
        }
    };
    let req = StreamRequest {
        index,
        kv_prefix: p.kv,
        delta,
    };
    let events = api.registry.subscribe(req).await?;
    let body = futures::stream::unfold((events, index), next_chunk);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

type Events = shoal_catalog::Subscription;

/// The next chunk: every event ready now (up to [`CHUNK`] bytes), or a
/// heartbeat when none came for [`HEARTBEAT`].
async fn next_chunk(
    (mut events, mut synced): (Events, u64),
) -> Option<(Result<Bytes, std::convert::Infallible>, (Events, u64))> {
    let first = match tokio::time::timeout(HEARTBEAT, events.recv()).await {
        Ok(Some(Ok(e))) => e,
        Ok(Some(Err(_)) | None) => return None,
        Err(_) => StreamEvent::Synced { index: synced },
    };
    let mut buf = Vec::with_capacity(4096);
    let mut next = Some(first);
    while let Some(event) = next {
        if let StreamEvent::Synced { index } = &event {
            synced = *index;
        }
        // Serializing our own types into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut buf, &event);
        buf.push(b'\n');
        if buf.len() >= CHUNK {
            break;
        }
        next = events.try_recv().ok().and_then(|e| e.ok());
    }
    Some((Ok(Bytes::from(buf)), (events, synced)))
}
