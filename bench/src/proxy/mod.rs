//! `shoal-bench proxy <which>`: benchmarks of the load balancer, each
//! against real processes on 127.0.0.1.
//!
//! - `throughput` ([`throughput`]): requests/s and latency of `shoal proxy`
//!   against nginx and HAProxy in front of the same backends, under wrk;
//! - `time-to-route` ([`time_to_route`]): from a registration's
//!   acknowledgement to the first request that reaches the new instance;
//! - `churn` ([`churn`]): failed requests of a steady open-loop stream
//!   while instances are added, killed and removed;
//! - `edge` ([`edge`]): the balancers as a TLS edge, shoal against nginx
//!   and HAProxy: HTTPS and HTTP/2 requests/s, full and resumed TLS
//!   handshakes/s, and plain HTTP/1.1, in one run.

mod churn;
mod configs;
mod contenders;
pub(crate) mod cpu;
mod daemon;
mod edge;
pub(crate) mod fleet;
mod h2load;
mod machine;
mod paced;
mod throughput;
mod time_to_route;
mod tls_client;
mod wrk;

use anyhow::Result;
use std::path::Path;

/// Options of `shoal-bench proxy`.
#[derive(clap::Args)]
pub struct Args {
    /// Which proxy benchmark to run.
    #[command(subcommand)]
    which: Which,
}

/// The proxy benchmarks.
#[derive(clap::Subcommand)]
enum Which {
    /// shoal proxy vs nginx vs HAProxy (one core each) under wrk, same backends.
    Throughput(throughput::Args),
    /// Registration acknowledged -> first request routed to the new instance.
    TimeToRoute(time_to_route::Args),
    /// Failed requests at a steady rate while instances scale 1 -> 5 -> 1 and one is killed.
    Churn(churn::Args),
    /// TLS edge: HTTPS, HTTP/2 and TLS handshakes/s (full, resumed), shoal vs nginx vs HAProxy.
    Edge(edge::Args),
}

/// Runs the chosen benchmark with the binary `shoal`; `command` is echoed in the summary.
pub async fn run(shoal: &Path, args: &Args, command: &str) -> Result<()> {
    match &args.which {
        Which::Throughput(a) => throughput::run(shoal, a, command).await,
        Which::TimeToRoute(a) => time_to_route::run(shoal, a, command).await,
        Which::Churn(a) => churn::run(shoal, a, command).await,
        Which::Edge(a) => edge::run(shoal, a, command).await,
    }
}
