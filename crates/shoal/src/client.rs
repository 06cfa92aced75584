//! The command-line client: reads and writes through the Consul HTTP API
//! of a shoal server (or a Consul agent) at `--registry`.

use crate::table;
use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::json;
use shoal_api::{RemoteCatalog, RemoteConfig};
use shoal_catalog::{Catalog, InstanceFilter, QueryOptions};
use std::io::Read;

/// Where the registry is; shared by every client command.
#[derive(clap::Args, Debug, Clone)]
pub struct Registry {
    /// Registry HTTP API address.
    #[arg(
        long,
        env = "CONSUL_HTTP_ADDR",
        default_value = "http://127.0.0.1:8500"
    )]
    registry: String,
    /// ACL token sent as X-Consul-Token.
    #[arg(long, env = "CONSUL_HTTP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// How an https registry is trusted (`--ca-file`, ...).
    #[command(flatten)]
    tls: crate::tls::ClientTlsArgs,
}

impl Registry {
    fn client(&self) -> anyhow::Result<RemoteCatalog> {
        let mut config = RemoteConfig::new(self.registry.clone());
        config.token = self.token.clone().filter(|t| !t.is_empty());
        config.tls = self.tls.client_tls();
        RemoteCatalog::new(config).context("bad --registry")
    }

    /// A client of the registry's sessions and locks.
    pub fn coord(&self) -> anyhow::Result<crate::coord_client::CoordClient> {
        let token = self.token.clone().filter(|t| !t.is_empty());
        Ok(crate::coord_client::CoordClient::new(self.client()?, token))
    }

    /// The registry's base URL, without a trailing slash.
    pub fn url(&self) -> String {
        let url = self.registry.trim_end_matches('/');
        if url.contains("://") {
            url.to_string()
        } else {
            format!("{}://{url}", self.tls.client_tls().default_scheme())
        }
    }

    /// An HTTP client for requests of its own (`shoal snapshot`), with
    /// the same TLS settings as [`Self::client`]'s.
    pub fn http_client(&self) -> anyhow::Result<reqwest::Client> {
        let builder = reqwest::Client::builder().no_proxy();
        self.tls
            .client_tls()
            .apply(builder)
            .context("TLS settings")?
            .build()
            .context("HTTP client")
    }

    /// `req` with the ACL token, if one was given.
    pub fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.token.as_deref().filter(|t| !t.is_empty()) {
            Some(t) => req.header("X-Consul-Token", t),
            None => req,
        }
    }

    /// Whether `--json` was asked for.
    pub fn json(&self) -> bool {
        self.json
    }
}

/// `shoal catalog ...`
#[derive(clap::Subcommand, Debug)]
pub enum CatalogCommand {
    /// List services and their tags.
    Services {
        #[command(flatten)]
        registry: Registry,
    },
    /// List the instances of a service with their health.
    Instances {
        /// Service name.
        name: String,
        /// Only instances with this tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Only instances whose checks all pass.
        #[arg(long)]
        passing: bool,
        #[command(flatten)]
        registry: Registry,
    },
}

/// `shoal register ...`
#[derive(clap::Args, Debug)]
pub struct RegisterArgs {
    /// Service name.
    name: String,
    /// Port the instance listens on.
    #[arg(long)]
    port: u16,
    /// Instance address (default: the node's).
    #[arg(long, default_value = "")]
    address: String,
    /// Tag (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Instance ID (default: the name).
    #[arg(long)]
    id: Option<String>,
    /// Metadata as key=value (repeatable).
    #[arg(long = "meta", value_parser = parse_key_value)]
    meta: Vec<(String, String)>,
    #[command(flatten)]
    registry: Registry,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.to_string(), v.to_string())),
        Some(_) => Err(format!("{s:?} has no key: want key=value")),
        None => Err(format!("{s:?} is not key=value")),
    }
}

/// `shoal deregister ...`
#[derive(clap::Args, Debug)]
pub struct DeregisterArgs {
    /// Instance ID.
    id: String,
    #[command(flatten)]
    registry: Registry,
}

/// `shoal kv ...`
#[derive(clap::Subcommand, Debug)]
pub enum KvCommand {
    /// Print a key's value.
    Get {
        /// Key.
        key: String,
        #[command(flatten)]
        registry: Registry,
    },
    /// Set a key; VALUE `-` reads standard input.
    Put {
        /// Key.
        key: String,
        /// Value (`-` for standard input).
        value: String,
        /// Client flags.
        #[arg(long, default_value_t = 0)]
        flags: u64,
        /// Only write if the key's ModifyIndex is this (0: only create).
        #[arg(long)]
        cas: Option<u64>,
        /// Write only while taking the key's lock for this session.
        #[arg(long, value_name = "SESSION", conflicts_with = "release")]
        acquire: Option<String>,
        /// Write and give the key's lock held by this session back.
        #[arg(long, value_name = "SESSION")]
        release: Option<String>,
        #[command(flatten)]
        registry: Registry,
    },
    /// Delete a key (or a prefix with --recurse).
    Delete {
        /// Key or prefix.
        key: String,
        /// Delete every key under the prefix.
        #[arg(long)]
        recurse: bool,
        #[command(flatten)]
        registry: Registry,
    },
    /// List keys under a prefix.
    List {
        /// Prefix (default: everything).
        #[arg(default_value = "")]
        prefix: String,
        #[command(flatten)]
        registry: Registry,
    },
}

