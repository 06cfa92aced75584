//! The extension points the consul-template layer builds on: [`Object`]s
//! (Go structs with fields and methods, typed slices and maps), functions
//! in a [`FuncMap`] replaced per render, `call` of function values, and the
//! Go wording of the errors they produce. Expected texts follow Go's
//! `text/template` for the equivalent Go types.

use std::collections::BTreeMap;
use std::rc::Rc;

use shoal_render::template::{
    wrong_number_of_args, Func, FuncMap, MissingKey, Object, Template, Value,
};

/// Like consul-template's `[]string` tags with a `Contains` method.
struct Tags(Vec<String>);

impl Object for Tags {
    fn type_name(&self) -> &str {
        "dependency.ServiceTags"
    }
    fn field(&self, _: &str) -> Option<Value> {
        None
    }
    fn method(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        match name {
            "Contains" => Some(match args {
                [Value::String(s)] => Ok(Value::Bool(self.0.iter().any(|t| **t == **s))),
                _ => Err(wrong_number_of_args("Contains", 1, false, args.len())),
            }),
            _ => None,
        }
    }
    fn display(&self) -> String {
        format!("[{}]", self.0.join(" "))
    }
    fn elements(&self) -> Option<Vec<Value>> {
        Some(self.0.iter().map(|t| Value::str(t)).collect())
    }
}

/// A `map[string]string` (ServiceMeta): missing keys index to "".
struct Meta(BTreeMap<String, String>);

impl Object for Meta {
    fn type_name(&self) -> &str {
        "map[string]string"
    }
    fn field(&self, name: &str) -> Option<Value> {
        self.0.get(name).map(|v| Value::str(v))
    }
    fn display(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        format!("map[{}]", parts.join(" "))
    }
    fn entries(&self) -> Option<Vec<(String, Value)>> {
        Some(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), Value::str(v)))
                .collect(),
        )
    }
    fn zero_element(&self) -> Value {
        Value::str("")
    }
}

/// A `*HealthService`.
struct Service {
    address: String,
    port: i64,
    tags: Value,
    meta: Value,
}

impl Object for Service {
    fn type_name(&self) -> &str {
        "*dependency.HealthService"
    }
    fn field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "Address" => Value::str(&self.address),
            "Port" => Value::Int(self.port),
            "Tags" => self.tags.clone(),
            "ServiceMeta" => self.meta.clone(),
            _ => return None,
        })
    }
    fn display(&self) -> String {
        format!("&{{{} {}}}", self.address, self.port)
    }
    fn display_action(&self) -> String {
        format!("{{{} {}}}", self.address, self.port)
    }
}

fn service(address: &str, port: i64, tags: &[&str]) -> Value {
    let meta = BTreeMap::from([("version".to_string(), "2".to_string())]);
    Value::object(Service {
        address: address.into(),
        port,
        tags: Value::object(Tags(tags.iter().map(|t| t.to_string()).collect())),
        meta: Value::object(Meta(meta)),
    })
}

fn render(text: &str, data: &Value) -> Result<String, String> {
    Template::new("t")
        .parse(text)
        .and_then(|t| t.execute(data))
        .map_err(|e| e.to_string())
}

#[test]
fn objects_behave_as_go_structs() {
    let data = Value::map([(
        "svcs",
        Value::list(vec![
            service("10.0.0.1", 80, &["a", "b"]),
            service("10.0.0.2", 81, &[]),
        ]),
    )]);
    let cases: &[(&str, Result<&str, &str>)] = &[
        ("{{range .svcs}}{{.Address}}:{{.Port}} {{end}}", Ok("10.0.0.1:80 10.0.0.2:81 ")),
        ("{{range .svcs}}{{if .Tags.Contains \"b\"}}{{.Address}}{{end}}{{end}}", Ok("10.0.0.1")),
        ("{{range .svcs}}{{.Tags}}{{end}}", Ok("[a b][]")),
        ("{{range .svcs}}{{len .Tags}}{{end}}", Ok("20")),
        ("{{range $s := .svcs}}{{range .Tags}}<{{.}}>{{end}}{{end}}", Ok("<a><b>")),
        // An action prints the struct a pointer points to; printf the pointer.
        ("{{index .svcs 0}}", Ok("{10.0.0.1 80}")),
        ("{{printf \"%v|%s|%T\" (index .svcs 0) (index .svcs 0) (index .svcs 0)}}", Ok("&{10.0.0.1 80}|&{10.0.0.1 80}|*dependency.HealthService")),
        ("{{with index .svcs 0}}{{.ServiceMeta.version}}[{{.ServiceMeta.nope}}][{{index .ServiceMeta \"nope\"}}]{{end}}", Ok("2[<no value>][]")),
        ("{{with index .svcs 0}}{{range $k, $v := .ServiceMeta}}{{$k}}={{$v}}{{end}}{{end}}", Ok("version=2")),
        ("{{with index .svcs 0}}{{eq . .}}{{end}}", Ok("true")),
        ("{{eq (index .svcs 0) (index .svcs 1)}}", Ok("false")),
        (
            "{{with index .svcs 0}}{{.Nope}}{{end}}",
            Err("template: t:1:24: executing \"t\" at <.Nope>: can't evaluate field Nope in type *dependency.HealthService"),
        ),
        (
            "{{with index .svcs 0}}{{.Address 1}}{{end}}",
            Err("template: t:1:24: executing \"t\" at <.Address>: Address has arguments but cannot be invoked as function"),
        ),
        (
            "{{with index .svcs 0}}{{.Tags.Contains}}{{end}}",
            Err("template: t:1:29: executing \"t\" at <.Tags.Contains>: wrong number of args for Contains: want 1 got 0"),
        ),
    ];
    for (text, want) in cases {
        let got = render(text, &data);
        assert_eq!(got.as_deref().map_err(String::as_str), *want, "{text}");
    }
}

