//! An upstream's response head: status, headers as spans, how its body is
//! framed (RFC 9112 6.3) and whether the connection can carry another
//! request afterwards.

use super::wire::Span;
use crate::request::forwarding::tokens;
use std::mem::MaybeUninit;

/// Largest response head accepted from an upstream.
pub const MAX_RESPONSE_HEAD: usize = 256 * 1024;

/// At most this many header lines (as hyper's client).
const MAX_HEADERS: usize = 100;

/// How the body after a response head ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    #[default]
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked.
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// One parsed response head; spans point into the upstream buffer.
#[derive(Debug, Default)]
pub struct ResponseHead {
    /// Bytes of the head.
    pub len: usize,
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: Span,
    /// Every header line, in order.
    pub headers: Vec<(Span, Span)>,
    /// The values of `Connection` headers.
    pub connection: Vec<Span>,
    /// How the body ends.
    pub framing: Framing,
    /// Whether the connection may carry another request after this body.
    pub reusable: bool,
    /// Whether it has a `Date` header.
    pub dated: bool,
}

impl ResponseHead {
    /// Parses the head at the start of `buf`, the answer to a HEAD request
    /// when `head_request`. `Ok(false)`: not complete yet.
    pub fn parse(&mut self, buf: &[u8], head_request: bool) -> Result<bool, &'static str> {
        let mut raw = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let config = httparse::ParserConfig::default();
        let len = match config.parse_response_with_uninit_headers(&mut resp, buf, &mut raw) {
            Ok(httparse::Status::Complete(n)) if n <= MAX_RESPONSE_HEAD => n,
            Ok(httparse::Status::Partial) if buf.len() <= MAX_RESPONSE_HEAD => return Ok(false),
            Ok(_) => return Err("response head too large"),
            Err(_) => return Err("malformed response head"),
        };
        let (Some(version), Some(status)) = (resp.version, resp.code) else {
            return Err("malformed response head");
        };
        self.len = len;
        self.status = status;
        self.reason = Span::within(buf, resp.reason.unwrap_or("").as_bytes());
        self.headers.clear();
        self.connection.clear();
        self.dated = false;
        let (mut close, mut chunked, mut te, mut length) = (version == 0, false, false, None);
        for h in resp.headers.iter() {
            let (name, value) = (h.name.as_bytes(), h.value);
            let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
            match name.len() {
                17 if is(b"transfer-encoding") => {
                    te = true;
                    chunked = tokens(value)
                        .last()
                        .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
                }
                14 if is(b"content-length") => {
                    for v in tokens(value) {
                        let n = parse_length(v).ok_or("invalid Content-Length")?;
                        if length.is_some_and(|l| l != n) {
                            return Err("differing Content-Length values");
                        }
                        length = Some(n);
                    }
                }
                4 if is(b"date") => self.dated = true,
                10 if is(b"connection") => {
                    close |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"close"));
                    self.connection.push(Span::within(buf, value));
                }
                _ => {}
            }
            self.headers
                .push((Span::within(buf, name), Span::within(buf, value)));
        }
        self.framing = if head_request || status < 200 || status == 204 || status == 304 {
            Framing::Empty
        } else if te {
            if chunked {
                Framing::Chunked
            } else {
                Framing::UntilClose
            }
        } else {
            length.map_or(Framing::UntilClose, Framing::Length)
        };
        self.reusable = !close && self.framing != Framing::UntilClose;
        Ok(true)
    }
}

fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Status, framing and reusability, once the head is complete.
    type Seen = Result<Option<(u16, Framing, bool)>, &'static str>;

    fn parse(raw: &[u8], head: bool) -> Seen {
        let mut r = ResponseHead::default();
        Ok(r.parse(raw, head)?
            .then_some((r.status, r.framing, r.reusable)))
    }

    #[test]
    fn framing_of_answers() {
        use Framing::*;
        let cases: [(&[u8], bool, Seen); 14] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                false,
                Ok(Some((200, Length(5), true))),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                false,
                Ok(Some((200, Length(0), true))),
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", false, Ok(None)),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                Ok(Some((200, Chunked, true))),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\n\r\n",
                false,
                Ok(Some((200, Chunked, true))),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                false,
                Ok(Some((200, UntilClose, false))),
            ),
            (
                b"HTTP/1.1 200 OK\r\n\r\nbody until close",
                false,
                Ok(Some((200, UntilClose, false))),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                true,
                Ok(Some((200, Empty, true))),
            ),
            (
                b"HTTP/1.1 204 No Content\r\n\r\n",
                false,
                Ok(Some((204, Empty, true))),
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
                false,
                Ok(Some((304, Empty, true))),
            ),
            (
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
                false,
                Ok(Some((200, Length(1), false))),
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
                false,
                Ok(Some((200, Length(1), false))),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                false,
                Err("differing Content-Length values"),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
                false,
                Ok(Some((200, Length(5), true))),
            ),
        ];
        for (i, (raw, head, want)) in cases.iter().enumerate() {
            assert_eq!(parse(raw, *head), *want, "case {i}");
        }
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false),
            Err("invalid Content-Length")
        );
        assert_eq!(
            parse(b"HTTP/1.1 2000 OK\r\n\r\n", false),
            Err("malformed response head")
        );
        assert_eq!(
            parse(b"HTTP/1.1 100 Continue\r\n\r\n", false),
            Ok(Some((100, Empty, true)))
        );
    }
}
