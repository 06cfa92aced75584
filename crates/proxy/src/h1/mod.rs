//! The wire level of the lean HTTP/1.1 path: request and response heads
//! parsed in place (httparse) and kept as byte ranges into the connection's
//! buffer, the chunked-body framing, and the heads the proxy writes. No
//! I/O here; `crate::lean` drives it.

pub mod chunked;
pub mod date;
pub mod request;
pub mod response;
pub mod rewind;
pub mod rewrite;

/// A byte range of a buffer (a header name, a value, the target).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The span of `part`, a slice of `buf` (as httparse hands them out).
    pub fn within(buf: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - buf.as_ptr() as usize;
        Span {
            start,
            end: start + part.len(),
        }
    }

    /// The bytes of this span in `buf`.
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start..self.end]
    }
}

/// Headers as spans into the buffer that holds them.
#[derive(Clone, Copy)]
pub struct RawHeaders<'a> {
    /// The buffer.
    pub buf: &'a [u8],
    /// (name, value) spans.
    pub list: &'a [(Span, Span)],
}

impl<'a> RawHeaders<'a> {
    /// The (name, value) pairs.
    pub fn iter(self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        self.list
            .iter()
            .map(move |(n, v)| (n.of(self.buf), v.of(self.buf)))
    }

    /// Every value of header `name` (case-insensitive).
    pub fn values<'n>(self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
}

/// Headers that belong to one connection, never forwarded (RFC 9110
/// 7.6.1), as lowercase names.
const HOP_BY_HOP: [&[u8]; 8] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"proxy-authenticate",
];

/// Whether `name` is a hop-by-hop header.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// The comma-separated tokens of a header value, trimmed, empty ones left out.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// Whether `name` is listed in one of the `Connection` values.
pub fn listed_in(connection: &[&[u8]], name: &[u8]) -> bool {
    connection
        .iter()
        .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_names_and_connection_tokens() {
        assert!(is_hop_by_hop(b"Keep-Alive"));
        assert!(is_hop_by_hop(b"TRANSFER-ENCODING"));
        assert!(!is_hop_by_hop(b"x-kept"));
        let conn: [&[u8]; 2] = [b"close, X-Private", b" ,keep-alive"];
        assert!(listed_in(&conn, b"x-private"));
        assert!(listed_in(&conn, b"KEEP-ALIVE"));
        assert!(!listed_in(&conn, b"x-kept"));
        assert_eq!(tokens(b" a ,, b,").collect::<Vec<_>>(), [b"a", b"b"]);
    }
}
