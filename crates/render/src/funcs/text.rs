//! String functions: Go's `strings`/`strconv`/`regexp` behaviour, with
//! consul-template's argument order (the piped value comes last).

use super::args::{arg_int, arg_str, arg_strings, arity};
use super::f;
use crate::template::{FuncMap, Value};

fn s1(map: &mut FuncMap, name: &'static str, g: fn(&str) -> Result<Value, String>) {
    map.insert(
        name.into(),
        f(move |a| {
            arity(name, a, 1)?;
            g(arg_str(&a[0])?)
        }),
    );
}

fn s2(map: &mut FuncMap, name: &'static str, g: fn(&str, &str) -> Result<Value, String>) {
    map.insert(
        name.into(),
        f(move |a| {
            arity(name, a, 2)?;
            g(arg_str(&a[0])?, arg_str(&a[1])?)
        }),
    );
}

fn s3(map: &mut FuncMap, name: &'static str, g: fn(&str, &str, &str) -> Result<Value, String>) {
    map.insert(
        name.into(),
        f(move |a| {
            arity(name, a, 3)?;
            g(arg_str(&a[0])?, arg_str(&a[1])?, arg_str(&a[2])?)
        }),
    );
}

fn ok(s: impl Into<String>) -> Result<Value, String> {
    Ok(Value::from(s.into()))
}

/// Go's `strings.TrimSpace` set: ASCII and Unicode white space.
fn trim_space(s: &str) -> &str {
    s.trim_matches(char::is_whitespace)
}

/// Go's `regexp` syntax is RE2, which the `regex` crate follows.
fn compile(re: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(re).map_err(|e| format!("error parsing regexp: {e}"))
}

/// Go's `$1`/`${name}` expansion, which the `regex` crate shares.
fn regex_replace_all(re: &str, with: &str, s: &str) -> Result<Value, String> {
    ok(compile(re)?.replace_all(s, with).into_owned())
}

/// `cases.Title(language.Und, cases.NoLower)`: upper-cases the first
/// letter of every word, leaving the rest as it is.
fn to_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphanumeric() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !(c.is_alphanumeric() || c == '\'' || c == '_');
    }
    out
}

fn parse_err(func: &str, s: &str, kind: &str) -> String {
    format!("{func}: strconv.{kind}: parsing {s:?}: invalid syntax")
}

