//! `/v1/session/*`: create, destroy, renew and read sessions, with
//! Consul's defaults (this node, its `serfHealth` check, a 15 s
//! lock-delay, `release`), its lock-delay leniency (a bare number under
//! 1000 means seconds) and its status codes (a session it cannot create is
//! a 500 with the reason, as Consul's RPC errors are).

use crate::acl::Access;
use crate::error::{ApiError, ApiResult};
use crate::request::{decode_json, read_body, Ctx, MAX_JSON_BODY};
use crate::response::{boolean, json};
use crate::{ApiState, NODE_HEALTH_CHECK};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, put};
use axum::Router;
use rand::Rng;
use serde_json::Value;
use shoal_catalog::acl::Resource;
use shoal_catalog::session::{ServiceCheck, DEFAULT_LOCK_DELAY};
use shoal_catalog::{duration, Behavior, Command, Session, Topic};
use std::time::Duration;

/// A lock-delay below this many nanoseconds was meant as seconds (Consul).
const LOCK_DELAY_SECONDS_BELOW: u64 = 1000;

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/session/create", put(create))
        .route("/v1/session/destroy/{id}", put(destroy))
        .route("/v1/session/renew/{id}", put(renew))
        .route("/v1/session/info/{id}", get(info))
        .route("/v1/session/node/{node}", get(node))
        .route("/v1/session/list", get(list))
        .route("/v1/session/destroy/", put(missing_session))
        .route("/v1/session/renew/", put(missing_session))
        .route("/v1/session/info/", get(missing_session))
        .route("/v1/session/node/", get(missing_node))
}

async fn missing_session() -> ApiError {
    ApiError::bad_request("Missing session")
}

async fn missing_node() -> ApiError {
    ApiError::bad_request("Missing node name")
}

/// A fresh random UUID (v4 layout), as Consul gives sessions.
pub(crate) fn new_uuid() -> String {
    let b: [u8; 16] = rand::thread_rng().gen();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]]),
    )
}

fn decode_failed(msg: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Request decode failed: {msg}"))
}

/// `LockDelay` as sent: a Go duration string or nanoseconds, either
/// read as seconds when under 1000 (Consul's `FixupLockDelay`).
fn lock_delay(v: &Value) -> ApiResult<Duration> {
    let nanos = match v {
        Value::String(s) => duration::parse(s)
            .map_err(decode_failed)?
            .as_nanos()
            .min(u64::MAX as u128) as u64,
        Value::Number(n) => {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.is_finite())
                .ok_or_else(|| decode_failed(format!("invalid LockDelay {n}")))? as u64
        }
        Value::Null => return Ok(DEFAULT_LOCK_DELAY),
        other => return Err(decode_failed(format!("invalid LockDelay {other}"))),
    };
    Ok(if nanos < LOCK_DELAY_SECONDS_BELOW {
        Duration::from_secs(nanos)
    } else {
        Duration::from_nanos(nanos)
    })
}

fn string_list(v: &Value, what: &str) -> ApiResult<Vec<String>> {
    match v {
        Value::Null => Ok(vec![]),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                other => Err(decode_failed(format!("invalid {what} entry {other}"))),
            })
            .collect(),
        other => Err(decode_failed(format!("invalid {what} {other}"))),
    }
}

fn str_field(obj: &serde_json::Map<String, Value>, key: &str) -> ApiResult<String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(decode_failed(format!("invalid {key} {other}"))),
    }
}

/// The session a create request asks for, with Consul's defaults.
fn session_from_body(api: &ApiState, body: &[u8]) -> ApiResult<Session> {
    let mut s = Session {
        id: new_uuid(),
        node: api.config.node_name.clone(),
        node_checks: vec![NODE_HEALTH_CHECK.to_string()],
        lock_delay: DEFAULT_LOCK_DELAY.as_nanos() as u64,
        ..Default::default()
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(s);
    }
    let value: Value = decode_json(body)?;
    let Value::Object(obj) = value else {
        return Err(decode_failed("expected a JSON object"));
    };
    // Naming any list of checks replaces the default serfHealth one.
    if ["checks", "nodechecks", "servicechecks"]
        .iter()
        .any(|k| obj.contains_key(*k))
    {
        s.node_checks.clear();
    }
    for key in ["checks", "nodechecks"] {
        if let Some(v) = obj.get(key) {
            s.node_checks.extend(string_list(v, key)?);
        }
    }
    if let Some(Value::Array(items)) = obj.get("servicechecks") {
        for item in items {
            let id = item
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| decode_failed("ServiceChecks entries need an ID"))?;
            s.service_checks.push(ServiceCheck {
                id: id.to_string(),
                namespace: String::new(),
            });
        }
    }
    s.name = str_field(&obj, "name")?;
    let node = str_field(&obj, "node")?;
    if !node.is_empty() {
        s.node = node;
    }
    if let Some(v) = obj.get("lockdelay") {
        s.lock_delay = lock_delay(v)?.as_nanos().min(u64::MAX as u128) as u64;
    }
    s.behavior = Behavior::parse(&str_field(&obj, "behavior")?)?;
    s.ttl = str_field(&obj, "ttl")?;
    Ok(s)
}

