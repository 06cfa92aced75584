//! The proxy's configuration: what the binary composes from flags.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

/// How long in-flight requests get to finish at shutdown.
pub const DRAIN: Duration = Duration::from_secs(5);

/// How a service's requests are spread over its instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Balance {
    /// Weighted round robin (the default).
    RoundRobin,
    /// Fewest requests in flight, between two random instances (P2C).
    LeastOutstanding,
    /// Consistent hash of a request property: sticky sessions.
    Hash(HashKey),
}

/// What a consistent-hash balancer hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    /// The client's IP address.
    ClientIp,
    /// A request header's value.
    Header(String),
    /// A cookie's value.
    Cookie(String),
}

impl FromStr for Balance {
    type Err = String;

    /// `round_robin`, `least_outstanding`, `hash_ip`, `hash_header:NAME`,
    /// `hash_cookie:NAME` (also the `shoal.balance=` tag's values).
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
        match (kind, arg) {
            ("round_robin" | "rr", "") => Ok(Balance::RoundRobin),
            ("least_outstanding" | "least_conn" | "p2c", "") => Ok(Balance::LeastOutstanding),
            ("hash_ip" | "ip_hash", "") => Ok(Balance::Hash(HashKey::ClientIp)),
            ("hash_header", name) if !name.is_empty() => Ok(Balance::Hash(HashKey::Header(name.to_ascii_lowercase()))),
            ("hash_cookie", name) if !name.is_empty() => Ok(Balance::Hash(HashKey::Cookie(name.to_string()))),
            _ => Err(format!(
                "unknown balance {s:?}: use round_robin, least_outstanding, hash_ip, hash_header:NAME or hash_cookie:NAME"
            )),
        }
    }
}

/// How a service's instances are spoken to, from its tags: `proto=h2c`,
/// `proto=grpc` or `proto=https` (fabio's convention, also as an option
/// of a `urlprefix-` tag), or the same after `shoal.proto=`; with
/// `tlsskipverify=true` an https instance's certificate is not checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1 in the clear (the default).
    #[default]
    Http1,
    /// HTTP/2 in the clear (h2c, prior knowledge): gRPC services.
    H2c,
    /// HTTP/1.1 over TLS.
    Https {
        /// Accept any certificate (`tlsskipverify=true`).
        skip_verify: bool,
    },
}

/// A fabio `urlprefix-<route> [option ...]` tag: its route and its
/// options (`strip=`, `proto=`, `tlsskipverify=`, `redirect=`); `None`
/// for any other tag, or one with no route.
pub(crate) fn split_prefix_tag(tag: &str) -> Option<(&str, std::str::SplitWhitespace<'_>)> {
    let mut parts = tag.strip_prefix("urlprefix-")?.split_whitespace();
    Some((parts.next()?, parts))
}

impl Proto {
    /// The protocol a service's tags ask for; the last `proto` tag wins.
    pub fn from_tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> Proto {
        let mut proto = Proto::Http1;
        let mut skip_verify = false;
        for tag in tags {
            // fabio's options ride on the urlprefix- tag after the route.
            let options = match split_prefix_tag(tag) {
                Some((_, options)) => options.collect::<Vec<_>>(),
                None if tag.starts_with("urlprefix-") => Vec::new(),
                None => vec![tag.strip_prefix("shoal.").unwrap_or(tag)],
            };
            for option in options {
                match option {
                    "proto=h2c" | "proto=grpc" | "proto=h2" => proto = Proto::H2c,
                    "proto=https" => proto = Proto::Https { skip_verify: false },
                    "proto=http" => proto = Proto::Http1,
                    "tlsskipverify=true" => skip_verify = true,
                    _ => {}
                }
            }
        }
        if let Proto::Https { .. } = proto {
            proto = Proto::Https { skip_verify };
        }
        proto
    }
}

/// Whether a service's tags ask for plain HTTP requests to be redirected
/// to HTTPS (`shoal.redirect=https`, or the `urlprefix-` option
/// `redirect=https`).
pub fn redirects_to_https<'a>(tags: impl IntoIterator<Item = &'a str>) -> bool {
    tags.into_iter().any(|tag| match split_prefix_tag(tag) {
        Some((_, mut options)) => options.any(|o| o == "redirect=https"),
        None => tag == "shoal.redirect=https",
    })
}

/// A listener that sends everything to one service. The binary builds it
/// from its `--route ADDR=SERVICE[/KIND]` flag (`crates/shoal/src/route_flag.rs`,
/// the one parser of that flag: host names, the accepted kinds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRoute {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The service that gets everything.
    pub service: String,
    /// Plain TCP instead of HTTP.
    pub tcp: bool,
    /// TLS passed through whole, each connection to the service its
    /// server name (SNI) names, routed as an HTTP host is (`service` unused).
    pub sni: bool,
}

