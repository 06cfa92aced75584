//! One request on the full (hyper) path: checked and routed by the
//! request rules (`crate::request`), its headers rewritten on hyper's
//! map, then sent by the one retry loop through this path's [`Exchange`]
//! (a pooled hyper connection; the answer's head within the answer
//! timeout, counted once the client's body is sent), and the answer
//! streamed back with its end reported to passive health.

use super::body::{client_body, BodySignal, Tracked};
use super::grpc;
use super::headers::{
    check_framing, is_upgrade, request_host, set_forwarded, set_rfc7239, strip_hop_by_hop,
};
use super::pool::UpstreamBody;
use crate::balance::PickInput;
use crate::config::Proto;
use crate::error::ProxyError;
use crate::instance::Instance;
use crate::request::attempts::{send_with_retries, Exchange};
use crate::request::outcome::{answer_started, idempotent, AnswerEnd, Failure, InFlight};
use crate::request::route::{target, wait_for_upstream};
use crate::request::{access, forwarding};
use crate::table::Upstream;
use crate::Shared;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::client::conn::http2;
use hyper::header::{
    HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, TE, TRANSFER_ENCODING, VIA,
};
use hyper::upgrade::OnUpgrade;
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The body type answered to clients.
pub type ProxyBody = UpstreamBody;

/// Answers one request (HTTP/1.x or HTTP/2; `https` when it came over
/// TLS); never fails (errors become local answers: for a gRPC call, a
/// gRPC status).
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    client: SocketAddr,
    fixed: Option<Arc<str>>,
    https: bool,
) -> Response<ProxyBody> {
    let started = access::received(&shared);
    let (method, host, path) = (
        req.method().clone(),
        request_host(req.uri(), req.headers()),
        req.uri().path().to_string(),
    );
    let grpc = grpc::is_grpc(req.headers());
    let response = match proxy(&shared, req, client, fixed, https).await {
        Ok(resp) => resp,
        Err(e) if grpc => {
            access::answered_locally(&shared, &e);
            grpc::failure(&e)
        }
        Err(e) => fail_to_proxy(&shared, e),
    };
    access::log(
        started,
        client,
        method.as_str(),
        &host,
        &path,
        response.status().as_u16(),
    );
    response
}

