//! The agent endpoints load balancers and orchestrators probe:
//! `/v1/agent/health/service/name/:name` and `/id/:id` (200 passing, 429
//! warning, 503 critical, 404 unknown, the status as text with
//! `?format=text`), and `/v1/agent/maintenance` (node maintenance: a
//! critical `_node_maintenance` check, as Consul registers).

use crate::agent_routes::{agent_service, register_local};
use crate::error::{ApiError, ApiResult};
use crate::request::Ctx;
use crate::response::{empty, render};
use crate::ApiState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use serde_json::{json as j, Value};
use shoal_catalog::{Check, Command, HealthStatus, Service, State as CatalogState};
use std::sync::Arc;

/// Check ID of node maintenance, as Consul names it.
pub const NODE_MAINTENANCE_CHECK: &str = "_node_maintenance";

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/agent/health/service/name/{name}", get(by_name))
        .route("/v1/agent/health/service/name/", get(missing_name))
        .route("/v1/agent/health/service/id/{id}", get(by_id))
        .route("/v1/agent/health/service/id/", get(missing_id))
        .route("/v1/agent/maintenance", put(node_maintenance))
}

async fn missing_name() -> ApiError {
    ApiError::bad_request("Missing service Name")
}

async fn missing_id() -> ApiError {
    ApiError::bad_request("Missing serviceID")
}

/// Status code of an aggregate status (Consul's `agentHealthService`).
fn code(status: HealthStatus) -> StatusCode {
    match status {
        HealthStatus::Passing => StatusCode::OK,
        HealthStatus::Warning => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// One local instance with its checks (node checks included) and their
/// aggregate.
fn service_health(
    snapshot: &CatalogState,
    node: &str,
    svc: &Service,
    dc: &str,
) -> (HealthStatus, Value) {
    let checks: Vec<Arc<Check>> = snapshot
        .checks_on_node(node)
        .filter(|c| c.service_id.is_empty() || c.service_id == svc.id)
        .cloned()
        .collect();
    let status = checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(HealthStatus::Passing);
    let body = j!({
        "AggregatedStatus": status.as_str(),
        "Service": agent_service(svc, dc),
        "Checks": checks,
    });
    (status, body)
}

fn answer(status: StatusCode, text: bool, reason: &str, body: &Value, pretty: bool) -> Response {
    let (bytes, content_type) = if text {
        (reason.as_bytes().to_vec(), "text/plain")
    } else {
        (render(pretty, body), "application/json")
    };
    let mut resp = (status, bytes).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn wants_text(ctx: &Ctx) -> bool {
    ctx.params.get("format") == Some("text")
}

/// Needs `service:read` on the service, as Consul's.
async fn by_name(
    State(api): State<ApiState>,
    Path(name): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    ctx.acl
        .need_read(shoal_catalog::acl::Resource::Service, &name)?;
    let snapshot = api.registry.snapshot();
    let node = &api.config.node_name;
    let mut worst: Option<HealthStatus> = None;
    let mut list = Vec::new();
    for svc in snapshot
        .node_services(node)
        .iter()
        .filter(|s| s.name == name)
    {
        let (status, body) = service_health(&snapshot, node, svc, &api.config.datacenter);
        worst = Some(worst.map_or(status, |w| w.max(status)));
        list.push(body);
    }
    let (status, reason) = match worst {
        Some(s) => (code(s), s.as_str().to_string()),
        None => (
            StatusCode::NOT_FOUND,
            format!("ServiceName {name} Not Found"),
        ),
    };
    Ok(answer(
        status,
        wants_text(&ctx),
        &reason,
        &Value::Array(list),
        ctx.pretty,
    ))
}

async fn by_id(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    let snapshot = api.registry.snapshot();
    let node = &api.config.node_name;
    let found = snapshot.service(node, &id);
    if let Some(svc) = &found {
        ctx.acl
            .need_read(shoal_catalog::acl::Resource::Service, &svc.name)?;
    }
    let Some(svc) = found else {
        let reason = format!("ServiceId {id} not found");
        let body = j!({"AggregatedStatus": "critical", "Service": null, "Checks": null});
        return Ok(answer(
            StatusCode::NOT_FOUND,
            wants_text(&ctx),
            &reason,
            &body,
            ctx.pretty,
        ));
    };
    let (status, body) = service_health(&snapshot, node, &svc, &api.config.datacenter);
    Ok(answer(
        code(status),
        wants_text(&ctx),
        status.as_str(),
        &body,
        ctx.pretty,
    ))
}

/// Consul's `strconv.ParseBool`.
fn parse_bool(raw: &str) -> Option<bool> {
    match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

async fn node_maintenance(State(api): State<ApiState>, ctx: Ctx) -> ApiResult<Response> {
    let Some(raw) = ctx.params.get("enable") else {
        return Err(ApiError::bad_request("Missing value for enable"));
    };
    let enable = parse_bool(raw)
        .ok_or_else(|| ApiError::bad_request(format!("Invalid value for enable: {raw:?}")))?;
    if enable {
        let notes = match ctx.params.get("reason").filter(|r| !r.is_empty()) {
            Some(r) => r.to_string(),
            None => "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.".to_string(),
        };
        let check = Check {
            check_id: NODE_MAINTENANCE_CHECK.into(),
            name: "Node Maintenance Mode".into(),
            status: HealthStatus::Critical,
            notes,
            ..Default::default()
        };
        register_local(&api, &ctx.acl, None, vec![check]).await?;
    } else {
        crate::acl_write::vet_registration(
            &ctx.acl,
            &api.registry.snapshot(),
            &shoal_catalog::Registration {
                node: crate::agent_routes::local_node(&api),
                checks: vec![Check::default()],
                ..Default::default()
            },
        )?;
        api.registry
            .write(Command::DeregisterCheck {
                node: api.config.node_name.clone(),
                check_id: NODE_MAINTENANCE_CHECK.into(),
            })
            .await?;
    }
    Ok(empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_bools_as_consul() {
        let cases = [
            (HealthStatus::Passing, 200),
            (HealthStatus::Warning, 429),
            (HealthStatus::Critical, 503),
        ];
        for (s, want) in cases {
            assert_eq!(code(s).as_u16(), want, "{s:?}");
        }
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }
}
