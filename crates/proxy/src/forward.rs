//! One HTTP request through the proxy: route, wait for an instance if
//! there is none yet, pick one, forward with retries on another instance
//! when that is safe, stream the answer back, and count everything.

use crate::balance::PickInput;
use crate::error::ProxyError;
use crate::headers::{
    check_framing, is_upgrade, request_host, set_forwarded, set_rfc7239, strip_hop_by_hop,
};
use crate::instance::{Instance, InstanceState};
use crate::pool::UpstreamBody;
use crate::table::{Target, Upstream, UpstreamKey};
use crate::Shared;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::upgrade::OnUpgrade;
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// The body type answered to clients.
pub type ProxyBody = UpstreamBody;

/// Answers one request; never fails (errors become local answers).
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    client: SocketAddr,
    fixed: Option<Arc<str>>,
) -> Response<ProxyBody> {
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let (method, host, path) = (
        req.method().clone(),
        request_host(req.uri(), req.headers()),
        req.uri().path().to_string(),
    );
    let response = match proxy(&shared, req, client, fixed).await {
        Ok(resp) => resp,
        Err(e) => fail_to_proxy(&shared, e),
    };
    if shared.cfg.access_log {
        tracing::info!(target: "shoal::access", %client, %method, %host, %path, status = response.status().as_u16(), ms = started.elapsed().as_millis() as u64, "request");
    }
    response
}

/// The local answer for a failure: its status, a plain-text body saying
/// what happened, and `Connection: close` when the client misbehaved.
pub(crate) fn fail_to_proxy(shared: &Shared, e: ProxyError) -> Response<ProxyBody> {
    count_failure(shared, &e);
    let close = matches!(e, ProxyError::Client(_));
    local_response(e.status(), format!("{e}\n"), close)
}

/// Counts a request the proxy answers itself.
pub(crate) fn count_failure(shared: &Shared, e: &ProxyError) {
    match e {
        ProxyError::NoRoute { .. } => shared.stats.no_route.fetch_add(1, Ordering::Relaxed),
        ProxyError::Client(_) => shared.stats.rejected.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
}

/// A response made by the proxy itself.
pub fn local_response(status: StatusCode, body: String, close: bool) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if close {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

fn service_label(key: &UpstreamKey) -> String {
    match &key.1 {
        Some(tag) => format!("{tag}.{}", key.0),
        None => key.0.clone(),
    }
}

/// The upstream for `key`, waiting (bounded) for a first instance.
pub(crate) async fn wait_for_upstream(
    shared: &Shared,
    key: &UpstreamKey,
) -> Result<Arc<Upstream>, ProxyError> {
    if let Some(up) = shared.discovery.table().upstream(key) {
        return Ok(up.clone());
    }
    let mut changes = shared.discovery.subscribe();
    let waiting = shared.queued.fetch_add(1, Ordering::Relaxed);
    let _leave = scopeguard(|| {
        shared.queued.fetch_sub(1, Ordering::Relaxed);
    });
    if waiting >= shared.cfg.max_queued {
        return Err(ProxyError::QueueFull(service_label(key)));
    }
    shared.stats.queued.fetch_add(1, Ordering::Relaxed);
    let started = tokio::time::Instant::now();
    let deadline = started + shared.cfg.queue_timeout;
    loop {
        if let Some(up) = shared.discovery.table().upstream(key) {
            return Ok(up.clone());
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => continue,
            _ => {
                shared.stats.queue_timeouts.fetch_add(1, Ordering::Relaxed);
                return Err(ProxyError::NoInstance {
                    service: service_label(key),
                    waited: started.elapsed(),
                });
            }
        }
    }
}

struct Guard<F: FnMut()>(F);
impl<F: FnMut()> Drop for Guard<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}
fn scopeguard<F: FnMut()>(f: F) -> Guard<F> {
    Guard(f)
}

fn upstream_uri(uri: &Uri, strip: Option<&str>) -> Uri {
    let path = uri.path();
    let path = match strip.and_then(|p| path.strip_prefix(p)) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    };
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    pq.parse().unwrap_or_else(|_| Uri::from_static("/"))
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

async fn proxy(
    shared: &Shared,
    mut req: Request<Incoming>,
    client: SocketAddr,
    fixed: Option<Arc<str>>,
) -> Result<Response<ProxyBody>, ProxyError> {
    check_framing(req.headers()).map_err(ProxyError::Client)?;
    let host = request_host(req.uri(), req.headers());
    let target = match fixed {
        Some(service) => Target {
            key: (service.to_string(), None),
            strip: None,
        },
        None => shared
            .discovery
            .table()
            .resolve(&host, req.uri().path())
            .ok_or_else(|| ProxyError::NoRoute {
                host: host.clone(),
                path: req.uri().path().to_string(),
            })?,
    };
    let upstream = wait_for_upstream(shared, &target.key).await?;
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers, upgrade);
    let trusted = shared
        .cfg
        .trusted_proxies
        .iter()
        .any(|c| c.contains(client.ip()));
    set_forwarded(&mut headers, client.ip(), trusted, &host);
    if shared.cfg.forwarded {
        set_rfc7239(&mut headers, client.ip(), trusted, &host);
    }
    let uri = upstream_uri(&parts.uri, target.strip.as_deref());
    let replayable = idempotent(&parts.method) && body.is_end_stream();
    let send = Outgoing {
        method: parts.method,
        uri,
        headers,
        upgrade,
    };
    // Balancers hash on the request's own headers (cookies, custom ones),
    // which the forwarding rules above leave as they were.
    let input = PickInput {
        client_ip: client.ip(),
        headers: &send.headers,
    };
    let (resp, upstream_upgrade) =
        send_with_retries(shared, &upstream, &input, &send, body, replayable).await?;
    Ok(finish_response(resp, client_upgrade.zip(upstream_upgrade)))
}

