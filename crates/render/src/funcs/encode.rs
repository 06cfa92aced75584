//! Encodings: base64, sha256, JSON (Go's `encoding/json` output: sorted
//! keys, `<`, `>`, `&` escaped, Go's float format), YAML and TOML of
//! plain maps and lists, and `parseJSON`.

use super::args::{arg_str, arity};
use super::f;
use super::objects::FIELD_NAMES;
use crate::template::{FuncMap, Value};
use base64::Engine;
use sha2::Digest;
use std::fmt::Write;

/// A JSON-like view of any value: structs by their fields, typed
/// collections by their elements.
pub(super) enum Node {
    Null,
    Bool(bool),
    /// An integer, printed as is.
    Num(String),
    /// A float64 (each encoder prints it its own way).
    Float(f64),
    Str(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

fn go_float(x: f64) -> String {
    if x.is_nan() || x.is_infinite() {
        return "null".into();
    }
    let a = x.abs();
    if a == 0.0 || (1e-6..1e21).contains(&a) {
        format!("{x}")
    } else {
        let s = format!("{x:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        }
    }
}

pub(super) fn node(v: &Value, depth: usize) -> Result<Node, String> {
    if depth > 100 {
        return Err("value nested too deeply".into());
    }
    Ok(match v {
        Value::Nil => Node::Null,
        Value::Bool(b) => Node::Bool(*b),
        Value::Int(i) => Node::Num(i.to_string()),
        Value::Uint(u) => Node::Num(u.to_string()),
        Value::Float(x) => Node::Float(*x),
        Value::String(s) => Node::Str(s.to_string()),
        Value::List(l) => Node::List(
            l.iter()
                .map(|i| node(i, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(m) => Node::Map(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), node(v, depth + 1)?)))
                .collect::<Result<_, String>>()?,
        ),
        Value::Object(o) => {
            if let Some(items) = o.elements() {
                Node::List(
                    items
                        .iter()
                        .map(|i| node(i, depth + 1))
                        .collect::<Result<_, _>>()?,
                )
            } else if let Some(entries) = o.entries() {
                Node::Map(
                    entries
                        .iter()
                        .map(|(k, v)| Ok((k.clone(), node(v, depth + 1)?)))
                        .collect::<Result<_, String>>()?,
                )
            } else if let Some(Ok(Value::List(names))) = o.method(FIELD_NAMES, &[]) {
                let mut fields = Vec::new();
                for n in names.iter().filter_map(Value::as_str) {
                    let v = o.field(n).unwrap_or_default();
                    fields.push((n.to_string(), node(&v, depth + 1)?));
                }
                Node::Map(fields)
            } else {
                Node::Str(o.display())
            }
        }
        Value::Func(_) => return Err(format!("json: unsupported type: {}", v.type_name())),
    })
}

fn json_str(out: &mut String, s: &str, escape_html: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' if escape_html => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json(out: &mut String, n: &Node, indent: Option<usize>, html: bool) {
    let nl = |out: &mut String, level: usize| {
        if indent.is_some() {
            out.push('\n');
            out.push_str(&"  ".repeat(level));
        }
    };
    let level = indent.unwrap_or(0);
    let inner = indent.map(|l| l + 1);
    match n {
        Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Num(s) => out.push_str(s),
        Node::Float(x) => out.push_str(&go_float(*x)),
        Node::Str(s) => json_str(out, s, html),
        Node::List(items) if items.is_empty() => out.push_str("[]"),
        Node::Map(items) if items.is_empty() => out.push_str("{}"),
        Node::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, level + 1);
                json(out, item, inner, html);
            }
            nl(out, level);
            out.push(']');
        }
        Node::Map(items) => {
            out.push('{');
            for (i, (k, v)) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, level + 1);
                json_str(out, k, html);
                out.push_str(if indent.is_some() { ": " } else { ":" });
                json(out, v, inner, html);
            }
            nl(out, level);
            out.push('}');
        }
    }
}

/// Go's `json.Marshal` (compact) or `MarshalIndent(v, "", "  ")`.
pub fn to_json(v: &Value, pretty: bool, escape_html: bool) -> Result<String, String> {
    let mut out = String::new();
    json(&mut out, &node(v, 0)?, pretty.then_some(0), escape_html);
    Ok(out)
}

/// RFC 3339 time now, UTC, for `timestamp`.
pub fn rfc3339_now() -> String {
    shoal_catalog::clock::rfc3339(crate::source::now_unix())
}

/// A parsed YAML document as template values: integers stay integers
/// (as Go's yaml.v2 gives `int`), mapping keys print as strings.
fn from_yaml(v: &serde_yaml::Value, depth: usize) -> Result<Value, String> {
    use serde_yaml::Value as Y;
    if depth > 100 {
        return Err("parseYAML: nested too deeply".into());
    }
    Ok(match v {
        Y::Null => Value::Nil,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::Int(i),
            (None, Some(u), _) => Value::Uint(u),
            (_, _, Some(x)) => Value::Float(x),
            _ => Value::Nil,
        },
        Y::String(s) => Value::str(s),
        Y::Sequence(items) => Value::list(
            items
                .iter()
                .map(|i| from_yaml(i, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(m) => {
            let mut out = std::collections::BTreeMap::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s.clone(),
                    other => crate::template::display(&from_yaml(other, depth + 1)?),
                };
                out.insert(key, from_yaml(v, depth + 1)?);
            }
            Value::Map(out.into())
        }
        Y::Tagged(t) => from_yaml(&t.value, depth + 1)?,
    })
}

