//! What a request carries upstream, whatever the protocol: which headers
//! belong to one connection only (and which names a `Connection` header
//! may never remove), which Host it has, when a client's own
//! `X-Forwarded-*` values are believed, and the `Via` marker that shows a
//! request came round to this proxy again. The paths apply these to their
//! own representation (bytes in place, hyper's header map).

/// Headers that belong to one connection, never forwarded (RFC 9110
/// 7.6.1), lowercase.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
];

/// Whether `name` is a hop-by-hop header.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| h.as_bytes().eq_ignore_ascii_case(name))
}

/// Whether a name listed in `Connection` may be removed: never the
/// message's own framing or its Host (a client listing them would make
/// the upstream read the body as the next request, or lose the Host).
pub fn connection_may_remove(name: &[u8]) -> bool {
    !(name.eq_ignore_ascii_case(b"content-length")
        || name.eq_ignore_ascii_case(b"transfer-encoding")
        || name.eq_ignore_ascii_case(b"host"))
}

/// The comma-separated tokens of a header value, trimmed, empty ones left out.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// Whether `name` is listed in one of the `Connection` values and may be
/// removed for it.
pub fn removed_by_connection(connection: &[&[u8]], name: &[u8]) -> bool {
    connection_may_remove(name)
        && connection
            .iter()
            .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(name)))
}

/// The Host a request is routed by and forwarded with (RFC 9112 3.2):
/// exactly one Host header (none is allowed before HTTP/1.1); an
/// absolute-form target's authority wins over it, and one with userinfo
/// is refused (RFC 9110 4.2.4).
pub fn request_host<'a>(
    http11: bool,
    mut hosts: impl Iterator<Item = &'a [u8]>,
    authority: Option<&'a [u8]>,
) -> Result<Option<&'a [u8]>, String> {
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one Host header".into());
    }
    if let Some(h) = host.filter(|h| !valid_host(h)) {
        return Err(invalid_host(h));
    }
    // RFC 9112 3.2: an HTTP/1.1 request without Host is a 400, even with
    // an absolute-form target.
    if host.is_none() && http11 {
        return Err("an HTTP/1.1 request needs a Host header".into());
    }
    if let Some(authority) = authority {
        if authority.contains(&b'@') {
            return Err("userinfo in the request target is not allowed".into());
        }
        return Ok(Some(authority));
    }
    Ok(host)
}

/// The host an HTTP/2 request is routed by (RFC 9113 8.3.1): its
/// `:authority`; a Host header beside it must name the same, or the
/// request is malformed; with no `:authority`, the one Host header.
pub fn h2_request_host<'a>(
    mut hosts: impl Iterator<Item = &'a [u8]>,
    authority: Option<&'a [u8]>,
) -> Result<&'a [u8], String> {
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one Host header".into());
    }
    match (authority, host) {
        (Some(a), _) if a.contains(&b'@') => Err("userinfo in :authority is not allowed".into()),
        (Some(a), Some(h)) if !a.eq_ignore_ascii_case(h) => Err(format!(
            "Host {:?} differs from :authority {:?}",
            String::from_utf8_lossy(h),
            String::from_utf8_lossy(a)
        )),
        (Some(a), _) if valid_host(a) => Ok(a),
        (None, Some(h)) if valid_host(h) => Ok(h),
        (Some(h), _) | (None, Some(h)) => Err(invalid_host(h)),
        (None, None) => Err("an HTTP/2 request needs :authority or a Host header".into()),
    }
}

/// Whether a Host value is `uri-host [ ":" port ]` (RFC 9110 7.2, RFC
/// 3986 3.2.2): a registered name or an IP literal in brackets, no
/// userinfo, no spaces, path or control bytes. Empty is allowed (a target
/// without authority).
pub fn valid_host(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        match value.iter().position(|b| *b == b']') {
            Some(end) => (&value[1..end], &value[end + 1..]),
            None => return false,
        }
    } else {
        match value.iter().rposition(|b| *b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &b""[..]),
        }
    };
    let literal = value.first() == Some(&b'[');
    let host_ok = host.iter().all(|b| {
        b.is_ascii_alphanumeric()
            || b"-._~%".contains(b)
            || (literal && *b == b':')
            || (!literal && b"!$&'()*+,;=".contains(b))
    });
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    host_ok && port_ok && !(literal && host.is_empty())
}

/// The 400 reason for a Host value [`valid_host`] refuses.
pub fn invalid_host(value: &[u8]) -> String {
    format!("invalid Host header {:?}", String::from_utf8_lossy(value))
}

/// A client's own `X-Forwarded-*`/`Forwarded` value, if it is believed:
/// from a trusted peer, visible ASCII, not empty.
pub fn believed(trusted: bool, value: Option<&[u8]>) -> Option<&[u8]> {
    value.filter(|v| {
        trusted
            && !v.trim_ascii().is_empty()
            && v.iter().all(|b| *b == b'\t' || (b' '..=b'~').contains(b))
    })
}

