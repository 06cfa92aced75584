//! The `shoal` binary: every role (`server`, `dev`, `agent`, `proxy`, `hello`) and the command-line
//! client (`catalog`, `register`, `deregister`, `kv`), wired from flags and
//! `SHOAL_*` / `CONSUL_HTTP_*` environment variables.
#![forbid(unsafe_code)]

mod agent;
mod client;
mod container;
mod coord_client;
mod docker;
mod etcd;
mod health;
mod hello;
mod identity;
mod listen;
mod lock;
mod lock_child;
mod logging;
mod proxy;
mod render;
mod route_flag;
mod server;
mod session_cli;
mod snapshot_cli;
mod table;
mod tls;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's allocator: the proxy allocates per request,
/// and malloc/free were ~19% of its instructions per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Service discovery and load balancing for containers, in one binary.
#[derive(Parser, Debug)]
#[command(name = "shoal", version, about)]
struct Cli {
    /// Log filter: error, warn, info, debug, trace, or a tracing directive.
    #[arg(long, global = true, env = "SHOAL_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log format.
    #[arg(long, global = true, env = "SHOAL_LOG_FORMAT", value_enum, default_value_t = logging::Format::Text)]
    log_format: logging::Format,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the biggest flag set costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Run a catalog server: Consul-compatible HTTP API over a durable store.
    Server(server::ServerArgs),
    /// Run everything on one machine: the server and the load balancer.
    Dev(server::DevArgs),
    /// Run a host's agent: local registrations, health checks, sync to servers.
    Agent(agent::AgentArgs),
    /// Run the load balancer, following a registry's catalog.
    Proxy(proxy::ProxyArgs),
    /// Read the catalog.
    #[command(subcommand)]
    Catalog(client::CatalogCommand),
    /// Register a service instance with the registry's local agent.
    Register(client::RegisterArgs),
    /// Remove a service instance from the registry's local agent.
    Deregister(client::DeregisterArgs),
    /// Read and write the KV store.
    #[command(subcommand)]
    Kv(client::KvCommand),
    /// Run a command while holding a lock (or one of N semaphore slots).
    Lock(lock::LockArgs),
    /// The guard `shoal lock` runs its command under (not for direct use).
    #[command(hide = true)]
    LockChild(lock_child::LockChildArgs),
    /// Read and end sessions.
    #[command(subcommand)]
    Session(session_cli::SessionCommand),
    /// Save or restore the whole catalog and KV.
    #[command(subcommand)]
    Snapshot(snapshot_cli::SnapshotCommand),
    /// Run a tiny demo backend that says which instance answered.
    Hello(hello::HelloArgs),
    /// Render consul-template templates from the catalog and run their reload commands.
    Render(render::RenderArgs),
    /// Probe a running role's HTTP endpoint (the container image's HEALTHCHECK).
    Health(health::HealthArgs),
}

fn main() -> std::process::ExitCode {
    let args = render::normalize_args(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::from(render::flag_error_code(&args, &e));
        }
    };
    if let Err(e) = logging::init(&cli.log_level, cli.log_format) {
        eprintln!("shoal: {e:#}");
        return std::process::ExitCode::from(2);
    }
    if !matches!(cli.command, Command::Health(_)) {
        container::log_defaults();
    }
    let workers = match &cli.command {
        Command::Dev(args) => args.proxy.worker_threads,
        Command::Proxy(args) => args.options.worker_threads,
        Command::Agent(args) => Some(args.worker_threads),
        // The lock's guard process asks for a signal when the thread that
        // started it ends: that must be the main thread, alive to the end.
        Command::Lock(_) | Command::LockChild(_) => Some(1),
        Command::Health(_) => Some(1),
        _ => None,
    };
    // One worker: a single-threaded runtime, with no cross-thread wake-ups.
    let mut builder = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if let Some(n) = workers.filter(|n| *n > 1) {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shoal: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server::run(args, "server").await,
            Command::Dev(args) => server::run_dev(args).await,
            Command::Agent(args) => agent::run(args).await,
            Command::Proxy(args) => proxy::run(args).await,
            Command::Catalog(cmd) => client::catalog(cmd).await,
            Command::Register(args) => client::register(args).await,
            Command::Deregister(args) => client::deregister(args).await,
            Command::Kv(cmd) => client::kv(cmd).await,
            Command::Hello(args) => hello::run(args).await,
            Command::Render(args) => render::run(args).await,
            Command::Health(args) => health::run(args).await,
            Command::Lock(args) => lock::run(args).await,
            Command::LockChild(args) => lock_child::run(args).await,
            Command::Session(cmd) => session_cli::run(cmd).await,
            Command::Snapshot(cmd) => snapshot_cli::run(cmd).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
