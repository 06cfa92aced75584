//! The authorizer's decisions against Consul's documented examples and its
//! own authorizer and merger tests.

use super::*;
use Resource::*;

fn authz(policies: &[&str], default_allow: bool) -> Authorizer {
    let rules: Vec<Rules> = policies
        .iter()
        .map(|p| Rules::parse(p).unwrap_or_else(|e| panic!("{p}: {e}")))
        .collect();
    Authorizer::new(&rules.iter().collect::<Vec<_>>(), default_allow)
}

/// What read, list and write answer, as "rlw" with "-" for a refusal.
fn answers(a: &Authorizer, r: Resource, name: &str) -> String {
    [
        (a.read(r, name), 'r'),
        (a.list(r, name), 'l'),
        (a.write(r, name), 'w'),
    ]
    .iter()
    .map(|&(yes, c)| if yes { c } else { '-' })
    .collect()
}

// The Consul docs' examples (ACL policies and ACL rules pages).
const DOCS_POLICY: &str = r#"
    key_prefix "" { policy = "read" }
    key_prefix "foo/" { policy = "write" }
    key_prefix "foo/private/" { policy = "deny" }
    key "foo/bar/secret" { policy = "deny" }
    operator = "read"
"#;
const DOCS_KEYS: &str = r#"key_prefix "" { policy = "read" }
    key "foo" { policy = "write" }
    key "bar" { policy = "deny" }"#;
const DOCS_LIST: &str = r#"key_prefix "" { policy = "deny" }
    key_prefix "bar" { policy = "list" }
    key_prefix "baz" { policy = "read" }"#;
const DOCS_SERVICES: &str = r#"service_prefix "" { policy = "read" }
    service "app" { policy = "write" }
    service "admin" { policy = "deny" }"#;
const DOCS_NODES: &str = r#"node_prefix "" { policy = "read" }
    node "app" { policy = "write" }
    node "admin" { policy = "deny" }"#;
const DOCS_AGENTS: &str = r#"agent "foo" { policy = "write" }
    agent_prefix "" { policy = "read" }
    agent_prefix "bar" { policy = "deny" }"#;
const DOCS_EVENTS: &str = r#"event_prefix "" { policy = "read" }
    event "deploy" { policy = "write" }"#;
const DOCS_QUERIES: &str = r#"query_prefix "" { policy = "read" }
    query "foo" { policy = "write" }"#;

// Consul's acl_test.go: "AgentBasicDefault*" (one policy over a default).
const AGENT_BASIC: &str = r#"agent "root" { policy = "read" }
    agent "root-nope" { policy = "deny" }
    agent "root-rw" { policy = "write" }
    agent_prefix "root" { policy = "read" }
    agent_prefix "root-nope" { policy = "deny" }
    agent_prefix "root-rw" { policy = "write" }"#;
// acl_test.go "Parent": two policies, default deny.
const PARENT_1: &str = r#"key "foo/" { policy = "write" }
    key "bar/" { policy = "read" }
    key_prefix "foo/" { policy = "write" }
    key_prefix "bar/" { policy = "read" }
    query "other" { policy = "write" }
    query "foo" { policy = "read" }
    query_prefix "other" { policy = "write" }
    query_prefix "foo" { policy = "read" }
    service "other" { policy = "write" }
    service "foo" { policy = "read" }
    service_prefix "other" { policy = "write" }
    service_prefix "foo" { policy = "read" }"#;
const PARENT_2: &str = r#"key "foo/priv/" { policy = "read" }
    key "bar/" { policy = "deny" }
    key "zip/" { policy = "read" }
    key_prefix "foo/priv/" { policy = "read" }
    key_prefix "bar/" { policy = "deny" }
    key_prefix "zip/" { policy = "read" }
    query "bar" { policy = "deny" }
    query_prefix "bar" { policy = "deny" }
    service "bar" { policy = "deny" }
    service_prefix "bar" { policy = "deny" }"#;
