//! `shoal-bench proxy throughput`: requests/s and latency of `shoal proxy`
//! (one worker thread) against nginx (one worker process) and HAProxy
//! (one thread), in front of the same three backends, under the same wrk
//! load, one balancer at a time, in alternating order over several rounds.
//!
//! Backends: one separate nginx worker answering a static `200 hello-<n>`
//! on three ports. A static nginx answer costs far less CPU than any
//! proxied request, so the balancer, not the backend, is what saturates;
//! the direct run (wrk straight at one backend) shows that ceiling.
//! With `taskset`, the balancer under test gets a CPU of its own and wrk,
//! the backends and the registry share the others.

use super::contenders::{self, Contender, Contenders, Pinning, Programs, SERVICE};
use super::cpu;
use super::machine::{find_program, pinning};
use super::wrk;
use crate::report::{print_summary, Figure};
use crate::stats::ms;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Target: shoal's requests/s over nginx's.
const NGINX_RATIO_TARGET: f64 = 1.2;
/// Target: shoal's requests/s over HAProxy's.
const HAPROXY_RATIO_TARGET: f64 = 1.0;

/// Options of `shoal-bench proxy throughput`.
#[derive(clap::Args)]
pub struct Args {
    /// Length of each measured wrk run, in seconds (wrk -d).
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Open connections (wrk -c).
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// wrk threads (wrk -t) [default: 2, or 1 per CPU left to wrk when pinned, at most 2].
    #[arg(long)]
    wrk_threads: Option<u32>,
    /// Rounds; each balancer runs once per round, the order alternating.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Unmeasured wrk run per balancer before the rounds, in seconds.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Do not pin the balancer under test to a CPU of its own.
    #[arg(long)]
    no_pin: bool,
    /// nginx binary.
    #[arg(long, default_value = "nginx")]
    nginx: PathBuf,
    /// HAProxy binary.
    #[arg(long, default_value = "haproxy")]
    haproxy: PathBuf,
    /// wrk binary.
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
}

/// One measured wrk run and the CPU each side used meanwhile.
#[derive(Clone)]
struct Measured {
    report: wrk::Report,
    /// Percent of one core: the balancer, the backends, wrk.
    cpu: [f64; 3],
}

/// Runs the benchmark with the binary `shoal`; `command` is echoed in the summary.
pub async fn run(shoal: &Path, args: &Args, command: &str) -> Result<()> {
    if args.seconds == 0 || args.connections == 0 || args.rounds == 0 {
        bail!("--seconds, --connections and --rounds must be at least 1");
    }
    let (programs, wrk_bin) = locate_programs(shoal, args)?;
    let pin = pinning(args.no_pin);
    let default_threads = match &pin.rest {
        Some(rest) => rest.split(',').count().min(2) as u32,
        None => 2,
    };
    let load = wrk::Load {
        threads: args.wrk_threads.unwrap_or(default_threads).max(1),
        connections: args.connections,
        seconds: args.seconds,
        host: format!("{SERVICE}.localhost"),
    };
    let dir = tempfile::Builder::new()
        .prefix("shoal-bench-proxy-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    println!("configuration and logs in {}", dir.path().display());
    let set = contenders::start(&programs, &pin, dir.path()).await?;
    for c in &set.list {
        println!("{:<8} {}  ({})", c.name, c.url, c.command);
    }
    let bench = Bench {
        wrk: wrk_bin,
        load,
        pin,
        tck: cpu::ticks_per_second(),
    };
    let direct_url = format!("http://127.0.0.1:{}/", set.backend_ports[0]);
    println!(
        "direct to one backend (no balancer), {} s ...",
        args.seconds
    );
    let direct = bench.measure(&direct_url, None, &set).await?;
    println!("  {}", line(&direct));
    bench.warm_up(&set, args.warmup).await?;
    let runs = bench.rounds(&set, args.rounds).await?;
    let figures = figures(&set.list, &runs, &direct, &bench.load);
    let notes = notes(command, &set, &bench, args, &direct_url);
    print_summary("shoal-bench proxy throughput", &figures, &notes);
    Ok(())
}

/// The programs, or one error naming every missing one and how to get it.
fn locate_programs(shoal: &Path, args: &Args) -> Result<(Programs, PathBuf)> {
    let found: Vec<(&Path, Option<PathBuf>)> = [&args.nginx, &args.haproxy, &args.wrk]
        .into_iter()
        .map(|p| (p.as_path(), find_program(p)))
        .collect();
    let missing: Vec<String> = found
        .iter()
        .filter(|(_, f)| f.is_none())
        .map(|(p, _)| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "not found: {}. Install them (Debian: `apt-get install -y nginx-light haproxy wrk`; \
             bench/proxy.sh does that when run as root) or pass --nginx/--haproxy/--wrk PATH",
            missing.join(", ")
        );
    }
    let mut paths = found.into_iter().filter_map(|(_, f)| f);
    let (nginx, haproxy, wrk) = (paths.next(), paths.next(), paths.next());
    let programs = Programs {
        shoal: shoal.to_path_buf(),
        nginx: nginx.unwrap_or_default(),
        haproxy: haproxy.unwrap_or_default(),
    };
    Ok((programs, wrk.unwrap_or_default()))
}

