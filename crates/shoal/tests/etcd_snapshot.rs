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
    snapshot("restore", &file1, &a);
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
