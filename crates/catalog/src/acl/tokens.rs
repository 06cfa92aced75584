//! ACL tokens and policies as the catalog keeps them: records like every
//! other (so both stores keep and replicate them, and snapshots carry
//! them), with the two built-ins Consul creates, the anonymous token and
//! the global-management policy, present from the start.
//!
//! What a token may do is decided elsewhere ([`super::Authorizer`]); here
//! is only what is stored and the rules of changing it: unique secrets and
//! policy names, links that name existing policies, bootstrap once.

use crate::apply::Txn;
use crate::error::{Error, Result};
use crate::records::{key_acl_policy, key_acl_token, KEY_ACL_BOOTSTRAP};
use crate::state::State;
use crate::watch::Topic;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// ID of the built-in policy that grants everything.
pub const MANAGEMENT_POLICY_ID: &str = "00000000-0000-0000-0000-000000000001";
/// Name of the built-in policy that grants everything.
pub const MANAGEMENT_POLICY_NAME: &str = "global-management";
/// AccessorID of the anonymous token (requests without a token).
pub const ANONYMOUS_ACCESSOR: &str = "00000000-0000-0000-0000-000000000002";
/// SecretID of the anonymous token, as Consul names it.
pub const ANONYMOUS_SECRET: &str = "anonymous";

/// A token's link to a policy (Consul's `{"ID": .., "Name": ..}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyLink {
    /// Policy ID.
    pub id: String,
    /// Policy name, as it was when linked (refreshed on read).
    pub name: String,
}

/// An ACL token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclToken {
    /// Public ID (UUID): what lists and logs show.
    pub accessor_id: String,
    /// The secret a client sends (UUID).
    pub secret_id: String,
    /// Free text.
    pub description: String,
    /// Policies whose rules the token carries.
    pub policies: Vec<PolicyLink>,
    /// Local to this datacenter (kept; there is one datacenter).
    pub local: bool,
    /// Unix seconds after which the token no longer works.
    pub expiration_unix: Option<i64>,
    /// Unix seconds of creation.
    pub create_unix: i64,
    /// Index of the creating commit.
    pub create_index: u64,
    /// Index of the last change.
    pub modify_index: u64,
}

impl AclToken {
    /// Whether the token has expired at unix time `now`.
    pub fn expired(&self, now: i64) -> bool {
        self.expiration_unix.is_some_and(|at| at <= now)
    }
}

/// An ACL policy: named rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclPolicy {
    /// UUID.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Rules in Consul's HCL or JSON syntax (see [`super::Rules`]).
    pub rules: String,
    /// Datacenters the policy applies in (kept as given).
    pub datacenters: Vec<String>,
    /// Index of the creating commit.
    pub create_index: u64,
    /// Index of the last change.
    pub modify_index: u64,
}

/// Consul's rule for policy names.
fn valid_policy_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn management_policy() -> AclPolicy {
    AclPolicy {
        id: MANAGEMENT_POLICY_ID.into(),
        name: MANAGEMENT_POLICY_NAME.into(),
        description: "Builtin Policy that grants unlimited access".into(),
        rules: String::new(),
        datacenters: Vec::new(),
        create_index: 1,
        modify_index: 1,
    }
}

fn anonymous_token() -> AclToken {
    AclToken {
        accessor_id: ANONYMOUS_ACCESSOR.into(),
        secret_id: ANONYMOUS_SECRET.into(),
        description: "Anonymous Token".into(),
        create_index: 1,
        modify_index: 1,
        ..Default::default()
    }
}

impl State {
    /// Index of the last change to tokens or policies.
    pub fn acl_index(&self) -> u64 {
        self.table_indexes().acl
    }

    /// Every token, the anonymous one included, by AccessorID.
    pub fn acl_tokens(&self) -> Vec<Arc<AclToken>> {
        let mut out: Vec<Arc<AclToken>> = self.acl_tokens.values().cloned().collect();
        if !self.acl_tokens.contains_key(ANONYMOUS_ACCESSOR) {
            out.push(Arc::new(anonymous_token()));
            out.sort_by(|a, b| a.accessor_id.cmp(&b.accessor_id));
        }
        out
    }

    /// A token by AccessorID.
    pub fn acl_token(&self, accessor: &str) -> Option<Arc<AclToken>> {
        match self.acl_tokens.get(accessor) {
            Some(t) => Some(t.clone()),
            None if accessor == ANONYMOUS_ACCESSOR => Some(Arc::new(anonymous_token())),
            None => None,
        }
    }

