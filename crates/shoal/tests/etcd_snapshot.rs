//! `shoal snapshot save|restore`: embedded store → etcd cluster →
//! embedded store, the catalog and KV identical at the end, indexes kept.

mod common;

use common::*;
use serde_json::json;
use shoal_testkit::{EtcdCluster, ServerProcess};
use std::path::Path;
use std::process::Command;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

fn snapshot(verb: &str, file: &Path, server: &ServerProcess) {
    let out = Command::new(bin())
        .args(["snapshot", verb])
        .arg(file)
        .args(["--registry", &server.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "shoal snapshot {verb}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const BULK_INSTANCES: usize = 5_000;
const BULK_KEYS: usize = 2_000;

/// Registers 5,000 instances (10 per node) and 2,000 KV keys, 32 at a time.
async fn fill(server: &ServerProcess) {
    let mut jobs = tokio::task::JoinSet::new();
    let url = server.url.clone();
    let (instances, keys) = (BULK_INSTANCES, BULK_KEYS);
    for w in 0..32 {
        let url = url.clone();
        jobs.spawn(async move {
            for i in (w..instances).step_by(32) {
                let n = i / 10;
                let reg = json!({"Node": format!("bulk-{n}"), "Address": format!("10.1.{}.{}", n / 250, n % 250),
                    "Service": {"ID": format!("bulk-{i}"), "Service": "bulk", "Port": 9000 + i % 10, "Tags": ["t"]},
                    "Check": {"CheckID": format!("bulk-c-{i}"), "Name": "alive", "Status": "passing", "ServiceID": format!("bulk-{i}")}});
                ok(put_json(format!("{url}/v1/catalog/register"), &reg).await);
            }
            for i in (w..keys).step_by(32) {
                ok(put(format!("{url}/v1/kv/bulk/key-{i}"), format!("value {i} {}", "x".repeat(200))).await);
            }
        });
    }
    jobs.join_all().await;
}

/// Instances of `bulk` and keys under `bulk/` that a server shows now.
async fn bulk_counts(url: &str) -> (usize, usize) {
    let instances = ok(get(format!("{url}/v1/catalog/service/bulk?stale")).await).json();
    let keys = get(format!("{url}/v1/kv/bulk/?keys&stale")).await;
    let keys = if keys.status == reqwest::StatusCode::NOT_FOUND {
        0
    } else {
        ok(keys).json().as_array().map_or(0, Vec::len)
    };
    (instances.as_array().map_or(0, Vec::len), keys)
}

/// Waits (bounded) until `url` shows the whole bulk catalog.
async fn seen_all(url: &str) {
    for _ in 0..300 {
        if bulk_counts(url).await == (BULK_INSTANCES, BULK_KEYS) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{url} never showed the whole restored catalog");
}

/// What a client sees of the catalog and KV.
async fn view(s: &ServerProcess) -> Vec<String> {
    let mut out = Vec::new();
    for path in [
        "/v1/catalog/services",
        "/v1/catalog/nodes",
        "/v1/catalog/service/web",
        "/v1/health/service/web",
        "/v1/health/state/any",
        "/v1/kv/?recurse",
    ] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = s.at(&format!("{path}{sep}stale"));
        out.push(format!("{path} {}", ok(get(url).await).text));
    }
    out
}

#[tokio::test]
async fn a_catalog_moves_from_embedded_to_etcd_and_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("one");
    let one = ServerProcess::start(
        bin(),
        &["--data-dir", data.to_str().unwrap(), "--node-name", "solo"],
    );
    for i in 0..5 {
        ok(put_json(
            one.at("/v1/catalog/register"),
            &json!({"Node": format!("host-{i}"), "Address": format!("10.0.0.{i}"),
                    "Service": {"ID": format!("web-{i}"), "Service": "web", "Port": 8000 + i, "Tags": ["v1"]},
                    "Check": {"CheckID": format!("c-{i}"), "Name": "alive", "Status": "passing", "ServiceID": format!("web-{i}")}}),
        )
        .await);
        ok(put(
            one.at(&format!("/v1/kv/app/k{i}?flags={i}")),
            format!("value {i}"),
        )
        .await);
    }
    ok(delete(one.at("/v1/kv/app/k0")).await);
    // Large enough that a restore takes many etcd transactions at etcd's
    // default limits (the test cluster runs with them).
    fill(&one).await;
    let before = view(&one).await;
    let file1 = dir.path().join("from-embedded.snap");
    snapshot("save", &file1, &one);

    let etcd = EtcdCluster::start(3);
    let a = etcd.start_shoal(bin(), "server-a", &[]);
    let b = etcd.start_shoal(bin(), "server-b", &[]);
    for i in 0..30 {
        ok(put(a.at(&format!("/v1/kv/busy/{i}")), "x").await);
    }
    let index_before = ok(get(a.at("/v1/kv/busy/0")).await).index;
    // A reader on B during the restore sees the catalog before it or all
    // of it, never a part (in debug builds, 20 ms between reads against a
    // restore that takes seconds: many reads fall inside it).
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (url, done) = (b.url.clone(), done.clone());
        tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                seen.insert(bulk_counts(&url).await);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            seen
        })
    };
    let restore = {
        let (file, url) = (file1.clone(), a.url.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(bin())
                .args(["snapshot", "restore"])
                .arg(&file)
                .args(["--registry", &url])
                .output()
                .unwrap()
        })
    };
    let out = restore.await.unwrap();
    assert!(
        out.status.success(),
        "restore onto etcd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(get(b.at("/v1/kv/app/k1?consistent")).await);
    seen_all(&b.url).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = reader.await.unwrap();
    // Each read is of one view: none or all of the restored instances,
    // none or all of its keys (the two reads of a pair may straddle the
    // switch).
    assert!(
        seen.iter()
            .all(|(i, k)| [0, BULK_INSTANCES].contains(i) && [0, BULK_KEYS].contains(k)),
        "a reader saw a part of the restore: {seen:?}"
    );
    ok(get(b.at("/v1/kv/app/k1?consistent")).await);
    assert_eq!(
        view(&b).await,
        before,
        "server B on etcd shows the embedded catalog"
    );
    // The catalog index goes on past where etcd's catalog was.
    ok(put(b.at("/v1/kv/after"), "x").await);
    let after = ok(get(b.at("/v1/kv/after")).await).index;
    assert!(
        after > index_before,
        "the index went back: {after} after {index_before}"
    );
    ok(delete(b.at("/v1/kv/after")).await);
    let file2 = dir.path().join("from-etcd.snap");
    snapshot("save", &file2, &b);

    let data2 = dir.path().join("two");
    let two = ServerProcess::start(
        bin(),
        &[
            "--data-dir",
            data2.to_str().unwrap(),
            "--node-name",
            "solo2",
        ],
    );
    snapshot("restore", &file2, &two);
    assert_eq!(
        view(&two).await,
        before,
        "back on the embedded store, nothing changed"
    );

    // Bad input: a clear refusal, nothing replaced.
    let junk = dir.path().join("junk.snap");
    std::fs::write(&junk, b"not a snapshot").unwrap();
    let out = Command::new(bin())
        .args(["snapshot", "restore"])
        .arg(&junk)
        .args(["--registry", &two.url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("400") && err.contains("not a shoal snapshot"),
        "{err}"
    );
    assert_eq!(view(&two).await, before);
}

/// etcd refuses a part half way through a restore (its request limit
/// lowered below the size of the parts holding large values; the first
/// parts, of small keys, go in): the restore fails saying so, both
/// servers go on showing the catalog from before it, writes are refused,
/// and a server that starts now refuses the half-written catalog and says
/// why. Another restore then replaces it, keys of the failed parts too.
#[tokio::test]
async fn a_restore_that_fails_half_way_leaves_the_old_catalog_in_view() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("one");
    let one = ServerProcess::start(
        bin(),
        &["--data-dir", data.to_str().unwrap(), "--node-name", "solo"],
    );
    let mut jobs = tokio::task::JoinSet::new();
    for w in 0..16 {
        let url = one.url.clone();
        jobs.spawn(async move {
            for i in (w..400).step_by(16) {
                ok(put(format!("{url}/v1/kv/a/{i}"), "small").await);
                ok(put(format!("{url}/v1/kv/z/{i}"), "v".repeat(6000)).await);
            }
        });
    }
    jobs.join_all().await;
    let file = dir.path().join("big.snap");
    snapshot("save", &file, &one);

    let etcd = EtcdCluster::start_with(
        3,
        shoal_testkit::EtcdOptions {
            args: vec!["--max-request-bytes".into(), (600 << 10).to_string()],
            ..Default::default()
        },
    );
    let a = etcd.start_shoal(bin(), "server-a", &[]);
    let b = etcd.start_shoal(bin(), "server-b", &[]);
    ok(put(a.at("/v1/kv/before"), "old").await);
    let out = Command::new(bin())
        .args(["snapshot", "restore"])
        .arg(&file)
        .args(["--registry", &a.url])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the restore cannot fit: {err}");
    assert!(err.contains("parts and stopped after"), "{err}");
    for s in [&a, &b] {
        assert_eq!(ok(get(s.at("/v1/kv/before?raw")).await).text, "old");
        let big = get(s.at("/v1/kv/a/?keys")).await;
        assert_eq!(big.status, reqwest::StatusCode::NOT_FOUND, "{}", big.text);
        let w = put(s.at("/v1/kv/during"), "x").await;
        assert_eq!(
            w.status,
            reqwest::StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            w.text
        );
    }
    let c_dir = dir.path().join("c");
    let mut c = Command::new(bin());
    c.args([
        "server",
        "--http-addr",
        "127.0.0.1:0",
        "--dns-addr",
        "127.0.0.1:0",
    ])
    .args(["--store", "etcd", "--etcd-endpoints", &etcd.endpoints()])
    .arg("--data-dir")
    .arg(&c_dir)
    .args(["--node-name", "server-c"]);
    let (status, why) = shoal_testkit::run_to_exit(c, std::time::Duration::from_secs(60));
    let status = status.expect("a server kept running on a half-written catalog");
    assert!(!status.success());
    assert!(why.contains("half written"), "{why}");

    // Another, small snapshot restored through B: it replaces the
    // half-written catalog, including the keys the failed parts wrote.
    ok(delete(one.at("/v1/kv/a/?recurse")).await);
    ok(delete(one.at("/v1/kv/z/?recurse")).await);
    ok(put(one.at("/v1/kv/small"), "s").await);
    let small = view(&one).await;
    let file2 = dir.path().join("small.snap");
    snapshot("save", &file2, &one);
    etcd.compact();
    etcd.etcdctl(&["defrag", "--cluster"])
        .expect("etcdctl defrag");
    etcd.etcdctl(&["alarm", "disarm"])
        .expect("etcdctl alarm disarm");
    snapshot("restore", &file2, &b);
    for s in [&a, &b] {
        // The refused writes above made the server report no leader until
        // its next probe of etcd (every second) passes.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let r = get(s.at("/v1/kv/small?consistent")).await;
            if r.status == reqwest::StatusCode::OK {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{}: {}",
                r.status,
                r.text
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert_eq!(view(s).await, small, "on {}", s.url);
    }
    ok(put(a.at("/v1/kv/during"), "x").await);
    etcd.start_shoal(bin(), "server-c", &[]);
}
