//! `shoal-bench`: on-demand benchmarks of shoal. Not tests: each benchmark
//! starts the real `shoal` binary on 127.0.0.1, drives it over HTTP for a
//! bounded count and time, and prints its figures next to their targets.
//! It never fails because a figure misses its target.
//!
//! One subcommand per benchmark, one module per benchmark:
//! `shoal-bench registry` ([`registry`]), `shoal-bench proxy
//! throughput|time-to-route|churn|edge` ([`proxy`]) and `shoal-bench dns`
//! ([`dns`]), `shoal-bench https` ([`https`]), `shoal-bench docker` ([`docker`]), `shoal-bench watchers`
//! ([`watchers`]), `shoal-bench locks` ([`locks`]), `shoal-bench scale`
//! ([`scale`]), `shoal-bench render` ([`render`]), `shoal-bench etcd`
//! ([`etcd`]) and `shoal-bench template` ([`template`], in-process, no
//! server).
#![forbid(unsafe_code)]

mod acl;
mod agent;
mod dns;
mod docker;
mod etcd;
mod https;
mod locks;
mod proxy;
mod registry;
mod render;
mod report;
mod scale;
mod scale_agent;
mod server;
mod stats;
mod template;
mod watchers;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// On-demand benchmarks of shoal.
#[derive(Parser)]
#[command(name = "shoal-bench", version)]
struct Cli {
    /// The `shoal` binary to benchmark [default: target/release/shoal of this workspace].
    #[arg(long, global = true, env = "SHOAL_BIN")]
    shoal: Option<PathBuf>,
    /// Which benchmark to run.
    #[command(subcommand)]
    bench: Bench,
}

/// The benchmarks.
#[derive(Subcommand)]
enum Bench {
    /// Durable write throughput (registrations, KV puts) and blocking-query
    /// wake-up delay, against `shoal server` on the embedded store.
    Registry(registry::Args),
    /// The agent: CPU, memory and check-start spread with many HTTP checks.
    Agent(agent::Args),
    /// The load balancer: throughput against nginx and HAProxy, time from
    /// registration to first routed request, failures under instance churn.
    Proxy(proxy::Args),
    /// DNS SRV lookups per second of a 100-instance service, shoal vs
    /// dnsmasq serving the same records, under dnsperf.
    Dns(dns::Args),
    /// The API's keep-alive GET throughput over HTTPS against plain HTTP,
    /// both served by one `shoal server`, and their ratio.
    Https(https::Args),
    /// The cost of ACL checks: API requests/s with ACLs on (a token with
    /// prefix rules) against off, reads, writes and a filtered list.
    Acl(acl::Args),
    /// The Docker registrator: from `docker start` to the first request
    /// through the proxy reaching the new container, over 20 containers.
    Docker(docker::Args),
    /// Memory per blocking query: RSS of `shoal server` before and after
    /// many parked blocking queries.
    Watchers(watchers::Args),
    /// Coordination: lock hand-over latency among 100 waiters on blocking
    /// queries, and session renewals/s with 10,000 sessions.
    Locks(locks::Args),
    /// A large catalog (10,000 services x 10 instances through the API) in
    /// `shoal dev` and `shoal server` + `shoal proxy`: time to route, RSS,
    /// registration rate, DNS under writes, proxy start-up, SIGTERM.
    Scale(scale::Args),
    /// `shoal render` against a server: registration -> reload p99, -once
    /// over 1,000 services x 10 instances (and Go's text/template on the
    /// same data), idle CPU and RSS while watching them.
    Render(render::Args),
    /// The text/template engine: render time over 1,000 services x 10
    /// instances, side by side with Go's text/template. In-process.
    Template(template::Args),
    /// Two servers on a 3-member etcd: registrations/s vs raw etcd puts/s,
    /// write on A -> 1,000 blocking queries on B, register on A -> routed
    /// by a proxy following B.
    Etcd(etcd::Args),
}

/// Runs the chosen benchmark; a failure is printed as one line (with its
/// causes), without a backtrace, and exits with status 1.
#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    if let Bench::Template(args) = &cli.bench {
        // In-process: needs no shoal binary.
        return template::run(args, &command);
    }
    let shoal = server::locate(cli.shoal)?;
    match cli.bench {
        Bench::Registry(args) => registry::run(&shoal, &args, &command).await,
        Bench::Proxy(args) => proxy::run(&shoal, &args, &command).await,
        Bench::Agent(args) => agent::run(&shoal, &args, &command).await,
        Bench::Dns(args) => dns::run(&shoal, &args, &command).await,
        Bench::Https(args) => https::run(&shoal, &args, &command).await,
        Bench::Acl(args) => acl::run(&shoal, &args, &command).await,
        Bench::Docker(args) => docker::run(&shoal, &args, &command).await,
        Bench::Watchers(args) => watchers::run(&shoal, &args, &command).await,
        Bench::Locks(args) => locks::run(&shoal, &args, &command).await,
        Bench::Scale(args) => scale::run(&shoal, &args, &command).await,
        Bench::Render(args) => render::run(&shoal, &args, &command).await,
        Bench::Etcd(args) => etcd::run(&shoal, &args, &command).await,
        Bench::Template(_) => unreachable!("run in-process above"),
    }
}
