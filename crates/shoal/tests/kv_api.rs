//! `/v1/kv/*` over real HTTP.

mod common;

use base64::Engine;
use common::*;
use reqwest::StatusCode;
use serde_json::json;
use shoal_testkit::TestServer;

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn put_get_flags_raw_and_delete() {
    let s = TestServer::start().await;
    assert_eq!(
        ok(put(&s.at("/v1/kv/app/config?flags=42"), "hello").await).text,
        "true"
    );
    let got = ok(get(&s.at("/v1/kv/app/config")).await);
    let e = &got.json()[0];
    assert_eq!(e["Key"], "app/config");
    assert_eq!(e["Value"], b64(b"hello"));
    assert_eq!(e["Flags"], 42);
    assert_eq!(e["LockIndex"], 0);
    assert_eq!(e["CreateIndex"], e["ModifyIndex"]);
    assert_eq!(got.index, e["ModifyIndex"].as_u64().unwrap());

    let raw = ok(get(&s.at("/v1/kv/app/config?raw")).await);
    assert_eq!(raw.text, "hello");

    let binary: Vec<u8> = (0..=255u8).collect();
    let r = call(
        reqwest::Method::PUT,
        &s.at("/v1/kv/bin"),
        Some(binary.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        ok(get(&s.at("/v1/kv/bin")).await).json()[0]["Value"],
        b64(&binary)
    );

    ok(put(&s.at("/v1/kv/empty"), "").await);
    assert_eq!(
        ok(get(&s.at("/v1/kv/empty")).await).json()[0]["Value"],
        json!(null)
    );

    assert_eq!(ok(delete(&s.at("/v1/kv/app/config")).await).text, "true");
    let missing = get(&s.at("/v1/kv/app/config")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.index > 0, "a 404 still carries X-Consul-Index");
}

#[tokio::test]
async fn recurse_keys_and_separator() {
    let s = TestServer::start().await;
    for key in ["web/a", "web/b/c", "web/b/d", "db/x"] {
        ok(put(&s.at(&format!("/v1/kv/{key}")), key).await);
    }
    let all = ok(get(&s.at("/v1/kv/web/?recurse")).await).json();
    let keys: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["web/a", "web/b/c", "web/b/d"]);

    let cases = [
        ("/v1/kv/web/?keys", json!(["web/a", "web/b/c", "web/b/d"])),
        ("/v1/kv/web/?keys&separator=/", json!(["web/a", "web/b/"])),
        ("/v1/kv/?keys&separator=/", json!(["db/", "web/"])),
        (
            "/v1/kv/?keys",
            json!(["db/x", "web/a", "web/b/c", "web/b/d"]),
        ),
    ];
    for (path, want) in cases {
        assert_eq!(ok(get(&s.at(path)).await).json(), want, "{path}");
    }
    assert_eq!(
        get(&s.at("/v1/kv/none/?recurse")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&s.at("/v1/kv/none/?keys")).await.status,
        StatusCode::NOT_FOUND
    );

    assert_eq!(ok(delete(&s.at("/v1/kv/web/?recurse")).await).text, "true");
    let left = ok(get(&s.at("/v1/kv/?recurse")).await).json();
    assert_eq!(left.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn cas_create_update_and_delete() {
    let s = TestServer::start().await;
    assert_eq!(ok(put(&s.at("/v1/kv/lock?cas=0"), "a").await).text, "true");
    assert_eq!(
        ok(put(&s.at("/v1/kv/lock?cas=0"), "b").await).text,
        "false",
        "cas=0 only creates"
    );
    let idx = ok(get(&s.at("/v1/kv/lock")).await).json()[0]["ModifyIndex"]
        .as_u64()
        .unwrap();
    assert_eq!(
        ok(put(&s.at(&format!("/v1/kv/lock?cas={}", idx + 1)), "c").await).text,
        "false"
    );
    assert_eq!(
        ok(put(&s.at(&format!("/v1/kv/lock?cas={idx}")), "d").await).text,
        "true"
    );
    assert_eq!(ok(get(&s.at("/v1/kv/lock?raw")).await).text, "d");
    assert_eq!(
        ok(delete(&s.at(&format!("/v1/kv/lock?cas={idx}"))).await).text,
        "false"
    );
    let idx2 = ok(get(&s.at("/v1/kv/lock")).await).json()[0]["ModifyIndex"]
        .as_u64()
        .unwrap();
    assert_eq!(
        ok(delete(&s.at(&format!("/v1/kv/lock?cas={idx2}"))).await).text,
        "true"
    );
}

#[tokio::test]
async fn cas_race_two_writers_one_wins() {
    let s = TestServer::start().await;
    ok(put(&s.at("/v1/kv/leader"), "nobody").await);
    for round in 0..20 {
        let idx = ok(get(&s.at("/v1/kv/leader")).await).json()[0]["ModifyIndex"]
            .as_u64()
            .unwrap();
        let a = put(
            s.at(&format!("/v1/kv/leader?cas={idx}")),
            format!("a{round}"),
        );
        let b = put(
            s.at(&format!("/v1/kv/leader?cas={idx}")),
            format!("b{round}"),
        );
        let (a, b) = tokio::join!(a, b);
        let wins: Vec<&str> = [&a, &b]
            .iter()
            .filter(|r| r.text == "true")
            .map(|r| r.text.as_str())
            .collect();
        assert_eq!(
            wins.len(),
            1,
            "round {round}: exactly one writer wins ({} / {})",
            a.text,
            b.text
        );
        let value = ok(get(&s.at("/v1/kv/leader?raw")).await).text;
        let winner = if a.text == "true" {
            format!("a{round}")
        } else {
            format!("b{round}")
        };
        assert_eq!(
            value, winner,
            "round {round}: the stored value is the winner's"
        );
    }
}

#[tokio::test]
async fn many_concurrent_creates_with_cas_zero_have_one_winner() {
    let s = TestServer::start().await;
    let attempts: Vec<_> = (0..32)
        .map(|i| put(s.at("/v1/kv/once?cas=0"), format!("w{i}")))
        .collect();
    let results = futures::future::join_all(attempts).await;
    assert_eq!(results.iter().filter(|r| r.text == "true").count(), 1);
    assert_eq!(results.iter().filter(|r| r.text == "false").count(), 31);
}
