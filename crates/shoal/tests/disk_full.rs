//! A full disk, for real: the data directory on an 8 MiB tmpfs (mounted
//! by the test; it needs root, and is skipped loudly without it). Writes
//! fail while it is full; meanwhile the server says it has no leader
//! (`/v1/status/leader`, `No cluster leader` on reads, `KnownLeader:
//! false` on stale reads, a metric) instead of serving health it could not
//! record as fresh; once room is made it recovers by itself, without a
//! restart, and records the check results it missed.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;
use shoal_testkit::ServerProcess;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs { dir })
    }
    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

async fn leader(s: &ServerProcess) -> String {
    ok(get(s.at("/v1/status/leader")).await)
        .json()
        .as_str()
        .unwrap_or("?")
        .to_string()
}

/// The status of the only check of service `web`, read with `?stale`,
/// and the `X-Consul-KnownLeader` header of that answer.
async fn web_check_stale(s: &ServerProcess) -> (String, String) {
    let r = client()
        .get(s.at("/v1/health/checks/web?stale"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let known = r.headers()["X-Consul-KnownLeader"]
        .to_str()
        .unwrap()
        .to_string();
    let body: serde_json::Value = r.json().await.unwrap();
    (body[0]["Status"].as_str().unwrap_or("").to_string(), known)
}

async fn metric(s: &ServerProcess, name: &str) -> String {
    let text = ok(get(s.at("/metrics")).await).text;
    let line = text.lines().find(|l| l.starts_with(&format!("{name} ")));
    line.unwrap_or_else(|| panic!("no {name} in /metrics"))
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string()
}

/// Polls `cond` every 100 ms for at most `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_full_disk_is_reported_and_recovered_from_without_a_restart() {
    let fs = match Tmpfs::mount("8m") {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("SKIPPED a_full_disk_is_reported_and_recovered_from_without_a_restart: cannot mount a tmpfs (needs root): {e}");
            return;
        }
    };
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, vec![7u8; 3 << 20]).unwrap();
    let data = fs.path().join("data");
    let s = ServerProcess::start(bin(), &["--data-dir", data.to_str().unwrap()]);

    // An instance whose TCP check passes while this listener is open.
    let instance = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = instance.local_addr().unwrap().port();
    let reg = json!({"ID": "web-1", "Name": "web", "Port": port, "Address": "127.0.0.1",
        "Check": {"TCP": format!("127.0.0.1:{port}"), "Interval": "1s"}});
    ok(put_json(s.at("/v1/agent/service/register"), &reg).await);
    eventually(Duration::from_secs(10), "the check passes", || async {
        web_check_stale(&s).await.0 == "passing"
    })
    .await;
    assert_eq!(leader(&s).await, "127.0.0.1:8300");
    assert_eq!(metric(&s, "shoal_catalog_store_failing").await, "0");

    // Fill the disk with 100 KB values until a write fails.
    let value = "x".repeat(100_000);
    let mut refused = None;
    for i in 0..200 {
        let r = put(s.at(&format!("/v1/kv/fill/{i}")), &value).await;
        if r.status != StatusCode::OK {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("8 MiB filled without a failed write");
    assert_eq!(
        refused.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        refused.text
    );
    assert!(refused.text.contains("storage error"), "{}", refused.text);
    assert!(
        !refused.text.contains("storage error: storage error"),
        "{}",
        refused.text
    );
    // A failed commit can give pages back to the file system, and a small
    // write may then fit: take every byte that is left, so the store stays
    // failing until the test makes room.
    let seal = fs.path().join("seal");
    fill_until_full(&seal);
    // The database file keeps free pages of its own, so small commits
    // (a check's result, say) may still fit; but the store stays failing
    // until its probe has written and synced new data beside it, which
    // cannot happen before the test makes room.
    for i in 0..20 {
        let _ = put(s.at(&format!("/v1/kv/small/{i}")), "y").await;
    }

    // The instance dies while nothing can be recorded.
    drop(instance);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(leader(&s).await, "", "no leader while the store fails");
    let r = get(s.at("/v1/health/service/web")).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    assert!(r.text.contains("No cluster leader"), "{}", r.text);
    let r = get(s.at("/v1/kv/fill/0")).await;
    assert!(r.text.contains("No cluster leader"), "{}", r.text);
    let (status, known) = web_check_stale(&s).await;
    // `passing` if the check's result could not be recorded, `critical`
    // if it fitted in the database's own free pages: either way a stale
    // read says it may be stale.
    assert!(
        status == "passing" || status == "critical",
        "check status {status}"
    );
    assert_eq!(known, "false", "a stale read says it may be stale");
    assert_eq!(metric(&s, "shoal_catalog_store_failing").await, "1");
    assert_ne!(metric(&s, "shoal_catalog_store_errors_total").await, "0");

    // Make room: the store recovers by itself, and the check's result,
    // which could not be recorded, is.
    std::fs::remove_file(&ballast).unwrap();
    std::fs::remove_file(&seal).unwrap();
    eventually(Duration::from_secs(10), "the leader is back", || async {
        leader(&s).await == "127.0.0.1:8300"
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "the dead instance is critical",
        || async { web_check_stale(&s).await == ("critical".into(), "true".into()) },
    )
    .await;
    let r = ok(get(s.at("/v1/health/service/web?passing")).await);
    assert_eq!(r.json(), json!([]), "no passing instance is left");
    ok(put(s.at("/v1/kv/after"), "ok").await);
    assert_eq!(ok(get(s.at("/v1/kv/after?raw")).await).text, "ok");
    assert_eq!(metric(&s, "shoal_catalog_store_failing").await, "0");
    drop(s);
}

/// Writes `path` until the file system has no byte left (ENOSPC).
fn fill_until_full(path: &std::path::Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4096];
    for _ in 0..(64 << 8) {
        match file.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = file.sync_all();
}
