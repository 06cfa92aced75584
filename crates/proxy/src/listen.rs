//! Listeners: accept connections (at most `max_connections` at once, a
//! large listen backlog so a burst of connects is not left to the
//! kernel's SYN retries), hand each to the HTTP dispatcher or the TCP
//! tunnel, and drain in-flight connections on shutdown.

use crate::config::DRAIN;
use crate::Shared;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// The listen backlog asked for (the kernel caps it at `somaxconn`), as
/// nginx and HAProxy do; the default of 128 turns a burst of connects
/// into one-second SYN retries.
pub const BACKLOG: i32 = 65_535;

/// What a listener's connections are.
#[derive(Clone)]
pub enum Handler {
    /// HTTP, routed by host and path, or all to one service (a port route).
    Http(Option<Arc<str>>),
    /// Plain TCP to one service.
    Tcp(Arc<str>),
    /// TLS, not terminated, to the service its server name routes to.
    Sni,
    /// HTTP over TLS terminated here (HTTP/2 or HTTP/1.1 by ALPN), routed
    /// as `Http` is.
    Https(Option<Arc<str>>, TlsAcceptor),
}

/// Raises `listener`'s backlog to [`BACKLOG`] (listening again on a
/// listening socket only changes its backlog).
pub fn raise_backlog(listener: &TcpListener) {
    if let Err(e) = socket2::SockRef::from(listener).listen(BACKLOG) {
        tracing::warn!(error = %e, "proxy: could not raise the listen backlog");
    }
}

/// Serves `listener` until `cancel`.
pub async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    handler: Handler,
    cancel: CancellationToken,
) {
    raise_backlog(&listener);
    if let Ok(addr) = listener.local_addr() {
        shared.add_listener(addr);
    }
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
                let (shared, handler, cancel) = (shared.clone(), handler.clone(), cancel.clone());
                conns.spawn(async move {
                    match handler {
                        Handler::Http(fixed) => {
                            let _ = stream.set_nodelay(true);
                            crate::http::plain::conn::serve(shared, stream, peer, fixed, false, cancel).await
                        }
                        Handler::Https(fixed, acceptor) => crate::http::tls::serve(shared, stream, peer, fixed, acceptor, cancel).await,
                        Handler::Tcp(service) => crate::tcp::serve(&shared, stream, peer, &service).await,
                        Handler::Sni => crate::tcp::serve_sni(&shared, stream, peer).await,
                    }
                    drop(permit);
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    let _ = tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the default backlog (128) the connects past it wait for the
    /// kernel's SYN retries and, as nothing accepts, never complete.
    #[tokio::test]
    async fn a_burst_of_connects_fits_in_the_backlog() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        raise_backlog(&listener);
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        for i in 0..600 {
            let connect = tokio::net::TcpStream::connect(addr);
            let stream = tokio::time::timeout(Duration::from_secs(5), connect)
                .await
                .unwrap_or_else(|_| panic!("connect {i} waited for the backlog"))
                .unwrap();
            held.push(stream);
        }
    }
}