    /// A token by SecretID.
    pub fn acl_token_by_secret(&self, secret: &str) -> Option<Arc<AclToken>> {
        match self.acl_secrets.get(secret) {
            Some(accessor) => self.acl_tokens.get(accessor).cloned(),
            None if secret == ANONYMOUS_SECRET => self.acl_token(ANONYMOUS_ACCESSOR),
            None => None,
        }
    }

    /// Every policy, the built-in one included, by ID.
    pub fn acl_policies(&self) -> Vec<Arc<AclPolicy>> {
        let mut out: Vec<Arc<AclPolicy>> = self.acl_policies.values().cloned().collect();
        out.push(Arc::new(management_policy()));
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// A policy by ID.
    pub fn acl_policy(&self, id: &str) -> Option<Arc<AclPolicy>> {
        if id == MANAGEMENT_POLICY_ID {
            return Some(Arc::new(management_policy()));
        }
        self.acl_policies.get(id).cloned()
    }

    /// A policy by name.
    pub fn acl_policy_by_name(&self, name: &str) -> Option<Arc<AclPolicy>> {
        if name == MANAGEMENT_POLICY_NAME {
            return Some(Arc::new(management_policy()));
        }
        self.acl_policies.values().find(|p| p.name == name).cloned()
    }

    /// The index at which ACLs were bootstrapped, if they were.
    pub fn acl_bootstrapped(&self) -> Option<u64> {
        self.acl_bootstrap
    }

    /// What the holder of `secret` may do at unix time `now`: `None` for
    /// a secret that names no token, or an expired one. Management when a
    /// policy is the built-in one, else the merged rules of the linked
    /// policies that still exist, then `default_allow`.
    pub fn acl_authorizer(
        &self,
        secret: &str,
        default_allow: bool,
        now: i64,
    ) -> Option<(Arc<AclToken>, super::Authorizer)> {
        let token = self
            .acl_token_by_secret(secret)
            .filter(|t| !t.expired(now))?;
        if token.policies.iter().any(|l| l.id == MANAGEMENT_POLICY_ID) {
            return Some((token, super::Authorizer::management()));
        }
        let policies: Vec<Arc<AclPolicy>> = token
            .policies
            .iter()
            .filter_map(|l| self.acl_policy(&l.id))
            .collect();
        let authz = super::Authorizer::of_policies(
            policies.iter().map(|p| p.rules.as_str()),
            default_allow,
        );
        Some((token, authz))
    }

    pub(crate) fn index_acl_token(&mut self, token: Arc<AclToken>) {
        if let Some(old) = self.acl_tokens.get(&token.accessor_id) {
            self.acl_secrets.remove(&old.secret_id);
        }
        self.acl_secrets
            .insert(token.secret_id.clone(), token.accessor_id.clone());
        self.acl_tokens.insert(token.accessor_id.clone(), token);
    }

    pub(crate) fn unindex_acl_token(&mut self, accessor: &str) {
        if let Some(old) = self.acl_tokens.remove(accessor) {
            self.acl_secrets.remove(&old.secret_id);
        }
    }
}

impl Txn<'_> {
    /// Creates or replaces a token: its policy links must name existing
    /// policies (by ID or name; both are filled in), its secret must be
    /// no other token's.
    pub(crate) fn acl_token_set(&mut self, mut token: AclToken) -> Result<()> {
        if token.accessor_id.is_empty() || token.secret_id.is_empty() {
            return Err(Error::invalid("a token needs an AccessorID and a SecretID"));
        }
        if let Some(owner) = self.st.acl_secrets.get(&token.secret_id) {
            if *owner != token.accessor_id {
                return Err(Error::invalid("invalid token: SecretID is already in use"));
            }
        }
        if token.accessor_id != ANONYMOUS_ACCESSOR && token.secret_id == ANONYMOUS_SECRET {
            return Err(Error::invalid("invalid token: SecretID is already in use"));
        }
        if token.accessor_id == ANONYMOUS_ACCESSOR && token.secret_id != ANONYMOUS_SECRET {
            return Err(Error::invalid(
                "the anonymous token's SecretID cannot be changed",
            ));
        }
        let mut links: Vec<PolicyLink> = Vec::new();
        for link in &token.policies {
            let found = if link.id.is_empty() {
                self.st.acl_policy_by_name(&link.name)
            } else {
                self.st.acl_policy(&link.id)
            };
            let policy = found.ok_or_else(|| {
                Error::invalid(format!(
                    "cannot find policy {}",
                    if link.id.is_empty() {
                        &link.name
                    } else {
                        &link.id
                    }
                ))
            })?;
            if !links.iter().any(|l| l.id == policy.id) {
                links.push(PolicyLink {
                    id: policy.id.clone(),
                    name: policy.name.clone(),
                });
            }
        }
        token.policies = links;
        let old = self.st.acl_tokens.get(&token.accessor_id).cloned();
        token.create_index = old.as_ref().map_or(self.idx, |o| o.create_index);
        if let Some(old) = &old {
            token.create_unix = old.create_unix;
        }
        token.modify_index = self.idx;
        self.put(key_acl_token(&token.accessor_id), &token);
        self.st.index_acl_token(Arc::new(token));
        self.touch_acl();
        Ok(())
    }