#[test]
fn missing_key_error_applies_to_typed_maps() {
    let data = service("10.0.0.1", 80, &[]);
    let t = Template::new("t")
        .missing_key(MissingKey::Error)
        .parse("{{.ServiceMeta.nope}}")
        .expect("parses");
    let e = t.execute(&data).expect_err("missing key");
    assert!(
        e.to_string().ends_with("map has no entry for key \"nope\""),
        "{e}"
    );
}

#[test]
fn functions_are_replaced_per_render_and_checked_at_parse() {
    let counter = |n: i64| -> Func { Rc::new(move |_: &[Value]| Ok(Value::Int(n))) };
    let mut funcs = FuncMap::new();
    funcs.insert("n".into(), counter(1));
    let t = Template::new("t")
        .funcs(funcs)
        .parse("{{n}}")
        .expect("parses");
    assert_eq!(t.execute(&Value::Nil).unwrap(), "1");
    let mut second = FuncMap::new();
    second.insert("n".into(), counter(2));
    assert_eq!(t.execute_with(&Value::Nil, &second).unwrap(), "2");
    // The name is checked when parsing, as Go does.
    let e = Template::new("t").parse("{{n}}").expect_err("undefined");
    assert_eq!(e.to_string(), "template: t:1: function \"n\" not defined");
    // A function of the map shadows the built-in of the same name.
    let mut shadow = FuncMap::new();
    shadow.insert("len".into(), counter(42));
    let t = Template::new("t")
        .funcs(shadow)
        .parse("{{len \"abc\"}}")
        .expect("parses");
    assert_eq!(t.execute(&Value::Nil).unwrap(), "42");
}

#[test]
fn arity_errors_are_reported_as_go_checks_them() {
    let mut funcs = FuncMap::new();
    let join: Func = Rc::new(|a: &[Value]| match a {
        [_, _] => Ok(Value::str("ok")),
        _ => Err(wrong_number_of_args("join", 2, false, a.len())),
    });
    funcs.insert("join".into(), join);
    let t = Template::new("t")
        .funcs(funcs)
        .parse("x {{join \"a\"}}")
        .expect("parses");
    assert_eq!(
        t.execute(&Value::Nil).unwrap_err().to_string(),
        "template: t:1:4: executing \"t\" at <join>: wrong number of args for join: want 2 got 1"
    );
}

#[test]
fn call_invokes_function_values() {
    let add: Value = Value::func(|args: &[Value]| match args {
        [Value::Int(a), Value::Int(b)] => Ok(Value::Int(a + b)),
        _ => Err("want two ints".into()),
    });
    let data = Value::map([("add", add), ("s", Value::str("x"))]);
    assert_eq!(render("{{call .add 1 2}}", &data).unwrap(), "3");
    assert_eq!(
        render("{{call .add 1}}", &data).unwrap_err(),
        "template: t:1:2: executing \"t\" at <call .add 1>: error calling call: want two ints"
    );
    assert_eq!(
        render("{{call .s}}", &data).unwrap_err(),
        "template: t:1:2: executing \"t\" at <call .s>: error calling call: non-function of type string"
    );
    assert_eq!(
        render("{{.add}}", &data).unwrap_err(),
        "template: t:1:2: executing \"t\" at <{{.add}}>: can't print {{.add}} of type func(...interface {}) (interface {}, error)"
    );
}

#[test]
fn errors_carry_their_parts() {
    let e = Template::new("nginx.conf.ctmpl")
        .parse("a\n  {{.x.y}}")
        .unwrap()
        .execute(&Value::map([("x", Value::str("s"))]));
    let e = e.expect_err("field of a string");
    assert_eq!(
        (e.template.as_str(), e.line, e.col),
        ("nginx.conf.ctmpl", 2, Some(6))
    );
    assert_eq!(e.message, "can't evaluate field y in type interface {}");
    let p = Template::new("f").parse("\n\n{{if}}").expect_err("parse");
    assert_eq!(
        (p.line, p.col, p.message.as_str()),
        (3, None, "missing value for if")
    );
}

/// A function's nil result ranges like Go's nil slice (zero times, else
/// branch) and prints `<nil>`.
#[test]
fn nil_results_range_like_nil_slices() {
    let mut funcs = FuncMap::new();
    let none: Func = Rc::new(|_: &[Value]| Ok(Value::Nil));
    funcs.insert("none".into(), none);
    let t = Template::new("t")
        .funcs(funcs)
        .parse("{{range none}}x{{else}}empty{{end}} {{none}}")
        .expect("parses");
    assert_eq!(t.execute(&Value::Nil).unwrap(), "empty <nil>");
}
