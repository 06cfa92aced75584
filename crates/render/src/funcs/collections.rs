//! Functions over lists and maps: grouping (`byKey`, `byTag`, `byMeta`,
//! `byPort`), membership (`in`, `contains*`), nesting (`explode`,
//! `explodeMap`), `loop`, the `scratch` pad and `sockaddr`'s basics.

use super::args::{arg_str, arity, elements, go_type_error};
use super::f;
use super::objects::{as_key_pair, key_pair, tags_of};
use crate::template::{FuncMap, Object, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Go's `in`: membership in a list (same kind only) or a substring.
pub fn in_list(l: &Value, v: &Value) -> bool {
    if let Value::String(hay) = l {
        return matches!(v, Value::String(n) if hay.contains(&**n));
    }
    let Some(items) = elements(l) else {
        return false;
    };
    items.iter().any(|item| match (item, v) {
        (Value::Int(a), Value::Int(b)) => a == b,
        (Value::Float(a), Value::Float(b)) => a == b,
        (Value::String(a), Value::String(b)) => a == b,
        _ => false,
    })
}

fn group(map: &mut BTreeMap<String, Vec<Value>>, key: String, v: &Value) {
    map.entry(key).or_default().push(v.clone());
}

fn by_tag(a: &[Value]) -> Result<Value, String> {
    arity("byTag", a, 1)?;
    let mut m = BTreeMap::new();
    for item in
        elements(&a[0]).ok_or_else(|| format!("byTag: wrong argument type {}", a[0].type_name()))?
    {
        let tags = tags_of(&item)
            .ok_or_else(|| format!("byTag: wrong argument type {}", a[0].type_name()))?;
        for t in tags {
            group(&mut m, t, &item);
        }
    }
    Ok(Value::map(m.into_iter().map(|(k, v)| (k, Value::list(v)))))
}

fn by_port(a: &[Value]) -> Result<Value, String> {
    arity("byPort", a, 1)?;
    let mut m: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    for item in elements(&a[0]).unwrap_or_default() {
        let Value::Object(o) = &item else {
            return Err(format!("byPort: wrong argument type {}", a[0].type_name()));
        };
        let Some(Value::Int(port)) = o.field("Port") else {
            return Err(format!("byPort: wrong argument type {}", a[0].type_name()));
        };
        m.entry(port).or_default().push(item.clone());
    }
    // Go's map[int] ranges in numeric order; keys become decimal strings.
    let mut out: Vec<(String, Value)> = m
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::list(v)))
        .collect();
    out.sort_by_key(|(k, _)| k.parse::<i64>().unwrap_or(0));
    Ok(Value::object(OrderedMap(out)))
}

/// A map whose keys are not strings in Go (`map[int]`): ranged in the
/// key's own order.
struct OrderedMap(Vec<(String, Value)>);

impl Object for OrderedMap {
    fn type_name(&self) -> &str {
        "map[int][]interface {}"
    }
    fn field(&self, _: &str) -> Option<Value> {
        None
    }
    fn display(&self) -> String {
        format!("map[{} entries]", self.0.len())
    }
    fn truthy(&self) -> bool {
        !self.0.is_empty()
    }
    fn entries(&self) -> Option<Vec<(String, Value)>> {
        Some(self.0.clone())
    }
}

fn by_key(a: &[Value]) -> Result<Value, String> {
    arity("byKey", a, 1)?;
    let mut m: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for item in elements(&a[0]).ok_or_else(|| go_type_error("[]*dependency.KeyPair", &a[0]))? {
        let mut pair =
            as_key_pair(&item).ok_or_else(|| go_type_error("[]*dependency.KeyPair", &a[0]))?;
        let (top, rest) = pair.key.split_once('/').unwrap_or((&pair.key, ""));
        let (top, rest) = (top.to_string(), rest.to_string());
        if rest.is_empty() {
            continue;
        }
        pair.key = rest.clone();
        m.entry(top).or_default().insert(rest, key_pair(&pair));
    }
    Ok(Value::map(m.into_iter().map(|(k, v)| (k, Value::from(v)))))
}

