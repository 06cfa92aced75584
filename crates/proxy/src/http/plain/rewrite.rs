//! The heads the plain path writes: the request as the upstream gets it
//! and the answer as the client gets it (by the rules of
//! `crate::request::forwarding`, on bytes in place), and the proxy's own
//! answers.

use super::date;
use super::request::RequestHead;
use super::response::ResponseHead;
use super::wire::Span;
use crate::request::forwarding::{believed, is_hop_by_hop, removed_by_connection};
use std::time::SystemTime;

/// What this hop adds to a request.
pub struct Hop<'a> {
    /// The client's address as text (IPv4-mapped shown as IPv4).
    pub client: &'a str,
    /// Whether that address is IPv6 (quoted in `Forwarded`).
    pub client_v6: bool,
    /// Whether the client's own `X-Forwarded-*` are believed.
    pub trusted: bool,
    /// The request's host, lowercase, without port.
    pub host: &'a str,
    /// Also set an RFC 7239 `Forwarded` header.
    pub rfc7239: bool,
    /// A path prefix to remove.
    pub strip: Option<&'a str>,
    /// This proxy's name in `Via`.
    pub via: &'a str,
    /// The scheme the request came in over (`http`, `https`).
    pub scheme: &'static str,
}

#[derive(PartialEq, Eq)]
enum Kind {
    HopByHop,
    ForwardedFor,
    ForwardedProto,
    ForwardedHost,
    Forwarded,
    Other,
}

fn kind(name: &[u8]) -> Kind {
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    match name.len() {
        9 if is(b"forwarded") => Kind::Forwarded,
        15 if is(b"x-forwarded-for") => Kind::ForwardedFor,
        16 if is(b"x-forwarded-host") => Kind::ForwardedHost,
        17 if is(b"x-forwarded-proto") => Kind::ForwardedProto,
        2 | 7 | 10 | 16..=18 if is_hop_by_hop(name) => Kind::HopByHop,
        _ => Kind::Other,
    }
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Copies the header lines in `list` that `keep` allows: runs of kept
/// lines as sent, in one copy each; a line not ending in CRLF is written
/// anew. `head_end` is where the head (and its final empty line) ends.
fn copy_kept<'b>(
    buf: &'b [u8],
    list: &[(Span, Span)],
    head_end: usize,
    out: &mut Vec<u8>,
    mut keep: impl FnMut(&'b [u8], &'b [u8]) -> bool,
) {
    let mut run: Option<usize> = None;
    for (i, (n, v)) in list.iter().enumerate() {
        let line_end = list.get(i + 1).map_or(head_end - 2, |next| next.0.start);
        let (name, value) = (n.of(buf), v.of(buf));
        let kept = keep(name, value);
        if kept && buf[..line_end].ends_with(b"\r\n") {
            run.get_or_insert(n.start);
            continue;
        }
        if let Some(start) = run.take() {
            out.extend_from_slice(&buf[start..n.start]);
        }
        if kept {
            header(out, name, value);
        }
    }
    if let Some(start) = run {
        out.extend_from_slice(&buf[start..head_end - 2]);
    }
}

