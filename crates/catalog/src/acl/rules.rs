//! The parsed [`Rules`] of one policy (or the merge of several).

use std::collections::BTreeMap;

use super::access::{Access, Resource};
use super::syntax::{self, Item, Pos, Value};

/// The most rules text [`Rules::parse`] reads. Consul's own policies are a
/// few hundred bytes; the bound keeps a hostile policy from costing more than
/// a moment to parse or a little memory to keep.
pub const MAX_RULES_LEN: usize = 64 * 1024;

/// The rules of one resource: levels by exact name and by name prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamedRules {
    /// `service "web"`: the level for that one name.
    pub exact: BTreeMap<String, Access>,
    /// `service_prefix "we"`: the level for every name starting so; kept
    /// sorted, so the rules under a key prefix are a range.
    pub prefix: BTreeMap<String, Access>,
}

impl NamedRules {
    /// The rule governing `name`: its exact rule if it has one, else the
    /// longest prefix rule that `name` starts with ("" matches every name).
    pub fn lookup(&self, name: &str) -> Option<Access> {
        self.exact
            .get(name)
            .copied()
            .or_else(|| self.longest_prefix(name))
    }

    /// The longest prefix rule `name` starts with, ignoring exact rules.
    pub fn longest_prefix(&self, name: &str) -> Option<Access> {
        if self.prefix.is_empty() {
            return None;
        }
        // Few prefix rules (the usual policy): test each, not each length.
        if self.prefix.len() <= 8 {
            return self
                .prefix
                .iter()
                .filter(|(p, _)| name.starts_with(p.as_str()))
                .max_by_key(|(p, _)| p.len())
                .map(|(_, a)| *a);
        }
        (0..=name.len())
            .rev()
            .filter(|&end| name.is_char_boundary(end))
            .find_map(|end| self.prefix.get(&name[..end]).copied())
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefix.is_empty()
    }
}

/// A policy's parsed rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    named: [NamedRules; 7],
    /// `acl = "..."`: ACL management (and snapshots).
    pub acl: Option<Access>,
    /// `operator = "..."`: the operator API, keyring excluded.
    pub operator: Option<Access>,
    /// `keyring = "..."`: the gossip keyring.
    pub keyring: Option<Access>,
    /// `mesh = "..."`: mesh configuration; falls back to `operator`.
    pub mesh: Option<Access>,
    /// `peering = "..."`: cluster peering; falls back to `operator`.
    pub peering: Option<Access>,
}

/// The top-level rule kinds that take a level directly (`operator = "read"`).
const LEVEL_KINDS: [&str; 5] = ["acl", "operator", "keyring", "mesh", "peering"];

impl Rules {
    /// Parses rules in Consul's HCL syntax or its JSON form (a JSON object);
    /// an empty string is no rules.
    ///
    /// Errors say what is wrong and where ("service \"web\": policy \"writ\"
    /// is not one of read, write, deny (line 2, column 12)"). Unlike Consul,
    /// which ignores unknown keys (hashicorp/consul#11352), an unknown rule
    /// kind or attribute is an error: a misspelt rule would otherwise grant
    /// or deny nothing, silently.
    pub fn parse(text: &str) -> Result<Rules, String> {
        if text.len() > MAX_RULES_LEN {
            return Err(format!(
                "rules are {} bytes; at most {MAX_RULES_LEN} are accepted",
                text.len()
            ));
        }
        let mut rules = Rules::default();
        let mut levels_seen: Vec<&str> = Vec::new();
        for item in syntax::parse(text)? {
            if let Some(&kind) = LEVEL_KINDS.iter().find(|k| **k == item.key) {
                if levels_seen.contains(&kind) {
                    return Err(format!("{kind} is set more than once ({})", item.pos));
                }
                levels_seen.push(kind);
                let level = top_level(kind, &item)?;
                *rules.level_mut(kind) = level;
            } else if let Some((resource, prefix)) = Resource::of_kind(&item.key) {
                rules.named_rules(resource, prefix, &item.key, item.value, item.value_pos)?;
            } else {
                return Err(format!(
                    "unknown rule kind {:?} ({}); the kinds are acl, agent, agent_prefix, \
                     event, event_prefix, key, key_prefix, keyring, mesh, node, node_prefix, \
                     operator, peering, query, query_prefix, service, service_prefix, session, \
                     session_prefix",
                    item.key, item.pos
                ));
            }
        }
        Ok(rules)
    }

