//! Property tests of the template parser and evaluator on hostile input:
//! whatever the text, parsing and executing return a result (never a
//! panic), and nesting of any depth ends in an error, never a stack
//! overflow — checked on a 2 MiB thread, the smallest stack a caller
//! (a tokio worker, a test thread) is likely to run templates on.
//! Bounded by proptest's default case count (`PROPTEST_CASES` raises it).

use proptest::prelude::*;
use shoal_render::template::{ErrorKind, Template, Value};

/// Runs `f` on a thread with a 2 MiB stack; a panic or overflow fails.
fn on_small_stack<F: FnOnce() + Send + 'static>(f: F) {
    let joined = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("spawn")
        .join();
    assert!(joined.is_ok(), "the engine panicked");
}

fn data() -> Value {
    Value::from_json(&serde_json::json!({
        "a": {"b": [1, "two", null, {"c": 3.5}]},
        "s": "str", "n": 2, "l": ["x", "y"], "m": {"k": "v"}, "z": null
    }))
}

/// Parses and, when that succeeds, executes; only the absence of a panic
/// is the property (errors are fine).
fn parse_and_run(text: String) {
    on_small_stack(move || {
        if let Ok(t) = Template::new("fuzz").parse(&text) {
            let _ = t.execute(&data());
            for name in t.templates() {
                let _ = t.execute_template(name, &data());
            }
        }
    });
}

const VOCAB: &[&str] = &[
    "{{",
    "}}",
    "{{- ",
    " -}}",
    "{{/*",
    "*/}}",
    "if ",
    "else ",
    "end",
    "range ",
    "with ",
    "define ",
    "template ",
    "block ",
    "break",
    "continue",
    "(",
    ")",
    " | ",
    "$x",
    "$",
    " := ",
    " = ",
    ", ",
    ".a",
    ".b",
    ".",
    "..",
    "\"s\"",
    "`raw`",
    "'c'",
    "1",
    "-2",
    "1.5e3",
    "0x1F",
    "nil",
    "true",
    "printf ",
    "\"%d %s %v %q\"",
    "len ",
    "index ",
    "slice ",
    "eq ",
    "lt ",
    "and ",
    "or ",
    "not ",
    "print ",
    "html ",
    "js ",
    "urlquery ",
    "call ",
    " ",
    "\n",
    "text",
    "\"T\"",
    "é",
    "\u{0}",
    "}",
    "{",
    "-",
    "\"",
    "'",
    "`",
];

fn vocab_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(VOCAB), 0..60).prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn fuzz_parse_and_execute_token_soup(text in vocab_text()) {
        parse_and_run(text);
    }

    #[test]
    fn fuzz_parse_and_execute_arbitrary_text(text in "\\PC{0,200}") {
        parse_and_run(text);
    }

    #[test]
    fn fuzz_nesting_is_bounded(depth in 0usize..3000, kind in 0usize..5) {
        let (open, close) = match kind {
            0 => ("(", ")"),
            1 => ("{{if 1}}", "{{end}}"),
            2 => ("{{range .l}}", "{{end}}"),
            3 => ("{{with .}}", "{{end}}"),
            _ => ("{{block \"b\" .}}", "{{end}}"),
        };
        let text = if kind == 0 {
            format!("{{{{print {}1{}}}}}", open.repeat(depth), close.repeat(depth))
        } else {
            format!("{}x{}", open.repeat(depth), close.repeat(depth))
        };
        on_small_stack(move || {
            match Template::new("deep").parse(&text) {
                Ok(t) => {
                    // Shallow enough to parse: it runs or fails cleanly
                    // (ranging over a string element is an error, say).
                    if let Err(e) = t.execute(&data()) {
                        assert_eq!(e.kind, ErrorKind::Exec, "{e}");
                    }
                }
                Err(e) => {
                    // Too deep, or (nested blocks share a name) Go's
                    // "multiple definition".
                    assert_eq!(e.kind, ErrorKind::Parse);
                    let text = e.to_string();
                    assert!(
                        text.contains("exceeded maximum nesting depth") || text.contains("multiple definition"),
                        "{e}"
                    );
                }
            }
        });
    }
}

/// Template recursion (mutual or direct) stops at the depth budget with
/// Go's wording.
#[test]
fn recursion_stops_with_an_error() {
    on_small_stack(|| {
        let cases = [
            r#"{{define "a"}}{{template "b" .}}{{end}}{{define "b"}}{{template "a" .}}{{end}}{{template "a" .}}"#,
            r#"{{define "r"}}{{if true}}{{with .}}{{template "r" (print .)}}{{end}}{{end}}{{end}}{{template "r" "x"}}"#,
        ];
        for text in cases {
            let t = Template::new("t").parse(text).expect("parses");
            let e = t.execute(&Value::Nil).expect_err("must hit the limit");
            assert!(
                e.to_string()
                    .contains("exceeded maximum template depth (200)"),
                "{e}"
            );
        }
    });
}

/// A template bigger than the limit is refused before lexing.
#[test]
fn oversized_template_is_refused() {
    let limits = shoal_render::template::Limits {
        max_template_bytes: 1000,
        ..Default::default()
    };
    let e = Template::new("big")
        .limits(limits)
        .parse(&"x".repeat(1001))
        .expect_err("too big");
    assert!(e.to_string().contains("more than the limit"), "{e}");
}

/// Output is bounded too: a range that would produce too much stops.
#[test]
fn output_is_bounded() {
    let limits = shoal_render::template::Limits {
        max_output_bytes: 10_000,
        ..Default::default()
    };
    let t = Template::new("o")
        .limits(limits)
        .parse("{{range .}}{{range $}}{{range $}}0123456789{{end}}{{end}}{{end}}")
        .expect("parses");
    let list = Value::list((0..100).map(Value::Int).collect());
    let e = t.execute(&list).expect_err("too much output");
    assert!(
        e.to_string()
            .contains("output exceeds the limit of 10000 bytes"),
        "{e}"
    );
}

/// Nested ranges that print nothing cannot spin for ever: the step budget
/// ends them with an error.
#[test]
fn silent_nested_ranges_are_bounded() {
    let limits = shoal_render::template::Limits {
        max_steps: 100_000,
        ..Default::default()
    };
    let text = format!("{}{}", "{{range $}}".repeat(30), "{{end}}".repeat(30));
    let t = Template::new("spin")
        .limits(limits)
        .parse(&text)
        .expect("parses");
    let e = t
        .execute(&Value::list(vec![Value::Int(1), Value::Int(2)]))
        .expect_err("bounded");
    assert!(
        e.to_string().contains("execution exceeded 100000 steps"),
        "{e}"
    );
}
