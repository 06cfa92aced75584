//! Consul's ACL rule engine: policy rules parsed from Consul's HCL (or its
//! JSON form) into [`Rules`]. No network and no storage here: tokens and
//! policies are kept, and requests checked, by the layers above.
//!
//! A rule names a resource exactly (`service "web"`) or by prefix
//! (`service_prefix "we"`; `""` matches every name) and gives it a level:
//! deny, read, list (keys only) or write. The same rule given twice, in one
//! policy or across several, merges: deny over write over list over read.

mod access;
mod rules;
mod syntax;

pub use access::{Access, Resource};
pub use rules::{NamedRules, Rules, MAX_RULES_LEN};
pub use syntax::MAX_DEPTH;
