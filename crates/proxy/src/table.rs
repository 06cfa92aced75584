//! The routing table: an immutable snapshot built from the catalog's
//! passing instances beside the hot path and swapped in whole. It maps a
//! request's host and path to an upstream (a service, or one tag of it).
//! Its maps are persistent, so the next table is this one with only the
//! changed services' entries swapped (`table_builder.rs`).

use crate::balance::{self, Balancer, PickInput};
use crate::config::{Balance, EjectConfig, Proto};
use crate::instance::{now_ms, Instance, InstanceState};
use shoal_catalog::ServiceEntry;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// A service, or the subset of it carrying one tag.
pub type UpstreamKey = (String, Option<String>);

/// The instances a request may go to, and how to choose.
pub struct Upstream {
    /// Service name.
    pub service: String,
    /// Passing instances.
    pub instances: Vec<Instance>,
    /// How its instances are spoken to (`proto=` tags).
    pub proto: Proto,
    /// Plain HTTP requests get a redirect to HTTPS (`shoal.redirect=https`).
    pub redirect_https: bool,
    balancer: Box<dyn Balancer>,
}

impl Upstream {
    pub(crate) fn new(service: &str, instances: Vec<Instance>, balance: &Balance) -> Self {
        let balancer = balance::build(balance, &instances);
        Upstream {
            service: service.to_string(),
            instances,
            proto: Proto::Http1,
            redirect_https: false,
            balancer,
        }
    }

    /// This upstream with the protocol and redirect its service's tags set.
    pub(crate) fn with_options(mut self, proto: Proto, redirect_https: bool) -> Self {
        self.proto = proto;
        self.redirect_https = redirect_https;
        self
    }

    /// Whether the plain path can serve a request for it: HTTP/1.1 in the
    /// clear to the instances, and no redirect owed to this request.
    pub fn plain_serves(&self, https: bool) -> bool {
        self.proto == Proto::Http1 && (https || !self.redirect_https)
    }

    /// An instance not in `tried`, preferring ones passive health has not
    /// ejected; when all are ejected, any untried one (never eject all).
    pub fn pick(&self, input: &PickInput, tried: &[usize]) -> Option<usize> {
        let healthy = |i: usize| !tried.contains(&i) && !self.instances[i].state.is_ejected_now();
        self.balancer
            .pick(&self.instances, input, &healthy)
            .or_else(|| {
                self.balancer
                    .pick(&self.instances, input, &|i| !tried.contains(&i))
            })
    }

    /// A failure of instance `inst` (connect error, reset, 5xx): passive
    /// health ejects it once the streak is long enough and
    /// `cfg.max_percent` allows.
    pub fn record_failure(&self, inst: &Instance, cfg: &EjectConfig) {
        if inst.state.record_failure(cfg) && self.may_eject(cfg.max_percent) {
            let time = inst.state.eject(cfg);
            tracing::warn!(service = %self.service, instance = %inst.id, ?time, "instance ejected after consecutive failures");
        }
    }

    /// Whether one more instance may be ejected under `max_percent`.
    pub fn may_eject(&self, max_percent: u8) -> bool {
        let now = now_ms();
        let ejected = self
            .instances
            .iter()
            .filter(|i| i.state.is_ejected(now))
            .count();
        (ejected + 1) * 100 <= self.instances.len() * usize::from(max_percent)
    }
}

/// A fabio-style `urlprefix-` route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PrefixRoute {
    pub(crate) host: Option<String>,
    pub(crate) path: String,
    pub(crate) service: String,
    pub(crate) strip: Option<String>,
}

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The upstream.
    pub key: UpstreamKey,
    /// A path prefix to remove before forwarding.
    pub strip: Option<String>,
}

/// The routing snapshot.
#[derive(Default, Clone)]
pub struct RoutingTable {
    /// Increases with every rebuild.
    pub generation: u64,
    pub(crate) upstreams: imbl::HashMap<UpstreamKey, Arc<Upstream>>,
    /// Every service's `urlprefix-` routes, most specific first.
    pub(crate) prefixes: Arc<Vec<PrefixRoute>>,
    pub(crate) aliases: imbl::HashMap<String, String>,
    pub(crate) domain: String,
    /// What each service put in the maps above, to take it out again.
    pub(crate) routes: imbl::OrdMap<String, Arc<crate::table_builder::ServiceRoutes>>,
}

