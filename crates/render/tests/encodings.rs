//! `toYAML` and `toTOML` byte for byte as consul-template prints them:
//! each line of `encodings/cases.jsonl` is decoded as Go's encoding/json
//! decodes it (via `parseJSON`), encoded by shoal, and compared with
//! `encodings/expected.txt`, printed by gopkg.in/yaml.v2 2.4 and
//! BurntSushi/toml 1.2 (`encodings/gen/main.go`; Go is not needed here).
//! The cases cover quoting (YAML 1.1 booleans, numbers, dates, indicators,
//! escapes), literal blocks, folding past column 80, key order, floats,
//! nested tables and arrays of tables.

use shoal_render::funcs::{self, Brain, Context};
use shoal_render::template::{Template, Value};
use std::rc::Rc;
use std::sync::Arc;

fn render(text: &str) -> String {
    let ctx = Rc::new(Context::new(Arc::new(Brain::new()), Vec::new()));
    let fm = funcs::for_render(ctx);
    Template::new("t")
        .funcs(funcs::names())
        .parse(text)
        .and_then(|t| t.execute_with(&Value::Nil, &fm))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn yaml_and_toml_match_consul_templates_encoders() {
    let cases = include_str!("encodings/cases.jsonl");
    let mut want = include_str!("encodings/expected.txt").split("=== ").skip(1);
    for line in cases.lines() {
        for enc in ["yaml", "toml"] {
            let expected = want.next().expect("an expected block per case and encoder");
            let expected = expected
                .strip_prefix(&format!("{enc}\n"))
                .unwrap_or_else(|| panic!("block for {enc}: {expected}"));
            let func = if enc == "yaml" { "toYAML" } else { "toTOML" };
            let got = render(&format!("{{{{ parseJSON `{line}` | {func} }}}}\n"));
            assert_eq!(got, expected, "{func} of {line}");
        }
    }
    assert!(want.next().is_none());
}
