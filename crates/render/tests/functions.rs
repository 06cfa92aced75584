//! consul-template's helper functions inside templates: every function its
//! docs list is known to shoal (served, or refused with a message naming
//! what it needs), and the ones added late behave as consul-template's.
//! Expected texts were printed by Go's text/template with consul-template's
//! definitions of the same functions.

use shoal_render::funcs::{self, Brain, Context};
use shoal_render::template::{Template, Value};
use std::rc::Rc;
use std::sync::Arc;

fn render(text: &str) -> Result<String, String> {
    let ctx = Rc::new(Context::new(Arc::new(Brain::new()), Vec::new()));
    let fm = funcs::for_render(ctx);
    Template::new("t")
        .funcs(funcs::names())
        .parse(text)
        .and_then(|t| t.execute_with(&Value::Nil, &fm))
        .map_err(|e| e.to_string())
}

/// Every function of consul-template's `funcMap` (template/template.go).
const CONSUL_TEMPLATE_FUNCTIONS: &[&str] = &[
    "caLeaf",
    "caRoots",
    "connect",
    "datacenters",
    "exportedServices",
    "importedServices",
    "file",
    "key",
    "keyExists",
    "keyOrDefault",
    "ls",
    "safeLs",
    "node",
    "nodes",
    "partitions",
    "peerings",
    "secret",
    "secrets",
    "service",
    "services",
    "tree",
    "safeTree",
    "pkiCert",
    "nomadServices",
    "nomadService",
    "nomadVarList",
    "nomadVarListSafe",
    "nomadVar",
    "nomadVarExists",
    "scratch",
    "base64Decode",
    "base64Encode",
    "base64URLDecode",
    "base64URLEncode",
    "byKey",
    "byPort",
    "byTag",
    "contains",
    "containsAll",
    "containsAny",
    "containsNone",
    "containsNotAll",
    "env",
    "mustEnv",
    "envOrDefault",
    "executeTemplate",
    "explode",
    "explodeMap",
    "mergeMap",
    "mergeMapWithOverride",
    "in",
    "indent",
    "loop",
    "join",
    "trim",
    "trimPrefix",
    "trimSuffix",
    "trimSpace",
    "parseBool",
    "parseFloat",
    "parseInt",
    "parseJSON",
    "parseUint",
    "parseYAML",
    "plugin",
    "regexReplaceAll",
    "regexMatch",
    "replaceAll",
    "sha256Hex",
    "md5sum",
    "hmacSHA256Hex",
    "timestamp",
    "toLower",
    "toJSON",
    "toJSONPretty",
    "toUnescapedJSON",
    "toUnescapedJSONPretty",
    "toTitle",
    "toTOML",
    "toUpper",
    "toYAML",
    "split",
    "splitToMap",
    "byMeta",
    "sockaddr",
    "writeToFile",
    "add",
    "subtract",
    "multiply",
    "divide",
    "modulo",
    "minimum",
    "maximum",
    "spew_dump",
    "spew_printf",
    "spew_sdump",
    "spew_sprintf",
];

#[test]
fn every_consul_template_function_is_known() {
    let names = funcs::names();
    let missing: Vec<&&str> = CONSUL_TEMPLATE_FUNCTIONS
        .iter()
        .filter(|n| !names.contains_key(**n))
        .collect();
    assert!(missing.is_empty(), "unknown to shoal: {missing:?}");
    // One that shoal cannot serve says which and why.
    let e = render("{{ spew_dump . }}").unwrap_err();
    assert!(
        e.contains("spew_dump: not supported by shoal render"),
        "{e}"
    );
}

#[test]
fn execute_template_runs_a_defined_template_with_data() {
    let t = r#"{{define "x"}}[{{.}}|{{$}}]{{end}}{{executeTemplate "x" "a"}}{{executeTemplate "x"}}|{{ executeTemplate "x" 3 | toUpper }}|{{ $v := executeTemplate "x" "b" }}{{ len $v }}{{ define "n" }}{{ if . }}<{{ executeTemplate "n" false }}>{{ end }}{{ end }}{{ executeTemplate "n" true }}"#;
    assert_eq!(render(t).unwrap(), "[a|a][<no value>|<no value>]|[3|3]|5<>");
    let e = render(r#"{{ executeTemplate "nope" }}"#).unwrap_err();
    assert_eq!(
        e,
        r#"template: t:1:3: executing "t" at <executeTemplate "nope">: error calling executeTemplate: template: no template "nope" associated with template "t""#
    );
    let e = render(r#"{{define "a"}}{{end}}{{ executeTemplate "a" 1 2 }}"#).unwrap_err();
    assert!(e.contains("expected 1 or 2, but got 3"), "{e}");
    // Unbounded recursion is stopped, not a stack overflow.
    let e = render(r#"{{define "r"}}{{ executeTemplate "r" }}{{end}}{{ executeTemplate "r" }}"#)
        .unwrap_err();
    assert!(e.contains("exceeded maximum template depth"), "{e}");
}

#[test]
fn digests_merges_and_timestamps() {
    let cases = [
        (r#"{{ md5sum "hello" }}"#, "5d41402abc4b2a76b9719d911017c592"),
        (
            r#"{{ hmacSHA256Hex "hello" "secret" }}"#,
            "88aab3ede8d3adf94d26ab90d3bafd4a2083070c3bcce9c014ee04a443847c0b",
        ),
        (
            r#"{{ $a := parseJSON `{"a":1,"n":{"x":""}}` }}{{ $b := parseJSON `{"a":2,"b":3,"n":{"x":"y"}}` }}{{ mergeMap $a $b | toJSON }} {{ mergeMapWithOverride $a $b | toJSON }}"#,
            r#"{"a":1,"b":3,"n":{"x":"y"}} {"a":2,"b":3,"n":{"x":"y"}}"#,
        ),
        (
            "{{ $y := parseYAML \"a: 1\\nb: [x, y]\\nc:\\n  d: true\\n\" }}{{ $y.a }} {{ index $y.b 1 }} {{ $y.c.d }} {{ len (parseYAML \"\") }}",
            "1 y true 0",
        ),
    ];
    for (t, want) in cases {
        assert_eq!(render(t).unwrap(), want, "{t}");
    }
    let year = render(r#"{{ timestamp "2006" }}|{{ timestamp "Z07:00" }}"#).unwrap();
    let (y, zone) = year.split_once('|').unwrap();
    assert!(y.len() == 4 && y.parse::<u32>().unwrap() >= 2024, "{year}");
    assert_eq!(zone, "Z", "timestamp is UTC as in consul-template");
    let e = render(r#"{{ parseYAML "a: [" }}"#).unwrap_err();
    assert!(e.contains("parseYAML"), "{e}");
}