    /// The rules naming resources of kind `r`.
    pub fn named(&self, r: Resource) -> &NamedRules {
        &self.named[r.index()]
    }

    /// Adds a rule, merged (deny over write over list over read) with any
    /// rule already given for the same name: as a policy naming the same
    /// service twice, or a second policy, would.
    pub fn add(&mut self, r: Resource, name: &str, prefix: bool, access: Access) {
        let named = &mut self.named[r.index()];
        let map = if prefix {
            &mut named.prefix
        } else {
            &mut named.exact
        };
        map.entry(name.to_string())
            .and_modify(|a| *a = a.merge(access))
            .or_insert(access);
    }

    /// Merges `other` into these rules, rule by rule: the same exact name (or
    /// the same prefix) keeps the level that takes precedence, and a rule
    /// only one side has is kept as it is. A broad rule never reaches into a
    /// narrower one: `key_prefix "" { policy = "write" }` merged with
    /// `key "a" { policy = "read" }` leaves key "a" read-only, as in Consul.
    pub fn merge(&mut self, other: &Rules) {
        for r in Resource::ALL {
            let theirs = &other.named[r.index()];
            for (name, &access) in &theirs.exact {
                self.add(r, name, false, access);
            }
            for (name, &access) in &theirs.prefix {
                self.add(r, name, true, access);
            }
        }
        for kind in LEVEL_KINDS {
            if let Some(theirs) = other.level(kind) {
                let ours = self.level_mut(kind);
                *ours = Some(ours.map_or(theirs, |a| a.merge(theirs)));
            }
        }
    }

    /// No rule at all: every decision falls to the default.
    pub fn is_empty(&self) -> bool {
        self.named.iter().all(NamedRules::is_empty)
            && LEVEL_KINDS.iter().all(|k| self.level(k).is_none())
    }

    fn level(&self, kind: &str) -> Option<Access> {
        match kind {
            "acl" => self.acl,
            "operator" => self.operator,
            "keyring" => self.keyring,
            "mesh" => self.mesh,
            _ => self.peering,
        }
    }

    fn level_mut(&mut self, kind: &str) -> &mut Option<Access> {
        match kind {
            "acl" => &mut self.acl,
            "operator" => &mut self.operator,
            "keyring" => &mut self.keyring,
            "mesh" => &mut self.mesh,
            _ => &mut self.peering,
        }
    }

    /// The named rules under one `service`/`service_prefix`/... item: an
    /// object of `name { policy = ... }` (HCL blocks and JSON objects alike),
    /// or a JSON list of such objects.
    fn named_rules(
        &mut self,
        r: Resource,
        prefix: bool,
        kind: &str,
        value: Value,
        at: Pos,
    ) -> Result<(), String> {
        match value {
            Value::Obj(items) => {
                for item in items {
                    self.named_rule(r, prefix, kind, item)?;
                }
                Ok(())
            }
            Value::List(values) => {
                for (at, value) in values {
                    match value {
                        Value::Obj(items) => {
                            for item in items {
                                self.named_rule(r, prefix, kind, item)?;
                            }
                        }
                        other => {
                            return Err(format!(
                                "{kind}: expected an object of named rules, found {} ({at})",
                                other.describe()
                            ))
                        }
                    }
                }
                Ok(())
            }
            other => Err(format!(
                "{kind}: expected named rules like {kind} \"<name>\" {{ policy = \"read\" }}, \
                 found {} ({at})",
                other.describe()
            )),
        }
    }

