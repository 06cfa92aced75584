//! Which path serves a request. Every connection starts on the plain
//! path (`plain::conn`); a request it does not take hands the connection,
//! with the bytes already read, to the full (hyper) path for good. The plain path takes
//! HTTP/1.1 requests in origin form with one Host and no body, or a
//! Content-Length body small enough to buffer whole ([`plain_takes_line`],
//! [`full_needs_header`] and the checks in `plain::request`); everything
//! else, including anything malformed, goes to the full path, which
//! answers or refuses it.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::plain::request::RequestHead;

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
