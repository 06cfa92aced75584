//! Transactions (`/v1/txn`): a list of KV, node, service and check
//! operations applied all-or-nothing at one index, as Consul's state store
//! runs them. Every operation runs (so every failure is reported, each with
//! its position); if any failed, the whole transaction is rolled back.

use crate::apply::Txn;
use crate::command::Registration;
use crate::error::Error;
use crate::model::{Check, KvEntry, Node, Service};
use crate::session::LockRequest;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Most operations in one transaction, as current Consul.
pub const MAX_TXN_OPS: usize = 128;

/// A KV verb of `/v1/txn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvVerb {
    /// set
    Set,
    /// cas
    Cas,
    /// lock
    Lock,
    /// unlock
    Unlock,
    /// get
    Get,
    /// get-tree
    GetTree,
    /// check-index
    CheckIndex,
    /// check-session
    CheckSession,
    /// check-not-exists
    CheckNotExists,
    /// delete
    Delete,
    /// delete-tree
    DeleteTree,
    /// delete-cas
    DeleteCas,
}

impl KvVerb {
    /// Parses Consul's verb name.
    pub fn parse(s: &str) -> Option<KvVerb> {
        Some(match s {
            "set" => KvVerb::Set,
            "cas" => KvVerb::Cas,
            "lock" => KvVerb::Lock,
            "unlock" => KvVerb::Unlock,
            "get" => KvVerb::Get,
            "get-tree" => KvVerb::GetTree,
            "check-index" => KvVerb::CheckIndex,
            "check-session" => KvVerb::CheckSession,
            "check-not-exists" => KvVerb::CheckNotExists,
            "delete" => KvVerb::Delete,
            "delete-tree" => KvVerb::DeleteTree,
            "delete-cas" => KvVerb::DeleteCas,
            _ => return None,
        })
    }
}

/// A node, service or check verb of `/v1/txn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogVerb {
    /// set
    Set,
    /// cas
    Cas,
    /// get
    Get,
    /// delete
    Delete,
    /// delete-cas
    DeleteCas,
}

impl CatalogVerb {
    /// Parses Consul's verb name.
    pub fn parse(s: &str) -> Option<CatalogVerb> {
        Some(match s {
            "set" => CatalogVerb::Set,
            "cas" => CatalogVerb::Cas,
            "get" => CatalogVerb::Get,
            "delete" => CatalogVerb::Delete,
            "delete-cas" => CatalogVerb::DeleteCas,
            _ => return None,
        })
    }
}

/// One operation of a transaction.
// At most 128 of these live for one request: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum TxnOp {
    /// A KV operation.
    Kv {
        /// Verb.
        verb: KvVerb,
        /// Key (or prefix for the tree verbs).
        key: String,
        /// Value for set, cas, lock, unlock.
        #[serde(with = "crate::model::base64_value")]
        value: Bytes,
        /// Flags for the writing verbs.
        flags: u64,
        /// ModifyIndex for cas, check-index and delete-cas.
        index: u64,
        /// Session for lock, unlock and check-session.
        session: String,
    },
    /// A node operation (`Node.ModifyIndex` is the CAS index).
    Node {
        /// Verb.
        verb: CatalogVerb,
        /// The node.
        node: Node,
    },
    /// A service-instance operation on a node.
    Service {
        /// Verb.
        verb: CatalogVerb,
        /// Node name.
        node: String,
        /// The instance (`ModifyIndex` is the CAS index).
        service: Service,
    },
    /// A check operation (`Check.node` names the node).
    Check {
        /// Verb.
        verb: CatalogVerb,
        /// The check (`ModifyIndex` is the CAS index).
        check: Check,
    },
}

/// One result of a transaction.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnResult {
    /// A KV entry (its value only for `get` and `get-tree`).
    Kv(KvEntry),
    /// A node.
    Node(Node),
    /// A service instance.
    Service(Service),
    /// A check.
    Check(Check),
}

/// What a transaction did: results if it committed, else the errors.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnReport {
    /// Results in operation order (empty when rolled back).
    pub results: Vec<TxnResult>,
    /// `(OpIndex, What)` of every failed operation.
    pub errors: Vec<(usize, String)>,
}

type OpResult = std::result::Result<Vec<TxnResult>, String>;

fn err_text(e: Error) -> String {
    e.to_string()
}

