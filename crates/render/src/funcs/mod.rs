//! consul-template's template functions over the engine's [`FuncMap`].
//!
//! The data functions (`service`, `key`, `tree`, ...) work as in
//! consul-template: each call records its [`Dependency`] as *used*; if the
//! watcher has not delivered a value for it yet, it is also recorded as
//! *missing* and the call returns an empty value. A render with anything
//! missing is thrown away, so a template is never written before every
//! dependency it reads has been read once.

mod args;
mod collections;
mod digest;
mod encode;
mod maps;
mod math;
pub mod objects;
mod text;
pub mod time;
mod toml_out;
mod yaml_out;

pub use args::{arg_str, go_type_error};

use crate::deps::{self, Data, Dependency, KvKind, NoArgKind};
use crate::template::{Func, FuncMap, Value};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

/// What the data functions read: the last value of each dependency.
pub type Brain = HashMap<Dependency, Arc<Data>>;

/// The dependencies one render touched.
#[derive(Debug, Default, Clone)]
pub struct Touched {
    /// Every dependency the template read.
    pub used: BTreeSet<Dependency>,
    /// Those with no value yet: the render must not be written.
    pub missing: BTreeSet<Dependency>,
}

/// Functions that cannot be served by shoal, with what they would need.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("secret", "Vault"),
    ("secrets", "Vault"),
    ("pkiCert", "Vault"),
    ("caRoots", "Consul Connect's CA"),
    ("caLeaf", "Consul Connect's CA"),
    ("connect", "Consul Connect"),
    ("nomadService", "Nomad"),
    ("nomadServices", "Nomad"),
    ("nomadVar", "Nomad"),
    ("nomadVarList", "Nomad"),
    ("nomadVarListSafe", "Nomad"),
    ("nomadVarExists", "Nomad"),
    ("datacenters", "Consul's WAN federation"),
    ("partitions", "Consul Enterprise"),
    ("peerings", "Consul cluster peering"),
    ("exportedServices", "Consul cluster peering"),
    ("importedServices", "Consul cluster peering"),
    (
        "plugin",
        "running arbitrary programs from templates (disabled)",
    ),
    ("writeToFile", "writing files from templates (disabled)"),
    ("spew_dump", "go-spew's dumps of Go values"),
    ("spew_sdump", "go-spew's dumps of Go values"),
    ("spew_printf", "go-spew's dumps of Go values"),
    ("spew_sprintf", "go-spew's dumps of Go values"),
];

/// Per-render state the data functions share.
pub struct Context {
    brain: Arc<Brain>,
    touched: RefCell<Touched>,
    env: Vec<(String, String)>,
}

impl Context {
    /// A render over `brain`; `env` is the template's extra environment.
    pub fn new(brain: Arc<Brain>, env: Vec<(String, String)>) -> Self {
        Context {
            brain,
            touched: RefCell::new(Touched::default()),
            env,
        }
    }

    /// What the render touched so far.
    pub fn touched(&self) -> Touched {
        self.touched.borrow().clone()
    }

    /// Records `dep` as used and returns its value, or records it missing.
    fn recall(&self, dep: Dependency) -> Option<Arc<Data>> {
        let mut t = self.touched.borrow_mut();
        let got = self.brain.get(&dep).cloned();
        if got.is_none() {
            t.missing.insert(dep.clone());
        }
        t.used.insert(dep);
        got
    }

    fn mark_missing(&self, dep: Dependency) {
        self.touched.borrow_mut().missing.insert(dep);
    }
}

fn f(func: impl Fn(&[Value]) -> Result<Value, String> + 'static) -> Func {
    Rc::new(func)
}

/// The names every template may use, for parsing (values never called).
pub fn names() -> FuncMap {
    let mut map = pure_functions();
    for name in data_function_names() {
        map.insert(name.to_string(), f(|_| Err("not callable at parse".into())));
    }
    map
}

fn data_function_names() -> impl Iterator<Item = &'static str> {
    [
        "service",
        "services",
        "node",
        "nodes",
        "key",
        "keyExists",
        "keyOrDefault",
        "ls",
        "safeLs",
        "tree",
        "safeTree",
        "file",
        "env",
        "mustEnv",
        "envOrDefault",
    ]
    .into_iter()
    .chain(UNSUPPORTED.iter().map(|(n, _)| *n))
}

