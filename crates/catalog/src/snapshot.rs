//! Snapshots of the whole catalog and KV (`shoal snapshot save|restore`,
//! `/v1/snapshot`): the state's records, the very ones every store keeps,
//! so a snapshot taken on the embedded store restores onto etcd and back
//! with every Create/ModifyIndex kept.
//!
//! Format (text, one record per line, so it diffs and streams):
//! ```text
//! shoal-snapshot 1
//! {"k":"n/node-1","v":{...record...}}
//! ...
//! ```
//! Restoring replaces the whole state. The catalog index after a restore
//! is past both the snapshot's and the one it replaces, so blocking
//! queries and clients' indexes never see the index go backwards.

use crate::apply::Txn;
use crate::error::{Error, Result};
use crate::records::*;
use crate::state::State;
use crate::watch::Topic;

const MAGIC: &str = "shoal-snapshot 1";
/// Largest snapshot accepted (a bound for untrusted input).
pub const MAX_SNAPSHOT_BYTES: usize = 512 * 1024 * 1024;

/// Snapshot records, ready to restore (checked to load).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    records: Vec<(String, Vec<u8>)>,
}

impl State {
    /// Every record of this state, in key order.
    pub(crate) fn records(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for (name, node) in &self.nodes {
            out.push((key_node(name), encode(&**node)));
        }
        for ((node, id), svc) in &self.services {
            out.push((key_service(node, id), encode(&**svc)));
        }
        for ((node, id), check) in &self.checks {
            out.push((key_check(node, id), encode(&**check)));
        }
        for (k, e) in &self.kv {
            out.push((key_kv(k), encode(&**e)));
        }
        for (k, at) in &self.kv_tombstones {
            out.push((key_tombstone(k), encode(at)));
        }
        for (n, at) in &self.service_index {
            out.push((key_service_index(n), encode(at)));
        }
        for (n, at) in &self.node_index {
            out.push((key_node_index(n), encode(at)));
        }
        for (id, s) in &self.sessions {
            out.push((key_session(id), encode(&**s)));
        }
        for (id, q) in &self.queries {
            out.push((key_query(id), encode(&**q)));
        }
        for (id, t) in &self.acl_tokens {
            out.push((crate::records::key_acl_token(id), encode(&**t)));
        }
        for (id, p) in &self.acl_policies {
            out.push((crate::records::key_acl_policy(id), encode(&**p)));
        }
        if let Some(at) = self.acl_bootstrap {
            out.push((crate::records::KEY_ACL_BOOTSTRAP.to_string(), encode(&at)));
        }
        out.push((KEY_TABLES.to_string(), encode(&self.tables)));
        out.push((KEY_INDEX.to_string(), encode(&self.index)));
        out.sort();
        out
    }
}

impl Snapshot {
    /// The snapshot of `state`.
    pub fn of(state: &State) -> Snapshot {
        Snapshot {
            records: state.records(),
        }
    }

    /// The snapshot file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC.as_bytes());
        out.push(b'\n');
        for (k, v) in &self.records {
            // Records are JSON themselves: embedded as they are.
            let value: serde_json::Value = serde_json::from_slice(v).unwrap_or_default();
            out.extend(encode(&serde_json::json!({"k": k, "v": value})));
            out.push(b'\n');
        }
        out
    }

    /// Reads a snapshot file; says what is wrong with a bad one.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot> {
        let bad = |m: String| Error::Invalid(format!("not a shoal snapshot: {m}"));
        if bytes.len() > MAX_SNAPSHOT_BYTES {
            return Err(bad(format!("larger than {MAX_SNAPSHOT_BYTES} bytes")));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(bad(format!("the first line must be {MAGIC:?}")));
        }
        let mut records = Vec::new();
        for (n, line) in lines.enumerate() {
            if line.is_empty() {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| bad(format!("line {}: {e}", n + 2)))?;
            let (Some(k), Some(value)) = (v["k"].as_str(), v.get("v")) else {
                return Err(bad(format!("line {}: needs \"k\" and \"v\"", n + 2)));
            };
            records.push((k.to_string(), encode(value)));
        }
        // Every record must load: a snapshot that restores is a whole state.
        State::from_records(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(|e| bad(e.to_string()))?;
        Ok(Snapshot { records })
    }

    fn state(&self) -> Result<State> {
        State::from_records(self.records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
    }
}

