//! The forwarding rules of `crate::request::forwarding` on hyper's header
//! map: hop-by-hop headers (and names listed in `Connection`, never the
//! framing or Host) are dropped, `X-Forwarded-*` and `Via` are set, and a
//! client's own `X-Forwarded-*` are believed only from trusted proxies.

use crate::request::forwarding::{believed, removed_by_connection, HOP_BY_HOP};
use hyper::header::{
    HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, UPGRADE,
};
use hyper::HeaderMap;
use std::net::IpAddr;

pub use crate::request::forwarding::normalize_host;
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = hyper::header::FORWARDED;

/// Removes hop-by-hop headers; with `upgrade`, keeps the upgrade itself
/// (`Connection: upgrade` + `Upgrade`), which must reach the other side.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let connection: Vec<&[u8]> = headers
        .get_all(CONNECTION)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let listed: Vec<HeaderName> = connection
        .iter()
        .flat_map(|v| crate::request::forwarding::tokens(v))
        .filter(|name| removed_by_connection(&connection, name))
        .filter_map(|name| HeaderName::from_bytes(name).ok())
        .collect();
    let upgrade_value = if upgrade {
        headers.get(UPGRADE).cloned()
    } else {
        None
    };
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if let (true, Some(value)) = (upgrade, upgrade_value) {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, value);
    }
}

/// Whether a request asks to switch protocols (WebSocket and the like).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Refuses ambiguous framing (request smuggling): Content-Length together
/// with Transfer-Encoding, or several differing Content-Length values.
pub fn check_framing(headers: &HeaderMap) -> Result<(), String> {
    if headers.contains_key(TRANSFER_ENCODING) && headers.contains_key(CONTENT_LENGTH) {
        return Err("both Content-Length and Transfer-Encoding are set".into());
    }
    let mut lengths = headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|v| v.trim_ascii());
    if let Some(first) = lengths.next() {
        if lengths.any(|v| v != first) {
            return Err("differing Content-Length values".into());
        }
    }
    Ok(())
}

/// Sets `X-Forwarded-For/Proto/Host` for a request from `client` that
/// came in over `scheme` (`http`, `https`); `trusted` says whether the
/// client's own values are kept (and extended).
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    trusted: bool,
    host: &str,
    scheme: &'static str,
) {
    let client = client.to_canonical();
    let prior = believed(trusted, headers.get(&X_FORWARDED_FOR).map(|v| v.as_bytes()));
    let xff = match prior.and_then(|p| std::str::from_utf8(p).ok()) {
        Some(prior) => format!("{prior}, {client}"),
        None => client.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        if let Ok(v) = HeaderValue::from_str(host) {
            headers.insert(X_FORWARDED_HOST, v);
        }
    }
}

/// Appends an RFC 7239 `Forwarded` element for this hop (after the
/// client's own elements only when `trusted`).
pub fn set_rfc7239(
    headers: &mut HeaderMap,
    client: IpAddr,
    trusted: bool,
    host: &str,
    scheme: &str,
) {
    let client = client.to_canonical();
    let node = match client {
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
        v4 => v4.to_string(),
    };
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(*c))
        .collect();
    let element = format!("for={node};host=\"{host}\";proto={scheme}");
    let prior = believed(trusted, headers.get(&FORWARDED).map(|v| v.as_bytes()));
    let value = match prior.and_then(|p| std::str::from_utf8(p).ok()) {
        Some(prior) => format!("{prior}, {element}"),
        None => element,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(FORWARDED, v);
    }
}

/// The request's host, lowercase and without port, from the absolute URI
/// or the Host header.
pub fn request_host(uri: &hyper::Uri, headers: &HeaderMap) -> String {
    let raw = uri
        .authority()
        .map(|a| a.host().to_string())
        .or_else(|| {
            headers
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    normalize_host(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_listed_names_go() {
        let mut h = map(&[
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
            ("te", "trailers"),
            ("x-keep", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
        let mut up = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&up));
        strip_hop_by_hop(&mut up, true);
        assert_eq!(up.get("upgrade").unwrap(), "websocket");
        assert_eq!(up.get("connection").unwrap(), "upgrade");
    }

    #[test]
    fn framing_rules() {
        let cases = [
            (vec![("content-length", "5")], true),
            (vec![("transfer-encoding", "chunked")], true),
            (
                vec![("content-length", "5"), ("transfer-encoding", "chunked")],
                false,
            ),
            (
                vec![("content-length", "5"), ("content-length", "6")],
                false,
            ),
            (vec![("content-length", "5"), ("content-length", "5")], true),
            (vec![("content-length", "5, 6")], false),
        ];
        for (pairs, ok) in cases {
            assert_eq!(check_framing(&map(&pairs)).is_ok(), ok, "{pairs:?}");
        }
    }

    #[test]
    fn forwarded_headers_trust_only_trusted_peers() {
        let client: IpAddr = "10.1.1.1".parse().unwrap();
        let mut forged = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ]);
        set_forwarded(&mut forged, client, false, "web.localhost", "http");
        assert_eq!(forged.get("x-forwarded-for").unwrap(), "10.1.1.1");
        assert_eq!(forged.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(forged.get("x-forwarded-host").unwrap(), "web.localhost");
        let mut chained = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        set_forwarded(&mut chained, client, true, "web.localhost", "http");
        assert_eq!(chained.get("x-forwarded-for").unwrap(), "1.2.3.4, 10.1.1.1");
        assert_eq!(chained.get("x-forwarded-proto").unwrap(), "https");
    }

    #[test]
    fn rfc7239_forwarded() {
        let mut h = map(&[("forwarded", "for=6.6.6.6")]);
        set_rfc7239(
            &mut h,
            "10.0.0.1".parse().unwrap(),
            false,
            "web.localhost",
            "http",
        );
        assert_eq!(
            h.get("forwarded").unwrap(),
            "for=10.0.0.1;host=\"web.localhost\";proto=http"
        );
        let mut h = map(&[("forwarded", "for=1.2.3.4")]);
        set_rfc7239(&mut h, "::1".parse().unwrap(), true, "a", "http");
        assert_eq!(
            h.get("forwarded").unwrap(),
            "for=1.2.3.4, for=\"[::1]\";host=\"a\";proto=http"
        );
    }

    #[test]
    fn host_without_port() {
        let cases = [
            ("/", "Web.Localhost:8080", "web.localhost"),
            ("/", "[::1]:8080", "[::1]"),
            ("http://api.localhost:9/x", "ignored", "api.localhost"),
            ("/", "example.com.", "example.com"),
        ];
        for (uri, host, want) in cases {
            let h = map(&[("host", host)]);
            assert_eq!(request_host(&uri.parse().unwrap(), &h), want);
        }
    }
}
