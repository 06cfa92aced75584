//! Plain TCP load balancing (`--route ADDR=SERVICE/tcp`): each connection
//! goes to one instance, chosen like an HTTP request, with a retry on
//! another instance when the connection cannot be made.

use crate::balance::PickInput;
use crate::forward::{attempt_failed, wait_for_upstream};
use crate::server::DRAIN;
use crate::Shared;
use hyper::HeaderMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Accepts connections for `service` until `cancel`.
pub async fn serve_tcp(
    shared: Arc<Shared>,
    listener: TcpListener,
    service: String,
    cancel: CancellationToken,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let (shared, service) = (shared.clone(), service.clone());
                conns.spawn(async move {
                    if let Err(e) = tunnel(&shared, stream, peer, &service).await {
                        tracing::debug!(%peer, service, error = %e, "tcp route: connection not proxied");
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    let _ = tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
}

async fn tunnel(
    shared: &Shared,
    mut client: TcpStream,
    peer: std::net::SocketAddr,
    service: &str,
) -> Result<(), String> {
    let upstream = wait_for_upstream(shared, &(service.to_string(), None))
        .await
        .map_err(|e| e.to_string())?;
    let headers = HeaderMap::new();
    let input = PickInput {
        client_ip: peer.ip(),
        headers: &headers,
    };
    let mut tried = Vec::new();
    for _ in 0..=shared.cfg.retries {
        let Some(i) = upstream.pick(&input, &tried) else {
            break;
        };
        tried.push(i);
        let inst = &upstream.instances[i];
        let connected =
            tokio::time::timeout(shared.cfg.connect_timeout, TcpStream::connect(inst.addr)).await;
        match connected {
            Ok(Ok(mut server)) => {
                inst.state.record_success();
                inst.state.stats.requests.fetch_add(1, Ordering::Relaxed);
                inst.state.outstanding.fetch_add(1, Ordering::Relaxed);
                let copied = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                inst.state.outstanding.fetch_sub(1, Ordering::Relaxed);
                return copied.map(|_| ()).map_err(|e| e.to_string());
            }
            _ => attempt_failed(shared, &upstream, inst),
        }
    }
    Err(format!("no instance of {service} accepted the connection"))
}
