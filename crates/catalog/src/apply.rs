//! Applying commands to a state. Each command validates everything first
//! and only then mutates, so a rejected command leaves no trace; every
//! mutation is mirrored as a record [`Mutation`] for the store and as a
//! touched [`Topic`] for the watchers.

use crate::changelog::Change;
use crate::command::{Command, Outcome, Registration};
use crate::error::{Error, Result};
use crate::model::{Check, HealthStatus, KvEntry, Node, Service};
use crate::records::*;
use crate::state::State;
use crate::watch::{Changes, Topic};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A change to a node logs each of a service's instances on it up to
/// this many; past it, the service once, whole (see `touch_node_wide`).
const NODE_WIDE_INSTANCES: usize = 16;

/// A batch of commands being applied to a state.
pub(crate) struct Txn<'a> {
    pub(crate) st: &'a mut State,
    pub(crate) mutations: BTreeMap<String, Option<Vec<u8>>>,
    pub changes: Changes,
    /// The index the command being applied commits at.
    pub(crate) idx: u64,
    /// Whether the command being applied changed anything.
    pub(crate) dirty: bool,
}

impl<'a> Txn<'a> {
    pub fn new(st: &'a mut State) -> Self {
        Txn {
            st,
            mutations: BTreeMap::new(),
            changes: Changes::default(),
            idx: 0,
            dirty: false,
        }
    }

    /// The record writes of the whole batch, in key order.
    pub fn into_mutations(self) -> (Vec<Mutation>, Changes) {
        let muts = self
            .mutations
            .into_iter()
            .map(|(key, value)| Mutation { key, value })
            .collect();
        (muts, self.changes)
    }

    /// Applies one command; on error nothing of it was applied.
    pub fn apply(&mut self, cmd: Command) -> Result<Outcome> {
        self.idx = self.st.index + 1;
        self.dirty = false;
        let mut report = None;
        let applied = match cmd {
            Command::Register(reg) => self.register(*reg).map(|_| true),
            Command::DeregisterNode { node } => self.deregister_node(&node).map(|_| true),
            Command::ReapNode { node, check_index } => self.reap_node(&node, check_index),
            Command::DeregisterService { node, service_id } => {
                self.deregister_service(&node, &service_id).map(|_| true)
            }
            Command::DeregisterCheck { node, check_id } => {
                self.deregister_check(&node, &check_id).map(|_| true)
            }
            Command::UpdateCheck {
                node,
                check_id,
                status,
                output,
            } => self
                .update_check(&node, &check_id, status, output)
                .map(|_| true),
            Command::KvPut {
                key,
                value,
                flags,
                cas,
            } => self.kv_put(key, value, flags, cas),
            Command::KvDelete { key, recurse, cas } => self.kv_delete(&key, recurse, cas),
            Command::SessionCreate(s) => self.session_create(*s).map(|_| true),
            Command::SessionDestroy { id } => self.session_destroy(&id),
            Command::KvLock(req) => self.kv_lock(*req),
            Command::Txn(ops) => {
                let r = self.apply_txn(ops);
                let ok = r.errors.is_empty();
                report = Some(std::sync::Arc::new(r));
                Ok(ok)
            }
            Command::QueryPut(q) => self.query_put(*q).map(|_| true),
            Command::QueryDelete { id } => self.query_delete(&id).map(|_| true),
            Command::AclTokenSet(t) => self.acl_token_set(*t).map(|_| true),
            Command::AclTokenDelete { accessor_id } => {
                self.acl_token_delete(&accessor_id).map(|_| true)
            }
            Command::AclPolicySet(p) => self.acl_policy_set(*p).map(|_| true),
            Command::AclPolicyDelete { id } => self.acl_policy_delete(&id).map(|_| true),
            Command::AclBootstrap(t) => self.acl_bootstrap(*t).map(|_| true),
            Command::Restore(snapshot) => self.restore(&snapshot).map(|_| true),
        }?;
        if self.dirty {
            self.st.index = self.idx;
            self.put(KEY_INDEX.to_string(), self.idx);
            let tables = self.st.tables;
            self.put(KEY_TABLES.to_string(), tables);
        }
        Ok(Outcome {
            index: self.st.index(),
            applied,
            txn: report,
        })
    }

