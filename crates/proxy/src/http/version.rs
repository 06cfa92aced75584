//! The HTTP version of a request line (RFC 9112 2.3, 2.5): the one rule
//! both HTTP/1 paths follow. HTTP/1.0 and HTTP/1.1 are served; any other
//! well-formed version (`HTTP/2.0`, `HTTP/1.2`, `HTTP/3.0`, `HTTP/0.9`,
//! or a version-less HTTP/0.9 request line) is answered 505; a version
//! that is not `HTTP/` DIGIT `.` DIGIT is a malformed request (400).

/// What is wrong with a request line's version.
#[derive(Debug, PartialEq, Eq)]
pub enum BadVersion {
    /// Well-formed but not served: 505.
    Unsupported(String),
    /// Not a version at all: 400.
    Malformed(String),
}

/// Checks the version of `line` (the request line, with or without its
/// line ending). `None` when it is HTTP/1.0 or HTTP/1.1, or when the line
/// is malformed in some other way (left to the head parser to say).
pub fn check(line: &[u8]) -> Option<BadVersion> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let parts = line.split(|b| *b == b' ').filter(|p| !p.is_empty()).count();
    let version = match line.iter().rposition(|b| *b == b' ') {
        Some(at) => &line[at + 1..],
        None => return None,
    };
    if version == b"HTTP/1.1" || version == b"HTTP/1.0" {
        return None;
    }
    let shown = String::from_utf8_lossy(version);
    if let [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] = version {
        if major.is_ascii_digit() && minor.is_ascii_digit() {
            return Some(BadVersion::Unsupported(format!(
                "{shown} (this proxy speaks HTTP/1.0 and HTTP/1.1)"
            )));
        }
    }
    if parts == 2 && version.starts_with(b"/") {
        return Some(BadVersion::Unsupported(
            "HTTP/0.9 (a request line without a version; this proxy speaks HTTP/1.0 and HTTP/1.1)"
                .into(),
        ));
    }
    if version.len() >= 4 && version[..4].eq_ignore_ascii_case(b"HTTP") {
        return Some(BadVersion::Malformed(format!(
            "invalid HTTP version {shown:?} (expected HTTP/1.0 or HTTP/1.1)"
        )));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        use BadVersion::*;
        let un = |s: &str| Some(Unsupported(s.into()));
        let cases: [(&[u8], Option<&str>); 18] = [
            (b"GET / HTTP/1.1\r\n", None),
            (b"GET / HTTP/1.0", None),
            (b"GET / HTTP/2.0\r\n", Some("505")),
            (b"GET / HTTP/1.2", Some("505")),
            (b"GET / HTTP/3.0\r\n", Some("505")),
            (b"GET / HTTP/0.9\r\n", Some("505")),
            (b"PRI * HTTP/2.0\r\n", Some("505")),
            (b"GET /\r\n", Some("505")),
            (b"GET /ok\n", Some("505")),
            (b"GET / HTTP/1.x\r\n", Some("400")),
            (b"GET / HTTPS/1.1\r\n", Some("400")),
            (b"GET / HTTP/2\r\n", Some("400")),
            (b"GET / HTTP/1.10\r\n", Some("400")),
            (b"GET / http/1.1\r\n", Some("400")),
            (b"GET / HTTP/11.1\r\n", Some("400")),
            // Left to the head parser: no version word at all.
            (b"GET / HTTP/1.1 \r\n", None),
            (b"GET\r\n", None),
            (b"GET / x\r\n", None),
        ];
        for (line, want) in cases {
            let got = check(line);
            let kind = match &got {
                None => None,
                Some(Unsupported(_)) => Some("505"),
                Some(Malformed(_)) => Some("400"),
            };
            assert_eq!(kind, want, "{:?}: {got:?}", String::from_utf8_lossy(line));
        }
        assert_eq!(
            check(b"GET / HTTP/2.0"),
            un("HTTP/2.0 (this proxy speaks HTTP/1.0 and HTTP/1.1)")
        );
    }
}