/// A trusted proxy address or network (`10.0.0.0/8`, `127.0.0.1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = ip
            .parse()
            .map_err(|e| format!("invalid address {s:?}: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("invalid prefix in {s:?}"))?
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is inside this network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Passive health: when an instance is taken out of rotation.
#[derive(Clone, Debug)]
pub struct EjectConfig {
    /// Consecutive connect failures or 5xx answers that eject an instance.
    pub consecutive_failures: u32,
    /// First ejection time; doubles with each ejection, up to `max_time`.
    pub base_time: Duration,
    /// Longest ejection.
    pub max_time: Duration,
    /// At most this share of a service's instances is ejected at once.
    pub max_percent: u8,
}

impl Default for EjectConfig {
    /// Envoy's outlier-detection defaults.
    fn default() -> Self {
        EjectConfig {
            consecutive_failures: 5,
            base_time: Duration::from_secs(30),
            max_time: Duration::from_secs(300),
            max_percent: 50,
        }
    }
}

/// Everything the proxy needs to know.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// `Host: <service>.<domain>` routes to `<service>`.
    pub domain: String,
    /// Balancing when a service has no `shoal.balance=` tag.
    pub balance: Balance,
    /// How long a request waits for a service with no instance yet.
    pub queue_timeout: Duration,
    /// Requests waiting at once, at most; more get 503 at once.
    pub max_queued: usize,
    /// Extra attempts on another instance.
    pub retries: usize,
    /// Time to connect to an instance (per attempt).
    pub connect_timeout: Duration,
    /// Time from sending a request to an instance to the first byte of
    /// its answer (per attempt). Past it the attempt counts as a failure
    /// of the instance and an idempotent request is tried elsewhere, so a
    /// hung instance holds a request this long at most.
    pub answer_timeout: Duration,
    /// Time a client has to send a request head (slowloris).
    pub header_read_timeout: Duration,
    /// Largest request head accepted (431 beyond).
    pub max_header_bytes: usize,
    /// An HTTP/2 connection with no stream open this long is closed
    /// (GOAWAY): HTTP/1.1's idle connections close after
    /// `header_read_timeout`; HTTP/2 clients keep one connection, as
    /// with nginx's 75 s `keepalive_timeout`.
    pub h2_idle_timeout: Duration,
    /// Client connections at once, at most.
    pub max_connections: usize,
    /// Idle keep-alive connections to each instance, at most.
    pub max_idle_per_instance: usize,
    /// Passive health.
    pub eject: EjectConfig,
    /// Peers whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Log one line per request.
    pub access_log: bool,
    /// Also send an RFC 7239 `Forwarded` header.
    pub forwarded: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            domain: "localhost".into(),
            balance: Balance::RoundRobin,
            queue_timeout: Duration::from_secs(10),
            max_queued: 10_000,
            retries: 2,
            connect_timeout: Duration::from_secs(2),
            answer_timeout: Duration::from_secs(15),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            h2_idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            max_idle_per_instance: 256,
            eject: EjectConfig::default(),
            trusted_proxies: Vec::new(),
            access_log: false,
            forwarded: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_and_redirect_tags() {
        let https = Proto::Https { skip_verify: false };
        let skip = Proto::Https { skip_verify: true };
        let cases: [(&[&str], Proto, bool); 10] = [
            (&[], Proto::Http1, false),
            (&["proto=grpc"], Proto::H2c, false),
            (&["shoal.proto=h2c", "v2"], Proto::H2c, false),
            (&["urlprefix-/api proto=grpc strip=/api"], Proto::H2c, false),
            (&["proto=https"], https, false),
            (&["proto=https", "tlsskipverify=true"], skip, false),
            (
                &["urlprefix-shop.test/ proto=https tlsskipverify=true redirect=https"],
                skip,
                true,
            ),
            (&["shoal.redirect=https"], Proto::Http1, true),
            // The route itself is not an option, nor is a look-alike tag.
            (
                &["urlprefix-proto=grpc", "xproto=grpc", "redirect=http"],
                Proto::Http1,
                false,
            ),
            (&["proto=gopher"], Proto::Http1, false),
        ];
        for (tags, proto, redirect) in cases {
            assert_eq!(Proto::from_tags(tags.iter().copied()), proto, "{tags:?}");
            assert_eq!(
                redirects_to_https(tags.iter().copied()),
                redirect,
                "{tags:?}"
            );
        }
    }

    #[test]
    fn parses_balance_names() {
        let cases = [
            ("round_robin", Some(Balance::RoundRobin)),
            ("least_outstanding", Some(Balance::LeastOutstanding)),
            ("hash_ip", Some(Balance::Hash(HashKey::ClientIp))),
            (
                "hash_header:X-User",
                Some(Balance::Hash(HashKey::Header("x-user".into()))),
            ),
            (
                "hash_cookie:sid",
                Some(Balance::Hash(HashKey::Cookie("sid".into()))),
            ),
            ("hash_header:", None),
            ("random", None),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<Balance>().ok(), want, "{s}");
        }
    }

    #[test]
    fn cidr_membership() {
        let cases = [
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("::1", "::1", true),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("127.0.0.0/8", "::ffff:127.0.0.5", true),
            ("fd00::/8", "10.0.0.1", false),
        ];
        for (net, ip, want) in cases {
            let c: Cidr = net.parse().unwrap();
            assert_eq!(c.contains(ip.parse().unwrap()), want, "{net} {ip}");
        }
    }
}
