//! One ordered, resumable stream of catalog changes: what a consumer of the
//! whole catalog (proxy, DNS, a remote agent) follows instead of one
//! blocking query per service. The events a consumer needs after index N
//! are derived from the [`ChangeLog`](crate::ChangeLog) of a state: each
//! changed service, node or KV key once, with its value *now*, then a
//! [`StreamEvent::Synced`] saying "your view equals the catalog at this
//! index". When N is too old for the log (or 0, or from another history),
//! the answer is a [`StreamEvent::Reset`] followed by a full snapshot.
//! The wire form of the same events is described in `docs/api-stream.md`.

use crate::changelog::Change;
use crate::model::{KvEntry, Node, ServiceEntry};
use crate::state::State;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;

/// One event of the stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "Type", rename_all_fields = "PascalCase")]
pub enum StreamEvent {
    /// Forget everything: a full snapshot follows, up to the next `Synced`.
    Reset {
        /// The index the snapshot is taken at.
        index: u64,
    },
    /// The current instances of a service (with nodes and checks, all of
    /// them: filters are the consumer's); empty when it has none left.
    Service {
        /// The service name.
        name: String,
        /// The service's index (what a blocking query on it returns).
        index: u64,
        /// Its instances.
        #[serde(default)]
        entries: Vec<ServiceEntry>,
    },
    /// A node record; `None` once it is gone.
    Node {
        /// The node name.
        name: String,
        /// The node's index.
        index: u64,
        /// The node.
        #[serde(default)]
        node: Option<Arc<Node>>,
    },
    /// A KV entry under the followed prefix; `None` once deleted.
    Kv {
        /// The key.
        key: String,
        /// The key's index.
        index: u64,
        /// The entry.
        #[serde(default)]
        entry: Option<Arc<KvEntry>>,
    },
    /// Everything up to `index` has been sent; resume from here. Also sent
    /// alone as a heartbeat while nothing changes.
    Synced {
        /// The catalog's index.
        index: u64,
    },
}

/// What a consumer follows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamRequest {
    /// The last index seen (from a `Synced`); 0 for a snapshot.
    pub index: u64,
    /// KV keys under this prefix are followed too; `None`: no KV at all.
    pub kv_prefix: Option<String>,
}

