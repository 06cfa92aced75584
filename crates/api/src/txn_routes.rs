//! `PUT /v1/txn`: Consul's transactions. The body is decoded here (field
//! names in any case, as Go's decoder matches them; KV values base64),
//! limited to [`MAX_TXN_OPS`] operations (413 beyond, as Consul), applied
//! as one command, and answered as Consul does: 200 with `Results`, or 409
//! with every failed operation's `OpIndex` and `What`.

use crate::acl::Access;
use crate::error::{ApiError, ApiResult};
use crate::kv_routes::MAX_VALUE;
use crate::request::{read_body, Ctx};
use crate::response::{json, render};
use crate::ApiState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::Router;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json as j, Map, Value};
use shoal_catalog::txn::{CatalogVerb, KvVerb, TxnOp, TxnResult, MAX_TXN_OPS};
use shoal_catalog::{Check, Command, Node, Service};

/// Largest transaction body (Consul's default `txn_max_req_len`).
const MAX_TXN_BODY: usize = 512 * 1024;

pub(crate) fn routes() -> Router<ApiState> {
    Router::new().route("/v1/txn", put(txn))
}

fn parse_failed(msg: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Failed to parse body: {msg}"))
}

/// A field of a JSON object, its name matched case-insensitively.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn str_of(obj: &Map<String, Value>, name: &str) -> ApiResult<String> {
    match field(obj, name) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(parse_failed(format!(
            "{name}: expected a string, got {other}"
        ))),
    }
}

fn u64_of(obj: &Map<String, Value>, name: &str) -> ApiResult<u64> {
    match field(obj, name) {
        None => Ok(0),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| parse_failed(format!("{name}: expected an unsigned integer, got {v}"))),
    }
}

fn object<'a>(v: &'a Value, what: &str) -> ApiResult<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| parse_failed(format!("{what}: expected an object")))
}

fn kv_op(kv: &Map<String, Value>) -> ApiResult<TxnOp> {
    let verb_name = str_of(kv, "Verb")?;
    let verb = KvVerb::parse(&verb_name)
        .ok_or_else(|| parse_failed(format!("unknown KV verb {verb_name:?}")))?;
    let key = str_of(kv, "Key")?;
    let value = match str_of(kv, "Value")? {
        v if v.is_empty() => Bytes::new(),
        v => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .map_err(|e| parse_failed(format!("failed to decode value: {e}")))?,
        ),
    };
    if value.len() > MAX_VALUE {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Value for key {key:?} is too large ({} > {MAX_VALUE} bytes)",
                value.len()
            ),
        ));
    }
    Ok(TxnOp::Kv {
        verb,
        key,
        value,
        flags: u64_of(kv, "Flags")?,
        index: u64_of(kv, "Index")?,
        session: str_of(kv, "Session")?,
    })
}

fn catalog_verb(obj: &Map<String, Value>) -> ApiResult<CatalogVerb> {
    let name = str_of(obj, "Verb")?;
    CatalogVerb::parse(&name).ok_or_else(|| parse_failed(format!("unknown verb {name:?}")))
}

fn decode_model<T: serde::de::DeserializeOwned>(v: Option<&Value>, what: &str) -> ApiResult<T> {
    serde_json::from_value(v.cloned().unwrap_or(Value::Null))
        .map_err(|e| parse_failed(format!("{what}: {e}")))
}

/// One operation of the body.
fn op(v: &Value, datacenter: &str) -> ApiResult<TxnOp> {
    let obj = object(v, "operation")?;
    if let Some(kv) = field(obj, "KV") {
        return kv_op(object(kv, "KV")?);
    }
    if let Some(n) = field(obj, "Node") {
        let n = object(n, "Node")?;
        let mut node: Node = decode_model(field(n, "Node"), "Node")?;
        if node.datacenter.is_empty() {
            node.datacenter = datacenter.to_string();
        }
        return Ok(TxnOp::Node {
            verb: catalog_verb(n)?,
            node,
        });
    }
    if let Some(s) = field(obj, "Service") {
        let s = object(s, "Service")?;
        return Ok(TxnOp::Service {
            verb: catalog_verb(s)?,
            node: str_of(s, "Node")?,
            service: decode_model::<Service>(field(s, "Service"), "Service")?,
        });
    }
    if let Some(c) = field(obj, "Check") {
        let c = object(c, "Check")?;
        return Ok(TxnOp::Check {
            verb: catalog_verb(c)?,
            check: decode_model::<Check>(field(c, "Check"), "Check")?,
        });
    }
    Err(parse_failed(
        "an operation needs one of KV, Node, Service or Check",
    ))
}

/// The body's operations, after the limits.
pub(crate) fn parse_ops(body: &[u8], datacenter: &str) -> ApiResult<Vec<TxnOp>> {
    let value: Value = serde_json::from_slice(body).map_err(parse_failed)?;
    let Value::Array(items) = value else {
        return Err(parse_failed("expected a JSON array of operations"));
    };
    if items.len() > MAX_TXN_OPS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Transaction contains too many operations ({} > {MAX_TXN_OPS})",
                items.len()
            ),
        ));
    }
    items.iter().map(|v| op(v, datacenter)).collect()
}

fn result_json(r: &TxnResult) -> Value {
    match r {
        TxnResult::Kv(e) => j!({ "KV": e }),
        TxnResult::Node(n) => j!({ "Node": n }),
        TxnResult::Service(s) => j!({ "Service": s }),
        TxnResult::Check(c) => j!({ "Check": c }),
    }
}

