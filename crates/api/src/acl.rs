//! Who is asking, and what they may do: the request's ACL token resolved
//! to an [`Authorizer`], as Consul resolves it.
//!
//! The token comes from `X-Consul-Token`, `Authorization: Bearer`, or
//! `?token=` (in that order); a request without one uses the default
//! token (`--acl-default-token`), else the anonymous token. A secret that
//! names no token (or an expired one) is refused with 403 `ACL not found`
//! whatever the endpoint, as Consul does. Resolved authorizers are cached
//! per secret and dropped as soon as any token or policy changes, so a
//! deleted token stops working at the next request.

use crate::error::{ApiError, ApiResult};
use crate::ApiState;
use arc_swap::ArcSwap;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use shoal_catalog::acl::{Authorizer, Resource};
use shoal_catalog::State;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// The ACL settings of a server or agent.
#[derive(Clone, Debug, Default)]
pub struct AclConfig {
    /// `--acl-enabled`: off, every request may do everything.
    pub enabled: bool,
    /// `--acl-default-policy allow`: what no rule covers is allowed.
    pub default_allow: bool,
    /// `--acl-default-token`: used by requests (and DNS) without a token.
    pub default_token: Option<String>,
}

/// What the request's token may do.
#[derive(Clone, Debug)]
pub struct Access {
    /// The token's AccessorID (empty with ACLs off), for messages.
    pub accessor: String,
    /// Its rules.
    pub authz: Authorizer,
    /// Whether ACLs are on (lists say when they were filtered).
    pub enforced: bool,
}

static OPEN: LazyLock<Arc<Access>> = LazyLock::new(|| {
    Arc::new(Access {
        accessor: String::new(),
        authz: Authorizer::allow_all(),
        enforced: false,
    })
});

/// Most resolved secrets kept; past it the cache starts again.
const MAX_CACHED: usize = 4096;

/// A resolved secret: valid while the ACL index is `at` and until
/// `expires` (unix seconds), if the token expires.
#[derive(Debug)]
struct Resolved {
    at: u64,
    expires: Option<i64>,
    access: Arc<Access>,
}

/// Resolves tokens against the catalog's tokens and policies. Reads of
/// the cache take no lock (it is swapped whole on the rare insert).
#[derive(Debug, Default)]
pub struct AclResolver {
    config: AclConfig,
    /// Secret → what it may do.
    cache: ArcSwap<HashMap<String, Resolved>>,
    /// Serializes inserts (readers never wait on it).
    inserting: Mutex<()>,
}

impl Access {
    /// `read` on `name`, or 403.
    pub fn need_read(&self, r: Resource, name: &str) -> ApiResult<()> {
        self.need(self.authz.read(r, name), r, "read", name)
    }
    /// `write` on `name`, or 403.
    pub fn need_write(&self, r: Resource, name: &str) -> ApiResult<()> {
        self.need(self.authz.write(r, name), r, "write", name)
    }
    /// `list` on `name`, or 403.
    pub fn need_list(&self, r: Resource, name: &str) -> ApiResult<()> {
        self.need(self.authz.list(r, name), r, "list", name)
    }
    /// `write` on every key under `prefix` (recursive delete), or 403.
    pub fn need_key_write_prefix(&self, prefix: &str) -> ApiResult<()> {
        self.need(
            self.authz.key_write_prefix(prefix),
            Resource::Key,
            "write-prefix",
            prefix,
        )
    }
    /// `operator` read, or 403.
    pub fn need_operator_read(&self) -> ApiResult<()> {
        self.need_plain(self.authz.operator_read(), "operator:read")
    }
    /// `operator` write, or 403.
    pub fn need_operator_write(&self) -> ApiResult<()> {
        self.need_plain(self.authz.operator_write(), "operator:write")
    }
    /// `acl` read, or 403.
    pub fn need_acl_read(&self) -> ApiResult<()> {
        self.need_plain(self.authz.acl_read(), "acl:read")
    }
    /// `acl` write, or 403.
    pub fn need_acl_write(&self) -> ApiResult<()> {
        self.need_plain(self.authz.acl_write(), "acl:write")
    }
    /// Whether `read` on `name` is allowed (lists keep what passes).
    pub fn can_read(&self, r: Resource, name: &str) -> bool {
        self.authz.read(r, name)
    }

