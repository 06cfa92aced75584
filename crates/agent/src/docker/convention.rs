//! registrator's conventions, point by point: a container (its env,
//! labels and ports) becomes the instances to register. Pure: no I/O.
//!
//! - `SERVICE_<KEY>=value` env vars and labels (env wins over a label of
//!   the same key); `SERVICE_<port>_<KEY>` applies to one exposed port and
//!   wins over the general form. `NAME`, `ID`, `TAGS` (comma list, `\,`
//!   escapes a comma), `IGNORE`; every other key becomes metadata `key`
//!   (lowercased), `CHECK_*` also builds the check (see `checks.rs`).
//! - ID `<hostname>:<container-name>:<exposed-port>[:udp]`; name: the
//!   image's basename without tag, `-<exposed-port>` appended when the
//!   container has several ports (unless the port has its own name);
//!   `udp` tag for UDP ports.
//! - Without `internal` only published ports count, at the host's address;
//!   with it, the container's IP and exposed port.
//! - Traefik labels: `traefik.enable=false` ignores the container;
//!   `traefik.http.services.<s>.loadbalancer.server.port=N` keeps port N only.

use super::checks;
use super::container::{Container, PortBinding};
use super::network;
use shoal_catalog::{Check, Service, ServiceAddress};
use std::collections::BTreeMap;

/// How this host names and addresses its instances (the registrator's flags).
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// First part of instance IDs (registrator: the Docker host's hostname;
    /// here the node name, so IDs say which node owns them).
    pub hostname: String,
    /// Address of ports published on every host address (`-ip`).
    pub host_ip: String,
    /// Register the container's own IP and exposed ports (`-internal`).
    pub internal: bool,
    /// Only containers with a `SERVICE_NAME` (`-explicit`).
    pub explicit: bool,
    /// Tags added to every instance (`-tags`).
    pub tags: Vec<String>,
    /// The network containers are reached on when they do not name one
    /// (`--network`); see `network.rs`.
    pub network: Option<String>,
    /// The networks of the proxy container, by name, sorted: a container
    /// sharing one is reached on it.
    pub proxy_networks: Vec<String>,
    /// Register a container's IPv6 address on networks that have both.
    pub prefer_ipv6: bool,
    /// Name an instance after its compose service when it has no
    /// `SERVICE_NAME` (instead of the image's basename).
    pub compose_names: bool,
}

/// Compose's labels, recorded in an instance's meta under these keys.
const COMPOSE_META: [(&str, &str); 3] = [
    ("com.docker.compose.project", "compose_project"),
    ("com.docker.compose.service", "compose_service"),
    (
        "com.docker.compose.container-number",
        "compose_container_number",
    ),
];

/// One instance to register, with its checks.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    /// The instance.
    pub service: Service,
    /// Its checks (from `SERVICE_CHECK_*` and the Docker HEALTHCHECK).
    pub checks: Vec<Check>,
}

/// What a container becomes, and why parts of it were left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Instances to register.
    pub instances: Vec<Planned>,
    /// Ignored ports, refused checks: worth one log line each.
    pub notes: Vec<String>,
}

/// One exposed port of a container.
struct Port {
    /// `80` of `80/tcp`.
    exposed: u16,
    udp: bool,
    binding: Option<PortBinding>,
}

/// `SERVICE_*` from labels then env (env wins): general keys, and keys
/// per exposed port number.
type Attrs = BTreeMap<String, String>;

fn service_attrs(c: &Container) -> (Attrs, BTreeMap<String, Attrs>) {
    let env = c.config.env.iter().filter_map(|kv| kv.split_once('='));
    let labels = c
        .config
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()));
    let (mut general, mut per_port) = (Attrs::new(), BTreeMap::<String, Attrs>::new());
    for (k, v) in labels.chain(env) {
        let Some(key) = k.strip_prefix("SERVICE_") else {
            continue;
        };
        let key = key.to_lowercase();
        match key.split_once('_') {
            Some((port, rest)) if port.parse::<u16>().is_ok() && !rest.is_empty() => {
                per_port
                    .entry(port.to_string())
                    .or_default()
                    .insert(rest.to_string(), v.to_string());
            }
            _ => {
                general.insert(key, v.to_string());
            }
        }
    }
    (general, per_port)
}

