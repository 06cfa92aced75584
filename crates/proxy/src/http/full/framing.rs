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

use crate::http::chunked::Chunked;
use crate::http::version::BadVersion;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A chunked request body is checked whole, before its request goes
/// upstream, when it arrives with its head and is no larger than this
/// (as the plain path buffers Content-Length bodies).
const HOLD: usize = crate::http::plain::request::MAX_BUFFERED_BODY;
/// hyper's own limit on header fields (its default `max_headers`).
const MAX_HEADERS: usize = 100;
/// The header that marks the stand-in request of a refused head.
pub const REFUSED_HEADER: &str = "x-shoal-refused";

/// Why a head was refused, and with which status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 431, 501 or 505.
    pub status: u16,
    /// What is wrong, for the answer's body.
    pub reason: String,
}

enum State {
    Head(Vec<u8>),
    Body(u64),
    /// A chunked request's head and its body so far, held back until the
    /// body is complete and valid, grows past [`HOLD`], or the client has
    /// sent nothing more for now ([`FramingWatch::release`]).
    Held {
        bytes: Vec<u8>,
        body: Chunked,
    },
    /// A chunked body passed on as it arrives, checked.
    Chunked(Chunked),
    /// Passes everything through.
    Done,
    /// A head was refused, or a body broke: everything after is discarded.
    Refused,
}

/// Follows request framing over the bytes read from the client.
pub struct FramingWatch {
    state: State,
    max_head: usize,
    nonce: u64,
    refusal: Option<Refusal>,
    /// A chunked body that broke after its request went on: reads fail.
    broken: Option<String>,
}

fn refuse(status: u16, reason: impl Into<String>) -> Option<Refusal> {
    Some(Refusal {
        status,
        reason: reason.into(),
    })
}

/// What is wrong with the version of the request line at the start of
/// `head` (once that line is complete): 505 for a well-formed version
/// other than HTTP/1.0 and 1.1, 400 for a malformed one.
pub fn check_line(head: &[u8]) -> Option<Refusal> {
    let end = head.iter().position(|b| *b == b'\n')?;
    match crate::http::version::check(&head[..=end])? {
        BadVersion::Unsupported(reason) => refuse(505, reason),
        BadVersion::Malformed(reason) => refuse(400, format!("malformed request line: {reason}")),
    }
}

