//! The API's own HTTP/1.1 server: one task per connection that holds as
//! little as it can while a handler is pending.
//!
//! Why not hyper: a parked blocking query is the API's common state (every
//! proxy, agent, renderer and Consul client keeps some open), and through
//! hyper each one held a read buffer, a write buffer and the connection's
//! machinery, about 20 KiB, for minutes. Here a connection waiting on its
//! handler holds the socket, the handler's future and nothing else: the
//! read buffer is given back as soon as the request head is parsed (unless
//! pipelined bytes are in it), and the answer is written from a buffer
//! that lives only while it is written. `shoal-bench watchers` measures it.
//!
//! What it speaks: HTTP/1.0 and 1.1 requests (RFC 9112) with
//! Content-Length or chunked bodies, `Expect: 100-continue`, keep-alive and
//! pipelining, answers with Content-Length, chunked (streamed bodies, such
//! as the change stream) or close-delimited for HTTP/1.0. Anything it
//! cannot frame exactly is refused with a 4xx/5xx that says why, and the
//! connection is closed after it: a request is never guessed at.

use crate::transport::Transport;
use axum::body::{Body, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{self, header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one request.
pub const MAX_HEADERS: usize = 128;
/// Most bytes taken from the socket in one read.
const READ_SIZE: usize = 8 * 1024;
/// A started request head must be complete within this time.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest chunk-size line (size plus extensions) or trailer field.
const MAX_CHUNK_LINE: usize = 4096;
/// Most bytes of trailer fields after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;

/// Serves `app` on `listener` until `cancel` fires; then idle connections
/// close at once and requests in flight get `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    cancel: CancellationToken,
    grace: Duration,
) -> io::Result<()> {
    let conn_cancel = cancel.clone();
    accept_loop(listener, cancel, grace, move |stream, peer| {
        Conn::new(stream, peer, app.clone(), conn_cancel.clone()).run()
    })
    .await
}

/// Accepts connections on `listener` until `cancel` fires, each served by
/// the task `start` makes of it (plain HTTP/1.1, or a TLS handshake
/// first); then gives the tasks `grace` to finish.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    cancel: CancellationToken,
    grace: Duration,
    mut start: F,
) -> io::Result<()>
where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = cancel.cancelled() => break,
            // Reap finished connections so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                conns.spawn(start(stream, peer));
            }
            Err(e) => {
                // Out of file descriptors and the like: log, breathe, go on
                // (the connections already open still need serving).
                tracing::warn!(error = %e, "HTTP API: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drain).await.is_err() {
        conns.abort_all();
    }
    Ok(())
}

/// One client connection, over plain TCP or TLS (monomorphized: the plain
/// path is the same code it was before TLS existed).
pub(crate) struct Conn<S> {
    stream: S,
    peer: SocketAddr,
    /// Bytes read and not yet consumed; empty (no allocation) between
    /// requests unless the client pipelined.
    buf: BytesMut,
    app: Router,
    cancel: CancellationToken,
}

/// What the head of a request says about its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
}

/// A parsed request head, before its body.
struct Head {
    request: Request<()>,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

/// A request the server answers itself, without the router.
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, message)
    }
}

impl<S: Transport> Conn<S> {
    pub(crate) fn new(stream: S, peer: SocketAddr, app: Router, cancel: CancellationToken) -> Self {
        Conn {
            stream,
            peer,
            buf: BytesMut::new(),
            app,
            cancel,
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            let head = match self.read_head().await {
                Ok(Some(head)) => head,
                Ok(None) => return,
                Err(refusal) => {
                    let _ = self.refuse(refusal).await;
                    return;
                }
            };
            match self.exchange(head).await {
                Ok(true) => continue,
                Ok(false) | Err(_) => return,
            }
        }
    }

