//! `shoal-bench dns`: SRV lookups per second of one service with many
//! instances, measured with dnsperf against `shoal server` and against
//! dnsmasq serving the same SRV and A records from a config file, in the
//! same run, alternating rounds so both see the same machine.
//!
//! Two query forms: without EDNS (answers cut to 512 bytes with TC, what
//! a classic stub gets) and with EDNS (dnsperf `-e`: the bigger answers a
//! load balancer asking with EDNS gets). dnsmasq is told to allow the same
//! EDNS payload as shoal (4096), so both send the same amount of data.

use crate::report::{print_summary, Figure};
use crate::server::http_client;
use anyhow::{bail, Context, Result};
use serde_json::json;
use shoal_testkit::ServerProcess;
use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The name every query asks for (SRV), in both servers.
const QNAME: &str = "_web._tcp.service.consul";

/// Options of `shoal-bench dns`.
#[derive(clap::Args)]
pub struct Args {
    /// Instances of the service.
    #[arg(long, default_value_t = 100)]
    instances: usize,
    /// Seconds of each dnsperf run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds (each runs shoal then dnsmasq for both query forms); the best
    /// of each is reported.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// dnsperf clients (sockets).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Pin each server to these CPUs (a `taskset -c` list), e.g. `0`.
    #[arg(long)]
    cpus: Option<String>,
}

/// What one dnsperf run reported.
struct Run {
    qps: f64,
    response_bytes: String,
    lost: String,
}

/// Runs the benchmark.
pub async fn run(shoal: &Path, args: &Args, command: &str) -> Result<()> {
    let dnsperf = which("dnsperf")?;
    let dnsmasq = which("dnsmasq")?;
    let dir = tempfile::Builder::new()
        .prefix("shoal-bench-dns-")
        .tempdir()?;
    let mut server_args = vec!["--in-memory".to_string()];
    let bin = pinned_shoal(shoal, args.cpus.as_deref(), dir.path())?;
    server_args.extend(["--node-name".into(), "bench".into()]);
    let server = {
        let (bin, a) = (bin.clone(), server_args.clone());
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            ServerProcess::try_start(&bin, &a)
        })
        .await?
        .map_err(|e| anyhow::anyhow!("cannot start shoal server: {e}"))?
    };
    let shoal_dns = server
        .dns_addr()
        .context("shoal announced no DNS address")?;
    let conf = register(&server, args.instances).await?;
    let (_dnsmasq, dnsmasq_addr, dnsmasq_command) =
        start_dnsmasq(&dnsmasq, dir.path(), &conf, args.cpus.as_deref())?;
    for (name, addr) in [("shoal", shoal_dns), ("dnsmasq", dnsmasq_addr)] {
        let answers = wait_answers(addr).await?;
        println!("{name} on {addr}: {answers} SRV records in a 512-byte answer");
    }
    let queries = dir.path().join("queries.txt");
    std::fs::write(&queries, format!("{QNAME} SRV\n"))?;
    let mut figures = Vec::new();
    let mut notes = vec![format!("command: {command}")];
    for (form, edns) in [("no EDNS, 512 B", false), ("EDNS", true)] {
        let mut best: [Option<Run>; 2] = [None, None];
        for round in 0..args.rounds {
            for (i, (name, addr)) in [("shoal", shoal_dns), ("dnsmasq", dnsmasq_addr)]
                .iter()
                .enumerate()
            {
                let run = dnsperf_run(&dnsperf, *addr, &queries, args, edns)?;
                println!(
                    "round {}: {name:<8} {form:<15} {:>9.0} q/s, response {} B, lost {}",
                    round + 1,
                    run.qps,
                    run.response_bytes,
                    run.lost
                );
                if best[i].as_ref().is_none_or(|b| run.qps > b.qps) {
                    best[i] = Some(run);
                }
            }
        }
        let [Some(s), Some(d)] = best else {
            bail!("no dnsperf run")
        };
        figures.push(Figure::info(
            format!("shoal SRV q/s ({form}, {} B answers)", s.response_bytes),
            format!("{:.0}/s", s.qps),
        ));
        figures.push(Figure::info(
            format!("dnsmasq SRV q/s ({form}, {} B answers)", d.response_bytes),
            format!("{:.0}/s", d.qps),
        ));
        figures.push(Figure::ratio_at_least(
            format!("shoal / dnsmasq ({form})"),
            s.qps / d.qps,
            1.0,
        ));
    }
    notes.push(format!(
        "shoal: {} server {} (DNS {shoal_dns})",
        bin.display(),
        server_args.join(" ")
    ));
    notes.push(format!("dnsmasq: {dnsmasq_command}"));
    notes.push(format!(
        "dnsperf -s 127.0.0.1 -p PORT -d {} -l {} -c {} [-e]; {} instances of `web`, {} rounds, best of each",
        queries.display(),
        args.seconds,
        args.clients,
        args.instances,
        args.rounds
    ));
    print_summary("DNS SRV lookups", &figures, &notes);
    Ok(())
}