/// The events that bring a consumer at `req.index` to `state`, ending with
/// `Synced` (a lone `Synced` when nothing changed).
pub fn events_since(state: &State, req: &StreamRequest) -> Vec<StreamEvent> {
    let now = state.index();
    let changes = (req.index > 0 && req.index <= now)
        .then(|| state.log.since(req.index))
        .flatten();
    let Some(changes) = changes else {
        return snapshot(state, req.kv_prefix.as_deref());
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (_, change) in changes.iter() {
        if !seen.insert(change) {
            continue;
        }
        match change {
            Change::Service(name) => out.push(service_event(state, name)),
            Change::Node(name) => out.push(StreamEvent::Node {
                name: name.clone(),
                index: state.node_index(name),
                node: state.node(name),
            }),
            Change::Kv(key) => {
                if req.kv_prefix.as_deref().is_some_and(|p| key.starts_with(p)) {
                    let (index, entry) = state.kv_get(key);
                    out.push(StreamEvent::Kv {
                        key: key.clone(),
                        index,
                        entry,
                    });
                }
            }
        }
    }
    out.push(StreamEvent::Synced { index: now });
    out
}

fn service_event(state: &State, name: &str) -> StreamEvent {
    let (index, entries) = state.service_entries(name);
    StreamEvent::Service {
        name: name.to_string(),
        index,
        entries,
    }
}

/// `Reset`, every node, service and (under the prefix) KV entry, `Synced`.
pub fn snapshot(state: &State, kv_prefix: Option<&str>) -> Vec<StreamEvent> {
    let now = state.index();
    let mut out = vec![StreamEvent::Reset { index: now }];
    out.extend(state.nodes.values().map(|n| StreamEvent::Node {
        name: n.name.clone(),
        index: state.node_index(&n.name),
        node: Some(n.clone()),
    }));
    out.extend(state.by_name.keys().map(|name| service_event(state, name)));
    if let Some(prefix) = kv_prefix {
        out.extend(
            state
                .kv_list(prefix)
                .1
                .into_iter()
                .map(|e| StreamEvent::Kv {
                    key: e.key.clone(),
                    index: e.modify_index,
                    entry: Some(e),
                }),
        );
    }
    out.push(StreamEvent::Synced { index: now });
    out
}

/// A consumer's copy of the catalog, built by applying stream events:
/// what tests compare with the server's state, and what a simple consumer
/// can hold. `apply` returns `true` at each `Synced` (the view is whole).
#[derive(Clone, Debug, Default)]
pub struct StreamView {
    /// Index of the last `Synced` applied.
    pub index: u64,
    /// Service name → its instances.
    pub services: std::collections::BTreeMap<String, Vec<ServiceEntry>>,
    /// Node name → node.
    pub nodes: std::collections::BTreeMap<String, Arc<Node>>,
    /// Key → entry.
    pub kv: std::collections::BTreeMap<String, Arc<KvEntry>>,
}

impl StreamView {
    /// Applies one event; `true` when it completes a consistent view.
    pub fn apply(&mut self, event: StreamEvent) -> bool {
        match event {
            StreamEvent::Reset { .. } => {
                let index = self.index;
                *self = StreamView::default();
                self.index = index;
            }
            StreamEvent::Service { name, entries, .. } => {
                if entries.is_empty() {
                    self.services.remove(&name);
                } else {
                    self.services.insert(name, entries);
                }
            }
            StreamEvent::Node { name, node, .. } => match node {
                Some(n) => {
                    self.nodes.insert(name, n);
                }
                None => {
                    self.nodes.remove(&name);
                }
            },
            StreamEvent::Kv { key, entry, .. } => match entry {
                Some(e) => {
                    self.kv.insert(key, e);
                }
                None => {
                    self.kv.remove(&key);
                }
            },
            StreamEvent::Synced { index } => {
                self.index = index;
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::Txn;
    use crate::command::{Command, Registration};
    use crate::model::Service;

    fn reg(st: &mut State, node: &str, id: &str, name: &str) -> u64 {
        let mut txn = Txn::new(st);
        txn.apply(Command::Register(Box::new(Registration {
            node: Node {
                name: node.into(),
                address: "10.0.0.1".into(),
                ..Default::default()
            },
            service: Some(Service {
                id: id.into(),
                name: name.into(),
                port: 80,
                ..Default::default()
            }),
            ..Default::default()
        })))
        .unwrap()
        .index
    }

    fn names(events: &[StreamEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                StreamEvent::Reset { .. } => "reset".into(),
                StreamEvent::Service { name, entries, .. } => format!("s:{name}:{}", entries.len()),
                StreamEvent::Node { name, .. } => format!("n:{name}"),
                StreamEvent::Kv { key, .. } => format!("k:{key}"),
                StreamEvent::Synced { index } => format!("synced:{index}"),
            })
            .collect()
    }

    #[test]
    fn changes_since_an_index_name_each_thing_once() {
        let mut st = State::default();
        let first = reg(&mut st, "n1", "w1", "web");
        reg(&mut st, "n1", "w2", "web");
        reg(&mut st, "n1", "d1", "db");
        let req = StreamRequest {
            index: first,
            kv_prefix: None,
        };
        assert_eq!(
            names(&events_since(&st, &req)),
            ["s:web:2", "n:n1", "s:db:1", "synced:3"]
        );
        let now = StreamRequest {
            index: 3,
            kv_prefix: None,
        };
        assert_eq!(names(&events_since(&st, &now)), ["synced:3"]);
    }

    #[test]
    fn zero_an_unknown_future_or_a_forgotten_index_get_a_snapshot() {
        let mut st = State::default();
        reg(&mut st, "n1", "w1", "web");
        for index in [0, 99] {
            let req = StreamRequest {
                index,
                kv_prefix: None,
            };
            assert_eq!(
                names(&events_since(&st, &req)),
                ["reset", "n:n1", "s:web:1", "synced:1"]
            );
        }
        st.log = crate::changelog::ChangeLog::starting_at(1);
        reg(&mut st, "n1", "w2", "web");
        let old = StreamRequest {
            index: 0,
            kv_prefix: None,
        };
        assert_eq!(names(&events_since(&st, &old))[0], "reset");
        // The view built from the events equals the state.
        let mut view = StreamView::default();
        for e in events_since(&st, &old) {
            view.apply(e);
        }
        assert_eq!(view.services["web"].len(), 2);
        assert_eq!(view.index, 2);
    }

    #[test]
    fn wire_form_is_tagged_pascal_case_json() {
        let e = StreamEvent::Synced { index: 7 };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"Type":"Synced","Index":7}"#
        );
        let back: StreamEvent =
            serde_json::from_str(r#"{"Type":"Service","Name":"web","Index":3,"Entries":[]}"#)
                .unwrap();
        assert!(matches!(back, StreamEvent::Service { index: 3, .. }));
    }
}
