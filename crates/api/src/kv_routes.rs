//! `/v1/kv/*`: the key/value store, with Consul's query flags and limits.

use crate::error::{ApiError, ApiResult};
use crate::request::{read_body, Ctx};
use crate::response::{boolean, filtered, json, json_body, render};
use crate::ApiState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use shoal_catalog::acl::Resource;
use shoal_catalog::{Command, KvEntry, LockRequest, Topic};
use std::sync::Arc;

/// Largest value accepted, as Consul's default `kv_max_value_size`.
pub const MAX_VALUE: usize = 512 * 1024;

pub(crate) fn routes() -> Router<ApiState> {
    let root = get(get_root).put(put_root).delete(delete_root);
    let keyed = get(get_key).put(put_key).delete(delete_key);
    Router::new()
        .route("/v1/kv", root.clone())
        .route("/v1/kv/", root)
        .route("/v1/kv/{*key}", keyed)
}

async fn get_root(state: State<ApiState>, ctx: Ctx) -> ApiResult<Response> {
    kv_get(state, String::new(), ctx).await
}
async fn get_key(state: State<ApiState>, Path(key): Path<String>, ctx: Ctx) -> ApiResult<Response> {
    kv_get(state, key, ctx).await
}
async fn put_root(state: State<ApiState>, ctx: Ctx, body: Body) -> ApiResult<Response> {
    kv_put(state, String::new(), ctx, body).await
}
async fn put_key(
    state: State<ApiState>,
    Path(key): Path<String>,
    ctx: Ctx,
    body: Body,
) -> ApiResult<Response> {
    kv_put(state, key, ctx, body).await
}
async fn delete_root(state: State<ApiState>, ctx: Ctx) -> ApiResult<Response> {
    kv_delete(state, String::new(), ctx).await
}
async fn delete_key(
    state: State<ApiState>,
    Path(key): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    kv_delete(state, key, ctx).await
}

fn not_found(index: u64) -> Response {
    let mut resp = StatusCode::NOT_FOUND.into_response();
    let h = resp.headers_mut();
    h.insert("X-Consul-Index", HeaderValue::from(index));
    h.insert("X-Consul-KnownLeader", HeaderValue::from_static("true"));
    h.insert("X-Consul-LastContact", HeaderValue::from_static("0"));
    resp
}

/// `?keys` with an optional `?separator`: keys under the prefix, each cut
/// just after the first separator past the prefix, deduplicated.
fn list_keys(entries: &[Arc<KvEntry>], prefix: &str, separator: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in entries {
        let key = &e.key;
        let cut = if separator.is_empty() {
            key.as_str()
        } else {
            match key[prefix.len()..].find(separator) {
                Some(pos) => &key[..prefix.len() + pos + separator.len()],
                None => key.as_str(),
            }
        };
        if out.last().map(String::as_str) != Some(cut) {
            out.push(cut.to_string());
        }
    }
    out
}

