//! Change notification for blocking queries. A reader subscribes to the
//! [`Topic`]s it reads; the writer, after each durable commit, wakes only
//! the subscribers of topics that commit touched, so a query on one service
//! never wakes for a change to another.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use tokio::sync::watch;

/// Something a reader can wait on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Anything at all.
    Any,
    /// The set of service names and their tags.
    Services,
    /// One service: its instances, their checks and their nodes.
    Service(String),
    /// The set of nodes.
    Nodes,
    /// One node: the node, its instances and its checks.
    Node(String),
    /// Any check anywhere (health by state).
    Checks,
    /// The set of sessions.
    Sessions,
    /// The set of prepared queries.
    Queries,
    /// ACL tokens and policies.
    Acl,
    /// Every KV key starting with this prefix (`""` is the whole KV store).
    KvPrefix(String),
}

/// What one commit touched; built by the state while applying commands.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub topics: HashSet<Topic>,
    pub kv_keys: Vec<String>,
}

#[derive(Default)]
struct Subscribers {
    exact: HashMap<Topic, watch::Sender<u64>>,
    kv: BTreeMap<String, watch::Sender<u64>>,
    /// Map size at which idle senders are swept next.
    sweep_at: usize,
}

/// The subscriber registry shared by readers and the writer.
pub(crate) struct WatchHub {
    subscribers: Mutex<Subscribers>,
}

impl WatchHub {
    pub fn new() -> Self {
        WatchHub {
            subscribers: Mutex::new(Subscribers {
                sweep_at: 1024,
                ..Default::default()
            }),
        }
    }

    /// A receiver that changes after the next commit touching `topic`.
    /// Subscribe before reading the snapshot, so no commit can slip between.
    pub fn subscribe(&self, topic: &Topic) -> watch::Receiver<u64> {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        if subs.exact.len() + subs.kv.len() >= subs.sweep_at {
            subs.exact.retain(|_, s| s.receiver_count() > 0);
            subs.kv.retain(|_, s| s.receiver_count() > 0);
            subs.sweep_at = 2 * (subs.exact.len() + subs.kv.len()).max(512);
        }
        let sender = match topic {
            Topic::KvPrefix(prefix) => subs.kv.entry(prefix.clone()).or_insert_with(new_sender),
            other => subs.exact.entry(other.clone()).or_insert_with(new_sender),
        };
        sender.subscribe()
    }

    /// Receivers subscribed now, over every topic (a metric).
    pub fn subscriptions(&self) -> usize {
        let subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.exact
            .values()
            .chain(subs.kv.values())
            .map(|s| s.receiver_count())
            .sum()
    }

    /// Wakes every subscriber (the whole state was replaced).
    pub fn notify_all(&self, index: u64) {
        let subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        for s in subs.exact.values().chain(subs.kv.values()) {
            s.send_replace(index);
        }
    }

    /// Wakes the subscribers of everything `changes` touched.
    pub fn notify(&self, changes: &Changes, index: u64) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        let wake = |map_sender: Option<&watch::Sender<u64>>| {
            if let Some(s) = map_sender {
                s.send_replace(index);
            }
        };
        wake(subs.exact.get(&Topic::Any));
        for topic in &changes.topics {
            wake(subs.exact.get(topic));
        }
        if !subs.kv.is_empty() && !changes.kv_keys.is_empty() {
            let mut woken: HashSet<&str> = HashSet::new();
            for key in &changes.kv_keys {
                for (end, _) in key.char_indices().chain(std::iter::once((key.len(), ' '))) {
                    let prefix = &key[..end];
                    if woken.insert(prefix) {
                        wake(subs.kv.get(prefix));
                    }
                }
            }
        }
        // Drop senders nobody listens to any more, for the topics just used.
        for topic in &changes.topics {
            if subs
                .exact
                .get(topic)
                .is_some_and(|s| s.receiver_count() == 0)
            {
                subs.exact.remove(topic);
            }
        }
    }
}

fn new_sender() -> watch::Sender<u64> {
    watch::Sender::new(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_only_matching_topics() {
        let hub = WatchHub::new();
        let web = hub.subscribe(&Topic::Service("web".into()));
        let db = hub.subscribe(&Topic::Service("db".into()));
        let any = hub.subscribe(&Topic::Any);
        let mut changes = Changes::default();
        changes.topics.insert(Topic::Service("web".into()));
        hub.notify(&changes, 7);
        assert!(web.has_changed().unwrap());
        assert!(!db.has_changed().unwrap());
        assert!(any.has_changed().unwrap());
    }

    #[test]
    fn kv_prefixes_match_by_prefix() {
        let hub = WatchHub::new();
        let cases = [
            ("", true),
            ("app/", true),
            ("app/con", true),
            ("app/config", true),
            ("other/", false),
            ("app/config/x", false),
        ];
        let receivers: Vec<_> = cases
            .iter()
            .map(|(p, _)| hub.subscribe(&Topic::KvPrefix(p.to_string())))
            .collect();
        let changes = Changes {
            kv_keys: vec!["app/config".into()],
            ..Default::default()
        };
        hub.notify(&changes, 3);
        for ((prefix, want), rx) in cases.iter().zip(&receivers) {
            assert_eq!(rx.has_changed().unwrap(), *want, "prefix {prefix:?}");
        }
    }
}
