//! A watch on the raw bytes of a client connection, in front of hyper.
//! It follows HTTP/1 framing just far enough to find each request head
//! (Content-Length and chunked bodies are passed through), holds each head
//! until it is complete, and checks it first. hyper answers a head it
//! refuses with a bare `400` and no word of what is wrong, and it copes
//! with Content-Length + Transfer-Encoding silently (chunked wins), which
//! drops the evidence of a smuggling attempt. So a head that hyper would
//! refuse, or that is ambiguous, never reaches hyper: in its place hyper
//! reads a stand-in request carrying this connection's secret, which the
//! service answers with the status and the reason (and Connection: close);
//! whatever the client sends after it is discarded. Being a request like
//! any other, the answer keeps its place after pipelined ones.
//!
//! The watch stops (passes bytes through) at anything it does not follow
//! (an upgrade, CONNECT, a chunk size it cannot read), since from there
//! hyper rejects or tunnels the bytes.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// hyper's own limit on header fields (its default `max_headers`).
const MAX_HEADERS: usize = 100;
/// The header that marks the stand-in request of a refused head.
pub const REFUSED_HEADER: &str = "x-shoal-refused";

/// Why a head was refused, and with which status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 400 or 431.
    pub status: u16,
    /// What is wrong, for the answer's body.
    pub reason: String,
}

enum State {
    Head(Vec<u8>),
    Body(u64),
    ChunkSize(Vec<u8>),
    ChunkData(u64),
    ChunkEnd(u8),
    Trailers(Vec<u8>),
    /// Passes everything through.
    Done,
    /// A head was refused: everything after it is discarded.
    Refused,
}

/// Follows request framing over the bytes read from the client.
pub struct FramingWatch {
    state: State,
    max_head: usize,
    nonce: u64,
    refusal: Option<Refusal>,
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

fn refuse(status: u16, reason: impl Into<String>) -> Option<Refusal> {
    Some(Refusal {
        status,
        reason: reason.into(),
    })
}

/// What is wrong with a complete request head that hyper would refuse
/// (or that is ambiguous), if anything.
pub fn check_head(head: &[u8]) -> Option<Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return refuse(400, "malformed request head: incomplete"),
        Err(httparse::Error::TooManyHeaders) => {
            return refuse(431, format!("more than {MAX_HEADERS} header fields"))
        }
        Err(e) => return refuse(400, format!("malformed request head: {e}")),
    }
    let values = |name: &str| {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
            .collect::<Vec<_>>()
    };
    let (cl, te) = (values("content-length"), values("transfer-encoding"));
    if !cl.is_empty() && !te.is_empty() {
        return refuse(400, "both Content-Length and Transfer-Encoding are set");
    }
    if !te.is_empty() {
        if req.version == Some(0) {
            return refuse(
                400,
                "Transfer-Encoding is not allowed in an HTTP/1.0 request",
            );
        }
        let all = te.join(",");
        let last = all.rsplit(',').next().unwrap_or("").trim();
        if !last.eq_ignore_ascii_case("chunked") {
            return refuse(
                400,
                format!("Transfer-Encoding must end with chunked (got {all:?})"),
            );
        }
    }
    for v in &cl {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || v.len() > 19 {
            return refuse(400, format!("invalid Content-Length {v:?}"));
        }
    }
    if cl.windows(2).any(|w| w[0] != w[1]) {
        return refuse(400, format!("conflicting Content-Length values {cl:?}"));
    }
    None
}

impl FramingWatch {
    /// A watch refusing heads larger than `max_head` bytes; `nonce` marks
    /// its stand-in requests.
    pub fn new(max_head: usize, nonce: u64) -> Self {
        FramingWatch {
            state: State::Head(Vec::new()),
            max_head,
            nonce,
            refusal: None,
        }
    }

    /// The refusal, once a head was refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        self.refusal.as_ref()
    }

    /// Whether bytes now pass through unwatched.
    fn passes_through(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn refuse_head(&mut self, refusal: Refusal, out: &mut Vec<u8>) {
        out.extend_from_slice(
            format!(
                "GET / HTTP/1.1\r\nhost: refused.invalid\r\n{REFUSED_HEADER}: {}\r\n\r\n",
                self.nonce
            )
            .as_bytes(),
        );
        self.refusal = Some(refusal);
        self.state = State::Refused;
    }

    /// Feeds the next bytes read from the client; appends to `out` the
    /// bytes hyper may read now.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        while !data.is_empty() {
            data = match &mut self.state {
                State::Refused => return,
                State::Done => {
                    out.extend_from_slice(data);
                    return;
                }
                State::Head(buf) => {
                    buf.extend_from_slice(data);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        if buf.len() > self.max_head {
                            let max = self.max_head;
                            self.refuse_head(
                                Refusal {
                                    status: 431,
                                    reason: format!("request head larger than {max} bytes"),
                                },
                                out,
                            );
                        }
                        return;
                    };
                    let head = std::mem::take(buf);
                    if end + 4 > self.max_head {
                        let max = self.max_head;
                        let r = Refusal {
                            status: 431,
                            reason: format!("request head larger than {max} bytes"),
                        };
                        self.refuse_head(r, out);
                        return;
                    }
                    if let Some(r) = check_head(&head[..end + 4]) {
                        self.refuse_head(r, out);
                        return;
                    }
                    out.extend_from_slice(&head[..end + 4]);
                    self.state = after_head(&head[..end + 4]);
                    self.feed(&head[end + 4..], out);
                    return;
                }
                State::Body(left) => {
                    let n = (*left).min(data.len() as u64) as usize;
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::Head(Vec::new());
                    }
                    out.extend_from_slice(&data[..n]);
                    &data[n..]
                }
                State::ChunkSize(line) => {
                    line.extend_from_slice(data);
                    let Some(pos) = find_crlf(line) else {
                        if line.len() > 1024 {
                            out.extend_from_slice(line);
                            self.state = State::Done;
                        }
                        return;
                    };
                    let line = std::mem::take(line);
                    out.extend_from_slice(&line[..pos + 2]);
                    let text = String::from_utf8_lossy(&line[..pos]).to_string();
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
                    self.feed(&line[pos + 2..], out);
                    return;
                }
                State::ChunkData(left) => {
                    let n = (*left).min(data.len() as u64) as usize;
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::ChunkEnd(2);
                    }
                    out.extend_from_slice(&data[..n]);
                    &data[n..]
                }
                State::ChunkEnd(left) => {
                    let n = usize::from(*left).min(data.len());
                    *left -= n as u8;
                    if *left == 0 {
                        self.state = State::ChunkSize(Vec::new());
                    }
                    out.extend_from_slice(&data[..n]);
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
                        if buf.len() > self.max_head {
                            out.extend_from_slice(buf);
                            self.state = State::Done;
                        }
                        return;
                    };
                    let buf = std::mem::take(buf);
                    out.extend_from_slice(&buf[..end]);
                    self.state = State::Head(Vec::new());
                    self.feed(&buf[end..], out);
                    return;
                }
            };
        }
    }
}

