//! What a template reads: consul-template's dependency model. Each
//! function call of a template (`service "web"`, `key "a/b"`, ...) names
//! one [`Dependency`]; the watcher keeps one blocking query per distinct
//! dependency (shared by every template that uses it) and the renderer
//! recalls its last value. Query strings are parsed with consul-template's
//! grammar (`tag.name@dc~near|filter`), and dependencies print as its
//! `String()` does (`health.service(web|passing)`), so log lines match.

mod data;
mod parse;

pub use data::{CatalogNode, CatalogSnippet, Data, HealthService, KeyPair, NodeInfo, NodeService};
pub use parse::{parse_catalog_node, parse_health, parse_kv, parse_no_args, KvKind, NoArgKind};

use std::fmt;
use std::path::PathBuf;

/// Health filter of a `service` query (consul-template's status names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatusFilter {
    /// Every instance, whatever its checks say.
    Any,
    /// All checks passing.
    Passing,
    /// Worst check warning.
    Warning,
    /// Worst check critical.
    Critical,
    /// In maintenance mode (`_node_maintenance` / `_service_maintenance:`).
    Maintenance,
}

impl StatusFilter {
    /// Parses one filter word; `None` for an unknown one.
    pub fn parse(word: &str) -> Option<StatusFilter> {
        Some(match word {
            "any" => StatusFilter::Any,
            "passing" => StatusFilter::Passing,
            "warning" => StatusFilter::Warning,
            "critical" => StatusFilter::Critical,
            "maintenance" => StatusFilter::Maintenance,
            _ => return None,
        })
    }

    /// The word consul-template uses.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusFilter::Any => "any",
            StatusFilter::Passing => "passing",
            StatusFilter::Warning => "warning",
            StatusFilter::Critical => "critical",
            StatusFilter::Maintenance => "maintenance",
        }
    }

    /// Whether an instance with aggregated `status` passes `filters`.
    pub fn accepts(filters: &[StatusFilter], status: &str) -> bool {
        filters
            .iter()
            .any(|f| *f == StatusFilter::Any || f.as_str() == status)
    }
}

/// A `service`/`health.service` query.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HealthQuery {
    /// Service name.
    pub name: String,
    /// Only instances with this tag.
    pub tag: Option<String>,
    /// Datacenter asked for (shoal serves one; see [`Dependency::datacenter`]).
    pub dc: Option<String>,
    /// `~node`: sort by distance in Consul; shoal keeps the default order.
    pub near: Option<String>,
    /// Health filters, sorted (consul-template sorts them too).
    pub filters: Vec<StatusFilter>,
}

impl HealthQuery {
    /// Whether the query is the default `passing` one, answered by the
    /// server with `?passing` instead of being filtered here.
    pub fn passing_only(&self) -> bool {
        self.filters == [StatusFilter::Passing]
    }
}

/// One thing a template reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dependency {
    /// `service`: instances of a service with their health.
    Health(HealthQuery),
    /// `services`: every service name with the union of its tags.
    CatalogServices {
        /// Datacenter asked for.
        dc: Option<String>,
    },
    /// `node`: one node and its services (`None`: the agent's own node).
    CatalogNode {
        /// Node name.
        name: Option<String>,
        /// Datacenter asked for.
        dc: Option<String>,
    },
    /// `nodes`: every node.
    CatalogNodes {
        /// Datacenter asked for.
        dc: Option<String>,
    },
    /// `key`, `keyExists`, `keyOrDefault`: one KV value. With `block`
    /// (only `key`), a missing key holds the template back until it exists.
    KvGet {
        /// The key.
        key: String,
        /// Whether a missing key counts as "not read yet".
        block: bool,
        /// Datacenter asked for.
        dc: Option<String>,
    },
    /// `ls`, `safeLs`, `tree`, `safeTree`: every pair under a prefix.
    KvList {
        /// The prefix, as given (`tree "cfg"` also matches `cfgx/...`).
        prefix: String,
        /// Datacenter asked for.
        dc: Option<String>,
    },
    /// `file`: a local file's contents, re-read when it changes.
    File(PathBuf),
}

impl Dependency {
    /// The datacenter the query names, if any.
    pub fn datacenter(&self) -> Option<&str> {
        match self {
            Dependency::Health(q) => q.dc.as_deref(),
            Dependency::CatalogServices { dc }
            | Dependency::CatalogNode { dc, .. }
            | Dependency::CatalogNodes { dc }
            | Dependency::KvGet { dc, .. }
            | Dependency::KvList { dc, .. } => dc.as_deref(),
            Dependency::File(_) => None,
        }
    }
}

fn at_dc(f: &mut fmt::Formatter<'_>, dc: &Option<String>) -> fmt::Result {
    match dc {
        Some(dc) => write!(f, "@{dc}"),
        None => Ok(()),
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dependency::Health(q) => {
                f.write_str("health.service(")?;
                if let Some(tag) = &q.tag {
                    write!(f, "{tag}.")?;
                }
                f.write_str(&q.name)?;
                at_dc(f, &q.dc)?;
                if let Some(near) = &q.near {
                    write!(f, "~{near}")?;
                }
                let words: Vec<&str> = q.filters.iter().map(|s| s.as_str()).collect();
                write!(f, "|{})", words.join(","))
            }
            Dependency::CatalogServices { dc: None } => f.write_str("catalog.services"),
            Dependency::CatalogServices { dc } => {
                f.write_str("catalog.services(")?;
                at_dc(f, dc)?;
                f.write_str(")")
            }
            Dependency::CatalogNode {
                name: None,
                dc: None,
            } => f.write_str("catalog.node"),
            Dependency::CatalogNode { name, dc } => {
                write!(f, "catalog.node({}", name.as_deref().unwrap_or(""))?;
                at_dc(f, dc)?;
                f.write_str(")")
            }
            Dependency::CatalogNodes { dc: None } => f.write_str("catalog.nodes"),
            Dependency::CatalogNodes { dc } => {
                f.write_str("catalog.nodes(")?;
                at_dc(f, dc)?;
                f.write_str(")")
            }
            Dependency::KvGet { key, block, dc } => {
                write!(f, "{}({key}", if *block { "kv.block" } else { "kv.get" })?;
                at_dc(f, dc)?;
                f.write_str(")")
            }
            Dependency::KvList { prefix, dc } => {
                write!(f, "kv.list({prefix}")?;
                at_dc(f, dc)?;
                f.write_str(")")
            }
            Dependency::File(path) => write!(f, "file({})", path.display()),
        }
    }
}
