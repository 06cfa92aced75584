//! The conformance table: every case of `tests/conformance/cases.txt` is
//! rendered by shoal's engine and compared byte for byte with what Go's own
//! `text/template` produced (`tests/conformance/expected.json`, written by
//! `scripts/conformance-gen` from `tests/conformance/gen/main.go`; the Go
//! version is recorded in the file). Outputs and whole error texts must be
//! identical.
//!
//! Data is JSON decoded the way Go's `encoding/json` decodes into
//! `interface{}`: numbers are `float64` ([`Value::Float`]) unless the case
//! has the `ints` option, which makes integral numbers `int`.

use std::collections::BTreeMap;
use std::rc::Rc;

use shoal_render::template::{sprint, FuncMap, MissingKey, Template, Value};

struct Case {
    name: String,
    opts: BTreeMap<String, String>,
    data: Option<String>,
    template: String,
}

/// Reads the case format documented in `gen/main.go` (the same rules).
fn parse_cases(text: &str) -> Vec<Case> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let joined = format!("\n{text}");
    let mut cases = Vec::new();
    for block in joined.split("\n=== ").skip(1) {
        let lines: Vec<&str> = block.split('\n').collect();
        let mut case = Case {
            name: lines[0].to_string(),
            opts: BTreeMap::new(),
            data: None,
            template: String::new(),
        };
        let mut i = 1;
        while i < lines.len() && lines[i] != "---" {
            if let Some(opts) = lines[i].strip_prefix("opts: ") {
                for f in opts.split_whitespace() {
                    let (k, v) = f.split_once('=').unwrap_or((f, ""));
                    case.opts.insert(k.to_string(), v.to_string());
                }
            } else if let Some(d) = lines[i].strip_prefix("data: ") {
                case.data = Some(d.to_string());
            } else {
                panic!("case {}: unknown line {:?}", case.name, lines[i]);
            }
            i += 1;
        }
        assert!(i < lines.len(), "case {} has no --- line", case.name);
        case.template = lines[i + 1..].join("\n");
        cases.push(case);
    }
    cases
}

fn from_json_ints(j: &serde_json::Value) -> Value {
    match j {
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::Array(a) => Value::list(a.iter().map(from_json_ints).collect()),
        serde_json::Value::Object(o) => {
            Value::map(o.iter().map(|(k, v)| (k.clone(), from_json_ints(v))))
        }
        other => Value::from_json(other),
    }
}

/// The functions `gen/main.go` defines, with the same behaviour.
fn funcs() -> FuncMap {
    let mut f = FuncMap::new();
    f.insert(
        "fail".into(),
        Rc::new(|_: &[Value]| Err("boom".to_string())),
    );
    f.insert(
        "list".into(),
        Rc::new(|a: &[Value]| Ok(Value::list(a.to_vec()))),
    );
    f.insert(
        "dict".into(),
        Rc::new(|a: &[Value]| {
            let pairs = a
                .chunks_exact(2)
                .map(|kv| (sprint(&kv[..1]), kv[1].clone()));
            Ok(Value::map(pairs))
        }),
    );
    f.insert(
        "str".into(),
        Rc::new(|a: &[Value]| Ok(Value::from(sprint(a)))),
    );
    f
}

fn run(case: &Case) -> Result<String, String> {
    let data = match &case.data {
        None => Value::Nil,
        Some(d) => {
            let j: serde_json::Value =
                serde_json::from_str(d).unwrap_or_else(|e| panic!("case {}: {e}", case.name));
            if case.opts.contains_key("ints") {
                from_json_ints(&j)
            } else {
                Value::from_json(&j)
            }
        }
    };
    let left = case.opts.get("left").map_or("", String::as_str);
    let right = case.opts.get("right").map_or("", String::as_str);
    let missing = match case.opts.get("missingkey").map(String::as_str) {
        Some("error") => MissingKey::Error,
        Some("zero") => MissingKey::Zero,
        _ => MissingKey::Default,
    };
    let t = Template::new("t")
        .delims(left, right)
        .funcs(funcs())
        .missing_key(missing)
        .parse(&case.template)
        .map_err(|e| e.to_string())?;
    match case.opts.get("exec") {
        Some(name) => t.execute_template(name, &data),
        None => t.execute(&data),
    }
    .map_err(|e| e.to_string())
}

#[test]
fn conformance_with_go_text_template() {
    let cases = parse_cases(include_str!("conformance/cases.txt"));
    let expected: serde_json::Value =
        serde_json::from_str(include_str!("conformance/expected.json"))
            .expect("expected.json parses");
    let go_version = expected["go_version"].as_str().unwrap_or("?");
    let expected = expected["cases"].as_array().expect("cases array");
    assert_eq!(
        cases.len(),
        expected.len(),
        "cases.txt and expected.json disagree: rerun scripts/conformance-gen"
    );
    assert!(cases.len() >= 150, "the table must keep at least 150 cases");
    let mut failures = Vec::new();
    for (case, want) in cases.iter().zip(expected) {
        assert_eq!(
            want["name"].as_str(),
            Some(case.name.as_str()),
            "case order differs: rerun the generator"
        );
        let want = match (want["output"].as_str(), want["error"].as_str()) {
            (Some(o), _) => Ok(o.to_string()),
            (None, Some(e)) => Err(e.to_string()),
            _ => panic!("case {} has neither output nor error", case.name),
        };
        let got = run(case);
        if got != want {
            failures.push(format!(
                "--- {}\n  template: {:?}\n  go:   {:?}\n  rust: {:?}",
                case.name, case.template, want, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Go ({go_version}):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
