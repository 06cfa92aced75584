//! Decisions: what a token may do, from the merged rules of its policies
//! and the agent's default policy.

use std::ops::Bound;
use std::sync::Arc;

use super::access::{Access, Resource};
use super::rules::Rules;

/// What a token may do: the merged rules of all its policies, then the
/// default.
///
/// Consul chains the token's merged policy authorizer before a static one
/// for `--acl-default-policy`: a rule that matches decides, and only where
/// none does is the default asked. The default never grants ACL management
/// (`acl_read`, `acl_write`, snapshots): Consul's allow-all default has
/// `allowManage` off, so even with default allow a token manages ACLs only
/// through an `acl` rule or the management authorizer.
#[derive(Clone, Debug)]
pub struct Authorizer {
    grant: Grant,
}

#[derive(Clone, Debug)]
enum Grant {
    /// The built-in global-management policy: everything.
    Management,
    /// ACLs disabled: everything (Consul answers with its manage-all
    /// authorizer then, ACL endpoints included).
    AllowAll,
    /// Rules, then the default for whatever they do not decide.
    Rules {
        rules: Arc<Rules>,
        default_allow: bool,
    },
}

impl Authorizer {
    /// The authorizer of policies given as their rules text: each parsed
    /// (one that does not parse grants nothing; stored ones always do),
    /// then merged as [`Authorizer::new`] merges them. What a token's
    /// policies give it, on a server and on an agent alike.
    pub fn of_policies<'a>(
        texts: impl IntoIterator<Item = &'a str>,
        default_allow: bool,
    ) -> Authorizer {
        let parsed: Vec<Rules> = texts
            .into_iter()
            .filter_map(|t| Rules::parse(t).ok())
            .collect();
        let refs: Vec<&Rules> = parsed.iter().collect();
        Authorizer::new(&refs, default_allow)
    }

    /// The merged rules of several policies, falling back to `default_allow`
    /// (the --acl-default-policy) where no rule applies.
    pub fn new(rules: &[&Rules], default_allow: bool) -> Authorizer {
        let mut merged = Rules::default();
        for r in rules {
            merged.merge(r);
        }
        Authorizer {
            grant: Grant::Rules {
                rules: Arc::new(merged),
                default_allow,
            },
        }
    }

    /// Everything, ACL management included (the built-in global-management
    /// policy).
    pub fn management() -> Authorizer {
        Authorizer {
            grant: Grant::Management,
        }
    }

    /// ACLs disabled: everything allowed.
    pub fn allow_all() -> Authorizer {
        Authorizer {
            grant: Grant::AllowAll,
        }
    }

    /// Reading (discovering) the resource `name`: allowed by a read, list or
    /// write rule, refused by deny.
    pub fn read(&self, r: Resource, name: &str) -> bool {
        self.decide(r, name, Access::Read)
    }

    /// Registering, changing or deleting `name`: only a write rule allows it.
    pub fn write(&self, r: Resource, name: &str) -> bool {
        self.decide(r, name, Access::Write)
    }

    /// `list` on keys (Consul's KeyList: `?keys` and recursive listing need
    /// list, or write); for other resources same as read.
    ///
    /// Consul asks KeyList of a recursive read only when the agent sets
    /// `acl.enable_key_list_policy` (off by default); otherwise it filters
    /// the entries by read alone. Which applies is the caller's choice.
    pub fn list(&self, r: Resource, name: &str) -> bool {
        let needed = if r == Resource::Key {
            Access::List
        } else {
            Access::Read
        };
        self.decide(r, name, needed)
    }

    /// Consul's KeyWritePrefix: write on every key under `prefix` (recursive
    /// delete): the rule governing the prefix allows write AND no more
    /// specific rule (exact or prefix) under it denies write.
    ///
    /// "Governing" is the longest `key_prefix` rule the prefix starts with
    /// (exact `key` rules name single keys, so they do not govern a prefix);
    /// "denies write" is any level but write, so a read-only rule under the
    /// prefix blocks it too. With no governing rule and nothing under the
    /// prefix that blocks, the default decides.
    pub fn key_write_prefix(&self, prefix: &str) -> bool {
        self.all_under(Resource::Key, prefix, Access::Write)
    }

    /// Read of every name of `r` under `prefix` (`""`: all of them), as
    /// [`Authorizer::key_write_prefix`] asks write: what follows a whole
    /// part of the catalog (the change stream) may see all of it.
    pub fn read_prefix(&self, r: Resource, prefix: &str) -> bool {
        self.all_under(r, prefix, Access::Read)
    }

    /// `needed` on every name of `r` under `prefix`: the rule governing
    /// the prefix grants it and no rule at or under the prefix grants less.
    fn all_under(&self, r: Resource, prefix: &str, needed: Access) -> bool {
        let (rules, default_allow) = match &self.grant {
            Grant::Management | Grant::AllowAll => return true,
            Grant::Rules {
                rules,
                default_allow,
            } => (rules, *default_allow),
        };
        let named = rules.named(r);
        let governing = named.longest_prefix(prefix);
        if governing.is_some_and(|a| !a.grants(needed)) {
            return false;
        }
        let blocks_under = |map: &std::collections::BTreeMap<String, Access>| {
            map.range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(name, _)| name.starts_with(prefix))
                .any(|(_, a)| !a.grants(needed))
        };
        if blocks_under(&named.exact) || blocks_under(&named.prefix) {
            return false;
        }
        governing.is_some() || default_allow
    }

    /// Reading tokens, policies and roles: an `acl` rule of read or write,
    /// never the default.
    pub fn acl_read(&self) -> bool {
        self.manage(Access::Read)
    }

    /// Changing tokens, policies and roles (and seeing SecretIDs, in
    /// Consul): `acl = "write"`, never the default.
    pub fn acl_write(&self) -> bool {
        self.manage(Access::Write)
    }

    /// Taking or restoring a snapshot: it holds every token's secret, so
    /// Consul asks `acl = "write"` of it, like ACL management.
    pub fn snapshot(&self) -> bool {
        self.manage(Access::Write)
    }

    /// The operator API's reads (raft, autopilot): the `operator` rule, else
    /// the default.
    pub fn operator_read(&self) -> bool {
        self.level(|r| r.operator, Access::Read)
    }

    /// The operator API's changes: `operator = "write"`, else the default.
    pub fn operator_write(&self) -> bool {
        self.level(|r| r.operator, Access::Write)
    }

    /// Listing gossip keys: the `keyring` rule (operator does not cover it),
    /// else the default.
    pub fn keyring_read(&self) -> bool {
        self.level(|r| r.keyring, Access::Read)
    }

    /// Installing, using or removing gossip keys: `keyring = "write"`, else
    /// the default.
    pub fn keyring_write(&self) -> bool {
        self.level(|r| r.keyring, Access::Write)
    }

    /// Mesh configuration: the `mesh` rule, else the `operator` rule (as
    /// Consul falls back), else the default.
    pub fn mesh_read(&self) -> bool {
        self.level(|r| r.mesh.or(r.operator), Access::Read)
    }

    /// Changing mesh configuration: as [`Authorizer::mesh_read`], for write.
    pub fn mesh_write(&self) -> bool {
        self.level(|r| r.mesh.or(r.operator), Access::Write)
    }

    /// Cluster peering: the `peering` rule, else `operator`, else the
    /// default.
    pub fn peering_read(&self) -> bool {
        self.level(|r| r.peering.or(r.operator), Access::Read)
    }

    /// Changing peerings: as [`Authorizer::peering_read`], for write.
    pub fn peering_write(&self) -> bool {
        self.level(|r| r.peering.or(r.operator), Access::Write)
    }

    /// Whether this is the management authorizer (or allow_all) — for
    /// redacting SecretIDs.
    pub fn is_management(&self) -> bool {
        matches!(self.grant, Grant::Management | Grant::AllowAll)
    }

    fn decide(&self, r: Resource, name: &str, needed: Access) -> bool {
        match &self.grant {
            Grant::Management | Grant::AllowAll => true,
            Grant::Rules {
                rules,
                default_allow,
            } => match rules.named(r).lookup(name) {
                Some(rule) => rule.grants(needed),
                None => *default_allow,
            },
        }
    }

    fn level(&self, rule: impl Fn(&Rules) -> Option<Access>, needed: Access) -> bool {
        match &self.grant {
            Grant::Management | Grant::AllowAll => true,
            Grant::Rules {
                rules,
                default_allow,
            } => rule(rules).map_or(*default_allow, |a| a.grants(needed)),
        }
    }

    fn manage(&self, needed: Access) -> bool {
        match &self.grant {
            Grant::Management | Grant::AllowAll => true,
            Grant::Rules { rules, .. } => rules.acl.is_some_and(|a| a.grants(needed)),
        }
    }
}

#[cfg(test)]
#[path = "authorizer_tests.rs"]
mod tests;
