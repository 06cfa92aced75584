//! HTTP listeners: accept (bounded by `max_connections`), serve HTTP/1.1
//! with a header-read deadline and a request-head size limit, tunnel
//! upgrades, and drain in-flight requests on shutdown. Each connection
//! starts on the lean path (`crate::lean`); hyper serves what it hands over.

use crate::error::ProxyError;
use crate::forward::{fail_to_proxy, handle, ProxyBody};
use crate::framing::Watched;
use crate::Shared;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long in-flight requests get to finish at shutdown.
pub const DRAIN: Duration = Duration::from_secs(5);

/// Serves until `cancel`; `fixed` sends everything to one service.
pub async fn serve_http(
    shared: Arc<Shared>,
    listener: TcpListener,
    fixed: Option<Arc<str>>,
    cancel: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(shared.cfg.max_connections));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "proxy: accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    drop(stream);
                    continue;
                };
                let (shared, fixed, cancel) = (shared.clone(), fixed.clone(), cancel.clone());
                conns.spawn(async move {
                    crate::lean::serve(shared, stream, peer, fixed, cancel).await;
                    drop(permit);
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    let _ = tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
}

/// The general path: hyper serves the rest of a connection the lean path
/// handed over (`stream` replays what it had read).
pub async fn serve_general<S>(
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
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    fail_to_proxy(
        shared,
        ProxyError::Client("both Content-Length and Transfer-Encoding are set".into()),
    )
}