    pub(crate) fn put<T: serde::Serialize>(&mut self, key: String, value: T) {
        self.mutations.insert(key, Some(encode(&value)));
    }

    pub(crate) fn delete(&mut self, key: String) {
        self.mutations.insert(key, None);
    }

    /// Instance `id` on `node` of service `name` changed (or left it).
    fn touch_instance(&mut self, name: &str, node: &str, id: &str) {
        let change = Change::Instance(name.to_string(), node.to_string(), id.to_string());
        self.touch_service(name, change);
    }

    /// Service `name` changed as a whole, or `change` says which instance.
    fn touch_service(&mut self, name: &str, change: Change) {
        self.dirty = true;
        self.st.service_index.insert(name.to_string(), self.idx);
        self.put(key_service_index(name), self.idx);
        self.changes.topics.insert(Topic::Service(name.to_string()));
        self.st.log.push(self.idx, change);
    }

    fn touch_node(&mut self, node: &str) {
        self.dirty = true;
        self.st.node_index.insert(node.to_string(), self.idx);
        self.put(key_node_index(node), self.idx);
        self.changes.topics.insert(Topic::Node(node.to_string()));
        self.st.log.push(self.idx, Change::Node(node.to_string()));
    }

    /// A change to the node or a node-level check: every service on the
    /// node sees it.
    fn touch_node_wide(&mut self, node: &str) {
        self.touch_node(node);
        let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in self.st.node_services(node) {
            by_name
                .entry(s.name.clone())
                .or_default()
                .push(s.id.clone());
        }
        for (name, ids) in by_name {
            // A service with many instances here is logged once, whole:
            // the log stays short, and a consumer reads it whole anyway.
            if ids.len() > NODE_WIDE_INSTANCES {
                self.touch_service(&name, Change::Service(name.clone()));
                continue;
            }
            for id in ids {
                self.touch_instance(&name, node, &id);
            }
        }
    }

    pub(crate) fn register(&mut self, reg: Registration) -> Result<()> {
        validate_registration(self.st, &reg)?;
        let node_name = reg.node.name.clone();
        self.upsert_node(reg.node, reg.skip_node_update);
        let service = reg.service.map(|s| self.upsert_service(&node_name, s));
        for mut check in reg.checks {
            check.node = node_name.clone();
            if check.check_id.is_empty() {
                check.check_id = check.name.clone();
            }
            self.upsert_check(check, service.as_deref());
        }
        Ok(())
    }

    fn upsert_node(&mut self, mut node: Node, skip_update: bool) {
        let existing = self.st.nodes.get(&node.name).cloned();
        if let Some(old) = &existing {
            if skip_update {
                return;
            }
            node.create_index = old.create_index;
            node.modify_index = old.modify_index;
            if **old == node {
                return;
            }
        } else {
            node.create_index = self.idx;
        }
        node.modify_index = self.idx;
        let name = node.name.clone();
        self.put(key_node(&name), &node);
        self.st.nodes.insert(name.clone(), Arc::new(node));
        self.st.tables.nodes = self.idx;
        self.changes.topics.insert(Topic::Nodes);
        self.touch_node_wide(&name);
    }

    /// Creates or replaces an instance; returns the stored instance.
    fn upsert_service(&mut self, node: &str, mut svc: Service) -> Arc<Service> {
        if svc.id.is_empty() {
            svc.id = svc.name.clone();
        }
        let key = (node.to_string(), svc.id.clone());
        let existing = self.st.services.get(&key).cloned();
        if let Some(old) = &existing {
            svc.create_index = old.create_index;
            svc.modify_index = old.modify_index;
            if **old == svc {
                return old.clone();
            }
            if old.name != svc.name {
                self.unlink_service_name(&old.name, &key);
            }
        } else {
            svc.create_index = self.idx;
        }
        svc.modify_index = self.idx;
        self.put(key_service(node, &svc.id), &svc);
        let svc = Arc::new(svc);
        self.st.services.insert(key.clone(), svc.clone());
        self.st
            .by_name
            .entry(svc.name.clone())
            .or_default()
            .insert(key);
        self.st.tables.services = self.idx;
        self.changes.topics.insert(Topic::Services);
        self.touch_instance(&svc.name, node, &svc.id);
        self.touch_node(node);
        // Instance checks carry the instance's name and tags.
        let stale: Vec<Check> = self
            .st
            .checks_of(node, &svc.id)
            .filter(|c| c.service_name != svc.name || c.service_tags != svc.tags)
            .map(|c| (*c).clone())
            .collect();
        for mut check in stale {
            check.service_name = svc.name.clone();
            check.service_tags = svc.tags.clone();
            self.store_check(check);
        }
        svc
    }