    /// Reads and parses the next request head. `Ok(None)`: the client
    /// closed (or went quiet at shutdown) between requests.
    async fn read_head(&mut self) -> Result<Option<Head>, Refusal> {
        let mut deadline = None;
        loop {
            if !self.buf.is_empty() {
                match parse_head(&self.buf, self.peer)? {
                    Some((head, used)) => {
                        self.buf.advance(used);
                        self.release_if_empty();
                        return Ok(Some(head));
                    }
                    None if self.buf.len() >= MAX_HEAD => {
                        return Err(Refusal::new(
                            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                            format!("request head larger than {MAX_HEAD} bytes"),
                        ));
                    }
                    None => {}
                }
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + HEAD_TIMEOUT);
            }
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.stream.readable() => {
                    if r.is_err() {
                        return Ok(None);
                    }
                }
                _ = self.cancel.cancelled(), if self.buf.is_empty() => return Ok(None),
                _ = timeout => {
                    return Err(Refusal::new(
                        StatusCode::REQUEST_TIMEOUT,
                        format!("request head not complete within {}s", HEAD_TIMEOUT.as_secs()),
                    ));
                }
            }
            match read_some(&mut self.stream, &mut self.buf) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Ok(None),
            }
        }
    }

    /// Gives the read buffer's memory back when nothing is left in it.
    fn release_if_empty(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
    }

    /// Runs one request through the router and writes its answer.
    /// `Ok(true)`: the connection can carry another request.
    async fn exchange(&mut self, head: Head) -> io::Result<bool> {
        let Head {
            request,
            framing,
            mut keep_alive,
            expect_continue,
        } = head;
        let is_head = request.method() == Method::HEAD;
        let http10 = request.version() == http::Version::HTTP_10;
        let abandonable = matches!(*request.method(), Method::GET | Method::HEAD);
        let (parts, ()) = request.into_parts();

        // The body: whole when it is already here, else streamed to the
        // handler as the client sends it.
        let mut feed = None;
        let body = match framing {
            Framing::Empty => Body::empty(),
            Framing::Length(n) if (self.buf.len() as u64) >= n => {
                let body = self.buf.split_to(n as usize).freeze();
                self.release_if_empty();
                Body::from(body)
            }
            framing => {
                if expect_continue {
                    self.stream
                        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                        .await?;
                    self.stream.flush().await?;
                }
                let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(1);
                feed = Some((BodyFeed::new(framing), tx));
                let mut rx = rx;
                Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
            }
        };
        let request = Request::from_parts(parts, body);
        let mut handler = std::pin::pin!(self.app.clone().oneshot(request));

        // While the body streams in: the handler and the feed, the feed
        // first so a handler reading its body is not starved.
        let mut response = None;
        while feed.as_ref().is_some_and(|(f, _)| !f.done()) {
            tokio::select! {
                biased;
                fed = feed_body(&mut self.stream, &mut self.buf, feed.as_mut()) => {
                    if fed.is_err() {
                        // The client's body was malformed or cut off: the
                        // handler has the error; nothing more can be read.
                        keep_alive = false;
                        if let Some((f, _)) = feed.as_mut() {
                            f.state = FeedState::Done;
                        }
                        break;
                    }
                }
                r = &mut handler => {
                    response = Some(r.unwrap_or_else(|never| match never {}));
                    break;
                }
            }
        }
        // The body's end (or its error) reaches the handler when the
        // sender goes; a body left unread ends the connection with this
        // answer, as it cannot be skipped reliably.
        if feed.take().is_some_and(|(f, _)| !f.done()) {
            keep_alive = false;
        }
        // Then the handler, and the client's socket: a client that goes
        // away is noticed while its handler is parked.
        let mut watch_close = keep_alive;
        let response = match response {
            Some(r) => r,
            None => loop {
                tokio::select! {
                    biased;
                    r = &mut handler => break r.unwrap_or_else(|never| match never {}),
                    r = self.stream.readable(), if watch_close => {
                        if r.is_err() {
                            return Ok(false);
                        }
                        if self.buf.len() >= MAX_HEAD {
                            // Pipelined far ahead: stop reading until answered.
                            watch_close = false;
                            continue;
                        }
                        match read_some(&mut self.stream, &mut self.buf) {
                            Ok(0) => {
                                // The client is gone. A read it asked for
                                // (a parked blocking query, say) is dropped;
                                // a write still runs to its end.
                                if abandonable {
                                    return Ok(false);
                                }
                                keep_alive = false;
                                watch_close = false;
                            }
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(_) => return Ok(false),
                        }
                    }
                }
            },
        };
        if self.cancel.is_cancelled() {
            keep_alive = false;
        }
        write_response(&mut self.stream, response, is_head, http10, keep_alive).await?;
        Ok(keep_alive)
    }

    /// Answers a request the server refuses before the router sees it,
    /// and closes.
    async fn refuse(&mut self, refusal: Refusal) -> io::Result<()> {
        tracing::debug!(target: "shoal::api", client = %self.peer, status = refusal.status.as_u16(), reason = %refusal.message, "request refused");
        let mut response = Response::new(Body::from(format!("{}\n", refusal.message)));
        *response.status_mut() = refusal.status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        write_response(&mut self.stream, response, false, false, false).await?;
        let _ = self.stream.shutdown().await;
        Ok(())
    }
}