    fn need(&self, ok: bool, r: Resource, level: &str, name: &str) -> ApiResult<()> {
        if ok {
            return Ok(());
        }
        Err(ApiError::permission_denied(
            &self.accessor,
            &format!("{}:{level}", r.kind()),
            name,
        ))
    }

    fn need_plain(&self, ok: bool, permission: &str) -> ApiResult<()> {
        if ok {
            return Ok(());
        }
        Err(ApiError::permission_denied(&self.accessor, permission, ""))
    }
}

/// The secret a request carries, if any.
pub fn request_token(parts: &Parts) -> Option<String> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    if let Some(t) = header("x-consul-token") {
        return Some(t);
    }
    if let Some(auth) = header("authorization") {
        let mut words = auth.splitn(2, ' ');
        if words
            .next()
            .is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
        {
            if let Some(t) = words.next().map(str::trim).filter(|t| !t.is_empty()) {
                return Some(t.to_string());
            }
        }
    }
    crate::request::Params::parse(parts.uri.query())
        .get("token")
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

impl AclResolver {
    /// A resolver with `config`.
    pub fn new(config: AclConfig) -> Self {
        AclResolver {
            config,
            cache: ArcSwap::default(),
            inserting: Mutex::new(()),
        }
    }

    /// Whether ACLs are on.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// `--acl-default-policy allow`.
    pub fn default_allow(&self) -> bool {
        self.config.default_allow
    }

    /// What the holder of `secret` (none: the default or anonymous
    /// token) may do in `state`; 403 `ACL not found` for an unknown one.
    pub fn resolve(&self, state: &State, secret: Option<&str>) -> ApiResult<Arc<Access>> {
        if !self.config.enabled {
            return Ok(OPEN.clone());
        }
        let secret = secret
            .or(self.config.default_token.as_deref())
            .unwrap_or(shoal_catalog::acl::ANONYMOUS_SECRET);
        let at = state.acl_index();
        let now = now_unix();
        if let Some(r) = self.cache.load().get(secret) {
            if r.at == at {
                // Expiry needs no commit: checked each time.
                return match r.expires {
                    Some(t) if t <= now => Err(not_found()),
                    _ => Ok(r.access.clone()),
                };
            }
        }
        let (token, authz) = state
            .acl_authorizer(secret, self.config.default_allow, now)
            .ok_or_else(not_found)?;
        let access = Arc::new(Access {
            accessor: token.accessor_id.clone(),
            authz,
            enforced: true,
        });
        let _one = self.inserting.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.cache.load();
        // Entries of older ACL indexes are dropped: they can only miss.
        let mut next: HashMap<String, Resolved> = if current.len() >= MAX_CACHED {
            HashMap::new()
        } else {
            current
                .iter()
                .filter(|(_, r)| r.at == at)
                .map(|(k, r)| {
                    let kept = Resolved {
                        at: r.at,
                        expires: r.expires,
                        access: r.access.clone(),
                    };
                    (k.clone(), kept)
                })
                .collect()
        };
        next.insert(
            secret.to_string(),
            Resolved {
                at,
                expires: token.expiration_unix,
                access: access.clone(),
            },
        );
        self.cache.store(Arc::new(next));
        Ok(access)
    }
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "ACL not found")
}

use shoal_catalog::clock::now_unix;

impl FromRequestParts<ApiState> for Arc<Access> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> ApiResult<Self> {
        state.access(parts).await
    }
}

impl ApiState {
    /// What the request's token may do: resolved here (a server), or by
    /// the servers (an agent, see `acl_remote.rs`).
    pub(crate) async fn access(&self, parts: &Parts) -> ApiResult<Arc<Access>> {
        if let Some(remote) = &self.remote_acl {
            return remote.resolve(request_token(parts).as_deref()).await;
        }
        if !self.acl.enabled() {
            return Ok(OPEN.clone());
        }
        let token = request_token(parts);
        self.acl
            .resolve(&self.registry.snapshot(), token.as_deref())
    }
}

