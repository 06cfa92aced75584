//! Go's built-in template functions (`and or not len index slice eq ne lt
//! le gt ge print printf println html js urlquery call`), with their Go
//! signatures (which decide arity errors and argument conversion) and
//! their exact error messages.

use super::escape;
use super::eval::Ev;
use super::fmt::{display, sprint, sprintf, sprintln};
use super::value::Value;

/// How an argument is passed (the Go parameter type).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Param {
    /// `interface{}`: a missing value arrives as nil.
    Any,
    /// `reflect.Value`: the value as is, missing included.
    Value,
    /// `string`.
    Str,
    /// No type (the receiver of a chain).
    Untyped,
}

type Run = fn(&[Ev], Option<&str>) -> Result<Ev, String>;

/// A built-in: its name, fixed parameters, variadic parameter and body.
pub(crate) struct Builtin {
    pub name: &'static str,
    pub fixed: &'static [Param],
    pub variadic: Option<Param>,
    pub run: Run,
}

const V: Param = Param::Value;

static BUILTINS: &[Builtin] = &[
    Builtin {
        name: "and",
        fixed: &[V],
        variadic: Some(V),
        run: |a, _| Ok(a[0].clone()),
    },
    Builtin {
        name: "call",
        fixed: &[V],
        variadic: Some(V),
        run: call,
    },
    Builtin {
        name: "eq",
        fixed: &[V],
        variadic: Some(V),
        run: |a, _| eq(&a[0], &a[1..]).map(boolean),
    },
    Builtin {
        name: "ge",
        fixed: &[V, V],
        variadic: None,
        run: |a, _| lt(&a[0], &a[1]).map(|b| boolean(!b)),
    },
    Builtin {
        name: "gt",
        fixed: &[V, V],
        variadic: None,
        run: |a, _| le(&a[0], &a[1]).map(|b| boolean(!b)),
    },
    Builtin {
        name: "html",
        fixed: &[],
        variadic: Some(Param::Any),
        run: |a, _| Ok(string(escape::html(&eval_args(a)))),
    },
    Builtin {
        name: "index",
        fixed: &[V],
        variadic: Some(V),
        run: index,
    },
    Builtin {
        name: "js",
        fixed: &[],
        variadic: Some(Param::Any),
        run: |a, _| Ok(string(escape::js(&eval_args(a)))),
    },
    Builtin {
        name: "le",
        fixed: &[V, V],
        variadic: None,
        run: |a, _| le(&a[0], &a[1]).map(boolean),
    },
    Builtin {
        name: "len",
        fixed: &[V],
        variadic: None,
        run: length,
    },
    Builtin {
        name: "lt",
        fixed: &[V, V],
        variadic: None,
        run: |a, _| lt(&a[0], &a[1]).map(boolean),
    },
    Builtin {
        name: "ne",
        fixed: &[V, V],
        variadic: None,
        run: |a, _| eq(&a[0], &a[1..2]).map(|b| boolean(!b)),
    },
    Builtin {
        name: "not",
        fixed: &[V],
        variadic: None,
        run: |a, _| Ok(boolean(!indirect(&a[0]).truthy())),
    },
    Builtin {
        name: "or",
        fixed: &[V],
        variadic: Some(V),
        run: |a, _| Ok(a[0].clone()),
    },
    Builtin {
        name: "print",
        fixed: &[],
        variadic: Some(Param::Any),
        run: |a, _| Ok(string(sprint(&values(a)))),
    },
    Builtin {
        name: "printf",
        fixed: &[Param::Str],
        variadic: Some(Param::Any),
        run: printf,
    },
    Builtin {
        name: "println",
        fixed: &[],
        variadic: Some(Param::Any),
        run: |a, _| Ok(string(sprintln(&values(a)))),
    },
    Builtin {
        name: "slice",
        fixed: &[V],
        variadic: Some(V),
        run: slice,
    },
    Builtin {
        name: "urlquery",
        fixed: &[],
        variadic: Some(Param::Any),
        run: |a, _| Ok(string(escape::urlquery(&eval_args(a)))),
    },
];