/// What `access` may not do of `op`, as the words of a denial (Consul
/// vets every operation before any is applied).
fn vet_op(access: &Access, st: &shoal_catalog::State, op: &TxnOp) -> Option<String> {
    use shoal_catalog::acl::Resource;
    let denied = match op {
        TxnOp::Kv { verb, key, .. } => match verb {
            KvVerb::Get | KvVerb::CheckIndex | KvVerb::CheckSession | KvVerb::CheckNotExists => {
                access.need_read(Resource::Key, key)
            }
            // Filtered after: only what may be read is answered.
            KvVerb::GetTree => Ok(()),
            KvVerb::DeleteTree => access.need_key_write_prefix(key),
            _ => access.need_write(Resource::Key, key),
        },
        TxnOp::Node { verb, node } => match verb {
            CatalogVerb::Get => access.need_read(Resource::Node, &node.name),
            _ => access.need_write(Resource::Node, &node.name),
        },
        TxnOp::Service { verb, service, .. } => match verb {
            CatalogVerb::Get => access.need_read(Resource::Service, &service.name),
            _ => access.need_write(Resource::Service, &service.name),
        },
        TxnOp::Check { verb, check } => {
            let read = matches!(verb, CatalogVerb::Get);
            // The service the check belongs to, as stored when it says only its ID.
            let service = if check.service_id.is_empty() {
                None
            } else if !check.service_name.is_empty() {
                Some(check.service_name.clone())
            } else {
                st.service(&check.node, &check.service_id)
                    .map(|s| s.name.clone())
            };
            match (service, read) {
                (None, true) => access.need_read(Resource::Node, &check.node),
                (None, false) => access.need_write(Resource::Node, &check.node),
                (Some(name), true) => access.need_read(Resource::Service, &name),
                (Some(name), false) => access.need_write(Resource::Service, &name),
            }
        }
    };
    denied.err().map(|e| e.message)
}

/// Whether `access` may see one result (a `get-tree` lists only those).
fn visible(access: &Access, r: &TxnResult) -> bool {
    use shoal_catalog::acl::Resource;
    match r {
        TxnResult::Kv(e) => access.can_read(Resource::Key, &e.key),
        TxnResult::Node(n) => access.can_read(Resource::Node, &n.name),
        TxnResult::Service(s) => access.can_read(Resource::Service, &s.name),
        TxnResult::Check(c) => crate::acl::Visible::visible(c, access),
    }
}

fn conflict(pretty: bool, errors: Vec<Value>) -> Response {
    let body = render(pretty, &j!({ "Results": null, "Errors": errors }));
    let mut resp = (StatusCode::CONFLICT, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn txn(State(api): State<ApiState>, ctx: Ctx, body: Body) -> ApiResult<Response> {
    let bytes = read_body(body, MAX_TXN_BODY, |max| {
        format!("Request body too large, max size: {max} bytes")
    })
    .await?;
    let ops = parse_ops(&bytes, &api.config.datacenter)?;
    if ctx.acl.enforced {
        let st = api.registry.snapshot();
        let denied: Vec<Value> = ops
            .iter()
            .enumerate()
            .filter_map(|(i, op)| {
                vet_op(&ctx.acl, &st, op).map(|what| j!({ "OpIndex": i, "What": what }))
            })
            .collect();
        if !denied.is_empty() {
            return Ok(conflict(ctx.pretty, denied));
        }
    }
    let out = api.registry.write(Command::Txn(ops)).await?;
    let report = out.txn.unwrap_or_default();
    if report.errors.is_empty() {
        let results: Vec<Value> = report
            .results
            .iter()
            .filter(|r| !ctx.acl.enforced || visible(&ctx.acl, r))
            .map(result_json)
            .collect();
        return Ok(json(
            Some(out.index),
            ctx.pretty,
            &j!({ "Results": results, "Errors": null }),
        ));
    }
    let errors: Vec<Value> = report
        .errors
        .iter()
        .map(|(i, what)| j!({ "OpIndex": i, "What": what }))
        .collect();
    Ok(conflict(ctx.pretty, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_limits_and_errors() {
        let set = r#"{"KV":{"Verb":"set","Key":"a","Value":"eA=="}}"#;
        let many = format!("[{}]", vec![set; MAX_TXN_OPS + 1].join(","));
        let exact = format!("[{}]", vec![set; MAX_TXN_OPS].join(","));
        // (body, status or None for ok, message part)
        let cases: Vec<(String, Option<StatusCode>, &str)> = vec![
            (exact, None, ""),
            (
                many,
                Some(StatusCode::PAYLOAD_TOO_LARGE),
                "too many operations (129 > 128)",
            ),
            (
                "{}".into(),
                Some(StatusCode::BAD_REQUEST),
                "expected a JSON array",
            ),
            (
                "[{\"KV\":{\"Verb\":\"frob\"}}]".into(),
                Some(StatusCode::BAD_REQUEST),
                "unknown KV verb",
            ),
            (
                "[{\"kv\":{\"verb\":\"get\",\"key\":\"a\"}}]".into(),
                None,
                "",
            ),
            (
                "[{\"KV\":{\"Verb\":\"set\",\"Value\":\"!!\"}}]".into(),
                Some(StatusCode::BAD_REQUEST),
                "failed to decode value",
            ),
            ("[{}]".into(), Some(StatusCode::BAD_REQUEST), "needs one of"),
        ];
        for (body, status, part) in cases {
            match (parse_ops(body.as_bytes(), "dc1"), status) {
                (Ok(_), None) => {}
                (Err(e), Some(s)) => {
                    assert_eq!(e.status, s, "{body}");
                    assert!(e.message.contains(part), "{body}: {}", e.message);
                }
                (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
            }
        }
    }
}