    fn unlink_service_name(&mut self, name: &str, key: &(String, String)) {
        if let Some(set) = self.st.by_name.get_mut(name) {
            set.remove(key);
            if set.is_empty() {
                self.st.by_name.remove(name);
            }
        }
        self.changes.topics.insert(Topic::Services);
        self.touch_instance(name, &key.0, &key.1);
    }

    fn upsert_check(&mut self, mut check: Check, registered: Option<&Service>) {
        if !check.service_id.is_empty() {
            let svc = match registered {
                Some(s) if s.id == check.service_id => Some(Arc::new(s.clone())),
                _ => self.st.service(&check.node, &check.service_id),
            };
            if let Some(svc) = svc {
                check.service_name = svc.name.clone();
                check.service_tags = svc.tags.clone();
            }
        } else {
            check.service_name.clear();
            check.service_tags.clear();
        }
        check.kind = check.definition.kind().to_string();
        let existing = self.st.check(&check.node, &check.check_id);
        if let Some(old) = &existing {
            check.create_index = old.create_index;
            check.modify_index = old.modify_index;
            if **old == check {
                return;
            }
        } else {
            check.create_index = self.idx;
        }
        self.store_check(check);
    }

    /// Writes a check with the current index and touches its readers.
    fn store_check(&mut self, mut check: Check) {
        check.modify_index = self.idx;
        self.put(key_check(&check.node, &check.check_id), &check);
        self.st.tables.checks = self.idx;
        self.changes.topics.insert(Topic::Checks);
        let node = check.node.clone();
        let service = check.service_name.clone();
        let service_id = check.service_id.clone();
        let node_level = check.service_id.is_empty();
        let critical = check.status == HealthStatus::Critical;
        let check_id = check.check_id.clone();
        let key = (node.clone(), check_id.clone());
        let moved_from = self
            .st
            .checks
            .get(&key)
            .map(|old| old.service_id.clone())
            .filter(|old| *old != check.service_id);
        if let Some(old_service) = moved_from {
            self.unindex_check(&node, &old_service, &check_id);
            // The instance it leaves loses it.
            let left = self.st.services.get(&(node.clone(), old_service.clone()));
            if let Some(name) = left.map(|s| s.name.clone()) {
                self.touch_instance(&name, &node, &old_service);
            }
        }
        self.st
            .instance_checks
            .link((node.clone(), check.service_id.clone()), &check_id);
        self.st.checks.insert(key, Arc::new(check));
        if critical {
            self.invalidate_for_check(&node, &check_id);
        }
        if node_level {
            self.touch_node_wide(&node);
        } else {
            self.touch_node(&node);
            self.touch_instance(&service, &node, &service_id);
        }
    }

    fn remove_check(&mut self, node: &str, check_id: &str) {
        if let Some(old) = self
            .st
            .checks
            .remove(&(node.to_string(), check_id.to_string()))
        {
            self.delete(key_check(node, check_id));
            self.unindex_check(node, &old.service_id, check_id);
            self.invalidate_for_check(node, check_id);
            self.st.tables.checks = self.idx;
            self.changes.topics.insert(Topic::Checks);
            if old.service_id.is_empty() {
                self.touch_node_wide(node);
            } else {
                self.touch_node(node);
                self.touch_instance(&old.service_name, node, &old.service_id);
            }
        }
    }

    /// Drops a check from the per-instance index.
    fn unindex_check(&mut self, node: &str, service_id: &str, check_id: &str) {
        self.st
            .instance_checks
            .unlink((node.to_string(), service_id.to_string()), check_id);
    }

