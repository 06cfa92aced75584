//! `/v1/agent/*`: the local agent of this server's own node. Services and
//! checks registered here live on `ApiConfig::node_name`.

use crate::catalog_routes::parse_filter;
use crate::dto::{parse_status, CheckTypeIn, CheckUpdateIn, ServiceDefinition};
use crate::error::{ApiError, ApiResult};
use crate::request::{json_body, Ctx};
use crate::response::{empty, json};
use crate::{filter, ApiState, CONSUL_COMPAT_VERSION, NODE_HEALTH_CHECK};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, put};
use axum::Router;
use serde::Serialize;
use serde_json::json as j;
use shoal_catalog::{
    Check, Command, HealthStatus, Node, Registration, Service, State as CatalogState, Topic,
    Weights,
};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

/// The `/v1/agent/*` routes (an agent's own API serves these alone).
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/agent/service/register", put(service_register))
        .route("/v1/agent/service/deregister/{id}", put(service_deregister))
        .route(
            "/v1/agent/service/maintenance/{id}",
            put(service_maintenance),
        )
        .route("/v1/agent/services", get(services))
        .route("/v1/agent/service/{id}", get(service))
        .route("/v1/agent/checks", get(checks))
        .route("/v1/agent/check/register", put(check_register))
        .route("/v1/agent/check/deregister/{id}", put(check_deregister))
        .route("/v1/agent/check/pass/{id}", put(check_pass))
        .route("/v1/agent/check/warn/{id}", put(check_warn))
        .route("/v1/agent/check/fail/{id}", put(check_fail))
        .route("/v1/agent/check/update/{id}", put(check_update))
        .route("/v1/agent/self", get(agent_self))
        .route("/v1/agent/members", get(members))
        .merge(crate::agent_health_routes::routes())
}

/// This node as registered (address and identity from the config).
pub(crate) fn local_node(api: &ApiState) -> Node {
    let cfg = &api.config;
    Node {
        id: cfg.node_id.clone(),
        name: cfg.node_name.clone(),
        address: cfg.node_address.clone(),
        datacenter: cfg.datacenter.clone(),
        ..Default::default()
    }
}

/// Registers on this agent's node, once `access` may (see `acl_write`).
pub(crate) async fn register_local(
    api: &ApiState,
    access: &crate::acl::Access,
    service: Option<Service>,
    checks: Vec<Check>,
) -> ApiResult<()> {
    let reg = Registration {
        node: local_node(api),
        skip_node_update: true,
        service,
        checks,
    };
    crate::acl_write::vet_registration(access, &api.registry.snapshot(), &reg)?;
    api.registry.write(Command::Register(Box::new(reg))).await?;
    Ok(())
}

async fn service_register(
    State(api): State<ApiState>,
    ctx: Ctx,
    body: Body,
) -> ApiResult<Response> {
    let def: ServiceDefinition = json_body(body).await?;
    let (service, checks) = def.into_parts()?;
    register_local(&api, &ctx.acl, Some(service), checks).await?;
    Ok(empty())
}

fn unknown_service(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "Unknown service ID \"{id}\". Ensure that the service ID is passed, not the service name."
    ))
}

fn unknown_check(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "Unknown check ID \"{id}\". Ensure that the check ID is passed, not the check name."
    ))
}

async fn service_deregister(
    State(api): State<ApiState>,
    access: std::sync::Arc<crate::acl::Access>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let node = api.config.node_name.clone();
    let snapshot = api.registry.snapshot();
    if snapshot.service(&node, &id).is_none() {
        return Err(unknown_service(&id));
    }
    crate::acl_write::vet_deregistration(&access, &snapshot, &node, &id, "")?;
    api.registry
        .write(Command::DeregisterService {
            node,
            service_id: id,
        })
        .await?;
    Ok(empty())
}

/// Check ID Consul gives a service's maintenance check.
fn maintenance_check_id(service_id: &str) -> String {
    format!("_service_maintenance:{service_id}")
}

async fn service_maintenance(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    let enable = match ctx.params.get("enable") {
        None | Some("") => return Err(ApiError::bad_request("Missing value for enable")),
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid value for enable: {other:?}"
            )))
        }
    };
    let node = api.config.node_name.clone();
    let snapshot = api.registry.snapshot();
    if snapshot.service(&node, &id).is_none() {
        return Err(unknown_service(&id));
    }
    crate::acl_write::vet_deregistration(&ctx.acl, &snapshot, &node, &id, "")?;
    let check_id = maintenance_check_id(&id);
    if enable {
        let reason = ctx.params.get("reason").filter(|r| !r.is_empty());
        let notes = reason.map_or_else(
            || "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.".to_string(),
            str::to_string,
        );
        let check = Check {
            check_id,
            name: "Service Maintenance Mode".into(),
            status: HealthStatus::Critical,
            notes,
            service_id: id,
            ..Default::default()
        };
        register_local(&api, &ctx.acl, None, vec![check]).await?;
    } else {
        api.registry
            .write(Command::DeregisterCheck { node, check_id })
            .await?;
    }
    Ok(empty())
}

