//! Applying record mutations committed elsewhere to a state: how a server
//! on a shared store (etcd) follows the commits of the other servers. The
//! records are the very ones [`State::from_records`] loads, so following a
//! commit and loading everything again give the same state.

use crate::error::Result;
use crate::records::Mutation;
use crate::state::{NodeKey, State};
use crate::watch::{Changes, Topic};

impl State {
    /// Applies one commit's record mutations; returns what they touched,
    /// for the watchers. A record that does not decode fails the whole
    /// commit (the caller then loads everything again).
    pub(crate) fn apply_records(&mut self, mutations: &[Mutation]) -> Result<Changes> {
        let mut next = self.clone();
        let mut changes = Changes::default();
        for m in mutations {
            next.apply_record(&m.key, m.value.as_deref(), &mut changes)?;
        }
        next.lock_delays_of_invalidations(self, mutations);
        next.log_changes(&changes);
        *self = next;
        Ok(changes)
    }

    fn apply_record(&mut self, key: &str, value: Option<&[u8]>, ch: &mut Changes) -> Result<()> {
        // The one record parser: a put is decoded by loading it alone.
        let loaded = match value {
            Some(bytes) => Some(State::from_records([(key, bytes)])?),
            None => None,
        };
        if let Some(name) = key.strip_prefix("n/") {
            self.touch_node(name, ch);
            ch.topics.insert(Topic::Nodes);
            match loaded.and_then(|l| l.nodes.get(name).cloned()) {
                Some(node) => self.nodes.insert(name.to_string(), node),
                None => self.nodes.remove(name),
            };
        } else if let Some(rest) = key.strip_prefix("s/") {
            let pair = pair_of(rest);
            if let Some(old) = self.services.remove(&pair) {
                self.unlink_service(&old.name, &pair);
                ch.topics.insert(Topic::Service(old.name.clone()));
            }
            if let Some((_, svc)) = loaded.and_then(|l| l.services.into_iter().next()) {
                self.by_name
                    .entry(svc.name.clone())
                    .or_default()
                    .insert(pair.clone());
                ch.topics.insert(Topic::Service(svc.name.clone()));
                self.services.insert(pair.clone(), svc);
            }
            ch.topics.insert(Topic::Services);
            ch.topics.insert(Topic::Node(pair.0));
        } else if let Some(rest) = key.strip_prefix("c/") {
            let pair = pair_of(rest);
            self.touch_node(&pair.0, ch);
            ch.topics.insert(Topic::Checks);
            if let Some(old) = self.checks.remove(&pair) {
                self.unlink_instance_check(&pair, &old.service_id);
            }
            if let Some((_, check)) = loaded.and_then(|l| l.checks.into_iter().next()) {
                self.instance_checks
                    .link((pair.0.clone(), check.service_id.clone()), &pair.1);
                self.checks.insert(pair, check);
            }
        } else if let Some(k) = key.strip_prefix("k/") {
            if let Some(old) = self.kv.remove(k) {
                self.unlink_session_key(&old.session, k);
            }
            if let Some((_, entry)) = loaded.and_then(|l| l.kv.into_iter().next()) {
                if !entry.session.is_empty() {
                    self.session_keys
                        .entry(entry.session.clone())
                        .or_default()
                        .insert(k.to_string());
                }
                self.kv.insert(k.to_string(), entry);
            }
            ch.kv_keys.push(k.to_string());
        } else if let Some(k) = key.strip_prefix("t/") {
            match loaded.and_then(|l| l.kv_tombstones.get(k).copied()) {
                Some(at) => self.kv_tombstones.insert(k.to_string(), at),
                None => self.kv_tombstones.remove(k),
            };
            ch.kv_keys.push(k.to_string());
        } else if let Some(id) = key.strip_prefix("x/") {
            ch.topics.insert(Topic::Sessions);
            if let Some(old) = self.sessions.remove(id) {
                self.unindex_session(&old);
            }
            if let Some(s) = loaded.and_then(|l| l.sessions.get(id).cloned()) {
                self.index_session(&s);
                self.sessions.insert(id.to_string(), s);
            }
        } else if let Some(id) = key.strip_prefix("q/") {
            ch.topics.insert(Topic::Queries);
            match loaded.and_then(|l| l.queries.get(id).cloned()) {
                Some(q) => self.queries.insert(id.to_string(), q),
                None => self.queries.remove(id),
            };
        } else if let Some(id) = key.strip_prefix("at/") {
            ch.topics.insert(Topic::Acl);
            self.unindex_acl_token(id);
            if let Some(t) = loaded.and_then(|l| l.acl_tokens.get(id).cloned()) {
                self.index_acl_token(t);
            }
        } else if let Some(id) = key.strip_prefix("ap/") {
            ch.topics.insert(Topic::Acl);
            match loaded.and_then(|l| l.acl_policies.get(id).cloned()) {
                Some(p) => self.acl_policies.insert(id.to_string(), p),
                None => self.acl_policies.remove(id),
            };
        } else if key == crate::records::KEY_ACL_BOOTSTRAP {
            ch.topics.insert(Topic::Acl);
            self.acl_bootstrap = loaded.and_then(|l| l.acl_bootstrap);
        } else if let Some(n) = key.strip_prefix("is/") {
            ch.topics.insert(Topic::Service(n.to_string()));
            match loaded.and_then(|l| l.service_index.get(n).copied()) {
                Some(i) => self.service_index.insert(n.to_string(), i),
                None => self.service_index.remove(n),
            };
        } else if let Some(n) = key.strip_prefix("in/") {
            ch.topics.insert(Topic::Node(n.to_string()));
            match loaded.and_then(|l| l.node_index.get(n).copied()) {
                Some(i) => self.node_index.insert(n.to_string(), i),
                None => self.node_index.remove(n),
            };
        } else if let Some(l) = loaded {
            // m/tables or m/index: both are plain values of the state.
            if key == crate::records::KEY_TABLES {
                self.tables = l.tables;
            } else {
                self.index = l.index;
            }
        }
        Ok(())
    }