/// Starts dnsmasq on a free 127.0.0.1 port serving `conf` (written into
/// `dir`); returns its guard, address and command line.
fn start_dnsmasq(
    dnsmasq: &Path,
    dir: &Path,
    conf: &str,
    cpus: Option<&str>,
) -> Result<(Guard, SocketAddr, String)> {
    let conf_path = dir.join("dnsmasq.conf");
    std::fs::write(&conf_path, conf)?;
    let port = free_udp_port()?;
    let mut argv = vec![
        "--keep-in-foreground".to_string(),
        format!("--conf-file={}", conf_path.display()),
        format!("--port={port}"),
        "--listen-address=127.0.0.1".into(),
        "--bind-interfaces".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--user=root".into(),
        "--pid-file=".into(),
        // dnsmasq 2.90 defaults to 1232; shoal allows up to 4096.
        "--edns-packet-max=4096".into(),
    ];
    let mut program = dnsmasq.to_path_buf();
    if let Some(cpus) = cpus {
        let mut pinned = vec![
            "-c".to_string(),
            cpus.to_string(),
            dnsmasq.display().to_string(),
        ];
        pinned.append(&mut argv);
        (program, argv) = (PathBuf::from("taskset"), pinned);
    }
    let command = format!("{} {}", program.display(), argv.join(" "));
    let child = Command::new(&program)
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start `{command}`"))?;
    Ok((Guard(child), ([127, 0, 0, 1], port).into(), command))
}

/// Registers `count` instances of `web` (one per node, node address) and
/// returns the dnsmasq config serving the same records.
async fn register(server: &ServerProcess, count: usize) -> Result<String> {
    let client = http_client(Duration::from_secs(10))?;
    let mut conf = String::new();
    for i in 0..count {
        let (node, ip, port) = (
            format!("node-{i}"),
            format!("10.1.{}.{}", i / 250, i % 250 + 1),
            8000 + i,
        );
        let body = json!({"Node": node, "Address": ip, "Service": {"ID": format!("web-{i}"), "Service": "web", "Port": port}});
        let r = client
            .put(server.at("/v1/catalog/register"))
            .json(&body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("register {i}: {}", r.status());
        }
        let target = format!("{node}.node.dc1.consul");
        writeln!(conf, "srv-host={QNAME},{target},{port},1,1")?;
        writeln!(conf, "host-record={target},{ip}")?;
    }
    Ok(conf)
}

/// Waits until `addr` answers the SRV query; the answer count.
async fn wait_answers(addr: SocketAddr) -> Result<u16> {
    let mut query = vec![0x42, 0x42, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in QNAME.split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 33, 0, 1]);
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = [0u8; 4096];
    for _ in 0..50 {
        socket.send_to(&query, addr)?;
        if let Ok(n) = socket.recv(&mut buf) {
            let answers = u16::from_be_bytes([buf[6], buf[7]]);
            if n >= 12 && answers > 0 {
                return Ok(answers);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{addr} never answered {QNAME} SRV with records")
}

fn dnsperf_run(
    dnsperf: &Path,
    addr: SocketAddr,
    queries: &Path,
    args: &Args,
    edns: bool,
) -> Result<Run> {
    let mut cmd = Command::new(dnsperf);
    cmd.args(["-s", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .arg("-d")
        .arg(queries)
        .args([
            "-l",
            &args.seconds.to_string(),
            "-c",
            &args.clients.to_string(),
        ]);
    if edns {
        cmd.arg("-e");
    }
    let out = cmd.output().context("cannot run dnsperf")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(|v| v.trim().to_string())
    };
    let qps = field("Queries per second:")
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| {
            format!(
                "no rate in dnsperf output:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let response_bytes = field("Average packet size:")
        .and_then(|v| v.rsplit("response ").next().map(str::to_string))
        .unwrap_or_default();
    let lost = field("Queries lost:").unwrap_or_default();
    Ok(Run {
        qps,
        response_bytes,
        lost,
    })
}

/// `shoal` itself, or a wrapper script running it under `taskset -c`.
fn pinned_shoal(shoal: &Path, cpus: Option<&str>, dir: &Path) -> Result<PathBuf> {
    let Some(cpus) = cpus else {
        return Ok(shoal.to_path_buf());
    };
    let script = dir.join("shoal-pinned");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec taskset -c {cpus} {} \"$@\"\n",
            shoal.display()
        ),
    )?;
    Command::new("chmod").arg("+x").arg(&script).status()?;
    Ok(script)
}

fn which(program: &str) -> Result<PathBuf> {
    for dir in [
        "/usr/bin",
        "/usr/sbin",
        "/usr/local/bin",
        "/usr/local/sbin",
        "/sbin",
    ] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("{program} is not installed (bench/dns.sh installs it with apt-get)")
}

fn free_udp_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Kills the child when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
