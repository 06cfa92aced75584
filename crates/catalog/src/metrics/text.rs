//! The Prometheus text exposition format (version 0.0.4), written once
//! for every `/metrics` in shoal: per family a `# HELP` and a `# TYPE`
//! line, then all of its samples together; label values escaped;
//! histograms as cumulative `_bucket{le=...}` lines ending in `+Inf`,
//! then `_sum` and `_count`.

use super::{Family, Kind, Value, DURATION_BUCKETS};
use std::fmt::Write;

/// The `Content-Type` of a text exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Appends `families` to `out`.
pub fn write(out: &mut String, families: &[Family]) {
    for family in families {
        write_family(out, family);
    }
}

/// The families as one exposition.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    write(&mut out, families);
    out
}

fn write_family(out: &mut String, f: &Family) {
    let kind = match f.kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    };
    let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
    let _ = writeln!(out, "# TYPE {} {kind}", f.name);
    for (labels, value) in &f.samples {
        match value {
            Value::Int(v) => sample(out, f.name, "", labels, None, &v.to_string()),
            Value::Float(v) => sample(out, f.name, "", labels, None, &float(*v)),
            Value::Histogram(h) => {
                let mut cumulative = 0;
                let bounds = DURATION_BUCKETS.iter().map(|b| float(*b));
                for (bound, n) in bounds
                    .chain(std::iter::once("+Inf".to_string()))
                    .zip(h.buckets.iter())
                {
                    cumulative += n;
                    let le = Some(("le", bound.as_str()));
                    sample(out, f.name, "_bucket", labels, le, &cumulative.to_string());
                }
                sample(out, f.name, "_sum", labels, None, &float(h.sum));
                sample(out, f.name, "_count", labels, None, &h.count.to_string());
            }
        }
    }
}

fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&'static str, String)],
    extra: Option<(&str, &str)>,
    value: &str,
) {
    out.push_str(name);
    out.push_str(suffix);
    let pairs = labels
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(extra)
        .enumerate();
    let mut any = false;
    for (i, (k, v)) in pairs {
        out.push(if i == 0 { '{' } else { ',' });
        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        any = true;
    }
    if any {
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// A float as the format spells it (`+Inf`, `-Inf`, `NaN`).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Checks `text` against the format's structural rules: every sample
/// belongs to a family announced by `# HELP` and `# TYPE` lines, each
/// family appears once with all its samples together. The error names
/// the first offending line. (Used by tests here and in other crates.)
pub fn validate(text: &str) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    let mut current: Option<(String, String)> = None;
    let mut help_for: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let at = |msg: &str| format!("line {}: {msg}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            if !seen.insert(name.to_string()) {
                return Err(at("family announced twice"));
            }
            help_for = Some(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| at("bad TYPE"))?;
            if help_for.as_deref() != Some(name) {
                return Err(at("TYPE without HELP just before"));
            }
            if !matches!(
                kind,
                "counter" | "gauge" | "histogram" | "summary" | "untyped"
            ) {
                return Err(at("unknown type"));
            }
            current = Some((name.to_string(), kind.to_string()));
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else {
            let (family, kind) = current
                .as_ref()
                .ok_or_else(|| at("sample before any TYPE"))?;
            let name = line.split(['{', ' ']).next().unwrap_or("");
            let ok = match kind.as_str() {
                "histogram" => [
                    family.clone() + "_bucket",
                    family.clone() + "_sum",
                    family.clone() + "_count",
                ]
                .contains(&name.to_string()),
                _ => name == family,
            };
            if !ok {
                return Err(at(&format!("sample outside its family {family}")));
            }
            let value = line.rsplit(' ').next().unwrap_or("");
            if value.parse::<f64>().is_err() && !matches!(value, "+Inf" | "-Inf" | "NaN") {
                return Err(at("value is not a number"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Histogram, HistogramSnapshot};
    use std::time::Duration;

    #[test]
    fn writes_help_type_and_grouped_samples() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let families = vec![
            Family::single("a_total", "As\ncounted.", Kind::Counter, Value::Int(3)),
            Family {
                name: "b",
                help: "Bs.",
                kind: Kind::Gauge,
                samples: vec![
                    (vec![("who", "x\"y\\z\nw".into())], Value::Float(0.5)),
                    (vec![("who", "q".into())], Value::Float(f64::INFINITY)),
                ],
            },
            Family::single(
                "c_seconds",
                "Cs.",
                Kind::Histogram,
                Value::Histogram(h.snapshot()),
            ),
        ];
        let text = render(&families);
        validate(&text).unwrap();
        let want = [
            "# HELP a_total As\\ncounted.",
            "# TYPE a_total counter",
            "a_total 3",
            "# TYPE b gauge",
            "b{who=\"x\\\"y\\\\z\\nw\"} 0.5",
            "b{who=\"q\"} +Inf",
            "# TYPE c_seconds histogram",
            "c_seconds_bucket{le=\"0.001\"} 0",
            "c_seconds_bucket{le=\"0.005\"} 1",
            "c_seconds_bucket{le=\"5\"} 1",
            "c_seconds_bucket{le=\"+Inf\"} 2",
            "c_seconds_sum 10.003",
            "c_seconds_count 2",
        ];
        for line in want {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in\n{text}"
            );
        }
        let empty = Family::single(
            "d",
            "D.",
            Kind::Histogram,
            Value::Histogram(HistogramSnapshot::default()),
        );
        validate(&render(&[empty])).unwrap();
    }

    #[test]
    fn validator_catches_what_the_format_forbids() {
        let cases = [
            ("x 1\n", "sample before any TYPE"),
            (
                "# HELP x X.\n# TYPE x gauge\nx 1\ny 2\n",
                "outside its family",
            ),
            (
                "# HELP x X.\n# TYPE x gauge\nx 1\n# HELP x X.\n",
                "announced twice",
            ),
            ("# TYPE x gauge\nx 1\n", "TYPE without HELP"),
            ("# HELP x X.\n# TYPE x gauge\nx one\n", "not a number"),
        ];
        for (text, want) in cases {
            let err = validate(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
