//! One client connection on the plain path: reads each request head into
//! a reusable buffer, serves the ones the plain path takes
//! (`crate::http::dispatch`) and hands the connection to the full path
//! at the first one it does not.

use super::exchange::Served;
use super::request::RequestHead;
use super::{exchange, route, Client, ClientStream, Deadline, Io, KEEP_CAPACITY, READ_SIZE};
use crate::http::dispatch::Parsed;
use crate::http::h2::guard::PREFACE;
use crate::http::rewind::Rewind;
use crate::Shared;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

enum Next {
    Plain,
    Full,
    H2,
    Close,
}

/// Serves one client connection (TCP, or TLS over it when `https`) until
/// it closes, `cancel` fires while it is idle, or it is handed to the
/// full path; a connection that opens with the HTTP/2 preface (h2c with
/// prior knowledge) goes to the HTTP/2 server.
pub async fn serve<C: ClientStream>(
    shared: Arc<Shared>,
    stream: C,
    peer: SocketAddr,
    fixed: Option<Arc<str>>,
    https: bool,
    cancel: CancellationToken,
) {
    let client = Client::new(&shared, peer, fixed, https);
    let mut first = true;
    let mut io = Io::new(stream);
    let (mut buf, mut head) = (Vec::new(), RequestHead::default());
    let mut route = route::RouteCache::default();
    let until = Instant::now() + shared.cfg.header_read_timeout;
    let sleep = tokio::time::sleep_until(until);
    tokio::pin!(sleep);
    let mut deadline = Deadline::new(sleep, until);
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
        let next = match next {
            // The preface's first line reads as a request line of HTTP/2.0.
            Next::Full if first && buf.starts_with(&PREFACE[..16]) => Next::H2,
            next => next,
        };
        first = false;
        // The hand-overs below are boxed: their large futures would
        // otherwise be part of every plain connection's own state.
        match next {
            Next::Plain => {
                let req = exchange::Request {
                    buf: &buf,
                    head: &head,
                };
                let served =
                    exchange::exchange(&shared, &client, req, &mut route, &mut io, &mut deadline)
                        .await;
                if served == Served::PassOn {
                    let stream = Rewind::new(buf, io.stream);
                    let Client { peer, fixed, .. } = client;
                    let full = crate::http::full::serve(shared, stream, peer, fixed, https, cancel);
                    return Box::pin(full).await;
                }
                if served == Served::Close || cancel.is_cancelled() {
                    return;
                }
                buf.drain(..head.total());
                io.trim();
                if buf.is_empty() && buf.capacity() > KEEP_CAPACITY {
                    buf = Vec::new();
                }
            }
            Next::Full => {
                let stream = Rewind::new(buf, io.stream);
                let Client { peer, fixed, .. } = client;
                let full = crate::http::full::serve(shared, stream, peer, fixed, https, cancel);
                return Box::pin(full).await;
            }
            Next::H2 => {
                let stream = Rewind::new(buf, io.stream);
                let Client { peer, fixed, .. } = client;
                let h2 = crate::http::h2::serve(shared, stream, peer, fixed, https, cancel);
                return Box::pin(h2).await;
            }
            Next::Close => return,
        }
    }
}

/// Reads until `buf` starts with a whole request (head and body) the
/// plain path takes, or one for the full path; `Close` when the client
/// closed, was too slow, or the proxy is shutting down while it was idle.
async fn next_request<C: ClientStream>(
    shared: &Shared,
    stream: &mut C,
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
            Parsed::Full => return Next::Full,
            Parsed::Plain if buf.len() >= head.total() => return Next::Plain,
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
                parsed = Parsed::Full;
            }
        }
    }
}
