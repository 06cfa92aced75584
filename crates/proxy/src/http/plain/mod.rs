//! The plain HTTP/1.1 path: one task per client connection reads each
//! request head into a reusable buffer (`request`, parsed in place by
//! httparse), writes the rewritten head (and a small body) to a pooled
//! upstream connection and relays the answer (`response`, `relay`, over
//! `crate::http::chunked`), without hyper's server and client dispatch.
//! Its exchange with an instance (`exchange`) runs under the shared
//! request rules (`crate::request`). `conn` drives the connection.

pub mod conn;
mod date;
mod deadline;
pub mod exchange;
pub mod idle;
mod relay;
pub mod request;
pub mod response;
mod rewrite;
pub mod route;
mod upstream;
pub mod wire;

use crate::Shared;
use response::ResponseHead;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// Room made in a buffer before each read: a whole small request or
/// answer head in one read, and little memory per idle connection.
pub const READ_SIZE: usize = 8 * 1024;

/// Buffers grown past this by an unusually large head or read are let go
/// after the exchange, so idle connections stay small.
pub const KEEP_CAPACITY: usize = 64 * 1024;

pub use deadline::Deadline;

/// Who the client is, as the forwarding headers and balancers see it.
pub struct Client {
    /// Its address.
    pub peer: SocketAddr,
    /// Its IP as text (IPv4-mapped shown as IPv4), made once per connection.
    pub ip: String,
    /// Whether that IP is IPv6 (quoted in `Forwarded`).
    pub v6: bool,
    /// Whether its own `X-Forwarded-*` are believed.
    pub trusted: bool,
    /// Everything goes to this service (a port route).
    pub fixed: Option<Arc<str>>,
    /// The connection is TLS (`X-Forwarded-Proto: https`).
    pub https: bool,
}

impl Client {
    pub fn new(shared: &Shared, peer: SocketAddr, fixed: Option<Arc<str>>, https: bool) -> Self {
        let ip = peer.ip().to_canonical();
        Client {
            peer,
            ip: ip.to_string(),
            v6: ip.is_ipv6(),
            trusted: shared.cfg.trusted_proxies.iter().any(|c| c.contains(ip)),
            fixed,
            https,
        }
    }
}

/// A client connection the plain path serves: TCP, or TLS over it.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> ClientStream for S {}

/// The connection's buffers, reused by every request on it.
pub struct Io<C> {
    /// The client connection.
    pub stream: C,
    /// Bytes read from the upstream.
    pub up: Vec<u8>,
    /// The upstream's answer head, over `up`.
    pub resp: ResponseHead,
    /// Bytes to write: the request for the upstream, then the answer.
    pub out: Vec<u8>,
}

impl<C> Io<C> {
    /// Empty buffers for `stream`.
    pub fn new(stream: C) -> Self {
        Io {
            stream,
            up: Vec::new(),
            resp: ResponseHead::default(),
            out: Vec::new(),
        }
    }

    /// Lets go of buffers an unusually large exchange grew.
    pub fn trim(&mut self) {
        if self.up.capacity() > KEEP_CAPACITY {
            self.up = Vec::new();
        }
        if self.out.capacity() > KEEP_CAPACITY {
            self.out = Vec::new();
        }
    }
}
