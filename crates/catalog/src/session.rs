//! Sessions and KV locks, as Consul defines them: a session ties a set of
//! locks to the health of a node and some checks (and optionally to a TTL
//! its holder keeps renewing); when the session is invalidated (destroyed,
//! its node deregistered, one of its checks critical or gone, or its TTL
//! run out) every lock it holds is released — or the keys are deleted,
//! with `Behavior: delete` — and each such key refuses new locks for the
//! session's lock-delay.
//!
//! A session is a durable record like any other. Its TTL is not: renewals
//! never touch the store (as in Consul, they only reset a timer on the
//! server that leads), see [`crate::SessionTimers`]. With several servers
//! on one store (etcd) every server passes the renewals it receives on to
//! the others and only the leader acts on a timer, by the same durable
//! [`Command::SessionDestroy`](crate::Command): one invalidation, which
//! every server follows, lock-delays included (`records_follow.rs`).

use crate::apply::{validate_kv_key, Txn};
use crate::error::{Error, Result};
use crate::model::{HealthStatus, KvEntry};
use crate::records::{key_kv, key_session, key_tombstone};
use crate::state::State;
use crate::watch::Topic;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Shortest session TTL accepted (Consul's default `session_ttl_min`).
pub const SESSION_TTL_MIN: Duration = Duration::from_secs(10);
/// Longest session TTL accepted (Consul's `SessionTTLMax`).
pub const SESSION_TTL_MAX: Duration = Duration::from_secs(24 * 3600);
/// A TTL session is invalidated this many TTLs after its last renewal
/// (Consul's `SessionTTLMultiplier`).
pub const SESSION_TTL_MULTIPLIER: u32 = 2;
/// Lock-delay of a session created without one.
pub const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(15);
/// Longest lock-delay applied: a session may ask for more, but an
/// invalidation never holds a key for longer (Consul's `MaxLockDelay`).
pub const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);

/// What happens to a session's locks when it is invalidated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Behavior {
    /// The locks are released; the keys stay.
    #[default]
    Release,
    /// The locked keys are deleted.
    Delete,
}

impl Behavior {
    /// Parses Consul's `Behavior` ("" is `release`).
    pub fn parse(s: &str) -> Result<Behavior> {
        match s {
            "" | "release" => Ok(Behavior::Release),
            "delete" => Ok(Behavior::Delete),
            other => Err(Error::Rejected(format!(
                "Invalid Behavior setting '{other}'"
            ))),
        }
    }
}

/// A service check a session depends on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceCheck {
    /// Check ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Namespace (always empty: shoal has one).
    pub namespace: String,
}

/// One session, serialized as Consul's `/v1/session/info` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Session {
    /// A UUID chosen by the server before the write (so that applying the
    /// write stays deterministic).
    #[serde(rename = "ID")]
    pub id: String,
    /// Free-form name.
    pub name: String,
    /// The node the session lives on.
    pub node: String,
    /// Node checks whose going critical invalidates the session.
    pub node_checks: Vec<String>,
    /// Service checks whose going critical invalidates the session.
    pub service_checks: Vec<ServiceCheck>,
    /// Nanoseconds a released key refuses new locks after an invalidation.
    pub lock_delay: u64,
    /// Release or delete the held keys on invalidation.
    pub behavior: Behavior,
    /// Go duration (`"30s"`), or empty for no TTL.
    #[serde(rename = "TTL")]
    pub ttl: String,
    /// Index of the commit that created the session.
    pub create_index: u64,
    /// Index of the commit that last changed the session.
    pub modify_index: u64,
}

impl Session {
    /// The TTL, if the session has one.
    pub fn ttl(&self) -> Option<Duration> {
        crate::duration::parse(&self.ttl)
            .ok()
            .filter(|d| !d.is_zero())
    }

    /// Whether `check_id` on `node` is one this session depends on.
    pub fn depends_on(&self, node: &str, check_id: &str) -> bool {
        self.node == node
            && (self.node_checks.iter().any(|c| c == check_id)
                || self.service_checks.iter().any(|c| c.id == check_id))
    }
}

/// Checks a session's TTL as Consul's `Session.Apply` does (its errors are
/// answered as 500s there, and so here: see [`Error::Rejected`]).
pub fn validate_ttl(ttl: &str) -> Result<()> {
    if ttl.is_empty() {
        return Ok(());
    }
    let d = crate::duration::parse(ttl)
        .map_err(|e| Error::Rejected(format!("Session TTL '{ttl}' invalid: {e}")))?;
    if !d.is_zero() && (d < SESSION_TTL_MIN || d > SESSION_TTL_MAX) {
        return Err(Error::Rejected(format!(
            "Invalid Session TTL '{}', must be between [{}={}]",
            d.as_nanos(),
            crate::duration::format(SESSION_TTL_MIN),
            crate::duration::format(SESSION_TTL_MAX)
        )));
    }
    Ok(())
}

