//! Idle keep-alive connections of the plain path: plain sockets, put back
//! once an answer was read to its end. Whether one is still open is
//! checked when it is taken (`upstream::connect`).

use std::sync::Mutex;
use tokio::net::TcpStream;

/// Idle connections to one instance.
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
