//! `shoal render`: consul-template's command line over shoal-render.
//! Flags are spelled as consul-template spells them and a single dash is
//! accepted (`-template`, `-once`); `-config` files are consul-template's
//! HCL. The registry is a shoal server or a real Consul (blocking queries).

use anyhow::Context;
use async_trait::async_trait;
use shoal_api::RemoteCatalog;
use shoal_catalog::{Indexed, Node, QueryOptions};
use shoal_render::config::{Config, ExecConfig, TemplateConfig, Wait};
use shoal_render::runner::{Exit, Options, Runner};
use shoal_render::source::{CatalogExtras, CatalogSource, Source};
use shoal_render::stream_source::StreamSource;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Flags of `shoal render` (consul-template's).
#[derive(clap::Args, Debug, Clone)]
pub struct RenderArgs {
    /// A template: SOURCE:DESTINATION[:COMMAND] (repeatable). A command
    /// with spaces runs through `sh -c`.
    #[arg(long = "template")]
    pub templates: Vec<String>,
    /// consul-template HCL config file or directory (repeatable).
    #[arg(long = "config")]
    pub config: Vec<PathBuf>,
    /// Registry address (a shoal server or Consul agent).
    #[arg(long = "consul-addr", env = "CONSUL_HTTP_ADDR")]
    pub consul_addr: Option<String>,
    /// ACL token.
    #[arg(
        long = "consul-token",
        env = "CONSUL_HTTP_TOKEN",
        hide_env_values = true
    )]
    pub consul_token: Option<String>,
    /// Use https for a registry address without a scheme.
    #[arg(long = "consul-ssl", env = "CONSUL_HTTP_SSL")]
    pub consul_ssl: bool,
    /// CA certificate (PEM) the registry's certificate must chain to.
    #[arg(
        long = "consul-ssl-ca-cert",
        env = "CONSUL_CACERT",
        value_name = "FILE"
    )]
    pub consul_ssl_ca_cert: Option<PathBuf>,
    /// Client certificate (PEM) for a registry that verifies incoming
    /// connections.
    #[arg(
        long = "consul-ssl-cert",
        env = "CONSUL_CLIENT_CERT",
        value_name = "FILE"
    )]
    pub consul_ssl_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long = "consul-ssl-key",
        env = "CONSUL_CLIENT_KEY",
        value_name = "FILE"
    )]
    pub consul_ssl_key: Option<PathBuf>,
    /// Render each template once its data is there, then exit.
    #[arg(long)]
    pub once: bool,
    /// Print renders to stdout (`> DEST` then the content); write nothing, run nothing.
    #[arg(long)]
    pub dry: bool,
    /// Quiescence MIN[:MAX] before rendering (MAX defaults to 4×MIN).
    #[arg(long)]
    pub wait: Option<String>,
    /// A child to supervise: started after the first render, sent the
    /// reload signal on change; shoal render exits with it.
    #[arg(long)]
    pub exec: Option<String>,
    /// Signal sent to the child on change (default: restart it).
    #[arg(long = "exec-reload-signal")]
    pub exec_reload_signal: Option<String>,
    /// Signal that stops the child (default SIGTERM).
    #[arg(long = "exec-kill-signal")]
    pub exec_kill_signal: Option<String>,
    /// How long the child may take to stop.
    #[arg(long = "exec-kill-timeout", value_parser = parse_duration)]
    pub exec_kill_timeout: Option<std::time::Duration>,
    /// Signal that stops shoal render (and its child) gracefully, exit
    /// code 12 (default SIGINT). SIGTERM stops too when there is no child.
    #[arg(long = "kill-signal")]
    pub kill_signal: Option<String>,
    /// Signal that reloads the configuration (default SIGHUP).
    #[arg(long = "reload-signal")]
    pub reload_signal: Option<String>,
    /// Accepted for compatibility (shoal's reads are consistent).
    #[arg(long = "max-stale", value_parser = parse_duration)]
    pub max_stale: Option<std::time::Duration>,
    /// Write the process ID here.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// shoal's own: read a shoal server with one blocking query per
    /// dependency, as against Consul, instead of its one change stream.
    #[arg(long = "no-stream")]
    pub no_stream: bool,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    shoal_catalog::duration::parse(s)
}

