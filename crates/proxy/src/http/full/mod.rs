//! The full HTTP/1.1 path: hyper serves the rest of a connection the
//! plain path handed over, with a header-read deadline and a request-head
//! size limit, a guard against ambiguous framing (`framing`), upgrades
//! tunnelled, and pooled hyper connections upstream (`pool`). Its
//! exchange (`forward`) runs under the shared request rules, for HTTP/2
//! clients too (`crate::http::h2`), and speaks HTTP/1.1, HTTP/1.1 over
//! TLS or HTTP/2 to instances as their `proto=` tags say; gRPC calls it
//! cannot pass on get a gRPC status (`grpc`).

mod body;
pub mod forward;
pub mod framing;
pub mod grpc;
pub mod headers;
pub mod pool;

use crate::config::DRAIN;
use crate::error::ProxyError;
use crate::Shared;
use forward::{fail_to_proxy, handle, ProxyBody};
use framing::Watched;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// Serves the rest of a connection the plain path handed over (`stream`
/// replays what it had read).
pub async fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: std::net::SocketAddr,
    fixed: Option<Arc<str>>,
    https: bool,
    cancel: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = shared.cfg.clone();
    let refused = Arc::new(Mutex::new(None));
    let nonce: u64 = rand::random();
    let stream = Watched::new(stream, cfg.max_header_bytes, nonce, refused.clone());
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let (shared, fixed, refused) = (shared.clone(), fixed.clone(), refused.clone());
        async move {
            let stand_in = req
                .headers()
                .get(framing::REFUSED_HEADER)
                .is_some_and(|v| v.as_bytes() == nonce.to_string().as_bytes());
            if stand_in {
                let refusal = refused.lock().unwrap_or_else(|e| e.into_inner()).take();
                return Ok::<_, Infallible>(refuse_head(&shared, refusal));
            }
            Ok(handle(shared, req, peer, fixed, https).await)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .max_header_size(cfg.max_header_bytes)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN, conn).await;
        }
    }
}

/// The answer to a head the framing watch refused (malformed, ambiguous,
/// too large): its status, the reason in the body, and the connection is
/// closed.
fn refuse_head(
    shared: &crate::Shared,
    refusal: Option<framing::Refusal>,
) -> hyper::Response<ProxyBody> {
    crate::request::access::received(shared);
    let refusal = refusal.unwrap_or(framing::Refusal {
        status: 400,
        reason: "malformed request head".into(),
    });
    let e = match refusal.status {
        431 => ProxyError::HeadTooLarge(refusal.reason),
        501 => ProxyError::NotImplemented(refusal.reason),
        505 => ProxyError::VersionNotSupported(refusal.reason),
        _ => ProxyError::Client(refusal.reason),
    };
    fail_to_proxy(shared, e)
}
