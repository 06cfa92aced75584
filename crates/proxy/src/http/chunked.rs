//! The framing of a chunked body (RFC 9112 7.1), followed byte by byte so
//! the proxy knows where a chunked body ends: an upstream's answer on the
//! plain path, a client's request in front of hyper on the full path (one
//! grammar for both directions). The bytes are passed on as they came
//! once checked; anything off the grammar (bare LF,
//! bad hex, an oversized size, control bytes in an extension, overlong
//! extensions or trailers) is an error and the relay stops (for a request: a 400, the client's fault).

/// Longest chunk extension accepted.
const MAX_EXT: usize = 4096;
/// Most trailer-section bytes accepted.
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// Where a chunked body stands.
#[derive(Debug)]
pub struct Chunked {
    state: State,
    /// The chunk size being read, then the data bytes left in the chunk.
    size: u64,
    /// Hex digits read of this size line.
    digits: u8,
    /// Extension bytes of this line, or trailer bytes so far.
    extra: usize,
}

/// The body is not valid chunked framing.
#[derive(Debug, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size,
            size: 0,
            digits: 0,
            extra: 0,
        }
    }
}

impl Chunked {
    /// Whether the last chunk and the trailer section were seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Follows `input`; returns how many bytes of it belong to the body
    /// (all of it unless the body ended inside it).
    pub fn advance(&mut self, input: &[u8]) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            if self.state == State::Data {
                let n = self.size.min((input.len() - i) as u64);
                self.size -= n;
                i += n as usize;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            self.step(input[i])?;
            i += 1;
        }
        Ok(i)
    }

    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        self.state = match (self.state, b) {
            (State::Size, b) if b.is_ascii_hexdigit() => {
                if self.digits == 16 {
                    return Err(ChunkError("chunk size too large"));
                }
                self.digits += 1;
                self.size = self.size << 4 | u64::from(hex(b));
                State::Size
            }
            (State::Size, b';' | b' ' | b'\t') if self.digits > 0 => {
                self.extra = 0;
                State::Ext
            }
            (State::Size, b'\r') if self.digits > 0 => State::SizeLf,
            (State::Ext, b'\r') => State::SizeLf,
            (State::Ext, b) if b == b'\t' || (b' '..=b'~').contains(&b) => {
                self.extra += 1;
                if self.extra > MAX_EXT {
                    return Err(ChunkError("chunk extension too long"));
                }
                State::Ext
            }
            (State::SizeLf, b'\n') => {
                self.digits = 0;
                self.extra = 0;
                if self.size == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                }
            }
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size,
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerStart | State::Trailer, b) if b != b'\n' && b != b'\r' && b != 0 => {
                self.extra += 1;
                if self.extra > MAX_TRAILERS {
                    return Err(ChunkError("trailer section too long"));
                }
                State::Trailer
            }
            (State::Trailer, b'\r') => State::TrailerLf,
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::EndLf, b'\n') => State::Done,
            _ => return Err(ChunkError("invalid chunked framing")),
        };
        Ok(())
    }
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in pieces of `piece` bytes: the body's length, or the error.
    fn follow(body: &[u8], piece: usize) -> Result<usize, ChunkError> {
        let mut c = Chunked::default();
        let mut used = 0;
        for part in body.chunks(piece) {
            used += c.advance(part)?;
            if c.is_done() {
                return Ok(used);
            }
        }
        Err(ChunkError("incomplete"))
    }

    #[test]
    fn finds_the_end_of_chunked_bodies() {
        let cases: [(&[u8], Result<usize, &str>); 14] = [
            (b"0\r\n\r\n", Ok(5)),
            (b"5\r\nhello\r\n0\r\n\r\nGET /next", Ok(15)),
            (b"5;name=value;x=\"q s\"\r\nhello\r\n0;last\r\n\r\n", Ok(39)),
            (b"A\r\n0123456789\r\n000\r\n\r\n", Ok(22)),
            (
                b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\nrest",
                Ok(39),
            ),
            (b"ff\r\n", Err("incomplete")),
            (b"5\r\nhello\r\n", Err("incomplete")),
            (b"5\nhello\r\n0\r\n\r\n", Err("invalid chunked framing")),
            (b"5\r\nhello\n0\r\n\r\n", Err("invalid chunked framing")),
            (b"5\r\nhelloX\r\n0\r\n\r\n", Err("invalid chunked framing")),
            (b"g\r\n", Err("invalid chunked framing")),
            (b"\r\n", Err("invalid chunked framing")),
            (b"11111111111111111\r\n", Err("chunk size too large")),
            (
                b"1;a\x01b\r\nx\r\n0\r\n\r\n",
                Err("invalid chunked framing"),
            ),
        ];
        for (i, (body, want)) in cases.iter().enumerate() {
            for piece in [1, 2, 3, 7, 1000] {
                assert_eq!(
                    follow(body, piece).map_err(|e| e.0),
                    *want,
                    "case {i} in pieces of {piece}"
                );
            }
        }
    }

    #[test]
    fn big_chunks_are_skipped_not_stepped() {
        let mut body = b"100000\r\n".to_vec();
        body.extend(std::iter::repeat_n(b'x', 0x100000));
        body.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(follow(&body, 65536), Ok(body.len()));
    }
}
