//! The API's request log. With `--access-log`, one line per request on
//! target `shoal::access`, with the proxy's fields (`client`, `method`,
//! `host`, `path`, `status`, `ms`) plus `query`. Whatever the flag, each
//! refused request (a 4xx or 5xx the API answered itself) is logged at
//! debug on target `shoal::api` with the reason it was given, so a client
//! incompatibility shows in the logs and not only in the client.

use crate::ApiState;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The message an [`crate::ApiError`] answered, carried in the response's
/// extensions for the log.
#[derive(Clone, Debug)]
pub(crate) struct Refusal(pub Arc<str>);

/// Whether requests are logged at all (the access log, or refusals at
/// debug). When not, [`log`] is not in a request's way.
pub(crate) fn wanted(api: &ApiState) -> bool {
    api.access_log || tracing::enabled!(target: "shoal::api", tracing::Level::DEBUG)
}

/// Logs `req` as the module doc says; `next` answers it.
pub(crate) async fn log<F>(
    api: &ApiState,
    req: Request,
    next: impl FnOnce(Request) -> F,
) -> Response
where
    F: std::future::Future<Output = Response>,
{
    let started = Instant::now();
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "-".to_string(), |c| c.0.to_string());
    let method = req.method().clone();
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let resp = next(req).await;
    let status = resp.status().as_u16();
    if let Some(Refusal(reason)) = resp.extensions().get::<Refusal>() {
        tracing::debug!(target: "shoal::api", %client, %method, %path, %query, status, reason = %reason.trim_end(), "request refused");
    }
    if api.access_log {
        tracing::info!(target: "shoal::access", %client, %method, %host, %path, %query, status, ms = started.elapsed().as_millis() as u64, "request");
    }
    resp
}
