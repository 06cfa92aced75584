//! consul-template's Go structs as template [`Object`]s: the fields a
//! template reads (`.Address`, `.Tags`, `.ServiceMeta.version`), printed
//! the way Go's `fmt` prints them, and the typed collections
//! (`ServiceTags`, `map[string]string`) with Go's zero values.

use crate::deps::{CatalogNode, CatalogSnippet, HealthService, KeyPair, NodeInfo, NodeService};
use crate::template::{Object, Value};
use shoal_catalog::Check;
use std::collections::BTreeMap;

/// A list of strings as a Go `[]string` (consul-template's `ServiceTags`,
/// which older templates call `.Contains` on).
pub struct Strings(pub Vec<String>);

impl Object for Strings {
    fn type_name(&self) -> &str {
        "dependency.ServiceTags"
    }
    fn field(&self, _: &str) -> Option<Value> {
        None
    }
    fn method(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        (name == "Contains").then(|| match args {
            [Value::String(s)] => Ok(Value::Bool(self.0.iter().any(|t| **t == **s))),
            _ => Err("Contains: want one string".into()),
        })
    }
    fn display(&self) -> String {
        format!("[{}]", self.0.join(" "))
    }
    fn truthy(&self) -> bool {
        !self.0.is_empty()
    }
    fn elements(&self) -> Option<Vec<Value>> {
        Some(self.0.iter().map(|s| Value::str(s)).collect())
    }
}

/// A Go `map[string]string` (metadata, tagged addresses): a missing key
/// reads as `""`, the zero value, as under consul-template's `missingkey=zero`.
pub struct StringMap(pub BTreeMap<String, String>);