// acl_test.go "ComplexDefaultAllow" (the parts shoal has).
const COMPLEX: &str = r#"
    event "" { policy = "read" }
    event "foo" { policy = "write" }
    event "bar" { policy = "deny" }
    event_prefix "" { policy = "read" }
    event_prefix "foo" { policy = "write" }
    event_prefix "bar" { policy = "deny" }
    key "foo/" { policy = "write" }
    key "foo/priv/" { policy = "deny" }
    key "bar/" { policy = "deny" }
    key "zip/" { policy = "read" }
    key "zap/" { policy = "list" }
    key_prefix "foo/" { policy = "write" }
    key_prefix "foo/priv/" { policy = "deny" }
    key_prefix "bar/" { policy = "deny" }
    key_prefix "zip/" { policy = "read" }
    key_prefix "zap/" { policy = "list" }
    service "" { policy = "write" }
    service "foo" { policy = "read" }
    service "bar" { policy = "deny" }
    service "barfoo" { policy = "write" intentions = "write" }
    service_prefix "" { policy = "write" }
    service_prefix "foo" { policy = "read" }
    service_prefix "bar" { policy = "deny" }
    service_prefix "barfoo" { policy = "write" intentions = "write" }
"#;
// policy_test.go TestMergePolicies: the same rule in two policies.
const MERGE_1: &str = r#"agent "foo" { policy = "write" }
    agent "bar" { policy = "read" }
    agent "baz" { policy = "write" }
    agent_prefix "000" { policy = "write" }
    agent_prefix "111" { policy = "read" }
    agent_prefix "222" { policy = "write" }
    key "zoo" { policy = "list" }
    key_prefix "333" { policy = "list" }"#;
const MERGE_2: &str = r#"agent "foo" { policy = "read" }
    agent "baz" { policy = "deny" }
    agent_prefix "000" { policy = "read" }
    agent_prefix "222" { policy = "deny" }
    key "zoo" { policy = "read" }
    key_prefix "333" { policy = "read" }"#;

