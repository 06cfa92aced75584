//! An agent's ACLs: the tokens its callers send are resolved by the
//! servers (`GET /v1/internal/shoal/acl/resolve`, which answers a token's
//! own rules to whoever holds it) and cached for [`TOKEN_TTL`], as a
//! Consul client agent caches them (`acl.token_ttl`). While no server
//! answers, a token resolved before keeps its rights (Consul's default
//! `down_policy`, extend-cache); one never resolved is refused once the
//! servers were seen with ACLs on, and let through while they were never
//! reached or had ACLs off (so an agent keeps taking registrations while
//! its servers are away, as before ACLs existed). The servers get
//! [`ASK_TIMEOUT`] to answer; where they had ACLs off, a stale answer is
//! used at once and refreshed beside, so the agent's own API never waits
//! on a slow or cut-off server.

use crate::acl::Access;
use crate::error::{ApiError, ApiResult};
use crate::RemoteCatalog;
use axum::http::StatusCode;
use serde::Deserialize;
use shoal_catalog::acl::Authorizer;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a resolved token is trusted before the servers are asked again.
pub const TOKEN_TTL: Duration = Duration::from_secs(30);
/// Longest wait for the servers' answer about a token.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);
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
            Authorizer::of_policies(self.rules.iter().map(String::as_str), self.default_allow)
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
    seen_on: AtomicBool,
    /// A background refresh is under way.
    refreshing: AtomicBool,
}

impl RemoteAcl {
    /// Resolution through `servers`.
    pub fn new(servers: RemoteCatalog) -> Self {
        RemoteAcl {
            servers,
            cache: Mutex::default(),
            seen_on: AtomicBool::new(false),
            refreshing: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<Access>)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the holder of `secret` (none: whatever the servers give a
    /// request without a token) may do.
    pub async fn resolve(self: &Arc<Self>, secret: Option<&str>) -> ApiResult<Arc<Access>> {
        let key = secret.unwrap_or("").to_string();
        let cached = self.lock().get(&key).cloned();
        if let Some((at, access)) = &cached {
            if at.elapsed() < TOKEN_TTL {
                return Ok(access.clone());
            }
            if !access.enforced {
                // ACLs were off: answer at once, and ask the servers again
                // beside, so a slow or cut-off server never holds the
                // agent's own API up.
                if !self.refreshing.swap(true, Ordering::AcqRel) {
                    let (me, secret) = (self.clone(), secret.map(str::to_string));
                    tokio::spawn(async move {
                        let _ = me.fetch(secret.as_deref()).await;
                        me.refreshing.store(false, Ordering::Release);
                    });
                }
                return Ok(access.clone());
            }
        }
        match self.fetch(secret).await {
            Ok(access) => Ok(access),
            Err(Fetch::Refused(e)) => Err(e),
            Err(Fetch::Unreachable(why)) => match cached {
                Some((_, access)) => Ok(access),
                None if !self.seen_on.load(Ordering::Relaxed) => {
                    Ok(Arc::new(Resolved::default().access()))
                }
                None => Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot resolve the ACL token: no server answered ({why})"),
                )),
            },
        }
    }

    /// Asks the servers about `secret` (within [`ASK_TIMEOUT`]) and keeps
    /// their answer.
    async fn fetch(&self, secret: Option<&str>) -> Result<Arc<Access>, Fetch> {
        let key = secret.unwrap_or("").to_string();
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(s) = secret {
            let value = reqwest::header::HeaderValue::from_str(s).map_err(|_| {
                Fetch::Refused(ApiError::new(StatusCode::FORBIDDEN, "ACL not found"))
            })?;
            headers.insert("X-Consul-Token", value);
        }
        let ask = async {
            let resp = self
                .servers
                .forward(
                    reqwest::Method::GET,
                    RESOLVE_PATH,
                    headers,
                    bytes::Bytes::new(),
                )
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = resp.bytes().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, body))
        };
        let (status, body) = match tokio::time::timeout(ASK_TIMEOUT, ask).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err(Fetch::Unreachable(e)),
            Err(_) => {
                return Err(Fetch::Unreachable(format!(
                    "no answer within {ASK_TIMEOUT:?}"
                )))
            }
        };
        if status == StatusCode::FORBIDDEN {
            self.lock().remove(&key);
            return Err(Fetch::Refused(ApiError::new(
                StatusCode::FORBIDDEN,
                "ACL not found",
            )));
        }
        let resolved: Resolved = match (status, serde_json::from_slice(&body)) {
            (StatusCode::OK, Ok(r)) => r,
            // A server without the endpoint (a Consul): nothing to enforce here.
            (StatusCode::NOT_FOUND, _) => Resolved::default(),
            (s, _) => {
                return Err(Fetch::Unreachable(format!(
                    "the server answered {s}: {}",
                    String::from_utf8_lossy(&body).trim()
                )))
            }
        };
        self.seen_on.store(resolved.enabled, Ordering::Relaxed);
        let access = Arc::new(resolved.access());
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), access.clone()));
        Ok(access)
    }
}

/// Why a token could not be resolved.
enum Fetch {
    /// The servers refused it (403 `ACL not found`).
    Refused(ApiError),
    /// No usable answer: the cache, or the default, decides.
    Unreachable(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that takes connections and never answers: an agent
    /// that never saw ACLs on still serves its callers, after at most
    /// the wait for an answer.
    #[tokio::test]
    async fn a_silent_server_does_not_hold_the_agent_up() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                open.push(conn);
            }
        });
        let servers =
            RemoteCatalog::new(crate::RemoteConfig::new(format!("http://{addr}"))).unwrap();
        let acl = Arc::new(RemoteAcl::new(servers));
        let access = acl.resolve(Some("any")).await.unwrap();
        assert!(!access.enforced);
        held.abort();
    }

    /// Once the servers were seen with ACLs on, a token never resolved
    /// is refused while no server answers.
    #[tokio::test]
    async fn with_acls_seen_on_an_unknown_token_is_refused_while_servers_are_away() {
        let servers = RemoteCatalog::new(crate::RemoteConfig::new("http://127.0.0.1:9")).unwrap();
        let acl = Arc::new(RemoteAcl::new(servers));
        acl.seen_on.store(true, Ordering::Relaxed);
        let err = acl.resolve(Some("never-seen")).await.unwrap_err();
        assert_eq!(err.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            err.message.contains("no server answered"),
            "{}",
            err.message
        );
    }
}
