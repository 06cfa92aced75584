//! consul-template's arithmetic helpers. They are declared `f(b, a)` and
//! compute `a OP b`, so `{{ subtract 1 5 }}` and `{{ 5 | subtract 1 }}`
//! are both 4. Results keep Go's types: int with int (or uint) is int,
//! uint with uint is uint, anything with a float is float.

use super::f;
use crate::template::{FuncMap, Value};

#[derive(Clone, Copy)]
enum N {
    I(i64),
    U(u64),
    F(f64),
}

fn num(name: &str, v: &Value) -> Result<N, String> {
    match v {
        Value::Int(i) => Ok(N::I(*i)),
        Value::Uint(u) => Ok(N::U(*u)),
        Value::Float(x) => Ok(N::F(*x)),
        other => Err(format!(
            "{name}: unknown type for {:?} ({})",
            show(other),
            other.type_name()
        )),
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Nil => "<invalid reflect.Value>".into(),
        other => format!("{other:?}"),
    }
}

fn as_f(n: N) -> f64 {
    match n {
        N::I(i) => i as f64,
        N::U(u) => u as f64,
        N::F(x) => x,
    }
}

type IntOp = fn(i64, i64) -> Option<i64>;
type UintOp = fn(u64, u64) -> Option<u64>;
type FloatOp = fn(f64, f64) -> f64;

fn arith(name: &str, a: N, b: N, i: IntOp, u: UintOp, x: FloatOp) -> Result<Value, String> {
    let overflow = || format!("{name}: integer overflow or division by zero");
    Ok(match (a, b) {
        (N::U(a), N::U(b)) => Value::Uint(u(a, b).ok_or_else(overflow)?),
        (N::F(_), _) | (_, N::F(_)) => Value::Float(x(as_f(a), as_f(b))),
        (a, b) => {
            let to_i = |n| match n {
                N::I(i) => i,
                N::U(u) => u as i64,
                N::F(_) => 0,
            };
            Value::Int(i(to_i(a), to_i(b)).ok_or_else(overflow)?)
        }
    })
}

fn two(name: &str, args: &[Value]) -> Result<(N, N), String> {
    match args {
        // Declared (b, a): the first argument is b.
        [b, a] => Ok((num(name, a)?, num(name, b)?)),
        _ => Err(format!(
            "wrong number of args for {name}: want 2 got {}",
            args.len()
        )),
    }
}

fn pick(name: &str, args: &[Value], want_min: bool) -> Result<Value, String> {
    let (a, b) = two(name, args)?;
    let a_wins = if want_min {
        as_f(a) < as_f(b)
    } else {
        as_f(a) > as_f(b)
    };
    let chosen = if a_wins { a } else { b };
    Ok(match chosen {
        N::I(i) => Value::Int(i),
        N::U(u) => Value::Uint(u),
        N::F(x) => Value::Float(x),
    })
}

/// Registers add, subtract, multiply, divide, modulo, minimum, maximum.
pub fn register(map: &mut FuncMap) {
    map.insert(
        "add".into(),
        f(|a| {
            let (x, y) = two("add", a)?;
            arith("add", x, y, i64::checked_add, u64::checked_add, |p, q| {
                p + q
            })
        }),
    );
    map.insert(
        "subtract".into(),
        f(|a| {
            let (x, y) = two("subtract", a)?;
            arith(
                "subtract",
                x,
                y,
                i64::checked_sub,
                u64::checked_sub,
                |p, q| p - q,
            )
        }),
    );
    map.insert(
        "multiply".into(),
        f(|a| {
            let (x, y) = two("multiply", a)?;
            arith(
                "multiply",
                x,
                y,
                i64::checked_mul,
                u64::checked_mul,
                |p, q| p * q,
            )
        }),
    );
    map.insert(
        "divide".into(),
        f(|a| {
            let (x, y) = two("divide", a)?;
            arith(
                "divide",
                x,
                y,
                i64::checked_div,
                u64::checked_div,
                |p, q| p / q,
            )
        }),
    );
    map.insert(
        "modulo".into(),
        f(|a| {
            let (x, y) = two("modulo", a)?;
            if matches!(x, N::F(_)) || matches!(y, N::F(_)) {
                let bad = if matches!(x, N::F(_)) { &a[1] } else { &a[0] };
                return Err(format!(
                    "modulo: unknown type for {:?} ({})",
                    show(bad),
                    bad.type_name()
                ));
            }
            arith(
                "modulo",
                x,
                y,
                i64::checked_rem,
                u64::checked_rem,
                |p, q| p % q,
            )
        }),
    );
    map.insert("minimum".into(), f(|a| pick("minimum", a, true)));
    map.insert("maximum".into(), f(|a| pick("maximum", a, false)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_order_and_types_are_consul_templates() {
        let mut m = FuncMap::new();
        register(&mut m);
        let (i, u, x) = (Value::Int, Value::Uint, Value::Float);
        let cases: Vec<(&str, Value, Value, &str)> = vec![
            ("add", i(1), i(2), "Int(3)"),
            ("subtract", i(1), i(5), "Int(4)"),
            ("divide", i(2), i(10), "Int(5)"),
            ("divide", x(4.0), i(10), "Float(2.5)"),
            ("modulo", i(3), i(10), "Int(1)"),
            ("multiply", u(3), u(4), "Uint(12)"),
            ("add", u(1), i(2), "Int(3)"),
            ("minimum", i(3), x(2.5), "Float(2.5)"),
            ("maximum", i(3), u(2), "Int(3)"),
            (
                "divide",
                i(0),
                i(1),
                "ERR divide: integer overflow or division by zero",
            ),
            (
                "add",
                Value::str("x"),
                i(1),
                "ERR add: unknown type for \"x\" (string)",
            ),
        ];
        for (name, b, a, want) in cases {
            let got = match m[name](&[b.clone(), a.clone()]) {
                Ok(v) => format!("{v:?}"),
                Err(e) => format!("ERR {e}"),
            };
            assert_eq!(got, want, "{name} {b:?} {a:?}");
        }
    }
}