async fn create(State(api): State<ApiState>, ctx: Ctx, body: Body) -> ApiResult<Response> {
    let bytes = read_body(body, MAX_JSON_BODY, |max| {
        format!("Request body too large, max size: {max} bytes")
    })
    .await?;
    let session = session_from_body(&api, &bytes)?;
    ctx.acl.need_write(Resource::Session, &session.node)?;
    let (id, ttl) = (session.id.clone(), session.ttl());
    api.registry
        .write(Command::SessionCreate(Box::new(session)))
        .await?;
    if let Some(ttl) = ttl {
        api.registry.session_timers().reset(&id, ttl);
    }
    Ok(json(None, false, &serde_json::json!({ "ID": id })))
}

/// `session:write` on the node of session `id` (an unknown one needs
/// nothing: destroying it changes nothing).
fn vet_session(api: &ApiState, access: &Access, id: &str) -> ApiResult<()> {
    match api.registry.snapshot().session(id) {
        Some(s) => access.need_write(Resource::Session, &s.node),
        None => Ok(()),
    }
}

async fn destroy(
    State(api): State<ApiState>,
    access: std::sync::Arc<Access>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    vet_session(&api, &access, &id)?;
    api.registry
        .write(Command::SessionDestroy { id: id.clone() })
        .await?;
    api.registry.session_timers().clear(&id);
    Ok(boolean(true))
}

async fn renew(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    vet_session(&api, &ctx.acl, &id)?;
    let snapshot = api.registry.snapshot();
    let Some(session) = snapshot.session(&id) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Session id '{id}' not found"),
        ));
    };
    if let Some(ttl) = session.ttl() {
        api.registry.session_timers().reset(&id, ttl);
    }
    let index = snapshot.sessions_index();
    Ok(json(Some(index), ctx.pretty, &[session]))
}

async fn info(State(api): State<ApiState>, Path(id): Path<String>, ctx: Ctx) -> Response {
    let out = api
        .registry
        .block(&[Topic::Sessions], ctx.q, |s| {
            let index = s.sessions_index();
            (index, s.session(&id).into_iter().collect::<Vec<_>>())
        })
        .await;
    listed(&ctx, out)
}

/// A list of sessions, less those the token may not read.
fn listed(ctx: &Ctx, mut out: shoal_catalog::Indexed<Vec<std::sync::Arc<Session>>>) -> Response {
    let cut = ctx.acl.retain(&mut out.value);
    crate::response::filtered(json(Some(out.index), ctx.pretty, &out.value), cut)
}

async fn node(State(api): State<ApiState>, Path(node): Path<String>, ctx: Ctx) -> Response {
    let out = api
        .registry
        .block(&[Topic::Sessions], ctx.q, |s| s.node_sessions(&node))
        .await;
    listed(&ctx, out)
}

async fn list(State(api): State<ApiState>, ctx: Ctx) -> Response {
    let out = api
        .registry
        .block(&[Topic::Sessions], ctx.q, |s| s.sessions())
        .await;
    listed(&ctx, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_delay_follows_consul_fixup() {
        // (sent, expected)
        let cases = [
            (serde_json::json!("15s"), Duration::from_secs(15)),
            (serde_json::json!(5), Duration::from_secs(5)),
            (serde_json::json!(2_000_000_000u64), Duration::from_secs(2)),
            (serde_json::json!("0"), Duration::ZERO),
            (serde_json::json!(null), DEFAULT_LOCK_DELAY),
        ];
        for (sent, want) in cases {
            assert_eq!(lock_delay(&sent).unwrap(), want, "{sent}");
        }
        for bad in [
            serde_json::json!("soon"),
            serde_json::json!(-1),
            serde_json::json!({}),
        ] {
            let err = lock_delay(&bad).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn body_defaults_and_overrides() {
        let api = ApiState::new(
            shoal_catalog::Registry::in_memory(),
            std::sync::Arc::new(crate::ApiConfig::default()),
        );
        let s = session_from_body(&api, b"").unwrap();
        assert_eq!(s.node_checks, vec![NODE_HEALTH_CHECK.to_string()]);
        assert_eq!(s.lock_delay, 15_000_000_000);
        let s = session_from_body(
            &api,
            br#"{"name":"x","checks":[],"ttl":"10s","behavior":"delete","lockdelay":"1s"}"#,
        )
        .unwrap();
        assert!(s.node_checks.is_empty());
        assert_eq!((s.behavior, s.ttl.as_str()), (Behavior::Delete, "10s"));
        let err = session_from_body(&api, br#"{"behavior":"explode"}"#).unwrap_err();
        assert!(err.message.contains("Invalid Behavior"), "{}", err.message);
    }
}
