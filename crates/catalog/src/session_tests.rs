//! Sessions, locks, lock-delay and transactions applied to a state.

use super::*;
use crate::command::{Command, Registration};
use crate::model::{Check, Node};
use crate::txn::{KvVerb, TxnOp};

fn apply(st: &mut State, cmd: Command) -> Result<crate::command::Outcome> {
    Txn::new(st).apply(cmd)
}

fn with_node(check_status: HealthStatus) -> State {
    let mut st = State::default();
    let reg = Registration {
        node: Node {
            name: "n1".into(),
            address: "10.0.0.1".into(),
            ..Default::default()
        },
        checks: vec![Check {
            check_id: "serfHealth".into(),
            name: "serf".into(),
            status: check_status,
            ..Default::default()
        }],
        ..Default::default()
    };
    apply(&mut st, Command::Register(Box::new(reg))).unwrap();
    st
}

fn session(id: &str, behavior: Behavior, lock_delay: Duration) -> Session {
    Session {
        id: id.into(),
        node: "n1".into(),
        node_checks: vec!["serfHealth".into()],
        lock_delay: lock_delay.as_nanos() as u64,
        behavior,
        ..Default::default()
    }
}

fn lock(key: &str, session: &str, acquire: bool) -> Command {
    Command::KvLock(Box::new(LockRequest {
        key: key.into(),
        value: Bytes::from_static(b"v"),
        flags: 7,
        cas: None,
        session: session.into(),
        acquire,
    }))
}

#[test]
fn create_validates_like_consul() {
    let mut st = with_node(HealthStatus::Passing);
    // (session, error contains; None = created)
    let mut missing_check = session("b", Behavior::Release, Duration::ZERO);
    missing_check.node_checks = vec!["nope".into()];
    let mut no_node = session("c", Behavior::Release, Duration::ZERO);
    no_node.node = "ghost".into();
    let mut bad_ttl = session("d", Behavior::Release, Duration::ZERO);
    bad_ttl.ttl = "5s".into();
    let mut junk_ttl = session("e", Behavior::Release, Duration::ZERO);
    junk_ttl.ttl = "soon".into();
    let mut ok_ttl = session("f", Behavior::Release, Duration::ZERO);
    ok_ttl.ttl = "10s".into();
    let cases = [
        (session("a", Behavior::Release, Duration::ZERO), None),
        (missing_check, Some("Missing check 'nope' registration")),
        (no_node, Some("Missing node registration")),
        (bad_ttl, Some("Invalid Session TTL '5000000000'")),
        (junk_ttl, Some("Session TTL 'soon' invalid")),
        (ok_ttl, None),
    ];
    for (s, want) in cases {
        let id = s.id.clone();
        let got = apply(&mut st, Command::SessionCreate(Box::new(s)));
        match want {
            None => assert!(got.is_ok() && st.session(&id).is_some(), "{id}: {got:?}"),
            Some(text) => {
                let err = got.unwrap_err();
                assert!(matches!(err, Error::Rejected(_)), "{id}: {err:?}");
                assert!(err.to_string().contains(text), "{id}: {err}");
            }
        }
    }
    let critical = with_node(HealthStatus::Critical);
    let mut st = critical;
    let err = apply(
        &mut st,
        Command::SessionCreate(Box::new(session("x", Behavior::Release, Duration::ZERO))),
    )
    .unwrap_err();
    assert!(err.to_string().contains("is in critical state"), "{err}");
}

#[test]
fn lock_table() {
    let mut st = with_node(HealthStatus::Passing);
    for id in ["s1", "s2"] {
        apply(
            &mut st,
            Command::SessionCreate(Box::new(session(id, Behavior::Release, Duration::ZERO))),
        )
        .unwrap();
    }
    // (command, applied, holder after, lock index after)
    let steps = [
        (lock("k", "s1", true), true, "s1", 1),
        (lock("k", "s1", true), true, "s1", 1),
        (lock("k", "s2", true), false, "s1", 1),
        (lock("k", "s2", false), false, "s1", 1),
        (lock("k", "s1", false), true, "", 1),
        (lock("k", "s2", true), true, "s2", 2),
    ];
    for (i, (cmd, applied, holder, lock_index)) in steps.into_iter().enumerate() {
        assert_eq!(apply(&mut st, cmd).unwrap().applied, applied, "step {i}");
        let e = st.kv_get("k").1.unwrap();
        assert_eq!(
            (e.session.as_str(), e.lock_index),
            (holder, lock_index),
            "step {i}"
        );
    }
    let err = apply(&mut st, lock("k2", "ghost", true)).unwrap_err();
    assert!(err.to_string().contains("invalid session"), "{err}");
}

