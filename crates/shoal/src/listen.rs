//! Listen addresses as a user types them (`127.0.0.1:8500`,
//! `localhost:8500`, `[::1]:0`, `0.0.0.0:8080`) and binding them: the one
//! place every listen flag (`--http-addr`, `--dns-addr`, `--listen`,
//! `--stats-addr`, `--route`, hello's `--addr`) goes through.
//!
//! A host name is resolved once at start and every address it names is
//! bound (`localhost`: 127.0.0.1 and ::1 where the system has both), on
//! one port: with port 0 the first address picks it and the others follow.

use anyhow::Context;
use std::fmt;
use std::future::Future;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;

/// What a listen flag accepts, for its error messages.
const EXPECTED: &str =
    "want HOST:PORT with an IP address or a host name, e.g. 127.0.0.1:8500, localhost:8500, [::1]:8500, 0.0.0.0:0";

/// How often binding a name's addresses on one port-0 port is tried
/// before giving up (another process may take the port in between).
const PORT_ZERO_ATTEMPTS: usize = 8;

/// A listen address: an IP address or a host name, and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAddr {
    host: Host,
    port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// Whether `s` is a DNS host name (RFC 1123 labels; a trailing dot is fine).
fn is_host_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl ListenAddr {
    /// An address with an IP and a port.
    pub fn ip(ip: IpAddr, port: u16) -> Self {
        ListenAddr {
            host: Host::Ip(ip),
            port,
        }
    }

    /// Parses `host` (IP address or host name, IPv6 with or without
    /// brackets) with a separate port, as `shoal hello --addr --port` has.
    pub fn with_port(host: &str, port: u16) -> Result<Self, String> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(ListenAddr::ip(ip, port));
        }
        if !is_host_name(host) {
            return Err(format!("{host:?} is neither an IP address nor a host name"));
        }
        Ok(ListenAddr {
            host: Host::Name(host.to_ascii_lowercase()),
            port,
        })
    }

    /// Every address this names, IPv4 first, without repeats.
    pub fn resolve(&self) -> Result<Vec<SocketAddr>, String> {
        let name = match &self.host {
            Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, self.port)]),
            Host::Name(name) => name,
        };
        let found = (name.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {name:?}: {e}"))?;
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for a in found {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        addrs.sort_by_key(|a| a.is_ipv6());
        if addrs.is_empty() {
            return Err(format!("{name:?} resolves to no address"));
        }
        Ok(addrs)
    }

    /// The host name, when one was given instead of an IP address.
    pub fn name(&self) -> Option<&str> {
        match &self.host {
            Host::Name(name) => Some(name),
            Host::Ip(_) => None,
        }
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(ListenAddr::ip(addr.ip(), addr.port()));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} has no port ({EXPECTED})"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{port:?} in {s:?} is not a port 0-65535 ({EXPECTED})"))?;
        if host.contains(':') && !host.starts_with('[') {
            return Err(format!(
                "{s:?}: an IPv6 address needs brackets ({EXPECTED})"
            ));
        }
        ListenAddr::with_port(host, port).map_err(|e| format!("{e} ({EXPECTED})"))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(ip) => SocketAddr::new(*ip, self.port).fmt(f),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

/// One bound socket (or pair) and the address it got.
pub struct Bound<T> {
    pub addr: SocketAddr,
    pub socket: T,
}

/// A listen flag's default: `port` on 127.0.0.1 on a host, on 0.0.0.0 in
/// a container (see [`crate::container`]), so a containerized role is
/// reachable through its published ports and networks.
pub fn default_at(port: u16) -> ListenAddr {
    ListenAddr::ip(crate::container::default_listen_ip(), port)
}

/// The addresses that were bound.
pub fn addrs<T>(bound: &[Bound<T>]) -> Vec<SocketAddr> {
    bound.iter().map(|b| b.addr).collect()
}

/// Addresses as one comma-separated string, for logs.
pub fn list(addrs: &[SocketAddr]) -> String {
    let all: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    all.join(", ")
}

/// Binds every address `addr` names with `bind`; `what` says what for in
/// errors. An address the system cannot assign (`::1` without IPv6) is
/// skipped with a warning as long as another one was bound.
pub async fn bind_all<T, F, Fut, E>(
    addr: &ListenAddr,
    what: &str,
    bind: F,
    local: fn(&T) -> std::io::Result<SocketAddr>,
) -> anyhow::Result<Vec<Bound<T>>>
where
    F: Fn(SocketAddr) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<anyhow::Error>,
{
    let targets = addr
        .resolve()
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for {what}: {e}"))?;
    let attempts = if addr.port == 0 && targets.len() > 1 {
        PORT_ZERO_ATTEMPTS
    } else {
        1
    };
    let mut last = None;
    for _ in 0..attempts {
        match bind_once(&targets, &bind, local).await {
            Ok(bound) => {
                if let Some(name) = addr.name() {
                    let bound = list(&addrs(&bound));
                    tracing::info!(%addr, %bound, "{what}: {name} resolved");
                }
                return Ok(bound);
            }
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| anyhow::anyhow!("nothing to bind"));
    Err(e.context(match addr.name() {
        Some(_) => format!("cannot listen on {addr} ({}) for {what}", list(&targets)),
        None => format!("cannot listen on {addr} for {what}"),
    }))
}

/// One try at binding `targets` on one port (the first one's, for port 0).
async fn bind_once<T, F, Fut, E>(
    targets: &[SocketAddr],
    bind: &F,
    local: fn(&T) -> std::io::Result<SocketAddr>,
) -> anyhow::Result<Vec<Bound<T>>>
where
    F: Fn(SocketAddr) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<anyhow::Error>,
{
    let mut bound: Vec<Bound<T>> = Vec::new();
    let mut port = targets.first().map_or(0, SocketAddr::port);
    for target in targets {
        let target = SocketAddr::new(target.ip(), port);
        match bind(target).await.map_err(Into::into) {
            Ok(socket) => {
                let addr = local(&socket).with_context(|| format!("{target} has no address"))?;
                port = addr.port();
                bound.push(Bound { addr, socket });
            }
            Err(e) if !bound.is_empty() && unassignable(&e) => {
                tracing::warn!(%target, error = %e, "skipping an address this host cannot listen on");
            }
            Err(e) => return Err(e.context(format!("cannot bind {target}"))),
        }
    }
    Ok(bound)
}

/// Whether an error says the address does not exist here (not "in use").
fn unassignable(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| {
            matches!(
                io.kind(),
                ErrorKind::AddrNotAvailable | ErrorKind::Unsupported
            ) || io.raw_os_error() == Some(97) // EAFNOSUPPORT
        })
}