/// `kv put --acquire/--release`.
async fn kv_lock(
    registry: &Registry,
    key: &str,
    value: Bytes,
    session: &str,
    acquire: bool,
    cas: Option<u64>,
    flags: Option<u64>,
) -> anyhow::Result<bool> {
    registry
        .coord()?
        .kv_lock(key, value, session, acquire, cas, flags)
        .await
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Prints `value` as JSON with `--json`, else a table of `rows(value)`.
fn output<T: serde::Serialize>(
    json: bool,
    value: &T,
    header: &[&str],
    rows: impl FnOnce(&T) -> Vec<Vec<String>>,
) -> anyhow::Result<()> {
    if json {
        return print_json(value);
    }
    print!("{}", table::render(header, &rows(value)));
    Ok(())
}

/// Runs a `catalog` subcommand.
pub async fn catalog(cmd: CatalogCommand) -> anyhow::Result<()> {
    match cmd {
        CatalogCommand::Services { registry } => {
            let out = registry.client()?.services(QueryOptions::default()).await?;
            output(registry.json, &out.value, &["NAME", "TAGS"], |services| {
                services
                    .iter()
                    .map(|(name, tags)| vec![name.clone(), tags.join(",")])
                    .collect()
            })
        }
        CatalogCommand::Instances {
            name,
            tags,
            passing,
            registry,
        } => {
            let filter = InstanceFilter {
                tags,
                passing_only: passing,
            };
            let out = registry
                .client()?
                .instances(&name, &filter, QueryOptions::default())
                .await?;
            let header = ["ID", "NODE", "ADDRESS", "PORT", "STATUS", "TAGS"];
            output(registry.json, &out.value, &header, |entries| {
                entries
                    .iter()
                    .map(|e| {
                        vec![
                            e.service.id.clone(),
                            e.node.name.clone(),
                            e.address().to_string(),
                            e.service.port.to_string(),
                            e.aggregate_status().as_str().to_string(),
                            e.service.tags.join(","),
                        ]
                    })
                    .collect()
            })
        }
    }
}

/// Runs `register`.
pub async fn register(args: RegisterArgs) -> anyhow::Result<()> {
    let id = args.id.clone().unwrap_or_else(|| args.name.clone());
    let meta: serde_json::Map<String, serde_json::Value> = args
        .meta
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let definition = json!({
        "ID": id,
        "Name": args.name,
        "Port": args.port,
        "Address": args.address,
        "Tags": args.tags,
        "Meta": meta,
    });
    args.registry.client()?.agent_register(&definition).await?;
    if args.registry.json {
        return print_json(&json!({"ID": id}));
    }
    println!("registered {id}");
    Ok(())
}

/// Runs `deregister`.
pub async fn deregister(args: DeregisterArgs) -> anyhow::Result<()> {
    args.registry.client()?.agent_deregister(&args.id).await?;
    if !args.registry.json {
        println!("deregistered {}", args.id);
    }
    Ok(())
}

/// Runs a `kv` subcommand.
pub async fn kv(cmd: KvCommand) -> anyhow::Result<()> {
    match cmd {
        KvCommand::Get { key, registry } => {
            let out = registry
                .client()?
                .kv_get(&key, QueryOptions::default())
                .await?;
            let Some(entry) = out.value else {
                bail!("key {key:?} not found")
            };
            if registry.json {
                return print_json(&entry);
            }
            use std::io::Write;
            let mut stdout = std::io::stdout();
            stdout.write_all(&entry.value)?;
            if !entry.value.ends_with(b"\n") {
                stdout.write_all(b"\n")?;
            }
        }
        KvCommand::Put {
            key,
            value,
            flags,
            cas,
            acquire,
            release,
            registry,
        } => {
            let bytes = if value == "-" {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .context("cannot read standard input")?;
                Bytes::from(buf)
            } else {
                Bytes::from(value.into_bytes())
            };
            let lock = acquire.map(|s| (s, true)).or(release.map(|s| (s, false)));
            let written = match &lock {
                Some((session, take)) => {
                    let path_flags = if flags != 0 { Some(flags) } else { None };
                    kv_lock(&registry, &key, bytes, session, *take, cas, path_flags).await?
                }
                None => registry.client()?.kv_put(&key, bytes, flags, cas).await?,
            };
            if registry.json {
                return print_json(&written);
            }
            if !written {
                match lock {
                    Some((session, true)) => {
                        bail!("lock not acquired: {key:?} is held by another session than {session} (or in its lock-delay)")
                    }
                    Some((session, false)) => {
                        bail!("lock not released: {key:?} is not held by {session}")
                    }
                    None => bail!("check-and-set failed: {key:?} was changed by someone else"),
                }
            }
            println!("wrote {key}");
        }
        KvCommand::Delete {
            key,
            recurse,
            registry,
        } => {
            let done = registry.client()?.kv_delete(&key, recurse, None).await?;
            if registry.json {
                return print_json(&done);
            }
            println!("deleted {key}");
        }
        KvCommand::List { prefix, registry } => {
            let out = registry
                .client()?
                .kv_list(&prefix, QueryOptions::default())
                .await?;
            let header = ["KEY", "FLAGS", "MODIFY_INDEX", "BYTES"];
            output(registry.json, &out.value, &header, |entries| {
                entries
                    .iter()
                    .map(|e| {
                        vec![
                            e.key.clone(),
                            e.flags.to_string(),
                            e.modify_index.to_string(),
                            e.value.len().to_string(),
                        ]
                    })
                    .collect()
            })?;
        }
    }
    Ok(())
}