impl Txn<'_> {
    /// Runs every operation; keeps their effects only if all succeeded.
    pub(crate) fn apply_txn(&mut self, ops: Vec<TxnOp>) -> TxnReport {
        let saved_state = self.st.clone();
        let saved_mutations = self.mutations.clone();
        let saved_dirty = self.dirty;
        let mut report = TxnReport::default();
        for (i, op) in ops.into_iter().enumerate() {
            match self.txn_op(op) {
                Ok(mut r) => report.results.append(&mut r),
                Err(what) => report.errors.push((i, what)),
            }
        }
        if !report.errors.is_empty() {
            *self.st = saved_state;
            self.mutations = saved_mutations;
            self.dirty = saved_dirty;
            report.results.clear();
        }
        report
    }

    fn txn_op(&mut self, op: TxnOp) -> OpResult {
        match op {
            TxnOp::Kv {
                verb,
                key,
                value,
                flags,
                index,
                session,
            } => self.txn_kv(verb, key, value, flags, index, session),
            TxnOp::Node { verb, node } => self.txn_node(verb, node),
            TxnOp::Service {
                verb,
                node,
                service,
            } => self.txn_service(verb, &node, service),
            TxnOp::Check { verb, check } => self.txn_check(verb, check),
        }
    }

    /// The entry at `key` without its value (what write verbs report).
    fn kv_result(&self, key: &str) -> Vec<TxnResult> {
        self.st
            .kv
            .get(key)
            .map(|e| {
                let mut e = (**e).clone();
                e.value = Bytes::new();
                vec![TxnResult::Kv(e)]
            })
            .unwrap_or_default()
    }

    fn txn_kv(
        &mut self,
        verb: KvVerb,
        key: String,
        value: Bytes,
        flags: u64,
        index: u64,
        session: String,
    ) -> OpResult {
        let existing = self.st.kv.get(&key).cloned();
        match verb {
            KvVerb::Set | KvVerb::Cas => {
                let cas = (verb == KvVerb::Cas).then_some(index);
                if !self
                    .kv_put(key.clone(), value, flags, cas)
                    .map_err(err_text)?
                {
                    return Err(format!("failed to set key {key:?}, index is stale"));
                }
                Ok(self.kv_result(&key))
            }
            KvVerb::Lock | KvVerb::Unlock => {
                let acquire = verb == KvVerb::Lock;
                let req = LockRequest {
                    key: key.clone(),
                    value,
                    flags,
                    cas: None,
                    session,
                    acquire,
                };
                if !self.kv_lock(req).map_err(err_text)? {
                    return Err(if acquire {
                        format!("failed to lock key {key:?}, lock is already held")
                    } else {
                        format!("failed to unlock key {key:?}, lock isn't held, or is held by another session")
                    });
                }
                Ok(self.kv_result(&key))
            }
            KvVerb::Get => match existing {
                Some(e) => Ok(vec![TxnResult::Kv((*e).clone())]),
                None => Err(format!("key {key:?} doesn't exist")),
            },
            KvVerb::GetTree => Ok(self
                .st
                .kv_list(&key)
                .1
                .iter()
                .map(|e| TxnResult::Kv((**e).clone()))
                .collect()),
            KvVerb::CheckIndex => match existing {
                None => Err(format!("failed to check index, key {key:?} doesn't exist")),
                Some(e) if e.modify_index != index => Err(format!(
                    "failed index check for key {key:?}, current modify index {} != {index}",
                    e.modify_index
                )),
                Some(_) => Ok(self.kv_result(&key)),
            },
            KvVerb::CheckSession => match existing {
                None => Err(format!(
                    "failed to check session, key {key:?} doesn't exist"
                )),
                Some(e) if e.session != session => Err(format!(
                    "failed session check for key {key:?}, current session {:?} != {session:?}",
                    e.session
                )),
                Some(_) => Ok(self.kv_result(&key)),
            },
            KvVerb::CheckNotExists => match existing {
                Some(_) => Err(format!("key {key:?} exists")),
                None => Ok(vec![]),
            },
            KvVerb::Delete | KvVerb::DeleteTree | KvVerb::DeleteCas => {
                let recurse = verb == KvVerb::DeleteTree;
                let cas = (verb == KvVerb::DeleteCas).then_some(index);
                if !self.kv_delete(&key, recurse, cas).map_err(err_text)? {
                    return Err(format!("failed to delete key {key:?}, index is stale"));
                }
                Ok(vec![])
            }
        }
    }

    fn txn_node(&mut self, verb: CatalogVerb, node: Node) -> OpResult {
        let name = node.name.clone();
        let current = self.st.node(&name);
        let stale = |what: &str| format!("failed to {what} node {name:?}, index is stale");
        match verb {
            CatalogVerb::Get => current
                .map(|n| vec![TxnResult::Node((*n).clone())])
                .ok_or_else(|| format!("node {name:?} doesn't exist")),
            CatalogVerb::Set | CatalogVerb::Cas => {
                if verb == CatalogVerb::Cas
                    && current.as_ref().map_or(0, |n| n.modify_index) != node.modify_index
                {
                    return Err(stale("set"));
                }
                let reg = Registration {
                    node,
                    ..Default::default()
                };
                self.register(reg).map_err(err_text)?;
                Ok(self
                    .st
                    .node(&name)
                    .map(|n| vec![TxnResult::Node((*n).clone())])
                    .unwrap_or_default())
            }
            CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                if verb == CatalogVerb::DeleteCas
                    && current.as_ref().map_or(0, |n| n.modify_index) != node.modify_index
                {
                    return Err(stale("delete"));
                }
                self.deregister_node(&name).map_err(err_text)?;
                Ok(vec![])
            }
        }
    }

    fn txn_service(&mut self, verb: CatalogVerb, node: &str, svc: Service) -> OpResult {
        let id = if svc.id.is_empty() {
            svc.name.clone()
        } else {
            svc.id.clone()
        };
        let current = self.st.service(node, &id);
        let current_index = current.as_ref().map_or(0, |s| s.modify_index);
        let stale = |what: &str| {
            format!("failed to {what} service {id:?} on node {node:?}, index is stale")
        };
        match verb {
            CatalogVerb::Get => current
                .map(|s| vec![TxnResult::Service((*s).clone())])
                .ok_or_else(|| format!("service {id:?} on node {node:?} doesn't exist")),
            CatalogVerb::Set | CatalogVerb::Cas => {
                if verb == CatalogVerb::Cas && current_index != svc.modify_index {
                    return Err(stale("set"));
                }
                let Some(n) = self.st.node(node) else {
                    return Err(format!("node {node:?} doesn't exist"));
                };
                let reg = Registration {
                    node: (*n).clone(),
                    skip_node_update: true,
                    service: Some(svc),
                    checks: vec![],
                };
                self.register(reg).map_err(err_text)?;
                Ok(self
                    .st
                    .service(node, &id)
                    .map(|s| vec![TxnResult::Service((*s).clone())])
                    .unwrap_or_default())
            }
            CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                if verb == CatalogVerb::DeleteCas && current_index != svc.modify_index {
                    return Err(stale("delete"));
                }
                self.deregister_service(node, &id).map_err(err_text)?;
                Ok(vec![])
            }
        }
    }

    fn txn_check(&mut self, verb: CatalogVerb, check: Check) -> OpResult {
        let (node, id) = (check.node.clone(), check.check_id.clone());
        let current = self.st.check(&node, &id);
        let current_index = current.as_ref().map_or(0, |c| c.modify_index);
        let stale =
            |what: &str| format!("failed to {what} check {id:?} on node {node:?}, index is stale");
        match verb {
            CatalogVerb::Get => current
                .map(|c| vec![TxnResult::Check((*c).clone())])
                .ok_or_else(|| format!("check {id:?} on node {node:?} doesn't exist")),
            CatalogVerb::Set | CatalogVerb::Cas => {
                if verb == CatalogVerb::Cas && current_index != check.modify_index {
                    return Err(stale("set"));
                }
                let Some(n) = self.st.node(&node) else {
                    return Err(format!("node {node:?} doesn't exist"));
                };
                let reg = Registration {
                    node: (*n).clone(),
                    skip_node_update: true,
                    service: None,
                    checks: vec![check],
                };
                self.register(reg).map_err(err_text)?;
                Ok(self
                    .st
                    .check(&node, &id)
                    .map(|c| vec![TxnResult::Check((*c).clone())])
                    .unwrap_or_default())
            }
            CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                if verb == CatalogVerb::DeleteCas && current_index != check.modify_index {
                    return Err(stale("delete"));
                }
                self.deregister_check(&node, &id).map_err(err_text)?;
                Ok(vec![])
            }
        }
    }
}
