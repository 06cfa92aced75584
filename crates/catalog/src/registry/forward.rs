//! Writes handed to the server that leads (on a shared store), as Consul
//! followers pass their writes to the leader.
//!
//! Why: every commit to the shared store is guarded by the position of
//! the whole catalog (its `m/index` record, which every commit writes, as
//! the catalog index counts commits). Two servers that both commit
//! therefore take turns: each commit of one makes the other's in-flight
//! commit lose and start again. With every write committed by one writer,
//! that writer batches everybody's writes and never loses a race.
//!
//! Forwarding is only about speed; correctness stays with the guard. A
//! server that cannot reach the leader commits the write itself, and a
//! forwarded write is never forwarded again: two servers that each think
//! they lead, or a leader that changed under a write, only bring races
//! back, never a lost or doubled write.
//!
//! Read-your-writes: the leader answers with its view's position after
//! the commit; the forwarding server acknowledges only once its own view
//! has reached that position.

use super::*;
use serde::{Deserialize, Serialize};

/// Where a server that does not lead sends its writes (the binary
/// implements it over HTTP; this crate does no network I/O).
#[async_trait]
pub trait Forwarder: Send + Sync + 'static {
    /// The leader's answer to `cmd`, or `None` to commit it here: this
    /// server leads, no leader is known, or the leader certainly did not
    /// apply it (it could not be reached, or refused before applying).
    /// `Some(Err(..))` when the outcome is unknown (sent, no answer).
    async fn forward(&self, cmd: &Command) -> Option<Result<Forwarded>>;
}

/// A write's answer from the server that committed it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Forwarded {
    /// The command's outcome there.
    pub result: Result<Outcome>,
    /// That server's view position once it had answered (the store's
    /// revision): whoever passes the answer on waits for its own view to
    /// reach it first.
    pub position: u64,
}

/// Forwarded writes the committing server may leave a view waiting for
/// before it says it could not confirm them.
const REACH_WAIT: Duration = Duration::from_secs(10);

impl Registry {
    /// From now on, writes go to `forwarder` first (a shared store only:
    /// on the embedded store this server is the only writer).
    pub fn forward_writes(&self, forwarder: Arc<dyn Forwarder>) -> Result<()> {
        if self.follow.is_none() {
            return Err(Error::invalid(
                "only a registry on a shared store forwards its writes",
            ));
        }
        self.forwarder
            .set(forwarder)
            .map_err(|_| Error::invalid("this registry forwards its writes already"))
    }

    /// Applies `cmd` here (never forwarded): what a leader runs for the
    /// servers that forward to it. The position is this server's view's
    /// once the write was answered, which includes its commit.
    pub async fn write_here(&self, cmd: Command) -> Forwarded {
        let result = self.write_local(cmd).await;
        Forwarded {
            result,
            position: self.position(),
        }
    }