/// A lock operation on one key (`?acquire=` / `?release=`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LockRequest {
    /// Key.
    pub key: String,
    /// Value to write with the lock.
    #[serde(with = "crate::model::base64_value")]
    pub value: Bytes,
    /// Client flags to write.
    pub flags: u64,
    /// Optional check-and-set index that must also match.
    pub cas: Option<u64>,
    /// The session acquiring or releasing.
    pub session: String,
    /// Acquire (`true`) or release (`false`).
    pub acquire: bool,
}

impl State {
    /// Every session, with the sessions' index.
    pub fn sessions(&self) -> (u64, Vec<Arc<Session>>) {
        (
            self.sessions_index(),
            self.sessions.values().cloned().collect(),
        )
    }

    /// The index of the last change to any session, without copying them
    /// (a renewal or one session's info must not cost every session).
    pub fn sessions_index(&self) -> u64 {
        self.table_indexes().sessions
    }

    /// One session.
    pub fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.get(id).cloned()
    }

    /// The sessions on one node.
    pub fn node_sessions(&self, node: &str) -> (u64, Vec<Arc<Session>>) {
        let index = self.sessions_index();
        let Some(ids) = self.sessions_by_node.get(node) else {
            return (index, Vec::new());
        };
        let found = ids.iter().filter_map(|id| self.sessions.get(id));
        (index, found.cloned().collect())
    }

    /// The IDs of the sessions that depend on `check_id` on `node`.
    fn sessions_of_check(&self, node: &str, check_id: &str) -> Vec<String> {
        let key = (node.to_string(), check_id.to_string());
        self.sessions_by_check
            .get(&key)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The checks `s` depends on, as keys of `sessions_by_check`.
    fn check_keys(s: &Session) -> impl Iterator<Item = (String, String)> + '_ {
        let ids = s
            .node_checks
            .iter()
            .chain(s.service_checks.iter().map(|c| &c.id));
        ids.map(|id| (s.node.clone(), id.clone()))
    }

    /// Adds `s` to the node and check indexes.
    pub(crate) fn index_session(&mut self, s: &Session) {
        let by_node = self.sessions_by_node.entry(s.node.clone()).or_default();
        by_node.insert(s.id.clone());
        for key in Self::check_keys(s) {
            self.sessions_by_check
                .entry(key)
                .or_default()
                .insert(s.id.clone());
        }
    }

    /// Takes `s` out of the node and check indexes.
    pub(crate) fn unindex_session(&mut self, s: &Session) {
        remove_from(&mut self.sessions_by_node, s.node.clone(), &s.id);
        for key in Self::check_keys(s) {
            remove_from(&mut self.sessions_by_check, key, &s.id);
        }
    }
}

/// Removes `id` from the set at `key`, and the set once it is empty.
fn remove_from<K: Ord + Clone>(map: &mut imbl::OrdMap<K, imbl::OrdSet<String>>, key: K, id: &str) {
    if let Some(set) = map.get_mut(&key) {
        set.remove(id);
        if set.is_empty() {
            map.remove(&key);
        }
    }
}

