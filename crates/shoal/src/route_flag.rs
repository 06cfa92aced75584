//! The `--route ADDR=SERVICE[/KIND]` flag: a listener that sends
//! everything to one service, over HTTP (the default) or plain TCP; or
//! `ADDR=*/sni`, TLS passed through to the service each connection's
//! server name routes to.

use crate::listen::ListenAddr;
use std::fmt;
use std::str::FromStr;

/// What a route carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    Http,
    Tcp,
    Sni,
}

impl RouteKind {
    /// Every kind, as typed after the `/`.
    const ALL: [(&'static str, RouteKind); 3] = [
        ("http", RouteKind::Http),
        ("tcp", RouteKind::Tcp),
        ("sni", RouteKind::Sni),
    ];

    pub fn name(self) -> &'static str {
        match self {
            RouteKind::Http => "http",
            RouteKind::Tcp => "tcp",
            RouteKind::Sni => "sni",
        }
    }
}

/// One `--route` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteFlag {
    pub listen: ListenAddr,
    pub service: String,
    pub kind: RouteKind,
}

const USAGE: &str = "want ADDR=SERVICE, ADDR=SERVICE/http, ADDR=SERVICE/tcp or ADDR=*/sni, \
     e.g. 127.0.0.1:6380=redis/tcp";

impl FromStr for RouteFlag {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: String| format!("invalid route {s:?}: {why} ({USAGE})");
        let (addr, target) = s
            .split_once('=')
            .ok_or_else(|| bad("no `=` between the address and the service".into()))?;
        let listen = addr.parse::<ListenAddr>().map_err(&bad)?;
        let (service, kind) = match target.split_once('/') {
            None => (target, RouteKind::Http),
            Some((service, kind)) => {
                let kind = RouteKind::ALL
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(kind))
                    .map(|(_, k)| *k)
                    .ok_or_else(|| {
                        let names: Vec<&str> = RouteKind::ALL.iter().map(|(n, _)| *n).collect();
                        bad(format!(
                            "unknown kind {kind:?} (accepted kinds: {})",
                            names.join(", ")
                        ))
                    })?;
                (service, kind)
            }
        };
        if service.is_empty() {
            return Err(bad("no service name".into()));
        }
        match (kind, service) {
            (RouteKind::Sni, "*") => {}
            (RouteKind::Sni, _) => return Err(bad(
                "an sni route sends each connection to the service its server name names: write *"
                    .into(),
            )),
            (_, "*") => return Err(bad("`*` names a service only in an sni route".into())),
            _ => {}
        }
        if let Some(c) = service
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == '=')
        {
            return Err(bad(format!("{c:?} in service name {service:?}")));
        }
        Ok(RouteFlag {
            listen,
            service: service.to_string(),
            kind,
        })
    }
}

impl fmt::Display for RouteFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}/{}", self.listen, self.service, self.kind.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn route(addr: &str, service: &str, kind: RouteKind) -> RouteFlag {
        RouteFlag {
            listen: addr.parse().unwrap(),
            service: service.into(),
            kind,
        }
    }

    #[test]
    fn routes_parse_and_unknown_kinds_are_refused() {
        use RouteKind::{Http, Sni, Tcp};
        let cases: [(&str, Result<RouteFlag, &str>); 15] = [
            (
                "127.0.0.1:81=graphite",
                Ok(route("127.0.0.1:81", "graphite", Http)),
            ),
            (
                "127.0.0.1:81=graphite/http",
                Ok(route("127.0.0.1:81", "graphite", Http)),
            ),
            (
                "127.0.0.1:6379=redis/tcp",
                Ok(route("127.0.0.1:6379", "redis", Tcp)),
            ),
            (
                "localhost:0=redis/TCP",
                Ok(route("localhost:0", "redis", Tcp)),
            ),
            ("[::1]:0=web", Ok(route("[::1]:0", "web", Http))),
            (
                "127.0.0.1:81=web/udp",
                Err("unknown kind \"udp\" (accepted kinds: http, tcp, sni)"),
            ),
            ("127.0.0.1:0=*/sni", Ok(route("127.0.0.1:0", "*", Sni))),
            (
                "127.0.0.1:0=web/sni",
                Err("an sni route sends each connection"),
            ),
            (
                "127.0.0.1:0=*/tcp",
                Err("`*` names a service only in an sni route"),
            ),
            ("127.0.0.1:81=web/", Err("unknown kind \"\"")),
            ("127.0.0.1:81=web/tcp/x", Err("unknown kind \"tcp/x\"")),
            ("127.0.0.1:81=", Err("no service name")),
            ("127.0.0.1:81=/tcp", Err("no service name")),
            ("127.0.0.1:81", Err("no `=`")),
            ("nowhere=web", Err("has no port")),
        ];
        for (input, want) in cases {
            match (input.parse::<RouteFlag>(), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{input}"),
                (Err(e), Err(part)) => {
                    assert!(e.contains(part), "{input}: {e}");
                    assert!(e.contains("ADDR=SERVICE/tcp"), "{input}: {e}");
                }
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
        assert!("127.0.0.1:1=a b".parse::<RouteFlag>().is_err());
        assert!("127.0.0.1:1=a=b".parse::<RouteFlag>().is_err());
    }

    proptest! {
        // proptest's default: 256 cases, or $PROPTEST_CASES (bench/fuzz.sh).
        /// Any text: an answer, never a panic; whatever parses prints back
        /// to a value that parses to the same route.
        #[test]
        fn fuzz_route_flag(s in "\\PC{0,40}|[0-9a-z.:\\[\\]]{1,20}=[a-z/]{0,12}") {
            if let Ok(r) = s.parse::<RouteFlag>() {
                let again: RouteFlag = r.to_string().parse().unwrap();
                prop_assert_eq!(again, r);
            }
        }
    }
}
