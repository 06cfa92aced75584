//! `/v1/catalog/*`: the cluster-wide view of nodes and services.

use crate::dto::{CatalogDeregisterIn, CatalogRegisterIn};
use crate::error::{ApiError, ApiResult};
use crate::request::{json_body, Ctx};
use crate::response::{json, render};
use crate::{filter, ApiState};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, put};
use axum::Router;
use serde::Serialize;
use shoal_catalog::acl::Resource;
use shoal_catalog::{
    Command, HealthStatus, Node, Registration, Service, ServiceEntry, State as CatalogState, Topic,
    Weights,
};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/catalog/register", put(register))
        .route("/v1/catalog/deregister", put(deregister))
        .route("/v1/catalog/datacenters", get(datacenters))
        .route("/v1/catalog/nodes", get(nodes))
        .route("/v1/catalog/services", get(services))
        .route("/v1/catalog/service/{service}", get(service))
        .route("/v1/catalog/node/{node}", get(node))
}

async fn register(State(api): State<ApiState>, ctx: Ctx, body: Body) -> ApiResult<Response> {
    let input: CatalogRegisterIn = json_body(body).await?;
    let reg = input.into_registration(&api.config.datacenter)?;
    let reg = Registration {
        node: reg.node,
        skip_node_update: reg.skip_node_update,
        service: reg.service,
        checks: reg.checks,
    };
    crate::acl_write::vet_registration(&ctx.acl, &api.registry.snapshot(), &reg)?;
    // A registration that carries a passing TTL check refreshes it: this
    // is how a shoal agent's liveness check on its node stays alive.
    let refreshed: Vec<String> = reg
        .checks
        .iter()
        .filter(|c| c.definition.ttl.is_some() && c.status == HealthStatus::Passing)
        .map(|c| c.check_id.clone())
        .collect();
    for check_id in &refreshed {
        api.registry.heartbeats().beat(&reg.node.name, check_id);
    }
    let done = api.registry.write(Command::Register(Box::new(reg))).await?;
    Ok(written(done.index))
}

async fn deregister(
    State(api): State<ApiState>,
    access: Arc<crate::acl::Access>,
    body: Body,
) -> ApiResult<Response> {
    let input: CatalogDeregisterIn = json_body(body).await?;
    if input.node.is_empty() {
        return Err(ApiError::bad_request("Must provide node"));
    }
    crate::acl_write::vet_deregistration(
        &access,
        &api.registry.snapshot(),
        &input.node,
        &input.service_id,
        &input.check_id,
    )?;
    let cmd = if !input.service_id.is_empty() {
        Command::DeregisterService {
            node: input.node,
            service_id: input.service_id,
        }
    } else if !input.check_id.is_empty() {
        Command::DeregisterCheck {
            node: input.node,
            check_id: input.check_id,
        }
    } else {
        Command::DeregisterNode { node: input.node }
    };
    let done = api.registry.write(cmd).await?;
    Ok(written(done.index))
}

/// Consul's `true`, with the commit's index as `X-Consul-Index` (which
/// Consul leaves out): a client that follows the same node by blocking
/// queries (the agent's anti-entropy) can tell its own writes from others'.
fn written(index: u64) -> Response {
    json(Some(index), false, &true)
}

async fn datacenters(State(api): State<ApiState>, ctx: Ctx) -> Response {
    json(None, ctx.pretty, &[&api.config.datacenter])
}

/// Parses `?filter=` once per request.
pub(crate) fn parse_filter(ctx: &Ctx) -> ApiResult<Option<filter::Expr>> {
    ctx.params
        .get("filter")
        .filter(|f| !f.is_empty())
        .map(filter::parse)
        .transpose()
        .map_err(ApiError::bad_request)
}

/// A JSON list answer after `?filter=`.
pub(crate) fn filtered<T: Serialize>(
    index: u64,
    ctx: &Ctx,
    expr: Option<&filter::Expr>,
    list: Vec<T>,
) -> Response {
    json(Some(index), ctx.pretty, &filter::apply(expr, list))
}

