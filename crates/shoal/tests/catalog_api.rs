//! `/v1/catalog/*` and `/v1/health/*` over real HTTP.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;
use shoal_testkit::TestServer;

async fn register_web(s: &TestServer, node: &str, id: &str, tags: &[&str], status: &str) {
    let body = json!({
        "Node": node,
        "Address": format!("10.0.0.{}", node.len()),
        "NodeMeta": {"rack": "r1"},
        "Service": {"ID": id, "Service": "web", "Port": 8080, "Tags": tags, "Meta": {"env": "prod"}},
        "Check": {"CheckID": format!("chk-{id}"), "Name": "http", "Status": status, "ServiceID": id,
                  "Definition": {"HTTP": "http://127.0.0.1:8080/health", "Interval": "10s"}}
    });
    let r = ok(put_json(&s.at("/v1/catalog/register"), &body).await);
    assert_eq!(r.text, "true");
}

#[tokio::test]
async fn register_and_read_back_through_every_catalog_endpoint() {
    let s = TestServer::start().await;
    register_web(&s, "n1", "web-1", &["v1", "blue"], "passing").await;
    register_web(&s, "node2", "web-2", &["v2"], "critical").await;

    let services = ok(get(&s.at("/v1/catalog/services")).await);
    assert!(services.index > 0);
    assert_eq!(services.json()["web"], json!(["blue", "v1", "v2"]));

    let entries = ok(get(&s.at("/v1/catalog/service/web")).await).json();
    let first = &entries[0];
    assert_eq!(first["Node"], "n1");
    assert_eq!(first["Address"], "10.0.0.2");
    assert_eq!(first["ServiceID"], "web-1");
    assert_eq!(first["ServiceName"], "web");
    assert_eq!(first["ServicePort"], 8080);
    assert_eq!(first["ServiceTags"], json!(["v1", "blue"]));
    assert_eq!(first["ServiceMeta"]["env"], "prod");
    assert_eq!(first["NodeMeta"]["rack"], "r1");
    assert_eq!(first["ServiceWeights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(first["Datacenter"], "dc1");

    let tagged = ok(get(&s.at("/v1/catalog/service/web?tag=v2")).await).json();
    assert_eq!(tagged.as_array().unwrap().len(), 1);
    assert_eq!(tagged[0]["ServiceID"], "web-2");

    let filtered =
        ok(get(&s.at("/v1/catalog/service/web?filter=ServiceTags%20contains%20%22blue%22")).await)
            .json();
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    assert_eq!(filtered[0]["ServiceID"], "web-1");
    let by_meta = ok(get(
        &s.at("/v1/catalog/service/web?filter=ServiceMeta.env%20%3D%3D%20%22prod%22")
    )
    .await)
    .json();
    assert_eq!(by_meta.as_array().unwrap().len(), 2);

    let nodes = ok(get(&s.at("/v1/catalog/nodes")).await).json();
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Node"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["n1", "node2", "test-node"]);

    let node = ok(get(&s.at("/v1/catalog/node/n1")).await).json();
    assert_eq!(node["Node"]["Address"], "10.0.0.2");
    assert_eq!(node["Services"]["web-1"]["Service"], "web");
    let missing = ok(get(&s.at("/v1/catalog/node/nope")).await);
    assert_eq!(
        missing.text, "null",
        "Consul answers null for an unknown node"
    );

    assert_eq!(
        ok(get(&s.at("/v1/catalog/datacenters")).await).json(),
        json!(["dc1"])
    );
}

#[tokio::test]
async fn health_endpoints_filter_by_status_and_tag() {
    let s = TestServer::start().await;
    register_web(&s, "n1", "web-1", &["v1"], "passing").await;
    register_web(&s, "n2", "web-2", &["v1"], "critical").await;
    register_web(&s, "n3", "web-3", &["v2"], "warning").await;

    let all = ok(get(&s.at("/v1/health/service/web")).await).json();
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_eq!(all[0]["Service"]["ID"], "web-1");
    assert_eq!(all[0]["Checks"][0]["Status"], "passing");
    assert_eq!(
        all[0]["Checks"][0]["Definition"]["HTTP"],
        "http://127.0.0.1:8080/health"
    );
    assert_eq!(all[0]["Checks"][0]["Definition"]["Interval"], "10s");

    let passing = ok(get(&s.at("/v1/health/service/web?passing")).await).json();
    let ids: Vec<&str> = passing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Service"]["ID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["web-1"]);
    let passing_v2 = ok(get(&s.at("/v1/health/service/web?passing&tag=v2")).await).json();
    assert_eq!(passing_v2, json!([]));
    let v1 = ok(get(&s.at("/v1/health/service/web?tag=v1")).await).json();
    assert_eq!(v1.as_array().unwrap().len(), 2);

    let checks = ok(get(&s.at("/v1/health/checks/web")).await).json();
    assert_eq!(checks.as_array().unwrap().len(), 3);
    assert_eq!(checks[0]["ServiceName"], "web");

    let cases = [
        ("critical", vec!["chk-web-2"]),
        ("warning", vec!["chk-web-3"]),
    ];
    for (state, want) in cases {
        let got = ok(get(&s.at(&format!("/v1/health/state/{state}"))).await).json();
        let ids: Vec<&str> = got
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["CheckID"].as_str().unwrap())
            .collect();
        assert_eq!(ids, want, "state {state}");
    }
    let passing_checks = ok(get(&s.at("/v1/health/state/passing")).await).json();
    assert_eq!(
        passing_checks.as_array().unwrap().len(),
        2,
        "web-1's check and the server's serfHealth"
    );
    let any = ok(get(&s.at("/v1/health/state/any")).await).json();
    assert_eq!(any.as_array().unwrap().len(), 4);
    let bad = get(&s.at("/v1/health/state/sleepy")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn node_checks_count_for_every_service_on_the_node() {
    let s = TestServer::start().await;
    register_web(&s, "n1", "web-1", &[], "passing").await;
    let body = json!({"Node": "n1", "Address": "10.0.0.2", "Check": {"CheckID": "node-ok", "Name": "node", "Status": "critical"}});
    ok(put_json(&s.at("/v1/catalog/register"), &body).await);
    let passing = ok(get(&s.at("/v1/health/service/web?passing")).await).json();
    assert_eq!(
        passing,
        json!([]),
        "a critical node check makes the instance unhealthy"
    );
    let all = ok(get(&s.at("/v1/health/service/web")).await).json();
    assert_eq!(all[0]["Checks"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn deregister_service_check_and_node() {
    let s = TestServer::start().await;
    register_web(&s, "n1", "web-1", &[], "passing").await;
    register_web(&s, "n1", "web-9", &[], "passing").await;

    ok(put_json(
        &s.at("/v1/catalog/deregister"),
        &json!({"Node": "n1", "CheckID": "chk-web-9"}),
    )
    .await);
    let checks = ok(get(&s.at("/v1/health/checks/web")).await).json();
    assert_eq!(checks.as_array().unwrap().len(), 1);

    ok(put_json(
        &s.at("/v1/catalog/deregister"),
        &json!({"Node": "n1", "ServiceID": "web-1"}),
    )
    .await);
    let left = ok(get(&s.at("/v1/catalog/service/web")).await).json();
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["ServiceID"], "web-9");

    ok(put_json(&s.at("/v1/catalog/deregister"), &json!({"Node": "n1"})).await);
    assert_eq!(
        ok(get(&s.at("/v1/catalog/service/web")).await).json(),
        json!([])
    );
    // On etcd every server lists itself as service `consul`, as a Consul
    // server does (the embedded store's single server does not).
    let none = if shoal_testkit::store::on_etcd() {
        json!({"consul": []})
    } else {
        json!({})
    };
    assert_eq!(ok(get(&s.at("/v1/catalog/services")).await).json(), none);
    assert_eq!(ok(get(&s.at("/v1/catalog/node/n1")).await).text, "null");
}

#[tokio::test]
async fn status_leader_and_peers() {
    let s = TestServer::start().await;
    // One server alone reports Consul's usual RPC address; servers on etcd
    // report the HTTP address each registered there (see etcd/cluster.rs),
    // once the member list has been read.
    let me = if shoal_testkit::store::on_etcd() {
        s.addr.to_string()
    } else {
        "127.0.0.1:8300".to_string()
    };
    shoal_testkit::assert_eventually!(
        get(&s.at("/v1/status/leader")).await.json() == json!(me),
        "the leader is this server"
    );
    assert_eq!(ok(get(&s.at("/v1/status/peers")).await).json(), json!([me]));
}

#[tokio::test]
async fn accepted_consistency_dc_and_token_parameters() {
    let s = TestServer::start().await;
    register_web(&s, "n1", "web-1", &[], "passing").await;
    for q in [
        "?stale",
        "?consistent",
        "?dc=dc1",
        "?dc=",
        "?pretty",
        "?token=abc",
    ] {
        let r = ok(get(&s.at(&format!("/v1/catalog/service/web{q}"))).await);
        assert_eq!(r.json().as_array().unwrap().len(), 1, "{q}");
    }
    let r = reqwest::Client::new()
        .get(s.at("/v1/catalog/services"))
        .header("X-Consul-Token", "secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let other = get(&s.at("/v1/catalog/services?dc=mars")).await;
    assert_eq!(other.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(other.text.contains("No path to datacenter"));
}

/// `/v1/catalog/services?filter=` and `?node-meta=`: the services with an
/// instance that matches, each with the matching instances' tags (as
/// Consul answers); a bad filter is refused; a filtered blocking query
/// wakes on a change it matches.
#[tokio::test]
async fn the_service_list_takes_a_filter_and_node_meta() {
    let s = TestServer::start().await;
    let reg = |node: &str, rack: &str, id: &str, name: &str, tags: &[&str]| {
        json!({
            "Node": node, "Address": "10.0.0.9", "NodeMeta": {"rack": rack},
            "Service": {"ID": id, "Service": name, "Port": 80, "Tags": tags}
        })
    };
    for body in [
        reg("fa", "r1", "web-1", "web", &["v1"]),
        reg("fb", "r2", "web-2", "web", &["v2"]),
        reg("fb", "r2", "db-1", "db", &["primary"]),
    ] {
        ok(put_json(&s.at("/v1/catalog/register"), &body).await);
    }
    let list = |q: &str| {
        let url = s.at(&format!("/v1/catalog/services?{q}"));
        async move { get(&url).await }
    };
    let by_tag = ok(list("filter=ServiceTags%20contains%20%22v1%22").await);
    assert_eq!(by_tag.json(), json!({"web": ["v1"]}));
    assert!(by_tag.index > 0);
    let by_meta = ok(list("filter=NodeMeta.rack%20%3D%3D%20%22r2%22").await).json();
    assert_eq!(by_meta, json!({"db": ["primary"], "web": ["v2"]}));
    let node_meta = ok(list("node-meta=rack:r1").await).json();
    assert_eq!(node_meta, json!({"web": ["v1"]}));
    let none = ok(list("filter=ServiceName%20%3D%3D%20%22nope%22").await).json();
    assert_eq!(none, json!({}));
    // Unfiltered, every tag of every instance.
    let all = ok(list("").await).json();
    assert_eq!(all["web"], json!(["v1", "v2"]));

    let bad = list("filter=ServiceTags%20contains").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    let bad_meta = list("node-meta=rack").await;
    assert_eq!(
        bad_meta.status,
        StatusCode::BAD_REQUEST,
        "{}",
        bad_meta.text
    );

    // Blocking on the filtered list: a new matching instance wakes it.
    let q = format!(
        "filter=ServiceTags%20contains%20%22v1%22&index={}&wait=10s",
        by_tag.index
    );
    let waiting = tokio::spawn(list(&q));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "returned before any change");
    ok(put_json(
        &s.at("/v1/catalog/register"),
        &reg("fc", "r3", "api-1", "api", &["v1"]),
    )
    .await);
    let woke = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
        .await
        .expect("the filtered blocking query did not wake")
        .unwrap();
    let woke = ok(woke);
    assert!(woke.index > by_tag.index);
    assert_eq!(woke.json(), json!({"api": ["v1"], "web": ["v1"]}));
}