/// The built-in called `name`, if any.
pub(crate) fn lookup(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

fn boolean(b: bool) -> Ev {
    Ev::Plain(Value::Bool(b))
}

fn string(s: String) -> Ev {
    Ev::Plain(Value::from(s))
}

fn values(a: &[Ev]) -> Vec<Value> {
    a.iter().map(Ev::value).collect()
}

/// Go's `indirectInterface`: unwraps an `interface{}`; a nil one is invalid.
fn indirect(v: &Ev) -> Ev {
    match v {
        Ev::Iface(Value::Nil) => Ev::Missing,
        Ev::Iface(v) => Ev::Plain(v.clone()),
        e => e.clone(),
    }
}

/// Go's `evalArgs` for html/js/urlquery: one string as is, else `Sprint`
/// with nil shown as `<no value>`.
fn eval_args(a: &[Ev]) -> String {
    if let [Ev::Plain(Value::String(s)) | Ev::Iface(Value::String(s))] = a {
        return s.to_string();
    }
    let shown: Vec<Value> = a
        .iter()
        .map(|e| match e.value() {
            Value::Nil => Value::str("<no value>"),
            v => v,
        })
        .collect();
    sprint(&shown)
}

fn printf(a: &[Ev], _: Option<&str>) -> Result<Ev, String> {
    let format = a[0].value();
    let format = format.as_str().unwrap_or_default();
    Ok(string(sprintf(format, &values(&a[1..]))))
}

/// Go 1.19's `call`: the function's own error is reported as the error of
/// `call`.
fn call(a: &[Ev], _: Option<&str>) -> Result<Ev, String> {
    match indirect(&a[0]) {
        Ev::Missing => Err("call of nil".into()),
        Ev::Plain(Value::Func(f)) | Ev::Iface(Value::Func(f)) => f(&values(&a[1..])).map(Ev::Plain),
        v => Err(format!("non-function of type {}", v.type_name())),
    }
}

fn length(a: &[Ev], _: Option<&str>) -> Result<Ev, String> {
    let n = match &a[0] {
        Ev::Iface(Value::Nil) | Ev::Plain(Value::Nil) => return Err("len of nil pointer".into()),
        Ev::Missing => return Err("reflect: call of reflect.Value.Type on zero Value".into()),
        Ev::Iface(v) | Ev::Plain(v) => match v {
            Value::String(s) => s.len(),
            Value::List(l) => l.len(),
            Value::Map(m) => m.len(),
            Value::Object(o) => match (o.elements(), o.entries()) {
                (Some(e), _) => e.len(),
                (None, Some(e)) => e.len(),
                _ => return Err(format!("len of type {}", v.type_name())),
            },
            v => return Err(format!("len of type {}", v.type_name())),
        },
    };
    Ok(Ev::Plain(Value::Int(n as i64)))
}

fn index_arg(index: &Ev, cap: usize) -> Result<usize, String> {
    let x = match indirect(index) {
        Ev::Plain(Value::Int(i)) => i,
        Ev::Plain(Value::Uint(u)) => u as i64,
        Ev::Missing => return Err("cannot index slice/array with nil".into()),
        v => {
            return Err(format!(
                "cannot index slice/array with type {}",
                v.type_name()
            ))
        }
    };
    if x < 0 || x as u64 > cap as u64 {
        return Err(format!("index out of range: {x}"));
    }
    Ok(x as usize)
}

fn map_key(index: &Ev) -> Result<String, String> {
    match indirect(index) {
        Ev::Missing => Err("value is nil; should be of type string".into()),
        Ev::Plain(Value::String(s)) => Ok(s.to_string()),
        v => Err(format!(
            "value has type {}; should be string",
            v.type_name()
        )),
    }
}

fn index(a: &[Ev], _: Option<&str>) -> Result<Ev, String> {
    let mut item = indirect(&a[0]);
    if let Ev::Missing = item {
        return Err("index of untyped nil".into());
    }
    for idx in &a[1..] {
        let v = match indirect(&item) {
            Ev::Plain(Value::Nil) | Ev::Missing => return Err("index of nil pointer".into()),
            Ev::Plain(v) | Ev::Iface(v) => v,
        };
        item = match &v {
            Value::List(l) => {
                let x = index_arg(idx, l.len())?;
                Ev::Iface(
                    l.get(x)
                        .cloned()
                        .ok_or("reflect: slice index out of range")?,
                )
            }
            Value::String(s) => {
                let x = index_arg(idx, s.len())?;
                Ev::Plain(Value::Uint(u64::from(
                    *s.as_bytes()
                        .get(x)
                        .ok_or("reflect: string index out of range")?,
                )))
            }
            Value::Map(m) => {
                let k = map_key(idx)?;
                Ev::Iface(m.get(&k).cloned().unwrap_or(Value::Nil))
            }
            Value::Object(o) => {
                if let Some(elems) = o.elements() {
                    let x = index_arg(idx, elems.len())?;
                    Ev::Plain(
                        elems
                            .get(x)
                            .cloned()
                            .ok_or("reflect: slice index out of range")?,
                    )
                } else if let Some(entries) = o.entries() {
                    let k = map_key(idx)?;
                    let found = entries.into_iter().find(|(ek, _)| *ek == k).map(|(_, v)| v);
                    Ev::Plain(found.unwrap_or_else(|| o.zero_element()))
                } else {
                    return Err(format!("can't index item of type {}", v.type_name()));
                }
            }
            v => return Err(format!("can't index item of type {}", v.type_name())),
        };
    }
    Ok(item)
}

fn slice(a: &[Ev], _: Option<&str>) -> Result<Ev, String> {
    let item = indirect(&a[0]);
    let Some(v) = item.as_value() else {
        return Err("slice of untyped nil".into());
    };
    let indexes = &a[1..];
    if indexes.len() > 3 {
        return Err(format!("too many slice indexes: {}", indexes.len()));
    }
    let (len, is_string) = match v {
        Value::String(s) => {
            if indexes.len() == 3 {
                return Err("cannot 3-index slice a string".into());
            }
            (s.len(), true)
        }
        Value::List(l) => (l.len(), false),
        v => return Err(format!("can't slice item of type {}", v.type_name())),
    };
    let mut idx = [0, len, 0];
    for (i, x) in indexes.iter().enumerate() {
        idx[i] = index_arg(x, len)?;
    }
    if idx[0] > idx[1] {
        return Err(format!("invalid slice index: {} > {}", idx[0], idx[1]));
    }
    if indexes.len() == 3 && idx[1] > idx[2] {
        return Err(format!("invalid slice index: {} > {}", idx[1], idx[2]));
    }
    Ok(Ev::Plain(match v {
        Value::String(s) if is_string => {
            Value::from(String::from_utf8_lossy(&s.as_bytes()[idx[0]..idx[1]]).into_owned())
        }
        Value::List(l) => Value::list(l[idx[0]..idx[1]].to_vec()),
        _ => unreachable!("checked above"),
    }))
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Kind {
    Invalid,
    Bool,
    Int,
    Uint,
    Float,
    String,
}

fn basic_kind(v: &Ev) -> Kind {
    match v.as_value() {
        Some(Value::Bool(_)) => Kind::Bool,
        Some(Value::Int(_)) => Kind::Int,
        Some(Value::Uint(_)) => Kind::Uint,
        Some(Value::Float(_)) => Kind::Float,
        Some(Value::String(_)) => Kind::String,
        _ => Kind::Invalid,
    }
}

const BAD_TYPE: &str = "invalid type for comparison";
const BAD_COMPARISON: &str = "incompatible types for comparison";

fn int_of(v: &Ev) -> i64 {
    match v.as_value() {
        Some(Value::Int(i)) => *i,
        _ => 0,
    }
}

fn uint_of(v: &Ev) -> u64 {
    match v.as_value() {
        Some(Value::Uint(u)) => *u,
        _ => 0,
    }
}

/// The reflect kind, for "can compare" (same kind, or one is nil).
fn reflect_kind(v: &Ev) -> u8 {
    match v.as_value() {
        None => 0,
        Some(Value::List(_)) => 1,
        Some(Value::Map(_)) => 2,
        Some(Value::Object(_)) => 3,
        Some(Value::Func(_)) => 4,
        Some(Value::Nil) => 5,
        Some(_) => 6,
    }
}

fn is_nil(v: &Ev) -> bool {
    matches!(v.as_value(), None | Some(Value::Nil))
}

fn eq(arg1: &Ev, rest: &[Ev]) -> Result<bool, String> {
    let arg1 = indirect(arg1);
    if rest.is_empty() {
        return Err("missing argument for comparison".into());
    }
    let k1 = basic_kind(&arg1);
    for arg in rest {
        let arg = indirect(arg);
        let k2 = basic_kind(&arg);
        let truth = if k1 != k2 {
            match (k1, k2) {
                (Kind::Int, Kind::Uint) => {
                    int_of(&arg1) >= 0 && int_of(&arg1) as u64 == uint_of(&arg)
                }
                (Kind::Uint, Kind::Int) => {
                    int_of(&arg) >= 0 && uint_of(&arg1) == int_of(&arg) as u64
                }
                _ if !matches!(arg1, Ev::Missing) && !matches!(arg, Ev::Missing) => {
                    return Err(BAD_COMPARISON.into())
                }
                _ => false,
            }
        } else {
            match (arg1.as_value(), arg.as_value()) {
                (Some(Value::Bool(a)), Some(Value::Bool(b))) => a == b,
                (Some(Value::Float(a)), Some(Value::Float(b))) => a == b,
                (Some(Value::Int(a)), Some(Value::Int(b))) => a == b,
                (Some(Value::Uint(a)), Some(Value::Uint(b))) => a == b,
                (Some(Value::String(a)), Some(Value::String(b))) => a == b,
                _ => {
                    let (r1, r2) = (reflect_kind(&arg1), reflect_kind(&arg));
                    if r1 != r2 && r1 != 0 && r2 != 0 {
                        return Err(format!(
                            "non-comparable types {}: {}, {}: {}",
                            sprintf("%s", &[arg1.value()]),
                            arg1.type_name(),
                            arg.type_name(),
                            display(&arg.value())
                        ));
                    }
                    if is_nil(&arg1) || is_nil(&arg) {
                        is_nil(&arg) == is_nil(&arg1)
                    } else {
                        match (arg1.as_value(), arg.as_value()) {
                            (Some(Value::Object(a)), Some(Value::Object(b))) => {
                                std::rc::Rc::ptr_eq(a, b)
                            }
                            _ => {
                                return Err(format!(
                                    "non-comparable type {}: {}",
                                    sprintf("%s", &[arg.value()]),
                                    arg.type_name()
                                ))
                            }
                        }
                    }
                }
            }
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

fn lt(arg1: &Ev, arg2: &Ev) -> Result<bool, String> {
    let arg1 = indirect(arg1);
    let k1 = basic_kind(&arg1);
    if k1 == Kind::Invalid {
        return Err(BAD_TYPE.into());
    }
    let arg2 = indirect(arg2);
    let k2 = basic_kind(&arg2);
    if k2 == Kind::Invalid {
        return Err(BAD_TYPE.into());
    }
    if k1 != k2 {
        return match (k1, k2) {
            (Kind::Int, Kind::Uint) => {
                Ok(int_of(&arg1) < 0 || (int_of(&arg1) as u64) < uint_of(&arg2))
            }
            (Kind::Uint, Kind::Int) => {
                Ok(int_of(&arg2) >= 0 && uint_of(&arg1) < int_of(&arg2) as u64)
            }
            _ => Err(BAD_COMPARISON.into()),
        };
    }
    Ok(match (arg1.as_value(), arg2.as_value()) {
        (Some(Value::Float(a)), Some(Value::Float(b))) => a < b,
        (Some(Value::Int(a)), Some(Value::Int(b))) => a < b,
        (Some(Value::Uint(a)), Some(Value::Uint(b))) => a < b,
        (Some(Value::String(a)), Some(Value::String(b))) => a < b,
        _ => return Err(BAD_TYPE.into()),
    })
}

fn le(arg1: &Ev, arg2: &Ev) -> Result<bool, String> {
    if lt(arg1, arg2)? {
        return Ok(true);
    }
    eq(arg1, std::slice::from_ref(arg2))
}