/// Reads what the socket has (at most [`READ_SIZE`] bytes) onto the end of
/// `buf`, through a stack buffer: a read that finds nothing (readiness is
/// often stale) leaves `buf` without an allocation, so an idle or parked
/// connection holds none.
fn read_some<S: Transport>(stream: &mut S, buf: &mut BytesMut) -> io::Result<usize> {
    let mut chunk = [0u8; READ_SIZE];
    let n = stream.try_read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Parses a request head from the start of `buf`. `Ok(None)`: incomplete.
/// Kept out of any `async fn`, so the header array is on the stack only
/// while parsing and never part of a connection's parked state.
fn parse_head(buf: &[u8], peer: SocketAddr) -> Result<Option<(Head, usize)>, Refusal> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::Version) => return Err(version_refusal(buf)),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("more than {MAX_HEADERS} header fields"),
            ))
        }
        Err(e) => return Err(Refusal::bad(format!("malformed request head: {e}"))),
    };
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
        .map_err(|_| Refusal::bad("malformed request method"))?;
    let target = req.path.unwrap_or("");
    let uri: http::Uri = target
        .parse()
        .map_err(|_| Refusal::bad(format!("malformed request target {target:?}")))?;
    let http11 = req.version == Some(1);
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| Refusal::bad(format!("malformed header name {:?}", h.name)))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| Refusal::bad(format!("malformed value of header {}", h.name)))?;
        headers.append(name, value);
    }
    let framing = framing(&headers, http11)?;
    let hosts = headers.get_all(header::HOST).iter().count();
    if hosts > 1 {
        return Err(Refusal::bad("more than one Host header"));
    }
    if http11 && hosts == 0 {
        return Err(Refusal::bad("HTTP/1.1 request without a Host header"));
    }
    let connection = tokens(&headers, header::CONNECTION);
    let keep_alive = if http11 {
        !connection.iter().any(|t| t.eq_ignore_ascii_case("close"))
    } else {
        connection
            .iter()
            .any(|t| t.eq_ignore_ascii_case("keep-alive"))
    };
    let expect_continue = match headers.get(header::EXPECT) {
        None => false,
        Some(v) if v.as_bytes().eq_ignore_ascii_case(b"100-continue") => http11,
        Some(_) => {
            return Err(Refusal::new(
                StatusCode::EXPECTATION_FAILED,
                "the only expectation understood is 100-continue",
            ))
        }
    };
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = if http11 {
        http::Version::HTTP_11
    } else {
        http::Version::HTTP_10
    };
    *request.headers_mut() = headers;
    request.extensions_mut().insert(ConnectInfo(peer));
    Ok(Some((
        Head {
            request,
            framing,
            keep_alive,
            expect_continue,
        },
        used,
    )))
}

