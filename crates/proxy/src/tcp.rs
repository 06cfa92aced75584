//! Plain TCP load balancing (`--route ADDR=SERVICE/tcp`, and TLS passed
//! through by server name, `ADDR=*/sni`): each connection
//! goes to one instance, chosen, waited for and retried by the request
//! rules (`crate::request`) like an HTTP request; its exchange is a connect.

use crate::balance::PickInput;
use crate::error::ProxyError;
use crate::instance::{Instance, InstanceState};
use crate::request::access;
use crate::request::attempts::{send_with_retries, Exchange};
use crate::request::outcome::{Failure, InFlight};
use crate::request::route::wait_for_upstream;
use crate::table::Upstream;
use crate::Shared;
use hyper::HeaderMap;
use std::sync::Arc;
use tokio::net::TcpStream;

/// A TCP attempt: a connection to the instance within the connect timeout.
struct Connect;

impl Exchange for Connect {
    type Answer = (TcpStream, Arc<InstanceState>);

    async fn attempt(
        &mut self,
        shared: &Shared,
        _upstream: &Upstream,
        inst: &Instance,
    ) -> Result<Self::Answer, Failure> {
        let connect = TcpStream::connect(inst.addr);
        match tokio::time::timeout(shared.cfg.connect_timeout, connect).await {
            Ok(Ok(stream)) => {
                inst.state.record_success();
                Ok((stream, inst.state.clone()))
            }
            Ok(Err(e)) => Err(Failure::NotSent(format!("connect: {e}"))),
            Err(_) => Err(Failure::NotSent("connect timed out".into())),
        }
    }
}

/// Tunnels one client connection to an instance of `service`.
pub async fn serve(shared: &Shared, client: TcpStream, peer: std::net::SocketAddr, service: &str) {
    tunnel(shared, client, peer, (service.to_string(), None), &[]).await
}

/// How long a client gets to send its whole ClientHello.
const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Passes one TLS connection, not terminated, to an instance of the
/// service its server name routes to (as an HTTP host routes); the
/// ClientHello read to learn the name is sent on first. A connection that
/// is not TLS, names no host, or names one no service answers is closed.
pub async fn serve_sni(shared: &Shared, mut client: TcpStream, peer: std::net::SocketAddr) {
    use crate::sni::{client_hello, Hello, MAX_HELLO};
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        loop {
            match client_hello(&buf) {
                Hello::Incomplete if buf.len() < MAX_HELLO => {}
                other => return other,
            }
            let mut chunk = [0u8; 4096];
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => return Hello::NotTls("closed before its ClientHello"),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, read).await {
        Ok(h) => h,
        Err(_) => Hello::NotTls("no ClientHello in time"),
    };
    let name = match hello {
        Hello::Name(name) => name,
        other => {
            tracing::debug!(%peer, what = ?other, "sni route: connection not proxied");
            return;
        }
    };
    let table = shared.discovery.table();
    let target = match crate::request::route::target(&table, None, &name, "/") {
        Ok(t) => t,
        Err(e) => {
            tracing::info!(%peer, server_name = %name, "sni route: no service for this server name");
            return not_proxied(shared, peer, &name, e);
        }
    };
    drop(table);
    tunnel(shared, client, peer, target.key, &buf).await
}

/// Tunnels `client` to an instance of `key`, sending `first` (bytes the
/// proxy read already) before anything else.
async fn tunnel(
    shared: &Shared,
    mut client: TcpStream,
    peer: std::net::SocketAddr,
    key: crate::table::UpstreamKey,
    first: &[u8],
) {
    use tokio::io::AsyncWriteExt;
    let service = crate::request::route::service_label(&key);
    let service = service.as_str();
    let upstream = match wait_for_upstream(shared, &key).await {
        Ok(up) => up,
        Err(e) => return not_proxied(shared, peer, service, e),
    };
    let headers = HeaderMap::new();
    let input = PickInput {
        client_ip: peer.ip(),
        headers: &headers,
    };
    match send_with_retries(shared, &upstream, &input, &mut Connect, true).await {
        Ok((mut server, state)) => {
            let _in_flight = InFlight::start(state);
            if !first.is_empty() && server.write_all(first).await.is_err() {
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
        Err(e) => not_proxied(shared, peer, service, e),
    }
}

/// A connection that gets no instance is closed, and counted as an HTTP
/// request the proxy answers itself would be (a loop is counted and
/// logged as one).
fn not_proxied(shared: &Shared, peer: std::net::SocketAddr, service: &str, e: ProxyError) {
    access::answered_locally(shared, &e);
    tracing::debug!(%peer, service, error = %e, "tcp route: connection not proxied");
}
