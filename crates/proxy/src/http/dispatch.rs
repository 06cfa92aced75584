//! Which path serves a request. Every connection starts on the plain
//! path; a request it does not take hands the connection, with the bytes
//! already read, to the full (hyper) path for good. The plain path takes
//! HTTP/1.1 requests in origin form with one Host and no body, or a
//! Content-Length body small enough to buffer whole ([`plain_takes_line`],
//! [`full_needs_header`] and the checks in `plain::request`); everything
//! else, including anything malformed, goes to the full path, which
//! answers or refuses it.

use super::plain::request::RequestHead;
use super::plain::{exchange, route, Client, Deadline, Io, KEEP_CAPACITY, READ_SIZE};
use super::rewind::Rewind;
use crate::Shared;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// What a look at the buffered bytes found.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet.
    Partial,
    /// A head the plain path takes; its fields are set.
    Plain,
    /// Something for the full path.
    Full,
}

/// Whether the plain path takes a request line: HTTP/1.1, origin form,
/// not CONNECT.
pub fn plain_takes_line(method: &str, target: &str, version: u8) -> bool {
    version == 1 && method != "CONNECT" && target.starts_with('/')
}

/// Whether a header sends its request to the full path (a body of unknown
/// length, a protocol switch, an interim answer to wait for).
pub fn full_needs_header(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"transfer-encoding")
        || name.eq_ignore_ascii_case(b"upgrade")
        || name.eq_ignore_ascii_case(b"expect")
}

enum Next {
    Plain,
    Full,
    Close,
}

/// Serves one client connection until it closes, `cancel` fires while it
/// is idle, or it is handed to the full path.
pub async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    fixed: Option<Arc<str>>,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let client = Client::new(&shared, peer, fixed);
    let mut io = Io::new(stream);
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
            Next::Plain => {
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
            Next::Full => {
                let stream = Rewind::new(buf, io.stream);
                let Client { peer, fixed, .. } = client;
                return super::full::serve(shared, stream, peer, fixed, cancel).await;
            }
            Next::Close => return,
        }
    }
}

/// Reads until `buf` starts with a whole request (head and body) the
/// plain path takes, or one for the full path; `Close` when the client
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_takes_plain_requests_and_leaves_the_rest_to_the_full_path() {
        use Parsed::*;
        let long = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "a".repeat(2000)
        );
        let cases: [(&[u8], Parsed); 22] = [
            (b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n", Plain),
            (b"GET / HTTP/1.1\r\nHost: a\r\n", Partial),
            (b"GET / HTTP/1.1\r\nHo", Partial),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", Plain),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", Plain),
            (b"POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello", Plain),
            (b"GET / HTTP/1.1\r\nHost: a\r\nVia: 1.1 x\r\n\r\n", Plain),
            (b"GET / HTTP/1.0\r\nHost: a\r\n\r\n", Full),
            (b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", Full),
            (b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", Full),
            (b"GET / HTTP/1.1\r\n\r\n", Full),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Full),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", Full),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", Full),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", Full),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", Full),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", Full),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999\r\n\r\n", Full),
            (b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", Full),
            (b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", Full),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n  b\r\n\r\n", Full),
            (long.as_bytes(), Full),
        ];
        for (i, (raw, want)) in cases.into_iter().enumerate() {
            let mut head = RequestHead::default();
            assert_eq!(
                head.parse(raw, 1024),
                want,
                "case {i}: {}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
