//! consul-template's query-string grammar, one regular expression per
//! kind of dependency, with the same named parts (`tag`, `name`, `dc`,
//! `near`, `filter`, `key`, `prefix`, `query`).

use super::{Dependency, HealthQuery, StatusFilter};
use regex::{Captures, Regex};
use std::sync::OnceLock;

const DC: &str = r"(@(?P<dc>[[:word:]\.\-_]+))?";
const QUERY: &str = r"(\?(?P<query>[[:word:]\-_=&]+))?";
const NEAR: &str = r"(~(?P<near>[[:word:]\.\-_]+))?";
const FILTER: &str = r"(\|(?P<filter>[[:word:],]+))?";
const TAG: &str = r"((?P<tag>[[:word:]=:\.\-_]+)\.)?";
const SERVICE_NAME: &str = r"(?P<name>[[:word:]\-_]+)";
const NODE_NAME: &str = r"(?P<name>[[:word:]\.\-_]+)";
const KEY: &str = r"/?(?P<key>[^@\?]+)";
const PREFIX: &str = r"/?(?P<prefix>[^@\?]+)";

fn regex(cell: &'static OnceLock<Regex>, parts: &[&str]) -> &'static Regex {
    cell.get_or_init(|| {
        let pattern = format!(r"\A{}\z", parts.concat());
        Regex::new(&pattern).unwrap_or_else(|e| panic!("bad built-in pattern {pattern}: {e}"))
    })
}

fn part(c: &Captures<'_>, name: &str) -> Option<String> {
    c.name(name)
        .map(|m| m.as_str().to_string())
        .filter(|s| !s.is_empty())
}

/// Namespaces, partitions, peers and sameness groups (`?ns=x`) are
/// Consul Enterprise / peering features shoal does not have: say so
/// instead of silently reading the default namespace.
fn no_query(c: &Captures<'_>, what: &str, input: &str) -> Result<(), String> {
    match part(c, "query") {
        None => Ok(()),
        Some(q) => Err(format!(
            "{what}: query parameters ({q}) are not supported by shoal (no namespaces, partitions or peers): {input:?}"
        )),
    }
}

/// Parses the argument of `service` (the extra arguments already joined
/// with `|`, as consul-template joins them).
pub fn parse_health(input: &str) -> Result<Dependency, String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = regex(&RE, &[TAG, SERVICE_NAME, QUERY, DC, NEAR, FILTER]);
    let c = re
        .captures(input)
        .ok_or_else(|| format!("health.service: invalid format: {input:?}"))?;
    no_query(&c, "health.service", input)?;
    let mut filters = Vec::new();
    match part(&c, "filter") {
        Some(list) => {
            for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                let f = StatusFilter::parse(word).ok_or_else(|| {
                    format!("health.service: invalid filter: {word:?} in {input:?}")
                })?;
                filters.push(f);
            }
            // consul-template sorts the filter words as strings.
            filters.sort_by_key(|f| f.as_str());
        }
        None => filters.push(StatusFilter::Passing),
    }
    Ok(Dependency::Health(HealthQuery {
        name: part(&c, "name").unwrap_or_default(),
        tag: part(&c, "tag"),
        dc: part(&c, "dc"),
        near: part(&c, "near"),
        filters,
    }))
}

/// The kinds whose argument is only `@dc` (and `~near` for nodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoArgKind {
    /// `services`.
    Services,
    /// `nodes`.
    Nodes,
}

/// Parses the (joined) arguments of `services` or `nodes`.
pub fn parse_no_args(kind: NoArgKind, input: &str) -> Result<Dependency, String> {
    static SERVICES: OnceLock<Regex> = OnceLock::new();
    static NODES: OnceLock<Regex> = OnceLock::new();
    let (re, what) = match kind {
        NoArgKind::Services => (regex(&SERVICES, &[QUERY, DC]), "catalog.services"),
        NoArgKind::Nodes => (regex(&NODES, &[QUERY, DC, NEAR]), "catalog.nodes"),
    };
    let c = re
        .captures(input)
        .ok_or_else(|| format!("{what}: invalid format: {input:?}"))?;
    no_query(&c, what, input)?;
    let dc = part(&c, "dc");
    Ok(match kind {
        NoArgKind::Services => Dependency::CatalogServices { dc },
        NoArgKind::Nodes => Dependency::CatalogNodes { dc },
    })
}

