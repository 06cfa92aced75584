//! A connection to a TLS listener: the handshake (within the head-read
//! timeout, so a client that never finishes it holds nothing for long),
//! then HTTP/2 when ALPN chose `h2`, else HTTP/1.1 on the plain path,
//! with `https` set for the forwarding headers and redirects.

use crate::tls::ALPN_H2;
use crate::Shared;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Serves one connection of a TLS listener.
pub async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    fixed: Option<Arc<str>>,
    acceptor: TlsAcceptor,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let handshake = acceptor.accept(stream);
    let tls = match tokio::time::timeout(shared.cfg.header_read_timeout, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            shared.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client = %peer, error = %e, "proxy: TLS handshake failed");
            return;
        }
        Err(_) => {
            shared.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client = %peer, "proxy: TLS handshake timed out");
            return;
        }
    };
    shared.stats.tls_handshakes.fetch_add(1, Ordering::Relaxed);
    let h2 = tls.get_ref().1.alpn_protocol() == Some(ALPN_H2);
    if h2 {
        crate::http::h2::serve(shared, tls, peer, fixed, true, cancel).await
    } else {
        crate::http::plain::conn::serve(shared, tls, peer, fixed, true, cancel).await
    }
}