    /// One `name { policy = "..." }` rule (or a JSON list of bodies for it).
    fn named_rule(
        &mut self,
        r: Resource,
        prefix: bool,
        kind: &str,
        item: Item,
    ) -> Result<(), String> {
        let Item {
            key: name,
            pos,
            value,
            value_pos,
        } = item;
        let bodies = match value {
            Value::Obj(body) => vec![(value_pos, body)],
            Value::List(values) => {
                let mut bodies = Vec::new();
                for (at, value) in values {
                    match value {
                        Value::Obj(body) => bodies.push((at, body)),
                        other => {
                            return Err(format!(
                                "{kind} {name:?}: expected {{ policy = \"...\" }}, found {} ({at})",
                                other.describe()
                            ))
                        }
                    }
                }
                bodies
            }
            other if matches!(name.as_str(), "policy" | "intentions") => {
                return Err(format!(
                    "{kind}: a rule needs a name, like {kind} \"<name>\" {{ {name} = ... }}; \
                     found {name} = {} ({pos})",
                    other.describe()
                ))
            }
            other => {
                return Err(format!(
                    "{kind} {name:?}: expected {{ policy = \"...\" }}, found {} ({value_pos})",
                    other.describe()
                ))
            }
        };
        for (at, body) in bodies {
            let access = rule_body(r, kind, &name, body, at)?;
            self.add(r, &name, prefix, access);
        }
        Ok(())
    }
}

/// The level of `acl = "..."` and its kin: read, write or deny; "" is no
/// rule, as Consul takes it.
fn top_level(kind: &str, item: &Item) -> Result<Option<Access>, String> {
    let at = item.value_pos;
    match &item.value {
        Value::Str(s) if s.is_empty() => Ok(None),
        Value::Str(s) => match Access::parse(s) {
            Some(Access::List) => Err(format!(
                "{kind}: \"list\" is only a level for key and key_prefix rules; \
                 use read, write or deny ({at})"
            )),
            Some(access) => Ok(Some(access)),
            None => Err(format!(
                "{kind}: {s:?} is not one of read, write, deny ({at})"
            )),
        },
        other => Err(format!(
            "{kind}: expected a level like {kind} = \"read\", found {} ({at})",
            other.describe()
        )),
    }
}

/// The body of one named rule: `policy` (required), and for services
/// `intentions` (checked, then ignored: shoal has no intentions).
fn rule_body(
    r: Resource,
    kind: &str,
    name: &str,
    body: Vec<Item>,
    at: Pos,
) -> Result<Access, String> {
    let mut policy = None;
    let mut intentions_seen = false;
    for item in body {
        let key = item.key.as_str();
        let is_intentions = key == "intentions" && r == Resource::Service;
        if key != "policy" && !is_intentions {
            return Err(format!(
                "{kind} {name:?}: unknown attribute {key:?} ({}); a rule takes policy{}",
                item.pos,
                if r == Resource::Service {
                    " and intentions"
                } else {
                    ""
                }
            ));
        }
        if (is_intentions && intentions_seen) || (!is_intentions && policy.is_some()) {
            return Err(format!(
                "{kind} {name:?}: {key} is set more than once ({})",
                item.pos
            ));
        }
        let Value::Str(level) = &item.value else {
            return Err(format!(
                "{kind} {name:?}: expected {key} = \"read\", found {} ({})",
                item.value.describe(),
                item.value_pos
            ));
        };
        let vat = item.value_pos;
        let allow_list = r == Resource::Key && !is_intentions;
        let levels = if allow_list {
            "read, write, list, deny"
        } else {
            "read, write, deny"
        };
        match Access::parse(level) {
            Some(Access::List) if !allow_list => {
                return Err(format!(
                    "{kind} {name:?}: {key} \"list\" is only a level for key and key_prefix \
                     rules; use {levels} ({vat})"
                ))
            }
            Some(_) if is_intentions => intentions_seen = true,
            Some(access) => policy = Some(access),
            None if is_intentions && level.is_empty() => intentions_seen = true,
            None => {
                return Err(format!(
                    "{kind} {name:?}: {key} {level:?} is not one of {levels} ({vat})"
                ))
            }
        }
    }
    policy.ok_or_else(|| format!("{kind} {name:?}: policy is missing ({at})"))
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