/// The state after a complete request head that passed [`check_head`].
fn after_head(head: &[u8]) -> State {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return State::Done;
    }
    let has = |name: &str| {
        req.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name))
    };
    if has("upgrade") || req.method == Some("CONNECT") {
        return State::Done;
    }
    if has("transfer-encoding") {
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
    match length {
        None | Some(0) => State::Head(Vec::new()),
        Some(n) => State::Body(n),
    }
}

/// A client stream whose reads pass through a [`FramingWatch`]; a refusal
/// is put in the shared slot for the service to answer.
pub struct Watched<S> {
    inner: S,
    watch: FramingWatch,
    /// Bytes the watch let through that hyper has not read yet.
    ready: Vec<u8>,
    at: usize,
    slot: Arc<Mutex<Option<Refusal>>>,
}

impl<S> Watched<S> {
    /// Wraps `inner`; see [`FramingWatch::new`].
    pub fn new(inner: S, max_head: usize, nonce: u64, slot: Arc<Mutex<Option<Refusal>>>) -> Self {
        Watched {
            inner,
            watch: FramingWatch::new(max_head, nonce),
            ready: Vec::new(),
            at: 0,
            slot,
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
        loop {
            if this.at < this.ready.len() {
                let n = (this.ready.len() - this.at).min(buf.remaining());
                buf.put_slice(&this.ready[this.at..this.at + n]);
                this.at += n;
                if this.at == this.ready.len() {
                    this.ready.clear();
                    this.at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.watch.passes_through() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut scratch = [0u8; 4096];
            let mut read = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    let had = this.watch.refusal().is_some();
                    this.watch.feed(read.filled(), &mut this.ready);
                    if !had {
                        if let Some(r) = this.watch.refusal() {
                            *this.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(r.clone());
                        }
                    }
                }
                other => return other,
            }
        }
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

    /// What hyper reads and the refusal, feeding `stream` in `chunk`s.
    fn watched(stream: &[u8], chunk: usize) -> (Vec<u8>, Option<Refusal>) {
        let mut w = FramingWatch::new(8192, 7);
        let mut out = Vec::new();
        for part in stream.chunks(chunk) {
            w.feed(part, &mut out);
        }
        (out, w.refusal().cloned())
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
                let (out, refusal) = watched(stream, chunk);
                assert_eq!(refusal.is_some(), *want, "case {i}, chunks of {chunk}");
                if !want {
                    assert_eq!(&out[..], *stream, "case {i}: passed through unchanged");
                }
            }
        }
    }

    #[test]
    fn heads_hyper_would_refuse_get_a_reason_and_a_stand_in() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: 1\r\n".repeat(101));
        let cases: [(&[u8], u16, &str); 9] = [
            (
                b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                400,
                "HTTP/1.0",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                400,
                "end with chunked",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n",
                400,
                "invalid Content-Length",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
                "conflicting Content-Length",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
                400,
                "malformed request head",
            ),
            (
                b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
                400,
                "malformed request head",
            ),
            (
                b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
                400,
                "malformed request head",
            ),
            (big.as_bytes(), 431, "larger than 8192"),
            (many.as_bytes(), 431, "more than 100"),
        ];
        let ok = b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n";
        for (i, (head, status, reason)) in cases.iter().enumerate() {
            let mut stream = ok.to_vec();
            stream.extend_from_slice(head);
            stream.extend_from_slice(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n");
            for chunk in [1, 5, 4096] {
                let (out, refusal) = watched(&stream, chunk);
                let r = refusal.unwrap_or_else(|| panic!("case {i} not refused"));
                assert_eq!(r.status, *status, "case {i}");
                assert!(r.reason.contains(reason), "case {i}: {}", r.reason);
                let want = format!(
                    "GET /first HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nhost: refused.invalid\r\n{REFUSED_HEADER}: 7\r\n\r\n"
                );
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    want,
                    "case {i}, chunks of {chunk}"
                );
            }
        }
    }
}