    /// The lock-delay of the keys a followed commit took from sessions it
    /// invalidated, as the server that wrote it applied it
    /// ([`crate::Txn`]'s `session_destroy`): without it, a contender on
    /// another server than the one that invalidated a session could take
    /// its lock at once. `before` is the state before the commit.
    fn lock_delays_of_invalidations(&mut self, before: &State, mutations: &[Mutation]) {
        let now = std::time::Instant::now();
        for m in mutations.iter().filter(|m| m.value.is_none()) {
            let Some(id) = m.key.strip_prefix("x/") else {
                continue;
            };
            let Some(session) = before.sessions.get(id) else {
                continue;
            };
            let delay = std::time::Duration::from_nanos(session.lock_delay)
                .min(crate::session::MAX_LOCK_DELAY);
            if delay.is_zero() {
                continue;
            }
            let Some(held) = before.session_keys.get(id) else {
                continue;
            };
            for key in held {
                let taken = self.kv.get(key).is_none_or(|e| e.session != id);
                if taken {
                    self.lock_delays.insert(key.clone(), now + delay);
                }
            }
        }
    }

    /// A node's record or one of its checks changed: every service with an
    /// instance on it shows that node (and its node-level checks).
    fn touch_node(&self, node: &str, ch: &mut Changes) {
        ch.topics.insert(Topic::Node(node.to_string()));
        for ((n, _), svc) in self.services.range((node.to_string(), String::new())..) {
            if n != node {
                break;
            }
            ch.topics.insert(Topic::Service(svc.name.clone()));
        }
    }

    /// Records what a followed commit changed in the change log, as the
    /// writer does for its own commits, so stream consumers (and the
    /// proxy, DNS and check runner that follow it) see commits made on
    /// other servers too.
    fn log_changes(&mut self, ch: &Changes) {
        use crate::changelog::Change;
        let index = self.index();
        let mut touched: Vec<Change> = ch
            .topics
            .iter()
            .filter_map(|t| match t {
                Topic::Service(n) => Some(Change::Service(n.clone())),
                Topic::Node(n) => Some(Change::Node(n.clone())),
                _ => None,
            })
            .chain(ch.kv_keys.iter().map(|k| Change::Kv(k.clone())))
            .collect();
        touched.sort();
        touched.dedup();
        for c in touched {
            self.log.push(index, c);
        }
    }

