//! An agent's ACLs: the tokens its callers send are resolved by the
//! servers (`GET /v1/internal/shoal/acl/resolve`, which answers a token's
//! own rules to whoever holds it) and cached for [`TOKEN_TTL`], as a
//! Consul client agent caches them (`acl.token_ttl`). While no server
//! answers, a token resolved before keeps its rights (Consul's default
//! `down_policy`, extend-cache); one never resolved is refused once the
//! servers were seen with ACLs on, and let through while they were never
//! reached or had ACLs off (so an agent keeps taking registrations while
//! its servers are away, as before ACLs existed).

use crate::acl::Access;
use crate::error::{ApiError, ApiResult};
use crate::RemoteCatalog;
use axum::http::StatusCode;
use serde::Deserialize;
use shoal_catalog::acl::{Authorizer, Rules};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a resolved token is trusted before the servers are asked again.
pub const TOKEN_TTL: Duration = Duration::from_secs(30);
/// Most resolved secrets kept.
const MAX_CACHED: usize = 4096;
/// Where servers resolve a token for an agent.
pub(crate) const RESOLVE_PATH: &str = "/v1/internal/shoal/acl/resolve";

/// What a server answers about a token.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Resolved {
    pub enabled: bool,
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    pub management: bool,
    pub default_allow: bool,
    pub rules: Vec<String>,
}

impl Resolved {
    fn access(&self) -> Access {
        if !self.enabled {
            return Access {
                accessor: String::new(),
                authz: Authorizer::allow_all(),
                enforced: false,
            };
        }
        let authz = if self.management {
            Authorizer::management()
        } else {
            let parsed: Vec<Rules> = self
                .rules
                .iter()
                .filter_map(|r| Rules::parse(r).ok())
                .collect();
            let refs: Vec<&Rules> = parsed.iter().collect();
            Authorizer::new(&refs, self.default_allow)
        };
        Access {
            accessor: self.accessor_id.clone(),
            authz,
            enforced: true,
        }
    }
}

/// Resolves callers' tokens through the servers (see the module doc).
#[derive(Debug)]
pub struct RemoteAcl {
    servers: RemoteCatalog,
    cache: Mutex<HashMap<String, (Instant, Arc<Access>)>>,
    /// Whether the servers last said ACLs are on.
    seen_on: std::sync::atomic::AtomicBool,
}

impl RemoteAcl {
    /// Resolution through `servers`.
    pub fn new(servers: RemoteCatalog) -> Self {
        RemoteAcl {
            servers,
            cache: Mutex::default(),
            seen_on: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<Access>)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the holder of `secret` (none: whatever the servers give a
    /// request without a token) may do.
    pub async fn resolve(&self, secret: Option<&str>) -> ApiResult<Arc<Access>> {
        let key = secret.unwrap_or("").to_string();
        let cached = self.lock().get(&key).cloned();
        if let Some((at, access)) = &cached {
            if at.elapsed() < TOKEN_TTL {
                return Ok(access.clone());
            }
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(s) = secret {
            let value = reqwest::header::HeaderValue::from_str(s)
                .map_err(|_| ApiError::new(StatusCode::FORBIDDEN, "ACL not found"))?;
            headers.insert("X-Consul-Token", value);
        }
        let answer = self
            .servers
            .forward(
                reqwest::Method::GET,
                RESOLVE_PATH,
                headers,
                bytes::Bytes::new(),
            )
            .await;
        let resp = match answer {
            Ok(r) => r,
            Err(e) => {
                return match cached {
                    Some((_, access)) => Ok(access),
                    None if !self.seen_on.load(std::sync::atomic::Ordering::Relaxed) => {
                        Ok(Arc::new(Resolved::default().access()))
                    }
                    None => Err(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot resolve the ACL token: no server answered ({e})"),
                    )),
                }
            }
        };
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        if status == StatusCode::FORBIDDEN {
            self.lock().remove(&key);
            return Err(ApiError::new(StatusCode::FORBIDDEN, "ACL not found"));
        }
        let resolved: Resolved = match (status, serde_json::from_slice(&body)) {
            (StatusCode::OK, Ok(r)) => r,
            // A server without the endpoint (a Consul): nothing to enforce here.
            (StatusCode::NOT_FOUND, _) => Resolved::default(),
            (s, _) => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "cannot resolve the ACL token: the server answered {s}: {}",
                        String::from_utf8_lossy(&body).trim()
                    ),
                ))
            }
        };
        self.seen_on
            .store(resolved.enabled, std::sync::atomic::Ordering::Relaxed);
        let access = Arc::new(resolved.access());
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), access.clone()));
        Ok(access)
    }
}
