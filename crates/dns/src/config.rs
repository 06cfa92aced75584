//! What the DNS interface needs to know: its domain, this server's
//! datacenter, TTLs, and where to forward names outside the domain.

use crate::error::{Error, Result};
use std::net::SocketAddr;
use std::time::Duration;

/// The DNS interface's configuration.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// The domain answered authoritatively, lowercase, with a trailing dot
    /// (`consul.`).
    pub domain: String,
    /// This server's datacenter: `<name>.service.<dc>.<domain>` answers
    /// for it; any other datacenter is NXDOMAIN (no federation).
    pub datacenter: String,
    /// TTL of node records (Consul's `dns_config.node_ttl`, default 0).
    pub node_ttl: Duration,
    /// TTL of service records by service name (Consul's
    /// `dns_config.service_ttl`); default 0.
    pub service_ttl: ServiceTtl,
    /// Upstream servers for names outside the domain, tried in order;
    /// with none, such queries are REFUSED.
    pub recursors: Vec<SocketAddr>,
    /// How long to wait for one recursor before trying the next.
    pub recursor_timeout: Duration,
    /// With ACLs on: answers show only what this token may read.
    pub acl: Option<DnsAcl>,
}

/// ACLs over DNS, as Consul applies them: every query is answered with
/// the default token's rights (`--acl-default-token`, else anonymous).
#[derive(Clone, Debug, Default)]
pub struct DnsAcl {
    /// The token's secret; `None`: the anonymous token.
    pub token: Option<String>,
    /// `--acl-default-policy allow`.
    pub default_allow: bool,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            domain: "consul.".into(),
            datacenter: "dc1".into(),
            node_ttl: Duration::ZERO,
            service_ttl: ServiceTtl::default(),
            recursors: Vec::new(),
            recursor_timeout: Duration::from_secs(2),
            acl: None,
        }
    }
}

impl DnsConfig {
    /// Normalizes the domain (lowercase, trailing dot) and checks that it
    /// and the datacenter are usable as DNS names.
    pub fn validated(mut self) -> Result<DnsConfig> {
        let domain = self.domain.trim().to_ascii_lowercase();
        let domain = format!("{}.", domain.trim_end_matches('.'));
        if domain == "." || crate::wire::encode_name(&domain).is_none() {
            return Err(Error::Config(format!(
                "DNS domain {:?} is not a valid name",
                self.domain
            )));
        }
        self.domain = domain;
        self.datacenter = self.datacenter.to_ascii_lowercase();
        if self.datacenter.contains('.') || crate::wire::encode_name(&self.datacenter).is_none() {
            return Err(Error::Config(format!(
                "datacenter {:?} is not a valid DNS label",
                self.datacenter
            )));
        }
        Ok(self)
    }
}

/// Per-service TTLs: exact names, and prefixes ending in `*` (the longest
/// matching prefix wins; `*` alone matches every service), as Consul's
/// `service_ttl` does.
#[derive(Clone, Debug, Default)]
pub struct ServiceTtl {
    exact: Vec<(String, Duration)>,
    /// Sorted longest prefix first.
    prefixes: Vec<(String, Duration)>,
}

impl ServiceTtl {
    /// Parses `NAME=DURATION` entries (Go duration syntax: `30s`, `1m`).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<ServiceTtl> {
        let mut ttl = ServiceTtl::default();
        for entry in entries {
            let entry = entry.as_ref();
            let (name, duration) = entry.split_once('=').ok_or_else(|| {
                Error::Config(format!("service TTL {entry:?} is not NAME=DURATION"))
            })?;
            let duration = shoal_catalog::duration::parse(duration.trim())
                .map_err(|e| Error::Config(format!("service TTL {entry:?}: {e}")))?;
            let name = name.trim().to_ascii_lowercase();
            if name.is_empty() {
                return Err(Error::Config(format!(
                    "service TTL {entry:?} has no service name (`*=DURATION` for every service)"
                )));
            }
            match name.strip_suffix('*') {
                Some(prefix) => ttl.prefixes.push((prefix.to_string(), duration)),
                None => ttl.exact.push((name, duration)),
            }
        }
        ttl.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Ok(ttl)
    }

    /// The TTL of service `name` (lowercase).
    pub fn get(&self, name: &str) -> Duration {
        if let Some((_, d)) = self.exact.iter().find(|(n, _)| n == name) {
            return *d;
        }
        self.prefixes
            .iter()
            .find(|(p, _)| name.starts_with(p.as_str()))
            .map(|(_, d)| *d)
            .unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ttls_match_like_consul() {
        let ttl = ServiceTtl::parse(&["*=5s", "web=30s", "api-*=1m", "api-v2*=2m"]).unwrap();
        for (name, secs) in [
            ("web", 30),
            ("db", 5),
            ("api-v1", 60),
            ("api-v2-x", 120),
            ("webx", 5),
        ] {
            assert_eq!(ttl.get(name), Duration::from_secs(secs), "{name}");
        }
        assert_eq!(ServiceTtl::default().get("web"), Duration::ZERO);
        for bad in ["web", "web=soon", "=5s=x", "=5s", " =5s"] {
            assert!(ServiceTtl::parse(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn domains_are_normalized() {
        for (given, want) in [
            ("consul", Some("consul.")),
            ("Consul.", Some("consul.")),
            ("a.b.", Some("a.b.")),
            (".", None),
            ("a..b", None),
        ] {
            let got = DnsConfig {
                domain: given.into(),
                ..DnsConfig::default()
            }
            .validated()
            .ok()
            .map(|c| c.domain);
            assert_eq!(got.as_deref(), want, "{given}");
        }
    }
}
