//! Keep-alive connections to one instance on the full path: a connection
//! goes back to the pool as soon as its response head arrived; it is
//! handed out again only once hyper says it is ready (the previous
//! response fully read). The plain path keeps plain sockets (`plain::idle`).

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::client::conn::http1::SendRequest;
use std::sync::Mutex;

/// The body type sent upstream.
pub type UpstreamBody = BoxBody<Bytes, hyper::Error>;

/// The one HTTP/2 connection to an instance, shared by every request to
/// it (streams multiplex); replaced once it closed.
#[derive(Default)]
pub struct H2Slot {
    conn: Mutex<Option<hyper::client::conn::http2::SendRequest<UpstreamBody>>>,
}

impl H2Slot {
    /// The connection, while it is open.
    pub fn get(&self) -> Option<hyper::client::conn::http2::SendRequest<UpstreamBody>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    /// Keeps `conn` as the instance's connection.
    pub fn set(&self, conn: hyper::client::conn::http2::SendRequest<UpstreamBody>) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
    }

    /// Whether a connection is kept now.
    pub fn is_open(&self) -> bool {
        self.get().is_some()
    }
}

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