/// A service as the agent endpoints describe it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AgentService<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    service: &'a str,
    tags: &'a [String],
    meta: &'a BTreeMap<String, String>,
    port: u16,
    address: &'a str,
    weights: Weights,
    enable_tag_override: bool,
    datacenter: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_hash: Option<String>,
}

pub(crate) fn agent_service<'a>(s: &'a Service, dc: &'a str) -> AgentService<'a> {
    AgentService {
        id: &s.id,
        service: &s.name,
        tags: &s.tags,
        meta: &s.meta,
        port: s.port,
        address: &s.address,
        weights: s.weights,
        enable_tag_override: s.enable_tag_override,
        datacenter: dc,
        content_hash: None,
    }
}

async fn services(State(api): State<ApiState>, ctx: Ctx) -> ApiResult<Response> {
    let expr = parse_filter(&ctx)?;
    let node = api.config.node_name.clone();
    let out = api
        .registry
        .block(&[Topic::Node(node.clone())], ctx.q, |s| {
            (s.node_index(&node), s.node_services(&node))
        })
        .await;
    let mut out = out;
    let cut = ctx.acl.retain(&mut out.value);
    let dc = &api.config.datacenter;
    let list: Vec<AgentService> = out.value.iter().map(|s| agent_service(s, dc)).collect();
    let map: BTreeMap<&str, AgentService> = filter::apply(expr.as_ref(), list)
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    Ok(crate::response::filtered(
        json(Some(out.index), ctx.pretty, &map),
        cut,
    ))
}

fn content_hash(s: &Service) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&(
        &s.id,
        &s.name,
        &s.tags,
        &s.meta,
        s.port,
        &s.address,
        s.weights,
        s.enable_tag_override,
    ))
    .unwrap_or_default()
    .hash(&mut h);
    format!("{:016x}", h.finish())
}

/// `/v1/agent/service/:id`, with Consul's hash-based blocking (`?hash=`).
async fn service(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    let node = api.config.node_name.clone();
    let topic = Topic::Node(node.clone());
    let read = |s: &CatalogState| s.service(&node, &id).map(|svc| (content_hash(&svc), svc));
    let mut current = read(&api.registry.snapshot());
    if let Some(hash) = ctx.params.get("hash").filter(|h| !h.is_empty()) {
        let deadline = tokio::time::Instant::now() + shoal_catalog::blocking_wait(ctx.q.wait);
        let mut index = api.registry.snapshot().node_index(&node);
        while current.as_ref().is_some_and(|(h, _)| h == hash) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            index = shoal_catalog::Catalog::wait_for_change(&*api.registry, &topic, index, left)
                .await?;
            current = read(&api.registry.snapshot());
        }
    }
    let Some((hash, svc)) = current else {
        return Err(ApiError::not_found(format!("unknown service ID: {id}")));
    };
    ctx.acl
        .need_read(shoal_catalog::acl::Resource::Service, &svc.name)?;
    let mut out = agent_service(&svc, &api.config.datacenter);
    out.content_hash = Some(hash.clone());
    let mut resp = json(None, ctx.pretty, &out);
    if let Ok(v) = hash.parse() {
        resp.headers_mut().insert("X-Consul-ContentHash", v);
    }
    Ok(resp)
}

async fn checks(State(api): State<ApiState>, ctx: Ctx) -> ApiResult<Response> {
    let expr = parse_filter(&ctx)?;
    let node = api.config.node_name.clone();
    let snapshot = api.registry.snapshot();
    let mut list: Vec<_> = snapshot.checks_on_node(&node).cloned().collect();
    let cut = ctx.acl.retain(&mut list);
    let map: BTreeMap<String, _> = filter::apply(expr.as_ref(), list)
        .into_iter()
        .map(|c| (c.check_id.clone(), c))
        .collect();
    Ok(crate::response::filtered(json(None, ctx.pretty, &map), cut))
}

async fn check_register(State(api): State<ApiState>, ctx: Ctx, body: Body) -> ApiResult<Response> {
    let def: CheckTypeIn = json_body(body).await?;
    let service_id = def.service_id().to_string();
    if !service_id.is_empty()
        && api
            .registry
            .snapshot()
            .service(&api.config.node_name, &service_id)
            .is_none()
    {
        return Err(ApiError::bad_request(format!(
            "ServiceID \"{service_id}\" does not exist"
        )));
    }
    let mut check = def.into_check(String::new(), String::new())?;
    if check.check_id.is_empty() && check.name.is_empty() {
        return Err(ApiError::bad_request("Missing check name"));
    }
    if check.check_id.is_empty() {
        check.check_id = check.name.clone();
    }
    check.service_id = service_id;
    register_local(&api, &ctx.acl, None, vec![check]).await?;
    Ok(empty())
}