/// Registers the string functions.
pub fn register(map: &mut FuncMap) {
    s1(map, "toLower", |s| ok(s.to_lowercase()));
    s1(map, "toUpper", |s| ok(s.to_uppercase()));
    s1(map, "toTitle", |s| ok(to_title(s)));
    s1(map, "trimSpace", |s| ok(trim_space(s)));
    s2(
        map,
        "trim",
        |cut, s| ok(s.trim_matches(|c| cut.contains(c))),
    );
    s2(map, "trimPrefix", |p, s| ok(s.strip_prefix(p).unwrap_or(s)));
    s2(map, "trimSuffix", |p, s| ok(s.strip_suffix(p).unwrap_or(s)));
    s3(map, "replaceAll", |from, to, s| ok(s.replace(from, to)));
    s3(map, "regexReplaceAll", regex_replace_all);
    s2(map, "regexMatch", |re, s| {
        Ok(Value::Bool(compile(re)?.is_match(s)))
    });
    s2(map, "split", |sep, s| {
        let s = trim_space(s);
        if s.is_empty() {
            return Ok(Value::list(Vec::new()));
        }
        let parts: Vec<Value> = if sep.is_empty() {
            s.chars().map(|c| Value::from(c.to_string())).collect()
        } else {
            s.split(sep).map(Value::str).collect()
        };
        Ok(Value::list(parts))
    });
    s3(map, "splitToMap", |sep1, sep2, s| {
        let s = trim_space(s);
        let mut m = std::collections::BTreeMap::new();
        if !s.is_empty() {
            for item in s.split(sep1) {
                if let Some((k, v)) = item.split_once(sep2) {
                    m.insert(k.to_string(), Value::str(v));
                }
            }
        }
        Ok(Value::from(m))
    });
    map.insert(
        "join".into(),
        f(|a| {
            arity("join", a, 2)?;
            ok(arg_strings(&a[1])?.join(arg_str(&a[0])?))
        }),
    );
    map.insert(
        "indent".into(),
        f(|a| {
            arity("indent", a, 2)?;
            let n = arg_int(&a[0])?;
            let s = arg_str(&a[1])?;
            if n < 0 {
                return Err("indent value must be a positive integer".into());
            }
            let pad = " ".repeat(n as usize);
            let mut out = String::new();
            let mut at_start = true;
            for c in s.chars() {
                if at_start && c != '\n' {
                    out.push_str(&pad);
                }
                out.push(c);
                at_start = c == '\n';
            }
            ok(out)
        }),
    );
    s1(map, "parseBool", |s| match s {
        "" => Ok(Value::Bool(false)),
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(Value::Bool(true)),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(Value::Bool(false)),
        _ => Err(parse_err("parseBool", s, "ParseBool")),
    });
    s1(map, "parseInt", |s| {
        if s.is_empty() {
            return Ok(Value::Int(0));
        }
        s.parse::<i64>()
            .map(Value::Int)
            .map_err(|_| parse_err("parseInt", s, "ParseInt"))
    });
    s1(map, "parseUint", |s| {
        if s.is_empty() {
            return Ok(Value::Uint(0));
        }
        s.parse::<u64>()
            .map(Value::Uint)
            .map_err(|_| parse_err("parseUint", s, "ParseUint"))
    });
    s1(map, "parseFloat", |s| {
        if s.is_empty() {
            return Ok(Value::Float(0.0));
        }
        s.parse::<f64>()
            .map(Value::Float)
            .map_err(|_| parse_err("parseFloat", s, "ParseFloat"))
    });
    map.insert(
        "timestamp".into(),
        f(|a| match a {
            [] => ok(super::encode::rfc3339_now()),
            [v] if v.as_str() == Some("unix") => ok(crate::source::now_unix().to_string()),
            [v] => {
                let (secs, nanos) = crate::source::now_unix_nanos();
                ok(super::time::format(secs, nanos, arg_str(v)?))
            }
            _ => Err(format!(
                "timestamp: wrong number of arguments, expected 0 or 1, but got {}",
                a.len()
            )),
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: Vec<Value>) -> String {
        let mut m = FuncMap::new();
        register(&mut m);
        match m[name](&args) {
            Ok(v) => format!("{v:?}"),
            Err(e) => format!("ERR {e}"),
        }
    }

    #[test]
    fn string_functions() {
        let s = Value::str;
        let cases: Vec<(&str, Vec<Value>, &str)> = vec![
            (
                "toTitle",
                vec![s("hello wORLD")],
                r#"String("Hello WORLD")"#,
            ),
            ("trimSpace", vec![s(" \t a \n")], r#"String("a")"#),
            (
                "replaceAll",
                vec![s("_"), s("."), s("a_b_c")],
                r#"String("a.b.c")"#,
            ),
            (
                "regexReplaceAll",
                vec![s(".*="), s(""), s("server_alias=x.io")],
                r#"String("x.io")"#,
            ),
            (
                "regexMatch",
                vec![s("server_alias="), s("server_alias=a")],
                "Bool(true)",
            ),
            (
                "split",
                vec![s(":"), s(" a:b ")],
                r#"[String("a"), String("b")]"#,
            ),
            ("split", vec![s(":"), s("  ")], "[]"),
            (
                "indent",
                vec![Value::Int(2), s("a\n\nb")],
                r#"String("  a\n\n  b")"#,
            ),
            ("parseInt", vec![s("")], "Int(0)"),
            (
                "parseInt",
                vec![s("x")],
                r#"ERR parseInt: strconv.ParseInt: parsing "x": invalid syntax"#,
            ),
            ("parseBool", vec![s("T")], "Bool(true)"),
            (
                "join",
                vec![s(","), Value::list(vec![s("a"), s("b")])],
                r#"String("a,b")"#,
            ),
            (
                "toLower",
                vec![Value::Int(1)],
                "ERR wrong type for value; expected string; got int",
            ),
        ];
        for (name, args, want) in cases {
            assert_eq!(call(name, args.clone()), want, "{name} {args:?}");
        }
    }
}
