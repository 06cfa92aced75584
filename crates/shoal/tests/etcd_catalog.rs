//! Several `shoal server --store etcd` on one real 3-member etcd cluster:
//! one catalog, the same indexes everywhere, one winner of every race.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;
use shoal_testkit::{EtcdCluster, ServerProcess};
use std::path::Path;
use std::time::{Duration, Instant};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

fn two_servers(etcd: &EtcdCluster) -> (ServerProcess, ServerProcess) {
    (
        etcd.start_shoal(bin(), "server-a", &[]),
        etcd.start_shoal(bin(), "server-b", &[]),
    )
}

fn registration(node: &str, id: &str, service: &str) -> serde_json::Value {
    json!({
        "Node": node, "Address": "10.1.0.1",
        "Service": {"ID": id, "Service": service, "Port": 8080},
    })
}

#[tokio::test]
async fn a_write_on_a_is_read_on_b_and_wakes_a_blocking_query_there() {
    let etcd = EtcdCluster::start(3);
    let (a, b) = two_servers(&etcd);
    let before = ok(get(b.at("/v1/health/service/web")).await);
    assert_eq!(before.json(), json!([]));
    let index = before.index;
    let waiter = tokio::spawn({
        let url = b.at(&format!("/v1/health/service/web?index={index}&wait=30s"));
        async move {
            let started = Instant::now();
            (get(url).await, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "B's blocking query returned before any write"
    );
    ok(put_json(
        a.at("/v1/catalog/register"),
        &registration("n1", "web-1", "web"),
    )
    .await);
    let (woken, took) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("B's blocking query was not woken by A's write")
        .unwrap();
    let woken = ok(woken);
    assert!(took < Duration::from_secs(10));
    assert!(woken.index > index, "{} must pass {index}", woken.index);
    assert_eq!(woken.json()[0]["Service"]["ID"], "web-1");
    // KV written on B is read on A at once when asked `?consistent`.
    assert_eq!(ok(put(b.at("/v1/kv/app/config"), "v1").await).text, "true");
    let read = ok(get(a.at("/v1/kv/app/config?consistent&raw")).await);
    assert_eq!(read.text, "v1");
}

#[tokio::test]
async fn indexes_mean_the_same_on_every_server() {
    let etcd = EtcdCluster::start(3);
    let (a, b) = two_servers(&etcd);
    ok(put_json(
        a.at("/v1/catalog/register"),
        &registration("n1", "web-1", "web"),
    )
    .await);
    let on_a = ok(get(a.at("/v1/health/service/web")).await);
    let on_b = ok(get(b.at("/v1/health/service/web?consistent")).await);
    assert_eq!(on_a.index, on_b.index, "same catalog, same X-Consul-Index");
    assert_eq!(
        on_a.text, on_b.text,
        "same entries, same Create/ModifyIndex"
    );
    // A client moving from A to B continues with A's index: B neither
    // wakes it at once nor leaves it waiting once something changes.
    let started = Instant::now();
    let quiet = get(b.at(&format!(
        "/v1/health/service/web?index={}&wait=1s",
        on_a.index
    )))
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "woken wrongly"
    );
    assert_eq!(ok(quiet).index, on_a.index);
    let waiter = tokio::spawn(get(b.at(&format!(
        "/v1/health/service/web?index={}&wait=30s",
        on_a.index
    ))));
    tokio::time::sleep(Duration::from_millis(200)).await;
    ok(put_json(
        a.at("/v1/catalog/register"),
        &registration("n2", "web-2", "web"),
    )
    .await);
    let moved = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("left waiting")
        .unwrap();
    assert_eq!(ok(moved).json().as_array().unwrap().len(), 2);
    // Registered on A, deregistered on B: deregistered everywhere.
    let dereg = json!({"Node": "n2", "ServiceID": "web-2"});
    ok(put_json(b.at("/v1/catalog/deregister"), &dereg).await);
    for s in [&a, &b] {
        let list = ok(get(s.at("/v1/health/service/web?consistent")).await).json();
        assert_eq!(list.as_array().unwrap().len(), 1, "{}", s.url);
    }
}

#[tokio::test]
async fn concurrent_cas_on_two_servers_has_exactly_one_winner() {
    let etcd = EtcdCluster::start(3);
    let (a, b) = two_servers(&etcd);
    ok(put(a.at("/v1/kv/counter"), "0").await);
    for round in 0..20 {
        let current = ok(get(a.at("/v1/kv/counter?consistent")).await).json();
        let modify = current[0]["ModifyIndex"].as_u64().unwrap();
        let (ra, rb) = tokio::join!(
            put(
                a.at(&format!("/v1/kv/counter?cas={modify}")),
                format!("a{round}")
            ),
            put(
                b.at(&format!("/v1/kv/counter?cas={modify}")),
                format!("b{round}")
            ),
        );
        let (ra, rb) = (ok(ra).text, ok(rb).text);
        let winners = [&ra, &rb].iter().filter(|t| t.as_str() == "true").count();
        assert_eq!(winners, 1, "round {round}: A said {ra}, B said {rb}");
        let value = ok(get(b.at("/v1/kv/counter?consistent&raw")).await).text;
        let want = if ra == "true" {
            format!("a{round}")
        } else {
            format!("b{round}")
        };
        assert_eq!(value, want, "round {round}: the winner's value is kept");
    }
}

#[tokio::test]
async fn a_restarted_server_loads_the_catalog_from_etcd_and_serves() {
    let etcd = EtcdCluster::start(3);
    let mut a = etcd.start_shoal(bin(), "server-a", &[]);
    ok(put_json(
        a.at("/v1/catalog/register"),
        &registration("n1", "web-1", "web"),
    )
    .await);
    ok(put(a.at("/v1/kv/k"), "kept").await);
    let index = ok(get(a.at("/v1/kv/k")).await).index;
    a.restart();
    let k = ok(get(a.at("/v1/kv/k?raw")).await);
    assert_eq!(k.text, "kept");
    assert!(k.index >= index);
    let web = ok(get(a.at("/v1/catalog/service/web")).await).json();
    assert_eq!(web[0]["ServiceID"], "web-1");
    // And it writes on from there, the index still going up.
    ok(put(a.at("/v1/kv/k2"), "new").await);
    assert!(ok(get(a.at("/v1/kv/k2")).await).index > index);
    let _ = StatusCode::OK;
}

/// A `?consistent` read on B sees every write acknowledged on A before it
/// was sent, round after round: KV values, a KV delete, and a
/// registration read through the catalog and health endpoints.
#[tokio::test]
async fn a_consistent_read_on_b_sees_the_write_just_acknowledged_on_a() {
    let etcd = EtcdCluster::start(3);
    let (a, b) = two_servers(&etcd);
    for round in 0..50 {
        let (writer, reader) = if round % 5 == 4 { (&b, &a) } else { (&a, &b) };
        let value = format!("v{round}");
        assert_eq!(
            ok(put(writer.at("/v1/kv/rw/key"), &value).await).text,
            "true"
        );
        let read = get(reader.at("/v1/kv/rw/key?consistent&raw")).await;
        assert_eq!(read.text, value, "round {round}: {} missed it", reader.url);
        let node = format!("n{round}");
        let id = format!("web-{round}");
        ok(put_json(
            writer.at("/v1/catalog/register"),
            &registration(&node, &id, "rw"),
        )
        .await);
        let listed = ok(get(reader.at("/v1/health/service/rw?consistent")).await).json();
        assert_eq!(
            listed.as_array().unwrap().len(),
            round + 1,
            "round {round}: {} missed the registration",
            reader.url
        );
        let gone = format!("rw/gone{round}");
        ok(put(writer.at(&format!("/v1/kv/{gone}")), "x").await);
        let deleted = client()
            .delete(writer.at(&format!("/v1/kv/{gone}")))
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), StatusCode::OK);
        let after = get(reader.at(&format!("/v1/kv/{gone}?consistent"))).await;
        assert_eq!(
            after.status,
            StatusCode::NOT_FOUND,
            "round {round}: {} still has the deleted key",
            reader.url
        );
    }
}
