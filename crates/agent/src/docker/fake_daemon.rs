//! Tests of the registrator's life against a fake Docker daemon on a unix
//! socket: start-up sync, events, a daemon that restarts (no event lost:
//! the resync after reconnecting catches what happened meanwhile), and a
//! daemon that is not there yet.

use super::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast;

/// The daemon's state: running containers (inspect JSON by ID) and the
/// event feed (`None` closes every event stream: a restart).
#[derive(Clone)]
struct Fake {
    containers: Arc<Mutex<BTreeMap<String, Value>>>,
    events: broadcast::Sender<Option<String>>,
}

fn container(id: &str, name: &str) -> Value {
    json!({
        "Id": id, "Name": format!("/{name}"),
        "State": {"Running": true},
        "Config": {"Image": "web", "Env": ["SERVICE_NAME=web"], "ExposedPorts": {"80/tcp": {}}},
        "NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "4000"}]}}
    })
}

impl Fake {
    fn new() -> Fake {
        Fake {
            containers: Arc::default(),
            events: broadcast::channel(64).0,
        }
    }

    fn start(&self, id: &str, name: &str) {
        self.containers
            .lock()
            .unwrap()
            .insert(id.into(), container(id, name));
        let _ = self.events.send(Some(
            json!({"Type": "container", "Action": "start", "Actor": {"ID": id}, "timeNano": 1})
                .to_string(),
        ));
    }

    /// Serves on `path` until the test ends.
    async fn serve(self, path: PathBuf) {
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(self.clone().answer(stream));
            }
        });
    }

    async fn answer(self, mut stream: UnixStream) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let head = String::from_utf8_lossy(&head);
        let path = head
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .trim_start_matches("/v1.41")
            .to_string();
        let reply = |status: &str, body: String| {
            format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
        };
        let out = if path == "/_ping" {
            reply("200 OK", "OK".into())
        } else if path == "/containers/json" {
            let ids: Vec<Value> = self
                .containers
                .lock()
                .unwrap()
                .keys()
                .map(|id| json!({"Id": id}))
                .collect();
            reply("200 OK", Value::from(ids).to_string())
        } else if let Some(id) = path
            .strip_prefix("/containers/")
            .and_then(|p| p.strip_suffix("/json"))
        {
            match self.containers.lock().unwrap().get(id) {
                Some(c) => reply("200 OK", c.to_string()),
                None => reply("404 Not Found", r#"{"message":"No such container"}"#.into()),
            }
        } else if path.starts_with("/events") {
            let mut feed = self.events.subscribe();
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").await;
            while let Ok(Some(event)) = feed.recv().await {
                let chunk = format!("{:x}\r\n{event}\n\r\n", event.len() + 1);
                if stream.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
            return;
        } else {
            reply("404 Not Found", "{}".into())
        };
        let _ = stream.write_all(out.as_bytes()).await;
    }
}

fn socket_path(test: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "shoal-fake-docker-{}-{test}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

fn registrator(registry: &Arc<Registry>, path: &std::path::Path) -> Registrator {
    with_resync(registry, path, None)
}

fn with_resync(
    registry: &Arc<Registry>,
    path: &std::path::Path,
    resync: Option<Duration>,
) -> Registrator {
    let config = DockerConfig {
        url: format!("unix://{}", path.display()),
        node: "n1".into(),
        settings: Settings {
            hostname: "n1".into(),
            host_ip: "127.0.0.1".into(),
            ..Default::default()
        },
        resync,
        cleanup: false,
        deregister: Deregister::Always,
        proxy_container: None,
    };
    Registrator::new(registry.clone(), config).unwrap()
}

fn ids(registry: &Registry) -> Vec<String> {
    registry
        .snapshot()
        .node_services("n1")
        .iter()
        .map(|s| s.id.clone())
        .collect()
}

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn sync_events_and_a_daemon_restart_lose_nothing() {
    let path = socket_path("restart");
    let fake = Fake::new();
    fake.containers
        .lock()
        .unwrap()
        .insert("a".into(), container("a", "ca"));
    fake.clone().serve(path.clone()).await;
    let registry = Registry::in_memory();
    let cancel = CancellationToken::new();
    tokio::spawn(registrator(&registry, &path).run(cancel.clone()));
    eventually("a registered by the start-up sync", || {
        ids(&registry) == ["n1:ca:80"]
    })
    .await;
    // Only the sync after subscribing is certain to have happened.
    tokio::time::sleep(Duration::from_millis(100)).await;
    fake.start("b", "cb");
    eventually("b registered from its start event", || {
        ids(&registry) == ["n1:ca:80", "n1:cb:80"]
    })
    .await;

    // The daemon restarts: the stream ends; meanwhile a is gone and c started.
    let _ = fake.events.send(None);
    fake.containers.lock().unwrap().remove("a");
    fake.containers
        .lock()
        .unwrap()
        .insert("c".into(), container("c", "cc"));
    eventually("resync after reconnecting", || {
        ids(&registry) == ["n1:cb:80", "n1:cc:80"]
    })
    .await;
    cancel.cancel();
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_daemon_that_appears_later_is_picked_up() {
    let path = socket_path("later");
    let registry = Registry::in_memory();
    let cancel = CancellationToken::new();
    tokio::spawn(registrator(&registry, &path).run(cancel.clone()));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let fake = Fake::new();
    fake.containers
        .lock()
        .unwrap()
        .insert("a".into(), container("a", "ca"));
    fake.serve(path.clone()).await;
    eventually("registered once the daemon answers", || {
        ids(&registry) == ["n1:ca:80"]
    })
    .await;
    cancel.cancel();
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn resync_catches_changes_no_event_announced() {
    let path = socket_path("resync");
    let fake = Fake::new();
    fake.clone().serve(path.clone()).await;
    let registry = Registry::in_memory();
    let cancel = CancellationToken::new();
    let resync = Some(Duration::from_millis(200));
    tokio::spawn(with_resync(&registry, &path, resync).run(cancel.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Changed behind the event stream's back.
    fake.containers
        .lock()
        .unwrap()
        .insert("a".into(), container("a", "ca"));
    eventually("added by a periodic resync", || {
        ids(&registry) == ["n1:ca:80"]
    })
    .await;
    fake.containers.lock().unwrap().remove("a");
    eventually("removed by a periodic resync", || ids(&registry).is_empty()).await;
    cancel.cancel();
    let _ = std::fs::remove_file(&path);
}
