//! `/v1/acl/*`: bootstrap, tokens and policies, with Consul's shapes and
//! answers (401 `ACL support disabled` while ACLs are off; 403 for what
//! the token may not do; SecretIDs shown only to holders of `acl:write`).

use crate::acl::Access;
use crate::error::{ApiError, ApiResult};
use crate::request::{json_body, Ctx};
use crate::response::json;
use crate::session_routes::new_uuid;
use crate::ApiState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, put};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_catalog::acl::{AclPolicy, AclToken, PolicyLink, Rules};
use shoal_catalog::clock::{now_unix, parse_rfc3339, rfc3339};
use shoal_catalog::{Command, Topic};
use std::sync::Arc;

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/acl/bootstrap", put(bootstrap))
        .route("/v1/acl/token", put(token_create))
        .route("/v1/acl/token/self", get(token_self))
        .route(
            "/v1/acl/token/{id}",
            get(token_read).put(token_update).delete(token_delete),
        )
        .route("/v1/acl/tokens", get(token_list))
        .route("/v1/acl/policy", put(policy_create))
        .route("/v1/acl/policy/name/{name}", get(policy_by_name))
        .route(
            "/v1/acl/policy/{id}",
            get(policy_read).put(policy_update).delete(policy_delete),
        )
        .route("/v1/acl/policies", get(policy_list))
        .route(crate::acl_remote::RESOLVE_PATH, get(resolve_for_agent))
}

/// A token's own rights, for an agent to enforce them (see
/// `acl_remote.rs`): its AccessorID and the rules of its policies. Only
/// the token's holder can ask, and learns nothing of other tokens.
async fn resolve_for_agent(
    State(state): State<ApiState>,
    access: Arc<Access>,
) -> ApiResult<Response> {
    if !state.acl.enabled() {
        return Ok(json(None, false, &json!({"Enabled": false})));
    }
    let snapshot = state.registry.snapshot();
    let token = snapshot.acl_token(&access.accessor);
    let token = token.ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "ACL not found"))?;
    let management = token
        .policies
        .iter()
        .any(|l| l.id == shoal_catalog::acl::MANAGEMENT_POLICY_ID);
    let rules: Vec<String> = token
        .policies
        .iter()
        .filter_map(|l| snapshot.acl_policy(&l.id))
        .map(|p| p.rules.clone())
        .collect();
    Ok(json(
        None,
        false,
        &json!({
            "Enabled": true,
            "AccessorID": token.accessor_id,
            "Management": management,
            "DefaultAllow": state.acl.default_allow(),
            "Rules": rules,
        }),
    ))
}

fn enabled(state: &ApiState) -> ApiResult<()> {
    if state.acl.enabled() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "ACL support disabled",
        ))
    }
}

/// A token as Consul shows it; the secret only to `acl:write` holders.
fn token_json(t: &AclToken, show_secret: bool) -> Value {
    let mut v = json!({
        "AccessorID": t.accessor_id,
        "SecretID": if show_secret { t.secret_id.as_str() } else { "<hidden>" },
        "Description": t.description,
        "Policies": t.policies.iter().map(|p| json!({"ID": p.id, "Name": p.name})).collect::<Vec<_>>(),
        "Local": t.local,
        "CreateTime": rfc3339(t.create_unix),
        "Hash": "",
        "CreateIndex": t.create_index,
        "ModifyIndex": t.modify_index,
    });
    if let Some(at) = t.expiration_unix {
        v["ExpirationTime"] = json!(rfc3339(at));
    }
    v
}

fn policy_json(p: &AclPolicy, with_rules: bool) -> Value {
    let mut v = json!({
        "ID": p.id,
        "Name": p.name,
        "Description": p.description,
        "Datacenters": p.datacenters,
        "Hash": "",
        "CreateIndex": p.create_index,
        "ModifyIndex": p.modify_index,
    });
    if with_rules {
        v["Rules"] = json!(p.rules);
    }
    v
}

/// What a client sends to create or update a token.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenInput {
    accessorid: String,
    secretid: String,
    description: String,
    policies: Vec<LinkInput>,
    local: bool,
    expirationtime: Option<String>,
    expirationttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LinkInput {
    id: String,
    name: String,
}

/// Optional body: a bootstrap may name its secret (`BootstrapSecret`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BootstrapInput {
    bootstrapsecret: String,
}

async fn write(state: &ApiState, cmd: Command) -> ApiResult<u64> {
    Ok(state.registry.write(cmd).await?.index)
}

async fn bootstrap(State(state): State<ApiState>, body: Body) -> ApiResult<Response> {
    enabled(&state)?;
    let bytes = crate::request::read_body(body, crate::request::MAX_JSON_BODY, |m| {
        format!("Request body too large, max size: {m} bytes")
    })
    .await?;
    let input: BootstrapInput = if bytes.iter().all(u8::is_ascii_whitespace) {
        BootstrapInput::default()
    } else {
        crate::request::decode_json(&bytes)?
    };
    let token = AclToken {
        accessor_id: new_uuid(),
        secret_id: if input.bootstrapsecret.is_empty() {
            new_uuid()
        } else {
            input.bootstrapsecret
        },
        description: "Bootstrap Token (Global Management)".into(),
        create_unix: now_unix(),
        ..Default::default()
    };
    let accessor = token.accessor_id.clone();
    write(&state, Command::AclBootstrap(Box::new(token))).await?;
    let t = state.registry.snapshot().acl_token(&accessor);
    let t =
        t.ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "bootstrap token lost"))?;
    Ok(json(None, false, &token_json(&t, true)))
}