async fn kv_get(State(api): State<ApiState>, key: String, ctx: Ctx) -> ApiResult<Response> {
    let recurse = ctx.params.has("recurse");
    let keys = ctx.params.has("keys");
    let topic = Topic::KvPrefix(key.clone());
    if keys || recurse {
        let (snapshot, mut out) = api
            .registry
            .block_at(&[topic], ctx.q, |s| s.kv_list(&key))
            .await;
        // As Consul (without enable_key_list_policy): what the token may
        // not read is left out, and the answer says so.
        let before = out.value.len();
        out.value
            .retain(|e| ctx.acl.can_read(Resource::Key, &e.key));
        let cut = out.value.len() < before;
        if keys {
            let separator = ctx.params.get("separator").unwrap_or("");
            let list = list_keys(&out.value, &key, separator);
            // Consul does not 404 an empty listing of the root.
            if list.is_empty() && !key.is_empty() {
                return Ok(filtered(not_found(out.index), cut));
            }
            return Ok(filtered(json(Some(out.index), ctx.pretty, &list), cut));
        }
        if out.value.is_empty() {
            return Ok(filtered(not_found(out.index), cut));
        }
        let resp = api.cached_json(&ctx, &snapshot, out.index, || {
            Ok(render(ctx.pretty, &out.value))
        })?;
        return Ok(filtered(resp, cut));
    }
    ctx.acl.need_read(Resource::Key, &key)?;
    let (snapshot, out) = api
        .registry
        .block_at(&[topic], ctx.q, |s| s.kv_get(&key))
        .await;
    let Some(entry) = out.value else {
        return Ok(not_found(out.index));
    };
    if ctx.params.has("raw") {
        let content_type = if std::str::from_utf8(&entry.value).is_ok() {
            "text/plain; charset=utf-8"
        } else {
            "application/octet-stream"
        };
        let mut resp = json_body(Some(out.index), entry.value.clone());
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        return Ok(resp);
    }
    api.cached_json(&ctx, &snapshot, out.index, || {
        Ok(render(ctx.pretty, &[entry]))
    })
}

/// `?acquire=<session>` or `?release=<session>`, if either is given.
fn lock_param(ctx: &Ctx) -> Option<(String, bool)> {
    let acquire = ctx.params.get("acquire").map(|s| (s.to_string(), true));
    acquire.or_else(|| ctx.params.get("release").map(|s| (s.to_string(), false)))
}

async fn kv_put(
    State(api): State<ApiState>,
    key: String,
    ctx: Ctx,
    body: Body,
) -> ApiResult<Response> {
    if key.is_empty() {
        return Err(ApiError::bad_request("Missing key name"));
    }
    ctx.acl.need_write(Resource::Key, &key)?;
    let flags = ctx.params.u64("flags", "flags")?.unwrap_or(0);
    let cas = ctx.params.u64("cas", "cas index")?;
    let value = read_body(body, MAX_VALUE, |max| {
        format!("Request body too large, max size: {max} bytes (KV values are limited to 512 KiB)")
    })
    .await?;
    let cmd = match lock_param(&ctx) {
        Some((session, acquire)) => Command::KvLock(Box::new(LockRequest {
            key,
            value,
            flags,
            cas,
            session,
            acquire,
        })),
        None => Command::KvPut {
            key,
            value,
            flags,
            cas,
        },
    };
    let out = api.registry.write(cmd).await?;
    Ok(boolean(out.applied))
}

async fn kv_delete(State(api): State<ApiState>, key: String, ctx: Ctx) -> ApiResult<Response> {
    let recurse = ctx.params.has("recurse");
    if key.is_empty() && !recurse {
        return Err(ApiError::bad_request("Missing key name"));
    }
    let cas = ctx.params.u64("cas", "cas index")?;
    if recurse && cas.is_some() {
        return Err(ApiError::bad_request(
            "Conflicting flags: cas can not be used with recurse",
        ));
    }
    if recurse {
        ctx.acl.need_key_write_prefix(&key)?;
    } else {
        ctx.acl.need_write(Resource::Key, &key)?;
    }
    let out = api
        .registry
        .write(Command::KvDelete { key, recurse, cas })
        .await?;
    Ok(boolean(out.applied))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_separator_group_like_consul() {
        let entries: Vec<Arc<KvEntry>> = ["app/a", "app/b/c", "app/b/d", "app/e/f/g"]
            .iter()
            .map(|k| {
                Arc::new(KvEntry {
                    key: k.to_string(),
                    ..Default::default()
                })
            })
            .collect();
        assert_eq!(
            list_keys(&entries, "app/", "/"),
            vec!["app/a", "app/b/", "app/e/"]
        );
        assert_eq!(
            list_keys(&entries, "app/", ""),
            vec!["app/a", "app/b/c", "app/b/d", "app/e/f/g"]
        );
        assert_eq!(list_keys(&entries, "", "/"), vec!["app/"]);
    }
}
