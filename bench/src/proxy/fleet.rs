//! The shoal processes of the proxy benchmarks: a registry (`shoal server
//! --in-memory`), `shoal proxy` following it, and `shoal hello` backends,
//! each a child on 127.0.0.1 port 0, optionally pinned to CPUs with
//! `taskset`; plus registering and deregistering instances over the
//! registry's HTTP API.

use crate::server::http_client;
use anyhow::{anyhow, bail, Context, Result};
use shoal_testkit::ServerProcess;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A started shoal child and the command line that started it.
pub struct Spawned {
    /// The child (killed with SIGKILL when dropped).
    pub process: ServerProcess,
    /// The command line, for the report.
    pub command: String,
}

impl Spawned {
    /// The port of the announced `http://127.0.0.1:PORT` address.
    pub fn port(&self) -> Result<u16> {
        port_of(&self.process.url)
    }
}

/// `PORT` of `http://HOST:PORT[/...]`.
pub fn port_of(url: &str) -> Result<u16> {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .and_then(|hostport| hostport.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow!("no port in {url:?}"))
}

/// `program args...`, or `taskset -c CPUS program args...` when pinned.
pub fn pinned(cpus: Option<&str>, program: &Path, args: &[String]) -> (PathBuf, Vec<String>) {
    match cpus {
        None => (program.to_path_buf(), args.to_vec()),
        Some(cpus) => {
            let mut all = vec!["-c".to_string(), cpus.to_string()];
            all.push(program.display().to_string());
            all.extend_from_slice(args);
            (PathBuf::from("taskset"), all)
        }
    }
}

/// A command line as one string a shell would take (arguments with spaces
/// or `;` in single quotes), for the report.
pub fn command_line(program: &Path, args: &[String]) -> String {
    std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| {
            if a.contains([' ', ';', '"']) {
                format!("'{a}'")
            } else {
                a.clone()
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Starts `shoal ARGS...` (pinned to `cpus` if given) and waits, off the
/// async threads, for its `<label>: listening on <url>` line whose label
/// contains `ready`.
pub async fn start(
    bin: &Path,
    cpus: Option<&str>,
    args: &[String],
    ready: &str,
) -> Result<Spawned> {
    let (program, argv) = pinned(cpus, bin, args);
    let command = command_line(&program, &argv);
    let ready = ready.to_string();
    let what = command.clone();
    let process = tokio::task::spawn_blocking(move || {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        ServerProcess::try_start_role(&program, &argv, &ready)
    })
    .await?
    .map_err(|e| anyhow!("cannot start `{what}`: {e}"))?;
    Ok(Spawned { process, command })
}

/// `shoal server --in-memory` on 127.0.0.1 port 0: propagation, not fsync,
/// is what the proxy benchmarks measure.
pub async fn start_registry(bin: &Path, cpus: Option<&str>) -> Result<Spawned> {
    let args = strings(&[
        "server",
        "--http-addr",
        "127.0.0.1:0",
        "--dns-addr",
        "127.0.0.1:0",
        "--in-memory",
        "--log-level",
        "warn",
    ]);
    start(bin, cpus, &args, "HTTP API").await
}

/// `shoal proxy --registry URL --listen 127.0.0.1:0 --stats-addr
/// 127.0.0.1:STATS EXTRA...`.
pub async fn start_proxy(
    bin: &Path,
    cpus: Option<&str>,
    registry: &str,
    stats_port: u16,
    extra: &[String],
) -> Result<Spawned> {
    let mut args = strings(&["proxy", "--registry", registry, "--listen", "127.0.0.1:0"]);
    args.push("--stats-addr".into());
    args.push(format!("127.0.0.1:{stats_port}"));
    args.extend(strings(&["--log-level", "warn"]));
    args.extend_from_slice(extra);
    start(bin, cpus, &args, "shoal proxy").await
}

/// `shoal hello --port 0 --name NAME --id ID`; its `/json` answers `"id": ID`.
pub async fn start_hello(bin: &Path, name: &str, id: &str) -> Result<Spawned> {
    let args = strings(&[
        "hello",
        "--port",
        "0",
        "--name",
        name,
        "--id",
        id,
        "--log-level",
        "warn",
    ]);
    start(bin, None, &args, "shoal hello").await
}

/// Owned copies of `args`.
pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A port that was free a moment ago on 127.0.0.1, for programs that
/// cannot announce a port-0 address (nginx, HAProxy, the proxy's stats).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Registers and deregisters instances through the registry's agent API.
#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
}

impl RegistryClient {
    /// A client of the registry at `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Result<RegistryClient> {
        Ok(RegistryClient {
            http: http_client(Duration::from_secs(10))?,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// `PUT /v1/agent/service/register` of instance `id` of `name` at
    /// 127.0.0.1:`port` (no check: it counts as passing); returns once
    /// acknowledged with 200.
    pub async fn register(&self, id: &str, name: &str, port: u16) -> Result<()> {
        let body = serde_json::json!({
            "ID": id, "Name": name, "Address": "127.0.0.1", "Port": port,
        });
        let url = format!("{}/v1/agent/service/register", self.base);
        let response = self.http.put(url).json(&body).send().await;
        let response = response.with_context(|| format!("registering {id}"))?;
        if response.status() != reqwest::StatusCode::OK {
            bail!("registering {id}: HTTP {}", response.status());
        }
        Ok(())
    }

    /// `PUT /v1/agent/service/deregister/<id>`; returns once acknowledged.
    pub async fn deregister(&self, id: &str) -> Result<()> {
        let url = format!("{}/v1/agent/service/deregister/{id}", self.base);
        let response = self.http.put(url).send().await;
        let response = response.with_context(|| format!("deregistering {id}"))?;
        if !response.status().is_success() {
            bail!("deregistering {id}: HTTP {}", response.status());
        }
        Ok(())
    }
}

/// The proxy's `/v1/proxy/stats` JSON (`null` if it cannot be read).
pub async fn proxy_stats(client: &reqwest::Client, stats_port: u16) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{stats_port}/v1/proxy/stats");
    match client.get(url).send().await {
        Ok(r) => r.json().await.unwrap_or(serde_json::Value::Null),
        Err(_) => serde_json::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_pinning() {
        assert_eq!(port_of("http://127.0.0.1:8080").unwrap(), 8080);
        assert_eq!(port_of("http://127.0.0.1:81/x").unwrap(), 81);
        assert!(port_of("http://127.0.0.1").is_err());
        let args = strings(&["proxy", "--x", "daemon off;"]);
        let (p, a) = pinned(Some("1"), Path::new("/bin/shoal"), &args);
        assert_eq!(
            command_line(&p, &a),
            "taskset -c 1 /bin/shoal proxy --x 'daemon off;'"
        );
        let (p, a) = pinned(None, Path::new("/bin/shoal"), &args);
        assert_eq!(command_line(&p, &a), "/bin/shoal proxy --x 'daemon off;'");
    }
}
