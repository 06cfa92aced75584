//! The server name a TLS client asks for (SNI), read from its first
//! bytes without terminating TLS, so a connection can be passed whole to
//! the instance that holds the certificate (fabio's `tcp+sni`).
//!
//! Only what routing needs is read: the record header, the ClientHello
//! up to its extensions, and the `server_name` extension (RFC 6066 §3).
//! Every length is checked against what is there; a ClientHello that does
//! not fit in the first record (larger than [`MAX_HELLO`]) is refused.

/// Most bytes read before the name must be known: one TLS record
/// (16 KiB of payload) and its header.
pub const MAX_HELLO: usize = 5 + 16 * 1024;

/// What the first bytes of a connection say.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// Not all of the first record is here yet.
    Incomplete,
    /// A ClientHello naming this host (lowercase).
    Name(String),
    /// A ClientHello without a host name.
    NoName,
    /// Not a TLS ClientHello (or a malformed one).
    NotTls(&'static str),
}

/// A cursor over `buf` that fails instead of reading past its end.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| b[0] as usize)
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| ((b[0] as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize)
    }
    /// A vector with a `len`-byte length prefix.
    fn vec(&mut self, len: usize) -> Option<Reader<'a>> {
        let n = match len {
            1 => self.u8()?,
            2 => self.u16()?,
            _ => self.u24()?,
        };
        self.take(n).map(|buf| Reader { buf })
    }
}

/// Reads the server name from the start of a connection (`buf`: what has
/// arrived so far).
pub fn client_hello(buf: &[u8]) -> Hello {
    if buf.is_empty() {
        return Hello::Incomplete;
    }
    if buf[0] != 0x16 {
        return Hello::NotTls("not a TLS handshake record");
    }
    if buf.len() < 5 {
        return Hello::Incomplete;
    }
    if buf[1] != 3 {
        return Hello::NotTls("not a TLS record version");
    }
    let len = u16::from_be_bytes([buf[3], buf[4]]) as usize;
    if len == 0 || 5 + len > MAX_HELLO {
        return Hello::NotTls("a TLS record of an impossible length");
    }
    let Some(record) = buf.get(5..5 + len) else {
        return Hello::Incomplete;
    };
    parse_hello(record).unwrap_or(Hello::NotTls("a malformed ClientHello"))
}

fn parse_hello(record: &[u8]) -> Option<Hello> {
    let mut r = Reader { buf: record };
    if r.u8()? != 1 {
        return Some(Hello::NotTls("the first handshake is not a ClientHello"));
    }
    let len = r.u24()?;
    let Some(body) = r.take(len) else {
        return Some(Hello::NotTls("a ClientHello larger than one record"));
    };
    let mut h = Reader { buf: body };
    h.take(2 + 32)?; // version, random
    h.vec(1)?; // session id
    h.vec(2)?; // cipher suites
    h.vec(1)?; // compression methods
    if h.buf.is_empty() {
        return Some(Hello::NoName);
    }
    let mut exts = h.vec(2)?;
    while !exts.buf.is_empty() {
        let kind = exts.u16()?;
        let mut data = exts.vec(2)?;
        if kind != 0 {
            continue;
        }
        let mut names = data.vec(2)?;
        while !names.buf.is_empty() {
            let name_type = names.u8()?;
            let name = names.vec(2)?.buf;
            if name_type == 0 {
                let name = std::str::from_utf8(name).ok()?;
                let valid = !name.is_empty()
                    && name.len() <= 253
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
                if !valid {
                    return Some(Hello::NotTls("a server name that is not a host name"));
                }
                return Some(Hello::Name(name.to_ascii_lowercase()));
            }
        }
        return Some(Hello::NoName);
    }
    Some(Hello::NoName)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A ClientHello record with `name` in its SNI (none: no SNI) and an
    /// unrelated extension before it.
    fn hello(name: Option<&str>) -> Vec<u8> {
        let mut exts = vec![0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]; // ec_point_formats
        if let Some(n) = name {
            let n = n.as_bytes();
            let entry_len = 3 + n.len();
            exts.extend([0x00, 0x00]);
            exts.extend(((entry_len + 2) as u16).to_be_bytes());
            exts.extend((entry_len as u16).to_be_bytes());
            exts.push(0);
            exts.extend((n.len() as u16).to_be_bytes());
            exts.extend(n);
        }
        let mut body = vec![0x03, 0x03];
        body.extend([7u8; 32]);
        body.extend([0]); // no session id
        body.extend([0x00, 0x02, 0x13, 0x01]); // one cipher suite
        body.extend([0x01, 0x00]); // null compression
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut hs = vec![0x01];
        hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    #[test]
    fn names_are_read_and_the_rest_refused() {
        let full = hello(Some("Web.Example.com"));
        assert_eq!(client_hello(&full), Hello::Name("web.example.com".into()));
        assert_eq!(client_hello(&hello(None)), Hello::NoName);
        // Any prefix is incomplete, never wrong.
        for cut in 0..full.len() {
            assert_eq!(
                client_hello(&full[..cut]),
                Hello::Incomplete,
                "cut at {cut}"
            );
        }
        // (bytes, why)
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"GET / HTTP/1.1\r\n".to_vec(), "not a TLS handshake"),
            (
                vec![0x16, 0x02, 0x00, 0x00, 0x01, 0x01],
                "not a TLS record version",
            ),
            (vec![0x16, 0x03, 0x01, 0xff, 0xff], "impossible length"),
            (
                vec![0x16, 0x03, 0x01, 0x00, 0x01, 0x02],
                "not a ClientHello",
            ),
            (hello(Some("bad name!")), "not a host name"),
        ];
        for (bytes, why) in cases {
            match client_hello(&bytes) {
                Hello::NotTls(w) => assert!(w.contains(why), "{w} should say {why}"),
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
        // A ClientHello whose length runs past its record.
        let mut long = hello(Some("a.b"));
        long[6..9].copy_from_slice(&[0x00, 0xff, 0xff]);
        assert!(matches!(client_hello(&long), Hello::NotTls(_)));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = client_hello(&bytes);
        }

        #[test]
        fn corrupted_hellos_never_panic(at in 0usize..80, byte in any::<u8>()) {
            let mut h = hello(Some("web.localhost"));
            let i = at % h.len();
            h[i] = byte;
            let _ = client_hello(&h);
        }
    }
}