/// Parses the argument of `node` (empty: the agent's own node).
pub fn parse_catalog_node(input: &str) -> Result<Dependency, String> {
    if input.is_empty() {
        return Ok(Dependency::CatalogNode {
            name: None,
            dc: None,
        });
    }
    static RE: OnceLock<Regex> = OnceLock::new();
    let c = regex(&RE, &[NODE_NAME, QUERY, DC])
        .captures(input)
        .ok_or_else(|| format!("catalog.node: invalid format: {input:?}"))?;
    no_query(&c, "catalog.node", input)?;
    Ok(Dependency::CatalogNode {
        name: part(&c, "name"),
        dc: part(&c, "dc"),
    })
}

/// Which KV dependency a function wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvKind {
    /// `key`: waits for the key to exist.
    Block,
    /// `keyExists`, `keyOrDefault`.
    Get,
    /// `ls`, `tree` and their safe forms.
    List,
}

/// Parses a KV key or prefix argument.
pub fn parse_kv(kind: KvKind, input: &str) -> Result<Dependency, String> {
    static KEY_RE: OnceLock<Regex> = OnceLock::new();
    static PREFIX_RE: OnceLock<Regex> = OnceLock::new();
    let (re, what, name) = match kind {
        KvKind::Block | KvKind::Get => (regex(&KEY_RE, &[KEY, QUERY, DC]), "kv.get", "key"),
        KvKind::List => (regex(&PREFIX_RE, &[PREFIX, QUERY, DC]), "kv.list", "prefix"),
    };
    let c = re
        .captures(input)
        .ok_or_else(|| format!("{what}: invalid format: {input:?}"))?;
    no_query(&c, what, input)?;
    let value = part(&c, name).unwrap_or_default();
    let dc = part(&c, "dc");
    Ok(match kind {
        KvKind::List => Dependency::KvList { prefix: value, dc },
        KvKind::Block | KvKind::Get => Dependency::KvGet {
            key: value,
            block: kind == KvKind::Block,
            dc,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_queries_parse_as_consul_template_does() {
        // (input, expected String() or error prefix)
        let cases = [
            ("web", "health.service(web|passing)"),
            ("production.app", "health.service(production.app|passing)"),
            ("a.b.web", "health.service(a.b.web|passing)"),
            ("web@dc2", "health.service(web@dc2|passing)"),
            ("web|any", "health.service(web|any)"),
            ("web|warning,passing", "health.service(web|passing,warning)"),
            ("web~node1|critical", "health.service(web~node1|critical)"),
            (
                "server_alias=x.web",
                "health.service(server_alias=x.web|passing)",
            ),
            ("web|bogus", "ERR health.service: invalid filter: \"bogus\""),
            ("we b", "ERR health.service: invalid format"),
            ("web?ns=x", "ERR health.service: query parameters"),
        ];
        for (input, want) in cases {
            let got = match parse_health(input) {
                Ok(d) => d.to_string(),
                Err(e) => format!("ERR {e}"),
            };
            assert!(
                got.starts_with(want),
                "{input:?}: got {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn tag_and_name_split_at_the_last_dot() {
        let Dependency::Health(q) = parse_health("a.b.web").unwrap() else {
            panic!("not a health query")
        };
        assert_eq!((q.tag.as_deref(), q.name.as_str()), (Some("a.b"), "web"));
    }

    #[test]
    fn kv_queries() {
        let cases = [
            (KvKind::Block, "/a/b", "kv.block(a/b)"),
            (KvKind::Get, "a/b@dc1", "kv.get(a/b@dc1)"),
            (KvKind::List, "cfg", "kv.list(cfg)"),
            (KvKind::List, "cfg/", "kv.list(cfg/)"),
        ];
        for (kind, input, want) in cases {
            assert_eq!(parse_kv(kind, input).unwrap().to_string(), want, "{input}");
        }
    }

    #[test]
    fn catalog_queries() {
        assert_eq!(parse_catalog_node("").unwrap().to_string(), "catalog.node");
        assert_eq!(
            parse_catalog_node("n1.example@dc1").unwrap().to_string(),
            "catalog.node(n1.example@dc1)"
        );
        assert_eq!(
            parse_no_args(NoArgKind::Services, "").unwrap().to_string(),
            "catalog.services"
        );
        assert_eq!(
            parse_no_args(NoArgKind::Nodes, "@dc2").unwrap().to_string(),
            "catalog.nodes(@dc2)"
        );
        assert!(parse_no_args(NoArgKind::Services, "web").is_err());
    }
}