/// Registers the encoding functions.
pub fn register(map: &mut FuncMap) {
    use base64::engine::general_purpose::{STANDARD as b64, URL_SAFE as b64url};
    let one = |a: &[Value], name: &str| -> Result<String, String> {
        arity(name, a, 1)?;
        Ok(arg_str(&a[0])?.to_string())
    };
    map.insert(
        "base64Encode".into(),
        f(move |a| Ok(Value::from(b64.encode(one(a, "base64Encode")?)))),
    );
    map.insert(
        "base64URLEncode".into(),
        f(move |a| Ok(Value::from(b64url.encode(one(a, "base64URLEncode")?)))),
    );
    map.insert(
        "base64Decode".into(),
        f(move |a| {
            let s = one(a, "base64Decode")?;
            let raw = b64
                .decode(s.as_bytes())
                .map_err(|e| format!("base64Decode: {e}"))?;
            Ok(Value::from(String::from_utf8_lossy(&raw).into_owned()))
        }),
    );
    map.insert(
        "base64URLDecode".into(),
        f(move |a| {
            let s = one(a, "base64URLDecode")?;
            let raw = b64url
                .decode(s.as_bytes())
                .map_err(|e| format!("base64URLDecode: {e}"))?;
            Ok(Value::from(String::from_utf8_lossy(&raw).into_owned()))
        }),
    );
    map.insert(
        "sha256Hex".into(),
        f(move |a| {
            let digest = sha2::Sha256::digest(one(a, "sha256Hex")?.as_bytes());
            Ok(Value::from(
                digest
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
            ))
        }),
    );
    let enc = |name: &'static str, pretty: bool, html: bool| {
        f(move |a: &[Value]| {
            arity(name, a, 1)?;
            to_json(&a[0], pretty, html)
                .map(Value::from)
                .map_err(|e| format!("{name}: {e}"))
        })
    };
    map.insert("toJSON".into(), enc("toJSON", false, true));
    map.insert("toJSONPretty".into(), enc("toJSONPretty", true, true));
    map.insert(
        "toUnescapedJSON".into(),
        enc("toUnescapedJSON", false, false),
    );
    map.insert(
        "toUnescapedJSONPretty".into(),
        enc("toUnescapedJSONPretty", true, false),
    );
    map.insert(
        "parseJSON".into(),
        f(|a| {
            arity("parseJSON", a, 1)?;
            let s = arg_str(&a[0])?;
            if s.is_empty() {
                return Ok(Value::map(Vec::<(String, Value)>::new()));
            }
            let v: serde_json::Value = serde_json::from_str(s).map_err(|e| e.to_string())?;
            Ok(Value::from_json(&v))
        }),
    );
    map.insert(
        "parseYAML".into(),
        f(|a| {
            arity("parseYAML", a, 1)?;
            let s = arg_str(&a[0])?;
            if s.is_empty() {
                return Ok(Value::map(Vec::<(String, Value)>::new()));
            }
            let v: serde_yaml::Value =
                serde_yaml::from_str(s).map_err(|e| format!("parseYAML: {e}"))?;
            from_yaml(&v, 0)
        }),
    );
    map.insert(
        "toYAML".into(),
        f(|a| {
            arity("toYAML", a, 1)?;
            Ok(Value::from(super::yaml_out::to_yaml(&node(&a[0], 0)?)))
        }),
    );
    map.insert(
        "toTOML".into(),
        f(|a| {
            arity("toTOML", a, 1)?;
            let Node::Map(items) = node(&a[0], 0)? else {
                return Err("toTOML: toml: top-level values must be Go maps or structs".into());
            };
            Ok(Value::from(super::toml_out::to_toml(&items)))
        }),
    );
    map.insert("sockaddr".into(), f(super::collections::sockaddr));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_matches_go() {
        let v = Value::map([
            (
                "b",
                Value::list(vec![
                    Value::Float(1.0),
                    Value::Float(2.5),
                    Value::Float(1e21),
                ]),
            ),
            ("a", Value::str("<a&b>")),
            ("c", Value::map(Vec::<(String, Value)>::new())),
        ]);
        assert_eq!(
            to_json(&v, false, true).unwrap(),
            r#"{"a":"\u003ca\u0026b\u003e","b":[1,2.5,1e+21],"c":{}}"#
        );
        assert_eq!(
            to_json(&v, true, false).unwrap(),
            "{\n  \"a\": \"<a&b>\",\n  \"b\": [\n    1,\n    2.5,\n    1e+21\n  ],\n  \"c\": {}\n}"
        );
    }
}