impl Txn<'_> {
    /// Replaces the whole state by the snapshot's (see the module doc).
    pub(crate) fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        let mut next = snapshot.state()?;
        next.index = next.index.max(self.st.index);
        let old = std::mem::take(self.st);
        for (k, _) in old.records() {
            self.delete(k);
        }
        self.delete(crate::records::KEY_REPLACES_ALL.to_string());
        for (k, v) in next.records() {
            self.mutations.insert(k, Some(v));
        }
        for st in [&old, &next] {
            for name in st.by_name.keys() {
                self.changes.topics.insert(Topic::Service(name.clone()));
            }
            for name in st.nodes.keys() {
                self.changes.topics.insert(Topic::Node(name.clone()));
            }
            self.changes.kv_keys.extend(st.kv.keys().cloned());
            self.changes
                .kv_keys
                .extend(st.kv_tombstones.keys().cloned());
        }
        for t in [
            Topic::Services,
            Topic::Nodes,
            Topic::Checks,
            Topic::Sessions,
            Topic::Queries,
            Topic::Acl,
        ] {
            self.changes.topics.insert(t);
        }
        // Everything changed: the log starts again at this commit, so a
        // stream consumer from before the restore gets a snapshot.
        let mut log = old.log.clone();
        log.reset_at(self.idx.max(next.index));
        next.log = log;
        *self.st = next;
        self.dirty = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Registration};
    use crate::model::{Node, Service};
    use bytes::Bytes;

    fn sample() -> State {
        let mut st = State::default();
        let mut txn = Txn::new(&mut st);
        txn.apply(Command::Register(Box::new(Registration {
            node: Node {
                name: "n1".into(),
                address: "10.0.0.1".into(),
                ..Default::default()
            },
            service: Some(Service {
                id: "w1".into(),
                name: "web".into(),
                port: 80,
                ..Default::default()
            }),
            ..Default::default()
        })))
        .unwrap();
        txn.apply(Command::KvPut {
            key: "a".into(),
            value: Bytes::from_static(b"\x00\xffbinary"),
            flags: 7,
            cas: None,
        })
        .unwrap();
        st
    }

    #[test]
    fn a_snapshot_round_trips_record_for_record() {
        let st = sample();
        let snap = Snapshot::of(&st);
        let bytes = snap.encode();
        let back = Snapshot::decode(&bytes).unwrap();
        assert_eq!(back.state().unwrap().records(), st.records());
        // Saving what was restored gives the same file again.
        assert_eq!(Snapshot::of(&back.state().unwrap()).encode(), bytes);
    }

    #[test]
    fn restore_replaces_everything_and_keeps_the_index_going_up() {
        let snap = Snapshot::of(&sample());
        let mut target = State::default();
        for i in 0..5 {
            let mut txn = Txn::new(&mut target);
            txn.apply(Command::KvPut {
                key: format!("old{i}"),
                value: Bytes::new(),
                flags: 0,
                cas: None,
            })
            .unwrap();
        }
        let before = target.index();
        let mut txn = Txn::new(&mut target);
        txn.apply(Command::Restore(std::sync::Arc::new(snap)))
            .unwrap();
        let (muts, _) = txn.into_mutations();
        assert!(target.index() > before);
        assert!(target.kv_get("old0").1.is_none());
        assert_eq!(target.kv_get("a").1.unwrap().flags, 7);
        assert!(muts.iter().any(|m| m.key == "k/old0" && m.value.is_none()));
        // A consumer of the change log from before the restore cannot
        // follow it change by change: it must take a snapshot.
        assert!(target.change_log().since(before).is_none());
        assert!(target.change_log().since(target.index()).is_some());
    }

    #[test]
    fn bad_snapshots_are_refused_with_the_reason() {
        let cases: [(&[u8], &str); 4] = [
            (b"", "first line"),
            (b"shoal-snapshot 1\nnot json\n", "line 2"),
            (b"shoal-snapshot 1\n{\"k\":\"n/x\"}\n", "needs"),
            (
                b"shoal-snapshot 1\n{\"k\":\"zz/x\",\"v\":1}\n",
                "unknown record",
            ),
        ];
        for (bytes, want) in cases {
            let err = Snapshot::decode(bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should say {want}");
        }
    }
}
