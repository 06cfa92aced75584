//! Writes of a server that does not lead, committed by the one that does
//! (the catalog side, and why, is `shoal_catalog`'s `registry/forward.rs`).
//!
//! The leader is the one `cluster.rs` elects (the oldest live server); a
//! write goes to its HTTP address as `POST /v1/internal/shoal/write`, the
//! command as JSON, with the catalog's forwarding token: a random value
//! kept in etcd beside the catalog, so only servers of this catalog (who
//! can read it) are listened to, and a write never lands in another
//! catalog whose server happens to have an address this one remembers.
//!
//! When the leader certainly did not apply a write (it could not be
//! reached, or refused it before applying: another catalog, shutting
//! down, an older shoal without the endpoint), the write is committed
//! here, and the leader is left alone for a moment. When it may have
//! (sent, then no answer), the write fails with that said, as a commit to
//! etcd does: sending it again could apply it twice.

use super::client::{enc, EtcdClient, EtcdError};
use super::cluster::Cluster;
use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rand::Rng;
use serde_json::json;
use shoal_catalog::{Command, Error, Forwarded, Forwarder, Registry};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a leader takes forwarded writes.
pub const FORWARD_PATH: &str = "/v1/internal/shoal/write";
/// The header that carries the catalog's forwarding token.
const TOKEN_HEADER: &str = "x-shoal-forward-token";
/// The token's key, under the catalog's prefix.
const TOKEN_KEY: &str = "forward-token";
/// A forwarded write's longest wait: the leader's etcd commit (8 s at
/// most, see `client.rs`) behind whatever its writer has queued.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(20);
/// Connecting to the leader takes at most this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// After the leader could not take a write: writes are committed here
/// for this long before it is tried again.
const PASS_OVER: Duration = Duration::from_secs(2);
/// Largest forwarded command (a KV value or a transaction, as JSON).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// The catalog's forwarding token: read from etcd, or made and stored
/// there by the first server that finds none.
pub async fn cluster_token(client: &EtcdClient, prefix: &str) -> Result<String, EtcdError> {
    let key = enc(format!("{prefix}{TOKEN_KEY}").as_bytes());
    let fresh: [u8; 24] = rand::thread_rng().gen();
    let fresh: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
    let body = json!({
        "compare": [{"target": "CREATE", "result": "EQUAL", "key": key, "create_revision": "0"}],
        "success": [{"request_put": {"key": key, "value": enc(fresh.as_bytes())}}],
        "failure": [{"request_range": {"key": key}}],
    });
    let (created, _, raw) = client.txn(&body).await?;
    if created {
        return Ok(fresh);
    }
    let kv: super::client::KeyValue =
        serde_json::from_value(raw["responses"][0]["response_range"]["kvs"][0].clone())
            .map_err(|e| EtcdError::Protocol(format!("forwarding token: {e}")))?;
    String::from_utf8(kv.value)
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| EtcdError::Protocol("the forwarding token in etcd is not text".into()))
}

/// Sends this server's writes to the leader (see the module doc).
pub struct LeaderForwarder {
    cluster: Arc<Cluster>,
    http: reqwest::Client,
    token: String,
    /// This server's own HTTP address, as the cluster lists it.
    me: String,
    /// A leader that could not take a write, and since when.
    passed_over: Mutex<Option<(String, Instant)>>,
}

impl LeaderForwarder {
    pub fn new(cluster: Arc<Cluster>, token: String, me: String) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(FORWARD_TIMEOUT)
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()?;
        Ok(LeaderForwarder {
            cluster,
            http,
            token,
            me,
            passed_over: Mutex::new(None),
        })
    }

    /// The leader to forward to; `None` when this server leads or none is
    /// known. A failed read of the member list (etcd busy electing, say)
    /// leaves the last leader read in charge: the list says nothing new
    /// then, and committing here only brings back the races forwarding
    /// avoids (a leader that is gone is found out by not answering).
    fn leader(&self) -> Option<String> {
        self.cluster
            .members()
            .leader_elsewhere()
            .map(str::to_string)
    }

    fn passing_over(&self, leader: &str) -> bool {
        let guard = self.passed_over.lock().unwrap_or_else(|e| e.into_inner());
        matches!(&*guard, Some((l, since)) if l == leader && since.elapsed() < PASS_OVER)
    }

    fn pass_over(&self, leader: &str, why: &str) {
        let mut guard = self.passed_over.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(&*guard, Some((l, since)) if l == leader && since.elapsed() < PASS_OVER) {
            tracing::warn!(%leader, why, "the leading server cannot take writes; committing them here for {PASS_OVER:?}");
        }
        *guard = Some((leader.to_string(), Instant::now()));
    }
}