fn by_meta(a: &[Value]) -> Result<Value, String> {
    arity("byMeta", a, 2)?;
    let metas: Vec<&str> = arg_str(&a[0])?.split(',').collect();
    let normalize = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut m = BTreeMap::new();
    for item in
        elements(&a[1]).ok_or_else(|| go_type_error("[]*dependency.HealthService", &a[1]))?
    {
        let Value::Object(o) = &item else {
            return Err(go_type_error("[]*dependency.HealthService", &a[1]));
        };
        let meta = o.field("ServiceMeta");
        let get = |k: &str| -> String {
            match &meta {
                Some(Value::Object(mo)) => match mo.field(k) {
                    Some(Value::String(s)) => s.to_string(),
                    _ => String::new(),
                },
                _ => String::new(),
            }
        };
        let mut parts = Vec::new();
        for spec in &metas {
            let (key, is_int) = match spec.strip_suffix("|int") {
                Some(k) => (k, true),
                None => (*spec, false),
            };
            let mut value = get(key);
            if value.is_empty() {
                value = if is_int {
                    "0".into()
                } else {
                    format!("_no_{key}_")
                };
            }
            if is_int {
                let n: i64 = value
                    .parse()
                    .map_err(|_| format!("cannot parse {value} as number : strconv.Atoi: parsing {value:?}: invalid syntax"))?;
                value = format!("{n:05}");
            }
            parts.push(normalize(&value));
        }
        group(&mut m, parts.join("_"), &item);
    }
    Ok(Value::map(m.into_iter().map(|(k, v)| (k, Value::list(v)))))
}

fn explode_into(
    m: &mut BTreeMap<String, Value>,
    key: &str,
    v: Value,
    path: &str,
) -> Result<(), String> {
    match key.split_once('/') {
        Some((top, rest)) => {
            let entry = m
                .entry(top.to_string())
                .or_insert_with(|| Value::map(Vec::<(String, Value)>::new()));
            let Value::Map(nested) = entry else {
                return Err(format!(
                    "not a map: {path:?}: {top:?} already has value {entry:?}"
                ));
            };
            let mut nested = (**nested).clone();
            explode_into(&mut nested, rest, v, key)?;
            *entry = Value::from(nested);
            Ok(())
        }
        None => {
            if !key.is_empty() {
                m.insert(key.to_string(), v);
            }
            Ok(())
        }
    }
}

/// consul-template's scratch pad: values kept for the rest of one render.
#[derive(Default)]
pub struct Scratch {
    values: RefCell<BTreeMap<String, Value>>,
}

impl Scratch {
    fn map_set(&self, a: &[Value], overwrite: bool) -> Result<Value, String> {
        let [k, mk, v] = a else {
            return Err(format!("wrong number of args: want 3 got {}", a.len()));
        };
        let (k, mk) = (arg_str(k)?, arg_str(mk)?);
        let mut values = self.values.borrow_mut();
        let entry = values
            .entry(k.to_string())
            .or_insert_with(|| Value::map(Vec::<(String, Value)>::new()));
        let Value::Map(m) = entry else {
            return Err(format!("{k:?} is not a map"));
        };
        let mut m = (**m).clone();
        if overwrite || !m.contains_key(mk) {
            m.insert(mk.to_string(), v.clone());
        }
        *entry = Value::from(m);
        Ok(Value::str(""))
    }
}

