//! How the state is laid out in a key-value store: one record per node,
//! instance, check, KV entry, tombstone and index. The embedded store and
//! (later) etcd keep exactly these records; loading them rebuilds the state.

use crate::error::{Error, Result};
use crate::model::{Check, KvEntry, Node, Service};
use crate::state::{State, TableIndexes};
use std::sync::Arc;

/// One record write: `None` deletes the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutation {
    /// Record key (see the `key_*` functions).
    pub key: String,
    /// Encoded record, or `None` to delete it.
    pub value: Option<Vec<u8>>,
}

const SEP: char = '\0';

pub(crate) fn key_node(node: &str) -> String {
    format!("n/{node}")
}
pub(crate) fn key_service(node: &str, id: &str) -> String {
    format!("s/{node}{SEP}{id}")
}
pub(crate) fn key_check(node: &str, id: &str) -> String {
    format!("c/{node}{SEP}{id}")
}
pub(crate) fn key_kv(key: &str) -> String {
    format!("k/{key}")
}
pub(crate) fn key_tombstone(key: &str) -> String {
    format!("t/{key}")
}
pub(crate) fn key_service_index(name: &str) -> String {
    format!("is/{name}")
}
pub(crate) fn key_node_index(name: &str) -> String {
    format!("in/{name}")
}
pub(crate) fn key_session(id: &str) -> String {
    format!("x/{id}")
}
pub(crate) fn key_query(id: &str) -> String {
    format!("q/{id}")
}
pub(crate) fn key_acl_token(accessor: &str) -> String {
    format!("at/{accessor}")
}
pub(crate) fn key_acl_policy(id: &str) -> String {
    format!("ap/{id}")
}
pub(crate) const KEY_ACL_BOOTSTRAP: &str = "m/acl-bootstrap";
pub(crate) const KEY_TABLES: &str = "m/tables";
pub(crate) const KEY_INDEX: &str = "m/index";
/// Never a stored record: a batch that deletes it replaces the whole
/// catalog (a snapshot restore). Deleting a record that does not exist
/// changes nothing in any store; a store that commits a large batch in
/// parts (etcd) reads it as "whatever else is stored goes too".
pub const KEY_REPLACES_ALL: &str = "m/replaces-all";

pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs to JSON cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Storage(format!("corrupt record {key:?}: {e}")))
}

fn split_pair(rest: &str, key: &str) -> Result<(String, String)> {
    rest.split_once(SEP)
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .ok_or_else(|| Error::Storage(format!("corrupt record key {key:?}")))
}

impl State {
    /// Rebuilds a state from stored records.
    pub fn from_records<'a>(
        records: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<State> {
        let mut st = State::default();
        for (key, bytes) in records {
            if let Some(name) = key.strip_prefix("n/") {
                st.nodes
                    .insert(name.to_string(), Arc::new(decode::<Node>(key, bytes)?));
            } else if let Some(rest) = key.strip_prefix("s/") {
                let pair = split_pair(rest, key)?;
                let svc: Service = decode(key, bytes)?;
                st.by_name
                    .entry(svc.name.clone())
                    .or_default()
                    .insert(pair.clone());
                st.services.insert(pair, Arc::new(svc));
            } else if let Some(rest) = key.strip_prefix("c/") {
                let pair = split_pair(rest, key)?;
                let check = decode::<Check>(key, bytes)?;
                st.instance_checks
                    .link((pair.0.clone(), check.service_id.clone()), &pair.1);
                st.checks.insert(pair, Arc::new(check));
            } else if let Some(k) = key.strip_prefix("k/") {
                let entry = decode::<KvEntry>(key, bytes)?;
                if !entry.session.is_empty() {
                    st.session_keys
                        .entry(entry.session.clone())
                        .or_default()
                        .insert(k.to_string());
                }
                st.kv.insert(k.to_string(), Arc::new(entry));
            } else if let Some(id) = key.strip_prefix("x/") {
                let session: crate::session::Session = decode(key, bytes)?;
                st.index_session(&session);
                st.sessions.insert(id.to_string(), Arc::new(session));
            } else if let Some(id) = key.strip_prefix("q/") {
                st.queries
                    .insert(id.to_string(), Arc::new(decode(key, bytes)?));
            } else if let Some(id) = key.strip_prefix("at/") {
                let token: crate::acl::AclToken = decode(key, bytes)?;
                if token.accessor_id != id {
                    return Err(Error::Storage(format!(
                        "corrupt record {key:?}: AccessorID differs"
                    )));
                }
                st.index_acl_token(Arc::new(token));
            } else if let Some(id) = key.strip_prefix("ap/") {
                st.acl_policies
                    .insert(id.to_string(), Arc::new(decode(key, bytes)?));
            } else if key == KEY_ACL_BOOTSTRAP {
                st.acl_bootstrap = Some(decode(key, bytes)?);
            } else if let Some(k) = key.strip_prefix("t/") {
                st.kv_tombstones.insert(k.to_string(), decode(key, bytes)?);
            } else if let Some(n) = key.strip_prefix("is/") {
                st.service_index.insert(n.to_string(), decode(key, bytes)?);
            } else if let Some(n) = key.strip_prefix("in/") {
                st.node_index.insert(n.to_string(), decode(key, bytes)?);
            } else if key == KEY_TABLES {
                st.tables = decode::<TableIndexes>(key, bytes)?;
            } else if key == KEY_INDEX {
                st.index = decode(key, bytes)?;
            } else {
                return Err(Error::Storage(format!("unknown record {key:?}")));
            }
        }
        // Nothing before the loaded index is in the change log.
        st.log = crate::changelog::ChangeLog::starting_at(st.index);
        Ok(st)
    }
}