    pub(crate) fn deregister_service(&mut self, node: &str, id: &str) -> Result<()> {
        let key = (node.to_string(), id.to_string());
        let Some(old) = self.st.services.remove(&key) else {
            return Ok(());
        };
        self.delete(key_service(node, id));
        let check_ids: Vec<String> = self
            .st
            .checks_of(node, id)
            .map(|c| c.check_id.clone())
            .collect();
        for check_id in check_ids {
            self.remove_check(node, &check_id);
        }
        self.st.tables.services = self.idx;
        self.unlink_service_name(&old.name, &key);
        self.touch_node(node);
        Ok(())
    }

    /// See [`Command::ReapNode`]; whether the node was removed.
    fn reap_node(&mut self, node: &str, check_index: u64) -> Result<bool> {
        let judged = self
            .st
            .check(node, crate::NODE_HEALTH_CHECK)
            .is_some_and(|c| c.modify_index == check_index);
        if !judged {
            return Ok(false);
        }
        self.deregister_node(node)?;
        Ok(true)
    }

    pub(crate) fn deregister_node(&mut self, node: &str) -> Result<()> {
        if !self.st.nodes.contains_key(node) {
            return Ok(());
        }
        self.invalidate_for_node(node);
        for svc in self.st.node_services(node) {
            self.deregister_service(node, &svc.id)?;
        }
        let check_ids: Vec<String> = self
            .st
            .checks_on_node(node)
            .map(|c| c.check_id.clone())
            .collect();
        for check_id in check_ids {
            self.remove_check(node, &check_id);
        }
        self.st.nodes.remove(node);
        self.delete(key_node(node));
        self.st.tables.nodes = self.idx;
        self.changes.topics.insert(Topic::Nodes);
        self.touch_node(node);
        Ok(())
    }

    pub(crate) fn deregister_check(&mut self, node: &str, check_id: &str) -> Result<()> {
        self.remove_check(node, check_id);
        Ok(())
    }

    fn update_check(
        &mut self,
        node: &str,
        check_id: &str,
        status: HealthStatus,
        output: Option<String>,
    ) -> Result<()> {
        let Some(old) = self.st.check(node, check_id) else {
            return Err(Error::not_found(format!(
                "Unknown check ID \"{check_id}\". Ensure that the check ID is passed, not the check name."
            )));
        };
        let mut check = (*old).clone();
        check.status = status;
        if let Some(out) = output {
            check.output = out;
        }
        if check == *old {
            return Ok(());
        }
        self.store_check(check);
        Ok(())
    }

    pub(crate) fn touch_kv(&mut self, key: &str) {
        self.dirty = true;
        self.st.tables.kv = self.idx;
        self.changes.kv_keys.push(key.to_string());
        self.st.log.push(self.idx, Change::Kv(key.to_string()));
    }

    pub(crate) fn kv_put(
        &mut self,
        key: String,
        value: Bytes,
        flags: u64,
        cas: Option<u64>,
    ) -> Result<bool> {
        validate_kv_key(&key)?;
        let existing = self.st.kv.get(&key).cloned();
        match (cas, &existing) {
            (Some(0), Some(_)) => return Ok(false),
            (Some(i), Some(e)) if i != 0 && e.modify_index != i => return Ok(false),
            (Some(i), None) if i != 0 => return Ok(false),
            _ => {}
        }
        // A plain set keeps the key's lock, as Consul's does.
        let entry = KvEntry {
            lock_index: existing.as_ref().map_or(0, |e| e.lock_index),
            key,
            flags,
            value,
            session: existing
                .as_ref()
                .map_or_else(String::new, |e| e.session.clone()),
            create_index: existing.as_ref().map_or(self.idx, |e| e.create_index),
            modify_index: self.idx,
        };
        self.store_kv(entry);
        Ok(true)
    }

    pub(crate) fn kv_delete(&mut self, key: &str, recurse: bool, cas: Option<u64>) -> Result<bool> {
        if recurse {
            let keys: Vec<String> = self
                .st
                .kv
                .range(key.to_string()..)
                .take_while(|(k, _)| k.starts_with(key))
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                self.kv_remove(&k);
            }
            return Ok(true);
        }
        validate_kv_key(key)?;
        match (cas, self.st.kv.get(key)) {
            (Some(i), Some(e)) if e.modify_index != i => return Ok(false),
            (_, None) => return Ok(true),
            _ => {}
        }
        self.kv_remove(key);
        Ok(true)
    }

    pub(crate) fn kv_remove(&mut self, key: &str) {
        if let Some(old) = self.st.kv.remove(key) {
            if !old.session.is_empty() {
                self.unlink_lock(&old.session, key);
            }
            self.delete(key_kv(key));
            self.st.kv_tombstones.insert(key.to_string(), self.idx);
            self.put(key_tombstone(key), self.idx);
            self.touch_kv(key);
        }
    }
}

fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

/// Checks a registration against the current state without changing it.
fn validate_registration(st: &State, reg: &Registration) -> Result<()> {
    if reg.node.name.is_empty() {
        return Err(Error::invalid("Must provide node"));
    }
    if has_nul(&reg.node.name) {
        return Err(Error::invalid("Invalid node name: contains a NUL byte"));
    }
    if let Some(svc) = &reg.service {
        if svc.name.is_empty() {
            return Err(Error::invalid("Must provide service name"));
        }
        if has_nul(&svc.name) || has_nul(&svc.id) {
            return Err(Error::invalid(
                "Invalid service name or ID: contains a NUL byte",
            ));
        }
    }
    for check in &reg.checks {
        let id = if check.check_id.is_empty() {
            &check.name
        } else {
            &check.check_id
        };
        if id.is_empty() {
            return Err(Error::invalid("Missing check name"));
        }
        if has_nul(id) {
            return Err(Error::invalid("Invalid check ID: contains a NUL byte"));
        }
        if check.service_id.is_empty() {
            continue;
        }
        let in_reg = reg.service.as_ref().is_some_and(|s| {
            let sid = if s.id.is_empty() { &s.name } else { &s.id };
            *sid == check.service_id
        });
        if !in_reg && st.service(&reg.node.name, &check.service_id).is_none() {
            return Err(Error::invalid(format!(
                "Unknown service ID \"{}\" for check ID \"{}\"",
                check.service_id, id
            )));
        }
    }
    Ok(())
}

/// The keys the KV store accepts.
pub(crate) fn validate_kv_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("Missing key name"));
    }
    if key.len() > MAX_KV_KEY_LEN {
        return Err(Error::invalid(format!(
            "Key too long: {} bytes, at most {MAX_KV_KEY_LEN}",
            key.len()
        )));
    }
    if key.chars().any(|c| c.is_control()) {
        return Err(Error::invalid("Invalid key: contains a control character"));
    }
    Ok(())
}

