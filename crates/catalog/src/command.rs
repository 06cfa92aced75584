//! Typed write commands: every change to the catalog is one of these,
//! applied atomically by the registry's writer and committed durably.

use crate::model::{Check, HealthStatus, Node, Service};
use crate::query::PreparedQuery;
use crate::session::{LockRequest, Session};
use crate::txn::{TxnOp, TxnReport};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A node, optionally with one service instance and checks, as
/// `/v1/catalog/register` carries it. Agent registrations use it too.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Registration {
    /// The node; created or updated unless `skip_node_update` is set and
    /// the node already exists.
    pub node: Node,
    /// Leave an existing node's address and metadata as they are.
    pub skip_node_update: bool,
    /// The instance to create or replace, if any.
    pub service: Option<Service>,
    /// Checks to create or replace. A check with an empty `service_id` and
    /// a service in this registration is a node check, as in Consul.
    pub checks: Vec<Check>,
}

/// A write to the catalog. Serializable (JSON) so a server can hand it
/// to the one that leads (see `registry/forward.rs`); a restore is not:
/// it is committed where it is asked for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    /// Replace the whole catalog and KV by a snapshot's (see `snapshot.rs`).
    #[serde(skip)]
    Restore(std::sync::Arc<crate::snapshot::Snapshot>),
    /// Create or update a node, an instance and checks.
    Register(Box<Registration>),
    /// Remove a node with all its instances and checks.
    DeregisterNode {
        /// Node name.
        node: String,
    },
    /// Remove a dead agent's node, as [`Command::DeregisterNode`] does, but
    /// only while its liveness check is the one the reaper judged overdue
    /// (still there, same ModifyIndex). Applied (`Outcome::applied`) only
    /// when it removed the node: of reapers racing on several servers,
    /// exactly one is told it reaped.
    ReapNode {
        /// Node name.
        node: String,
        /// ModifyIndex of the node's liveness check when judged dead.
        check_index: u64,
    },
    /// Remove one instance and its checks.
    DeregisterService {
        /// Node name.
        node: String,
        /// Instance ID.
        service_id: String,
    },
    /// Remove one check.
    DeregisterCheck {
        /// Node name.
        node: String,
        /// Check ID.
        check_id: String,
    },
    /// Set a check's status and output (TTL updates, check runner results).
    UpdateCheck {
        /// Node name.
        node: String,
        /// Check ID.
        check_id: String,
        /// New status.
        status: HealthStatus,
        /// New output; `None` keeps the old one.
        output: Option<String>,
    },
    /// Set a KV entry, optionally check-and-set.
    KvPut {
        /// Key.
        key: String,
        /// Value.
        #[serde(with = "crate::model::base64_value")]
        value: Bytes,
        /// Client flags.
        flags: u64,
        /// `Some(0)`: only create; `Some(n)`: only if ModifyIndex is n.
        cas: Option<u64>,
    },
    /// Delete a key, or a whole prefix with `recurse`.
    KvDelete {
        /// Key or prefix.
        key: String,
        /// Delete every key starting with `key`.
        recurse: bool,
        /// Only delete if ModifyIndex is this (ignored with `recurse`).
        cas: Option<u64>,
    },
    /// Create a session; its ID is chosen before the write.
    SessionCreate(Box<Session>),
    /// Invalidate a session (destroy, TTL expiry).
    SessionDestroy {
        /// Session ID.
        id: String,
    },
    /// `?acquire=` / `?release=` on a key.
    KvLock(Box<LockRequest>),
    /// An all-or-nothing transaction (`/v1/txn`).
    Txn(Vec<TxnOp>),
    /// Create or replace a prepared query.
    QueryPut(Box<PreparedQuery>),
    /// Delete a prepared query.
    QueryDelete {
        /// Query ID.
        id: String,
    },
    /// Create or replace an ACL token.
    AclTokenSet(Box<crate::acl::AclToken>),
    /// Delete an ACL token.
    AclTokenDelete {
        /// AccessorID.
        accessor_id: String,
    },
    /// Create or replace an ACL policy.
    AclPolicySet(Box<crate::acl::AclPolicy>),
    /// Delete an ACL policy.
    AclPolicyDelete {
        /// Policy ID.
        id: String,
    },
    /// The first management token; refused once done.
    AclBootstrap(Box<crate::acl::AclToken>),
}

/// What a command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The index after the command: its own commit index if it changed
    /// something, else the index current when it was applied.
    pub index: u64,
    /// False when a check-and-set did not match (nothing was written).
    pub applied: bool,
    /// What a [`Command::Txn`] read and wrote, or why it was rolled back.
    pub txn: Option<Arc<TxnReport>>,
}
