//! The vocabulary of rules: access levels and the resources rules name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One access level of a rule, Consul's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Deny,
    Read,
    List,
    Write,
}

impl Access {
    /// The level named `s`, in any case (Consul lowercases before matching).
    pub fn parse(s: &str) -> Option<Access> {
        match s.to_ascii_lowercase().as_str() {
            "deny" => Some(Access::Deny),
            "read" => Some(Access::Read),
            "list" => Some(Access::List),
            "write" => Some(Access::Write),
            _ => None,
        }
    }

    /// The level as rules and Consul's API write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Deny => "deny",
            Access::Read => "read",
            Access::List => "list",
            Access::Write => "write",
        }
    }

    /// Whether a rule at this level permits an operation needing `needed`:
    /// write permits read, list and write; list permits read and list; read
    /// permits only read; deny permits nothing. (Consul's `enforce`.)
    pub fn grants(self, needed: Access) -> bool {
        matches!(
            (self, needed),
            (Access::Write, Access::Read | Access::List | Access::Write)
                | (Access::List, Access::Read | Access::List)
                | (Access::Read, Access::Read)
        )
    }

    /// The level that stands when two policies give the same rule different
    /// levels: deny over write over list over read (Consul's policy merger,
    /// `takesPrecedenceOver`). Not the more permissive one: a deny anywhere
    /// is meant to hold.
    pub fn merge(self, other: Access) -> Access {
        fn rank(a: Access) -> u8 {
            match a {
                Access::Read => 0,
                Access::List => 1,
                Access::Write => 2,
                Access::Deny => 3,
            }
        }
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Access {
    type Err = String;

    fn from_str(s: &str) -> Result<Access, String> {
        Access::parse(s).ok_or_else(|| format!("{s:?} is not one of read, write, list, deny"))
    }
}

/// Resources whose rules are named (exact `service "web"`, or
/// `service_prefix "we"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    Agent,
    Event,
    Key,
    Node,
    Query,
    Service,
    Session,
}

impl Resource {
    /// Every resource, for code that treats them alike (merging, tests).
    pub const ALL: [Resource; 7] = [
        Resource::Agent,
        Resource::Event,
        Resource::Key,
        Resource::Node,
        Resource::Query,
        Resource::Service,
        Resource::Session,
    ];

    /// The rule kind naming one resource exactly (`service`); the prefix
    /// kind adds `_prefix`.
    pub fn kind(self) -> &'static str {
        match self {
            Resource::Agent => "agent",
            Resource::Event => "event",
            Resource::Key => "key",
            Resource::Node => "node",
            Resource::Query => "query",
            Resource::Service => "service",
            Resource::Session => "session",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }

    /// The resource a rule kind is about, and whether the kind is a prefix.
    pub(super) fn of_kind(kind: &str) -> Option<(Resource, bool)> {
        let (base, prefix) = match kind.strip_suffix("_prefix") {
            Some(base) => (base, true),
            None => (kind, false),
        };
        Resource::ALL
            .into_iter()
            .find(|r| r.kind() == base)
            .map(|r| (r, prefix))
    }
}