/// The stateless functions (strings, math, encodings, collections) plus
/// `scratch` (one pad per render).
fn pure_functions() -> FuncMap {
    let mut map = FuncMap::new();
    text::register(&mut map);
    math::register(&mut map);
    encode::register(&mut map);
    collections::register(&mut map);
    digest::register(&mut map);
    maps::register(&mut map);
    // Run by the engine itself (it needs the template set); registered so
    // that templates using it parse.
    map.insert(
        crate::template::EXECUTE_TEMPLATE.into(),
        f(|_| Err("executeTemplate: run by the template engine".into())),
    );
    let scratch = Rc::new(collections::Scratch::default());
    map.insert(
        "scratch".into(),
        f(move |_| Ok(Value::Object(scratch.clone()))),
    );
    map
}

/// Every function for one render over `ctx`.
pub fn for_render(ctx: Rc<Context>) -> FuncMap {
    let mut map = pure_functions();
    let data =
        |map: &mut FuncMap, name: &str, g: fn(&Context, &[Value]) -> Result<Value, String>| {
            let ctx = ctx.clone();
            map.insert(name.to_string(), f(move |a| g(&ctx, a)));
        };
    data(&mut map, "service", service);
    data(&mut map, "services", |c, a| {
        let dep = deps::parse_no_args(NoArgKind::Services, &join_args(a, "")?)?;
        Ok(match c.recall(dep).as_deref() {
            Some(Data::Services(list)) => {
                Value::list(list.iter().map(objects::catalog_snippet).collect())
            }
            _ => Value::list(Vec::new()),
        })
    });
    data(&mut map, "nodes", |c, a| {
        let dep = deps::parse_no_args(NoArgKind::Nodes, &join_args(a, "")?)?;
        Ok(match c.recall(dep).as_deref() {
            Some(Data::Nodes(list)) => Value::list(list.iter().map(objects::node_info).collect()),
            _ => Value::list(Vec::new()),
        })
    });
    data(&mut map, "node", |c, a| {
        let dep = deps::parse_catalog_node(&join_args(a, "")?)?;
        Ok(match c.recall(dep).as_deref() {
            Some(Data::Node(n)) => objects::catalog_node(n),
            _ => Value::Nil,
        })
    });
    data(&mut map, "key", |c, a| {
        let k = one_str("key", a)?;
        if k.is_empty() {
            return Ok(Value::str(""));
        }
        let v = kv_value(c, KvKind::Block, &k)?;
        Ok(Value::str(v.flatten().as_deref().unwrap_or("")))
    });
    data(&mut map, "keyExists", |c, a| {
        let k = one_str("keyExists", a)?;
        if k.is_empty() {
            return Ok(Value::Bool(false));
        }
        Ok(Value::Bool(matches!(
            kv_value(c, KvKind::Get, &k)?,
            Some(Some(_))
        )))
    });
    data(&mut map, "keyOrDefault", |c, a| {
        let [k, def] = two_strs("keyOrDefault", a)?;
        if k.is_empty() {
            return Ok(Value::str(&def));
        }
        Ok(match kv_value(c, KvKind::Get, &k)?.flatten() {
            Some(v) if !v.is_empty() => Value::str(&v),
            _ => Value::str(&def),
        })
    });
    data(&mut map, "ls", |c, a| list_pairs(c, a, "ls", true, false));
    data(&mut map, "safeLs", |c, a| {
        list_pairs(c, a, "safeLs", false, false)
    });
    data(&mut map, "tree", |c, a| {
        list_pairs(c, a, "tree", true, true)
    });
    data(&mut map, "safeTree", |c, a| {
        list_pairs(c, a, "safeTree", false, true)
    });
    data(&mut map, "file", |c, a| {
        let p = one_str("file", a)?;
        if p.is_empty() {
            return Ok(Value::str(""));
        }
        Ok(
            match c
                .recall(Dependency::File(PathBuf::from(p.trim())))
                .as_deref()
            {
                Some(Data::File(Some(s))) => Value::str(s),
                _ => Value::str(""),
            },
        )
    });
    data(&mut map, "env", |c, a| {
        let k = one_str("env", a)?;
        Ok(Value::str(&lookup_env(c, &k).unwrap_or_default()))
    });
    data(&mut map, "mustEnv", |c, a| {
        let k = one_str("mustEnv", a)?;
        match lookup_env(c, &k).filter(|v| !v.is_empty()) {
            Some(v) => Ok(Value::str(&v)),
            None => Err(format!("required environment variable {k} is empty")),
        }
    });
    data(&mut map, "envOrDefault", |c, a| {
        let [k, def] = two_strs("envOrDefault", a)?;
        Ok(Value::str(&lookup_env(c, &k).unwrap_or(def)))
    });
    for (name, needs) in UNSUPPORTED {
        let msg = format!("{name}: not supported by shoal render (needs {needs})");
        map.insert(name.to_string(), f(move |_| Err(msg.clone())));
    }
    map
}

