//! `mergeMap` and `mergeMapWithOverride`: consul-template merges two
//! `map[string]interface{}` with mergo. Without override a key of the
//! first map keeps its value unless that value is empty (Go's zero: "",
//! 0, false, nil, an empty list or map); with override a non-empty value
//! of the second map wins. Nested maps merge key by key either way.

use super::args::{arity, go_type_error};
use super::f;
use crate::template::{FuncMap, Value};
use std::collections::BTreeMap;

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Nil => true,
        Value::Bool(b) => !b,
        Value::Int(i) => *i == 0,
        Value::Uint(u) => *u == 0,
        Value::Float(x) => *x == 0.0,
        Value::String(s) => s.is_empty(),
        Value::List(l) => l.is_empty(),
        Value::Map(m) => m.is_empty(),
        Value::Object(_) | Value::Func(_) => false,
    }
}

/// Merges `src` into `dst` (both maps), returning the result.
pub fn merge(
    dst: &BTreeMap<String, Value>,
    src: &BTreeMap<String, Value>,
    overwrite: bool,
    depth: usize,
) -> Result<BTreeMap<String, Value>, String> {
    if depth > 100 {
        return Err("mergeMap: maps nested too deeply".into());
    }
    let mut out = dst.clone();
    for (k, s) in src {
        let merged = match (out.get(k), s) {
            (Some(Value::Map(d)), Value::Map(sm)) => {
                Value::Map(merge(d, sm, overwrite, depth + 1)?.into())
            }
            (Some(d), _) if !is_empty(d) && (!overwrite || is_empty(s)) => continue,
            _ => s.clone(),
        };
        out.insert(k.clone(), merged);
    }
    Ok(out)
}

fn arg_map(v: &Value) -> Result<&BTreeMap<String, Value>, String> {
    match v {
        Value::Map(m) => Ok(m),
        _ => Err(go_type_error("map[string]interface {}", v)),
    }
}

/// Registers the two merge functions.
pub fn register(map: &mut FuncMap) {
    for (name, overwrite) in [("mergeMap", false), ("mergeMapWithOverride", true)] {
        map.insert(
            name.into(),
            f(move |a| {
                arity(name, a, 2)?;
                let merged = merge(arg_map(&a[0])?, arg_map(&a[1])?, overwrite, 0)?;
                Ok(Value::Map(merged.into()))
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> Value {
        Value::from_json(&serde_json::from_str(s).unwrap())
    }

    fn call(name: &str, a: &str, b: &str) -> String {
        let mut m = FuncMap::new();
        register(&mut m);
        let v = m[name](&[json(a), json(b)]).unwrap();
        super::super::encode::to_json(&v, false, true).unwrap()
    }

    #[test]
    fn merge_keeps_the_first_maps_values_unless_empty() {
        let a = r#"{"a":1,"b":"","n":{"x":1,"y":""},"l":[]}"#;
        let b = r#"{"a":2,"b":"B","c":3,"n":{"x":2,"y":"Y","z":0},"l":[1]}"#;
        assert_eq!(
            call("mergeMap", a, b),
            r#"{"a":1,"b":"B","c":3,"l":[1],"n":{"x":1,"y":"Y","z":0}}"#
        );
        assert_eq!(
            call("mergeMapWithOverride", a, b),
            r#"{"a":2,"b":"B","c":3,"l":[1],"n":{"x":2,"y":"Y","z":0}}"#
        );
        // An empty value of the second map never overrides.
        assert_eq!(
            call("mergeMapWithOverride", r#"{"a":1}"#, r#"{"a":0}"#),
            r#"{"a":1}"#
        );
    }

    #[test]
    fn non_maps_are_a_type_error() {
        let mut m = FuncMap::new();
        register(&mut m);
        let e = m["mergeMap"](&[Value::from("x"), json("{}")]).unwrap_err();
        assert!(e.contains("expected map[string]interface {}"), "{e}");
    }
}