/// What is wrong with a complete request head that hyper would refuse
/// (or that is ambiguous), if anything.
pub fn check_head(head: &[u8]) -> Option<Refusal> {
    if let Some(r) = check_line(head) {
        return Some(r);
    }
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
        let codings: Vec<&str> = all.split(',').map(str::trim).collect();
        let chunked = |c: &&str| c.eq_ignore_ascii_case("chunked");
        if !codings.last().is_some_and(chunked) {
            return refuse(
                400,
                format!("Transfer-Encoding must end with chunked (got {all:?})"),
            );
        }
        if codings.iter().filter(|c| chunked(c)).count() > 1 {
            return refuse(
                400,
                format!("Transfer-Encoding applies chunked more than once (got {all:?})"),
            );
        }
        // As nginx: only chunked itself. Another coding (gzip, the obsolete
        // identity) would have to be forwarded and undone by the instance;
        // RFC 9112 6.1 answers a coding a server does not implement 501.
        if codings.len() > 1 {
            return refuse(
                501,
                format!("Transfer-Encoding other than chunked is not implemented (got {all:?})"),
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
            broken: None,
        }
    }

    /// The refusal, once a head was refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        self.refusal.as_ref()
    }

    /// Why the client's body broke after its request had gone on.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Whether a chunked request is held back.
    pub fn holding(&self) -> bool {
        matches!(self.state, State::Held { .. })
    }

    /// Lets a held chunked request go on (its body is followed on as it
    /// arrives): the client sent no more for now, or sent a large body.
    pub fn release(&mut self, out: &mut Vec<u8>) {
        if let State::Held { bytes, body } = &mut self.state {
            out.append(bytes);
            self.state = State::Chunked(std::mem::take(body));
        }
    }

    /// Drops a held request whose client closed before its body ended:
    /// nothing of it goes upstream.
    pub fn discard_held(&mut self) {
        if self.holding() {
            self.state = State::Refused;
        }
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
                        // An unserved version is answered as soon as its
                        // line is in (an HTTP/0.9 client sends no more).
                        if let Some(r) = check_line(buf) {
                            self.refuse_head(r, out);
                        } else if buf.len() > self.max_head {
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
                    if let Some(r) = check_line(&head) {
                        self.refuse_head(r, out);
                        return;
                    }
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
                    self.state = after_head(&head[..end + 4]);
                    if !matches!(self.state, State::Held { .. }) {
                        out.extend_from_slice(&head[..end + 4]);
                    }
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
                State::Held { bytes, body } => match body.advance(data) {
                    Ok(used) => {
                        bytes.extend_from_slice(&data[..used]);
                        if body.is_done() {
                            out.append(bytes);
                            self.state = State::Head(Vec::new());
                        } else if bytes.len() > HOLD {
                            self.release(out);
                        }
                        &data[used..]
                    }
                    Err(e) => {
                        let r = Refusal {
                            status: 400,
                            reason: format!("malformed chunked request body: {}", e.0),
                        };
                        self.refuse_head(r, out);
                        return;
                    }
                },
                State::Chunked(body) => match body.advance(data) {
                    Ok(used) => {
                        out.extend_from_slice(&data[..used]);
                        if body.is_done() {
                            self.state = State::Head(Vec::new());
                        }
                        &data[used..]
                    }
                    Err(e) => {
                        self.broken = Some(format!("malformed chunked request body: {}", e.0));
                        self.state = State::Refused;
                        return;
                    }
                },
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
        return State::Held {
            bytes: head.to_vec(),
            body: Chunked::default(),
        };
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
            if let Some(why) = this.watch.broken() {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, why)));
            }
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    this.watch.discard_held();
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending if this.watch.holding() => {
                    // The client sent no more for now: what it sent of the
                    // body was valid, so the request goes on (it may wait
                    // for an answer, `100 Continue`, before sending more).
                    this.watch.release(&mut this.ready);
                }
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

    /// A chunked body that arrives whole with its head is checked before
    /// any of the request goes on; one let go early (the client paused)
    /// is followed on, and a framing error in it fails the read.
    #[test]
    fn chunked_requests_are_held_until_checked() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut w = FramingWatch::new(8192, 7);
        let mut out = Vec::new();
        w.feed(head, &mut out);
        w.feed(b"5\r\nhel", &mut out);
        assert!(out.is_empty() && w.holding(), "held while incomplete");
        w.feed(b"lo\r\n0\r\n\r\n", &mut out);
        assert!(!w.holding());
        let mut want = head.to_vec();
        want.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
        assert_eq!(out, want, "a valid body goes on whole");

        let (mut w, mut out) = (FramingWatch::new(8192, 7), Vec::new());
        w.feed(head, &mut out);
        w.feed(b"5\r\nhel", &mut out);
        w.release(&mut out);
        let mut want = head.to_vec();
        want.extend_from_slice(b"5\r\nhel");
        assert_eq!(out, want, "released: the head and the body so far");
        w.feed(b"lo\r\nzz\r\n", &mut out);
        assert_eq!(out, want, "nothing of a read with a framing error goes on");
        assert_eq!(
            w.broken(),
            Some("malformed chunked request body: invalid chunked framing")
        );

        let (mut w, mut out) = (FramingWatch::new(8192, 7), Vec::new());
        w.feed(head, &mut out);
        let big = format!("{:x}\r\n{}", HOLD + 1, "x".repeat(HOLD + 1));
        w.feed(big.as_bytes(), &mut out);
        assert!(!w.holding() && out.len() > HOLD, "a large body streams");

        let (mut w, mut out) = (FramingWatch::new(8192, 7), Vec::new());
        w.feed(head, &mut out);
        w.discard_held();
        w.feed(b"0\r\n\r\nGET / HTTP/1.1\r\n\r\n", &mut out);
        assert!(
            out.is_empty(),
            "a request whose client left is dropped whole"
        );
    }

    #[test]
    fn heads_hyper_would_refuse_get_a_reason_and_a_stand_in() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: 1\r\n".repeat(101));
        let cases: [(&[u8], u16, &str); 15] = [
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
                505,
                "HTTP/2.0 (this proxy speaks HTTP/1.0 and HTTP/1.1)",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                501,
                "not implemented",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
                "more than once",
            ),
            (
                b"GET / HTTP/1.x\r\nHost: a\r\n\r\n",
                400,
                "invalid HTTP version \"HTTP/1.x\"",
            ),
            (b"GET /\r\n", 505, "HTTP/0.9"),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
                400,
                "malformed chunked request body",
            ),
            (
                b"HEAD / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
                400,
                "malformed chunked request body",
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