impl Object for Scratch {
    fn type_name(&self) -> &str {
        "*template.Scratch"
    }
    fn field(&self, _: &str) -> Option<Value> {
        None
    }
    fn method(&self, name: &str, a: &[Value]) -> Option<Result<Value, String>> {
        let key = || {
            a.first()
                .ok_or_else(|| "missing key".to_string())
                .and_then(|k| arg_str(k).map(str::to_string))
        };
        Some(match name {
            "Key" => key().map(|k| Value::Bool(self.values.borrow().contains_key(&k))),
            "Get" => key().map(|k| self.values.borrow().get(&k).cloned().unwrap_or_default()),
            "Set" | "SetX" => match a {
                [_, v] => key().map(|k| {
                    let mut values = self.values.borrow_mut();
                    if name == "Set" || !values.contains_key(&k) {
                        values.insert(k, v.clone());
                    }
                    Value::str("")
                }),
                _ => Err(format!(
                    "wrong number of args for {name}: want 2 got {}",
                    a.len()
                )),
            },
            "MapSet" => self.map_set(a, true),
            "MapSetX" => self.map_set(a, false),
            "MapValues" => key().map(|k| match self.values.borrow().get(&k) {
                Some(Value::Map(m)) => Value::list(m.values().cloned().collect()),
                _ => Value::Nil,
            }),
            _ => return None,
        })
    }
    fn display(&self) -> String {
        "&{}".into()
    }
}

fn loop_(a: &[Value]) -> Result<Value, String> {
    let to_i = |v: &Value| -> Result<i64, String> {
        match v {
            Value::Int(i) => Ok(*i),
            Value::Uint(u) => Ok(*u as i64),
            Value::String(s) if s.is_empty() => Ok(0),
            Value::String(s) => s
                .parse()
                .map_err(|_| format!("parseInt: strconv.ParseInt: parsing {s:?}: invalid syntax")),
            other => Err(format!("loop: bad argument type: {}", other.type_name())),
        }
    };
    let (start, stop) = match a {
        [n] => (0, to_i(n)?),
        [s, e] => (to_i(s)?, to_i(e)?),
        _ => {
            return Err(format!(
                "loop: wrong number of arguments, expected 1 or 2, but got {}",
                a.len()
            ))
        }
    };
    if stop.saturating_sub(start) > 10_000_000 {
        return Err("loop: more than 10000000 iterations".into());
    }
    Ok(Value::list((start..stop).map(Value::Int).collect()))
}

/// go-sockaddr's most used template calls.
pub fn sockaddr(a: &[Value]) -> Result<Value, String> {
    let words = a
        .iter()
        .map(|v| arg_str(v).map(str::to_string))
        .collect::<Result<Vec<_>, _>>()?;
    let addrs = interface_addrs();
    let pick = |want: fn(&IpAddr) -> bool| {
        addrs
            .iter()
            .filter(|(_, ip)| want(ip))
            .map(|(_, ip)| ip.to_string())
            .next()
            .unwrap_or_default()
    };
    let private = |ip: &IpAddr| matches!(ip, IpAddr::V4(v) if v.is_private());
    let public = |ip: &IpAddr| matches!(ip, IpAddr::V4(v) if !v.is_private() && !v.is_loopback() && !v.is_link_local());
    match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["GetPrivateIP"] => Ok(Value::from(pick(private))),
        ["GetPublicIP"] => Ok(Value::from(pick(public))),
        ["GetInterfaceIP", name] => Ok(Value::from(
            addrs
                .iter()
                .find(|(n, ip)| n == name && ip.is_ipv4())
                .map(|(_, ip)| ip.to_string())
                .unwrap_or_default(),
        )),
        other => Err(format!(
            "sockaddr: only GetPrivateIP, GetPublicIP and GetInterfaceIP \"name\" are supported by shoal, not {:?}",
            other.join(" ")
        )),
    }
}

fn interface_addrs() -> Vec<(String, IpAddr)> {
    let Ok(list) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    list.filter_map(|i| {
        let addr = i.address?;
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else {
            IpAddr::V6(addr.as_sockaddr_in6()?.ip())
        };
        Some((i.interface_name, ip))
    })
    .collect()
}