/// consul-template's flags take one dash; clap wants two for long names.
/// Rewrites `-name[=v]` to `--name[=v]` after the `render` subcommand.
pub fn normalize_args(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let Some(at) = args.iter().position(|a| a == "render") else {
        return args;
    };
    args.into_iter()
        .enumerate()
        .map(|(i, a)| match a.to_str() {
            Some(s) if i > at && s.len() > 2 && s.starts_with('-') && !s.starts_with("--") => {
                format!("-{s}").into()
            }
            _ => a,
        })
        .collect()
}

/// Exit code of a command line clap refused: consul-template's 13 for
/// `shoal render`, clap's own (2, or 0 for `--help`) for the rest.
pub fn flag_error_code(args: &[std::ffi::OsString], e: &clap::Error) -> u8 {
    let code = e.exit_code();
    if code != 0 && args.iter().skip(1).any(|a| a == "render") {
        exit_code::PARSE_FLAGS as u8
    } else {
        code as u8
    }
}

impl RenderArgs {
    /// Files first, then flags (which win), as consul-template merges.
    fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load_paths(&self.config)?;
        let mut flags = Config::default();
        for t in &self.templates {
            flags.templates.push(TemplateConfig::parse_flag(t)?);
        }
        flags.consul.address = self.consul_addr.clone();
        flags.consul.token = self.consul_token.clone();
        flags.wait = self.wait.as_deref().map(Wait::parse).transpose()?;
        flags.exec = self.exec.as_ref().map(|c| ExecConfig {
            command: vec![c.clone()],
            reload_signal: self.exec_reload_signal.clone(),
            kill_signal: self.exec_kill_signal.clone(),
            kill_timeout: self.exec_kill_timeout,
        });
        flags.reload_signal = self.reload_signal.clone();
        flags.kill_signal = self.kill_signal.clone();
        flags.max_stale = self.max_stale;
        flags.pid_file = self.pid_file.clone();
        config.merge(flags);
        config.validate()?;
        Ok(config)
    }
}

/// `nodes` and `node` without a name, over the HTTP API.
struct HttpExtras(RemoteCatalog);

#[async_trait]
impl CatalogExtras for HttpExtras {
    async fn nodes(&self, q: QueryOptions) -> shoal_render::Result<Indexed<Vec<Node>>> {
        let wait = q
            .wait
            .map(|w| format!("&wait={}ms", w.as_millis()))
            .unwrap_or_default();
        let path = format!("/v1/catalog/nodes?index={}{wait}", q.index);
        let resp = self
            .0
            .forward(
                reqwest::Method::GET,
                &path,
                Default::default(),
                Default::default(),
            )
            .await?;
        let index = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let value: Vec<Node> = resp
            .json()
            .await
            .map_err(|e| shoal_catalog::Error::Remote(format!("GET /v1/catalog/nodes: {e}")))?;
        Ok(Indexed { index, value })
    }

    async fn agent_node_name(&self) -> shoal_render::Result<String> {
        let resp = self
            .0
            .forward(
                reqwest::Method::GET,
                "/v1/agent/self",
                Default::default(),
                Default::default(),
            )
            .await?;
        let v: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| shoal_catalog::Error::Remote(format!("GET /v1/agent/self: {e}")))?;
        v.pointer("/Config/NodeName")
            .and_then(|n| n.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                shoal_catalog::Error::Remote("agent/self has no Config.NodeName".into()).into()
            })
    }
}

/// consul-template's exit codes (its `cli.go`): 0 done, 12 stopped by
/// the kill signal, 14 a runner error (a template that does not parse, a
/// failed `-once` render), 15 a configuration error; an `exec` child's
/// own exit code when it exits.
pub mod exit_code {
    /// Stopped by the kill signal.
    pub const INTERRUPT: i32 = 12;
    /// Flags that do not parse.
    pub const PARSE_FLAGS: i32 = 13;
    /// A template or render failed.
    pub const RUNNER: i32 = 14;
    /// The configuration is wrong.
    pub const CONFIG: i32 = 15;
}

