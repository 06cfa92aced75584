//! shoal's DNS interface: Consul's DNS names over UDP and TCP, answered
//! authoritatively from the in-memory catalog.
//!
//! - `<service>.service[.<dc>].<domain>` A/AAAA: addresses of instances
//!   that are not critical (Consul's default), shuffled per answer; SRV:
//!   priority 1, weight from `Weights`, the port, and a target
//!   (`<node>.node.<dc>.<domain>`, or `<hex-ip>.addr.<dc>.<domain>` for an
//!   instance with its own address) whose address is in the additional
//!   section;
//! - `<tag>.<service>.service…` and RFC 2782 `_<service>._<tag>.service…`
//!   (`_tcp` meaning no tag);
//! - `<node>.node[.<dc>].<domain>` (A/AAAA, and TXT for the node's meta:
//!   `key=value`, or the bare value for `rfc1035-` keys, as Consul does) and
//!   `<hex-ip>.addr[.<dc>].<domain>`;
//! - `<query>.query[.<dc>].<domain>`: a prepared query by name or ID,
//!   answered like a service with the query's matching instances (its
//!   tags, `OnlyPassing`), with the query's `DNS.TTL`.
//!
//! Unknown names are NXDOMAIN, known names without records of the asked
//! type NOERROR with no answer, both with an SOA. UDP answers are cut to
//! 512 bytes (or the client's EDNS size, at most 4096) with the TC bit
//! set; TCP answers are complete. Other names go to the recursors, or are
//! REFUSED. Malformed queries are dropped or answered FORMERR with a bare
//! header, so no answer to a spoofable packet is large without EDNS.
//!
//! Queries are answered from a [`View`](view::View) computed once per
//! catalog index, through a hand-written codec ([`wire`]) that borrows the
//! question from the request: no lock and no allocation per query.
#![forbid(unsafe_code)]

mod answer;
mod config;
mod error;
mod forward;
mod query_view;
mod server;
mod view;
pub mod wire;

pub use config::{DnsAcl, DnsConfig, ServiceTtl};
pub use error::{Error, Result};
pub use server::serve;

use std::net::SocketAddr;
use tokio::net::{TcpListener, UdpSocket};

/// Binds UDP and TCP on the same address. With port 0, UDP picks the port
/// and TCP takes the same one (retried a few times if that TCP port is
/// taken).
pub async fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener)> {
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(addr).await.map_err(|source| Error::Bind {
            proto: "UDP",
            addr,
            source,
        })?;
        let bound = udp.local_addr().map_err(|source| Error::Bind {
            proto: "UDP",
            addr,
            source,
        })?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) => {
                last = Some(Error::Bind {
                    proto: "TCP",
                    addr: bound,
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or(Error::Closed))
}
