//! What the API says while the store cannot commit. This server is its
//! own leader only as long as it can record writes: when commits fail
//! (disk full, I/O error), it answers as a Consul server without a leader
//! does, so no client takes what it reads then for fresh (a check result
//! that could not be recorded leaves a dead instance `passing`):
//!
//! - `/v1/status/leader` answers `""`;
//! - reads in the default and `?consistent` modes answer 500
//!   `No cluster leader`;
//! - `?stale` reads are served, with `X-Consul-KnownLeader: false` and
//!   `X-Consul-LastContact` the milliseconds since the store failed;
//! - writes fail (500, the storage error) as the store refuses them.
//!
//! All of it ends by itself once a commit succeeds again.
//!
//! On a shared store (etcd), `?consistent` reads first wait until this
//! server's view has caught up with etcd's latest commit. There a failing
//! store means etcd lost quorum, and nothing in this server's view is
//! wrong, only possibly behind: no other server can commit either, and
//! check results are not this server's to record alone. So, as a Consul
//! follower cut off from its leader does, default reads go on from
//! memory (with `X-Consul-KnownLeader: false`), blocking queries keep
//! waiting, and only `?consistent` reads (which need etcd) answer 500
//! `No cluster leader`. The embedded store keeps the stricter rule above:
//! on one server a failed commit does leave the view wrong.

use crate::error::ApiError;
use crate::request::Params;
use crate::ApiState;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use shoal_catalog::StoreFailure;

/// Consul's message for a read that needs a leader when there is none.
pub const NO_LEADER: &str = "No cluster leader";

/// Whether this server leads now (it can commit), and if not, since when.
pub(crate) fn failure(api: &ApiState) -> Option<StoreFailure> {
    api.registry.store_failure()
}

/// Reads that need a leader: everything that reports `X-Consul-Index`
/// from the replicated state (agent endpoints answer from local state);
/// on a `shared` store only `?consistent` ones (see the module doc).
fn needs_leader(method: &Method, path: &str, params: &Params, shared: bool) -> bool {
    let read = matches!(*method, Method::GET | Method::HEAD);
    let replicated = ["/v1/catalog/", "/v1/health/", "/v1/kv"]
        .iter()
        .any(|p| path.starts_with(p));
    let mode = if shared {
        params.has("consistent")
    } else {
        !params.has("stale")
    };
    read && replicated && mode
}

/// Whether `req` needs [`guard`]: a consistent read on a shared store,
/// or any request while the store fails. Everything else goes straight
/// to its handler, with nothing of the guard kept while it runs.
pub(crate) fn wanted(api: &ApiState, req: &Request) -> bool {
    failure(api).is_some()
        || (api.registry.is_shared() && Params::parse(req.uri().query()).has("consistent"))
}

/// The guard: see the module doc. `next` runs the request's handler.
pub(crate) async fn guard<F>(
    api: &ApiState,
    req: Request,
    next: impl FnOnce(Request) -> F,
) -> Response
where
    F: std::future::Future<Output = Response>,
{
    let params = Params::parse(req.uri().query());
    let shared = api.registry.is_shared();
    if shared && params.has("consistent") {
        // On a shared store (etcd) other servers commit too: a consistent
        // read waits until this server's view holds every commit etcd had
        // when the read arrived. If etcd cannot say (it lost quorum since
        // the last probe), there is no leader to be consistent with.
        if let Err(e) = api.registry.consistent().await {
            let why = match e {
                shoal_catalog::Error::Storage(m) => m,
                other => other.to_string(),
            };
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{NO_LEADER}: {why}"),
            )
            .into_response();
        }
    }
    // Read after a consistent read's own look at etcd, which ends a
    // failure as a probe does: the store answered just now.
    let failed = failure(api);
    if failed.is_some() && needs_leader(req.method(), req.uri().path(), &params, shared) {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, NO_LEADER).into_response();
    }
    let Some(failure) = failed else {
        return next(req).await;
    };
    drop(params);
    let mut resp = next(req).await;
    let headers = resp.headers_mut();
    if headers.contains_key("X-Consul-KnownLeader") {
        let since = failure.since.elapsed().as_millis() as u64;
        headers.insert("X-Consul-KnownLeader", HeaderValue::from_static("false"));
        headers.insert("X-Consul-LastContact", HeaderValue::from(since));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_requests_need_a_leader() {
        // (method, path, query, needs a leader on the embedded store,
        // on a shared one)
        let cases = [
            (Method::GET, "/v1/health/service/web", "", true, false),
            (
                Method::GET,
                "/v1/health/service/web",
                "index=3&consistent",
                true,
                true,
            ),
            (Method::GET, "/v1/health/service/web", "stale", false, false),
            (Method::GET, "/v1/catalog/services", "", true, false),
            (Method::GET, "/v1/kv/a", "", true, false),
            (Method::GET, "/v1/kv/a", "consistent", true, true),
            (Method::GET, "/v1/kv", "recurse", true, false),
            (Method::PUT, "/v1/kv/a", "consistent", false, false),
            (Method::GET, "/v1/agent/services", "", false, false),
            (Method::GET, "/v1/status/leader", "", false, false),
            (Method::GET, "/metrics", "", false, false),
        ];
        for (method, path, query, embedded, shared) in cases {
            let params = Params::parse(Some(query));
            assert_eq!(
                needs_leader(&method, path, &params, false),
                embedded,
                "{method} {path}?{query} on the embedded store"
            );
            assert_eq!(
                needs_leader(&method, path, &params, true),
                shared,
                "{method} {path}?{query} on a shared store"
            );
        }
    }
}