/// Registers the collection functions.
pub fn register(map: &mut FuncMap) {
    map.insert("byTag".into(), f(by_tag));
    map.insert("byPort".into(), f(by_port));
    map.insert("byKey".into(), f(by_key));
    map.insert("byMeta".into(), f(by_meta));
    map.insert("loop".into(), f(loop_));
    map.insert(
        "in".into(),
        f(|a| {
            arity("in", a, 2)?;
            Ok(Value::Bool(in_list(&a[0], &a[1])))
        }),
    );
    map.insert(
        "contains".into(),
        f(|a| {
            arity("contains", a, 2)?;
            Ok(Value::Bool(in_list(&a[1], &a[0])))
        }),
    );
    // (name, result when the loop ends, inverted membership test)
    for (name, ret_true, invert) in [
        ("containsAll", true, true),
        ("containsAny", false, false),
        ("containsNone", true, false),
        ("containsNotAll", false, true),
    ] {
        map.insert(
            name.into(),
            f(move |a| {
                arity(name, a, 2)?;
                let needles =
                    elements(&a[0]).ok_or_else(|| go_type_error("[]interface {}", &a[0]))?;
                for n in &needles {
                    if in_list(&a[1], n) != invert {
                        return Ok(Value::Bool(!ret_true));
                    }
                }
                Ok(Value::Bool(ret_true))
            }),
        );
    }
    map.insert(
        "explode".into(),
        f(|a| {
            arity("explode", a, 1)?;
            let mut m = BTreeMap::new();
            for item in
                elements(&a[0]).ok_or_else(|| go_type_error("[]*dependency.KeyPair", &a[0]))?
            {
                let p = as_key_pair(&item)
                    .ok_or_else(|| go_type_error("[]*dependency.KeyPair", &a[0]))?;
                explode_into(&mut m, &p.key, Value::str(&p.value), &p.key)
                    .map_err(|e| format!("explode: {e}"))?;
            }
            Ok(Value::from(m))
        }),
    );
    map.insert(
        "explodeMap".into(),
        f(|a| {
            arity("explodeMap", a, 1)?;
            let Value::Map(input) = &a[0] else {
                return Err(go_type_error("map[string]interface {}", &a[0]));
            };
            let mut m = BTreeMap::new();
            for (k, v) in input.iter() {
                explode_into(&mut m, k, v.clone(), k).map_err(|e| format!("explodeMap: {e}"))?;
            }
            Ok(Value::from(m))
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership() {
        let l = Value::list(vec![Value::str("a"), Value::str("b")]);
        let mut m = FuncMap::new();
        register(&mut m);
        let call = |n: &str, a: Vec<Value>| format!("{:?}", m[n](&a).unwrap());
        let needles = Value::list(vec![Value::str("a"), Value::str("z")]);
        let cases = [
            ("contains", vec![Value::str("a"), l.clone()], "Bool(true)"),
            ("in", vec![l.clone(), Value::str("z")], "Bool(false)"),
            (
                "in",
                vec![Value::str("haystack"), Value::str("st")],
                "Bool(true)",
            ),
            (
                "containsAll",
                vec![needles.clone(), l.clone()],
                "Bool(false)",
            ),
            (
                "containsAny",
                vec![needles.clone(), l.clone()],
                "Bool(true)",
            ),
            (
                "containsNone",
                vec![needles.clone(), l.clone()],
                "Bool(false)",
            ),
            (
                "containsNotAll",
                vec![needles.clone(), l.clone()],
                "Bool(true)",
            ),
            (
                "loop",
                vec![Value::Int(2), Value::Int(4)],
                "[Int(2), Int(3)]",
            ),
        ];
        for (n, a, want) in cases {
            assert_eq!(call(n, a.clone()), want, "{n} {a:?}");
        }
    }

    #[test]
    fn explode_nests_keys() {
        let mut m = BTreeMap::new();
        explode_into(&mut m, "a/b", Value::str("1"), "a/b").unwrap();
        explode_into(&mut m, "a/c", Value::str("2"), "a/c").unwrap();
        assert!(explode_into(&mut m, "a/b/x", Value::str("3"), "a/b/x").is_err());
        assert_eq!(
            format!("{:?}", Value::from(m)),
            r#"{"a": {"b": String("1"), "c": String("2")}}"#
        );
    }
}