/// A filtered list read under a blocking query on `topic`: the shape of
/// most read endpoints.
/// What the token may not see is left out (and the answer says so).
pub(crate) async fn blocking_list<T: Serialize + crate::acl::Visible>(
    api: &ApiState,
    ctx: &Ctx,
    topic: Topic,
    read: impl Fn(&CatalogState) -> (u64, Vec<T>),
) -> ApiResult<Response> {
    let expr = parse_filter(ctx)?;
    let mut out = api.registry.block(&[topic], ctx.q, read).await;
    let cut = ctx.acl.retain(&mut out.value);
    Ok(crate::response::filtered(
        filtered(out.index, ctx, expr.as_ref(), out.value),
        cut,
    ))
}

/// `?node-meta=key:value` pairs, all of which a node must carry.
pub(crate) fn node_meta_filter(ctx: &Ctx) -> ApiResult<Vec<(String, String)>> {
    ctx.params
        .all("node-meta")
        .into_iter()
        .map(|kv| {
            kv.split_once(':')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("Invalid node-meta {kv:?}: want key:value"))
                })
        })
        .collect()
}

pub(crate) fn node_matches(node: &Node, meta: &[(String, String)]) -> bool {
    meta.iter().all(|(k, v)| node.meta.get(k) == Some(v))
}

async fn nodes(State(api): State<ApiState>, ctx: Ctx) -> ApiResult<Response> {
    let meta = node_meta_filter(&ctx)?;
    blocking_list(&api, &ctx, Topic::Nodes, |s| {
        let (index, nodes) = s.nodes();
        (
            index,
            nodes
                .into_iter()
                .filter(|n| node_matches(n, &meta))
                .collect(),
        )
    })
    .await
}

/// `/v1/catalog/services`: every service with its tags; with `?filter=`
/// (over the instances, as `/v1/catalog/service/:name` lists them) or
/// `?node-meta=`, the services with an instance that matches, each with
/// the tags of the matching instances, as Consul answers. Filtered, it
/// also waits on nodes, which the filter may look at.
async fn services(State(api): State<ApiState>, ctx: Ctx) -> ApiResult<Response> {
    let expr = parse_filter(&ctx)?;
    let meta = node_meta_filter(&ctx)?;
    if expr.is_none() && meta.is_empty() {
        let (snapshot, mut out) = api
            .registry
            .block_at(&[Topic::Services], ctx.q, |s| s.services())
            .await;
        return api.cached_json_filtered(&ctx, &snapshot, out.index, || {
            let mut cut = false;
            if ctx.acl.enforced {
                let before = out.value.len();
                out.value
                    .retain(|name, _| ctx.acl.can_read(Resource::Service, name));
                cut = out.value.len() < before;
            }
            Ok((render(ctx.pretty, &out.value), cut))
        });
    }
    let (snapshot, index) = api
        .registry
        .block_at(&[Topic::Services, Topic::Nodes], ctx.q, |s| {
            let t = (
                shoal_catalog::topic_index(s, &Topic::Services),
                shoal_catalog::topic_index(s, &Topic::Nodes),
            );
            (t.0.max(t.1), ())
        })
        .await;
    let index = index.index;
    api.cached_json_filtered(&ctx, &snapshot, index, || {
        let mut out: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut cut = false;
        for name in snapshot.service_names() {
            let (_, mut entries) = snapshot.service_entries(name);
            cut |= ctx.acl.retain(&mut entries);
            let list: Vec<CatalogServiceEntry> = entries
                .iter()
                .filter(|e| node_matches(&e.node, &meta))
                .map(|e| catalog_entry(&e.node, &e.service))
                .collect();
            let kept = filter::apply(expr.as_ref(), list);
            if kept.is_empty() {
                continue;
            }
            let mut tags: Vec<String> = kept
                .iter()
                .flat_map(|e| e.service_tags.iter().cloned())
                .collect();
            tags.sort_unstable();
            tags.dedup();
            out.insert(name, tags);
        }
        Ok((render(ctx.pretty, &out), cut))
    })
}

