//! `shoal server --store etcd`: the catalog in an etcd cluster shared by
//! any number of servers (see `store.rs` for how, `client.rs` for the etcd
//! client).

pub mod client;
pub mod cluster;
pub mod forward;
mod parts;
pub mod renewals;
pub mod store;

use std::path::PathBuf;

/// Which store holds the catalog.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded database under `--data-dir` (one server).
    #[default]
    Embedded,
    /// An etcd v3 cluster (`--etcd-endpoints`), shared by many servers.
    Etcd,
}

/// Flags of the store (part of `shoal server` and `shoal dev`).
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// Where the catalog lives: `embedded` (default) or `etcd`.
    #[arg(long, env = "SHOAL_STORE", value_enum, default_value_t = StoreKind::Embedded)]
    pub store: StoreKind,
    /// etcd client URLs, comma-separated (http://h1:2379,http://h2:2379).
    #[arg(long, env = "SHOAL_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Key prefix of this catalog in etcd (several catalogs can share a cluster).
    #[arg(long, env = "SHOAL_ETCD_PREFIX", default_value = "/shoal/")]
    pub etcd_prefix: String,
    /// etcd user, `NAME` or `NAME:PASSWORD` (as etcdctl's --user).
    #[arg(long, env = "SHOAL_ETCD_USER")]
    pub etcd_user: Option<String>,
    /// etcd password (when not in --etcd-user).
    #[arg(long, env = "SHOAL_ETCD_PASSWORD", hide_env_values = true)]
    pub etcd_password: Option<String>,
    /// PEM CA bundle that signs the etcd members' certificates (https endpoints).
    #[arg(long, env = "SHOAL_ETCD_CACERT")]
    pub etcd_cacert: Option<PathBuf>,
    /// PEM client certificate for etcd (with --etcd-key).
    #[arg(long, env = "SHOAL_ETCD_CERT")]
    pub etcd_cert: Option<PathBuf>,
    /// PEM private key of --etcd-cert.
    #[arg(long, env = "SHOAL_ETCD_KEY")]
    pub etcd_key: Option<PathBuf>,
}

impl StoreArgs {
    /// The etcd client's settings, checked.
    pub fn etcd_config(&self) -> Result<client::EtcdConfig, String> {
        if self.etcd_endpoints.iter().all(|e| e.trim().is_empty()) {
            return Err("--store etcd needs --etcd-endpoints (or SHOAL_ETCD_ENDPOINTS)".into());
        }
        if self.etcd_prefix.is_empty() {
            return Err("--etcd-prefix must not be empty".into());
        }
        Ok(client::EtcdConfig {
            endpoints: self
                .etcd_endpoints
                .iter()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect(),
            user: self.etcd_user.clone(),
            password: self.etcd_password.clone(),
            ca_file: self.etcd_cacert.clone(),
            cert_file: self.etcd_cert.clone(),
            key_file: self.etcd_key.clone(),
        })
    }
}
