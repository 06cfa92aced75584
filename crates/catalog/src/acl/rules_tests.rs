//! Parsing rules: HCL and JSON forms alike, Consul's layouts, and clear
//! errors for everything else.

use super::*;

fn parsed(text: &str) -> Rules {
    Rules::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Consul's policy_test.go "Basic" policy, written in each form.
const BASIC_HCL: &str = r#"
    # Comments of all three kinds are allowed.
    agent_prefix "bar" { policy = "write" }
    agent "foo" { policy = "read" }
    event_prefix "" { policy = "read" }
    event "foo" { policy = "write" }
    event "bar" { policy = "deny" }
    key_prefix "" {
        policy = "read"
    }
    key_prefix "foo/" { policy = "write" }  // trailing comment
    key_prefix "foo/bar/" { policy = "read" }
    key "foo/bar/baz" { policy = "deny" }
    keyring = "deny"
    node_prefix "" { policy = "read" }
    node "foo" { policy = "write" }
    node "bar" { policy = "deny" }
    /* block
       comment */
    operator = "deny"
    mesh = "deny"
    peering = "deny"
    service_prefix "" { policy = "write" }
    service "foo" { policy = "read" }
    session "foo" { policy = "write" }
    session "bar" { policy = "deny" }
    session_prefix "baz" { policy = "deny" }
    query_prefix "" { policy = "read" }
    query "foo" { policy = "write" }
    query "bar" { policy = "deny" }
"#;

const BASIC_JSON: &str = r#"{
    "agent_prefix": {"bar": {"policy": "write"}},
    "agent": {"foo": {"policy": "read"}},
    "event_prefix": {"": {"policy": "read"}},
    "event": {"foo": {"policy": "write"}, "bar": {"policy": "deny"}},
    "key_prefix": {
        "": {"policy": "read"},
        "foo/": {"policy": "write"},
        "foo/bar/": {"policy": "read"}
    },
    "key": {"foo/bar/baz": {"policy": "deny"}},
    "keyring": "deny",
    "node_prefix": {"": {"policy": "read"}},
    "node": {"foo": {"policy": "write"}, "bar": {"policy": "deny"}},
    "operator": "deny",
    "mesh": "deny",
    "peering": "deny",
    "service_prefix": {"": {"policy": "write"}},
    "service": {"foo": {"policy": "read"}},
    "session_prefix": {"baz": {"policy": "deny"}},
    "session": {"foo": {"policy": "write"}, "bar": {"policy": "deny"}},
    "query_prefix": {"": {"policy": "read"}},
    "query": {"foo": {"policy": "write"}, "bar": {"policy": "deny"}}
}"#;

#[test]
fn hcl_and_json_parse_to_the_same_rules() {
    let hcl = parsed(BASIC_HCL);
    assert_eq!(hcl, parsed(BASIC_JSON));

    let mut want = Rules::default();
    for (r, name, prefix, a) in [
        (Resource::Agent, "bar", true, Access::Write),
        (Resource::Agent, "foo", false, Access::Read),
        (Resource::Event, "", true, Access::Read),
        (Resource::Event, "foo", false, Access::Write),
        (Resource::Event, "bar", false, Access::Deny),
        (Resource::Key, "", true, Access::Read),
        (Resource::Key, "foo/", true, Access::Write),
        (Resource::Key, "foo/bar/", true, Access::Read),
        (Resource::Key, "foo/bar/baz", false, Access::Deny),
        (Resource::Node, "", true, Access::Read),
        (Resource::Node, "foo", false, Access::Write),
        (Resource::Node, "bar", false, Access::Deny),
        (Resource::Service, "", true, Access::Write),
        (Resource::Service, "foo", false, Access::Read),
        (Resource::Session, "foo", false, Access::Write),
        (Resource::Session, "bar", false, Access::Deny),
        (Resource::Session, "baz", true, Access::Deny),
        (Resource::Query, "", true, Access::Read),
        (Resource::Query, "foo", false, Access::Write),
        (Resource::Query, "bar", false, Access::Deny),
    ] {
        want.add(r, name, prefix, a);
    }
    want.keyring = Some(Access::Deny);
    want.operator = Some(Access::Deny);
    want.mesh = Some(Access::Deny);
    want.peering = Some(Access::Deny);
    assert_eq!(hcl, want);
}