    fn unlink_instance_check(&mut self, pair: &NodeKey, service_id: &str) {
        self.instance_checks
            .unlink((pair.0.clone(), service_id.to_string()), &pair.1);
    }

    fn unlink_service(&mut self, name: &str, pair: &NodeKey) {
        if let Some(set) = self.by_name.get_mut(name) {
            set.remove(pair);
            if set.is_empty() {
                self.by_name.remove(name);
            }
        }
    }

    fn unlink_session_key(&mut self, session: &str, key: &str) {
        if session.is_empty() {
            return;
        }
        if let Some(set) = self.session_keys.get_mut(session) {
            set.remove(key);
            if set.is_empty() {
                self.session_keys.remove(session);
            }
        }
    }
}

fn pair_of(rest: &str) -> NodeKey {
    match rest.split_once('\0') {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => (rest.to_string(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::Txn;
    use crate::command::{Command, Registration};
    use crate::model::{Check, HealthStatus, Node, Service};
    use bytes::Bytes;

    fn reg(node: &str, id: &str, name: &str) -> Command {
        Command::Register(Box::new(Registration {
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
            checks: vec![Check {
                check_id: format!("c-{id}"),
                name: "c".into(),
                status: HealthStatus::Passing,
                service_id: id.into(),
                ..Default::default()
            }],
            ..Default::default()
        }))
    }

    trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap()
        }
    }

    /// Every command's records applied to a follower give the state the
    /// writer has, and the same state a full load of the records gives.
    #[test]
    fn following_records_matches_the_writer_and_a_reload() {
        let batches: Vec<Vec<Command>> = vec![
            vec![reg("n1", "w1", "web"), reg("n1", "d1", "db")],
            vec![reg("n2", "w2", "web")],
            vec![Command::SessionCreate(Box::new(crate::session::Session {
                id: "s1".into(),
                node: "n1".into(),
                node_checks: vec!["c-d1".into()],
                ..Default::default()
            }))],
            vec![Command::KvPut {
                key: "a/b".into(),
                value: Bytes::from_static(b"v"),
                flags: 1,
                cas: None,
            }],
            vec![Command::DeregisterService {
                node: "n1".into(),
                service_id: "w1".into(),
            }],
            vec![Command::KvDelete {
                key: "a/b".into(),
                recurse: false,
                cas: None,
            }],
            vec![Command::SessionDestroy { id: "s1".into() }],
            vec![Command::DeregisterNode { node: "n2".into() }],
        ];
        let mut writer = State::default();
        let mut follower = State::default();
        let mut all: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
        for batch in batches {
            let before = writer.index;
            let mut txn = Txn::new(&mut writer);
            for cmd in batch {
                txn.apply(cmd).unwrap();
            }
            let (muts, _) = txn.into_mutations();
            follower.apply_records(&muts).unwrap();
            for m in &muts {
                match &m.value {
                    Some(v) => all.insert(m.key.clone(), v.clone()),
                    None => all.remove(&m.key),
                };
            }
            let loaded =
                State::from_records(all.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).unwrap();
            for st in [&follower, &loaded] {
                assert_eq!(st.index(), writer.index());
                assert_eq!(st.services(), writer.services());
                let j = |v: &dyn Json| v.json();
                for name in ["web", "db"] {
                    assert_eq!(
                        j(&st.service_entries(name)),
                        j(&writer.service_entries(name))
                    );
                }
                assert_eq!(j(&st.nodes()), j(&writer.nodes()));
                assert_eq!(j(&st.kv_list("")), j(&writer.kv_list("")));
                assert_eq!(st.by_name, writer.by_name);
                assert_eq!(st.table_indexes(), writer.table_indexes());
                assert_eq!(st.instance_checks, writer.instance_checks);
                assert_eq!(st.sessions_by_node, writer.sessions_by_node);
                assert_eq!(st.sessions_by_check, writer.sessions_by_check);
            }
            // The follower's change log names what the writer's does in
            // this commit (the writer gives each command of a batch its
            // own index; the follower sees the commit at its last one).
            let at = |st: &State| {
                let mut v: Vec<_> = st
                    .log
                    .since(before)
                    .expect("log reaches back")
                    .into_iter()
                    .map(|(i, c)| {
                        assert!(i > before && i <= writer.index());
                        // The follower names whole services (its consumers
                        // re-read them); the writer, instances of them.
                        match c {
                            crate::changelog::Change::Instance(name, _, _) => {
                                crate::changelog::Change::Service(name)
                            }
                            c => c,
                        }
                    })
                    .collect();
                v.sort();
                v.dedup();
                v
            };
            // It may name more (a check's record touches its whole node),
            // never less: a consumer re-reads what it names.
            let (followed, written) = (at(&follower), at(&writer));
            assert!(
                written.iter().all(|c| followed.contains(c)),
                "change log after {before}: follower {followed:?}, writer {written:?}"
            );
            assert!(loaded.log.since(before).is_none() || before == loaded.index());
        }
        assert!(follower.by_name.get("web").is_none());
    }

    #[test]
    fn a_corrupt_record_changes_nothing() {
        let mut st = State::default();
        let muts = vec![
            Mutation {
                key: "m/index".into(),
                value: Some(b"7".to_vec()),
            },
            Mutation {
                key: "n/x".into(),
                value: Some(b"{not json".to_vec()),
            },
        ];
        assert!(st.apply_records(&muts).is_err());
        assert_eq!(st.index(), 1);
    }

    /// A session invalidated by the writer starts the lock-delay of the
    /// keys it held on a follower too (only of those it still held, and
    /// only with a delay), so a contender on another server waits as one
    /// on the writer does.
    #[test]
    fn followers_start_the_lock_delay_of_an_invalidation() {
        use crate::session::{LockRequest, Session};
        let lock = |key: &str, session: &str, acquire: bool| {
            Command::KvLock(Box::new(LockRequest {
                key: key.into(),
                value: Bytes::from_static(b"v"),
                flags: 0,
                cas: None,
                session: session.into(),
                acquire,
            }))
        };
        let session = |id: &str, delay_ms: u64| {
            Command::SessionCreate(Box::new(Session {
                id: id.into(),
                node: "n1".into(),
                lock_delay: delay_ms * 1_000_000,
                ..Default::default()
            }))
        };
        let batches: Vec<Vec<Command>> = vec![
            vec![reg("n1", "w1", "web")],
            vec![session("slow", 15_000), session("quick", 0)],
            vec![
                lock("held", "slow", true),
                lock("let-go", "slow", true),
                lock("quick-key", "quick", true),
            ],
            vec![lock("let-go", "slow", false)],
            vec![
                Command::SessionDestroy { id: "slow".into() },
                Command::SessionDestroy { id: "quick".into() },
            ],
        ];
        let mut writer = State::default();
        let mut follower = State::default();
        for batch in batches {
            let mut txn = Txn::new(&mut writer);
            for cmd in batch {
                assert!(txn.apply(cmd).unwrap().applied);
            }
            let (muts, _) = txn.into_mutations();
            follower.apply_records(&muts).unwrap();
        }
        let delayed = |st: &State| st.lock_delays.keys().cloned().collect::<Vec<String>>();
        assert_eq!(delayed(&writer), vec!["held".to_string()]);
        assert_eq!(delayed(&follower), delayed(&writer));
        let mut txn = Txn::new(&mut follower);
        txn.apply(session("next", 0)).unwrap();
        let taken = txn.apply(lock("held", "next", true)).unwrap();
        assert!(
            !taken.applied,
            "a lock in its lock-delay was taken on a follower"
        );
    }
}