impl Object for StringMap {
    fn type_name(&self) -> &str {
        "map[string]string"
    }
    fn field(&self, name: &str) -> Option<Value> {
        Some(Value::str(
            self.0.get(name).map(String::as_str).unwrap_or(""),
        ))
    }
    fn display(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        format!("map[{}]", parts.join(" "))
    }
    fn truthy(&self) -> bool {
        !self.0.is_empty()
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

fn strings(v: &[String]) -> Value {
    Value::object(Strings(v.to_vec()))
}

fn smap(m: &BTreeMap<String, String>) -> Value {
    Value::object(StringMap(m.clone()))
}

/// A struct pointer: its Go type name, field order, and the fields.
pub struct GoStruct {
    type_name: &'static str,
    fields: Vec<(&'static str, Value)>,
}

impl Object for GoStruct {
    fn type_name(&self) -> &str {
        self.type_name
    }
    fn field(&self, name: &str) -> Option<Value> {
        self.fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }
    fn method(&self, name: &str, _: &[Value]) -> Option<Result<Value, String>> {
        (name == FIELD_NAMES).then(|| {
            Ok(Value::list(
                self.fields.iter().map(|(n, _)| Value::str(n)).collect(),
            ))
        })
    }
    fn display(&self) -> String {
        let parts: Vec<String> = self.fields.iter().map(|(_, v)| display(v)).collect();
        format!("&{{{}}}", parts.join(" "))
    }
}

/// `%v` of a value, for struct printing.
fn display(v: &Value) -> String {
    match v {
        Value::Nil => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Uint(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::String(s) => s.to_string(),
        Value::List(l) => format!("[{}]", l.iter().map(display).collect::<Vec<_>>().join(" ")),
        Value::Map(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}:{}", display(v)))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
        Value::Object(o) => o.display(),
        Value::Func(_) => "0x0".into(),
    }
}

fn obj(type_name: &'static str, fields: Vec<(&'static str, Value)>) -> Value {
    Value::object(GoStruct { type_name, fields })
}

fn check(c: &Check) -> Value {
    obj(
        "*api.HealthCheck",
        vec![
            ("Node", Value::str(&c.node)),
            ("CheckID", Value::str(&c.check_id)),
            ("Name", Value::str(&c.name)),
            ("Status", Value::str(c.status.as_str())),
            ("Notes", Value::str(&c.notes)),
            ("Output", Value::str(&c.output)),
            ("ServiceID", Value::str(&c.service_id)),
            ("ServiceName", Value::str(&c.service_name)),
            ("ServiceTags", strings(&c.service_tags)),
            ("Type", Value::str(&c.kind)),
            ("CreateIndex", Value::Uint(c.create_index)),
            ("ModifyIndex", Value::Uint(c.modify_index)),
        ],
    )
}

/// `service`'s element.
pub fn health_service(h: &HealthService) -> Value {
    let checks: Vec<Value> = h.checks.iter().map(|c| check(c)).collect();
    let weights = obj(
        "api.AgentWeights",
        vec![
            ("Passing", Value::Int(h.weights.0.into())),
            ("Warning", Value::Int(h.weights.1.into())),
        ],
    );
    obj(
        "*dependency.HealthService",
        vec![
            ("Node", Value::str(&h.node)),
            ("NodeID", Value::str(&h.node_id)),
            ("NodeAddress", Value::str(&h.node_address)),
            ("NodeTaggedAddresses", smap(&h.node_tagged_addresses)),
            ("NodeMeta", smap(&h.node_meta)),
            ("ServiceMeta", smap(&h.service_meta)),
            ("Address", Value::str(&h.address)),
            (
                "ServiceTaggedAddresses",
                Value::map(Vec::<(String, Value)>::new()),
            ),
            ("ID", Value::str(&h.id)),
            ("Name", Value::str(&h.name)),
            ("Tags", strings(&h.tags)),
            ("Checks", Value::list(checks)),
            ("Status", Value::str(&h.status)),
            ("Port", Value::Int(h.port.into())),
            ("Weights", weights),
        ],
    )
}

/// `services`' element.
pub fn catalog_snippet(s: &CatalogSnippet) -> Value {
    obj(
        "*dependency.CatalogSnippet",
        vec![("Name", Value::str(&s.name)), ("Tags", strings(&s.tags))],
    )
}

/// `nodes`' element and `.Node` of `node`.
pub fn node_info(n: &NodeInfo) -> Value {
    obj(
        "*dependency.Node",
        vec![
            ("ID", Value::str(&n.id)),
            ("Node", Value::str(&n.node)),
            ("Address", Value::str(&n.address)),
            ("Datacenter", Value::str(&n.datacenter)),
            ("TaggedAddresses", smap(&n.tagged_addresses)),
            ("Meta", smap(&n.meta)),
        ],
    )
}

fn node_service(s: &NodeService) -> Value {
    obj(
        "*dependency.CatalogNodeService",
        vec![
            ("ID", Value::str(&s.id)),
            ("Service", Value::str(&s.service)),
            ("Tags", strings(&s.tags)),
            ("Meta", smap(&s.meta)),
            ("Port", Value::Int(s.port.into())),
            ("Address", Value::str(&s.address)),
            ("EnableTagOverride", Value::Bool(s.enable_tag_override)),
        ],
    )
}

/// What `node` returns.
pub fn catalog_node(n: &CatalogNode) -> Value {
    let node = n.node.as_ref().map(node_info).unwrap_or(Value::Nil);
    let services = n.services.iter().map(node_service).collect();
    obj(
        "*dependency.CatalogNode",
        vec![("Node", node), ("Services", Value::list(services))],
    )
}

/// `ls`/`tree`'s element.
pub fn key_pair(p: &KeyPair) -> Value {
    obj(
        "*dependency.KeyPair",
        vec![
            ("Path", Value::str(&p.path)),
            ("Key", Value::str(&p.key)),
            ("Value", Value::str(&p.value)),
            ("CreateIndex", Value::Uint(p.create_index)),
            ("ModifyIndex", Value::Uint(p.modify_index)),
            ("LockIndex", Value::Uint(p.lock_index)),
            ("Flags", Value::Uint(p.flags)),
            ("Session", Value::str("")),
        ],
    )
}

/// Rebuilds a [`KeyPair`] from its object (for `byKey` and `explode`).
pub fn as_key_pair(v: &Value) -> Option<KeyPair> {
    let Value::Object(o) = v else { return None };
    if o.type_name() != "*dependency.KeyPair" {
        return None;
    }
    let s = |n: &str| match o.field(n) {
        Some(Value::String(s)) => s.to_string(),
        _ => String::new(),
    };
    let u = |n: &str| match o.field(n) {
        Some(Value::Uint(u)) => u,
        _ => 0,
    };
    Some(KeyPair {
        path: s("Path"),
        key: s("Key"),
        value: s("Value"),
        create_index: u("CreateIndex"),
        modify_index: u("ModifyIndex"),
        lock_index: u("LockIndex"),
        flags: u("Flags"),
    })
}

/// The tags of a service-like object (for `byTag`).
pub fn tags_of(v: &Value) -> Option<Vec<String>> {
    let Value::Object(o) = v else { return None };
    let elements = o.field("Tags")?;
    let Value::Object(tags) = elements else {
        return None;
    };
    Some(
        tags.elements()?
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
    )
}

/// The method name under which a [`GoStruct`] lists its field names, for
/// `toJSON`. It holds a space, so no template can call it.
pub const FIELD_NAMES: &str = " fields";
