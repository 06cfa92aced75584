//! `shoal-bench template`: render time of shoal's text/template engine on
//! a consul-template-style nginx template over `--services` (1,000) ×
//! `--instances` (10), next to Go's own text/template rendering the same
//! template over the same JSON data (`bench/template/main.go`, run with the
//! `go` on PATH; skipped when there is none). In-process, no server.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use shoal_render::template::{Template, Value};

use crate::report::{print_summary, Figure};
use crate::stats::ms;

/// Options of `shoal-bench template`.
#[derive(ClapArgs)]
pub struct Args {
    /// Services in the data.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Instances per service.
    #[arg(long, default_value_t = 10)]
    instances: usize,
    /// Renders to time (the median is reported).
    #[arg(long, default_value_t = 20)]
    runs: usize,
}

/// The template: every instance of every service as an upstream server,
/// plus a server block per tagged service (what bench users render).
const TEMPLATE: &str = r#"# generated
{{- range $s := .services}}
upstream {{$s.Name}} {
{{- range $i, $n := $s.Instances}}
  server {{$n.Address}}:{{printf "%.0f" $n.Port}} max_fails=3 fail_timeout=10s; # {{$n.Node}} {{$i}}
{{- else}}
  server 127.0.0.1:65535 down;
{{- end}}
}
{{- end}}
{{range .services}}{{if .Tags}}
server {
  listen 80;
  server_name {{.Name}}.example.com{{range .Tags}} {{.}}.{{$.domain}}{{end}};
  location / { proxy_pass http://{{.Name}}; {{if eq (index .Meta "proto") "ws"}}proxy_http_version 1.1;{{end}} }
}
{{- end}}{{end}}
"#;

pub(crate) fn data(services: usize, instances: usize) -> serde_json::Value {
    let svcs: Vec<serde_json::Value> = (0..services)
        .map(|s| {
            let insts: Vec<serde_json::Value> = (0..instances)
                .map(|i| {
                    serde_json::json!({
                        "Node": format!("node-{}", (s + i) % 50),
                        "Address": format!("10.{}.{}.{}", s / 250, s % 250, i + 1),
                        "Port": 8000 + i,
                        "ID": format!("svc-{s}-{i}"),
                    })
                })
                .collect();
            let tags: Vec<String> = if s % 2 == 0 {
                vec![format!("t{}", s % 7), "primary".into()]
            } else {
                vec![]
            };
            serde_json::json!({
                "Name": format!("svc-{s:04}"),
                "Tags": tags,
                "Meta": {"proto": if s % 3 == 0 { "ws" } else { "http" }},
                "Instances": insts,
            })
        })
        .collect();
    serde_json::json!({"services": svcs, "domain": "internal"})
}

pub(crate) struct Timing {
    pub(crate) parse: Duration,
    pub(crate) median: Duration,
    pub(crate) min: Duration,
    pub(crate) bytes: usize,
}

pub(crate) fn run_shoal(json: &serde_json::Value, runs: usize) -> anyhow::Result<(Timing, String)> {
    let value = Value::from_json(json);
    let start = Instant::now();
    let t = Template::new("bench").parse(TEMPLATE)?;
    let parse = start.elapsed();
    let mut samples = Vec::with_capacity(runs);
    let mut out = String::new();
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        out = t.execute(&value)?;
        samples.push(start.elapsed());
    }
    samples.sort();
    let timing = Timing {
        parse,
        median: samples[samples.len() / 2],
        min: samples[0],
        bytes: out.len(),
    };
    Ok((timing, out))
}

pub(crate) fn run_go(
    dir: &Path,
    json: &serde_json::Value,
    runs: usize,
) -> anyhow::Result<(Timing, String)> {
    let (tmpl, data, out) = (
        dir.join("bench.tmpl"),
        dir.join("data.json"),
        dir.join("go.out"),
    );
    std::fs::write(&tmpl, TEMPLATE)?;
    std::fs::write(&data, serde_json::to_vec(json)?)?;
    let main = Path::new(env!("CARGO_MANIFEST_DIR")).join("template/main.go");
    let output = Command::new("go")
        .arg("run")
        .arg(&main)
        .args([&tmpl, &data])
        .arg(runs.max(1).to_string())
        .arg(&out)
        .env("GO111MODULE", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .output()
        .context("running `go` (install golang-go for the side-by-side figure)")?;
    if !output.status.success() {
        bail!(
            "go run failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let line: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("go's timing line")?;
    let ns = |k: &str| Duration::from_nanos(line[k].as_u64().unwrap_or(0));
    let timing = Timing {
        parse: ns("parse_ns"),
        median: ns("median_ns"),
        min: ns("min_ns"),
        bytes: line["bytes"].as_u64().unwrap_or(0) as usize,
    };
    Ok((timing, std::fs::read_to_string(&out)?))
}

/// Runs the benchmark and prints its figures.
pub fn run(args: &Args, command: &str) -> anyhow::Result<()> {
    let json = data(args.services, args.instances);
    let (shoal, shoal_out) = run_shoal(&json, args.runs)?;
    let label = format!("{} services x {} instances", args.services, args.instances);
    println!(
        "shoal: parse {} render median {} min {} ({} bytes)",
        ms(shoal.parse),
        ms(shoal.median),
        ms(shoal.min),
        shoal.bytes
    );
    let mut figures = vec![
        Figure::info(format!("shoal render, {label} (median)"), ms(shoal.median)),
        Figure::info("shoal parse", ms(shoal.parse)),
        Figure::info("output bytes", shoal.bytes.to_string()),
    ];
    let dir = tempfile::tempdir()?;
    match run_go(dir.path(), &json, args.runs) {
        Ok((go, go_out)) => {
            println!(
                "go:    parse {} render median {} min {} ({} bytes)",
                ms(go.parse),
                ms(go.median),
                ms(go.min),
                go.bytes
            );
            figures.push(Figure::info(
                format!("Go text/template render, {label} (median)"),
                ms(go.median),
            ));
            let ratio = go.median.as_secs_f64() / shoal.median.as_secs_f64().max(1e-9);
            figures.push(Figure::ratio_at_least("Go time / shoal time", ratio, 1.0));
            figures.push(Figure::count_at_most(
                "bytes differing from Go's output",
                u64::from(go_out != shoal_out),
                0,
            ));
        }
        Err(e) => {
            println!("go side skipped: {e:#}");
            figures.push(Figure::missing("Go time / shoal time", ">= 1.00x"));
        }
    }
    let notes = vec![
        format!("command: {command}"),
        "data: JSON decoded as Go decodes it (numbers float64), the same bytes for both engines"
            .into(),
    ];
    print_summary("template", &figures, &notes);
    Ok(())
}
