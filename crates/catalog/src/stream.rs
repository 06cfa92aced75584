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
use std::collections::{BTreeMap, BTreeSet};
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
    /// What changed among a service's instances, for a consumer that asked
    /// for deltas ([`StreamRequest::delta`]): the instances added or
    /// changed, each whole as in `Service`, and those that left. The
    /// others are as the consumer last had them. A service with no
    /// instance left comes as a `Service` with no entries instead.
    Instances {
        /// The service name.
        name: String,
        /// The service's index.
        index: u64,
        /// Instances added or changed (their node or checks included).
        #[serde(default)]
        upsert: Vec<ServiceEntry>,
        /// Instances that left the service.
        #[serde(default)]
        remove: Vec<InstanceKey>,
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

/// An instance of a service: the node it is on and its ID.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceKey {
    /// The node.
    #[serde(rename = "Node")]
    pub node: String,
    /// The instance (service) ID.
    #[serde(rename = "ID")]
    pub id: String,
}

/// What a consumer follows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamRequest {
    /// The last index seen (from a `Synced`); 0 for a snapshot.
    pub index: u64,
    /// KV keys under this prefix are followed too; `None`: no KV at all.
    pub kv_prefix: Option<String>,
    /// The consumer takes `Instances` events: a change of some instances
    /// of a service comes as those instances, not the whole service.
    pub delta: bool,
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
    // Each service, node and key once, in the order of its first change;
    // for a service, which instances changed (`None`: look at it whole).
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    let mut instances: BTreeMap<&str, Option<BTreeSet<(&str, &str)>>> = BTreeMap::new();
    for (_, change) in changes.iter() {
        let (item, instance) = match change {
            Change::Instance(name, node, id) => (Item::Service(name), Some((&**node, &**id))),
            Change::Service(name) => (Item::Service(name), None),
            Change::Node(name) => (Item::Node(name), None),
            Change::Kv(key) => (Item::Kv(key), None),
        };
        if let Item::Service(name) = item {
            let known = instances
                .entry(name)
                .or_insert_with(|| Some(BTreeSet::new()));
            match (known.as_mut(), instance) {
                (Some(set), Some(i)) if req.delta => {
                    set.insert(i);
                }
                _ => *known = None,
            }
        }
        if seen.insert(item) {
            order.push(item);
        }
    }
    let mut out = Vec::with_capacity(order.len() + 1);
    for item in order {
        match item {
            Item::Service(name) => {
                let changed = instances.get(name).and_then(Option::as_ref);
                out.push(match changed {
                    Some(set) => instances_event(state, name, set),
                    None => service_event(state, name),
                })
            }
            Item::Node(name) => out.push(StreamEvent::Node {
                name: name.to_string(),
                index: state.node_index(name),
                node: state.node(name),
            }),
            Item::Kv(key) => {
                if req.kv_prefix.as_deref().is_some_and(|p| key.starts_with(p)) {
                    let (index, entry) = state.kv_get(key);
                    out.push(StreamEvent::Kv {
                        key: key.to_string(),
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

/// What [`events_since`] orders: a service, node or key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Item<'a> {
    Service(&'a str),
    Node(&'a str),
    Kv(&'a str),
}

/// The instances of service `name` in `changed`, as they are in `state`
/// (or gone); the whole service when that is as small, or it has none.
fn instances_event(state: &State, name: &str, changed: &BTreeSet<(&str, &str)>) -> StreamEvent {
    let count = state.instance_count(name);
    if count == 0 || changed.len() * 2 >= count {
        return service_event(state, name);
    }
    let mut upsert = Vec::new();
    let mut remove = Vec::new();
    for (node, id) in changed {
        match state.instance_entry(node, id) {
            Some(e) if e.service.name == name => upsert.push(e),
            _ => remove.push(InstanceKey {
                node: node.to_string(),
                id: id.to_string(),
            }),
        }
    }
    StreamEvent::Instances {
        name: name.to_string(),
        index: state.service_index(name),
        upsert,
        remove,
    }
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
            StreamEvent::Instances {
                name,
                upsert,
                remove,
                ..
            } => {
                let list = self.services.entry(name.clone()).or_default();
                apply_instances(list, upsert, &remove);
                if list.is_empty() {
                    self.services.remove(&name);
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

/// Applies an `Instances` event to a service's entries: each upserted
/// instance replaces the one with its node and ID (or is added, in order
/// of node and ID), each removed one goes.
pub fn apply_instances(
    list: &mut Vec<ServiceEntry>,
    upsert: Vec<ServiceEntry>,
    remove: &[InstanceKey],
) {
    fn key(e: &ServiceEntry) -> (&str, &str) {
        (&e.node.name, &e.service.id)
    }
    list.retain(|e| !remove.iter().any(|k| key(e) == (&k.node, &k.id)));
    for entry in upsert {
        match list.iter().position(|e| key(e) == key(&entry)) {
            Some(at) => list[at] = entry,
            // In node and ID order, as the server lists them.
            None => {
                let at = list.partition_point(|e| key(e) < key(&entry));
                list.insert(at, entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::Txn;
    use crate::command::{Command, Registration};
    use crate::model::Service;

    fn reg(st: &mut State, node: &str, id: &str, name: &str) -> u64 {
        reg_on_port(st, node, id, name, 80)
    }

    fn reg_on_port(st: &mut State, node: &str, id: &str, name: &str, port: u16) -> u64 {
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
                port,
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
                StreamEvent::Instances {
                    name,
                    upsert,
                    remove,
                    ..
                } => {
                    let ids: Vec<String> = upsert
                        .iter()
                        .map(|e| format!("+{}", e.service.id))
                        .chain(remove.iter().map(|k| format!("-{}", k.id)))
                        .collect();
                    format!("i:{name}:{}", ids.join(","))
                }
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
            delta: false,
        };
        assert_eq!(
            names(&events_since(&st, &req)),
            ["s:web:2", "n:n1", "s:db:1", "synced:3"]
        );
        let now = StreamRequest {
            index: 3,
            kv_prefix: None,
            delta: false,
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
                delta: false,
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
            delta: false,
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

    fn deregister(st: &mut State, node: &str, id: &str) {
        let mut txn = Txn::new(st);
        txn.apply(Command::DeregisterService {
            node: node.into(),
            service_id: id.into(),
        })
        .unwrap();
    }

    #[test]
    fn a_consumer_of_deltas_gets_the_instances_that_changed() {
        let mut st = State::default();
        for i in 0..10 {
            reg(&mut st, "n1", &format!("w{i}"), "web");
        }
        let before = st.index();
        let mut view = StreamView::default();
        let all = StreamRequest {
            delta: true,
            ..Default::default()
        };
        for e in events_since(&st, &all) {
            view.apply(e);
        }
        // One instance changes (a new port), one leaves, one comes.
        reg_on_port(&mut st, "n1", "w2", "web", 8080);
        deregister(&mut st, "n1", "w4");
        reg(&mut st, "n1", "w20", "web");
        let since = |delta| StreamRequest {
            index: before,
            kv_prefix: None,
            delta,
        };
        let events = events_since(&st, &since(true));
        assert_eq!(
            names(&events),
            [
                "i:web:+w2,+w20,-w4",
                "n:n1",
                &format!("synced:{}", st.index())
            ]
        );
        // Without asking for deltas: the whole service.
        assert_eq!(names(&events_since(&st, &since(false)))[0], "s:web:10");
        // Applied, the view is the state, in the state's order.
        for e in events {
            view.apply(e);
        }
        let want: Vec<(String, u16)> = st
            .service_entries("web")
            .1
            .iter()
            .map(|e| (e.service.id.clone(), e.service.port))
            .collect();
        let got: Vec<(String, u16)> = view.services["web"]
            .iter()
            .map(|e| (e.service.id.clone(), e.service.port))
            .collect();
        assert_eq!(got, want);
        assert!(got.contains(&("w2".to_string(), 8080)));
        // Most of a service changed: the whole service is cheaper.
        let mid = st.index();
        for i in 0..5 {
            deregister(&mut st, "n1", &format!("w{i}"));
        }
        let req = StreamRequest {
            index: mid,
            kv_prefix: None,
            delta: true,
        };
        assert_eq!(names(&events_since(&st, &req))[0], "s:web:6");
        // Its last instance gone: the service, empty.
        let last = st.index();
        for id in ["w5", "w6", "w7", "w8", "w9", "w20"] {
            deregister(&mut st, "n1", id);
        }
        let req = StreamRequest {
            index: last,
            kv_prefix: None,
            delta: true,
        };
        assert_eq!(names(&events_since(&st, &req))[0], "s:web:0");
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
        let delta: StreamEvent = serde_json::from_str(
            r#"{"Type":"Instances","Name":"web","Index":4,"Upsert":[],"Remove":[{"Node":"n1","ID":"w1"}]}"#,
        )
        .unwrap();
        let StreamEvent::Instances { remove, .. } = &delta else {
            panic!("{delta:?}");
        };
        assert_eq!(
            remove[0],
            InstanceKey {
                node: "n1".into(),
                id: "w1".into()
            }
        );
        assert_eq!(
            serde_json::to_string(&delta).unwrap(),
            r#"{"Type":"Instances","Name":"web","Index":4,"Upsert":[],"Remove":[{"Node":"n1","ID":"w1"}]}"#
        );
    }
}
