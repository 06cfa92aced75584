//! A request head parsed in place for the plain path; whatever the plain
//! path does not take (by the rules in `crate::http::dispatch`, plus one
//! Host and a small, unambiguous Content-Length) parses as `Parsed::Full`.

use super::wire::{RawHeaders, Span};
use crate::http::dispatch::{full_needs_header, plain_takes_line, Parsed};
use crate::request::forwarding::tokens;
use std::mem::MaybeUninit;

/// At most this many header lines (as hyper's default).
pub const MAX_HEADERS: usize = 100;

/// Request bodies up to this size are buffered whole and sent with the
/// head: small enough to fit in the upstream socket's send buffer, so
/// sending one cannot wait on the upstream reading its answer back.
pub const MAX_BUFFERED_BODY: usize = 16 * 1024;

/// One parsed request head; spans point into the connection's buffer.
#[derive(Debug, Default)]
pub struct RequestHead {
    /// Bytes of the head, final empty line included.
    pub len: usize,
    /// Bytes of the body after it.
    pub body_len: usize,
    /// The method.
    pub method: Span,
    /// The request target (path and query).
    pub target: Span,
    /// The Host header's value.
    pub host: Span,
    /// Every header line, in order.
    pub headers: Vec<(Span, Span)>,
    /// The values of `Connection` headers.
    pub connection: Vec<Span>,
    /// The values of `Via` headers (to find this proxy's own marker).
    pub via: Vec<Span>,
    /// The client asked to close the connection after this exchange.
    pub close: bool,
}

impl RequestHead {
    /// Parses the head at the start of `buf` (at most `max_head` bytes).
    pub fn parse(&mut self, buf: &[u8], max_head: usize) -> Parsed {
        // Uninitialized: filling 100 empty headers first cost more than
        // parsing a small head.
        let mut raw = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(buf, &mut raw) {
            Ok(httparse::Status::Complete(n)) if n <= max_head => n,
            Ok(httparse::Status::Partial) if buf.len() <= max_head => return Parsed::Partial,
            _ => return Parsed::Full,
        };
        let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
            return Parsed::Full;
        };
        if !plain_takes_line(method, target, 1) {
            return Parsed::Full;
        }
        self.len = len;
        self.method = Span::within(buf, method.as_bytes());
        self.target = Span::within(buf, target.as_bytes());
        self.headers.clear();
        self.connection.clear();
        self.via.clear();
        self.close = false;
        let (mut host, mut length) = (None, None);
        for h in req.headers.iter() {
            let (name, value) = (h.name.as_bytes(), h.value);
            let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
            match name.len() {
                4 if is(b"host") => {
                    if host.is_some() {
                        return Parsed::Full;
                    }
                    host = Some(Span::within(buf, value));
                }
                14 if is(b"content-length") => match (length, body_length(value)) {
                    (None, Some(n)) => length = Some(n),
                    _ => return Parsed::Full,
                },
                10 if is(b"connection") => {
                    self.close |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"close"));
                    self.connection.push(Span::within(buf, value));
                }
                3 if is(b"via") => self.via.push(Span::within(buf, value)),
                17 | 7 | 6 if full_needs_header(name) => return Parsed::Full,
                _ => {}
            }
            self.headers.push((
                Span::within(buf, h.name.as_bytes()),
                Span::within(buf, value),
            ));
        }
        let Some(host) = host else {
            return Parsed::Full;
        };
        self.host = host;
        self.body_len = length.unwrap_or(0);
        Parsed::Plain
    }

    /// Head plus body.
    pub fn total(&self) -> usize {
        self.len + self.body_len
    }

    /// The headers, over `buf`.
    pub fn raw<'a>(&'a self, buf: &'a [u8]) -> RawHeaders<'a> {
        RawHeaders {
            buf,
            list: &self.headers,
        }
    }

    /// The target's path, without the query.
    pub fn path<'a>(&self, buf: &'a [u8]) -> &'a str {
        let target = self.target.of(buf);
        let end = target
            .iter()
            .position(|b| *b == b'?')
            .unwrap_or(target.len());
        // httparse admits only visible ASCII in the target.
        std::str::from_utf8(&target[..end]).unwrap_or("/")
    }
}

/// A Content-Length value the lean path takes: digits only, small enough
/// to buffer.
fn body_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 6 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = value
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    (n <= MAX_BUFFERED_BODY).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> (Parsed, RequestHead) {
        let mut head = RequestHead::default();
        let parsed = head.parse(raw, 1024);
        (parsed, head)
    }

    #[test]
    fn fields_point_into_the_buffer() {
        let raw = b"POST /a/b?q=1 HTTP/1.1\r\nHost: Web.Localhost:8080\r\nConnection: keep-alive, Close\r\nContent-Length: 3\r\n\r\nabcGET /next HTTP/1.1\r\n";
        let (parsed, head) = parse(raw);
        assert_eq!(parsed, Parsed::Plain);
        assert_eq!(head.method.of(raw), b"POST");
        assert_eq!(head.target.of(raw), b"/a/b?q=1");
        assert_eq!(head.path(raw), "/a/b");
        assert_eq!(head.host.of(raw), b"Web.Localhost:8080");
        assert!(head.close);
        assert_eq!(
            (head.body_len, &raw[head.len..head.total()]),
            (3, &b"abc"[..])
        );
        assert!(
            raw[head.total()..].starts_with(b"GET /next"),
            "a pipelined request follows"
        );
        let names: Vec<&[u8]> = head.raw(raw).iter().map(|(n, _)| n).collect();
        assert_eq!(names, [&b"Host"[..], b"Connection", b"Content-Length"]);
    }
}
