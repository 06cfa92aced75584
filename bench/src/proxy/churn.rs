//! `shoal-bench proxy churn`: an open-loop stream of GETs (2,000/s by
//! default) through `shoal proxy` while the service's instances change:
//! scaled 1 → 5 (new `shoal hello` processes, then registered), one killed
//! with SIGKILL while still registered (the proxy must retry around it),
//! later deregistered as a health check would, then scaled down to 1
//! (deregistered first, then stopped gracefully with SIGTERM after a
//! drain pause). Every failed request counts; the target is none.

use super::fleet::{self, free_port, RegistryClient, Spawned};
use super::paced::{self, Outcome};
use crate::report::{print_summary, Figure};
use crate::server::http_client;
use crate::stats::{ms, Summary};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// The service that churns.
const SERVICE: &str = "churn";
/// Request timeout of the load.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Options of `shoal-bench proxy churn`.
#[derive(clap::Args)]
pub struct Args {
    /// Requests per second (open loop).
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Length of the run, in seconds; the changes are spread over it.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Pause between deregistering an instance and stopping it, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    drain_ms: u64,
    /// Requests in flight at most (more count as failed, not sent).
    #[arg(long, default_value_t = 1000)]
    max_in_flight: usize,
}

/// A change to the service, at a fraction of the run.
#[derive(Clone, Copy, Debug)]
enum Change {
    /// Start one more instance and register it.
    ScaleUp,
    /// SIGKILL instance #3 and leave it registered.
    KillRegistered,
    /// Deregister the killed instance (what a failing check would do).
    DeregisterKilled,
    /// Deregister the newest live instance, wait, SIGTERM it.
    ScaleDown,
}

/// 1 → 5, kill one (4 live), remove it, 4 → 1.
const SCHEDULE: [(f64, Change); 9] = [
    (0.10, Change::ScaleUp),
    (0.15, Change::ScaleUp),
    (0.20, Change::ScaleUp),
    (0.25, Change::ScaleUp),
    (0.35, Change::KillRegistered),
    (0.45, Change::DeregisterKilled),
    (0.55, Change::ScaleDown),
    (0.65, Change::ScaleDown),
    (0.75, Change::ScaleDown),
];
/// Which instance (1-based) is killed.
const KILLED: usize = 3;

/// One `shoal hello` instance of the service.
struct Member {
    id: String,
    process: Option<Spawned>,
}

/// The instances and what happened to them.
struct Fleet {
    bin: std::path::PathBuf,
    registry: RegistryClient,
    members: Vec<Member>,
    log: Vec<String>,
    hello_command: String,
    drain: Duration,
    started: Instant,
    /// The proxy's counters for the killed instance, read before it was deregistered.
    killed_stats: Option<serde_json::Value>,
}

/// Runs the benchmark with the binary `shoal`; `command` is echoed in the summary.
pub async fn run(shoal: &Path, args: &Args, command: &str) -> Result<()> {
    if args.rate <= 0.0 || args.seconds == 0 || args.max_in_flight == 0 {
        bail!("--rate, --seconds and --max-in-flight must be positive");
    }
    let registry = fleet::start_registry(shoal, None).await?;
    let stats_port = free_port()?;
    let proxy = fleet::start_proxy(shoal, None, &registry.process.url, stats_port, &[]).await?;
    println!(
        "registry {}  proxy {}",
        registry.process.url, proxy.process.url
    );
    let mut fleet = Fleet {
        bin: shoal.to_path_buf(),
        registry: RegistryClient::new(&registry.process.url)?,
        members: Vec::new(),
        log: Vec::new(),
        hello_command: String::new(),
        drain: Duration::from_millis(args.drain_ms),
        started: Instant::now(),
        killed_stats: None,
    };
    fleet.scale_up().await?;
    let client = http_client(REQUEST_TIMEOUT)?;
    let url = format!("{}/json", proxy.process.url);
    let host = format!("{SERVICE}.localhost");
    wait_routed(&client, &url, &host).await?;
    let plan = paced::Plan {
        rate: args.rate,
        duration: Duration::from_secs(args.seconds),
        max_in_flight: args.max_in_flight,
        grace: REQUEST_TIMEOUT + Duration::from_secs(1),
    };
    println!(
        "{:.0} req/s for {} s while the instances change ...",
        args.rate, args.seconds
    );
    let load = tokio::spawn(paced::run(client.clone(), url, host, plan));
    fleet.started = Instant::now();
    fleet.log = vec![format!(
        "{:>9}  started and registered {SERVICE}-1 (1 live)",
        "before"
    )];
    let changes = fleet.run_schedule(plan.duration, &client, stats_port).await;
    let out = load.await.context("the load task failed")?;
    changes?;
    let stats = fleet::proxy_stats(&client, stats_port).await;
    let figures = figures(args, &out, &fleet, &stats);
    let mut notes = vec![
        format!("command:  {command}"),
        format!("registry: {}", registry.command),
        format!("proxy:    {}", proxy.command),
        format!("backend:  {}  (n = 1..5)", fleet.hello_command),
        format!(
            "load:     open loop, GET {}/json with Host: {SERVICE}.localhost on kept-alive \
             connections (reqwest), timeout {REQUEST_TIMEOUT:?}; latency = send -> whole answer",
            proxy.process.url
        ),
        "changes (time from the start of the load):".into(),
    ];
    notes.extend(fleet.log.iter().map(|l| format!("  {l}")));
    print_summary("shoal-bench proxy churn", &figures, &notes);
    Ok(())
}

