//! Sessions, the locks they hold and their TTLs survive a restart of a
//! real `shoal server` on its embedded store (killed with SIGKILL, so
//! nothing is flushed on the way out). As Consul after a leader change,
//! every TTL timer starts again from its full length: a session nobody
//! renews expires 2 × TTL after the restart and its lock is released; one
//! that is renewed after the restart lives on; one without a TTL stays.

mod common;

use common::{get, ok, put, put_json};
use serde_json::{json, Value};
use shoal_testkit::ServerProcess;
use std::path::Path;
use std::time::{Duration, Instant};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

async fn session(server: &ServerProcess, spec: Value) -> String {
    let r = ok(put_json(server.at("/v1/session/create"), &spec).await);
    r.json()["ID"].as_str().unwrap().to_string()
}

/// The session holding `key` ("" when none; Consul omits the field).
async fn holder(server: &ServerProcess, key: &str) -> String {
    let r = ok(get(server.at(&format!("/v1/kv/{key}"))).await);
    r.json()[0]["Session"].as_str().unwrap_or("").to_string()
}

async fn exists(server: &ServerProcess, id: &str) -> bool {
    let r = ok(get(server.at(&format!("/v1/session/info/{id}"))).await);
    r.json().as_array().is_some_and(|a| !a.is_empty())
}

#[tokio::test]
async fn sessions_locks_and_ttls_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let args = ["--data-dir", data.as_str(), "--node-name", "n1"];
    let mut server = ServerProcess::start(bin(), &args);
    let idle = session(&server, json!({"Name": "idle", "TTL": "10s"})).await;
    let renewed = session(&server, json!({"Name": "renewed", "TTL": "10s"})).await;
    let forever = session(&server, json!({"Name": "forever", "LockDelay": "0s"})).await;
    for (key, id) in [
        ("l/idle", &idle),
        ("l/renewed", &renewed),
        ("l/forever", &forever),
    ] {
        let r = ok(put(server.at(&format!("/v1/kv/{key}?acquire={id}")), "v").await);
        assert_eq!(r.text.trim(), "true", "{key}");
    }
    let before = ok(get(server.at(&format!("/v1/session/info/{idle}"))).await);
    let kv_before = ok(get(server.at("/v1/kv/l/?recurse")).await);

    server.kill();
    let server = ServerProcess::start(bin(), &args);
    let restarted = Instant::now();
    let after = ok(get(server.at(&format!("/v1/session/info/{idle}"))).await);
    assert_eq!(
        after.json(),
        before.json(),
        "the session comes back as it was"
    );
    assert!(after.index >= before.index);
    let kv_after = ok(get(server.at("/v1/kv/l/?recurse")).await);
    assert_eq!(
        kv_after.json(),
        kv_before.json(),
        "locks and LockIndex come back"
    );
    let list = ok(get(server.at("/v1/session/list")).await).json();
    assert_eq!(list.as_array().unwrap().len(), 3);

    // A restarted timer runs its full 2 × TTL: nothing expires early.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(exists(&server, &idle).await, "expired before 2 x TTL");
    let r = put(server.at(&format!("/v1/session/renew/{renewed}")), "").await;
    assert_eq!(r.status, 200, "renew after the restart: {}", r.text);

    // ...and then it does expire, releasing its lock (and only its own).
    while exists(&server, &idle).await {
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "the idle session was never expired after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone_after = restarted.elapsed();
    assert!(gone_after >= Duration::from_secs(20), "{gone_after:?}");
    assert_eq!(holder(&server, "l/idle").await, "");
    assert!(
        exists(&server, &renewed).await,
        "a renewed session lives on"
    );
    assert_eq!(holder(&server, "l/renewed").await, renewed);
    assert!(exists(&server, &forever).await);
    assert_eq!(holder(&server, "l/forever").await, forever);
}