/// 505 for a well-formed version other than 1.0/1.1, 400 for garbage.
fn version_refusal(buf: &[u8]) -> Refusal {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let version = line
        .rsplit(|&b| b == b' ')
        .next()
        .unwrap_or(&[])
        .strip_suffix(b"\r")
        .unwrap_or(&[]);
    let well_formed = version.len() == 8
        && version.starts_with(b"HTTP/")
        && version[5].is_ascii_digit()
        && version[6] == b'.'
        && version[7].is_ascii_digit();
    if well_formed {
        Refusal::new(
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            format!(
                "{} is not supported: this API speaks HTTP/1.1 and HTTP/1.0",
                String::from_utf8_lossy(version)
            ),
        )
    } else {
        Refusal::bad("malformed request line")
    }
}

/// The comma-separated tokens of every `name` field.
fn tokens(headers: &HeaderMap, name: HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// How the body is framed (RFC 9112 §6.3), refusing every ambiguity.
fn framing(headers: &HeaderMap, http11: bool) -> Result<Framing, Refusal> {
    let te = tokens(headers, header::TRANSFER_ENCODING);
    let lengths: Vec<_> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    if !te.is_empty() || headers.contains_key(header::TRANSFER_ENCODING) {
        if !lengths.is_empty() {
            return Err(Refusal::bad(
                "both Transfer-Encoding and Content-Length: the body's length is ambiguous",
            ));
        }
        if !http11 {
            return Err(Refusal::bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        return match te.as_slice() {
            [only] if only.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
            _ if te.last().is_some_and(|t| t.eq_ignore_ascii_case("chunked")) => Err(Refusal::new(
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "Transfer-Encoding {:?}: only chunked is implemented",
                    te.join(", ")
                ),
            )),
            _ => Err(Refusal::bad(
                "Transfer-Encoding does not end in chunked: the body's length is unknown",
            )),
        };
    }
    let mut length: Option<u64> = None;
    for value in lengths {
        for part in value.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err(Refusal::bad("malformed Content-Length"));
            }
            let n: u64 = std::str::from_utf8(part)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Refusal::bad("malformed Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Refusal::bad("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        None | Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
    })
}

/// Where a streamed request body is.
#[derive(Debug)]
enum FeedState {
    /// Bytes of a Content-Length body still to come.
    Length(u64),
    /// Chunked: see [`ChunkDecoder`].
    Chunked(ChunkDecoder),
    Done,
}

struct BodyFeed {
    state: FeedState,
}

impl BodyFeed {
    fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => FeedState::Done,
            Framing::Length(n) => FeedState::Length(n),
            Framing::Chunked => FeedState::Chunked(ChunkDecoder::default()),
        };
        BodyFeed { state }
    }
    fn done(&self) -> bool {
        matches!(self.state, FeedState::Done)
    }
}

/// Moves the next piece of the body from the socket (or the buffer) to
/// the handler. `Err` ends the feed: the body was malformed or cut off,
/// and the handler was told so.
async fn feed_body<S: Transport>(
    stream: &mut S,
    buf: &mut BytesMut,
    feed: Option<&mut (BodyFeed, mpsc::Sender<Result<Bytes, io::Error>>)>,
) -> Result<(), ()> {
    let Some((feed, tx)) = feed else {
        return std::future::pending().await;
    };
    loop {
        // Whatever can be decoded from what is buffered goes first.
        let piece = match &mut feed.state {
            FeedState::Done => return Ok(()),
            FeedState::Length(left) if !buf.is_empty() => {
                let n = (*left).min(buf.len() as u64) as usize;
                *left -= n as u64;
                let piece = buf.split_to(n).freeze();
                if *left == 0 {
                    feed.state = FeedState::Done;
                }
                Some(Ok(piece))
            }
            FeedState::Length(_) => None,
            FeedState::Chunked(decoder) => match decoder.decode(buf) {
                Ok(Some(piece)) => Some(Ok(piece)),
                Ok(None) if decoder.finished() => {
                    feed.state = FeedState::Done;
                    return Ok(());
                }
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            },
        };
        match piece {
            Some(Ok(piece)) => {
                if buf.is_empty() {
                    *buf = BytesMut::new();
                }
                // The handler may have stopped reading (413, say): then
                // the rest is not wanted; the connection will close.
                if tx.send(Ok(piece)).await.is_err() {
                    std::future::pending::<()>().await;
                    return Ok(());
                }
                return Ok(());
            }
            Some(Err(message)) => {
                let _ = tx
                    .send(Err(io::Error::new(io::ErrorKind::InvalidData, message)))
                    .await;
                return Err(());
            }
            None => {}
        }
        stream.readable().await.map_err(|_| ())?;
        match read_some(stream, buf) {
            Ok(0) => {
                let _ = tx
                    .send(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client closed the connection before the end of the body",
                    )))
                    .await;
                return Err(());
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Err(()),
        }
    }
}