/// What a reader needs to see one item of a list, as Consul filters:
/// an instance needs `service:read` on its service and `node:read` on its
/// node; a node `node:read`; a check the read of its service (or of its
/// node for a node check).
pub trait Visible {
    /// Whether `access` may see this item.
    fn visible(&self, access: &Access) -> bool;
}

impl Visible for shoal_catalog::Node {
    fn visible(&self, a: &Access) -> bool {
        a.can_read(Resource::Node, &self.name)
    }
}

impl Visible for shoal_catalog::Check {
    fn visible(&self, a: &Access) -> bool {
        a.can_read(Resource::Node, &self.node)
            && (self.service_id.is_empty() || a.can_read(Resource::Service, &self.service_name))
    }
}

impl Visible for shoal_catalog::ServiceEntry {
    fn visible(&self, a: &Access) -> bool {
        a.can_read(Resource::Node, &self.node.name)
            && a.can_read(Resource::Service, &self.service.name)
    }
}

impl Visible for shoal_catalog::Service {
    fn visible(&self, a: &Access) -> bool {
        a.can_read(Resource::Service, &self.name)
    }
}

impl Visible for shoal_catalog::Session {
    fn visible(&self, a: &Access) -> bool {
        a.can_read(Resource::Session, &self.node)
    }
}

impl<T: Visible> Visible for Arc<T> {
    fn visible(&self, a: &Access) -> bool {
        (**self).visible(a)
    }
}

impl Access {
    /// Keeps what this token may see; says whether anything went.
    pub fn retain<T: Visible>(&self, list: &mut Vec<T>) -> bool {
        if !self.enforced {
            return false;
        }
        let before = list.len();
        list.retain(|item| item.visible(self));
        list.len() < before
    }
}

/// Who resolves the tokens a guarded router's callers send.
#[derive(Clone)]
enum Resolver {
    /// This server's API (its catalog, or its servers on an agent).
    Api(ApiState),
    /// The servers of a process that keeps no catalog (`shoal proxy`).
    Remote(Arc<crate::acl_remote::RemoteAcl>),
}

impl Resolver {
    async fn access(&self, parts: &Parts) -> ApiResult<Arc<Access>> {
        match self {
            Resolver::Api(state) => state.access(parts).await,
            Resolver::Remote(acl) => acl.resolve(request_token(parts).as_deref()).await,
        }
    }
}

/// `router` answered only to tokens with `agent:read` on `node`.
fn agent_read_guard(router: axum::Router, resolver: Resolver, node: String) -> axum::Router {
    router.route_layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let (resolver, node) = (resolver.clone(), node.clone());
            async move {
                use axum::response::IntoResponse;
                let (parts, body) = req.into_parts();
                let allowed = match resolver.access(&parts).await {
                    Ok(access) => access.need_read(Resource::Agent, &node),
                    Err(e) => Err(e),
                };
                match allowed {
                    Ok(()) => {
                        next.run(axum::extract::Request::from_parts(parts, body))
                            .await
                    }
                    Err(e) => e.into_response(),
                }
            }
        },
    ))
}

/// `router` answered only to tokens with `agent:read` on `node`, as the
/// servers of `servers` resolve them (a `shoal proxy`'s statistics: it
/// keeps no tokens itself). With ACLs off at the servers, to anyone.
pub fn agent_read_only_remote(
    router: axum::Router,
    servers: crate::RemoteCatalog,
    node: String,
) -> axum::Router {
    let acl = Arc::new(crate::acl_remote::RemoteAcl::new(servers));
    agent_read_guard(router, Resolver::Remote(acl), node)
}

/// `router` answered only to tokens with `agent:read` on this node (what
/// else the binary serves beside the API, such as `shoal dev`'s proxy
/// statistics, which Consul's metrics endpoints guard the same way).
pub fn agent_read_only(router: axum::Router, state: ApiState) -> axum::Router {
    let node = state.config.node_name.clone();
    agent_read_guard(router, Resolver::Api(state), node)
}