/// Instance states by service, then (instance ID, address): kept across
/// rebuilds so balancer load, ejections, pools and counters carry over.
pub type StateRegistry = HashMap<String, HashMap<(String, SocketAddr), Arc<InstanceState>>>;

pub(crate) fn parse_prefix_tag(tag: &str, service: &str) -> Option<PrefixRoute> {
    let (route, mut options) = crate::config::split_prefix_tag(tag)?;
    let (host, path) = match route.find('/') {
        Some(0) => (None, route),
        Some(i) => (Some(route[..i].to_ascii_lowercase()), &route[i..]),
        None => (Some(route.to_ascii_lowercase()), "/"),
    };
    let strip = options
        .find_map(|opt| opt.strip_prefix("strip="))
        .map(str::to_string);
    Some(PrefixRoute {
        host,
        path: path.to_string(),
        service: service.to_string(),
        strip,
    })
}

pub(crate) fn instance_addr(e: &ServiceEntry) -> Option<SocketAddr> {
    let ip: IpAddr = e.address().parse().ok()?;
    Some(SocketAddr::new(ip, e.service.port))
}

impl RoutingTable {
    /// Builds a table from each service's passing instances (the tests'
    /// reference for what [`RoutingTable::with_changes`] must produce).
    #[cfg(test)]
    pub fn build(
        services: &std::collections::BTreeMap<String, Vec<ServiceEntry>>,
        states: &mut StateRegistry,
        cfg: &crate::config::ProxyConfig,
        generation: u64,
    ) -> RoutingTable {
        let changes = services
            .iter()
            .map(|(name, entries)| (name.clone(), entries.clone()))
            .collect();
        let table = RoutingTable::empty(cfg).with_changes(&changes, states, cfg, generation);
        states.retain(|name, _| services.contains_key(name));
        table
    }

    /// Whether `resolve` may look at the path (there are `urlprefix-`
    /// routes); if not, the host alone decides.
    pub fn path_matters(&self) -> bool {
        !self.prefixes.is_empty()
    }

    /// Every whole service's upstream (not tag subsets), by name.
    pub fn services(&self) -> Vec<Arc<Upstream>> {
        let mut list: Vec<Arc<Upstream>> = self
            .upstreams
            .iter()
            .filter(|(k, _)| k.1.is_none())
            .map(|(_, u)| u.clone())
            .collect();
        list.sort_by(|a, b| a.service.cmp(&b.service));
        list
    }

    /// The upstream for `key`, if it has any instance.
    pub fn upstream(&self, key: &UpstreamKey) -> Option<&Arc<Upstream>> {
        self.upstreams.get(key).filter(|u| !u.instances.is_empty())
    }