/// The request line with the prefix to strip removed from the path.
fn request_line(buf: &[u8], req: &RequestHead, strip: Option<&str>, out: &mut Vec<u8>) {
    let target = req.target.of(buf);
    let split = target
        .iter()
        .position(|b| *b == b'?')
        .unwrap_or(target.len());
    let (path, query) = target.split_at(split);
    let path = match strip.and_then(|p| path.strip_prefix(p.as_bytes())) {
        Some(b"") => b"/",
        Some(rest) if rest.starts_with(b"/") => rest,
        _ => path,
    };
    out.extend_from_slice(req.method.of(buf));
    out.push(b' ');
    out.extend_from_slice(path);
    out.extend_from_slice(query);
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

/// Writes the request head for the upstream into `out` (cleared first).
pub fn upstream_request<'b>(buf: &'b [u8], req: &'b RequestHead, hop: &Hop, out: &mut Vec<u8>) {
    out.clear();
    request_line(buf, req, hop.strip, out);
    let connection: Vec<&[u8]> = req.connection.iter().map(|s| s.of(buf)).collect();
    let (mut xff, mut fwd, mut proto, mut host) = (None, None, false, false);
    copy_kept(buf, &req.headers, req.len, out, |name, value| {
        let k = kind(name);
        if k == Kind::HopByHop
            || (!connection.is_empty() && removed_by_connection(&connection, name))
        {
            return false;
        }
        match k {
            Kind::ForwardedFor => xff = xff.or(Some(value)),
            Kind::Forwarded if hop.rfc7239 => fwd = fwd.or(Some(value)),
            Kind::ForwardedProto | Kind::ForwardedHost if !hop.trusted => {}
            _ => {
                proto |= k == Kind::ForwardedProto;
                host |= k == Kind::ForwardedHost;
                return true;
            }
        }
        false
    });
    out.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prior) = believed(hop.trusted, xff) {
        out.extend_from_slice(prior);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(hop.client.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !proto {
        header(out, b"x-forwarded-proto", hop.scheme.as_bytes());
    }
    if !host {
        header(out, b"x-forwarded-host", hop.host.as_bytes());
    }
    if hop.rfc7239 {
        forwarded(out, believed(hop.trusted, fwd), hop);
    }
    out.extend_from_slice(b"via: 1.1 ");
    out.extend_from_slice(hop.via.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// An RFC 7239 `Forwarded` header for this hop, after `prior` elements.
fn forwarded(out: &mut Vec<u8>, prior: Option<&[u8]>, hop: &Hop) {
    out.extend_from_slice(b"forwarded: ");
    if let Some(prior) = prior {
        out.extend_from_slice(prior);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(b"for=");
    if hop.client_v6 {
        out.extend_from_slice(b"\"[");
        out.extend_from_slice(hop.client.as_bytes());
        out.extend_from_slice(b"]\"");
    } else {
        out.extend_from_slice(hop.client.as_bytes());
    }
    out.extend_from_slice(b";host=\"");
    out.extend(
        hop.host
            .bytes()
            .filter(|c| c.is_ascii_alphanumeric() || b".-:[]".contains(c)),
    );
    out.extend_from_slice(b"\";proto=");
    out.extend_from_slice(hop.scheme.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes the head of an upstream's answer for the client into `out`
/// (cleared first). With `chunk`, the body goes out chunked (and any
/// Content-Length is left out); with `close`, the connection closes after.
pub fn client_response(
    buf: &[u8],
    resp: &ResponseHead,
    chunk: bool,
    close: bool,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    let code = resp.status.min(999);
    out.extend_from_slice(&[
        b'0' + (code / 100) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(resp.reason.of(buf));
    out.extend_from_slice(b"\r\n");
    let connection: Vec<&[u8]> = resp.connection.iter().map(|s| s.of(buf)).collect();
    copy_kept(buf, &resp.headers, resp.len, out, |name, _| {
        !(kind(name) == Kind::HopByHop
            || (chunk && name.eq_ignore_ascii_case(b"content-length"))
            || (!connection.is_empty() && removed_by_connection(&connection, name)))
    });
    if !resp.dated {
        header(out, b"date", date::http_date(SystemTime::now()).as_bytes());
    }
    if chunk {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes an answer of the proxy's own (plain text) into `out`.
pub fn local_response(status: hyper::StatusCode, body: &str, close: bool, out: &mut Vec<u8>) {
    use std::io::Write;
    out.clear();
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ndate: {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{}\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        date::http_date(SystemTime::now()),
        body.len(),
        if close { "connection: close\r\n" } else { "" },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::dispatch::Parsed;

    fn hop<'a>(trusted: bool, strip: Option<&'a str>) -> Hop<'a> {
        Hop {
            client: "10.0.0.1",
            client_v6: false,
            trusted,
            host: "web.localhost",
            rfc7239: false,
            strip,
            via: "shoal-t",
            scheme: "http",
        }
    }

    fn rewritten(raw: &[u8], hop: &Hop) -> String {
        let mut head = RequestHead::default();
        assert_eq!(head.parse(raw, 4096), Parsed::Plain);
        let mut out = Vec::new();
        upstream_request(raw, &head, hop, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn upstream_heads() {
        let cases: [(&[u8], Hop, &str); 8] = [
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, Host, X-P\r\nX-P: 1\r\nContent-Length: 2\r\n\r\nhi",
                hop(false, None),
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\nx-forwarded-host: web.localhost\r\nvia: 1.1 shoal-t\r\n\r\n",
            ),
            (
                b"GET / HTTP/1.1\nHost: a\nX-A: 1\n\n",
                hop(false, None),
                "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\nx-forwarded-host: web.localhost\r\nvia: 1.1 shoal-t\r\n\r\n",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nX-A:  1\nX-B: 2\r\nKeep-Alive: 1\r\nX-C: 3\r\n\r\n",
                hop(false, None),
                "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\nx-forwarded-host: web.localhost\r\nvia: 1.1 shoal-t\r\n\r\n",
            ),
            (
                b"GET /x?q=1 HTTP/1.1\r\nHost: Web.localhost:8080\r\nAccept: */*\r\n\r\n",
                hop(false, None),
                "GET /x?q=1 HTTP/1.1\r\nHost: Web.localhost:8080\r\nAccept: */*\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\nx-forwarded-host: web.localhost\r\nvia: 1.1 shoal-t\r\n\r\n",
            ),
            (
                b"GET /api/users?x=1 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Private\r\nX-Private: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n\r\n",
                hop(false, Some("/api")),
                "GET /users?x=1 HTTP/1.1\r\nHost: a\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\nx-forwarded-host: web.localhost\r\nvia: 1.1 shoal-t\r\n\r\n",
            ),
            (
                b"GET /api HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\nX-Forwarded-Proto: https\r\n\r\n",
                hop(true, Some("/api")),
                "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\nx-forwarded-for: 1.2.3.4, 10.0.0.1\r\nx-forwarded-host: web.localhost\r\nvia: 1.1 shoal-t\r\n\r\n",
            ),
            (
                b"POST /apiary HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
                hop(false, Some("/api")),
                "POST /apiary HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\nx-forwarded-host: web.localhost\r\nvia: 1.1 shoal-t\r\n\r\n",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nForwarded: for=1.2.3.4\r\n\r\n",
                Hop { rfc7239: true, client: "::1", client_v6: true, ..hop(true, None) },
                "GET / HTTP/1.1\r\nHost: a\r\nx-forwarded-for: ::1\r\nx-forwarded-proto: http\r\nx-forwarded-host: web.localhost\r\nforwarded: for=1.2.3.4, for=\"[::1]\";host=\"web.localhost\";proto=http\r\nvia: 1.1 shoal-t\r\n\r\n",
            ),
        ];
        for (i, (raw, hop, want)) in cases.iter().enumerate() {
            assert_eq!(rewritten(raw, hop), *want, "case {i}");
        }
    }

    fn answered(raw: &[u8], chunk: bool, close: bool) -> String {
        let mut resp = ResponseHead::default();
        assert_eq!(resp.parse(raw, false), Ok(true));
        let mut out = Vec::new();
        client_response(raw, &resp, chunk, close, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn client_heads() {
        assert_eq!(
            answered(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: 2\r\nDate: d\r\n\r\n", false, false),
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Kept: 2\r\nDate: d\r\n\r\n"
        );
        assert_eq!(
            answered(b"HTTP/1.1 404 Not Found\r\nDate: d\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n", true, true),
            "HTTP/1.1 404 Not Found\r\nDate: d\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        let undated = answered(b"HTTP/1.1 204 No Content\r\n\r\n", false, false);
        assert!(
            undated.starts_with("HTTP/1.1 204 No Content\r\ndate: ")
                && undated.ends_with(" GMT\r\n\r\n"),
            "an undated answer is dated on the way: {undated}"
        );
        let mut out = Vec::new();
        local_response(hyper::StatusCode::BAD_GATEWAY, "no\n", false, &mut out);
        let out = String::from_utf8(out).unwrap();
        let (status, rest) = out.split_once("\r\ndate: ").unwrap();
        assert_eq!(status, "HTTP/1.1 502 Bad Gateway");
        assert!(
            rest.ends_with(
                " GMT\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 3\r\n\r\nno\n"
            ),
            "{out}"
        );
    }
}