/// What is sent upstream, rebuilt for each attempt.
struct Outgoing {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    upgrade: bool,
}

impl Outgoing {
    fn request(&self, body: UpstreamBody) -> Request<UpstreamBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

fn empty_body() -> UpstreamBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// An attempt on `inst` that got no answer: count it as an error and let
/// passive health see it.
pub(crate) fn attempt_failed(shared: &Shared, upstream: &Upstream, inst: &Instance) {
    inst.state.stats.errors.fetch_add(1, Ordering::Relaxed);
    upstream.record_failure(inst, &shared.cfg.eject);
}

async fn send_with_retries(
    shared: &Shared,
    upstream: &Upstream,
    input: &PickInput<'_>,
    out: &Outgoing,
    body: Incoming,
    replayable: bool,
) -> Result<(Response<Tracked>, Option<OnUpgrade>), ProxyError> {
    let mut body = Some(body.boxed());
    let mut tried = Vec::new();
    let mut last = String::from("no instance could be tried");
    for attempt in 0..=shared.cfg.retries {
        let Some(i) = upstream.pick(input, &tried) else {
            break;
        };
        let inst = &upstream.instances[i];
        if let Some(prev) = tried.last() {
            upstream.instances[*prev]
                .state
                .stats
                .retries
                .fetch_add(1, Ordering::Relaxed);
        }
        tried.push(i);
        let mut conn = match connect(shared, inst, out.upgrade).await {
            Ok(c) => c,
            Err(e) => {
                last = format!("instance {} ({}): {e}", inst.id, inst.addr);
                attempt_failed(shared, upstream, inst);
                continue;
            }
        };
        let req_body = match body.take() {
            Some(b) => b,
            None if replayable => empty_body(),
            None => break,
        };
        inst.state.stats.requests.fetch_add(1, Ordering::Relaxed);
        let guard = Outstanding::new(inst.state.clone());
        let started = Instant::now();
        let sent = tokio::time::timeout(
            shared.cfg.request_timeout,
            conn.try_send_request(out.request(req_body)),
        )
        .await;
        match sent {
            Ok(Ok(mut resp)) => {
                let switched = (out.upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS)
                    .then(|| hyper::upgrade::on(&mut resp));
                if !out.upgrade {
                    inst.state.pool.put(conn, shared.cfg.max_idle_per_instance);
                }
                let status = resp.status();
                inst.state.stats.record(status.as_u16(), started.elapsed());
                if status.is_server_error() {
                    upstream.record_failure(inst, &shared.cfg.eject);
                } else {
                    inst.state.record_success();
                }
                let (parts, body) = resp.into_parts();
                return Ok((
                    Response::from_parts(
                        parts,
                        Tracked {
                            inner: body,
                            _guard: guard,
                        },
                    ),
                    switched,
                ));
            }
            Ok(Err(mut e)) => {
                last = format!("instance {} ({}): {}", inst.id, inst.addr, e.error());
                attempt_failed(shared, upstream, inst);
                // hyper hands the request back when it was never sent: safe to retry.
                if let Some(unsent) = e.take_message() {
                    body = Some(unsent.into_body());
                    continue;
                }
                if !replayable || attempt == shared.cfg.retries {
                    break;
                }
            }
            Err(_) => {
                attempt_failed(shared, upstream, inst);
                return Err(ProxyError::UpstreamTimeout(upstream.service.clone()));
            }
        }
    }
    Err(ProxyError::Upstream {
        service: upstream.service.clone(),
        reason: last,
    })
}

/// A pooled connection to `inst`, or a new one.
async fn connect(
    shared: &Shared,
    inst: &Instance,
    upgrade: bool,
) -> Result<SendRequest<UpstreamBody>, String> {
    if !upgrade {
        if let Some(conn) = inst.state.pool.take() {
            return Ok(conn);
        }
    }
    let stream = tokio::time::timeout(
        shared.cfg.connect_timeout,
        tokio::net::TcpStream::connect(inst.addr),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

/// Strips hop-by-hop headers from the answer and, for a switched
/// protocol, joins the client's and the upstream's upgraded connections.
fn finish_response(
    resp: Response<Tracked>,
    upgrades: Option<(OnUpgrade, OnUpgrade)>,
) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    if let (true, Some((client_side, upstream_side))) =
        (parts.status == StatusCode::SWITCHING_PROTOCOLS, upgrades)
    {
        strip_hop_by_hop(&mut parts.headers, true);
        tokio::spawn(async move {
            let _in_flight = body;
            let (Ok(c), Ok(u)) = (client_side.await, upstream_side.await) else {
                return;
            };
            let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
            let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
        });
        return Response::from_parts(parts, empty_body());
    }
    strip_hop_by_hop(&mut parts.headers, false);
    Response::from_parts(parts, body.boxed())
}

/// Counts a request as in flight until its answer's body is done.
struct Outstanding(Arc<InstanceState>);

impl Outstanding {
    fn new(state: Arc<InstanceState>) -> Self {
        state.outstanding.fetch_add(1, Ordering::Relaxed);
        Outstanding(state)
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An upstream answer's body, holding its in-flight count.
pub struct Tracked {
    inner: Incoming,
    _guard: Outstanding,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_prefix_rewrites() {
        let cases = [
            ("/api/users?x=1", Some("/api"), "/users?x=1"),
            ("/api", Some("/api"), "/"),
            ("/apiary", Some("/api"), "/apiary"),
            ("/other", Some("/api"), "/other"),
            ("/a/b", None, "/a/b"),
        ];
        for (uri, strip, want) in cases {
            assert_eq!(
                upstream_uri(&uri.parse().unwrap(), strip).to_string(),
                want,
                "{uri}"
            );
        }
    }
}