/// Whether any `Via` value carries `marker` (this proxy's own): the
/// request went round and came back.
pub fn seen_before<'a>(mut via: impl Iterator<Item = &'a [u8]>, marker: &str) -> bool {
    via.any(|v| {
        tokens(v).any(|t| {
            t.split(|b| *b == b' ')
                .filter(|p| !p.is_empty())
                .nth(1)
                .is_some_and(|by| by == marker.as_bytes())
        })
    })
}

/// A Host value lowercase, without port and trailing dot.
pub fn normalize_host(raw: &str) -> String {
    let host = if raw.starts_with('[') {
        raw.split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default()
    } else {
        raw.split(':').next().unwrap_or("").to_string()
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_never_removes_framing_or_host() {
        let conn: [&[u8]; 2] = [b"close, X-Private, Content-Length", b" ,keep-alive, host"];
        let cases: [(&[u8], bool); 6] = [
            (b"x-private", true),
            (b"KEEP-ALIVE", true),
            (b"content-length", false),
            (b"Host", false),
            (b"transfer-encoding", false),
            (b"x-kept", false),
        ];
        for (name, removed) in cases {
            assert_eq!(removed_by_connection(&conn, name), removed, "{name:?}");
        }
        assert!(is_hop_by_hop(b"Keep-Alive") && !is_hop_by_hop(b"x-kept"));
        assert_eq!(tokens(b" a ,, b,").collect::<Vec<_>>(), [b"a", b"b"]);
    }

    #[test]
    fn host_rules() {
        type Case<'a> = (
            bool,
            &'a [&'a [u8]],
            Option<&'a [u8]>,
            Result<Option<&'a [u8]>, ()>,
        );
        let cases: [Case; 10] = [
            (true, &[b"a"], None, Ok(Some(b"a"))),
            (true, &[b"u@a"], None, Err(())),
            (true, &[b"a", b"a"], None, Err(())),
            (false, &[b"a", b"b"], None, Err(())),
            (true, &[], None, Err(())),
            (false, &[], None, Ok(None)),
            (
                true,
                &[b"rec.localhost"],
                Some(b"other.localhost"),
                Ok(Some(b"other.localhost")),
            ),
            (
                true,
                &[b"a"],
                Some(b"rec.localhost@other.localhost"),
                Err(()),
            ),
            (false, &[], Some(b"x:8080"), Ok(Some(b"x:8080"))),
            (true, &[], Some(b"x:8080"), Err(())),
        ];
        for (i, (http11, hosts, authority, want)) in cases.into_iter().enumerate() {
            let got = request_host(http11, hosts.iter().copied(), authority).map_err(|_| ());
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn h2_host_rules() {
        type Case<'a> = (&'a [&'a [u8]], Option<&'a [u8]>, Result<&'a [u8], ()>);
        let cases: [Case; 8] = [
            (&[], Some(b"web.localhost:8443"), Ok(b"web.localhost:8443")),
            (
                &[b"WEB.localhost"],
                Some(b"web.localhost"),
                Ok(b"web.localhost"),
            ),
            (&[b"web.localhost"], None, Ok(b"web.localhost")),
            (&[b"evil"], Some(b"web.localhost"), Err(())),
            (&[b"a", b"a"], Some(b"a"), Err(())),
            (&[], Some(b"u@web.localhost"), Err(())),
            (&[], Some(b"bad host"), Err(())),
            (&[], None, Err(())),
        ];
        for (i, (hosts, authority, want)) in cases.into_iter().enumerate() {
            let got = h2_request_host(hosts.iter().copied(), authority).map_err(|_| ());
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn host_values() {
        let cases: [(&[u8], bool); 16] = [
            (b"rec.localhost", true),
            (b"rec.localhost:8080", true),
            (b"Web-1.Example.COM.", true),
            (b"127.0.0.1:80", true),
            (b"[::1]:8080", true),
            (b"[fe80::1%25eth0]", true),
            (b"", true),
            (b"a@rec.localhost", false),
            (b"rec.localhost other", false),
            (b"rec.localhost/x", false),
            (b"rec.localhost:80:80", false),
            (b"rec.localhost:8o", false),
            (b"[::1", false),
            (b"[]", false),
            (b"a\x01b", false),
            (b"rec.localhost?x", false),
        ];
        for (value, want) in cases {
            assert_eq!(
                valid_host(value),
                want,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn via_marker() {
        let cases: [(&[&[u8]], bool); 5] = [
            (&[b"1.1 shoal-ab12"], true),
            (&[b"1.0 fred, 1.1 shoal-ab12 (shoal)"], true),
            (&[b"1.1 shoal-ab123"], false),
            (&[b"1.1 other"], false),
            (&[], false),
        ];
        for (via, want) in cases {
            assert_eq!(
                seen_before(via.iter().copied(), "shoal-ab12"),
                want,
                "{via:?}"
            );
        }
        assert_eq!(believed(true, Some(b"1.2.3.4")), Some(&b"1.2.3.4"[..]));
        assert_eq!(believed(false, Some(b"1.2.3.4")), None);
        assert_eq!(believed(true, Some(b" ")), None);
        assert_eq!(believed(true, Some(b"a\x01")), None);
    }
}