/// An incremental decoder of the chunked transfer coding (RFC 9112 §7.1):
/// strict CRLF line endings, hexadecimal sizes that fit in 64 bits,
/// bounded chunk extensions and trailers.
#[derive(Debug, Default)]
pub(crate) struct ChunkDecoder {
    state: ChunkState,
    /// Bytes of the current size line or trailer section seen so far.
    line: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// Data bytes of the current chunk still to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer fields after the last chunk, until an empty line.
    Trailers,
    Finished,
}

impl ChunkDecoder {
    pub(crate) fn finished(&self) -> bool {
        self.state == ChunkState::Finished
    }

    /// Consumes what it can of `buf`. `Ok(Some(data))`: a piece of the
    /// body; `Ok(None)`: more input is needed (or [`Self::finished`]).
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, &'static str> {
        loop {
            match self.state {
                ChunkState::Finished => return Ok(None),
                ChunkState::Size => {
                    let Some(end) = find_crlf(buf, MAX_CHUNK_LINE)? else {
                        return Ok(None);
                    };
                    let line = &buf[..end];
                    let size_end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
                    let size = &line[..size_end];
                    let size = size.trim_ascii_end();
                    if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit)
                    {
                        return Err("malformed chunk size");
                    }
                    let n = size.iter().fold(0u64, |n, &d| {
                        (n << 4) | (d as char).to_digit(16).unwrap_or(0) as u64
                    });
                    if line[size_end..]
                        .iter()
                        .any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f))
                    {
                        return Err("malformed chunk extension");
                    }
                    buf.advance(end + 2);
                    self.state = if n == 0 {
                        self.line = 0;
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(n)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = left.min(buf.len() as u64) as usize;
                    let data = buf.split_to(n).freeze();
                    self.state = if left == n as u64 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - n as u64)
                    };
                    return Ok(Some(data));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|&b| b != b'\r') {
                            return Err("chunk data not followed by CRLF");
                        }
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("chunk data not followed by CRLF");
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(end) = find_crlf(buf, MAX_CHUNK_LINE)? else {
                        return Ok(None);
                    };
                    self.line += end + 2;
                    if self.line > MAX_TRAILERS {
                        return Err("trailer section too large");
                    }
                    let empty = end == 0;
                    if !empty && !buf[..end].contains(&b':') {
                        return Err("malformed trailer field");
                    }
                    buf.advance(end + 2);
                    if empty {
                        self.state = ChunkState::Finished;
                        return Ok(None);
                    }
                }
            }
        }
    }
}

/// The position of the first CRLF in `buf`, refusing a bare CR or LF and
/// lines longer than `max`. `Ok(None)`: not there yet.
fn find_crlf(buf: &[u8], max: usize) -> Result<Option<usize>, &'static str> {
    for (i, &b) in buf.iter().enumerate() {
        if i > max {
            return Err("line too long in chunked body");
        }
        match b {
            b'\n' => return Err("bare LF in chunked body"),
            b'\r' => {
                return match buf.get(i + 1) {
                    Some(b'\n') => Ok(Some(i)),
                    Some(_) => Err("bare CR in chunked body"),
                    None => Ok(None),
                }
            }
            _ => {}
        }
    }
    if buf.len() > max {
        return Err("line too long in chunked body");
    }
    Ok(None)
}

