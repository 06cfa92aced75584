//! The API of an agent: `/v1/agent/*` answered from the agent's own local
//! state, every other call (catalog, health, KV, status) passed on to a
//! server as it came, as a Consul client agent does. Tools pointed at the
//! agent (consul-template, `consul` itself, registrators) work unchanged.

use crate::error::ApiError;
use crate::request::MAX_JSON_BODY;
use crate::{agent_routes, ApiState, RemoteCatalog};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// Headers that belong to one connection, never passed on.
const HOP_BY_HOP: &[header::HeaderName] = &[
    header::CONNECTION,
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TE,
    header::UPGRADE,
];

fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    for name in HOP_BY_HOP {
        out.remove(name);
    }
    out.remove("keep-alive");
    out
}

/// The router of a `shoal agent`; see the module doc.
pub fn agent_router(state: ApiState, servers: RemoteCatalog) -> Router {
    let routes = agent_routes::routes()
        .merge(crate::metrics_routes::routes())
        .merge(crate::ui_routes::routes())
        .fallback(move |req: Request| forward(servers.clone(), req));
    crate::with_layers(routes, state)
}

async fn forward(servers: RemoteCatalog, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_JSON_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body too large: more than {MAX_JSON_BODY} bytes"),
            )
            .into_response()
        }
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let answer = servers
        .forward(parts.method, path, end_to_end(&parts.headers), body)
        .await;
    let resp = match answer {
        Ok(resp) => resp,
        Err(e) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("No known Consul servers answered: {e}"),
            )
            .into_response()
        }
    };
    let status = resp.status();
    let headers = end_to_end(resp.headers());
    // Passed on as it arrives: a blocking query's answer is one piece,
    // but the change stream (`/v1/shoal/stream`) never ends, and a
    // buffered copy of it would never be sent.
    let body = futures::stream::unfold(Some(resp), |resp| async move {
        let mut resp = resp?;
        match resp.chunk().await {
            Ok(Some(bytes)) => Some((Ok(bytes), Some(resp))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut out = Response::new(Body::from_stream(body));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}