/// The local answer for a failure: its status, a plain-text body saying
/// what happened, and `Connection: close` when the client misbehaved.
pub(crate) fn fail_to_proxy(shared: &Shared, e: ProxyError) -> Response<ProxyBody> {
    access::answered_locally(shared, &e);
    local_response(e.status(), e.body(), e.closes())
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

/// The request's Host by the forwarding rules: the target's authority
/// for an absolute-form target, else the one Host header.
fn checked_host(req: &Request<Incoming>) -> Result<Option<HeaderValue>, ProxyError> {
    let http11 = req.version() >= Version::HTTP_11;
    let hosts = req.headers().get_all(HOST).iter().map(|v| v.as_bytes());
    let authority = req.uri().authority().map(|a| a.as_str().as_bytes());
    if req.version() == Version::HTTP_2 {
        let host = forwarding::h2_request_host(hosts, authority).map_err(ProxyError::Client)?;
        return Ok(HeaderValue::from_bytes(host).ok());
    }
    let host = forwarding::request_host(http11, hosts, authority).map_err(ProxyError::Client)?;
    Ok(host.and_then(|h| HeaderValue::from_bytes(h).ok()))
}

async fn proxy(
    shared: &Arc<Shared>,
    mut req: Request<Incoming>,
    client: SocketAddr,
    fixed: Option<Arc<str>>,
    https: bool,
) -> Result<Response<ProxyBody>, ProxyError> {
    check_framing(req.headers()).map_err(ProxyError::Client)?;
    let host_value = checked_host(&req)?;
    let via = req.headers().get_all(VIA).iter().map(|v| v.as_bytes());
    if forwarding::seen_before(via, &shared.via) {
        return Err(ProxyError::SeenBefore(shared.via.clone()));
    }
    let host = request_host(req.uri(), req.headers());
    let target = target(
        &shared.discovery.table(),
        fixed.as_ref(),
        &host,
        req.uri().path(),
    )?;
    let upstream = wait_for_upstream(shared, &target.key).await?;
    if upstream.redirect_https && !https {
        return Ok(redirect_to_https(&req, &host));
    }
    let upgrade = is_upgrade(req.headers());
    let trailers = wants_trailers(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    // A chunked body goes on chunked, whatever the method: left to
    // itself, hyper sends a GET or HEAD of unknown body length with none,
    // so the instance would see another request than the client sent.
    let chunked = headers.contains_key(TRANSFER_ENCODING);
    strip_hop_by_hop(&mut headers, upgrade);
    let h2 = upstream.proto == Proto::H2c;
    if chunked && !h2 {
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    }
    // gRPC needs `te: trailers` end to end; HTTP/2 allows only that TE.
    if trailers && h2 {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    let authority = host_value.clone();
    if let Some(value) = host_value {
        headers.insert(HOST, value);
    }
    let trusted = shared
        .cfg
        .trusted_proxies
        .iter()
        .any(|c| c.contains(client.ip()));
    let scheme = if https { "https" } else { "http" };
    set_forwarded(&mut headers, client.ip(), trusted, &host, scheme);
    if shared.cfg.forwarded {
        set_rfc7239(&mut headers, client.ip(), trusted, &host, scheme);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("1.1 {}", shared.via)) {
        headers.append(VIA, v);
    }
    let replayable = idempotent(parts.method.as_str().as_bytes()) && body.is_end_stream();
    let mut uri = upstream_uri(&parts.uri, target.strip.as_deref());
    if h2 {
        // HTTP/2 names the host in `:authority` (and needs a scheme).
        uri = h2_uri(&uri, authority.as_ref());
        headers.remove(HOST);
    }
    let mut full = FullExchange {
        shared: shared.clone(),
        upstream: upstream.clone(),
        method: parts.method,
        uri,
        headers,
        upgrade,
        body: Some(client_body(body)),
    };
    // Balancers hash on the request's own headers (cookies, custom ones),
    // which the forwarding rules above leave as they were.
    let headers = full.headers.clone();
    let input = PickInput {
        client_ip: client.ip(),
        headers: &headers,
    };
    let (resp, upstream_upgrade) =
        send_with_retries(shared, &upstream, &input, &mut full, replayable).await?;
    Ok(finish_response(resp, client_upgrade.zip(upstream_upgrade)))
}

/// The full path's exchange: what is sent upstream, rebuilt for each
/// attempt, and the client's body until it is sent.
struct FullExchange {
    shared: Arc<Shared>,
    upstream: Arc<Upstream>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    upgrade: bool,
    body: Option<(UpstreamBody, BodySignal)>,
}

impl FullExchange {
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

impl Exchange for FullExchange {
    type Answer = (Response<Tracked>, Option<OnUpgrade>);

    async fn attempt(
        &mut self,
        shared: &Shared,
        _upstream: &Upstream,
        inst: &Instance,
    ) -> Result<Self::Answer, Failure> {
        let mut conn = connect(shared, inst, self.upstream.proto, self.upgrade).await?;
        // The body goes once; a replayable request has none to resend.
        let (req_body, sent_signal) = match self.body.take() {
            Some((body, signal)) => (body, Some(signal)),
            None => (empty_body(), None),
        };
        let in_flight = InFlight::start(inst.state.clone());
        let started = Instant::now();
        let answer_timeout = shared.cfg.answer_timeout;
        let timer = async {
            if let Some(signal) = &sent_signal {
                signal.sent().await;
            }
            tokio::time::sleep(answer_timeout).await;
        };
        let sent = tokio::select! {
            r = conn.try_send_request(self.request(req_body)) => r,
            _ = timer => return Err(Failure::Timeout(format!("no answer within {answer_timeout:?}"))),
        };
        if let Some(fault) = sent_signal.as_ref().and_then(|s| s.client_fault()) {
            return Err(Failure::Client(format!("malformed request body: {fault}")));
        }
        let mut resp = match sent {
            Ok(resp) => resp,
            Err(mut e) => {
                let reason = e.error().to_string();
                // hyper hands the request back when it was never sent.
                if let Some(unsent) = e.take_message() {
                    if let Some(signal) = sent_signal {
                        self.body = Some((unsent.into_body(), signal));
                    }
                    return Err(Failure::NotSent(reason));
                }
                return Err(Failure::NoAnswer(reason));
            }
        };
        let switched = (self.upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS)
            .then(|| hyper::upgrade::on(&mut resp));
        if let (false, Conn::H1(conn)) = (self.upgrade, conn) {
            inst.state.pool.put(conn, shared.cfg.max_idle_per_instance);
        }
        let status = resp.status().as_u16();
        answer_started(inst, status, started.elapsed());
        let (parts, body) = resp.into_parts();
        let mut tracked = Tracked::new(
            body,
            self.shared.clone(),
            self.upstream.clone(),
            inst.clone(),
            status,
            in_flight,
        );
        if switched.is_some() {
            tracked.end(AnswerEnd::Complete);
        }
        Ok((Response::from_parts(parts, tracked), switched))
    }
}

/// A connection to an instance: HTTP/1.1 (one request at a time,
/// pooled), or HTTP/2 (one per instance, shared by every request).
enum Conn {
    H1(SendRequest<UpstreamBody>),
    H2(http2::SendRequest<UpstreamBody>),
}

impl Conn {
    async fn try_send_request(
        &mut self,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<UpstreamBody>>> {
        match self {
            Conn::H1(c) => c.try_send_request(req).await,
            Conn::H2(c) => c.try_send_request(req).await,
        }
    }
}

/// A pooled connection to `inst` (the shared one, for HTTP/2), or a new one.
async fn connect(
    shared: &Shared,
    inst: &Instance,
    proto: Proto,
    upgrade: bool,
) -> Result<Conn, Failure> {
    if proto == Proto::H2c {
        if let Some(conn) = inst.state.h2.get() {
            return Ok(Conn::H2(conn));
        }
    } else if !upgrade {
        if let Some(conn) = inst.state.pool.take() {
            return Ok(Conn::H1(conn));
        }
    }
    let handshake = |e: hyper::Error| Failure::NotSent(format!("handshake: {e}"));
    let connecting = async {
        let stream = tokio::net::TcpStream::connect(inst.addr)
            .await
            .map_err(|e| Failure::NotSent(format!("connect: {e}")))?;
        let _ = stream.set_nodelay(true);
        match proto {
            Proto::H2c => {
                let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .keep_alive_interval(Duration::from_secs(30))
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(handshake)?;
                tokio::spawn(conn);
                inst.state.h2.set(sender.clone());
                Ok(Conn::H2(sender))
            }
            Proto::Https { skip_verify } => {
                let tls = crate::tls::upstream::connect(stream, inst.addr, skip_verify)
                    .await
                    .map_err(|e| Failure::NotSent(format!("TLS handshake: {e}")))?;
                h1_handshake(tls).await.map_err(handshake)
            }
            Proto::Http1 => h1_handshake(stream).await.map_err(handshake),
        }
    };
    tokio::time::timeout(shared.cfg.connect_timeout, connecting)
        .await
        .map_err(|_| Failure::NotSent("connect timed out".into()))?
}

/// An HTTP/1.1 client connection over `io` (TCP, or TLS over it), its
/// driver spawned with upgrades allowed.
async fn h1_handshake<T>(io: T) -> Result<Conn, hyper::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(Conn::H1(sender))
}

/// Whether a request asks for trailers (`TE: trailers`, as gRPC sends).
fn wants_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
}

/// The absolute URI an HTTP/2 request to an instance carries: the
/// client's host as `:authority`.
fn h2_uri(uri: &Uri, authority: Option<&HeaderValue>) -> Uri {
    let host = authority
        .and_then(|a| a.to_str().ok())
        .filter(|a| a.parse::<hyper::http::uri::Authority>().is_ok())
        .unwrap_or("localhost");
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    format!("http://{host}{pq}")
        .parse()
        .unwrap_or_else(|_| uri.clone())
}

/// The redirect of a plain HTTP request to the same URL over HTTPS:
/// 301 for GET and HEAD (what browsers and nginx's `return 301` do),
/// 308 for other methods, which must keep their method and body.
fn redirect_to_https(req: &Request<Incoming>, host: &str) -> Response<ProxyBody> {
    let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!("https://{host}{pq}");
    let status = if matches!(*req.method(), Method::GET | Method::HEAD) {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let mut resp = local_response(status, format!("moved to {location}\n"), false);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(hyper::header::LOCATION, v);
    }
    resp
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
    // An answer with both: Transfer-Encoding wins, and an intermediary
    // must drop the Content-Length before forwarding (RFC 9112 6.3), or
    // the client would frame the body by the wrong one (the plain path's
    // relay re-frames it the same way).
    if parts.headers.contains_key(TRANSFER_ENCODING) {
        parts.headers.remove(CONTENT_LENGTH);
    }
    strip_hop_by_hop(&mut parts.headers, false);
    Response::from_parts(parts, body.boxed())
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