/// What every run shares.
struct Bench {
    wrk: PathBuf,
    load: wrk::Load,
    pin: Pinning,
    tck: u64,
}

impl Bench {
    /// One wrk run at `url`, with the CPU time of the balancer (`pid`),
    /// the backends and wrk over it.
    async fn measure(&self, url: &str, pid: Option<u32>, set: &Contenders) -> Result<Measured> {
        self.measure_for(url, pid, set, self.load.seconds).await
    }

    async fn measure_for(
        &self,
        url: &str,
        pid: Option<u32>,
        set: &Contenders,
        seconds: u64,
    ) -> Result<Measured> {
        let load = wrk::Load {
            seconds,
            ..self.load.clone()
        };
        let (_, argv) = wrk::command(&self.wrk, &load, url, self.pin.rest.as_deref());
        let backends = set.backends.pid();
        let ticks = || {
            [
                pid.map_or(0, cpu::tree_ticks),
                cpu::tree_ticks(backends),
                cpu::reaped_children_ticks(),
            ]
        };
        let before = ticks();
        let started = Instant::now();
        let report = wrk::run(&argv, seconds).await?;
        let wall = started.elapsed();
        let after = ticks();
        let cpu = std::array::from_fn(|i| cpu::percent(after[i] - before[i], self.tck, wall));
        Ok(Measured { report, cpu })
    }

    /// An unmeasured short run per balancer (connections opened, pools filled).
    async fn warm_up(&self, set: &Contenders, seconds: u64) -> Result<()> {
        if seconds == 0 {
            return Ok(());
        }
        println!("warm-up: {seconds} s per balancer ...");
        for c in &set.list {
            self.measure_for(&c.url, Some(c.pid), set, seconds).await?;
        }
        Ok(())
    }

    /// `rounds` rounds, each balancer once per round, order alternating.
    async fn rounds(&self, set: &Contenders, rounds: usize) -> Result<Vec<Vec<Measured>>> {
        let mut runs = vec![Vec::new(); set.list.len()];
        for round in 0..rounds {
            let mut order: Vec<usize> = (0..set.list.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let c = &set.list[i];
                println!("round {}: {} ...", round + 1, c.name);
                let m = self.measure(&c.url, Some(c.pid), set).await?;
                println!("  {}", line(&m));
                runs[i].push(m);
            }
        }
        Ok(runs)
    }
}