/// Longest KV key accepted, in bytes.
pub const MAX_KV_KEY_LEN: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CheckDefinition, Service};

    fn node(name: &str) -> Node {
        Node {
            name: name.into(),
            address: "10.0.0.1".into(),
            ..Default::default()
        }
    }

    fn svc(id: &str, name: &str, tags: &[&str]) -> Service {
        Service {
            id: id.into(),
            name: name.into(),
            port: 80,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }
    }

    fn check(id: &str, service_id: &str, status: HealthStatus) -> Check {
        Check {
            check_id: id.into(),
            name: id.into(),
            service_id: service_id.into(),
            status,
            ..Default::default()
        }
    }

    fn register(
        st: &mut State,
        node_name: &str,
        s: Option<Service>,
        checks: Vec<Check>,
    ) -> Result<Outcome> {
        let mut txn = Txn::new(st);
        txn.apply(Command::Register(Box::new(Registration {
            node: node(node_name),
            service: s,
            checks,
            ..Default::default()
        })))
    }

    fn apply(st: &mut State, cmd: Command) -> Result<Outcome> {
        Txn::new(st).apply(cmd)
    }

    #[test]
    fn register_assigns_indexes_and_is_idempotent() {
        let mut st = State::default();
        let o1 = register(&mut st, "n1", Some(svc("web-1", "web", &["a"])), vec![]).unwrap();
        assert_eq!(o1.index, 1);
        let o2 = register(&mut st, "n1", Some(svc("web-1", "web", &["a"])), vec![]).unwrap();
        assert_eq!(
            o2.index, 1,
            "an identical registration must not bump the index"
        );
        let s = st.service("n1", "web-1").unwrap();
        assert_eq!((s.create_index, s.modify_index), (1, 1));
        let o3 = register(&mut st, "n1", Some(svc("web-1", "web", &["b"])), vec![]).unwrap();
        assert_eq!(o3.index, 2);
        let s = st.service("n1", "web-1").unwrap();
        assert_eq!((s.create_index, s.modify_index), (1, 2));
    }

    #[test]
    fn per_service_index_moves_only_for_that_service() {
        let mut st = State::default();
        register(&mut st, "n1", Some(svc("web-1", "web", &[])), vec![]).unwrap();
        let web = st.service_index("web");
        register(&mut st, "n2", Some(svc("db-1", "db", &[])), vec![]).unwrap();
        assert_eq!(st.service_index("web"), web);
        assert!(st.service_index("db") > web);
    }

    #[test]
    fn rejected_registration_leaves_no_trace() {
        let mut st = State::default();
        let cases: Vec<(Registration, &str)> = vec![
            (
                Registration {
                    node: Node::default(),
                    ..Default::default()
                },
                "Must provide node",
            ),
            (
                Registration {
                    node: node("n1"),
                    service: Some(svc("x", "", &[])),
                    ..Default::default()
                },
                "Must provide service name",
            ),
            (
                Registration {
                    node: node("n1"),
                    service: Some(svc("web-1", "web", &[])),
                    checks: vec![check("c1", "nope", HealthStatus::Passing)],
                    ..Default::default()
                },
                "Unknown service ID",
            ),
        ];
        for (reg, want) in cases {
            let err = apply(&mut st, Command::Register(Box::new(reg))).unwrap_err();
            assert!(
                err.to_string().contains(want),
                "{err} should contain {want}"
            );
        }
        assert_eq!(st.index, 0);
        assert!(st.nodes.is_empty() && st.services.is_empty() && st.checks.is_empty());
    }

    #[test]
    fn health_combines_node_and_service_checks() {
        let mut st = State::default();
        register(
            &mut st,
            "n1",
            Some(svc("web-1", "web", &[])),
            vec![check("svc", "web-1", HealthStatus::Passing)],
        )
        .unwrap();
        let (_, entries) = st.service_entries("web");
        assert_eq!(entries[0].aggregate_status(), HealthStatus::Passing);
        let before = st.service_index("web");
        register(
            &mut st,
            "n1",
            None,
            vec![check("node-down", "", HealthStatus::Critical)],
        )
        .unwrap();
        let (after, entries) = st.service_entries("web");
        assert!(
            after > before,
            "a node check must move the index of services on that node"
        );
        assert_eq!(entries[0].checks.len(), 2);
        assert_eq!(entries[0].aggregate_status(), HealthStatus::Critical);
    }

    #[test]
    fn check_carries_service_name_and_tags_and_kind() {
        let mut st = State::default();
        let mut c = check("http", "web-1", HealthStatus::Critical);
        c.definition = CheckDefinition {
            http: "http://127.0.0.1/".into(),
            ..Default::default()
        };
        register(&mut st, "n1", Some(svc("web-1", "web", &["v1"])), vec![c]).unwrap();
        let got = st.check("n1", "http").unwrap();
        assert_eq!(got.service_name, "web");
        assert_eq!(got.service_tags, vec!["v1".to_string()]);
        assert_eq!(got.kind, "http");
        register(&mut st, "n1", Some(svc("web-1", "web", &["v2"])), vec![]).unwrap();
        assert_eq!(
            st.check("n1", "http").unwrap().service_tags,
            vec!["v2".to_string()]
        );
    }

    #[test]
    fn a_check_moved_to_another_instance_follows_it() {
        let mut st = State::default();
        register(&mut st, "n1", Some(svc("a", "web", &[])), vec![]).unwrap();
        register(&mut st, "n1", Some(svc("b", "web", &[])), vec![]).unwrap();
        register(
            &mut st,
            "n1",
            None,
            vec![check("c", "a", HealthStatus::Critical)],
        )
        .unwrap();
        register(
            &mut st,
            "n1",
            None,
            vec![check("c", "b", HealthStatus::Critical)],
        )
        .unwrap();
        let ids = |st: &State, id: &str| -> Vec<String> {
            st.checks_of("n1", id).map(|c| c.check_id.clone()).collect()
        };
        assert_eq!(ids(&st, "a"), Vec::<String>::new());
        assert_eq!(ids(&st, "b"), vec!["c".to_string()]);
        let (_, entries) = st.service_entries("web");
        let status: Vec<_> = entries
            .iter()
            .map(|e| (e.service.id.clone(), e.aggregate_status()))
            .collect();
        assert_eq!(
            status,
            vec![
                ("a".into(), HealthStatus::Passing),
                ("b".into(), HealthStatus::Critical)
            ]
        );
        apply(
            &mut st,
            Command::DeregisterCheck {
                node: "n1".into(),
                check_id: "c".into(),
            },
        )
        .unwrap();
        assert!(ids(&st, "b").is_empty() && st.instance_checks.is_empty());
    }

    #[test]
    fn a_node_wide_change_logs_few_instances_each_and_many_once() {
        let mut st = State::default();
        for i in 0..=NODE_WIDE_INSTANCES {
            register(
                &mut st,
                "n1",
                Some(svc(&format!("w{i}"), "web", &[])),
                vec![],
            )
            .unwrap();
        }
        register(&mut st, "n1", Some(svc("d1", "db", &[])), vec![]).unwrap();
        register(&mut st, "n1", Some(svc("d2", "db", &[])), vec![]).unwrap();
        let before = st.index();
        // A node-level check: every instance on the node changes.
        let i = register(
            &mut st,
            "n1",
            None,
            vec![check("serf", "", HealthStatus::Critical)],
        )
        .unwrap()
        .index;
        let logged: Vec<Change> = st
            .log
            .since(before)
            .unwrap()
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
        let web: Vec<&Change> = logged
            .iter()
            .filter(|c| matches!(c, Change::Service(n) | Change::Instance(n, _, _) if n == "web"))
            .collect();
        assert_eq!(web, [&Change::Service("web".into())], "{logged:?}");
        for id in ["d1", "d2"] {
            let one = Change::Instance("db".into(), "n1".into(), id.into());
            assert!(logged.contains(&one), "{logged:?}");
        }
        assert!(logged.contains(&Change::Node("n1".into())));
        assert!(st.log.since(i).unwrap().is_empty());
    }

    #[test]
    fn commits_are_in_the_change_log() {
        let mut st = State::default();
        let i = register(&mut st, "n1", Some(svc("a", "web", &[])), vec![])
            .unwrap()
            .index;
        let changes: Vec<_> = st.log.since(0).unwrap().iter().cloned().collect();
        let instance = Change::Instance("web".into(), "n1".into(), "a".into());
        assert!(changes.contains(&(i, instance)));
        assert!(changes.contains(&(i, Change::Node("n1".into()))));
        assert!(st.log.since(i).unwrap().is_empty());
    }

    #[test]
    fn deregister_removes_instance_checks_and_name() {
        let mut st = State::default();
        register(
            &mut st,
            "n1",
            Some(svc("web-1", "web", &[])),
            vec![check("c", "web-1", HealthStatus::Passing)],
        )
        .unwrap();
        let before = st.service_index("web");
        apply(
            &mut st,
            Command::DeregisterService {
                node: "n1".into(),
                service_id: "web-1".into(),
            },
        )
        .unwrap();
        assert!(st.by_name.get("web").is_none());
        assert!(st.check("n1", "c").is_none());
        assert!(
            st.service_index("web") > before,
            "the index must move forward on removal"
        );
    }

    #[test]
    fn update_check_only_writes_changes() {
        let mut st = State::default();
        register(
            &mut st,
            "n1",
            Some(svc("w", "web", &[])),
            vec![check("c", "w", HealthStatus::Critical)],
        )
        .unwrap();
        let upd = |status| Command::UpdateCheck {
            node: "n1".into(),
            check_id: "c".into(),
            status,
            output: Some("ok".into()),
        };
        let a = apply(&mut st, upd(HealthStatus::Passing)).unwrap();
        let b = apply(&mut st, upd(HealthStatus::Passing)).unwrap();
        assert_eq!(a.index, b.index);
        let missing = apply(
            &mut st,
            Command::UpdateCheck {
                node: "n1".into(),
                check_id: "zz".into(),
                status: HealthStatus::Passing,
                output: None,
            },
        );
        assert!(matches!(missing, Err(Error::NotFound(_))));
    }

    #[test]
    fn kv_cas_table() {
        let mut st = State::default();
        let put = |cas| Command::KvPut {
            key: "k".into(),
            value: Bytes::from_static(b"v"),
            flags: 0,
            cas,
        };
        // (cas, expected applied)
        let steps = [
            (Some(5), false),
            (Some(0), true),
            (Some(0), false),
            (Some(1), true),
            (Some(1), false),
            (None, true),
        ];
        for (i, (cas, want)) in steps.into_iter().enumerate() {
            assert_eq!(
                apply(&mut st, put(cas)).unwrap().applied,
                want,
                "step {i}: cas {cas:?}"
            );
        }
        let idx = st.kv_get("k").1.unwrap().modify_index;
        let del = |cas| Command::KvDelete {
            key: "k".into(),
            recurse: false,
            cas,
        };
        assert!(!apply(&mut st, del(Some(idx + 100))).unwrap().applied);
        assert!(apply(&mut st, del(Some(idx))).unwrap().applied);
        assert!(st.kv_get("k").1.is_none());
        assert!(
            apply(&mut st, del(Some(7))).unwrap().applied,
            "deleting a missing key succeeds"
        );
    }

    #[test]
    fn kv_prefix_index_survives_deletes() {
        let mut st = State::default();
        for key in ["app/a", "app/b", "other/c"] {
            apply(
                &mut st,
                Command::KvPut {
                    key: key.into(),
                    value: Bytes::new(),
                    flags: 0,
                    cas: None,
                },
            )
            .unwrap();
        }
        let (before, list) = st.kv_list("app/");
        assert_eq!(list.len(), 2);
        apply(
            &mut st,
            Command::KvDelete {
                key: "app/".into(),
                recurse: true,
                cas: None,
            },
        )
        .unwrap();
        let (after, list) = st.kv_list("app/");
        assert!(list.is_empty());
        assert!(after > before);
        assert_eq!(st.kv_list("other/").1.len(), 1);
    }

    #[test]
    fn kv_rejects_bad_keys() {
        let mut st = State::default();
        for key in ["", "a\u{1}b", &"x".repeat(MAX_KV_KEY_LEN + 1)] {
            let r = apply(
                &mut st,
                Command::KvPut {
                    key: key.to_string(),
                    value: Bytes::new(),
                    flags: 0,
                    cas: None,
                },
            );
            assert!(matches!(r, Err(Error::Invalid(_))), "{key:?}");
        }
        assert_eq!(st.index, 0);
    }

    #[test]
    fn records_rebuild_the_same_state() {
        let mut st = State::default();
        let mut txn = Txn::new(&mut st);
        txn.apply(Command::Register(Box::new(Registration {
            node: node("n1"),
            service: Some(svc("web-1", "web", &["a"])),
            checks: vec![check("c", "web-1", HealthStatus::Warning)],
            ..Default::default()
        })))
        .unwrap();
        txn.apply(Command::KvPut {
            key: "k".into(),
            value: Bytes::from_static(b"\x00\xff"),
            flags: 42,
            cas: None,
        })
        .unwrap();
        txn.apply(Command::KvPut {
            key: "gone".into(),
            value: Bytes::new(),
            flags: 0,
            cas: None,
        })
        .unwrap();
        txn.apply(Command::KvDelete {
            key: "gone".into(),
            recurse: false,
            cas: None,
        })
        .unwrap();
        let (muts, _) = txn.into_mutations();
        let records: Vec<(&str, &[u8])> = muts
            .iter()
            .filter_map(|m| m.value.as_deref().map(|v| (m.key.as_str(), v)))
            .collect();
        let back = State::from_records(records).unwrap();
        assert_eq!(back.index, st.index);
        assert_eq!(back.tables, st.tables);
        assert_eq!(back.service_entries("web").1.len(), 1);
        assert_eq!(back.kv_get("k").1.unwrap().value.as_ref(), b"\x00\xff");
        assert_eq!(back.kv_get("gone").0, st.kv_get("gone").0);
        assert_eq!(back.check("n1", "c").unwrap().status, HealthStatus::Warning);
    }
}