    /// Deletes a token; an unknown one is not an error. The anonymous
    /// token cannot be deleted.
    pub(crate) fn acl_token_delete(&mut self, accessor: &str) -> Result<()> {
        if accessor == ANONYMOUS_ACCESSOR {
            return Err(Error::invalid(
                "Delete operation not permitted on the anonymous token",
            ));
        }
        if self.st.acl_tokens.contains_key(accessor) {
            self.st.unindex_acl_token(accessor);
            self.delete(key_acl_token(accessor));
            self.touch_acl();
        }
        Ok(())
    }

    /// Creates or replaces a policy. The rules were parsed by the caller
    /// too, but are checked here as well: no stored policy fails to load.
    pub(crate) fn acl_policy_set(&mut self, mut policy: AclPolicy) -> Result<()> {
        if policy.id.is_empty() {
            return Err(Error::invalid("a policy needs an ID"));
        }
        if !valid_policy_name(&policy.name) {
            return Err(Error::invalid(format!(
                "Invalid Policy: invalid Name {:?}: 1 to 128 letters, digits, '-' and '_'",
                policy.name
            )));
        }
        if policy.id == MANAGEMENT_POLICY_ID {
            return Err(Error::invalid(
                "Changing the built-in global-management policy is not permitted",
            ));
        }
        if let Some(other) = self.st.acl_policy_by_name(&policy.name) {
            if other.id != policy.id {
                return Err(Error::invalid(format!(
                    "Invalid Policy: A Policy with Name {:?} already exists",
                    policy.name
                )));
            }
        }
        super::Rules::parse(&policy.rules)
            .map_err(|e| Error::invalid(format!("Invalid Policy: failed to parse rules: {e}")))?;
        let old = self.st.acl_policies.get(&policy.id).cloned();
        policy.create_index = old.as_ref().map_or(self.idx, |o| o.create_index);
        policy.modify_index = self.idx;
        self.put(key_acl_policy(&policy.id), &policy);
        self.st
            .acl_policies
            .insert(policy.id.clone(), Arc::new(policy));
        self.touch_acl();
        Ok(())
    }

    /// Deletes a policy (tokens keep a dangling link, which grants
    /// nothing); an unknown one is not an error.
    pub(crate) fn acl_policy_delete(&mut self, id: &str) -> Result<()> {
        if id == MANAGEMENT_POLICY_ID {
            return Err(Error::invalid(
                "Delete operation not permitted on the built-in global-management policy",
            ));
        }
        if self.st.acl_policies.remove(id).is_some() {
            self.delete(key_acl_policy(id));
            self.touch_acl();
        }
        Ok(())
    }

    /// The first management token; refused once ACLs were bootstrapped.
    pub(crate) fn acl_bootstrap(&mut self, mut token: AclToken) -> Result<()> {
        if let Some(at) = self.st.acl_bootstrap {
            return Err(Error::Forbidden(format!(
                "Permission denied: ACL bootstrap no longer allowed (reset index: {at})"
            )));
        }
        token.policies = vec![PolicyLink {
            id: MANAGEMENT_POLICY_ID.into(),
            name: MANAGEMENT_POLICY_NAME.into(),
        }];
        self.acl_token_set(token)?;
        self.st.acl_bootstrap = Some(self.idx);
        self.put(KEY_ACL_BOOTSTRAP.to_string(), self.idx);
        Ok(())
    }