    /// Sends `cmd` to the leader if there is one to send it to; `None`
    /// when it is to be committed here.
    pub(super) async fn forwarded(&self, cmd: &Command) -> Option<Result<Outcome>> {
        let forwarder = self.forwarder.get()?;
        if matches!(cmd, Command::Restore(_)) {
            // Not serializable, and too big to send twice: committed here.
            return None;
        }
        let answer = match forwarder.forward(cmd).await? {
            Ok(a) => a,
            Err(e) => return Some(Err(e)),
        };
        self.shared.metrics.writes_forwarded.inc();
        if let Err(e) = self.reach(answer.position, REACH_WAIT).await {
            return Some(match (answer.result, e) {
                (Ok(_), Error::Storage(m)) => Err(Error::Storage(format!(
                    "the leading server committed the write (store revision {}), but {m}",
                    answer.position
                ))),
                // Nothing was written: its own words are the answer.
                (Err(refused), Error::Storage(_)) => Err(refused),
                (_, e) => Err(e),
            });
        }
        Some(answer.result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Check, CheckDefinition, Node, Service};
    use crate::session::{LockRequest, Session};
    use crate::txn::{CatalogVerb, KvVerb, TxnOp, TxnReport, TxnResult};

    fn node() -> Node {
        Node {
            id: "6f1c".into(),
            name: "n1".into(),
            address: "10.0.0.1".into(),
            datacenter: "dc1".into(),
            tagged_addresses: [("lan".to_string(), "10.0.0.1".to_string())].into(),
            meta: [("rack".to_string(), "r1".to_string())].into(),
            create_index: 3,
            modify_index: 4,
        }
    }

    fn check() -> Check {
        Check {
            node: "n1".into(),
            check_id: "c1".into(),
            name: "http".into(),
            status: HealthStatus::Warning,
            output: "slow".into(),
            service_id: "w1".into(),
            service_name: "web".into(),
            service_tags: vec!["a".into()],
            definition: CheckDefinition {
                http: "http://10.0.0.1/health".into(),
                header: [("X".to_string(), vec!["1".to_string()])].into(),
                interval: Some(Duration::from_millis(1500)),
                ttl: Some(Duration::from_secs(30)),
                failures_before_critical: 2,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Every command a server may forward arrives as it was sent: its
    /// JSON read back prints (Debug: every field) exactly as the original.
    #[test]
    fn every_forwarded_command_survives_the_wire() {
        let service = Service {
            id: "w1".into(),
            name: "web".into(),
            tags: vec!["v1".into()],
            address: "10.0.0.2".into(),
            meta: [("k".to_string(), "v".to_string())].into(),
            port: 8080,
            enable_tag_override: true,
            ..Default::default()
        };
        let value = bytes::Bytes::from_static(b"\x00binary\xff");
        let commands = vec![
            Command::Register(Box::new(Registration {
                node: node(),
                skip_node_update: true,
                service: Some(service.clone()),
                checks: vec![check()],
            })),
            Command::DeregisterNode { node: "n1".into() },
            Command::ReapNode {
                node: "n1".into(),
                check_index: 9,
            },
            Command::DeregisterService {
                node: "n1".into(),
                service_id: "w1".into(),
            },
            Command::DeregisterCheck {
                node: "n1".into(),
                check_id: "c1".into(),
            },
            Command::UpdateCheck {
                node: "n1".into(),
                check_id: "c1".into(),
                status: HealthStatus::Critical,
                output: Some("down".into()),
            },
            Command::KvPut {
                key: "a/b".into(),
                value: value.clone(),
                flags: 42,
                cas: Some(0),
            },
            Command::KvPut {
                key: "empty".into(),
                value: bytes::Bytes::new(),
                flags: 0,
                cas: None,
            },
            Command::KvDelete {
                key: "a/".into(),
                recurse: true,
                cas: Some(7),
            },
            Command::SessionCreate(Box::new(Session {
                id: "s1".into(),
                name: "lock".into(),
                node: "n1".into(),
                node_checks: vec!["serfHealth".into()],
                lock_delay: 15_000_000_000,
                ttl: "10s".into(),
                ..Default::default()
            })),
            Command::SessionDestroy { id: "s1".into() },
            Command::KvLock(Box::new(LockRequest {
                key: "lock".into(),
                value: value.clone(),
                flags: 1,
                cas: Some(5),
                session: "s1".into(),
                acquire: true,
            })),
            Command::Txn(vec![
                TxnOp::Kv {
                    verb: KvVerb::Cas,
                    key: "a".into(),
                    value,
                    flags: 2,
                    index: 11,
                    session: "s1".into(),
                },
                TxnOp::Node {
                    verb: CatalogVerb::Set,
                    node: node(),
                },
                TxnOp::Service {
                    verb: CatalogVerb::DeleteCas,
                    node: "n1".into(),
                    service,
                },
                TxnOp::Check {
                    verb: CatalogVerb::Get,
                    check: check(),
                },
            ]),
            Command::QueryPut(Box::new(crate::query::PreparedQuery {
                id: "q1".into(),
                name: "web".into(),
                session: "s1".into(),
                ..Default::default()
            })),
            Command::QueryDelete { id: "q1".into() },
        ];
        for cmd in commands {
            let wire = serde_json::to_vec(&cmd).unwrap();
            let back: Command = serde_json::from_slice(&wire).unwrap();
            assert_eq!(format!("{back:?}"), format!("{cmd:?}"));
        }
        // A restore is committed where it is asked for, never sent.
        let restore = Command::Restore(Arc::new(crate::snapshot::Snapshot::of(&State::default())));
        assert!(serde_json::to_vec(&restore).is_err());
    }

    /// Outcomes and refusals come back as they were given.
    #[test]
    fn answers_survive_the_wire() {
        let answers = vec![
            Forwarded {
                result: Ok(Outcome {
                    index: 12,
                    applied: false,
                    txn: Some(Arc::new(TxnReport {
                        results: vec![TxnResult::Node(node()), TxnResult::Check(check())],
                        errors: vec![(1, "failed".into())],
                    })),
                }),
                position: 99,
            },
            Forwarded {
                result: Err(Error::Rejected("Invalid session".into())),
                position: 100,
            },
            Forwarded {
                result: Err(Error::NotFound("no such node".into())),
                position: 101,
            },
        ];
        for a in answers {
            let back: Forwarded = serde_json::from_slice(&serde_json::to_vec(&a).unwrap()).unwrap();
            assert_eq!(format!("{back:?}"), format!("{a:?}"));
        }
    }
}
