//! `shoal-bench render`: `shoal render` as consul-template users run it,
//! against a `shoal server` over HTTP (its change stream, which shoal
//! render follows by default against shoal; a real Consul is read by
//! blocking queries instead).
//!
//! - registration acknowledged -> reload command started, `wait` 0: the
//!   command writes to a FIFO this benchmark is blocked reading, so the
//!   figure includes the `sh -c` start-up (as consul-template's does);
//! - `-once` wall time over `--services` x `--instances` (every service's
//!   instances through `service`, one dependency per service), and the
//!   engine's render time of the same size next to Go's text/template
//!   (`bench/template/main.go`; consul-template itself cannot be built
//!   offline, so Go's engine is the side-by-side);
//! - idle CPU and RSS of a long-running `shoal render` watching them.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use futures::StreamExt;

use crate::report::{print_summary, Figure};
use crate::server::{http_client, DurableServer};
use crate::stats::{ms, percentile};

/// Options of `shoal-bench render`.
#[derive(ClapArgs)]
pub struct Args {
    /// Registration -> reload samples.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Services for the large render and the idle watch.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Instances per service.
    #[arg(long, default_value_t = 10)]
    instances: usize,
    /// How long idle CPU is measured.
    #[arg(long, default_value = "10s", value_parser = parse_secs)]
    idle: Duration,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let n = s.strip_suffix('s').unwrap_or(s);
    n.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("not a number of seconds: {s:?}"))
}

const LARGE: &str = r#"{{- range services }}{{ if ne .Name "consul" }}
upstream {{ .Name }} {
{{- range service .Name }}
  server {{ .Address }}:{{ .Port }} max_fails=3 fail_timeout=10s; # {{ .Node }} {{ .ID }}
{{- else }}
  server 127.0.0.1:65535 down;
{{- end }}
}
{{- end }}{{ end }}
"#;

async fn register(
    client: &reqwest::Client,
    url: &str,
    service: &str,
    id: &str,
    port: u16,
) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "Node": format!("node-{}", port % 50), "Address": "127.0.0.1",
        "Service": {"ID": id, "Service": service, "Port": port},
    });
    let r = client
        .put(format!("{url}/v1/catalog/register"))
        .json(&body)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("register {id}: {}", r.status());
    }
    Ok(())
}

