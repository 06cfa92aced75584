//! Heads kept as byte ranges into the buffer that holds them, as the
//! plain path's parsers (httparse, in place) hand them out.

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
