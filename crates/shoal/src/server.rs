//! The `server` and `dev` roles: open the store, start the registry, serve
//! the HTTP API, and shut down cleanly on SIGINT/SIGTERM.

use crate::identity;
use anyhow::Context;
use shoal_api::{ApiConfig, ApiState};
use shoal_catalog::{MemoryStore, RedbStore, Registry, Store};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Flags of `shoal server` and `shoal dev`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address of the HTTP API.
    #[arg(long, env = "SHOAL_HTTP_ADDR", default_value = "127.0.0.1:8500")]
    pub http_addr: SocketAddr,
    /// Directory of the durable catalog.
    #[arg(long, env = "SHOAL_DATA_DIR", default_value = "./shoal-data")]
    pub data_dir: PathBuf,
    /// Keep the catalog in memory only (lost on exit).
    #[arg(long, env = "SHOAL_IN_MEMORY")]
    pub in_memory: bool,
    /// This node's name (default: the hostname).
    #[arg(long, env = "SHOAL_NODE_NAME")]
    pub node_name: Option<String>,
    /// Datacenter name.
    #[arg(long, env = "SHOAL_DATACENTER", default_value = "dc1")]
    pub datacenter: String,
}

fn open_store(args: &ServerArgs) -> anyhow::Result<Box<dyn Store>> {
    if args.in_memory {
        return Ok(Box::new(MemoryStore));
    }
    let store = RedbStore::open(&args.data_dir)
        .with_context(|| format!("data dir {} is unusable", args.data_dir.display()))?;
    Ok(Box::new(store))
}

/// Runs the server until a signal arrives.
pub async fn run(args: ServerArgs, role: &str) -> anyhow::Result<()> {
    let store = open_store(&args)?;
    let node_id = identity::node_id((!args.in_memory).then_some(args.data_dir.as_path()))?;
    let registry = Registry::open(store).context("cannot load the catalog")?;
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("cannot listen on {} for the HTTP API", args.http_addr))?;
    let local = listener.local_addr().context("listener has no address")?;
    let config = ApiConfig {
        node_name: args.node_name.clone().unwrap_or_else(identity::hostname),
        node_id,
        datacenter: args.datacenter.clone(),
        node_address: match local.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            ip => ip.to_string(),
        },
    };
    shoal_api::register_local_node(&registry, &config)
        .await
        .context("cannot register this node in the catalog")?;
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    tracing::info!(
        role,
        http = %local,
        node = %config.node_name,
        datacenter = %config.datacenter,
        store = if args.in_memory { "memory" } else { "redb" },
        index = registry.snapshot().index(),
        "shoal started"
    );
    // A stable, parseable line for people and for test harnesses.
    println!("shoal {role}: HTTP API listening on http://{local}");
    let state = ApiState::new(registry.clone(), Arc::new(config));
    let served = shoal_api::serve(listener, state, cancel).await;
    registry.shutdown().await;
    tracing::info!("shoal stopped");
    served.context("HTTP API server failed")
}

async fn stop_on_signal(cancel: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term => tracing::info!("SIGTERM: shutting down"),
    }
    cancel.cancel();
}
