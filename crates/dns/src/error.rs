//! Errors of the DNS interface.

use std::net::SocketAddr;

/// What can go wrong starting or running the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable (domain, datacenter, TTLs).
    #[error("{0}")]
    Config(String),
    /// The UDP or TCP port could not be bound.
    #[error("cannot bind DNS {proto} on {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The server was shut down while a task still needed it.
    #[error("DNS server closed")]
    Closed,
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
