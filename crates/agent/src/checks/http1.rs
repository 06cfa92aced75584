//! The plain-HTTP exchange of an HTTP check, without a client library:
//! a request rendered once per check, just enough of the answer for the
//! check (status line, first bytes of the body), and idle keep-alive
//! connections shared by every check to the same address (as Envoy's
//! health checker reuses them; Consul opens one per run). Thousands of
//! checks per agent make the per-run cost matter: opening and closing a
//! TCP connection costs the kernel far more than the exchange itself.
//! HTTPS checks and redirects go through the full client instead.

use reqwest::header::{HeaderMap, HOST};
use reqwest::Method;
use std::collections::HashMap;
use std::io::{Error, ErrorKind};
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head read.
const MAX_HEAD: usize = 64 * 1024;
/// Idle connections kept per address, and in all.
const MAX_IDLE_PER_ADDR: usize = 8;
const MAX_IDLE: usize = 1024;

/// Idle keep-alive connections by address, shared by all HTTP checks.
#[derive(Debug, Default)]
pub(crate) struct IdleConnections {
    by_addr: Mutex<HashMap<String, Vec<TcpStream>>>,
}

impl IdleConnections {
    fn take(&self, addr: &str) -> Option<TcpStream> {
        let mut map = self.by_addr.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.get_mut(addr)?;
        let stream = list.pop();
        if list.is_empty() {
            map.remove(addr);
        }
        stream
    }

    fn put(&self, addr: &str, stream: TcpStream) {
        let mut map = self.by_addr.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = map.values().map(Vec::len).sum();
        let list = map.entry(addr.to_string()).or_default();
        if list.len() < MAX_IDLE_PER_ADDR && total < MAX_IDLE {
            list.push(stream);
        }
    }
}

/// A failed exchange, and whether any answer byte had arrived (a reused
/// connection the server had closed fails before that and is retried).
struct Failed {
    error: Error,
    answered: bool,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        Failed {
            error,
            answered: true,
        }
    }
}

/// A request to an `http://` URL, rendered once.
#[derive(Debug)]
pub(crate) struct PlainRequest {
    /// `host:port` to connect to.
    pub addr: String,
    /// The whole request, head and body.
    bytes: Vec<u8>,
    /// HEAD requests have no response body.
    head_only: bool,
}

/// What the check needs of an answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub code: u16,
    /// The status line after the version, as sent: `200 OK`.
    pub status: String,
    /// At most the first `max_body` bytes of the (decoded) body.
    pub body: Vec<u8>,
}