#[test]
fn invalidation_releases_or_deletes_and_starts_lock_delay() {
    // (behavior, key survives)
    for (behavior, survives) in [(Behavior::Release, true), (Behavior::Delete, false)] {
        let mut st = with_node(HealthStatus::Passing);
        apply(
            &mut st,
            Command::SessionCreate(Box::new(session("s1", behavior, Duration::from_secs(60)))),
        )
        .unwrap();
        apply(
            &mut st,
            Command::SessionCreate(Box::new(session("s2", behavior, Duration::ZERO))),
        )
        .unwrap();
        assert!(apply(&mut st, lock("k", "s1", true)).unwrap().applied);
        // The node's check goes critical: s1 is invalidated.
        apply(
            &mut st,
            Command::UpdateCheck {
                node: "n1".into(),
                check_id: "serfHealth".into(),
                status: HealthStatus::Critical,
                output: None,
            },
        )
        .unwrap();
        assert!(st.session("s1").is_none() && st.session("s2").is_none());
        let entry = st.kv_get("k").1;
        assert_eq!(entry.is_some(), survives, "{behavior:?}");
        if let Some(e) = entry {
            assert!(e.session.is_empty());
        }
        assert!(st.session_keys.is_empty());
        assert!(st.lock_delays.contains_key("k"), "lock-delay must start");
    }
}

#[test]
fn lock_delay_refuses_then_expires() {
    let mut st = with_node(HealthStatus::Passing);
    apply(
        &mut st,
        Command::SessionCreate(Box::new(session("s1", Behavior::Release, Duration::ZERO))),
    )
    .unwrap();
    st.lock_delays
        .insert("k".into(), Instant::now() + Duration::from_secs(60));
    assert!(!apply(&mut st, lock("k", "s1", true)).unwrap().applied);
    st.lock_delays.insert("k".into(), Instant::now());
    assert!(apply(&mut st, lock("k", "s1", true)).unwrap().applied);
}

#[test]
fn txn_is_all_or_nothing() {
    let mut st = with_node(HealthStatus::Passing);
    let kv = |verb, key: &str, index| TxnOp::Kv {
        verb,
        key: key.into(),
        value: Bytes::from_static(b"x"),
        flags: 0,
        index,
        session: String::new(),
    };
    let before = st.index();
    let out = apply(
        &mut st,
        Command::Txn(vec![
            kv(KvVerb::Set, "a", 0),
            kv(KvVerb::Get, "missing", 0),
            kv(KvVerb::Cas, "b", 99),
        ]),
    )
    .unwrap();
    let report = out.txn.unwrap();
    assert!(!out.applied && report.results.is_empty());
    let at: Vec<usize> = report.errors.iter().map(|(i, _)| *i).collect();
    assert_eq!(at, vec![1, 2]);
    assert!(report.errors[0].1.contains("doesn't exist"));
    assert!(st.kv_get("a").1.is_none(), "the set must be rolled back");
    assert_eq!(st.index(), before);
    let out = apply(
        &mut st,
        Command::Txn(vec![kv(KvVerb::Set, "a", 0), kv(KvVerb::Get, "a", 0)]),
    )
    .unwrap();
    assert!(out.applied);
    let report = out.txn.unwrap();
    assert_eq!(report.results.len(), 2);
    assert!(st.kv_get("a").1.is_some());
}

#[test]
fn sessions_and_locks_survive_reload() {
    let mut st = with_node(HealthStatus::Passing);
    let mut txn = Txn::new(&mut st);
    let mut s = session("s1", Behavior::Release, Duration::ZERO);
    s.ttl = "15s".into();
    txn.apply(Command::SessionCreate(Box::new(s))).unwrap();
    txn.apply(lock("k", "s1", true)).unwrap();
    let (muts, _) = txn.into_mutations();
    let records: Vec<(&str, &[u8])> = muts
        .iter()
        .filter_map(|m| m.value.as_deref().map(|v| (m.key.as_str(), v)))
        .collect();
    let back = State::from_records(records).unwrap();
    let got = back.session("s1").unwrap();
    assert_eq!(got.ttl(), Some(Duration::from_secs(15)));
    assert_eq!(back.kv_get("k").1.unwrap().session, "s1");
    assert!(back.session_keys.get("s1").unwrap().contains("k"));
}

/// The node and check indexes rebuilt from scratch, to compare with the
/// ones kept up to date write by write.
fn indexes_from_scratch(st: &State) -> State {
    let mut fresh = State::default();
    for s in st.sessions.values() {
        fresh.index_session(s);
    }
    fresh
}

