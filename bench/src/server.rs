//! Finding the `shoal` binary, checking the open-file limit and starting
//! `shoal server` on a fresh, durable data directory.

use anyhow::{anyhow, bail, Context, Result};
use shoal_testkit::ServerProcess;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The binary to benchmark: `flag` (from `--shoal` or `SHOAL_BIN`), else
/// `target/release/shoal` of this workspace. Fails with a hint if missing.
pub fn locate(flag: Option<PathBuf>) -> Result<PathBuf> {
    let path = flag
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/shoal"));
    if !path.is_file() {
        bail!(
            "shoal binary not found at {}: run `cargo build --release -p shoal` \
             (or pass --shoal PATH, or set SHOAL_BIN)",
            path.display()
        );
    }
    Ok(path.canonicalize().unwrap_or(path))
}

/// Fails with advice when this process (and so the server it starts, which
/// inherits the limit) may not open `need` files. Unknown limits pass.
pub fn check_open_files(need: u64) -> Result<()> {
    let Some(limit) = open_file_limit() else {
        return Ok(());
    };
    if limit < need {
        bail!(
            "the open-file limit is {limit} but this run needs about {need} sockets \
             per process: raise it with `ulimit -n {need}` (bench/registry.sh tries to), \
             or lower --watchers / --clients"
        );
    }
    Ok(())
}

/// The soft `Max open files` limit from `/proc/self/limits` (Linux only).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    soft.parse().ok()
}

/// A `shoal server` child on the embedded store in its own temp directory.
/// Dropping it kills the server, then removes the directory.
pub struct DurableServer {
    /// The child process (declared first: dropped before the directory).
    pub process: ServerProcess,
    /// The data directory, removed on drop.
    pub data_dir: tempfile::TempDir,
    /// How the server was started, for the report.
    pub command: String,
}

impl DurableServer {
    /// Starts `shoal server --data-dir <fresh temp dir>` on 127.0.0.1 port 0.
    pub async fn start(bin: &Path) -> Result<DurableServer> {
        let data_dir = tempfile::Builder::new()
            .prefix("shoal-bench-")
            .tempdir()
            .context("cannot create a temporary data directory")?;
        let dir = data_dir.path().to_string_lossy().into_owned();
        let command = format!(
            "{} server --http-addr 127.0.0.1:0 --dns-addr 127.0.0.1:0 --log-level warn --data-dir {dir}",
            bin.display()
        );
        let bin = bin.to_path_buf();
        let process = tokio::task::spawn_blocking(move || {
            ServerProcess::try_start(&bin, &["--data-dir", &dir])
        })
        .await?
        .map_err(|e| anyhow!("cannot start shoal server: {e}"))?;
        Ok(DurableServer {
            process,
            data_dir,
            command,
        })
    }
}

/// A keep-alive HTTP client for 127.0.0.1 only: no proxy (ignores
/// `HTTP_PROXY`), no cap on pooled connections, Nagle off, and a request
/// timeout so no call can hang the benchmark.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(300))
        .tcp_nodelay(true)
        .timeout(timeout)
        .build()
        .context("cannot build the HTTP client")
}
