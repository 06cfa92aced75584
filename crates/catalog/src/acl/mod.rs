//! Consul's ACL rule engine: policy rules parsed from Consul's HCL (or its
//! JSON form) into [`Rules`], and the [`Authorizer`] that answers, for a
//! token's merged policies and the agent's default policy, whether an
//! operation is allowed; and the tokens and policies the catalog keeps
//! ([`AclToken`], [`AclPolicy`]). Requests are checked by the API crate.
//!
//! The semantics follow Consul's `acl` package:
//!
//! - a rule names a resource exactly (`service "web"`) or by prefix
//!   (`service_prefix "we"`; `""` matches every name); for a name, its
//!   exact rule wins over every prefix rule, and otherwise the longest
//!   matching prefix decides;
//! - levels: `write` grants read, list and write; `list` (keys only) grants
//!   read and list; `read` grants read; `deny` grants nothing;
//! - several policies merge rule by rule (the same exact name, or the same
//!   prefix): deny over write over list over read;
//! - where no rule decides, the default policy does, except for ACL
//!   management, which only an `acl` rule or management grants.

mod access;
mod authorizer;
mod rules;
mod syntax;
mod tokens;

pub use access::{Access, Resource};
pub use authorizer::Authorizer;
pub use rules::{NamedRules, Rules, MAX_RULES_LEN};
pub use syntax::MAX_DEPTH;
pub use tokens::{
    AclPolicy, AclToken, PolicyLink, ANONYMOUS_ACCESSOR, ANONYMOUS_SECRET, MANAGEMENT_POLICY_ID,
    MANAGEMENT_POLICY_NAME,
};
