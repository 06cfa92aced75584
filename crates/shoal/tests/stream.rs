//! The change stream (`/v1/shoal/stream`) and `RemoteCatalog::subscribe`
//! against the real binary: resuming after dropped connections and after
//! a server restart without losing or repeating anything, a snapshot for
//! a consumer that fell behind the change log, and the fallback to
//! blocking queries against a server that offers no stream.

mod common;

use shoal_api::{RemoteCatalog, RemoteConfig};
use shoal_catalog::{
    Catalog, Check, HealthStatus, InstanceFilter, Node, QueryOptions, Registration, Service,
    StreamEvent, StreamRequest, StreamView,
};
use shoal_testkit::{assert_eventually, ServerProcess};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

fn client(url: &str) -> RemoteCatalog {
    RemoteCatalog::new(RemoteConfig::new(url)).unwrap()
}

fn reg(node: &str, id: &str, name: &str, status: HealthStatus) -> Registration {
    Registration {
        node: Node {
            name: node.into(),
            address: "10.1.0.1".into(),
            ..Default::default()
        },
        service: Some(Service {
            id: id.into(),
            name: name.into(),
            port: 8000,
            ..Default::default()
        }),
        checks: vec![Check {
            check_id: format!("check-{id}"),
            name: "c".into(),
            service_id: id.into(),
            status,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A TCP relay in front of the server: it can cut every connection, refuse
/// new ones for a while, and point at a restarted server.
struct Relay {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<JoinSet<()>>>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Relay {
            addr: listener.local_addr().unwrap(),
            target: Arc::new(Mutex::new(target)),
            up: Arc::new(AtomicBool::new(true)),
            conns: Arc::default(),
        };
        let (target, up, conns) = (relay.target.clone(), relay.up.clone(), relay.conns.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close
                }
                let to = *target.lock().unwrap();
                conns.lock().unwrap().spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        relay
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every open connection; with `up == false`, refuses new ones.
    fn cut(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        self.conns.lock().unwrap().abort_all();
    }
}

/// What a consumer saw: its view and how it got there.
#[derive(Default)]
struct Seen {
    view: StreamView,
    resets: usize,
    synced: Vec<u64>,
    /// `Instances` events (deltas) among them.
    deltas: usize,
}

/// Follows `catalog` from `index` into a shared [`Seen`].
fn follow(catalog: Arc<dyn Catalog>, index: u64) -> Arc<Mutex<Seen>> {
    follow_with(catalog, index, None, false)
}

/// Like [`follow`], with the keys under `kv_prefix` too.
fn follow_with_kv(
    catalog: Arc<dyn Catalog>,
    index: u64,
    kv_prefix: Option<&str>,
) -> Arc<Mutex<Seen>> {
    follow_with(catalog, index, kv_prefix, false)
}

/// Like [`follow_with_kv`], asking for `Instances` events when `delta`.
fn follow_with(
    catalog: Arc<dyn Catalog>,
    index: u64,
    kv_prefix: Option<&str>,
    delta: bool,
) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let out = seen.clone();
    let kv_prefix = kv_prefix.map(str::to_string);
    tokio::spawn(async move {
        let req = StreamRequest {
            index,
            kv_prefix,
            delta,
        };
        let mut events = catalog.subscribe(req).await.unwrap();
        while let Some(event) = events.recv().await {
            let Ok(event) = event else { continue };
            let mut s = out.lock().unwrap();
            match &event {
                StreamEvent::Reset { .. } => s.resets += 1,
                StreamEvent::Synced { index } => s.synced.push(*index),
                StreamEvent::Instances { .. } => s.deltas += 1,
                _ => {}
            }
            s.view.apply(event);
        }
    });
    seen
}

type Instances = BTreeSet<(String, String, String, Vec<HealthStatus>)>;

/// Every instance the server has: (service, node, id, check statuses).
async fn server_state(c: &RemoteCatalog) -> Instances {
    let mut out = BTreeSet::new();
    let names = c.services(QueryOptions::default()).await.unwrap().value;
    for name in names.keys() {
        let all = InstanceFilter::default();
        let entries = c.instances(name, &all, QueryOptions::default()).await;
        for e in entries.unwrap().value {
            out.insert(instance(name, &e));
        }
    }
    out
}

fn instance(
    name: &str,
    e: &shoal_catalog::ServiceEntry,
) -> (String, String, String, Vec<HealthStatus>) {
    (
        name.to_string(),
        e.node.name.clone(),
        e.service.id.clone(),
        e.checks.iter().map(|c| c.status).collect(),
    )
}

fn view_state(seen: &Mutex<Seen>) -> Instances {
    let s = seen.lock().unwrap();
    s.view
        .services
        .iter()
        .flat_map(|(name, entries)| entries.iter().map(move |e| instance(name, e)))
        .collect()
}

/// Waits until the consumer's view equals the server's state.
async fn converges(seen: &Mutex<Seen>, server: &RemoteCatalog, what: &str) {
    assert_eventually!(
        {
            let want = server_state(server).await;
            let got = view_state(seen);
            got == want
        },
        "{what}: the consumer's view never matched the server: view {:?} vs server {:?}",
        view_state(seen),
        server_state(server).await
    );
}

/// A burst of writes: registrations, status flips and deregistrations
/// across a few services.
async fn burst(c: &RemoteCatalog, round: usize, n: usize) {
    for i in 0..n {
        let name = format!("svc{}", i % 5);
        let id = format!("r{round}-{i}");
        let status = if i % 3 == 0 {
            HealthStatus::Critical
        } else {
            HealthStatus::Passing
        };
        c.register(reg(&format!("node{}", i % 3), &id, &name, status))
            .await
            .unwrap();
        if i % 4 == 0 {
            c.deregister_service(&format!("node{}", i % 3), &id)
                .await
                .unwrap();
        }
    }
}

/// An in-memory server, a client writing to it, and a relay in front of
/// it for the consumer.
async fn server_behind_relay() -> (ServerProcess, RemoteCatalog, Relay) {
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    let writer = client(&server.url);
    let target: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let relay = Relay::start(target).await;
    (server, writer, relay)
}

fn strictly_increasing(v: &[u64]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test]
async fn resumes_after_connection_drops_without_losing_or_repeating() {
    let (_server, writer, relay) = server_behind_relay().await;
    burst(&writer, 0, 10).await;
    let consumer: Arc<dyn Catalog> = Arc::new(client(&relay.url()));
    let seen = follow(consumer, 0);
    converges(&seen, &writer, "initial snapshot").await;
    for round in 1..=4 {
        relay.cut(false);
        burst(&writer, round, 25).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        relay.cut(true);
        converges(&seen, &writer, &format!("after drop {round}")).await;
    }
    let s = seen.lock().unwrap();
    assert_eq!(
        s.resets, 1,
        "a resumed stream must not start over from a snapshot"
    );
    assert!(
        strictly_increasing(&s.synced),
        "an index was delivered twice: {:?}",
        s.synced
    );
}

/// A consumer of deltas follows a few instances of large services
/// changing (a status, a port, one leaving, one coming, a node-level
/// check on a node with a few of them) across dropped connections, and
/// ends with the server's state: it got `Instances` events, not whole
/// services, for those changes.
#[tokio::test]
async fn a_consumer_of_deltas_follows_instance_changes_across_drops() {
    let (_server, writer, relay) = server_behind_relay().await;
    for s in 0..3 {
        for i in 0..30 {
            let node = format!("big{}", i % 10);
            let r = reg(
                &node,
                &format!("b{s}-{i}"),
                &format!("big{s}"),
                HealthStatus::Passing,
            );
            writer.register(r).await.unwrap();
        }
    }
    let consumer: Arc<dyn Catalog> = Arc::new(client(&relay.url()));
    let seen = follow_with(consumer, 0, None, true);
    converges(&seen, &writer, "initial snapshot").await;
    for round in 0..4 {
        relay.cut(false);
        let s = round % 3;
        let flip = if round % 2 == 0 {
            HealthStatus::Critical
        } else {
            HealthStatus::Passing
        };
        writer
            .register(reg("big1", &format!("b{s}-1"), &format!("big{s}"), flip))
            .await
            .unwrap();
        writer
            .deregister_service(
                &format!("big{}", (round * 3 + 2) % 10),
                &format!("b{s}-{}", round * 3 + 2),
            )
            .await
            .unwrap();
        writer
            .register(reg(
                "big5",
                &format!("new{round}"),
                &format!("big{s}"),
                HealthStatus::Passing,
            ))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        relay.cut(true);
        converges(&seen, &writer, &format!("after drop {round}")).await;
    }
    // Live, without a drop: a node-level check on one node of ten.
    let mut node_check = reg("big7", "", "", HealthStatus::Critical);
    node_check.service = None;
    writer.register(node_check).await.unwrap();
    converges(&seen, &writer, "a node-level check").await;
    let s = seen.lock().unwrap();
    assert_eq!(s.resets, 1, "resumed, not started over");
    assert!(strictly_increasing(&s.synced), "{:?}", s.synced);
    assert!(s.deltas >= 5, "only {} Instances events", s.deltas);
}

#[tokio::test]
async fn resumes_after_the_server_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let mut server = ServerProcess::start(bin(), &["--data-dir", &data]);
    let target: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let relay = Relay::start(target).await;
    burst(&client(&server.url), 0, 20).await;
    let consumer: Arc<dyn Catalog> = Arc::new(client(&relay.url()));
    let seen = follow(consumer, 0);
    converges(&seen, &client(&server.url), "before the restart").await;
    let before = *seen.lock().unwrap().synced.last().unwrap();

    server.restart();
    let target: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    *relay.target.lock().unwrap() = target;
    relay.cut(true);
    let writer = client(&server.url);
    burst(&writer, 1, 20).await;
    converges(&seen, &writer, "after the restart").await;
    let s = seen.lock().unwrap();
    assert_eq!(
        s.resets, 1,
        "the restarted server kept the index; the consumer resumes"
    );
    assert!(strictly_increasing(&s.synced), "{:?}", s.synced);
    assert!(s.synced.last().unwrap() > &before);
}

/// The events up to the first `Synced` of a subscription from `index`.
async fn first_batch(url: &str, index: u64) -> Vec<StreamEvent> {
    let req = StreamRequest {
        index,
        kv_prefix: None,
        delta: false,
    };
    let mut events = client(url).subscribe(req).await.unwrap();
    let mut got = Vec::new();
    while let Some(Ok(e)) = events.recv().await {
        let end = matches!(e, StreamEvent::Synced { .. });
        got.push(e);
        if end {
            break;
        }
    }
    got
}

#[tokio::test]
async fn a_consumer_far_behind_the_change_log_gets_a_snapshot() {
    let server = ServerProcess::start(bin(), &["--in-memory", "--change-log-size", "50"]);
    let writer = client(&server.url);
    burst(&writer, 0, 5).await;
    let url = server.url.clone();
    let first = |index| {
        let url = url.clone();
        async move { first_batch(&url, index).await }
    };
    let snapshot = first(0).await;

    assert!(
        matches!(snapshot[0], StreamEvent::Reset { .. }),
        "{snapshot:?}"
    );
    let StreamEvent::Synced { index: at } = snapshot.last().unwrap().clone() else {
        unreachable!()
    };
    // A few changes behind: only those changes.
    burst(&writer, 1, 3).await;
    let near = first(at).await;
    assert!(
        !near.iter().any(|e| matches!(e, StreamEvent::Reset { .. })),
        "{near:?}"
    );
    assert!(
        near.iter()
            .any(|e| matches!(e, StreamEvent::Service { .. })),
        "{near:?}"
    );
    // Far behind (more changes than the log keeps): a snapshot, which
    // builds the same view as following from the start.
    burst(&writer, 2, 60).await;
    let far = first(at).await;
    assert!(
        matches!(far[0], StreamEvent::Reset { .. }),
        "{:?}",
        &far[..2]
    );
    let mut view = StreamView::default();
    far.into_iter().for_each(|e| {
        view.apply(e);
    });
    let got: Instances = view
        .services
        .iter()
        .flat_map(|(name, entries)| entries.iter().map(move |e| instance(name, e)))
        .collect();
    assert_eq!(got, server_state(&writer).await);
}

#[tokio::test]
async fn falls_back_to_blocking_queries_without_the_stream() {
    let server = ServerProcess::start(bin(), &["--in-memory", "--no-stream"]);
    let reply = common::call(reqwest::Method::GET, server.at("/v1/shoal/stream"), None).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert!(reply.text.contains("--no-stream"), "{}", reply.text);
    let writer = client(&server.url);
    burst(&writer, 0, 10).await;
    let consumer: Arc<dyn Catalog> = Arc::new(client(&server.url));
    let seen = follow(consumer, 0);
    converges(&seen, &writer, "initial fetch by blocking queries").await;
    burst(&writer, 1, 10).await;
    writer
        .register(reg("node9", "late", "brand-new", HealthStatus::Passing))
        .await
        .unwrap();
    converges(&seen, &writer, "changes by blocking queries").await;
    writer.deregister_service("node9", "late").await.unwrap();
    converges(&seen, &writer, "a service going away").await;
}

/// The consumer's keys and values, and the server's under `prefix`.
fn view_kv(seen: &Mutex<Seen>) -> BTreeSet<(String, Vec<u8>)> {
    let s = seen.lock().unwrap();
    s.view
        .kv
        .values()
        .map(|e| (e.key.clone(), e.value.to_vec()))
        .collect()
}

async fn server_kv(c: &RemoteCatalog, prefix: &str) -> BTreeSet<(String, Vec<u8>)> {
    let list = c.kv_list(prefix, QueryOptions::default()).await.unwrap();
    list.value
        .into_iter()
        .map(|e| (e.key.clone(), e.value.to_vec()))
        .collect()
}

#[tokio::test]
async fn the_fallback_follows_the_kv_prefix_asked_for() {
    let server = ServerProcess::start(bin(), &["--in-memory", "--no-stream"]);
    let writer = client(&server.url);
    for i in 0..5 {
        let value = format!("v{i}").into_bytes().into();
        assert!(writer
            .kv_put(&format!("app/k{i}"), value, 0, None)
            .await
            .unwrap());
    }
    let outside = b"not followed".to_vec().into();
    assert!(writer.kv_put("other/k", outside, 0, None).await.unwrap());
    burst(&writer, 0, 4).await;
    let consumer: Arc<dyn Catalog> = Arc::new(client(&server.url));
    let seen = follow_with_kv(consumer, 0, Some("app/"));
    // (what the writes do, then the view must equal the server's keys)
    assert_eventually!(
        view_kv(&seen) == server_kv(&writer, "app/").await
            && !seen.lock().unwrap().synced.is_empty(),
        "initial keys: view {:?}",
        view_kv(&seen)
    );
    assert_eq!(view_kv(&seen).len(), 5, "only the keys under the prefix");
    converges(&seen, &writer, "services beside the keys").await;
    let changed = b"changed".to_vec().into();
    assert!(writer.kv_put("app/k1", changed, 0, None).await.unwrap());
    assert!(writer.kv_delete("app/k2", false, None).await.unwrap());
    let added = b"new".to_vec().into();
    assert!(writer.kv_put("app/sub/k9", added, 0, None).await.unwrap());
    assert_eventually!(
        view_kv(&seen) == server_kv(&writer, "app/").await,
        "changed, deleted and added keys: view {:?}",
        view_kv(&seen)
    );
    assert!(writer.kv_delete("app/", true, None).await.unwrap());
    assert_eventually!(
        view_kv(&seen).is_empty(),
        "every key deleted: view {:?}",
        view_kv(&seen)
    );
}

#[tokio::test]
async fn bad_stream_requests_are_refused_clearly() {
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    let cases = [
        ("index", "abc"),
        ("index", "-1"),
        ("index", "1.5"),
        ("delta", "maybe"),
        ("delta", "2"),
    ];
    for (param, bad) in cases {
        let reply = common::call(
            reqwest::Method::GET,
            server.at(&format!("/v1/shoal/stream?{param}={bad}")),
            None,
        )
        .await;
        assert_eq!(reply.status, 400, "{param}={bad}: {}", reply.text);
        let says = format!("Invalid {param}");
        assert!(reply.text.contains(&says), "{}", reply.text);
    }
}