/// Layouts Consul accepts (HCL 1 is lenient), each equal to the plain form.
#[test]
fn consul_layouts() {
    #[rustfmt::skip]
    let rows: &[(&str, &str)] = &[
        // Two attributes on a block's line (Consul's own tests).
        (r#"service "foo" { policy = "write" intentions = "read" }"#,
         "service \"foo\" {\n policy = \"write\"\n}"),
        // Blocks and attributes on one line (the HTTP API docs' example).
        (r#"key "" { policy = "read" } key "foo/" { policy = "write" } operator = "read""#,
         "key \"\" {\n policy = \"read\"\n}\nkey \"foo/\" {\n policy = \"write\"\n}\noperator = \"read\""),
        // Commas between attributes.
        (r#"key "a" { policy = "read", } operator = "read","#, r#"key "a" { policy = "read" } operator = "read""#),
        // An object assignment, a label-less block of blocks, an unquoted
        // label, and JSON's list of objects: all one rule.
        (r#"service = { "web" = { policy = "read" } }"#, r#"service "web" { policy = "read" }"#),
        (r#"service { web { policy = "read" } }"#, r#"service "web" { policy = "read" }"#),
        (r#"service web { policy = "read" }"#, r#"service "web" { policy = "read" }"#),
        (r#"{"service": [{"web": {"policy": "read"}}]}"#, r#"service "web" { policy = "read" }"#),
        (r#"{"service": {"web": [{"policy": "read"}]}}"#, r#"service "web" { policy = "read" }"#),
        // Levels in any case, as Consul lowercases them.
        (r#"key "a" { policy = "WRITE" } operator = "Read""#, r#"key "a" { policy = "write" } operator = "read""#),
        // An empty top-level level is no rule; intentions are checked, then
        // ignored.
        (r#"keyring = "" operator = """#, ""),
        (r#"service "a" { policy = "read" intentions = "" }"#, r#"service "a" { policy = "read" }"#),
        // The same rule twice in one policy merges, deny first.
        (r#"node "a" { policy = "write" } node "a" { policy = "deny" }"#, r#"node "a" { policy = "deny" }"#),
        (r#"key "a" { policy = "read" } key "a" { policy = "list" }"#, r#"key "a" { policy = "list" }"#),
        // Escapes, JSON's and HCL's; ${ is text.
        (r#"key "a\"b\\c\u00e9\ud83d\ude00" { policy = "read" }"#, "key \"a\\\"b\\\\cé😀\" { policy = \"read\" }"),
        (r#"key "${x}" { policy = "read" }"#, r#"{"key": {"${x}": {"policy": "read"}}}"#),
        // Nothing at all.
        ("", "# just a comment\n\n   "),
        ("{}", ""),
    ];
    for (i, &(text, same_as)) in rows.iter().enumerate() {
        assert_eq!(parsed(text), parsed(same_as), "row {i}: {text}");
    }
    assert!(parsed("").is_empty());
    assert!(!parsed("operator = \"read\"").is_empty());
}

/// Bad rules: each error names what is wrong and where.
#[test]
fn errors() {
    #[rustfmt::skip]
    let rows: &[(&str, &str)] = &[
        (r#"service "web" { policy = "writ" }"#,
         r#"service "web": policy "writ" is not one of read, write, deny (line 1, column 26)"#),
        (r#"key_prefix "a/" { policy = "nope" }"#, r#"key_prefix "a/": policy "nope" is not one of read, write, list, deny"#),
        (r#"servce "web" { policy = "read" }"#, r#"unknown rule kind "servce" (line 1, column 1)"#),
        (r#"{"services": {"web": {"policy": "read"}}}"#, r#"unknown rule kind "services""#),
        (r#"service "web" { policy = "list" }"#, "\"list\" is only a level for key and key_prefix rules"),
        (r#"acl = "list""#, "acl: \"list\" is only a level for key and key_prefix rules"),
        (r#"operator = "nope""#, r#"operator: "nope" is not one of read, write, deny (line 1, column 12)"#),
        (r#"{"keyring": "nope"}"#, r#"keyring: "nope" is not one of read, write, deny"#),
        (r#"service "web" { intentions = "read" }"#, r#"service "web": policy is missing"#),
        (r#"service "web" { policy = "read" intentions = "foo" }"#, r#"intentions "foo" is not one of read, write, deny"#),
        (r#"node "n" { policy = "read" intentions = "read" }"#, r#"node "n": unknown attribute "intentions""#),
        (r#"service "web" { polcy = "read" }"#, r#"service "web": unknown attribute "polcy" (line 1, column 17)"#),
        (r#"service "web" { policy = "read" policy = "write" }"#, "policy is set more than once"),
        ("operator = \"read\"\noperator = \"write\"", "operator is set more than once (line 2, column 1)"),
        (r#"service { policy = "read" }"#, "service: a rule needs a name"),
        (r#"service = "write""#, "service: expected named rules"),
        (r#"operator { policy = "read" }"#, "operator: expected a level like operator = \"read\", found an object"),
        (r#"service "web" { policy = read }"#, "found the bare word read"),
        (r#"service "web" { policy = 1 }"#, "found the number 1"),
        (r#"service "web" { policy = true }"#, "found the boolean true"),
        (r#"service "web" { policy = ["read"] }"#, "found a list"),
        (r#"service "web" { policy = "read""#, "this { is never closed (line 1, column 15)"),
        ("key \"a\n\" { policy = \"read\" }", "string is not closed before the end of its line (line 1, column 5)"),
        (r#"key "a\q" { policy = "read" }"#, r"unknown escape \q"),
        (r#"key "\ud83d" { policy = "read" }"#, "half of a surrogate pair"),
        (r#"{"service": {"web": {"policy": "read"}}} extra"#, "after the rules' closing }"),
        ("[1]", "expected a rule or attribute name, found '['"),
        ("service \"a\" {\n  policy = <<EOF\nread\nEOF\n}", "heredoc strings are not supported"),
        ("/* never closed", "comment is not closed"),
        (r#"service "a" "b" "c" "d" "e" "f" "g" { policy = "read" }"#, "nest deeper than 6 levels"),
    ];
    for (i, &(text, want)) in rows.iter().enumerate() {
        match Rules::parse(text) {
            Ok(r) => panic!("row {i}: {text} parsed to {r:?}"),
            Err(e) => assert!(e.contains(want), "row {i}: {text}\n got: {e}\nwant: {want}"),
        }
    }
}

#[test]
fn bounds() {
    let big = format!("{}\n", "#".repeat(MAX_RULES_LEN));
    let e = Rules::parse(&big).unwrap_err();
    assert!(e.contains("at most 65536"), "{e}");
    assert!(Rules::parse(&"#".repeat(MAX_RULES_LEN)).is_ok());

    // Deep nesting is refused at the bound, never recursed into: the parse
    // fails fast instead of overflowing the stack.
    for deep in [
        format!("x = {}", "[".repeat(60_000)),
        format!("x = {}", "{a = ".repeat(20_000)),
        "{\"a\":".repeat(20_000),
        format!("service {}", "\"a\" ".repeat(20_000)),
    ] {
        let e = Rules::parse(&deep[..deep.len().min(MAX_RULES_LEN)]).unwrap_err();
        assert!(e.contains("nest deeper than"), "{e}");
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Pieces of the rules grammar, so that random text often gets deep
    /// into the parser rather than failing at its first character.
    fn token() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "service",
            "key_prefix",
            "operator",
            "policy",
            "intentions",
            "\"web\"",
            "\"\"",
            "\"read\"",
            "\"list\"",
            "\"deny\"",
            "=",
            ":",
            "{",
            "}",
            "[",
            "]",
            ",",
            " ",
            "\n",
            "\"",
            "\\",
            "\\u",
            "d83d",
            "#",
            "//",
            "/*",
            "*/",
            "<<",
            "1",
            "true",
            "é",
            "\"${",
        ])
    }

    proptest! {
        // proptest's default: 256 cases, or $PROPTEST_CASES (bench/fuzz.sh).
        /// Any text: rules or an error, never a panic.
        #[test]
        fn fuzz_rules_parse_text(s in "\\PC{0,300}") {
            let _ = Rules::parse(&s);
        }

        /// Any sequence of grammar pieces: rules or an error, never a panic.
        #[test]
        fn fuzz_rules_parse_tokens(tokens in prop::collection::vec(token(), 0..80)) {
            let _ = Rules::parse(&tokens.concat());
        }

        /// A well-formed rule parses to exactly that rule, in HCL and JSON.
        #[test]
        fn fuzz_rules_parse_one_rule(
            kind in prop::sample::select(Resource::ALL.to_vec()),
            prefix: bool,
            name in "[a-z0-9/_.-]{0,12}",
            level in prop::sample::select(vec!["read", "write", "deny"]),
        ) {
            let k = format!("{}{}", kind.kind(), if prefix { "_prefix" } else { "" });
            let mut want = Rules::default();
            want.add(kind, &name, prefix, Access::parse(level).unwrap());
            let hcl = format!("{k} \"{name}\" {{ policy = \"{level}\" }}");
            let json = format!("{{\"{k}\": {{\"{name}\": {{\"policy\": \"{level}\"}}}}}}");
            prop_assert_eq!(Rules::parse(&hcl), Ok(want.clone()));
            prop_assert_eq!(Rules::parse(&json), Ok(want));
        }
    }
}