impl PlainRequest {
    /// The request for `url`, or `None` when it is not plain `http://`.
    pub fn build(method: &Method, url: &str, headers: &HeaderMap, body: &str) -> Option<Self> {
        let url = reqwest::Url::parse(url).ok()?;
        if url.scheme() != "http" {
            return None;
        }
        let host = url.host_str()?;
        let addr = format!("{host}:{}", url.port_or_known_default()?);
        let mut target = url.path().to_string();
        if let Some(q) = url.query() {
            target.push('?');
            target.push_str(q);
        }
        let mut head = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
        if !headers.contains_key(HOST) {
            let host_header = url
                .port()
                .map_or(host.to_string(), |p| format!("{host}:{p}"));
            head.extend_from_slice(format!("Host: {host_header}\r\n").as_bytes());
        }
        for (name, value) in headers {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        if !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
            head.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        head.extend_from_slice(body.as_bytes());
        Some(PlainRequest {
            addr,
            bytes: head,
            head_only: *method == Method::HEAD,
        })
    }

    /// Sends the request on an idle connection to the address if there
    /// is one (again on a new one if the server had closed it), else on
    /// a new one, and reads the answer.
    pub async fn exchange(
        &self,
        idle: &IdleConnections,
        max_body: usize,
    ) -> std::io::Result<Answer> {
        if let Some(stream) = idle.take(&self.addr) {
            match self.exchange_on(stream, idle, max_body).await {
                Ok(answer) => return Ok(answer),
                Err(f) if f.answered => return Err(f.error),
                Err(_) => {}
            }
        }
        let stream = TcpStream::connect(&self.addr).await?;
        self.exchange_on(stream, idle, max_body)
            .await
            .map_err(|f| f.error)
    }

    async fn exchange_on(
        &self,
        mut stream: TcpStream,
        idle: &IdleConnections,
        max_body: usize,
    ) -> Result<Answer, Failed> {
        let not_answered = |error| Failed {
            error,
            answered: false,
        };
        stream.write_all(&self.bytes).await.map_err(not_answered)?;
        let mut buf = Vec::with_capacity(1024);
        let head = loop {
            match read_more(&mut stream, &mut buf).await {
                Ok(0) if buf.is_empty() => {
                    return Err(not_answered(Error::new(
                        ErrorKind::UnexpectedEof,
                        "connection closed before a response",
                    )))
                }
                Ok(0) => {
                    return Err(Error::new(ErrorKind::UnexpectedEof, "response cut short").into())
                }
                Err(e) if buf.is_empty() => return Err(not_answered(e)),
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
            if let Some(head) = parse_head(&buf)? {
                break head;
            }
            if buf.len() > MAX_HEAD {
                return Err(Error::new(ErrorKind::InvalidData, "response head too large").into());
            }
        };
        let Head {
            code,
            status,
            framing,
            len: head_len,
            keep_alive,
        } = head;
        let mut raw = buf.split_off(head_len);
        let no_body = self.head_only || code / 100 == 1 || code == 204 || code == 304;
        if no_body || framing == Framing::Length(0) {
            if keep_alive && raw.is_empty() {
                idle.put(&self.addr, stream);
            }
            return Ok(Answer {
                code,
                status,
                body: Vec::new(),
            });
        }
        // Enough raw bytes for `max_body` of body, chunk framing included.
        let enough = max_body + max_body / 2 + 512;
        loop {
            let (body, complete) = match framing {
                Framing::Chunked => dechunk(&raw, max_body),
                Framing::Length(n) => (raw[..raw.len().min(n)].to_vec(), raw.len() >= n),
                Framing::UntilClose => (raw.clone(), false),
            };
            if complete || body.len() >= max_body || raw.len() >= enough {
                // Reused only when the answer ended exactly where read.
                let exact = match framing {
                    Framing::Length(n) => raw.len() == n,
                    Framing::Chunked => raw.ends_with(b"0\r\n\r\n"),
                    Framing::UntilClose => false,
                };
                if complete && keep_alive && exact {
                    idle.put(&self.addr, stream);
                }
                let mut body = body;
                body.truncate(max_body);
                return Ok(Answer { code, status, body });
            }
            if read_more(&mut stream, &mut raw).await? == 0 {
                return Ok(Answer { code, status, body });
            }
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// How the body of an answer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// What the head of an answer says.
struct Head {
    code: u16,
    status: String,
    framing: Framing,
    len: usize,
    /// HTTP/1.1 without `Connection: close`: the connection may be reused.
    keep_alive: bool,
}

/// Parses a complete head.
fn parse_head(buf: &[u8]) -> std::io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(Error::new(
                ErrorKind::InvalidData,
                format!("malformed HTTP response: {e}"),
            ))
        }
    };
    let code = resp.code.unwrap_or(0);
    let status = format!("{code} {}", resp.reason.unwrap_or_default())
        .trim_end()
        .to_string();
    let mut framing = Framing::UntilClose;
    let mut keep_alive = resp.version == Some(1);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("close")
        {
            keep_alive = false;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
            {
                framing = Framing::Chunked;
                break;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            if let Ok(n) = String::from_utf8_lossy(h.value).trim().parse() {
                framing = Framing::Length(n);
            }
        }
    }
    Ok(Some(Head {
        code,
        status,
        framing,
        len,
        keep_alive,
    }))
}

/// Decodes chunked `raw` as far as it goes, up to `max` bytes; says
/// whether the last chunk was reached.
fn dechunk(raw: &[u8], max: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut at = 0;
    while out.len() < max {
        let Some(eol) = raw[at..].windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let line = String::from_utf8_lossy(&raw[at..at + eol]);
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_hex, 16) else {
            break;
        };
        if size == 0 {
            return (out, true);
        }
        let start = at + eol + 2;
        let end = (start + size).min(raw.len());
        out.extend_from_slice(&raw[start..end]);
        if end < start + size {
            break;
        }
        at = start + size + 2;
        if at > raw.len() {
            break;
        }
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn requests_are_rendered_once_with_the_right_head() {
        let mut headers = HeaderMap::new();
        headers.insert("x-probe", HeaderValue::from_static("1"));
        let cases = [
            (
                Method::GET,
                "http://127.0.0.1:8080/health?full=1",
                "",
                "GET /health?full=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nx-probe: 1\r\n\r\n",
                "127.0.0.1:8080",
            ),
            (
                Method::POST,
                "http://svc/ping",
                "hi",
                "POST /ping HTTP/1.1\r\nHost: svc\r\nx-probe: 1\r\nContent-Length: 2\r\n\r\nhi",
                "svc:80",
            ),
            (
                Method::GET,
                "http://[::1]:9/",
                "",
                "GET / HTTP/1.1\r\nHost: [::1]:9\r\nx-probe: 1\r\n\r\n",
                "[::1]:9",
            ),
        ];
        for (method, url, body, want, addr) in cases {
            let req = PlainRequest::build(&method, url, &headers, body).unwrap();
            assert_eq!(String::from_utf8_lossy(&req.bytes), want, "{url}");
            assert_eq!(req.addr, addr);
        }
        assert!(PlainRequest::build(&Method::GET, "https://x/", &headers, "").is_none());
        headers.insert(HOST, HeaderValue::from_static("virtual"));
        let req = PlainRequest::build(&Method::GET, "http://1.2.3.4/", &headers, "").unwrap();
        let text = String::from_utf8_lossy(&req.bytes);
        assert!(
            text.contains("\r\nhost: virtual\r\n") && !text.contains("1.2.3.4"),
            "{text}"
        );
    }

    #[test]
    fn chunked_bodies_are_decoded_up_to_the_limit() {
        let cases: [(&[u8], usize, &[u8], bool); 5] = [
            (b"5\r\nhello\r\n0\r\n\r\n", 100, b"hello", true),
            (
                b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                100,
                b"hello world",
                true,
            ),
            (b"5\r\nhello\r\n6\r\n wo", 100, b"hello wo", false),
            (
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                3,
                b"hello",
                false,
            ),
            (b"zz\r\n", 100, b"", false),
        ];
        for (raw, max, want, done) in cases {
            assert_eq!(
                dechunk(raw, max),
                (want.to_vec(), done),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    /// Serves `response` once to whoever connects; returns the URL.
    async fn serve_once(response: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            s.write_all(response).await.unwrap();
        });
        url
    }

    #[tokio::test]
    async fn answers_are_read_by_their_framing() {
        let cases: [(&'static [u8], u16, &str, &[u8]); 5] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", 200, "200 OK", b"ok"),
            (b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ndown\r\n0\r\n\r\n", 503, "503 Service Unavailable", b"down"),
            (b"HTTP/1.0 200 fine\r\n\r\nuntil close", 200, "200 fine", b"until close"),
            (b"HTTP/1.1 204 No Content\r\n\r\n", 204, "204 No Content", b""),
            (b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 100\r\n\r\n0123456789", 429, "429 Too Many Requests", b"0123"),
        ];
        for (response, code, status, body) in cases {
            let url = serve_once(response).await;
            let req = PlainRequest::build(&Method::GET, &url, &HeaderMap::new(), "").unwrap();
            let answer = req.exchange(&IdleConnections::default(), 4).await.unwrap();
            assert_eq!((answer.code, answer.status.as_str()), (code, status));
            assert_eq!(answer.body, &body[..body.len().min(4)], "{status}");
        }
        let url = serve_once(b"garbage\r\n\r\n").await;
        let req = PlainRequest::build(&Method::GET, &url, &HeaderMap::new(), "").unwrap();
        let err = req
            .exchange(&IdleConnections::default(), 4)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("malformed HTTP response"), "{err}");
    }

    /// Answers `answers` requests on one connection each time one is
    /// opened; returns the URL and a count of connections accepted.
    async fn keep_alive_server(close_after: usize) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    for _ in 0..close_after {
                        let mut buf = [0u8; 1024];
                        if s.read(&mut buf).await.unwrap_or(0) == 0 {
                            return;
                        }
                        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await
                            .unwrap();
                    }
                });
            }
        });
        (url, accepted)
    }

    #[tokio::test]
    async fn connections_are_reused_and_a_closed_one_is_replaced() {
        let (url, accepted) = keep_alive_server(2).await;
        let idle = IdleConnections::default();
        let req = PlainRequest::build(&Method::GET, &url, &HeaderMap::new(), "").unwrap();
        for round in 1..=5 {
            let answer = req.exchange(&idle, 100).await.unwrap();
            assert_eq!(
                (answer.code, answer.body.as_slice()),
                (200, &b"ok"[..]),
                "round {round}"
            );
        }
        // Two answers per connection: 5 rounds need 3 connections; the
        // server closing the idle one after its second answer is no error.
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }
}