fn line(m: &Measured) -> String {
    let r = &m.report;
    format!(
        "{:.0} req/s; latency p50 {} p75 {} p90 {} p99 {} max {}; {} errors; \
         CPU % of a core: balancer {:.0}, backends {:.0}, wrk {:.0}",
        r.rate,
        ms(r.p50),
        ms(r.p75),
        ms(r.p90),
        ms(r.p99),
        ms(r.max),
        r.errors(),
        m.cpu[0],
        m.cpu[1],
        m.cpu[2]
    )
}

/// The mean of several runs (the largest max, the summed errors).
fn mean(runs: &[Measured]) -> Measured {
    let n = runs.len().max(1) as f64;
    let avg = |f: fn(&wrk::Report) -> Duration| {
        runs.iter()
            .map(|m| f(&m.report))
            .sum::<Duration>()
            .div_f64(n)
    };
    let report = wrk::Report {
        requests: runs.iter().map(|m| m.report.requests).sum(),
        rate: runs.iter().map(|m| m.report.rate).sum::<f64>() / n,
        p50: avg(|r| r.p50),
        p75: avg(|r| r.p75),
        p90: avg(|r| r.p90),
        p99: avg(|r| r.p99),
        max: runs.iter().map(|m| m.report.max).max().unwrap_or_default(),
        non_2xx: runs.iter().map(|m| m.report.non_2xx).sum(),
        socket_errors: runs.iter().map(|m| m.report.socket_errors).sum(),
    };
    let cpu = std::array::from_fn(|i| runs.iter().map(|m| m.cpu[i]).sum::<f64>() / n);
    Measured { report, cpu }
}

fn figures(
    list: &[Contender],
    runs: &[Vec<Measured>],
    direct: &Measured,
    load: &wrk::Load,
) -> Vec<Figure> {
    let means: Vec<Measured> = runs.iter().map(|r| mean(r)).collect();
    let (shoal, nginx, haproxy) = (&means[0].report, &means[1].report, &means[2].report);
    let c = load.connections;
    let mut figures = per_balancer(list, &means, |m| {
        (
            format!("requests/s ({c} connections)"),
            format!("{:.0}/s", m.report.rate),
        )
    });
    figures.extend([
        Figure::ratio_at_least(
            "shoal / nginx requests/s",
            shoal.rate / nginx.rate,
            NGINX_RATIO_TARGET,
        ),
        Figure::ratio_at_least(
            "shoal / HAProxy requests/s",
            shoal.rate / haproxy.rate,
            HAPROXY_RATIO_TARGET,
        ),
        Figure::delay_at_most("shoal p99 (target: nginx p99)", shoal.p99, nginx.p99),
        Figure::delay_at_most("shoal p99 (target: HAProxy p99)", shoal.p99, haproxy.p99),
    ]);
    figures.extend(per_balancer(list, &means, |m| {
        let r = &m.report;
        let (p50, p90, p99, max) = (ms(r.p50), ms(r.p90), ms(r.p99), ms(r.max));
        (
            "latency p50 / p90 / p99 / max".into(),
            format!("{p50} / {p90} / {p99} / {max}"),
        )
    }));
    figures.extend(per_balancer(list, &means, |m| {
        (
            "CPU % of a core: balancer / backends / wrk".into(),
            format!("{:.0} / {:.0} / {:.0}", m.cpu[0], m.cpu[1], m.cpu[2]),
        )
    }));
    // CPU time per request: unlike requests/s, it hardly moves when other
    // work on the machine takes CPU from the balancer under test.
    let per_request: Vec<f64> = runs
        .iter()
        .map(|r| r.iter().map(cpu_us_per_request).sum::<f64>() / r.len().max(1) as f64)
        .collect();
    figures.extend(list.iter().zip(&per_request).map(|(contender, us)| {
        Figure::info(
            format!("{} CPU per request (balancer)", contender.name),
            format!("{us:.1} µs"),
        )
    }));
    for (i, other) in [(1, "nginx"), (2, "HAProxy")] {
        figures.push(Figure::info(
            format!("{other} / shoal CPU per request"),
            format!("{:.2}x", per_request[i] / per_request[0]),
        ));
    }
    figures.extend(per_balancer(list, &means, |m| {
        (
            "failed requests (non-2xx + socket errors)".into(),
            m.report.errors().to_string(),
        )
    }));
    figures.push(Figure::info(
        "direct to one backend, no balancer: requests/s, p99",
        format!("{:.0}/s, {}", direct.report.rate, ms(direct.report.p99)),
    ));
    figures.push(Figure::info(
        "direct: CPU % of a core: backends / wrk",
        format!("{:.0} / {:.0}", direct.cpu[1], direct.cpu[2]),
    ));
    figures
}

