//! Argument checks for functions whose Go signatures are typed: the
//! engine passes dynamic values, and a wrong kind gets Go's wording.

use crate::template::Value;

/// Go's text when a value of the wrong type reaches a typed parameter.
pub fn go_type_error(want: &str, got: &Value) -> String {
    format!(
        "wrong type for value; expected {want}; got {}",
        got.type_name()
    )
}

/// A `string` parameter.
pub fn arg_str(v: &Value) -> Result<&str, String> {
    v.as_str().ok_or_else(|| go_type_error("string", v))
}

/// An `int` parameter (integers, and floats with no fraction as JSON gives).
pub fn arg_int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Uint(u) => i64::try_from(*u).map_err(|_| go_type_error("int", v)),
        _ => Err(go_type_error("int", v)),
    }
}

/// A `[]string` or `[]interface{}` parameter, as strings.
pub fn arg_strings(v: &Value) -> Result<Vec<String>, String> {
    let items = elements(v).ok_or_else(|| go_type_error("[]string", v))?;
    items
        .iter()
        .map(|i| arg_str(i).map(str::to_string))
        .collect()
}

/// The elements of a list or list-like object.
pub fn elements(v: &Value) -> Option<Vec<Value>> {
    match v {
        Value::List(l) => Some(l.to_vec()),
        Value::Object(o) => o.elements(),
        Value::Nil => Some(Vec::new()),
        _ => None,
    }
}

/// Checks the number of arguments.
pub fn arity(name: &str, a: &[Value], want: usize) -> Result<(), String> {
    if a.len() == want {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {name}: want {want} got {}",
            a.len()
        ))
    }
}