/// Writes `response`: Content-Length when the body's size is known,
/// chunked (HTTP/1.1) when it streams. The write buffer lives only here.
/// Flushed at the end: a TLS stream may hold the last record until then
/// (for plain TCP a flush is nothing).
async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    response: Response,
    is_head: bool,
    http10: bool,
    mut keep_alive: bool,
) -> io::Result<()> {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    let bodiless = is_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let exact = HttpBody::size_hint(&body).exact();
    // A streamed body goes chunked to HTTP/1.1 clients; HTTP/1.0 has no
    // chunks, so there the connection's end marks the body's.
    let streamed = !bodiless && exact.is_none();
    let chunked = streamed && !http10;
    if streamed && http10 {
        keep_alive = false;
    }
    let mut out = Vec::with_capacity(256);
    // An HTTP/1.0 client is answered in its own version, as hyper and
    // nginx do; everyone else in 1.1.
    out.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in parts.headers.iter() {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // A HEAD (or 304) answer's body is empty; its length is the one the
    // handler's header gives, the length a GET would have sent.
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let length = if bodiless { declared.or(exact) } else { exact };
    if let Some(n) = length {
        if !(status.is_informational() || status == StatusCode::NO_CONTENT) {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    } else if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(if keep_alive {
        b"connection: keep-alive\r\n\r\n".as_slice()
    } else {
        b"connection: close\r\n\r\n".as_slice()
    });
    if bodiless {
        stream.write_all(&out).await?;
        return stream.flush().await;
    }
    // A body whose size is known is written with the head in one go when
    // it is small; a streamed one chunk by chunk, each flushed at once
    // (the change stream's events must not wait in a buffer).
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| io::Error::other(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: not sent
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        }
        if out.len() + data.len() <= 16 * 1024 {
            out.extend_from_slice(&data);
        } else {
            stream.write_all(&out).await?;
            out.clear();
            stream.write_all(&data).await?;
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
            stream.write_all(&out).await?;
            stream.flush().await?;
            out.clear();
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if !out.is_empty() {
        stream.write_all(&out).await?;
    }
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, bool), &'static str> {
        let mut d = ChunkDecoder::default();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(piece) = d.decode(&mut buf)? {
            out.extend_from_slice(&piece);
        }
        Ok((out, d.finished()))
    }

    #[test]
    fn chunked_bodies_decode_and_bad_ones_are_refused() {
        assert_eq!(
            decode_all(b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\nX-T: 1\r\n\r\n"),
            Ok((b"hello!".to_vec(), true))
        );
        assert_eq!(decode_all(b"5\r\nhel"), Ok((b"hel".to_vec(), false)));
        for bad in [
            &b"zz\r\n"[..],
            b"-5\r\nhello\r\n",
            b"fffffffffffffffff\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"\r\n",
            b"5 5\r\nhello\r\n",
            b"0\r\nno colon\r\n\r\n",
            b"0x5\r\nhello\r\n",
        ] {
            assert!(
                decode_all(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn encode(pieces: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in pieces.iter().filter(|p| !p.is_empty()) {
            out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
            out.extend_from_slice(p);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    proptest! {
        // Any split of an encoded body into reads decodes to the same bytes.
        #[test]
        fn chunked_round_trips_over_any_split(
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
            cut in 0usize..400,
        ) {
            let wire = encode(&pieces);
            let cut = cut.min(wire.len());
            let mut d = ChunkDecoder::default();
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut out = Vec::new();
            while let Some(p) = d.decode(&mut buf).unwrap() { out.extend_from_slice(&p); }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(p) = d.decode(&mut buf).unwrap() { out.extend_from_slice(&p); }
            prop_assert!(d.finished());
            prop_assert!(buf.is_empty());
            prop_assert_eq!(out, pieces.concat());
        }

        // Arbitrary bytes never panic and never yield more than was sent.
        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok((out, _)) = decode_all(&input) {
                prop_assert!(out.len() <= input.len());
            }
        }

        #[test]
        fn arbitrary_heads_never_panic(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
            let _ = parse_head(&input, peer);
        }
    }
}