/// One instance as `/v1/catalog/service/:name` lists it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CatalogServiceEntry<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    node: &'a str,
    address: &'a str,
    datacenter: &'a str,
    tagged_addresses: &'a BTreeMap<String, String>,
    node_meta: &'a BTreeMap<String, String>,
    service_kind: &'static str,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
    service_name: &'a str,
    service_tags: &'a [String],
    service_address: &'a str,
    service_tagged_addresses: &'a BTreeMap<String, shoal_catalog::ServiceAddress>,
    service_weights: Weights,
    service_meta: &'a BTreeMap<String, String>,
    service_port: u16,
    service_enable_tag_override: bool,
    create_index: u64,
    modify_index: u64,
}

fn catalog_entry<'a>(node: &'a Node, s: &'a Service) -> CatalogServiceEntry<'a> {
    CatalogServiceEntry {
        id: &node.id,
        node: &node.name,
        address: &node.address,
        datacenter: &node.datacenter,
        tagged_addresses: &node.tagged_addresses,
        node_meta: &node.meta,
        service_kind: "",
        service_id: &s.id,
        service_name: &s.name,
        service_tags: &s.tags,
        service_address: &s.address,
        service_tagged_addresses: &s.tagged_addresses,
        service_weights: s.weights,
        service_meta: &s.meta,
        service_port: s.port,
        service_enable_tag_override: s.enable_tag_override,
        create_index: s.create_index,
        modify_index: s.modify_index,
    }
}

/// Blocks until service `name` changes past `ctx.q.index` (or the wait
/// ends); returns the snapshot read and the service's index there.
pub(crate) async fn wait_for_service(
    api: &ApiState,
    name: &str,
    ctx: &Ctx,
) -> (Arc<CatalogState>, u64) {
    let topic = Topic::Service(name.to_string());
    let (snapshot, out) = api
        .registry
        .block_at(&[topic], ctx.q, |s| (s.service_index(name), ()))
        .await;
    (snapshot, out.index)
}

/// The instances of service `name` in `snapshot` that carry every
/// `?tag=` and `?node-meta=` the request asks for and the token may see,
/// and whether ACLs left some out.
pub(crate) fn service_entries(
    snapshot: &CatalogState,
    name: &str,
    ctx: &Ctx,
) -> ApiResult<(Vec<ServiceEntry>, bool)> {
    let tags = ctx.params.all("tag");
    let meta = node_meta_filter(ctx)?;
    let (_, mut entries) = snapshot.service_entries(name);
    let cut = ctx.acl.retain(&mut entries);
    let kept = entries
        .into_iter()
        .filter(|e| tags.iter().all(|t| e.service.tags.contains(t)) && node_matches(&e.node, &meta))
        .collect();
    Ok((kept, cut))
}

async fn service(
    State(api): State<ApiState>,
    Path(name): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    let expr = parse_filter(&ctx)?;
    node_meta_filter(&ctx)?;
    let (snapshot, index) = wait_for_service(&api, &name, &ctx).await;
    api.cached_json_filtered(&ctx, &snapshot, index, || {
        let (entries, cut) = service_entries(&snapshot, &name, &ctx)?;
        let list: Vec<CatalogServiceEntry> = entries
            .iter()
            .map(|e| catalog_entry(&e.node, &e.service))
            .collect();
        Ok((render(ctx.pretty, &filter::apply(expr.as_ref(), list)), cut))
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeServices {
    node: Arc<Node>,
    services: BTreeMap<String, Arc<Service>>,
}

async fn node(
    State(api): State<ApiState>,
    Path(name): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    let mut out = api
        .registry
        .block(&[Topic::Node(name.clone())], ctx.q, |s| {
            let value = s.node(&name).map(|node| NodeServices {
                node,
                services: s
                    .node_services(&name)
                    .into_iter()
                    .map(|svc| (svc.id.clone(), svc))
                    .collect(),
            });
            (s.node_index(&name), value)
        })
        .await;
    if ctx.acl.enforced {
        if !ctx.acl.can_read(Resource::Node, &name) {
            out.value = None;
        }
        if let Some(v) = out.value.as_mut() {
            v.services
                .retain(|_, svc| ctx.acl.can_read(Resource::Service, &svc.name));
        }
    }
    // Consul answers `null` (200) for an unknown node; clients expect it.
    Ok(json(Some(out.index), ctx.pretty, &out.value))
}