async fn check_deregister(
    State(api): State<ApiState>,
    access: std::sync::Arc<crate::acl::Access>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let node = api.config.node_name.clone();
    let snapshot = api.registry.snapshot();
    if snapshot.check(&node, &id).is_none() {
        return Err(unknown_check(&id));
    }
    crate::acl_write::vet_deregistration(&access, &snapshot, &node, "", &id)?;
    api.registry
        .write(Command::DeregisterCheck { node, check_id: id })
        .await?;
    Ok(empty())
}

/// Sets a TTL check's status (the pass/warn/fail/update endpoints).
async fn set_ttl(
    api: &ApiState,
    access: &crate::acl::Access,
    id: String,
    status: HealthStatus,
    output: String,
) -> ApiResult<Response> {
    let node = api.config.node_name.clone();
    let snapshot = api.registry.snapshot();
    let Some(check) = snapshot.check(&node, &id) else {
        return Err(unknown_check(&id));
    };
    crate::acl_write::vet_deregistration(access, &snapshot, &node, "", &id)?;
    if check.definition.ttl.is_none() {
        return Err(ApiError::bad_request(format!(
            "CheckID \"{id}\" does not have associated TTL"
        )));
    }
    const MAX_OUTPUT: usize = 4096;
    let output = if output.len() > MAX_OUTPUT {
        let mut end = MAX_OUTPUT;
        while !output.is_char_boundary(end) {
            end -= 1;
        }
        format!(
            "{} ... (captured {} of {} bytes)",
            &output[..end],
            end,
            output.len()
        )
    } else {
        output
    };
    // Beat first: the TTL timer must not expire the check between this
    // write and the beat.
    api.registry.heartbeats().beat(&node, &id);
    api.registry
        .write(Command::UpdateCheck {
            node,
            check_id: id,
            status,
            output: Some(output),
        })
        .await?;
    Ok(empty())
}

fn note(ctx: &Ctx) -> String {
    ctx.params.get("note").unwrap_or("").to_string()
}

async fn check_pass(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    set_ttl(&api, &ctx.acl, id, HealthStatus::Passing, note(&ctx)).await
}

async fn check_warn(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    set_ttl(&api, &ctx.acl, id, HealthStatus::Warning, note(&ctx)).await
}

async fn check_fail(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    set_ttl(&api, &ctx.acl, id, HealthStatus::Critical, note(&ctx)).await
}

async fn check_update(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    ctx: Ctx,
    body: Body,
) -> ApiResult<Response> {
    let input: CheckUpdateIn = json_body(body).await?;
    if input.status.is_empty() {
        return Err(ApiError::bad_request(
            "Missing Status: must be passing, warning or critical",
        ));
    }
    let status = parse_status(&input.status)?;
    set_ttl(&api, &ctx.acl, id, status, input.output).await
}

/// A serf member as `/v1/agent/members` lists it.
fn member(api: &ApiState, node: &Node, alive: bool) -> serde_json::Value {
    j!({
        "Name": node.name,
        "Addr": node.address,
        "Port": 8301,
        "Tags": {"dc": api.config.datacenter, "role": "consul", "port": "8300", "build": CONSUL_COMPAT_VERSION, "id": node.id},
        "Status": if alive { 1 } else { 4 },
        "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
        "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4
    })
}

async fn agent_self(State(api): State<ApiState>, ctx: Ctx) -> ApiResult<Response> {
    ctx.acl
        .need_read(shoal_catalog::acl::Resource::Agent, &api.config.node_name)?;
    let cfg = &api.config;
    let me = member(&api, &local_node(&api), true);
    Ok(json(
        None,
        ctx.pretty,
        &j!({
            "Config": {
                "Datacenter": cfg.datacenter,
                "NodeName": cfg.node_name,
                "NodeID": cfg.node_id,
                "Server": cfg.server,
                "Revision": "",
                "Version": CONSUL_COMPAT_VERSION,
                "ShoalVersion": env!("CARGO_PKG_VERSION"),
            },
            "DebugConfig": {
                "SessionTTLMin": shoal_catalog::duration::format(shoal_catalog::session::SESSION_TTL_MIN),
            },
            "Member": me,
            "Meta": {},
            "Stats": {},
        }),
    ))
}

/// Members are the nodes that carry a node liveness check: this server and
/// the agents that register through it.
async fn members(State(api): State<ApiState>, ctx: Ctx) -> Response {
    let snapshot = api.registry.snapshot();
    let (_, nodes) = snapshot.nodes();
    let list: Vec<serde_json::Value> = nodes
        .iter()
        .filter(|n| {
            ctx.acl
                .can_read(shoal_catalog::acl::Resource::Node, &n.name)
        })
        .filter_map(|n| {
            let check = snapshot.check(&n.name, NODE_HEALTH_CHECK)?;
            Some(member(&api, n, check.status == HealthStatus::Passing))
        })
        .collect();
    json(None, ctx.pretty, &list)
}