/// Waits (bounded) until a request through the proxy reaches the service.
async fn wait_routed(client: &reqwest::Client, url: &str, host: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = client.get(url).header("Host", host).send().await;
        if matches!(&answer, Ok(r) if r.status() == reqwest::StatusCode::OK) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the proxy does not route {host} within 10 s: {answer:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Fleet {
    /// Applies [`SCHEDULE`] over `duration`, logging each change.
    async fn run_schedule(
        &mut self,
        duration: Duration,
        client: &reqwest::Client,
        stats_port: u16,
    ) -> Result<()> {
        for (fraction, change) in SCHEDULE {
            let at = self.started + duration.mul_f64(fraction);
            tokio::time::sleep_until(at.into()).await;
            match change {
                Change::ScaleUp => self.scale_up().await?,
                Change::KillRegistered => self.kill(KILLED)?,
                Change::DeregisterKilled => {
                    let stats = fleet::proxy_stats(client, stats_port).await;
                    let id = &self.members[KILLED - 1].id;
                    self.killed_stats = Some(stats["services"][SERVICE]["instances"][id].clone());
                    let id = id.clone();
                    self.registry.deregister(&id).await?;
                    self.note(format!("deregistered {id} (killed earlier)"));
                }
                Change::ScaleDown => self.scale_down().await?,
            }
        }
        Ok(())
    }

    fn note(&mut self, what: String) {
        let line = format!("{:>7.3} s  {what}", self.started.elapsed().as_secs_f64());
        println!("  {line}");
        self.log.push(line);
    }

    fn live(&self) -> usize {
        self.members.iter().filter(|m| m.process.is_some()).count()
    }

    /// Starts instance #n+1 and registers it.
    async fn scale_up(&mut self) -> Result<()> {
        let id = format!("{SERVICE}-{}", self.members.len() + 1);
        let hello = fleet::start_hello(&self.bin, SERVICE, &id).await?;
        self.registry.register(&id, SERVICE, hello.port()?).await?;
        self.hello_command = hello.command.replace(&id, &format!("{SERVICE}-<n>"));
        self.members.push(Member {
            id: id.clone(),
            process: Some(hello),
        });
        let live = self.live();
        self.note(format!("started and registered {id} ({live} live)"));
        Ok(())
    }

    /// SIGKILL to instance #n (1-based), left registered.
    fn kill(&mut self, n: usize) -> Result<()> {
        let member = self
            .members
            .get_mut(n - 1)
            .context("no such instance to kill")?;
        if let Some(mut p) = member.process.take() {
            p.process.kill();
        }
        let id = member.id.clone();
        self.note(format!("SIGKILL {id}, still registered"));
        Ok(())
    }

    /// Deregisters the newest live instance, waits for the drain, SIGTERM.
    async fn scale_down(&mut self) -> Result<()> {
        let member = self
            .members
            .iter_mut()
            .rev()
            .find(|m| m.process.is_some())
            .context("no live instance to remove")?;
        let (id, process) = (member.id.clone(), member.process.take());
        self.registry.deregister(&id).await?;
        tokio::time::sleep(self.drain).await;
        if let Some(mut p) = process {
            tokio::task::spawn_blocking(move || p.process.terminate()).await?;
        }
        let (live, drain) = (self.live(), self.drain);
        self.note(format!(
            "deregistered {id}, SIGTERM after {drain:?} ({live} live)"
        ));
        Ok(())
    }
}

fn figures(args: &Args, out: &Outcome, fleet: &Fleet, stats: &serde_json::Value) -> Vec<Figure> {
    let mut figures = vec![
        Figure::count_at_most(
            format!("failed requests (of {} planned)", out.planned),
            out.failed,
            0,
        ),
        Figure::info(
            "achieved rate (200 answers / s of sending)",
            format!("{:.0}/s of {:.0}/s planned", out.ok_rate(), args.rate),
        ),
    ];
    match Summary::of(&out.latencies) {
        Some(s) => figures.push(Figure::info(
            "latency p50 / p90 / p99 / max",
            format!(
                "{} / {} / {} / {}",
                ms(s.p50),
                ms(s.p90),
                ms(s.p99),
                ms(s.max)
            ),
        )),
        None => figures.push(Figure::info("latency", "n/a (no answer)")),
    }
    let spread: Vec<String> = out
        .by_instance
        .iter()
        .map(|(id, n)| format!("{id} {n}"))
        .collect();
    figures.push(Figure::info("answers per instance", spread.join(", ")));
    if let Some(k) = &fleet.killed_stats {
        figures.push(Figure::info(
            format!("proxy on killed {SERVICE}-{KILLED}: errors / retries / ejections"),
            format!("{} / {} / {}", k["errors"], k["retries"], k["ejections"]),
        ));
    }
    let p = &stats["proxy"];
    figures.push(Figure::info(
        "proxy: requests / queued / queue timeouts",
        format!(
            "{} / {} / {}",
            p["requests"], p["queued"], p["queue_timeouts"]
        ),
    ));
    for f in out.failures.iter().take(5) {
        figures.push(Figure::info(
            format!("failure at {:.3} s", f.at.as_secs_f64()),
            f.what.clone(),
        ));
    }
    figures
}