    /// Where a request for `host` (lowercase, no port) and `path` goes:
    /// `urlprefix-` routes, then `server_aliases`, then
    /// `[<tag>.]<service>.<domain>`. `None` means no route at all.
    pub fn resolve(&self, host: &str, path: &str) -> Option<Target> {
        let prefix = self.prefixes.iter().find(|r| {
            r.host.as_deref().is_none_or(|h| h == host) && path.starts_with(r.path.as_str())
        });
        if let Some(r) = prefix {
            return Some(Target {
                key: (r.service.clone(), None),
                strip: r.strip.clone(),
            });
        }
        if let Some(service) = self.aliases.get(host) {
            return Some(Target {
                key: (service.clone(), None),
                strip: None,
            });
        }
        let sub = host.strip_suffix(self.domain.as_str())?.strip_suffix('.')?;
        let key = match sub.split('.').collect::<Vec<_>>()[..] {
            [service] if !service.is_empty() => (service.to_string(), None),
            [tag, service] if !tag.is_empty() && !service.is_empty() => {
                (service.to_string(), Some(tag.to_string()))
            }
            _ => return None,
        };
        Some(Target { key, strip: None })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::ProxyConfig;
    use shoal_catalog::{Node, Service};
    use std::collections::BTreeMap;

    /// An instance of `name` on node "n" at 127.0.0.1:`port` (also used
    /// by the table builder's tests).
    pub(crate) fn entry(id: &str, name: &str, port: u16, tags: &[&str]) -> ServiceEntry {
        ServiceEntry {
            node: Arc::new(Node {
                name: "n".into(),
                address: "127.0.0.1".into(),
                ..Default::default()
            }),
            service: Arc::new(Service {
                id: id.into(),
                name: name.into(),
                port,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..Default::default()
            }),
            checks: vec![],
        }
    }

    fn table(entries: Vec<ServiceEntry>) -> RoutingTable {
        let mut by_name: BTreeMap<String, Vec<ServiceEntry>> = BTreeMap::new();
        for e in entries {
            by_name.entry(e.service.name.clone()).or_default().push(e);
        }
        RoutingTable::build(
            &by_name,
            &mut StateRegistry::new(),
            &ProxyConfig::default(),
            1,
        )
    }

    #[test]
    fn resolves_most_specific_first() {
        let t = table(vec![
            entry(
                "w1",
                "web",
                1,
                &["v2", "server_aliases=www.example.com,example.com"],
            ),
            entry("a1", "api", 2, &["urlprefix-/api strip=/api"]),
            entry("s1", "shop", 3, &["urlprefix-shop.example.com/"]),
            entry("s2", "shopapi", 4, &["urlprefix-shop.example.com/api"]),
        ]);
        let key = |s: &str, t: Option<&str>| (s.to_string(), t.map(str::to_string));
        let cases = [
            ("web.localhost", "/", Some((key("web", None), None))),
            (
                "v2.web.localhost",
                "/x",
                Some((key("web", Some("v2")), None)),
            ),
            ("www.example.com", "/", Some((key("web", None), None))),
            (
                "anything.test",
                "/api/users",
                Some((key("api", None), Some("/api".to_string()))),
            ),
            ("shop.example.com", "/cart", Some((key("shop", None), None))),
            (
                "shop.example.com",
                "/api/v1",
                Some((key("shopapi", None), None)),
            ),
            ("nothing.test", "/", None),
            ("a.b.c.localhost", "/", None),
            ("localhost", "/", None),
            ("ghost.localhost", "/", Some((key("ghost", None), None))),
        ];
        for (host, path, want) in cases {
            let got = t.resolve(host, path).map(|t| (t.key, t.strip));
            assert_eq!(got, want, "{host}{path}");
        }
    }

    #[test]
    fn tag_subsets_and_state_reuse() {
        let mut states = StateRegistry::new();
        let mut by_name = BTreeMap::new();
        by_name.insert(
            "web".to_string(),
            vec![
                entry("w1", "web", 1, &["v1"]),
                entry("w2", "web", 2, &["v2"]),
            ],
        );
        let t1 = RoutingTable::build(&by_name, &mut states, &ProxyConfig::default(), 1);
        assert_eq!(
            t1.upstream(&("web".into(), None)).unwrap().instances.len(),
            2
        );
        let v1 = t1.upstream(&("web".into(), Some("v1".into()))).unwrap();
        assert_eq!(v1.instances[0].id, "w1");
        assert!(t1.upstream(&("web".into(), Some("v3".into()))).is_none());
        let w1_state = v1.instances[0].state.clone();
        by_name.insert("web".to_string(), vec![entry("w1", "web", 1, &["v1"])]);
        let t2 = RoutingTable::build(&by_name, &mut states, &ProxyConfig::default(), 2);
        assert!(Arc::ptr_eq(
            &t2.upstream(&("web".into(), None)).unwrap().instances[0].state,
            &w1_state
        ));
        assert_eq!(
            states.values().map(HashMap::len).sum::<usize>(),
            1,
            "states of gone instances are dropped"
        );
    }

    #[test]
    fn never_ejects_everything() {
        let t = table(vec![entry("w1", "web", 1, &[]), entry("w2", "web", 2, &[])]);
        let up = t.upstream(&("web".into(), None)).unwrap();
        assert!(up.may_eject(50));
        up.instances[0]
            .state
            .eject(&crate::config::EjectConfig::default());
        assert!(!up.may_eject(50));
        let headers = hyper::HeaderMap::new();
        let input = PickInput {
            client_ip: "127.0.0.1".parse().unwrap(),
            headers: &headers,
        };
        for _ in 0..5 {
            assert_eq!(up.pick(&input, &[]), Some(1), "the ejected one is avoided");
        }
        assert_eq!(
            up.pick(&input, &[1]),
            Some(0),
            "but used when nothing else is left"
        );
    }
}
