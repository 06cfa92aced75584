//! The `Catalog` trait: the one way agent, proxy, DNS and renderer read
//! and write the catalog, whether it lives in this process ([`Registry`])
//! or behind a Consul-compatible HTTP API (the API crate's `RemoteCatalog`).
//!
//! [`Registry`]: crate::Registry

use crate::command::Registration;
use crate::error::Result;
use crate::model::{Check, HealthStatus, KvEntry, Node, Service, ServiceEntry};
use crate::stream::{StreamEvent, StreamRequest};
use crate::watch::Topic;
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;

/// Blocking-query options, as Consul's `?index=` and `?wait=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// Return only once the result's index is greater than this (0 = now).
    pub index: u64,
    /// Longest time to block; `None` means Consul's default of 5 minutes.
    pub wait: Option<Duration>,
}

impl QueryOptions {
    /// A blocking query from `index` for at most `wait`.
    pub fn blocking(index: u64, wait: Duration) -> Self {
        QueryOptions {
            index,
            wait: Some(wait),
        }
    }
}

/// A result with the index it was read at (`X-Consul-Index`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Indexed<T> {
    /// The index to pass as `QueryOptions::index` to wait for a change.
    pub index: u64,
    /// The result.
    pub value: T,
}

/// Which instances of a service a reader wants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceFilter {
    /// Only instances carrying every one of these tags.
    pub tags: Vec<String>,
    /// Only instances whose checks all pass.
    pub passing_only: bool,
}

impl InstanceFilter {
    /// Whether an entry passes this filter.
    pub fn matches(&self, entry: &ServiceEntry) -> bool {
        (!self.passing_only || entry.aggregate_status() == HealthStatus::Passing)
            && self.tags.iter().all(|t| entry.service.tags.contains(t))
    }
}

/// Everything the catalog holds about one node: what an agent compares
/// with its own state to bring the catalog back in line (anti-entropy).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeContents {
    /// The node.
    pub node: Node,
    /// Its instances.
    pub services: Vec<Service>,
    /// Its checks, node-level and per instance.
    pub checks: Vec<Check>,
}

/// What [`Catalog::subscribe`] returns: the events, and the errors met
/// while reaching the catalog.
pub type Subscription = mpsc::Receiver<Result<StreamEvent>>;

/// Reads and writes of the catalog, local or remote.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// Creates or updates a node, an instance and checks; returns the index.
    async fn register(&self, reg: Registration) -> Result<u64>;
    /// Removes one instance (and its checks) from a node.
    async fn deregister_service(&self, node: &str, service_id: &str) -> Result<u64>;
    /// Removes a node with everything on it.
    async fn deregister_node(&self, node: &str) -> Result<u64>;
    /// Removes one check from a node.
    async fn deregister_check(&self, node: &str, check_id: &str) -> Result<u64>;
    /// A node with its instances and checks (`None` when it is unknown);
    /// blocks on the node's index like any other read.
    async fn node_contents(
        &self,
        node: &str,
        q: QueryOptions,
    ) -> Result<Indexed<Option<NodeContents>>>;
    /// Sets a check's status and (optionally) output.
    async fn update_check(
        &self,
        node: &str,
        check_id: &str,
        status: HealthStatus,
        output: Option<String>,
    ) -> Result<u64>;
    /// Service names and their tags.
    async fn services(&self, q: QueryOptions) -> Result<Indexed<BTreeMap<String, Vec<String>>>>;
    /// Instances of a service with nodes and checks, filtered.
    async fn instances(
        &self,
        service: &str,
        filter: &InstanceFilter,
        q: QueryOptions,
    ) -> Result<Indexed<Vec<ServiceEntry>>>;
    /// One KV entry.
    async fn kv_get(&self, key: &str, q: QueryOptions) -> Result<Indexed<Option<KvEntry>>>;
    /// Every KV entry under a prefix.
    async fn kv_list(&self, prefix: &str, q: QueryOptions) -> Result<Indexed<Vec<KvEntry>>>;
    /// Sets a key; with `cas`, only if the entry's ModifyIndex matches
    /// (0: only if absent). Returns whether it was written.
    async fn kv_put(&self, key: &str, value: Bytes, flags: u64, cas: Option<u64>) -> Result<bool>;
    /// Deletes a key or a prefix; returns whether the delete happened.
    async fn kv_delete(&self, key: &str, recurse: bool, cas: Option<u64>) -> Result<bool>;
    /// Waits until what `topic` covers changes past `index` or `wait`
    /// elapses; returns the topic's index then.
    async fn wait_for_change(&self, topic: &Topic, index: u64, wait: Duration) -> Result<u64>;
    /// Follows every change of the catalog from `req.index`: ordered
    /// [`StreamEvent`]s, each batch closed by a `Synced`, a `Reset` and a
    /// snapshot first when the index is too old (or 0). The channel closes
    /// when the catalog is gone; dropping the receiver ends the follow.
    /// An `Err` item reports a failed attempt to reach a remote catalog
    /// (the subscription keeps retrying and resumes where it was).
    async fn subscribe(&self, req: StreamRequest) -> Result<Subscription>;
}