/// Statuses with which the leader's endpoint refuses a write it did not
/// apply (see [`take_forwarded`]), or that an older server or another
/// program answers for a path it does not serve.
fn refused_unapplied(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::FORBIDDEN
            | StatusCode::NOT_FOUND
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::SERVICE_UNAVAILABLE
    )
}

#[async_trait]
impl Forwarder for LeaderForwarder {
    async fn forward(&self, cmd: &Command) -> Option<shoal_catalog::Result<Forwarded>> {
        let leader = self.leader()?;
        let leader = leader.as_str();
        if leader == self.me || self.passing_over(leader) {
            return None;
        }
        let body = match serde_json::to_vec(cmd) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "a write cannot be forwarded; committing it here");
                return None;
            }
        };
        let sent = self
            .http
            .post(format!("http://{leader}{FORWARD_PATH}"))
            .header(TOKEN_HEADER, &self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let unknown = |what: String| {
            Some(Err(Error::Storage(format!(
                "the leading server {leader} {what}; the write may or may not have been applied"
            ))))
        };
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                self.pass_over(leader, &format!("cannot connect: {e}"));
                return None;
            }
            Err(e) if e.is_timeout() => {
                return unknown(format!("did not answer within {FORWARD_TIMEOUT:?}"))
            }
            Err(e) => return unknown(format!("did not answer ({e})")),
        };
        let status = resp.status();
        if refused_unapplied(status) {
            let text = resp.text().await.unwrap_or_default();
            self.pass_over(leader, &format!("{status}: {}", text.trim()));
            return None;
        }
        if status != StatusCode::OK {
            return unknown(format!("answered {status}"));
        }
        match resp.bytes().await {
            Ok(b) => match serde_json::from_slice::<Forwarded>(&b) {
                Ok(answer) => Some(Ok(answer)),
                Err(e) => unknown(format!("answered what is not a write's outcome ({e})")),
            },
            Err(e) => unknown(format!("broke off its answer ({e})")),
        }
    }
}

/// The leader's endpoint for forwarded writes.
pub fn routes(registry: Arc<Registry>, token: String) -> Router {
    let token: Arc<str> = token.into();
    Router::new()
        .route(
            FORWARD_PATH,
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                take_forwarded(registry.clone(), token.clone(), headers, body)
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

/// Applies one forwarded write here (never forwarding it again): 200 with
/// its outcome and this server's position after it; 403 from a server of
/// another catalog, 400 for what is not a command, 503 while shutting
/// down. None of those applied anything.
async fn take_forwarded(
    registry: Arc<Registry>,
    token: Arc<str>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.get(TOKEN_HEADER).map(|v| v.as_bytes()) != Some(token.as_bytes()) {
        return (
            StatusCode::FORBIDDEN,
            "not a server of this catalog (wrong or no forwarding token)\n",
        )
            .into_response();
    }
    let cmd: Command = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not a forwarded write command: {e}\n"),
            )
                .into_response()
        }
    };
    let answer = registry.write_here(cmd).await;
    if matches!(answer.result, Err(Error::Closed)) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this server is shutting down\n",
        )
            .into_response();
    }
    match serde_json::to_vec(&answer) {
        Ok(body) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        // An outcome is plain data; this cannot happen, but if it did, the
        // write is applied and the caller must not think otherwise.
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the write was applied but its outcome cannot be sent: {e}
"
            ),
        )
            .into_response(),
    }
}
