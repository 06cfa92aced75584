//! Plain TCP load balancing (`--route ADDR=SERVICE/tcp`): each connection
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
pub async fn serve(
    shared: &Shared,
    mut client: TcpStream,
    peer: std::net::SocketAddr,
    service: &str,
) {
    let upstream = match wait_for_upstream(shared, &(service.to_string(), None)).await {
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