#[test]
fn invalidation_finds_sessions_through_node_and_check_indexes() {
    let mut st = with_node(HealthStatus::Passing);
    let other = Registration {
        node: Node {
            name: "n2".into(),
            address: "10.0.0.2".into(),
            ..Default::default()
        },
        checks: ["serfHealth", "disk"]
            .map(|id| Check {
                check_id: id.into(),
                name: id.into(),
                status: HealthStatus::Passing,
                ..Default::default()
            })
            .to_vec(),
        ..Default::default()
    };
    apply(&mut st, Command::Register(Box::new(other))).unwrap();
    // (id, node, checks)
    let specs: [(&str, &str, &[&str]); 4] = [
        ("a", "n1", &["serfHealth"]),
        ("b", "n2", &["serfHealth"]),
        ("c", "n2", &["disk"]),
        ("d", "n2", &[]),
    ];
    for (id, node, checks) in specs {
        let mut s = session(id, Behavior::Release, Duration::ZERO);
        s.node = node.into();
        s.node_checks = checks.iter().map(|c| c.to_string()).collect();
        apply(&mut st, Command::SessionCreate(Box::new(s))).unwrap();
    }
    let fresh = indexes_from_scratch(&st);
    assert_eq!(st.sessions_by_node, fresh.sessions_by_node);
    assert_eq!(st.sessions_by_check, fresh.sessions_by_check);
    let ids = |st: &State| -> Vec<String> { st.sessions.keys().cloned().collect() };
    // (what happens, sessions left)
    let steps: [(Command, &[&str]); 3] = [
        (
            Command::UpdateCheck {
                node: "n2".into(),
                check_id: "disk".into(),
                status: HealthStatus::Critical,
                output: None,
            },
            &["a", "b", "d"],
        ),
        (
            Command::UpdateCheck {
                node: "n1".into(),
                check_id: "disk".into(),
                status: HealthStatus::Critical,
                output: None,
            },
            &["a", "b", "d"],
        ),
        (Command::DeregisterNode { node: "n2".into() }, &["a"]),
    ];
    for (cmd, left) in steps {
        let what = format!("{cmd:?}");
        let _ = apply(&mut st, cmd);
        assert_eq!(ids(&st), left, "after {what}");
        let fresh = indexes_from_scratch(&st);
        assert_eq!(st.sessions_by_node, fresh.sessions_by_node, "{what}");
        assert_eq!(st.sessions_by_check, fresh.sessions_by_check, "{what}");
    }
    assert_eq!(st.node_sessions("n1").1.len(), 1);
    assert!(st.node_sessions("n2").1.is_empty());
}

#[test]
fn reload_rebuilds_the_session_indexes() {
    let node = with_node(HealthStatus::Passing);
    let mut st = State::default();
    let mut txn = Txn::new(&mut st);
    let reg = Registration {
        node: (**node.nodes.get("n1").unwrap()).clone(),
        checks: vec![(*node.check("n1", "serfHealth").unwrap()).clone()],
        ..Default::default()
    };
    txn.apply(Command::Register(Box::new(reg))).unwrap();
    txn.apply(Command::SessionCreate(Box::new(session(
        "s1",
        Behavior::Release,
        Duration::ZERO,
    ))))
    .unwrap();
    let (muts, _) = txn.into_mutations();
    let records: Vec<(&str, &[u8])> = muts
        .iter()
        .filter_map(|m| m.value.as_deref().map(|v| (m.key.as_str(), v)))
        .collect();
    let mut back = State::from_records(records).unwrap();
    assert_eq!(back.node_sessions("n1").1.len(), 1);
    apply(
        &mut back,
        Command::UpdateCheck {
            node: "n1".into(),
            check_id: "serfHealth".into(),
            status: HealthStatus::Critical,
            output: None,
        },
    )
    .unwrap();
    assert!(
        back.session("s1").is_none(),
        "found through the reloaded index"
    );
}

#[test]
fn lock_delay_is_capped_at_a_minute() {
    // (asked for, at most applied)
    let cases = [
        (Duration::from_secs(5), Duration::from_secs(5)),
        (Duration::from_secs(3600), MAX_LOCK_DELAY),
    ];
    for (asked, most) in cases {
        let mut st = with_node(HealthStatus::Passing);
        let s = session("s1", Behavior::Release, asked);
        apply(&mut st, Command::SessionCreate(Box::new(s))).unwrap();
        assert!(apply(&mut st, lock("k", "s1", true)).unwrap().applied);
        let before = Instant::now();
        apply(&mut st, Command::SessionDestroy { id: "s1".into() }).unwrap();
        let until = *st.lock_delays.get("k").expect("lock-delay started");
        assert!(until <= Instant::now() + most, "{asked:?}");
        assert!(until >= before + most.min(asked), "{asked:?}");
    }
}
