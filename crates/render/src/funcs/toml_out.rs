//! `toTOML` as consul-template prints it: Go's BurntSushi/toml encoder —
//! plain keys first, then tables and arrays of tables (each sorted by
//! key), sub-tables indented two spaces a level, a blank line before
//! each top-level table, floats always with a decimal point, nil values
//! left out, keys quoted unless bare.

use super::encode::Node;
use std::fmt::Write;

fn bare(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn key(k: &str) -> String {
    if bare(k) {
        k.to_string()
    } else {
        quoted(k)
    }
}

fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7f}' => out.push_str("\\u007f"),
            c if (c as u32) < 0x1f => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let s = format!("{x}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// An inline value (scalar, array, inline table).
fn inline(n: &Node) -> String {
    match n {
        Node::Null => String::new(),
        Node::Bool(b) => b.to_string(),
        Node::Num(s) => s.clone(),
        Node::Float(x) => float(*x),
        Node::Str(s) => quoted(s),
        Node::List(items) => {
            let parts: Vec<String> = items
                .iter()
                .filter(|i| !matches!(i, Node::Null))
                .map(inline)
                .collect();
            format!("[{}]", parts.join(", "))
        }
        Node::Map(items) => {
            let parts: Vec<String> = items
                .iter()
                .filter(|(_, v)| !matches!(v, Node::Null))
                .map(|(k, v)| format!("{} = {}", key(k), inline(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

fn is_table_array(n: &Node) -> bool {
    matches!(n, Node::List(items) if !items.is_empty() && items.iter().all(|i| matches!(i, Node::Map(_))))
}

fn table(out: &mut String, path: &[String], items: &[(String, Node)]) {
    let pad = "  ".repeat(path.len());
    let mut sorted: Vec<&(String, Node)> = items.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in &sorted {
        if matches!(v, Node::Null | Node::Map(_)) || is_table_array(v) {
            continue;
        }
        let _ = writeln!(out, "{pad}{} = {}", key(k), inline(v));
    }
    for (k, v) in &sorted {
        let mut sub = path.to_vec();
        sub.push(k.clone());
        let name = sub.iter().map(|p| key(p)).collect::<Vec<_>>().join(".");
        let head = "  ".repeat(sub.len() - 1);
        match v {
            Node::Map(m) => {
                if sub.len() == 1 && !out.is_empty() {
                    out.push('\n');
                }
                let _ = writeln!(out, "{head}[{name}]");
                table(out, &sub, m);
            }
            Node::List(list) if is_table_array(v) => {
                for item in list {
                    if let Node::Map(m) = item {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        let _ = writeln!(out, "{head}[[{name}]]");
                        table(out, &sub, m);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The TOML of a map, trimmed as consul-template trims it.
pub fn to_toml(items: &[(String, Node)]) -> String {
    let mut out = String::new();
    table(&mut out, &[], items);
    out.trim().to_string()
}