/// Binds TCP listeners on every address `addr` names, each with a large
/// listen backlog (`shoal_proxy::BACKLOG`, as the proxy's own): with the
/// default of 128 a burst of connects waits for the kernel's SYN retries.
pub async fn bind_tcp(
    addr: &ListenAddr,
    what: &str,
) -> anyhow::Result<Vec<Bound<tokio::net::TcpListener>>> {
    let bound = bind_all(addr, what, tokio::net::TcpListener::bind, |l| {
        l.local_addr()
    })
    .await?;
    for b in &bound {
        shoal_proxy::raise_backlog(&b.socket);
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A burst of connects nobody accepts yet fits in the backlog of every
    /// TCP listener bound here (the API's, the agent's, hello's); with the
    /// default of 128 the rest wait for SYN retries.
    #[tokio::test]
    async fn bound_listeners_take_a_burst_of_connects() {
        let bound = bind_tcp(&"127.0.0.1:0".parse().unwrap(), "a test")
            .await
            .unwrap();
        let addr = bound[0].addr;
        let mut held = Vec::new();
        for i in 0..600 {
            let connect = tokio::net::TcpStream::connect(addr);
            let stream = tokio::time::timeout(std::time::Duration::from_secs(5), connect)
                .await
                .unwrap_or_else(|_| panic!("connect {i} waited for the backlog"))
                .unwrap();
            held.push(stream);
        }
    }

    #[test]
    fn listen_addresses_parse_as_typed() {
        let v4 = |a, b, c, d, port| ListenAddr::ip(Ipv4Addr::new(a, b, c, d).into(), port);
        let name = |n: &str, port| ListenAddr {
            host: Host::Name(n.into()),
            port,
        };
        let cases = [
            ("127.0.0.1:8500", Ok(v4(127, 0, 0, 1, 8500))),
            ("0.0.0.0:0", Ok(v4(0, 0, 0, 0, 0))),
            (
                "[::1]:8500",
                Ok(ListenAddr::ip(Ipv6Addr::LOCALHOST.into(), 8500)),
            ),
            ("localhost:8500", Ok(name("localhost", 8500))),
            ("LocalHost:1", Ok(name("localhost", 1))),
            ("my-host.example.:80", Ok(name("my-host.example.", 80))),
            ("localhost", Err("has no port")),
            ("localhost:", Err("is not a port")),
            ("localhost:65536", Err("is not a port")),
            (":8500", Err("neither an IP address nor a host name")),
            ("::1:8500", Err("needs brackets")),
            ("bad host:80", Err("neither")),
            ("-bad:80", Err("neither")),
            ("a..b:80", Err("neither")),
            ("nowhere", Err("has no port")),
        ];
        for (input, want) in cases {
            match (input.parse::<ListenAddr>(), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{input}"),
                (Err(e), Err(part)) => {
                    assert!(e.contains(part), "{input}: {e}");
                    assert!(e.contains("e.g. 127.0.0.1:8500"), "{input}: {e}");
                }
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn localhost_resolves_to_loopback_ips_first_v4() {
        let addrs = "localhost:0"
            .parse::<ListenAddr>()
            .unwrap()
            .resolve()
            .unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        assert!(addrs[0].is_ipv4() || addrs.iter().all(SocketAddr::is_ipv6));
        let ip = "127.0.0.1:7"
            .parse::<ListenAddr>()
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(ip, vec!["127.0.0.1:7".parse().unwrap()]);
    }

    #[tokio::test]
    async fn every_address_of_a_name_is_bound_on_one_port() {
        let bound = bind_tcp(&"localhost:0".parse().unwrap(), "a test")
            .await
            .unwrap();
        let port = bound[0].addr.port();
        assert_ne!(port, 0);
        assert!(bound.iter().all(|b| b.addr.port() == port));
        // The port is taken now: binding it again says so, naming the address.
        let again = format!("localhost:{port}").parse().unwrap();
        let err = bind_tcp(&again, "a test").await.err().unwrap();
        let msg = format!("{err:#}");
        assert!(
            msg.contains(&format!("cannot listen on localhost:{port}")),
            "{msg}"
        );
        assert!(msg.contains("127.0.0.1"), "{msg}");
    }

    proptest! {
        // proptest's default: 256 cases, or $PROPTEST_CASES (bench/fuzz.sh).
        /// Any text: an answer, never a panic; whatever parses prints back
        /// to a value that parses to the same address.
        #[test]
        fn fuzz_listen_addr(s in "\\PC{0,40}|[0-9a-zA-Z.\\-:\\[\\]]{1,30}") {
            if let Ok(a) = s.parse::<ListenAddr>() {
                let again: ListenAddr = a.to_string().parse().unwrap();
                prop_assert_eq!(again, a);
            }
        }
    }
}