impl Txn<'_> {
    /// Creates a session after checking what it depends on, as Consul's
    /// state store does.
    pub(crate) fn session_create(&mut self, mut s: Session) -> Result<()> {
        if s.id.is_empty() {
            return Err(Error::invalid("Missing session ID"));
        }
        if s.node.is_empty() {
            return Err(Error::Rejected("Must provide Node".into()));
        }
        validate_ttl(&s.ttl)?;
        if self.st.sessions.contains_key(&s.id) {
            return Err(Error::Rejected(format!(
                "Session {:?} already exists",
                s.id
            )));
        }
        if !self.st.nodes.contains_key(&s.node) {
            return Err(Error::Rejected("Missing node registration".into()));
        }
        let ids = s
            .node_checks
            .iter()
            .chain(s.service_checks.iter().map(|c| &c.id));
        for id in ids {
            let Some(check) = self.st.check(&s.node, id) else {
                return Err(Error::Rejected(format!(
                    "Missing check '{id}' registration"
                )));
            };
            if check.status == HealthStatus::Critical {
                return Err(Error::Rejected(format!(
                    "Check '{id}' is in {} state",
                    check.status.as_str()
                )));
            }
        }
        s.create_index = self.idx;
        s.modify_index = self.idx;
        self.put(key_session(&s.id), &s);
        self.st.index_session(&s);
        self.st.sessions.insert(s.id.clone(), Arc::new(s));
        self.touch_sessions();
        Ok(())
    }

    fn touch_sessions(&mut self) {
        self.dirty = true;
        self.st.tables.sessions = self.idx;
        self.changes.topics.insert(Topic::Sessions);
    }

    /// Invalidates a session: releases (or deletes) its keys and starts
    /// their lock-delay. Unknown sessions are not an error (as in Consul);
    /// `Ok(false)` says there was none.
    pub(crate) fn session_destroy(&mut self, id: &str) -> Result<bool> {
        let Some(session) = self.st.sessions.remove(id) else {
            return Ok(false);
        };
        self.st.unindex_session(&session);
        self.delete(key_session(id));
        self.touch_sessions();
        self.delete_queries_of_session(id);
        let held: Vec<String> = self
            .st
            .session_keys
            .remove(id)
            .map(|keys| keys.into_iter().collect())
            .unwrap_or_default();
        let delay = Duration::from_nanos(session.lock_delay).min(MAX_LOCK_DELAY);
        let until = Instant::now() + delay;
        for key in held {
            if !delay.is_zero() {
                self.st.lock_delays.insert(key.clone(), until);
            }
            match session.behavior {
                Behavior::Delete => self.kv_remove(&key),
                Behavior::Release => self.clear_lock(&key),
            }
        }
        Ok(true)
    }

    /// Invalidates every session that depends on `check_id` on `node`
    /// (the check went critical or was removed): only those, found
    /// through the check index.
    pub(crate) fn invalidate_for_check(&mut self, node: &str, check_id: &str) {
        for id in self.st.sessions_of_check(node, check_id) {
            // Destroying a session that exists cannot fail.
            let _ = self.session_destroy(&id);
        }
    }

    /// Invalidates every session on `node` (it was deregistered).
    pub(crate) fn invalidate_for_node(&mut self, node: &str) {
        let ids: Vec<String> = self
            .st
            .sessions_by_node
            .get(node)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            let _ = self.session_destroy(&id);
        }
    }

    /// Takes a key's lock off (the session is gone), keeping its value.
    fn clear_lock(&mut self, key: &str) {
        let Some(old) = self.st.kv.get(key).cloned() else {
            return;
        };
        let mut entry = (*old).clone();
        entry.session.clear();
        entry.modify_index = self.idx;
        self.store_kv(entry);
    }

    /// Writes a KV entry (and keeps the session → keys index in step).
    pub(crate) fn store_kv(&mut self, entry: KvEntry) {
        let key = entry.key.clone();
        if let Some(old) = self.st.kv.get(&key) {
            if !old.session.is_empty() && old.session != entry.session {
                let old_session = old.session.clone();
                self.unlink_lock(&old_session, &key);
            }
        }
        if !entry.session.is_empty() {
            self.st
                .session_keys
                .entry(entry.session.clone())
                .or_default()
                .insert(key.clone());
        }
        self.put(key_kv(&key), &entry);
        self.st.kv.insert(key.clone(), Arc::new(entry));
        if self.st.kv_tombstones.remove(&key).is_some() {
            self.delete(key_tombstone(&key));
        }
        self.touch_kv(&key);
    }

    /// Forgets that `session` holds `key`.
    pub(crate) fn unlink_lock(&mut self, session: &str, key: &str) {
        if let Some(keys) = self.st.session_keys.get_mut(session) {
            keys.remove(key);
            if keys.is_empty() {
                self.st.session_keys.remove(session);
            }
        }
    }

    /// `?acquire` / `?release`: Consul's `KVSLock` and `KVSUnlock`. A
    /// refused lock (held by another session, in its lock-delay, CAS
    /// mismatch) is `Ok(false)`; an unknown session is an error.
    pub(crate) fn kv_lock(&mut self, req: LockRequest) -> Result<bool> {
        validate_kv_key(&req.key)?;
        if req.session.is_empty() {
            return Err(Error::Rejected("missing session".into()));
        }
        let existing = self.st.kv.get(&req.key).cloned();
        if let Some(cas) = req.cas {
            let current = existing.as_ref().map_or(0, |e| e.modify_index);
            if current != cas {
                return Ok(false);
            }
        }
        if req.acquire {
            self.kv_acquire(req, existing)
        } else {
            Ok(self.kv_release(req, existing))
        }
    }

    fn kv_acquire(&mut self, req: LockRequest, existing: Option<Arc<KvEntry>>) -> Result<bool> {
        if !self.st.sessions.contains_key(&req.session) {
            return Err(Error::Rejected(format!(
                "invalid session {:?}",
                req.session
            )));
        }
        if let Some(until) = self.st.lock_delays.get(&req.key) {
            if *until > Instant::now() {
                return Ok(false);
            }
            self.st.lock_delays.remove(&req.key);
        }
        let lock_index = match &existing {
            Some(e) if e.session == req.session => e.lock_index,
            Some(e) if !e.session.is_empty() => return Ok(false),
            Some(e) => e.lock_index + 1,
            None => 1,
        };
        let entry = KvEntry {
            lock_index,
            key: req.key,
            flags: req.flags,
            value: req.value,
            session: req.session,
            create_index: existing.as_ref().map_or(self.idx, |e| e.create_index),
            modify_index: self.idx,
        };
        self.store_kv(entry);
        Ok(true)
    }

    fn kv_release(&mut self, req: LockRequest, existing: Option<Arc<KvEntry>>) -> bool {
        let Some(old) = existing else {
            return false;
        };
        if old.session != req.session {
            return false;
        }
        let mut entry = (*old).clone();
        entry.session.clear();
        entry.value = req.value;
        entry.flags = req.flags;
        entry.modify_index = self.idx;
        self.store_kv(entry);
        true
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