/// The token a create or update makes of `input` (over `old` when set).
fn token_of(input: TokenInput, old: Option<&AclToken>) -> ApiResult<AclToken> {
    let expiration = match (
        input.expirationtime.as_deref(),
        input.expirationttl.as_deref(),
    ) {
        (Some(t), _) if !t.is_empty() => Some(parse_rfc3339(t).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid ExpirationTime {t:?}: not an RFC 3339 time"
            ))
        })?),
        (_, Some(ttl)) if !ttl.is_empty() => {
            let d = shoal_catalog::duration::parse(ttl).map_err(|e| {
                ApiError::bad_request(format!("Invalid ExpirationTTL {ttl:?}: {e}"))
            })?;
            Some(now_unix() + d.as_secs().max(1) as i64)
        }
        _ => old.and_then(|o| o.expiration_unix),
    };
    if expiration.is_some_and(|at| at <= now_unix()) {
        return Err(ApiError::bad_request(
            "ExpirationTime cannot be in the past",
        ));
    }
    let policies = input
        .policies
        .into_iter()
        .map(|l| {
            if l.id.is_empty() && l.name.is_empty() {
                return Err(ApiError::bad_request("a policy link needs an ID or a Name"));
            }
            Ok(PolicyLink {
                id: l.id,
                name: l.name,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(AclToken {
        accessor_id: old.map_or(input.accessorid, |o| o.accessor_id.clone()),
        secret_id: match old {
            Some(o) if !input.secretid.is_empty() && input.secretid != o.secret_id => {
                return Err(ApiError::bad_request(
                    "Changing a token's SecretID is not permitted",
                ))
            }
            Some(o) => o.secret_id.clone(),
            None => input.secretid,
        },
        description: input.description,
        policies,
        local: input.local,
        expiration_unix: expiration,
        create_unix: old.map_or_else(now_unix, |o| o.create_unix),
        ..Default::default()
    })
}

async fn token_create(
    State(state): State<ApiState>,
    access: Arc<Access>,
    body: Body,
) -> ApiResult<Response> {
    enabled(&state)?;
    access.need_acl_write()?;
    let input: TokenInput = json_body(body).await?;
    let mut token = token_of(input, None)?;
    if token.accessor_id.is_empty() {
        token.accessor_id = new_uuid();
    } else if state
        .registry
        .snapshot()
        .acl_token(&token.accessor_id)
        .is_some()
    {
        return Err(ApiError::bad_request(
            "Invalid Token: AccessorID is already in use",
        ));
    }
    if token.secret_id.is_empty() {
        token.secret_id = new_uuid();
    }
    let accessor = token.accessor_id.clone();
    write(&state, Command::AclTokenSet(Box::new(token))).await?;
    stored_token(&state, &accessor)
}

fn stored_token(state: &ApiState, accessor: &str) -> ApiResult<Response> {
    let t = state
        .registry
        .snapshot()
        .acl_token(accessor)
        .ok_or_else(|| ApiError::not_found("ACL not found"))?;
    Ok(json(None, false, &token_json(&t, true)))
}

async fn token_update(
    State(state): State<ApiState>,
    access: Arc<Access>,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    enabled(&state)?;
    access.need_acl_write()?;
    let input: TokenInput = json_body(body).await?;
    if !input.accessorid.is_empty() && input.accessorid != id {
        return Err(ApiError::bad_request(
            "Token AccessorID in URL and payload do not match",
        ));
    }
    let old = state.registry.snapshot().acl_token(&id);
    let old = old.ok_or_else(|| ApiError::bad_request(format!("Cannot find token {id:?}")))?;
    let token = token_of(input, Some(&old))?;
    write(&state, Command::AclTokenSet(Box::new(token))).await?;
    stored_token(&state, &id)
}

async fn token_read(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    enabled(&state)?;
    ctx.acl.need_acl_read()?;
    let show = ctx.acl.authz.acl_write();
    let shoal_catalog::Indexed {
        index,
        value: token,
    } = state
        .registry
        .block(&[Topic::Acl], ctx.q, |s| (s.acl_index(), s.acl_token(&id)))
        .await;
    match token {
        Some(t) => Ok(json(Some(index), ctx.pretty, &token_json(&t, show))),
        None => Err(ApiError::new(StatusCode::FORBIDDEN, "ACL not found")),
    }
}

/// The caller's own token: needs no permission, only a valid secret.
async fn token_self(State(state): State<ApiState>, ctx: Ctx) -> ApiResult<Response> {
    enabled(&state)?;
    let t = state.registry.snapshot().acl_token(&ctx.acl.accessor);
    let t = t.ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "ACL not found"))?;
    Ok(json(None, ctx.pretty, &token_json(&t, true)))
}

async fn token_delete(
    State(state): State<ApiState>,
    access: Arc<Access>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    enabled(&state)?;
    access.need_acl_write()?;
    write(&state, Command::AclTokenDelete { accessor_id: id }).await?;
    Ok(json(None, false, &json!(true)))
}

async fn token_list(State(state): State<ApiState>, ctx: Ctx) -> ApiResult<Response> {
    enabled(&state)?;
    ctx.acl.need_acl_read()?;
    let show = ctx.acl.authz.acl_write();
    let policy = ctx.params.get("policy").map(str::to_string);
    let shoal_catalog::Indexed {
        index,
        value: tokens,
    } = state
        .registry
        .block(&[Topic::Acl], ctx.q, |s| (s.acl_index(), s.acl_tokens()))
        .await;
    let list: Vec<Value> = tokens
        .iter()
        .filter(|t| {
            policy
                .as_ref()
                .is_none_or(|p| t.policies.iter().any(|l| &l.id == p))
        })
        .map(|t| token_json(t, show))
        .collect();
    Ok(json(Some(index), ctx.pretty, &list))
}

/// What a client sends to create or update a policy.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PolicyInput {
    id: String,
    name: String,
    description: String,
    rules: String,
    datacenters: Vec<String>,
}

