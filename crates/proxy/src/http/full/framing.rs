//! A watch on the raw bytes of a client connection that finds requests
//! carrying both Content-Length and Transfer-Encoding. hyper itself copes
//! with them safely (chunked wins, Content-Length is dropped, the
//! connection closes after), but it drops the evidence before the proxy
//! sees the request; such a request is a smuggling attempt and is refused.
//!
//! The watch follows HTTP/1 framing just far enough to find where each
//! request head starts (Content-Length and chunked bodies are skipped) and
//! stops at anything it does not follow (an upgrade, a head hyper will
//! refuse anyway), since from there hyper rejects or tunnels the bytes.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest head the watch buffers; beyond it hyper answers 431 anyway.
const MAX_HEAD: usize = 128 * 1024;

enum State {
    Head(Vec<u8>),
    Body(u64),
    ChunkSize(Vec<u8>),
    ChunkData(u64),
    ChunkEnd(u8),
    Trailers(Vec<u8>),
    Done,
}

/// Follows request framing over the bytes read from the client.
pub struct FramingWatch {
    state: State,
    ambiguous: Arc<AtomicBool>,
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

impl FramingWatch {
    /// A watch that raises `ambiguous` when it sees CL + TE in one head.
    pub fn new(ambiguous: Arc<AtomicBool>) -> Self {
        FramingWatch {
            state: State::Head(Vec::new()),
            ambiguous,
        }
    }

    /// Feeds the next bytes read from the client.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            data = match &mut self.state {
                State::Done => return,
                State::Head(buf) => {
                    buf.extend_from_slice(data);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        if buf.len() > MAX_HEAD {
                            self.state = State::Done;
                        }
                        return;
                    };
                    let head = std::mem::take(buf);
                    self.state = self.after_head(&head[..end + 4]);
                    let rest = head[end + 4..].to_vec();
                    self.feed(&rest);
                    return;
                }
                State::Body(left) => {
                    let n = (*left).min(data.len() as u64) as usize;
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::Head(Vec::new());
                    }
                    &data[n..]
                }
                State::ChunkSize(line) => {
                    line.extend_from_slice(data);
                    let Some(pos) = find_crlf(line) else {
                        if line.len() > 1024 {
                            self.state = State::Done;
                        }
                        return;
                    };
                    let text = String::from_utf8_lossy(&line[..pos]).to_string();
                    let rest = line[pos + 2..].to_vec();
                    let size = text
                        .split(';')
                        .next()
                        .map(str::trim)
                        .and_then(|h| u64::from_str_radix(h, 16).ok());
                    self.state = match size {
                        Some(0) => State::Trailers(Vec::new()),
                        Some(n) => State::ChunkData(n),
                        None => State::Done,
                    };
                    self.feed(&rest);
                    return;
                }
                State::ChunkData(left) => {
                    let n = (*left).min(data.len() as u64) as usize;
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::ChunkEnd(2);
                    }
                    &data[n..]
                }
                State::ChunkEnd(left) => {
                    let n = usize::from(*left).min(data.len());
                    *left -= n as u8;
                    if *left == 0 {
                        self.state = State::ChunkSize(Vec::new());
                    }
                    &data[n..]
                }
                State::Trailers(buf) => {
                    buf.extend_from_slice(data);
                    // The trailer section ends at an empty line.
                    let end = if buf.starts_with(b"\r\n") {
                        Some(2)
                    } else {
                        buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
                    };
                    let Some(end) = end else {
                        if buf.len() > MAX_HEAD {
                            self.state = State::Done;
                        }
                        return;
                    };
                    let rest = buf[end..].to_vec();
                    self.state = State::Head(Vec::new());
                    self.feed(&rest);
                    return;
                }
            };
        }
    }

    /// The state after a complete request head.
    fn after_head(&self, head: &[u8]) -> State {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
            return State::Done;
        }
        let has = |name: &str| {
            req.headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case(name))
        };
        let (cl, te) = (has("content-length"), has("transfer-encoding"));
        if cl && te {
            self.ambiguous.store(true, Ordering::SeqCst);
            return State::Done;
        }
        if has("upgrade") || req.method == Some("CONNECT") {
            return State::Done;
        }
        if te {
            return State::ChunkSize(Vec::new());
        }
        let length = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| {
                std::str::from_utf8(h.value)
                    .ok()?
                    .trim()
                    .parse::<u64>()
                    .ok()
            });
        match (cl, length) {
            (false, _) | (true, Some(0)) => State::Head(Vec::new()),
            (true, Some(n)) => State::Body(n),
            (true, None) => State::Done,
        }
    }
}

/// A client stream whose reads pass through a [`FramingWatch`].
pub struct Watched<S> {
    inner: S,
    watch: FramingWatch,
}

impl<S> Watched<S> {
    /// Wraps `inner`; `ambiguous` is raised on a CL + TE request.
    pub fn new(inner: S, ambiguous: Arc<AtomicBool>) -> Self {
        Watched {
            inner,
            watch: FramingWatch::new(ambiguous),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                this.watch.feed(new);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flagged(stream: &[u8], chunk: usize) -> bool {
        let flag = Arc::new(AtomicBool::new(false));
        let mut w = FramingWatch::new(flag.clone());
        for part in stream.chunks(chunk) {
            w.feed(part);
        }
        flag.load(Ordering::SeqCst)
    }

    #[test]
    fn finds_cl_te_in_any_request_of_a_connection() {
        let cases: [(&[u8], bool); 6] = [
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false),
            (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", true),
            // Second request on the connection, after a 5-byte body.
            (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", true),
            // After a chunked body with a trailer.
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", true),
            // Header names inside a body are not heads.
            (b"POST / HTTP/1.1\r\nContent-Length: 51\r\n\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n..GET / HTTP/1.1\r\n\r\n", false),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n", false),
        ];
        for (i, (stream, want)) in cases.iter().enumerate() {
            for chunk in [1, 3, 7, 4096] {
                assert_eq!(flagged(stream, chunk), *want, "case {i}, chunks of {chunk}");
            }
        }
    }
}
