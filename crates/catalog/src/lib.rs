//! shoal's catalog: the data model (nodes, service instances, health checks,
//! KV entries), the typed write [`Command`]s, the in-memory materialized
//! [`State`], the [`Store`]s that make commits durable, and the
//! [`Registry`] that ties them together with blocking-query watches.
//!
//! Every other crate meets the catalog through the [`Catalog`] trait, which
//! is implemented here by [`Registry`] (in-process) and by the API crate's
//! `RemoteCatalog` (over the Consul HTTP API). This crate does no network I/O.
#![forbid(unsafe_code)]

pub mod acl;
mod apply;
pub mod blocking;
mod catalog;
pub mod changelog;
pub mod clock;
mod command;
pub mod duration;
mod error;
mod heartbeat;
pub mod metrics;
mod model;
pub mod query;
mod records;
mod records_follow;
mod registry;
pub mod session;
mod session_timers;
pub mod snapshot;
mod state;
pub mod store;
mod store_health;
mod stream;
pub mod txn;
mod watch;

pub use apply::MAX_KV_KEY_LEN;
pub use catalog::{Catalog, Indexed, InstanceFilter, NodeContents, QueryOptions, Subscription};
pub use changelog::{Change, ChangeLog};
pub use command::{Command, Outcome, Registration};
pub use error::{Error, Result};
pub use heartbeat::Heartbeats;
pub use model::{
    Check, CheckDefinition, HealthStatus, KvEntry, Node, Service, ServiceAddress, ServiceEntry,
    Weights, NODE_HEALTH_CHECK,
};
pub use records::{Mutation, KEY_REPLACES_ALL};
pub use registry::{
    blocking_wait, topic_index, Forwarded, Forwarder, Registry, StoreFailure, DEFAULT_WAIT,
    MAX_WAIT,
};
pub use session::{Behavior, LockRequest, Session};
pub use session_timers::{expire_sessions, RenewalForward, SessionTimers};
pub use state::{CheckChange, State};
pub use store::{
    FollowEvent, FollowSink, Followed, Guarded, MemoryStore, RedbStore, SharedStore, Store,
};
pub use stream::{
    apply_instances, events_since, snapshot as stream_snapshot, InstanceKey, StreamEvent,
    StreamRequest, StreamView,
};
pub use watch::Topic;