fn lookup_env(c: &Context, k: &str) -> Option<String> {
    c.env
        .iter()
        .find(|(name, _)| name == k)
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var(k).ok())
}

fn join_args(a: &[Value], sep: &str) -> Result<String, String> {
    let parts = a
        .iter()
        .map(|v| arg_str(v).map(str::to_string))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(parts.join(sep))
}

fn one_str(name: &str, a: &[Value]) -> Result<String, String> {
    match a {
        [v] => Ok(arg_str(v)?.to_string()),
        _ => Err(format!(
            "wrong number of args for {name}: want 1 got {}",
            a.len()
        )),
    }
}

fn two_strs(name: &str, a: &[Value]) -> Result<[String; 2], String> {
    match a {
        [x, y] => Ok([arg_str(x)?.to_string(), arg_str(y)?.to_string()]),
        _ => Err(format!(
            "wrong number of args for {name}: want 2 got {}",
            a.len()
        )),
    }
}

/// `Some(value)` once read (`value` being `None` for an absent key).
fn kv_value(c: &Context, kind: KvKind, key: &str) -> Result<Option<Option<String>>, String> {
    let dep = deps::parse_kv(kind, key)?;
    Ok(match c.recall(dep).as_deref() {
        Some(Data::Kv(v)) => Some(v.clone()),
        _ => None,
    })
}

fn service(c: &Context, a: &[Value]) -> Result<Value, String> {
    let parts = a
        .iter()
        .map(|v| arg_str(v).map(str::to_string))
        .collect::<Result<Vec<_>, _>>()?;
    if parts.first().is_none_or(|p| p.is_empty()) {
        return Ok(Value::list(Vec::new()));
    }
    let dep = deps::parse_health(&parts.join("|"))?;
    Ok(match c.recall(dep).as_deref() {
        Some(Data::Health(list)) => Value::list(list.iter().map(objects::health_service).collect()),
        _ => Value::list(Vec::new()),
    })
}

/// `ls` keeps top-level keys only; `tree` every key not ending in `/`.
/// The safe forms treat an empty answer as not read yet.
fn list_pairs(
    c: &Context,
    a: &[Value],
    name: &str,
    empty_ok: bool,
    tree: bool,
) -> Result<Value, String> {
    let prefix = one_str(name, a)?;
    if prefix.is_empty() {
        return Ok(Value::list(Vec::new()));
    }
    let dep = deps::parse_kv(KvKind::List, &prefix)?;
    let Some(data) = c.recall(dep.clone()) else {
        return Ok(Value::list(Vec::new()));
    };
    let Data::KvList(pairs) = &*data else {
        return Ok(Value::list(Vec::new()));
    };
    let kept: Vec<Value> = pairs
        .iter()
        .filter(|p| {
            if tree {
                !p.key.rsplit('/').next().unwrap_or("").is_empty()
            } else {
                !p.key.is_empty() && !p.key.contains('/')
            }
        })
        .map(objects::key_pair)
        .collect();
    if kept.is_empty() && !empty_ok {
        c.mark_missing(dep);
    }
    Ok(Value::list(kept))
}