/// A child killed on drop.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_render(shoal: &Path, url: &str, args: &[&str]) -> anyhow::Result<Kill> {
    let child = Command::new(shoal)
        .arg("render")
        .args(["-consul-addr", url, "-log-level", "error"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start shoal render")?;
    Ok(Kill(child))
}

/// Registration acknowledged -> reload command started, per sample.
async fn reload_latency(
    shoal: &Path,
    url: &str,
    samples: usize,
    dir: &Path,
) -> anyhow::Result<Vec<Duration>> {
    let fifo = dir.join("reloads.fifo");
    let ok = Command::new("mkfifo").arg(&fifo).status()?.success();
    if !ok {
        bail!("mkfifo failed");
    }
    let src = dir.join("small.ctmpl");
    std::fs::write(&src, "{{ range service \"web\" }}{{ .Port }} {{ end }}\n")?;
    let spec = format!(
        "{}:{}:echo r > {}",
        src.display(),
        dir.join("small.out").display(),
        fifo.display()
    );
    // Reads reload lines in a thread; each carries the instant it arrived.
    let (tx, rx) = std::sync::mpsc::channel::<Instant>();
    let fifo_r = fifo.clone();
    std::thread::spawn(move || loop {
        let Ok(mut f) = std::fs::File::open(&fifo_r) else {
            return;
        };
        let mut buf = [0u8; 64];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            if tx.send(Instant::now()).is_err() {
                return;
            }
        }
    });
    let client = http_client(Duration::from_secs(10))?;
    register(&client, url, "web", "web-0", 10_000).await?;
    let _render = spawn_render(shoal, url, &["-template", &spec])?;
    rx.recv_timeout(Duration::from_secs(20))
        .context("no first render and reload within 20 s")?;
    let mut out = Vec::with_capacity(samples);
    for i in 1..=samples {
        let id = format!("web-{i}");
        register(&client, url, "web", &id, 10_000 + i as u16).await?;
        let acked = Instant::now();
        let started = rx
            .recv_timeout(Duration::from_secs(10))
            .with_context(|| format!("no reload within 10 s after registration {i}"))?;
        out.push(started.saturating_duration_since(acked));
        // Nothing else pending: the next registration starts from quiet.
        while rx.recv_timeout(Duration::from_millis(20)).is_ok() {}
    }
    Ok(out)
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Runs the benchmark and prints its figures.
pub async fn run(shoal: &Path, args: &Args, command: &str) -> anyhow::Result<()> {
    let mut notes = vec![format!("command: {command}")];
    let dir = tempfile::tempdir()?;
    let mut figures = Vec::new();

    // 1. Registration -> reload, against its own server.
    let server = DurableServer::start(shoal).await?;
    notes.push(format!("server: {}", server.command));
    notes.push(format!("load average before: {}", load_average()));
    let mut lat = reload_latency(shoal, &server.process.url, args.samples, dir.path()).await?;
    lat.sort();
    println!(
        "registration -> reload command: p50 {} p99 {} max {} ({} samples)",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(*lat.last().unwrap_or(&Duration::ZERO)),
        lat.len()
    );
    figures.push(Figure::info(
        "registration ack -> reload command started, p50",
        ms(percentile(&lat, 0.5)),
    ));
    figures.push(Figure::delay_at_most(
        "registration ack -> reload command started, p99 (wait 0)",
        percentile(&lat, 0.99),
        Duration::from_millis(20),
    ));
    drop(server);

    // 2. The large catalog.
    let server = DurableServer::start(shoal).await?;
    let url = server.process.url.clone();
    let client = http_client(Duration::from_secs(30))?;
    let start = Instant::now();
    let regs: Vec<(String, String, u16)> = (0..args.services)
        .flat_map(|s| {
            (0..args.instances).map(move |i| {
                (
                    format!("svc-{s:04}"),
                    format!("svc-{s:04}-{i}"),
                    (20_000 + i) as u16,
                )
            })
        })
        .collect();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(regs.iter())
        .map(|(svc, id, port)| register(&client, &url, svc, id, *port))
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    println!(
        "registered {} instances in {}",
        regs.len(),
        ms(start.elapsed())
    );
    let src = dir.path().join("large.ctmpl");
    std::fs::write(&src, LARGE)?;
    let dest = dir.path().join("large.out");
    let spec = format!("{}:{}", src.display(), dest.display());
    let label = format!("{} services x {} instances", args.services, args.instances);
    let start = Instant::now();
    let out = Command::new(shoal)
        .arg("render")
        .args([
            "-consul-addr",
            &url,
            "-log-level",
            "error",
            "-template",
            &spec,
            "-once",
        ])
        .stdin(Stdio::null())
        .output()?;
    let once = start.elapsed();
    if !out.status.success() {
        bail!(
            "shoal render -once failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bytes = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
    println!("shoal render -once, {label}: {} ({bytes} bytes)", ms(once));
    figures.push(Figure::info(
        format!(
            "shoal render -once wall time, {label} ({} dependencies)",
            args.services + 1
        ),
        ms(once),
    ));

    // The engine alone, next to Go's text/template on the same data.
    let json = crate::template::data(args.services, args.instances);
    let (engine, engine_out) = crate::template::run_shoal(&json, 10)?;
    figures.push(Figure::info(
        format!("engine render, {label} (median of 10)"),
        ms(engine.median),
    ));
    match crate::template::run_go(dir.path(), &json, 10) {
        Ok((go, go_out)) => {
            figures.push(Figure::info(
                format!("Go text/template render, {label} (median of 10)"),
                ms(go.median),
            ));
            figures.push(Figure::ratio_at_least(
                "Go time / shoal time (render)",
                go.median.as_secs_f64() / engine.median.as_secs_f64().max(1e-9),
                1.0,
            ));
            figures.push(Figure::count_at_most(
                "outputs differing from Go's",
                u64::from(go_out != engine_out),
                0,
            ));
        }
        Err(e) => {
            println!("go side skipped: {e:#}");
            figures.push(Figure::missing("Go time / shoal time (render)", ">= 1.00x"));
        }
    }

    // 3. Idle watching.
    let idle_dest = dir.path().join("idle.out");
    let spec = format!("{}:{}", src.display(), idle_dest.display());
    let render = spawn_render(shoal, &url, &["-template", &spec])?;
    let pid = render.0.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !idle_dest.exists() {
        if Instant::now() > deadline {
            bail!("the watching shoal render did not render within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t0 = cpu_ticks(pid).context("cannot read /proc/PID/stat")?;
    let w0 = Instant::now();
    tokio::time::sleep(args.idle).await;
    let t1 = cpu_ticks(pid).context("cannot read /proc/PID/stat")?;
    let wall = w0.elapsed().as_secs_f64();
    let cpu = (t1 - t0) as f64 / clock_ticks() as f64 / wall * 100.0;
    let rss = rss_mib(pid).unwrap_or(0.0);
    println!("idle, watching {label}: CPU {cpu:.2}% RSS {rss:.1} MiB");
    figures.push(Figure::at_most(
        format!("idle CPU watching {} services", args.services),
        (cpu * 100.0).round() / 100.0,
        1.0,
        "% of a core",
    ));
    figures.push(Figure::info(
        format!("idle RSS watching {} services", args.services),
        format!("{rss:.1} MiB"),
    ));
    drop(render);
    notes.push(format!("load average after: {}", load_average()));
    notes.push(
        "side by side: Go's text/template (consul-template cannot be built offline here)".into(),
    );
    print_summary("render", &figures, &notes);
    Ok(())
}