/// Runs `shoal render` until stopped, exiting with consul-template's codes.
pub async fn run(args: RenderArgs) -> anyhow::Result<()> {
    let code = match run_until_exit(args).await {
        Ok(code) => code,
        Err((code, e)) => {
            eprintln!("shoal render: {e:#}");
            code
        }
    };
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

/// How long start-up waits for an unreachable registry to say whether it
/// offers the change stream.
const PROBE_FOR: Duration = Duration::from_secs(10);

/// A shoal server's change stream when it offers one (one connection
/// for every dependency); else, as against Consul, blocking queries.
async fn source(
    catalog: RemoteCatalog,
    extras: Arc<dyn CatalogExtras>,
) -> anyhow::Result<Arc<dyn Source>> {
    let blocking: Arc<dyn Source> = Arc::new(CatalogSource::new(
        Arc::new(catalog.clone()),
        Some(extras.clone()),
    ));
    // A registry still starting is asked again for a while (nothing
    // renders before its data anyway); one that stays unreachable is read
    // by blocking queries, which retry and say why, as consul-template's do.
    let mut answer = catalog.has_stream().await;
    let mut pause = Duration::from_millis(100);
    let give_up = std::time::Instant::now() + PROBE_FOR;
    if let Err(e) = &answer {
        tracing::warn!(error = %e, "render: registry not reachable yet; asking again for up to {}s", PROBE_FOR.as_secs());
    }
    while answer.is_err() && std::time::Instant::now() < give_up {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
        answer = catalog.has_stream().await;
    }
    match answer {
        Ok(true) => {
            tracing::info!(registry = %catalog.base_url(), "render: following the registry's change stream");
            let stream = StreamSource::new(Arc::new(catalog), blocking, Some(extras)).await?;
            Ok(Arc::new(stream))
        }
        Ok(false) => Ok(blocking),
        Err(e) => {
            tracing::warn!(error = %e, "render: cannot reach the registry yet; reading it by blocking queries");
            Ok(blocking)
        }
    }
}

async fn run_until_exit(args: RenderArgs) -> Result<i32, (i32, anyhow::Error)> {
    let config_err = |e: anyhow::Error| (exit_code::CONFIG, e);
    loop {
        let config = args
            .config()
            .context("render configuration")
            .map_err(config_err)?;
        if let Some(pid) = &config.pid_file {
            std::fs::write(pid, format!("{}\n", std::process::id()))
                .with_context(|| format!("cannot write pid file {}", pid.display()))
                .map_err(config_err)?;
        }
        let address = config
            .consul
            .address
            .clone()
            .unwrap_or_else(|| "http://127.0.0.1:8500".into());
        let mut remote = shoal_api::RemoteConfig::new(address);
        remote.stream = !args.no_stream;
        remote.token = config.consul.token.clone().filter(|t| !t.is_empty());
        remote.tls = shoal_api::ClientTls {
            ca_file: args.consul_ssl_ca_cert.clone(),
            cert_file: args.consul_ssl_cert.clone(),
            key_file: args.consul_ssl_key.clone(),
            https: args.consul_ssl,
        };
        let catalog = RemoteCatalog::new(remote)
            .context("bad -consul-addr")
            .map_err(config_err)?;
        let extras: Arc<dyn CatalogExtras> = Arc::new(HttpExtras(catalog.clone()));
        let source = source(catalog, extras).await.map_err(config_err)?;
        let opts = Options {
            once: args.once,
            dry: args.dry,
        };
        let runner_err = |e: shoal_render::Error| {
            let code = match e {
                shoal_render::Error::Config(_) => exit_code::CONFIG,
                _ => exit_code::RUNNER,
            };
            (code, anyhow::Error::new(e))
        };
        let runner = Runner::new(config, source, opts).map_err(runner_err)?;
        match runner.run().await.map_err(runner_err)? {
            Exit::Reload => {
                tracing::info!("render: reloading configuration");
                continue;
            }
            Exit::Done => return Ok(0),
            Exit::Stopped => return Ok(exit_code::INTERRUPT),
            Exit::Child(code) => return Ok(code),
        }
    }
}