/// Each row: the policies, the default, the resource and name, and what
/// read, list and write answer. For resources other than keys, list is
/// read.
#[test]
fn precedence() {
    #[rustfmt::skip]
    let rows: &[(&[&str], bool, Resource, &str, &str)] = &[
        // Docs: the empty prefix reads all keys, foo/ writes, a deeper
        // prefix and an exact key deny.
        (&[DOCS_POLICY], false, Key, "other", "r--"),
        (&[DOCS_POLICY], false, Key, "foo/x", "rlw"),
        (&[DOCS_POLICY], false, Key, "foo/private", "rlw"),
        (&[DOCS_POLICY], false, Key, "foo/private/", "---"),
        (&[DOCS_POLICY], false, Key, "foo/private/x", "---"),
        (&[DOCS_POLICY], false, Key, "foo/bar/secret", "---"),
        (&[DOCS_POLICY], false, Key, "foo/bar/secrets", "rlw"),
        (&[DOCS_POLICY], true, Key, "other", "r--"),
        // Docs: exact rules name one key only.
        (&[DOCS_KEYS], false, Key, "foo", "rlw"),
        (&[DOCS_KEYS], false, Key, "foo/x", "r--"),
        (&[DOCS_KEYS], false, Key, "bar", "---"),
        (&[DOCS_KEYS], false, Key, "bar/x", "r--"),
        (&[DOCS_KEYS], true, Key, "baz", "r--"),
        // Docs: list grants read and list, read grants no list.
        (&[DOCS_LIST], true, Key, "bar/x", "rl-"),
        (&[DOCS_LIST], true, Key, "bar", "rl-"),
        (&[DOCS_LIST], true, Key, "baz", "r--"),
        (&[DOCS_LIST], true, Key, "bazooka", "r--"),
        (&[DOCS_LIST], true, Key, "other", "---"),
        // The brief's: an exact deny under a readable prefix, a
        // read-only prefix under a writable one.
        (&[r#"key_prefix "" { policy = "read" } key "foo/private" { policy = "deny" }"#], false, Key, "foo/private", "---"),
        (&[r#"key_prefix "" { policy = "read" } key "foo/private" { policy = "deny" }"#], false, Key, "foo/private/x", "r--"),
        (&[r#"key_prefix "foo/" { policy = "write" } key_prefix "foo/bar/" { policy = "read" }"#], false, Key, "foo/bar/x", "r--"),
        (&[r#"key_prefix "foo/" { policy = "write" } key_prefix "foo/bar/" { policy = "read" }"#], false, Key, "foo/bar", "rlw"),
        (&[r#"key_prefix "foo/" { policy = "write" } key_prefix "foo/bar/" { policy = "read" }"#], false, Key, "foo/baz", "rlw"),
        (&[r#"key_prefix "foo/" { policy = "write" } key_prefix "foo/bar/" { policy = "read" }"#], false, Key, "x", "---"),
        (&[r#"key_prefix "foo/" { policy = "write" } key_prefix "foo/bar/" { policy = "read" }"#], true, Key, "x", "rlw"),
        // Docs: services and nodes, an empty prefix to read, one to
        // write and one denied by exact name.
        (&[DOCS_SERVICES], false, Service, "app", "rlw"),
        (&[DOCS_SERVICES], false, Service, "admin", "---"),
        (&[DOCS_SERVICES], false, Service, "administrator", "rl-"),
        (&[DOCS_SERVICES], false, Service, "web", "rl-"),
        (&[DOCS_NODES], false, Node, "app", "rlw"),
        (&[DOCS_NODES], false, Node, "admin", "---"),
        (&[DOCS_NODES], true, Node, "db", "rl-"),
        (&[DOCS_AGENTS], false, Agent, "foo", "rlw"),
        (&[DOCS_AGENTS], false, Agent, "food", "rl-"),
        (&[DOCS_AGENTS], false, Agent, "bar", "---"),
        (&[DOCS_AGENTS], false, Agent, "barn", "---"),
        (&[DOCS_AGENTS], false, Agent, "other", "rl-"),
        (&[DOCS_EVENTS], false, Event, "deploy", "rlw"),
        (&[DOCS_EVENTS], false, Event, "deploy-2", "rl-"),
        (&[DOCS_QUERIES], false, Query, "foo", "rlw"),
        (&[DOCS_QUERIES], false, Query, "foobar", "rl-"),
        // Consul: one policy over either default.
        (&[AGENT_BASIC], false, Agent, "ro", "---"),
        (&[AGENT_BASIC], true, Agent, "ro", "rlw"),
        (&[AGENT_BASIC], false, Agent, "root", "rl-"),
        (&[AGENT_BASIC], false, Agent, "root-ro", "rl-"),
        (&[AGENT_BASIC], false, Agent, "root-rw", "rlw"),
        (&[AGENT_BASIC], false, Agent, "root-rw-sub", "rlw"),
        (&[AGENT_BASIC], true, Agent, "root-nope", "---"),
        (&[AGENT_BASIC], true, Agent, "root-nope-sub", "---"),
        (&[r#"query "other" { policy = "deny" } query_prefix "other" { policy = "deny" }"#], true, Query, "foo", "rlw"),
        (&[r#"query "other" { policy = "deny" } query_prefix "other" { policy = "deny" }"#], true, Query, "other", "---"),
        // Consul "Parent": two policies, default deny.
        (&[PARENT_1, PARENT_2], false, Key, "other", "---"),
        (&[PARENT_1, PARENT_2], false, Key, "foo/test", "rlw"),
        (&[PARENT_1, PARENT_2], false, Key, "foo/priv/test", "r--"),
        (&[PARENT_1, PARENT_2], false, Key, "bar/any", "---"),
        (&[PARENT_1, PARENT_2], false, Key, "zip/test", "r--"),
        (&[PARENT_1, PARENT_2], false, Service, "fail", "---"),
        (&[PARENT_1, PARENT_2], false, Service, "other", "rlw"),
        (&[PARENT_1, PARENT_2], false, Service, "foo", "rl-"),
        (&[PARENT_1, PARENT_2], false, Service, "bar", "---"),
        (&[PARENT_1, PARENT_2], false, Query, "foobar", "rl-"),
        (&[PARENT_1, PARENT_2], false, Query, "barbaz", "---"),
        (&[PARENT_1, PARENT_2], false, Query, "nope", "---"),
        // Consul "ComplexDefaultAllow".
        (&[COMPLEX], true, Key, "other", "rlw"),
        (&[COMPLEX], true, Key, "", "rlw"),
        (&[COMPLEX], true, Key, "foo/test", "rlw"),
        (&[COMPLEX], true, Key, "foo/priv/test", "---"),
        (&[COMPLEX], true, Key, "bar/any", "---"),
        (&[COMPLEX], true, Key, "zip/test", "r--"),
        (&[COMPLEX], true, Key, "zap/test", "rl-"),
        (&[COMPLEX], true, Service, "other", "rlw"),
        (&[COMPLEX], true, Service, "foo", "rl-"),
        (&[COMPLEX], true, Service, "foobar", "rl-"),
        (&[COMPLEX], true, Service, "bar", "---"),
        (&[COMPLEX], true, Service, "barfo", "---"),
        (&[COMPLEX], true, Service, "barfoo", "rlw"),
        (&[COMPLEX], true, Service, "barfoo2", "rlw"),
        (&[COMPLEX], true, Event, "foobar", "rlw"),
        (&[COMPLEX], true, Event, "barbaz", "---"),
        (&[COMPLEX], true, Event, "baz", "rl-"),
        // Consul's merger: the same rule in two policies takes deny over
        // write over list over read.
        (&[MERGE_1, MERGE_2], false, Agent, "foo", "rlw"),
        (&[MERGE_1, MERGE_2], false, Agent, "bar", "rl-"),
        (&[MERGE_1, MERGE_2], false, Agent, "baz", "---"),
        (&[MERGE_1, MERGE_2], false, Agent, "000x", "rlw"),
        (&[MERGE_1, MERGE_2], false, Agent, "111x", "rl-"),
        (&[MERGE_1, MERGE_2], false, Agent, "222x", "---"),
        (&[MERGE_1, MERGE_2], false, Key, "zoo", "rl-"),
        (&[MERGE_1, MERGE_2], false, Key, "333x", "rl-"),
        // A deny in one policy holds against a broader grant in another.
        (&[r#"service_prefix "" { policy = "write" }"#, r#"service "db" { policy = "deny" }"#], false, Service, "db", "---"),
        (&[r#"service_prefix "" { policy = "write" }"#, r#"service "db" { policy = "deny" }"#], false, Service, "web", "rlw"),
        // Merging is rule by rule: an exact read rule from one policy
        // wins over another's write-everything prefix (as in Consul).
        (&[r#"key_prefix "" { policy = "write" }"#, r#"key "a" { policy = "read" }"#], false, Key, "a", "r--"),
        (&[r#"key_prefix "" { policy = "write" }"#, r#"key "a" { policy = "read" }"#], false, Key, "b", "rlw"),
        // No policies: the default alone.
        (&[], false, Session, "n1", "---"),
        (&[], true, Session, "n1", "rlw"),
        (&[r#"session "n1" { policy = "write" } session_prefix "" { policy = "read" }"#], false, Session, "n1", "rlw"),
        (&[r#"session "n1" { policy = "write" } session_prefix "" { policy = "read" }"#], false, Session, "n2", "rl-"),
    ];
    for (i, &(policies, default_allow, r, name, want)) in rows.iter().enumerate() {
        let a = authz(policies, default_allow);
        assert_eq!(
            answers(&a, r, name),
            want,
            "row {i}: {r:?} {name:?} default_allow={default_allow}"
        );
    }
}

/// Consul's "Prefer Exact Matches", for every resource: exact foo write,
/// exact football deny, prefixes foot and fo read.
#[test]
fn exact_over_longest_prefix() {
    let rows = [
        ("fo", 'r'),
        ("for", 'r'),
        ("foo", 'w'),
        ("foot", 'r'),
        ("foot2", 'r'),
        ("food", 'r'),
        ("football", '-'),
        ("f", '-'),
    ];
    for r in Resource::ALL {
        let k = r.kind();
        let policy = format!(
            r#"{k} "foo" {{ policy = "write" }}
            {k} "football" {{ policy = "deny" }}
            {k}_prefix "foot" {{ policy = "read" }}
            {k}_prefix "fo" {{ policy = "read" }}"#
        );
        let a = authz(&[&policy], false);
        for (name, level) in rows {
            let want = match (level, r) {
                ('w', _) => "rlw",
                ('r', Resource::Key) => "r--",
                ('r', _) => "rl-",
                _ => "---",
            };
            assert_eq!(answers(&a, r, name), want, "{k} {name:?}");
        }
    }
}

#[test]
fn key_write_prefix() {
    #[rustfmt::skip]
    let rows: &[(&[&str], bool, &str, bool)] = &[
        // Consul "Parent" and "ComplexDefaultAllow".
        (&[PARENT_1, PARENT_2], false, "other", false),
        (&[PARENT_1, PARENT_2], false, "foo/test", true),
        (&[PARENT_1, PARENT_2], false, "foo/priv/test", false),
        (&[PARENT_1, PARENT_2], false, "bar/any", false),
        (&[PARENT_1, PARENT_2], false, "zip/test", false),
        (&[COMPLEX], true, "other", true),
        (&[COMPLEX], true, "foo/test", true),
        (&[COMPLEX], true, "foo/priv/test", false),
        (&[COMPLEX], true, "bar/any", false),
        (&[COMPLEX], true, "zip/test", false),
        (&[COMPLEX], true, "zap/test", false),
        // foo/ itself is writable, but foo/priv/ under it is not.
        (&[COMPLEX], true, "foo/", false),
        (&[COMPLEX], true, "", false),
        // A read-only key under the prefix blocks it; the default decides
        // where no rule governs and none under blocks.
        (&[r#"key "foo/bar" { policy = "read" }"#], true, "foo", false),
        (&[r#"key "foo/bar" { policy = "read" }"#], true, "bar", true),
        (&[r#"key "foo/bar" { policy = "read" }"#], false, "bar", false),
        // An exact rule at the prefix itself counts as under it.
        (&[r#"key_prefix "" { policy = "write" } key "foo/" { policy = "deny" }"#], false, "foo/", false),
        (&[r#"key_prefix "" { policy = "write" } key "foo/" { policy = "deny" }"#], false, "fo", false),
        (&[r#"key_prefix "" { policy = "write" } key "foo/" { policy = "deny" }"#], false, "foo/x", true),
        // The governing prefix must grant write itself; exact rules do
        // not govern.
        (&[r#"key_prefix "a/" { policy = "read" }"#], true, "a/b", false),
        (&[r#"key_prefix "a/" { policy = "read" }"#], true, "a", false),
        (&[r#"key "a/b" { policy = "write" }"#], false, "a/b", false),
        (&[r#"key "a/b" { policy = "write" }"#], true, "a/b", true),
        // list is not write.
        (&[r#"key_prefix "" { policy = "write" } key_prefix "a/" { policy = "list" }"#], false, "", false),
        (&[r#"key_prefix "" { policy = "write" } key_prefix "a/" { policy = "list" }"#], false, "b", true),
        (&[r#"key_prefix "" { policy = "write" } key_prefix "a/" { policy = "write" } key "a/b" { policy = "write" }"#], false, "", true),
        (&[], true, "anything", true),
        (&[], false, "anything", false),
    ];
    for (i, &(policies, default_allow, prefix, want)) in rows.iter().enumerate() {
        let a = authz(policies, default_allow);
        assert_eq!(
            a.key_write_prefix(prefix),
            want,
            "row {i}: {prefix:?} default_allow={default_allow}"
        );
    }
}

#[test]
fn read_prefix() {
    use Resource::*;
    #[rustfmt::skip]
    let rows: &[(&str, bool, Resource, &str, bool)] = &[
        // Everything readable: the stream's test.
        (r#"service_prefix "" { policy = "read" }"#, false, Service, "", true),
        (r#"service_prefix "" { policy = "write" }"#, false, Service, "", true),
        // One service denied under the prefix: not every name.
        (r#"service_prefix "" { policy = "read" } service "private" { policy = "deny" }"#, false, Service, "", false),
        (r#"service_prefix "" { policy = "read" } service "private" { policy = "deny" }"#, false, Service, "pub", true),
        // Only a part readable.
        (r#"service_prefix "web-" { policy = "write" }"#, false, Service, "", false),
        (r#"service_prefix "web-" { policy = "write" }"#, false, Service, "web-", true),
        // The default covers what no rule does.
        ("", true, Node, "", true),
        ("", false, Node, "", false),
        (r#"node "n1" { policy = "deny" }"#, true, Node, "", false),
        // Keys: list grants read, deny under blocks.
        (r#"key_prefix "app/" { policy = "list" }"#, false, Key, "app/", true),
        (r#"key_prefix "app/" { policy = "read" } key "app/secret" { policy = "deny" }"#, false, Key, "app/", false),
    ];
    for (i, &(rules, default_allow, r, prefix, want)) in rows.iter().enumerate() {
        let a = authz(&[rules], default_allow);
        assert_eq!(
            a.read_prefix(r, prefix),
            want,
            "row {i}: {rules} {prefix:?}"
        );
    }
}

/// acl, operator, keyring, mesh and peering; "acl_w" also stands for
/// snapshots.
#[test]
fn levels() {
    type Check = fn(&Authorizer) -> bool;
    let checks: [(&str, Check); 11] = [
        ("acl_r", Authorizer::acl_read),
        ("acl_w", Authorizer::acl_write),
        ("snap", Authorizer::snapshot),
        ("op_r", Authorizer::operator_read),
        ("op_w", Authorizer::operator_write),
        ("kr_r", Authorizer::keyring_read),
        ("kr_w", Authorizer::keyring_write),
        ("mesh_r", Authorizer::mesh_read),
        ("mesh_w", Authorizer::mesh_write),
        ("peer_r", Authorizer::peering_read),
        ("peer_w", Authorizer::peering_write),
    ];
    #[rustfmt::skip]
    let rows: &[(&[&str], bool, &str)] = &[
        // The default never grants ACL management (Consul's allow-all
        // has allowManage off), but grants the rest.
        (&[], false, "-----------"),
        (&[], true,  "---yyyyyyyy"),
        (&[r#"acl = "read""#], false, "y----------"),
        (&[r#"acl = "write""#], false, "yyy--------"),
        (&[r#"acl = "write""#, r#"acl = "deny""#], true, "---yyyyyyyy"),
        (&[r#"acl = "read""#, r#"acl = "write""#], false, "yyy--------"),
        (&[r#"keyring = "deny""#], true, "---yy--yyyy"),
        (&[r#"keyring = "read""#], true, "---yyy-yyyy"),
        (&[r#"keyring = "read""#], false, "-----y-----"),
        // mesh and peering fall back to operator, then to the default.
        (&[r#"operator = "read""#], false, "---y---y-y-"),
        (&[r#"operator = "read""#], true, "---y-yyy-y-"),
        (&[r#"operator = "write" mesh = "deny""#], false, "---yy----yy"),
        (&[r#"operator = "deny" mesh = "read" peering = "write""#], true, "-----yyy-yy"),
        (&[r#"operator = "read""#, r#"operator = "write""#], false, "---yy--yyyy"),
        (&[r#"operator = "write""#, r#"operator = "deny""#], true, "-----yy----"),
    ];
    for (i, &(policies, default_allow, want)) in rows.iter().enumerate() {
        let a = authz(policies, default_allow);
        let got: String = checks
            .iter()
            .map(|(_, c)| if c(&a) { 'y' } else { '-' })
            .collect();
        assert_eq!(
            got,
            want,
            "row {i}: {policies:?} default_allow={default_allow} ({:?})",
            checks.map(|c| c.0)
        );
    }
}

#[test]
fn management_and_allow_all_grant_everything() {
    for a in [Authorizer::management(), Authorizer::allow_all()] {
        assert!(a.is_management());
        assert!(a.acl_read() && a.acl_write() && a.snapshot());
        assert!(a.operator_write() && a.keyring_write() && a.mesh_write() && a.peering_write());
        assert!(a.key_write_prefix(""));
        for r in Resource::ALL {
            assert_eq!(answers(&a, r, "anything"), "rlw");
        }
    }
    for default_allow in [false, true] {
        let a = authz(&[r#"acl = "write""#], default_allow);
        assert!(!a.is_management(), "acl = write is not management");
    }
}

/// The built-in global-management policy's rules, written out, decide as
/// the management authorizer does.
#[test]
fn global_management_rules_match_management() {
    let mut text = String::from(
        "acl = \"write\"\noperator = \"write\"\nkeyring = \"write\"\n\
         mesh = \"write\"\npeering = \"write\"\n",
    );
    for r in Resource::ALL {
        text.push_str(&format!(
            "{}_prefix \"\" {{ policy = \"write\" }}\n",
            r.kind()
        ));
    }
    let a = authz(&[&text], false);
    let m = Authorizer::management();
    for r in Resource::ALL {
        for name in ["", "a", "web/x"] {
            assert_eq!(answers(&a, r, name), answers(&m, r, name));
        }
    }
    assert!(a.acl_write() && a.snapshot() && a.key_write_prefix("") && a.operator_write());
}
