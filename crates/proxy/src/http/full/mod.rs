//! The full HTTP/1.1 path: hyper serves the rest of a connection the
//! plain path handed over, with a header-read deadline and a request-head
//! size limit, a guard against ambiguous framing (`framing`), upgrades
//! tunnelled, and pooled hyper connections upstream (`pool`). Its
//! exchange (`forward`) runs under the shared request rules.

mod body;
mod forward;
pub mod framing;
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
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// Serves the rest of a connection the plain path handed over (`stream`
/// replays what it had read).
pub async fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: std::net::SocketAddr,
    fixed: Option<Arc<str>>,
    cancel: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = shared.cfg.clone();
    let ambiguous = Arc::new(AtomicBool::new(false));
    let stream = Watched::new(stream, ambiguous.clone());
    let service = service_fn(move |req| {
        let (shared, fixed, ambiguous) = (shared.clone(), fixed.clone(), ambiguous.clone());
        async move {
            if ambiguous.load(Ordering::SeqCst) {
                return Ok::<_, Infallible>(refuse_smuggling(&shared));
            }
            Ok(handle(shared, req, peer, fixed).await)
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

/// The answer to a request that carried both Content-Length and
/// Transfer-Encoding: 400, and the connection is closed.
fn refuse_smuggling(shared: &crate::Shared) -> hyper::Response<ProxyBody> {
    crate::request::access::received(shared);
    fail_to_proxy(
        shared,
        ProxyError::Client("both Content-Length and Transfer-Encoding are set".into()),
    )
}
