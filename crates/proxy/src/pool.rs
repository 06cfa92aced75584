//! Keep-alive connections to one instance. On the general path a
//! connection goes back to the pool as soon as its response head arrived;
//! it is handed out again only once hyper says it is ready (the previous
//! response fully read). The lean path keeps plain sockets.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::client::conn::http1::SendRequest;
use std::sync::Mutex;
use tokio::net::TcpStream;

/// The body type sent upstream.
pub type UpstreamBody = BoxBody<Bytes, hyper::Error>;

/// Idle (or soon idle) connections.
#[derive(Default)]
pub struct Pool {
    conns: Mutex<Vec<SendRequest<UpstreamBody>>>,
}

impl Pool {
    /// A ready connection (the most recently used first); closed ones are
    /// swept when the pool fills up (see [`Pool::put`]).
    pub fn take(&self) -> Option<SendRequest<UpstreamBody>> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let pos = conns.iter().rposition(|c| c.is_ready())?;
        Some(conns.swap_remove(pos))
    }

    /// Keeps a connection for reuse, up to `max` per instance.
    pub fn put(&self, conn: SendRequest<UpstreamBody>, max: usize) {
        if conn.is_closed() {
            return;
        }
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns.len() >= max {
            conns.retain(|c| !c.is_closed());
        }
        if conns.len() < max {
            conns.push(conn);
        }
    }

    /// Connections kept now.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Idle keep-alive connections of the lean path: plain sockets, put back
/// once an answer was read to its end. Whether one is still open is
/// checked when it is taken (`crate::lean`).
#[derive(Default)]
pub struct IdleStreams {
    streams: Mutex<Vec<TcpStream>>,
}

impl IdleStreams {
    /// The most recently used connection.
    pub fn take(&self) -> Option<TcpStream> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Keeps a connection for reuse, up to `max` per instance.
    pub fn put(&self, stream: TcpStream, max: usize) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if streams.len() < max {
            streams.push(stream);
        }
    }

    /// Connections kept now.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.streams.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
