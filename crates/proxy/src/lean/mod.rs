//! The lean HTTP/1.1 path: one task per client connection reads each
//! request head into a reusable buffer, writes the rewritten head (and a
//! small body) to a pooled upstream connection and relays the answer,
//! without hyper's server and client dispatch. Requests it does not take
//! (see `crate::h1::request`) hand the connection, with the bytes already
//! read, to the general path (`crate::server::serve_general`) for good.

mod deadline;
mod exchange;
mod relay;
mod route;
mod upstream;

use crate::h1::request::{Parsed, RequestHead};
use crate::h1::response::ResponseHead;
use crate::h1::rewind::Rewind;
use crate::Shared;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// Room made in a buffer before each read: a whole small request or
/// answer head in one read, and little memory per idle connection.
const READ_SIZE: usize = 8 * 1024;

/// Buffers grown past this by an unusually large head or read are let go
/// after the exchange, so idle connections stay small.
const KEEP_CAPACITY: usize = 64 * 1024;

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
}

impl Client {
    fn new(shared: &Shared, peer: SocketAddr, fixed: Option<Arc<str>>) -> Self {
        let ip = peer.ip().to_canonical();
        Client {
            peer,
            ip: ip.to_string(),
            v6: ip.is_ipv6(),
            trusted: shared.cfg.trusted_proxies.iter().any(|c| c.contains(ip)),
            fixed,
        }
    }
}

/// The connection's buffers, reused by every request on it.
pub struct Io {
    /// The client connection.
    pub stream: TcpStream,
    /// Bytes read from the upstream.
    pub up: Vec<u8>,
    /// The upstream's answer head, over `up`.
    pub resp: ResponseHead,
    /// Bytes to write: the request for the upstream, then the answer.
    pub out: Vec<u8>,
}

impl Io {
    /// Lets go of buffers an unusually large exchange grew.
    fn trim(&mut self) {
        if self.up.capacity() > KEEP_CAPACITY {
            self.up = Vec::new();
        }
        if self.out.capacity() > KEEP_CAPACITY {
            self.out = Vec::new();
        }
    }
}

enum Next {
    Lean,
    General,
    Close,
}

/// Serves one client connection until it closes, `cancel` fires while it
/// is idle, or it is handed to the general path.
pub async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    fixed: Option<Arc<str>>,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let client = Client::new(&shared, peer, fixed);
    let mut io = Io {
        stream,
        up: Vec::new(),
        resp: ResponseHead::default(),
        out: Vec::new(),
    };
    let (mut buf, mut head) = (Vec::new(), RequestHead::default());
    let mut route = route::RouteCache::default();
    let first = Instant::now() + shared.cfg.header_read_timeout;
    let sleep = tokio::time::sleep_until(first);
    tokio::pin!(sleep);
    let mut deadline = Deadline::new(sleep, first);
    let token = cancel.clone();
    let cancelled = token.cancelled();
    tokio::pin!(cancelled);
    loop {
        let next = next_request(
            &shared,
            &mut io.stream,
            &mut buf,
            &mut head,
            &mut deadline,
            cancelled.as_mut(),
        )
        .await;
        match next {
            Next::Lean => {
                let req = exchange::Request {
                    buf: &buf,
                    head: &head,
                };
                let keep =
                    exchange::exchange(&shared, &client, req, &mut route, &mut io, &mut deadline)
                        .await;
                if !keep || cancel.is_cancelled() {
                    return;
                }
                buf.drain(..head.total());
                io.trim();
                if buf.is_empty() && buf.capacity() > KEEP_CAPACITY {
                    buf = Vec::new();
                }
            }
            Next::General => {
                let stream = Rewind::new(buf, io.stream);
                let Client { peer, fixed, .. } = client;
                return crate::server::serve_general(shared, stream, peer, fixed, cancel).await;
            }
            Next::Close => return,
        }
    }
}

/// Reads until `buf` starts with a whole request (head and body) the lean
/// path takes, or one for the general path; `Close` when the client
/// closed, was too slow, or the proxy is shutting down while it was idle.
async fn next_request(
    shared: &Shared,
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head: &mut RequestHead,
    deadline: &mut Deadline<'_>,
    mut cancelled: Pin<&mut WaitForCancellationFuture<'_>>,
) -> Next {
    let max = shared.cfg.max_header_bytes;
    let mut parsed = if buf.is_empty() {
        Parsed::Partial
    } else {
        head.parse(buf, max)
    };
    let mut armed = false;
    loop {
        match parsed {
            Parsed::General => return Next::General,
            Parsed::Lean if buf.len() >= head.total() => return Next::Lean,
            _ => {}
        }
        if !armed {
            armed = true;
            deadline.set(Instant::now() + shared.cfg.header_read_timeout);
        }
        let before = buf.len();
        buf.reserve(READ_SIZE);
        tokio::select! {
            biased;
            read = stream.read_buf(buf) => match read {
                Ok(0) | Err(_) => return Next::Close,
                Ok(_) => {}
            },
            _ = deadline.passed() => return Next::Close,
            _ = cancelled.as_mut(), if before == 0 => return Next::Close,
        }
        if parsed == Parsed::Partial {
            // Parse again only once a line ended: a head sent byte by byte
            // is not parsed once per byte.
            if buf[before..].contains(&b'\n') {
                parsed = head.parse(buf, max);
            } else if buf.len() > max {
                parsed = Parsed::General;
            }
        }
    }
}