    fn touch_acl(&mut self) {
        self.dirty = true;
        self.st.tables.acl = self.idx;
        self.changes.topics.insert(Topic::Acl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;

    fn token(accessor: &str, secret: &str, policies: &[&str]) -> AclToken {
        AclToken {
            accessor_id: accessor.into(),
            secret_id: secret.into(),
            policies: policies
                .iter()
                .map(|n| PolicyLink {
                    id: String::new(),
                    name: n.to_string(),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn policy(id: &str, name: &str, rules: &str) -> AclPolicy {
        AclPolicy {
            id: id.into(),
            name: name.into(),
            rules: rules.into(),
            ..Default::default()
        }
    }

    fn apply(st: &mut State, cmd: Command) -> Result<crate::Outcome> {
        let mut before = st.clone();
        let mut txn = Txn::new(st);
        let out = txn.apply(cmd);
        let (muts, _) = txn.into_mutations();
        // Every write, followed from its records, gives the same state.
        if out.is_ok() {
            before.apply_records(&muts).unwrap();
            let again = before;
            assert_eq!(again.acl_tokens(), st.acl_tokens());
            assert_eq!(again.acl_policies(), st.acl_policies());
        }
        out
    }

    #[test]
    fn tokens_and_policies_keep_their_rules() {
        let mut st = State::default();
        // The built-ins exist from the start.
        assert_eq!(st.acl_tokens().len(), 1);
        assert!(st.acl_token_by_secret(ANONYMOUS_SECRET).is_some());
        assert!(st.acl_policy_by_name(MANAGEMENT_POLICY_NAME).is_some());
        let p = policy("p1", "web", r#"service_prefix "web-" { policy = "write" }"#);
        apply(&mut st, Command::AclPolicySet(Box::new(p.clone()))).unwrap();
        // A token linked by name gets the ID too.
        apply(
            &mut st,
            Command::AclTokenSet(Box::new(token("a1", "s1", &["web"]))),
        )
        .unwrap();
        let t = st.acl_token_by_secret("s1").unwrap();
        assert_eq!(t.policies[0].id, "p1");
        // (command, error contains)
        let cases: Vec<(Command, &str)> = vec![
            (
                Command::AclTokenSet(Box::new(token("a2", "s1", &[]))),
                "already in use",
            ),
            (
                Command::AclTokenSet(Box::new(token("a2", "s2", &["nope"]))),
                "cannot find policy nope",
            ),
            (
                Command::AclPolicySet(Box::new(policy("p2", "web", ""))),
                "already exists",
            ),
            (
                Command::AclPolicySet(Box::new(policy("p2", "bad name!", ""))),
                "invalid Name",
            ),
            (
                Command::AclPolicySet(Box::new(policy("p2", "x", "service {"))),
                "failed to parse rules",
            ),
            (
                Command::AclPolicySet(Box::new(policy(MANAGEMENT_POLICY_ID, "x", ""))),
                "not permitted",
            ),
            (
                Command::AclPolicyDelete {
                    id: MANAGEMENT_POLICY_ID.into(),
                },
                "not permitted",
            ),
            (
                Command::AclTokenDelete {
                    accessor_id: ANONYMOUS_ACCESSOR.into(),
                },
                "not permitted",
            ),
        ];
        for (cmd, want) in cases {
            let err = apply(&mut st, cmd).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should say {want}");
        }
        // A changed secret frees the old one.
        apply(
            &mut st,
            Command::AclTokenSet(Box::new(token("a1", "s9", &[]))),
        )
        .unwrap();
        assert!(st.acl_token_by_secret("s1").is_none());
        apply(
            &mut st,
            Command::AclTokenDelete {
                accessor_id: "a1".into(),
            },
        )
        .unwrap();
        assert!(st.acl_token_by_secret("s9").is_none());
    }

    #[test]
    fn bootstrap_happens_once() {
        let mut st = State::default();
        let first = apply(
            &mut st,
            Command::AclBootstrap(Box::new(token("b1", "root", &[]))),
        )
        .unwrap();
        let t = st.acl_token_by_secret("root").unwrap();
        assert_eq!(t.policies[0].id, MANAGEMENT_POLICY_ID);
        assert_eq!(st.acl_bootstrapped(), Some(first.index));
        let again = apply(
            &mut st,
            Command::AclBootstrap(Box::new(token("b2", "other", &[]))),
        )
        .unwrap_err();
        assert!(matches!(again, Error::Forbidden(_)), "{again}");
        assert!(again.to_string().contains("no longer allowed"), "{again}");
        assert!(st.acl_token_by_secret("other").is_none());
    }
}