/// The image's basename without tag or digest: `repo:5000/a/web:1` → `web`.
pub fn default_name(image: &str) -> String {
    let base = image.rsplit('/').next().unwrap_or(image);
    let base = base.split('@').next().unwrap_or(base);
    base.split(':').next().unwrap_or(base).to_string()
}

/// A comma list where `\,` is a comma inside an item; empty items dropped.
pub fn split_tags(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut chars) = (Vec::new(), String::new(), s.chars().peekable());
    while let Some(ch) = chars.next() {
        match ch {
            '\\' if chars.peek() == Some(&',') => {
                cur.push(',');
                chars.next();
            }
            ',' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    out.push(cur);
    out.retain(|t| !t.is_empty());
    out
}

/// The exposed ports, with their host binding if published. In `host`
/// network mode every exposed port is reachable on the host as is.
fn ports(c: &Container) -> Vec<Port> {
    let host_mode = c.host_config.network_mode == "host";
    let mut all: BTreeMap<&str, Option<PortBinding>> = c
        .config
        .exposed_ports
        .keys()
        .map(|k| {
            let same = host_mode.then(|| PortBinding {
                host_ip: String::new(),
                host_port: k.split('/').next().unwrap_or_default().to_string(),
            });
            (k.as_str(), same)
        })
        .collect();
    for (k, bindings) in &c.network_settings.ports {
        // IPv4 first: Docker lists `0.0.0.0` then `::` for one port.
        let first = bindings.as_ref().and_then(|b| {
            b.iter()
                .find(|b| !b.host_ip.contains(':'))
                .or(b.first())
                .cloned()
        });
        all.insert(k.as_str(), first.filter(|b| !b.host_port.is_empty()));
    }
    all.into_iter()
        .filter_map(|(k, binding)| {
            let (num, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            Some(Port {
                exposed: num.parse().ok()?,
                udp: proto == "udp",
                binding,
            })
        })
        .collect()
}

/// The port picked by a `traefik.http.services.<s>.loadbalancer.server.port` label.
fn traefik_port(c: &Container) -> Option<u16> {
    c.config.labels.iter().find_map(|(k, v)| {
        let rest = k.strip_prefix("traefik.http.services.")?;
        rest.ends_with(".loadbalancer.server.port")
            .then(|| v.trim().parse().ok())?
    })
}

/// The instances `c` becomes under `s`; see the module doc.
pub fn plan(c: &Container, s: &Settings) -> Plan {
    let mut plan = Plan::default();
    let (general, per_port) = service_attrs(c);
    if general.get("ignore").is_some_and(|v| !v.is_empty()) {
        plan.notes.push("SERVICE_IGNORE is set".into());
        return plan;
    }
    if c.config.labels.get("traefik.enable").map(String::as_str) == Some("false") {
        plan.notes.push("traefik.enable=false".into());
        return plan;
    }
    let mut ports = ports(c);
    if let Some(p) = traefik_port(c) {
        ports.retain(|port| port.exposed == p);
    }
    let reach = network::reach(c, general.get("network").map(String::as_str), s);
    if let Some(note) = &reach.note {
        plan.notes.push(note.clone());
    }
    // The container's own address: with --internal, or on a chosen network.
    let internal = (s.internal || reach.chosen)
        .then(|| reach.address.clone())
        .flatten();
    ports.retain(|p| {
        let keep = internal.is_some() || p.binding.is_some();
        if !keep {
            plan.notes
                .push(format!("port {} not published on the host", p.exposed));
        }
        keep
    });
    if ports.is_empty() {
        plan.notes.push("no published ports".into());
    }
    let group = ports.len() > 1;
    let labels = &c.config.labels;
    let compose_service = labels
        .get("com.docker.compose.service")
        .filter(|n| s.compose_names && !n.is_empty());
    for p in &ports {
        let specific = per_port.get(&p.exposed.to_string());
        let mut attrs = general.clone();
        attrs.extend(
            specific
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let from_port = |k: &str| specific.is_some_and(|m| m.contains_key(k));
        if attrs.get("ignore").is_some_and(|v| !v.is_empty()) {
            plan.notes.push(format!(
                "port {}: SERVICE_{}_IGNORE is set",
                p.exposed, p.exposed
            ));
            continue;
        }
        let mut name = match attrs.remove("name").filter(|n| !n.is_empty()) {
            Some(n) => n,
            None if s.explicit => continue,
            None => compose_service
                .cloned()
                .unwrap_or_else(|| default_name(&c.config.image)),
        };
        if group && !from_port("name") {
            name = format!("{name}-{}", p.exposed);
        }
        let (address, port) = match (&internal, &p.binding) {
            (Some(ip), _) => (ip.clone(), p.exposed),
            (None, Some(b)) => {
                let ip = match b.host_ip.as_str() {
                    "" | "0.0.0.0" | "::" => s.host_ip.clone(),
                    ip => ip.to_string(),
                };
                (ip, b.host_port.parse().unwrap_or(0))
            }
            (None, None) => continue,
        };
        let mut id = format!("{}:{}:{}", s.hostname, c.short_name(), p.exposed);
        let mut tags = split_tags(attrs.get("tags").map_or("", String::as_str));
        tags.extend(s.tags.iter().cloned());
        if p.udp {
            id.push_str(":udp");
            tags.push("udp".into());
        }
        if let Some(given) = attrs.remove("id").filter(|i| !i.is_empty()) {
            id = given;
        }
        attrs.remove("tags");
        attrs.remove("ignore");
        attrs.remove("network");
        for (label, key) in COMPOSE_META {
            if let Some(v) = labels.get(label) {
                attrs.entry(key.to_string()).or_insert_with(|| v.clone());
            }
        }
        let mut instance_checks = Vec::new();
        match checks::from_attrs(&attrs, &address, port) {
            Ok(Some((def, status))) => {
                instance_checks.push(checks::convention_check(&id, &name, def, status))
            }
            Ok(None) => {}
            Err(why) => plan.notes.push(format!("{id}: check left out: {why}")),
        }
        if let Some(h) = &c.state.health {
            instance_checks.push(checks::docker_health_check(&id, &h.status));
        }
        plan.instances.push(Planned {
            service: Service {
                id,
                name,
                tags,
                tagged_addresses: reach
                    .tagged
                    .iter()
                    .map(|(k, a)| {
                        let addr = ServiceAddress {
                            address: a.clone(),
                            port: p.exposed,
                        };
                        (k.clone(), addr)
                    })
                    .collect(),
                address,
                meta: attrs,
                port,
                ..Default::default()
            },
            checks: instance_checks,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::container::{ContainerState, Health};
    use shoal_catalog::HealthStatus;

    fn settings() -> Settings {
        Settings {
            hostname: "h1".into(),
            host_ip: "192.0.2.1".into(),
            ..Default::default()
        }
    }

    /// A container `/app` of `image`, with `env`, `labels`, and ports
    /// `exposed → host port` (`None`: not published).
    fn container(
        image: &str,
        env: &[&str],
        labels: &[(&str, &str)],
        ports: &[(&str, Option<(&str, &str)>)],
    ) -> Container {
        let mut c = Container {
            id: "0123456789abcdef0123".into(),
            name: "/app".into(),
            ..Default::default()
        };
        c.config.image = image.into();
        c.config.env = env.iter().map(|s| s.to_string()).collect();
        c.config.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        c.network_settings.ip_address = "172.17.0.9".into();
        for (p, b) in ports {
            c.config
                .exposed_ports
                .insert(p.to_string(), serde_json::json!({}));
            let binding = b.map(|(ip, port)| {
                vec![PortBinding {
                    host_ip: ip.into(),
                    host_port: port.into(),
                }]
            });
            c.network_settings.ports.insert(p.to_string(), binding);
        }
        c
    }

    /// (id, name, address, port, tags) of each planned instance.
    fn summary(p: &Plan) -> Vec<(String, String, String, u16, Vec<String>)> {
        p.instances
            .iter()
            .map(|i| {
                let s = &i.service;
                (
                    s.id.clone(),
                    s.name.clone(),
                    s.address.clone(),
                    s.port,
                    s.tags.clone(),
                )
            })
            .collect()
    }

    fn row(
        id: &str,
        name: &str,
        addr: &str,
        port: u16,
        tags: &[&str],
    ) -> (String, String, String, u16, Vec<String>) {
        let tags = tags.iter().map(|t| t.to_string()).collect();
        (id.into(), name.into(), addr.into(), port, tags)
    }

    #[test]
    fn naming_ids_addresses_and_tags() {
        let one = [("80/tcp", Some(("0.0.0.0", "49001")))];
        let two = [
            ("80/tcp", Some(("0.0.0.0", "49001"))),
            ("53/udp", Some(("10.1.1.1", "49002"))),
        ];
        let cases: Vec<(&str, Container, Vec<_>)> = vec![
            (
                "default name: image basename without tag; host address",
                container("registry:5000/team/web:1.2", &[], &[], &one),
                vec![row("h1:app:80", "web", "192.0.2.1", 49001, &[])],
            ),
            (
                "several ports: -port suffix, udp tag and id suffix, specific host ip",
                container("web", &[], &[], &two),
                vec![
                    row("h1:app:53:udp", "web-53", "10.1.1.1", 49002, &["udp"]),
                    row("h1:app:80", "web-80", "192.0.2.1", 49001, &[]),
                ],
            ),
            (
                "SERVICE_NAME, SERVICE_ID, SERVICE_TAGS with an escaped comma",
                container(
                    "web",
                    &[
                        "SERVICE_NAME=api",
                        "SERVICE_ID=api-1",
                        r"SERVICE_TAGS=a,b\,c,,d",
                    ],
                    &[],
                    &one,
                ),
                vec![row("api-1", "api", "192.0.2.1", 49001, &["a", "b,c", "d"])],
            ),
            (
                "port-specific name has no suffix and wins over the general one",
                container(
                    "web",
                    &[
                        "SERVICE_NAME=api",
                        "SERVICE_53_NAME=dns",
                        "SERVICE_53_TAGS=x",
                    ],
                    &[],
                    &two,
                ),
                vec![
                    row("h1:app:53:udp", "dns", "10.1.1.1", 49002, &["x", "udp"]),
                    row("h1:app:80", "api-80", "192.0.2.1", 49001, &[]),
                ],
            ),
            (
                "env wins over a label",
                container(
                    "web",
                    &["SERVICE_NAME=from-env"],
                    &[("SERVICE_NAME", "from-label"), ("SERVICE_TAGS", "l")],
                    &one,
                ),
                vec![row("h1:app:80", "from-env", "192.0.2.1", 49001, &["l"])],
            ),
            (
                "unpublished ports do not count (no suffix for the one left)",
                container(
                    "web",
                    &[],
                    &[],
                    &[("80/tcp", Some(("", "49001"))), ("81/tcp", None)],
                ),
                vec![row("h1:app:80", "web", "192.0.2.1", 49001, &[])],
            ),
            (
                "SERVICE_IGNORE",
                container("web", &["SERVICE_IGNORE=1"], &[], &one),
                vec![],
            ),
            (
                "SERVICE_<port>_IGNORE",
                container("web", &["SERVICE_53_IGNORE=true"], &[], &two),
                vec![row("h1:app:80", "web-80", "192.0.2.1", 49001, &[])],
            ),
            (
                "traefik.enable=false",
                container("web", &[], &[("traefik.enable", "false")], &one),
                vec![],
            ),
            (
                "traefik server port picks the port",
                container(
                    "web",
                    &[],
                    &[("traefik.http.services.s.loadbalancer.server.port", "53")],
                    &two,
                ),
                vec![row("h1:app:53:udp", "web", "10.1.1.1", 49002, &["udp"])],
            ),
            (
                "digest references",
                container("team/web@sha256:abcd", &[], &[], &one),
                vec![row("h1:app:80", "web", "192.0.2.1", 49001, &[])],
            ),
        ];
        for (what, c, want) in cases {
            assert_eq!(summary(&plan(&c, &settings())), want, "{what}");
        }
    }

    #[test]
    fn internal_explicit_and_forced_tags() {
        let c = container(
            "web",
            &[],
            &[],
            &[("80/tcp", None), ("81/tcp", Some(("0.0.0.0", "49001")))],
        );
        let internal = Settings {
            internal: true,
            tags: vec!["t1".into(), "t2".into()],
            ..settings()
        };
        assert_eq!(
            summary(&plan(&c, &internal)),
            vec![
                row("h1:app:80", "web-80", "172.17.0.9", 80, &["t1", "t2"]),
                row("h1:app:81", "web-81", "172.17.0.9", 81, &["t1", "t2"]),
            ]
        );
        let explicit = Settings {
            explicit: true,
            ..settings()
        };
        assert!(plan(&c, &explicit).instances.is_empty());
        let named = container(
            "web",
            &["SERVICE_81_NAME=x"],
            &[],
            &[("81/tcp", Some(("0.0.0.0", "49001")))],
        );
        assert_eq!(
            summary(&plan(&named, &explicit)),
            vec![row("h1:app:81", "x", "192.0.2.1", 49001, &[])]
        );
    }

    #[test]
    fn host_network_publishes_exposed_ports_as_is() {
        let mut c = container("web", &[], &[], &[]);
        c.host_config.network_mode = "host".into();
        c.config
            .exposed_ports
            .insert("8080/tcp".into(), serde_json::json!({}));
        assert_eq!(
            summary(&plan(&c, &settings())),
            vec![row("h1:app:8080", "web", "192.0.2.1", 8080, &[])]
        );
    }

    #[test]
    fn other_keys_are_meta_and_checks_follow() {
        let c = container(
            "web",
            &[
                "SERVICE_REGION=eu",
                "SERVICE_80_CHECK_HTTP=/health",
                "SERVICE_CHECK_INTERVAL=5s",
                "OTHER=x",
            ],
            &[("SERVICE_OWNER", "ops")],
            &[("80/tcp", Some(("0.0.0.0", "49001")))],
        );
        let p = plan(&c, &settings());
        let i = &p.instances[0];
        let meta: Vec<_> = i
            .service
            .meta
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            meta,
            [
                "check_http=/health",
                "check_interval=5s",
                "owner=ops",
                "region=eu"
            ]
        );
        assert_eq!(i.checks.len(), 1);
        let check = &i.checks[0];
        assert_eq!(check.check_id, "service:h1:app:80");
        assert_eq!(check.definition.http, "http://192.0.2.1:49001/health");
        assert_eq!(
            check.definition.interval,
            Some(std::time::Duration::from_secs(5))
        );
    }

    #[test]
    fn script_checks_are_refused_with_a_note_and_healthcheck_becomes_a_check() {
        let mut c = container(
            "web",
            &["SERVICE_CHECK_SCRIPT=curl x"],
            &[],
            &[("80/tcp", Some(("0.0.0.0", "1")))],
        );
        c.state = ContainerState {
            running: true,
            health: Some(Health {
                status: "healthy".into(),
            }),
            ..Default::default()
        };
        let p = plan(&c, &settings());
        assert!(
            p.notes.iter().any(|n| n.contains("refused")),
            "{:?}",
            p.notes
        );
        let checks: Vec<_> = p.instances[0]
            .checks
            .iter()
            .map(|c| (c.check_id.as_str(), c.status))
            .collect();
        assert_eq!(checks, [("docker-health:h1:app:80", HealthStatus::Passing)]);
    }

    #[test]
    fn tag_lists() {
        for (s, want) in [
            ("", vec![]),
            ("a", vec!["a"]),
            ("a,b", vec!["a", "b"]),
            (r"a\,b,c", vec!["a,b", "c"]),
            (r"x\y", vec![r"x\y"]),
            ("a,,b,", vec!["a", "b"]),
        ] {
            assert_eq!(split_tags(s), want, "{s}");
        }
    }
}