fn policy_of(input: PolicyInput, id: String) -> ApiResult<AclPolicy> {
    Rules::parse(&input.rules).map_err(|e| {
        ApiError::bad_request(format!("Invalid Policy: failed to parse rules: {e}"))
    })?;
    Ok(AclPolicy {
        id,
        name: input.name,
        description: input.description,
        rules: input.rules,
        datacenters: input.datacenters,
        ..Default::default()
    })
}

async fn policy_create(
    State(state): State<ApiState>,
    access: Arc<Access>,
    body: Body,
) -> ApiResult<Response> {
    enabled(&state)?;
    access.need_acl_write()?;
    let input: PolicyInput = json_body(body).await?;
    if !input.id.is_empty() {
        return Err(ApiError::bad_request(
            "Cannot specify an ID in Policy Creation",
        ));
    }
    let policy = policy_of(input, new_uuid())?;
    let id = policy.id.clone();
    write(&state, Command::AclPolicySet(Box::new(policy))).await?;
    stored_policy(&state, &id)
}

fn stored_policy(state: &ApiState, id: &str) -> ApiResult<Response> {
    let p = state.registry.snapshot().acl_policy(id);
    let p = p.ok_or_else(|| ApiError::not_found("ACL policy not found"))?;
    Ok(json(None, false, &policy_json(&p, true)))
}

async fn policy_update(
    State(state): State<ApiState>,
    access: Arc<Access>,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    enabled(&state)?;
    access.need_acl_write()?;
    let input: PolicyInput = json_body(body).await?;
    if !input.id.is_empty() && input.id != id {
        return Err(ApiError::bad_request(
            "Policy ID in URL and payload do not match",
        ));
    }
    if state.registry.snapshot().acl_policy(&id).is_none() {
        return Err(ApiError::bad_request(format!("Cannot find policy {id:?}")));
    }
    let policy = policy_of(input, id.clone())?;
    write(&state, Command::AclPolicySet(Box::new(policy))).await?;
    stored_policy(&state, &id)
}

async fn policy_read(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    enabled(&state)?;
    ctx.acl.need_acl_read()?;
    let shoal_catalog::Indexed { index, value: p } = state
        .registry
        .block(&[Topic::Acl], ctx.q, |s| (s.acl_index(), s.acl_policy(&id)))
        .await;
    let p = p.ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "ACL not found"))?;
    Ok(json(Some(index), ctx.pretty, &policy_json(&p, true)))
}

async fn policy_by_name(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    enabled(&state)?;
    ctx.acl.need_acl_read()?;
    let shoal_catalog::Indexed { index, value: p } = state
        .registry
        .block(&[Topic::Acl], ctx.q, |s| {
            (s.acl_index(), s.acl_policy_by_name(&name))
        })
        .await;
    let p = p.ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "ACL not found"))?;
    Ok(json(Some(index), ctx.pretty, &policy_json(&p, true)))
}

async fn policy_delete(
    State(state): State<ApiState>,
    access: Arc<Access>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    enabled(&state)?;
    access.need_acl_write()?;
    write(&state, Command::AclPolicyDelete { id }).await?;
    Ok(json(None, false, &json!(true)))
}

async fn policy_list(State(state): State<ApiState>, ctx: Ctx) -> ApiResult<Response> {
    enabled(&state)?;
    ctx.acl.need_acl_read()?;
    let shoal_catalog::Indexed {
        index,
        value: policies,
    } = state
        .registry
        .block(&[Topic::Acl], ctx.q, |s| (s.acl_index(), s.acl_policies()))
        .await;
    let list: Vec<Value> = policies.iter().map(|p| policy_json(p, false)).collect();
    Ok(json(Some(index), ctx.pretty, &list))
}