/// The balancer's CPU time per answered request, in microseconds (`cpu[0]`
/// is percent of one core).
fn cpu_us_per_request(m: &Measured) -> f64 {
    if m.report.rate > 0.0 {
        m.cpu[0] * 1e4 / m.report.rate
    } else {
        0.0
    }
}

/// One informational row per balancer: `<name> <what>` and its value.
fn per_balancer(
    list: &[Contender],
    means: &[Measured],
    row: impl Fn(&Measured) -> (String, String),
) -> Vec<Figure> {
    list.iter()
        .zip(means)
        .map(|(contender, m)| {
            let (what, value) = row(m);
            Figure::info(format!("{} {what}", contender.name), value)
        })
        .collect()
}

fn notes(
    command: &str,
    set: &Contenders,
    bench: &Bench,
    args: &Args,
    direct_url: &str,
) -> Vec<String> {
    let mut notes = vec![format!("command:  {command}")];
    notes.push(format!("backends: {}", set.backends.command));
    notes.push(format!("registry: {}", set.registry_command));
    for c in &set.list {
        notes.push(format!("{:<8}  {}", format!("{}:", c.name), c.command));
    }
    for c in &set.list {
        let (shown, _) = wrk::command(&bench.wrk, &bench.load, &c.url, bench.pin.rest.as_deref());
        notes.push(format!("load ({}): {shown}", c.name));
    }
    let (shown, _) = wrk::command(
        &bench.wrk,
        &bench.load,
        direct_url,
        bench.pin.rest.as_deref(),
    );
    notes.push(format!("load (direct): {shown}"));
    notes.push(format!(
        "figures: mean of {} rounds (order alternating) after a {} s warm-up each; \
         max is the largest of the rounds",
        args.rounds, args.warmup
    ));
    notes.push(match (&bench.pin.proxy, &bench.pin.rest) {
        (Some(p), Some(r)) => format!(
            "CPUs: balancer under test pinned to CPU {p}; wrk, backends and registry to CPU(s) {r}"
        ),
        _ => "CPUs: not pinned (--no-pin, one CPU, or no taskset)".into(),
    });
    notes.push(
        "backends: one nginx worker answering `200 hello-<n>` on 3 ports (cheap, so the \
         balancer saturates first); every balancer round-robins over the same 3 ports"
            .into(),
    );
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_of_runs() {
        let run = |rate: f64, p99: u64, max: u64, cpu: f64| Measured {
            report: wrk::Report {
                requests: 10,
                rate,
                p99: Duration::from_millis(p99),
                max: Duration::from_millis(max),
                non_2xx: 1,
                ..wrk::Report::default()
            },
            cpu: [cpu, 0.0, 0.0],
        };
        let m = mean(&[run(100.0, 2, 5, 90.0), run(300.0, 4, 9, 100.0)]);
        assert_eq!(m.report.rate, 200.0);
        assert_eq!(m.report.p99, Duration::from_millis(3));
        assert_eq!(m.report.max, Duration::from_millis(9));
        assert_eq!((m.report.requests, m.report.non_2xx), (20, 2));
        assert_eq!(m.cpu[0], 95.0);
        assert_eq!(cpu_us_per_request(&run(50_000.0, 1, 1, 80.0)), 16.0);
    }
}
