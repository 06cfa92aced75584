//! Where dependency data comes from: the small [`Source`] interface the
//! watcher drives (one blocking read of one dependency), and its
//! implementation over the [`Catalog`] trait (an in-process registry, or
//! `RemoteCatalog` against a shoal server or a real Consul).
//! [`crate::stream_source::StreamSource`] implements it over a shoal
//! server's change stream.

use crate::deps::{
    CatalogNode, CatalogSnippet, Data, Dependency, HealthService, KeyPair, NodeInfo,
};
use crate::error::{Error, Result};
use async_trait::async_trait;
use shoal_catalog::{Catalog, Indexed, InstanceFilter, Node, QueryOptions};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One blocking read of one dependency.
#[async_trait]
pub trait Source: Send + Sync {
    /// Reads `dep`; with `index > 0`, returns only once what it covers has
    /// changed past `index` or `wait` has elapsed (Consul's blocking query).
    async fn fetch(&self, dep: &Dependency, index: u64, wait: Duration) -> Result<Indexed<Data>>;
}

/// The reads consul-template makes that the [`Catalog`] trait has no call
/// for: the node list and the agent's own node name. The binary provides
/// them over the HTTP API.
#[async_trait]
pub trait CatalogExtras: Send + Sync {
    /// `/v1/catalog/nodes`, blocking.
    async fn nodes(&self, q: QueryOptions) -> Result<Indexed<Vec<Node>>>;
    /// The node name of the agent answering (`/v1/agent/self`).
    async fn agent_node_name(&self) -> Result<String>;
}

/// [`Source`] over any [`Catalog`], by blocking queries.
pub struct CatalogSource {
    catalog: Arc<dyn Catalog>,
    extras: Option<Arc<dyn CatalogExtras>>,
}

impl CatalogSource {
    /// A source reading `catalog`; `extras` serves `nodes` and `node` with
    /// no name (without them those two functions fail with a clear error).
    pub fn new(catalog: Arc<dyn Catalog>, extras: Option<Arc<dyn CatalogExtras>>) -> Self {
        CatalogSource { catalog, extras }
    }

    fn extras(&self, what: &str) -> Result<&dyn CatalogExtras> {
        self.extras.as_deref().ok_or_else(|| {
            Error::config(format!(
                "{what} needs the registry's HTTP API, which this source lacks"
            ))
        })
    }
}

#[async_trait]
impl Source for CatalogSource {
    async fn fetch(&self, dep: &Dependency, index: u64, wait: Duration) -> Result<Indexed<Data>> {
        let q = QueryOptions::blocking(index, wait);
        let c = &self.catalog;
        Ok(match dep {
            Dependency::Health(query) => {
                let filter = InstanceFilter {
                    tags: query.tag.iter().cloned().collect(),
                    passing_only: query.passing_only(),
                };
                let got = c.instances(&query.name, &filter, q).await?;
                let list = HealthService::from_entries(query, &got.value);
                indexed(got.index, Data::Health(list))
            }
            Dependency::CatalogServices { .. } => {
                let got = c.services(q).await?;
                indexed(
                    got.index,
                    Data::Services(CatalogSnippet::from_catalog(&got.value)),
                )
            }
            Dependency::CatalogNodes { .. } => {
                let got = self.extras("nodes")?.nodes(q).await?;
                indexed(got.index, Data::Nodes(NodeInfo::list(&got.value)))
            }
            Dependency::CatalogNode { name, .. } => {
                let name = match name {
                    Some(n) => n.clone(),
                    None => self.extras("node")?.agent_node_name().await?,
                };
                let got = c.node_contents(&name, q).await?;
                let node = match &got.value {
                    Some(n) => CatalogNode::from_contents(&n.node, &n.services),
                    None => CatalogNode::default(),
                };
                indexed(got.index, Data::Node(node))
            }
            Dependency::KvGet { key, .. } => {
                let got = c.kv_get(key, q).await?;
                let value = got
                    .value
                    .map(|e| String::from_utf8_lossy(&e.value).into_owned());
                indexed(got.index, Data::Kv(value))
            }
            Dependency::KvList { prefix, .. } => {
                let got = c.kv_list(prefix, q).await?;
                indexed(got.index, Data::KvList(KeyPair::list(prefix, &got.value)))
            }
            Dependency::File(path) => read_file(path, index, wait).await?,
        })
    }
}

fn indexed(index: u64, value: Data) -> Indexed<Data> {
    Indexed { index, value }
}

/// How often a watched file is looked at (consul-template polls too).
const FILE_POLL: Duration = Duration::from_millis(500);

fn file_stamp(meta: &std::fs::Metadata) -> u64 {
    let t = meta.modified().unwrap_or(UNIX_EPOCH);
    let nanos = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    // Never 0 (0 means "read now") and mixed with the size, so a rewrite
    // within the clock's resolution is still seen.
    (nanos as u64 ^ meta.len().rotate_left(32)).max(1)
}

/// Reads a file once its modification stamp differs from `index`.
async fn read_file(path: &std::path::Path, index: u64, wait: Duration) -> Result<Indexed<Data>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let stamp = match tokio::fs::metadata(path).await {
            Ok(m) => file_stamp(&m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
            Err(e) => return Err(Error::io(path)(e)),
        };
        if stamp != index || tokio::time::Instant::now() >= deadline {
            let contents = match tokio::fs::read(path).await {
                Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io(path)(e)),
            };
            return Ok(indexed(stamp, Data::File(contents)));
        }
        tokio::time::sleep(FILE_POLL).await;
    }
}

/// Seconds since the epoch, for `timestamp`.
pub fn now_unix() -> i64 {
    shoal_catalog::clock::now_unix()
}

/// Now as (seconds, nanoseconds) since the Unix epoch, for `timestamp`.
pub fn now_unix_nanos() -> (i64, u32) {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_secs() as i64, d.subsec_nanos()))
        .unwrap_or((0, 0))
}
