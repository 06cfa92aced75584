//! `/v1/agent/*` over real HTTP.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;
use shoal_testkit::TestServer;

async fn health(s: &TestServer, service: &str) -> serde_json::Value {
    ok(get(&s.at(&format!("/v1/health/service/{service}"))).await).json()
}

#[tokio::test]
async fn register_with_checks_list_and_deregister() {
    let s = TestServer::start().await;
    let def = json!({
        "ID": "api-1", "Name": "api", "Port": 9000, "Address": "127.0.0.1",
        "Tags": ["v1"], "Meta": {"Owner_Team": "core"}, "Weights": {"Passing": 5, "Warning": 1},
        "Checks": [
            {"CheckID": "api-ttl", "Name": "ttl", "TTL": "30s", "Status": "passing"},
            {"HTTP": "http://127.0.0.1:9000/health", "Interval": "5s", "Timeout": "1s"},
            {"TCP": "127.0.0.1:9000", "Interval": "10s", "DeregisterCriticalServiceAfter": "1m"}
        ]
    });
    ok(put_json(&s.at("/v1/agent/service/register"), &def).await);

    let services = ok(get(&s.at("/v1/agent/services")).await).json();
    let api = &services["api-1"];
    assert_eq!(api["Service"], "api");
    assert_eq!(api["Port"], 9000);
    assert_eq!(
        api["Meta"]["Owner_Team"], "core",
        "user map keys are kept as sent"
    );
    assert_eq!(api["Weights"]["Passing"], 5);
    assert_eq!(api["Datacenter"], "dc1");

    let one = ok(get(&s.at("/v1/agent/service/api-1")).await).json();
    assert_eq!(one["ID"], "api-1");
    assert!(one["ContentHash"].as_str().is_some_and(|h| !h.is_empty()));

    let checks = ok(get(&s.at("/v1/agent/checks")).await).json();
    assert_eq!(checks["api-ttl"]["Status"], "passing");
    assert_eq!(checks["api-ttl"]["Type"], "ttl");
    assert_eq!(checks["service:api-1:2"]["Type"], "http");
    assert_eq!(
        checks["service:api-1:2"]["Status"], "critical",
        "new checks start critical"
    );
    assert_eq!(checks["service:api-1:2"]["Definition"]["Timeout"], "1s");
    assert_eq!(
        checks["service:api-1:3"]["Definition"]["DeregisterCriticalServiceAfter"],
        "1m0s"
    );
    assert_eq!(checks["serfHealth"]["Status"], "passing");

    let entries = health(&s, "api").await;
    assert_eq!(entries[0]["Node"]["Node"], "test-node");
    assert_eq!(entries[0]["Checks"].as_array().unwrap().len(), 4);

    ok(put(&s.at("/v1/agent/service/deregister/api-1"), "").await);
    assert_eq!(health(&s, "api").await, json!([]));
    let checks = ok(get(&s.at("/v1/agent/checks")).await).json();
    assert!(
        checks.get("api-ttl").is_none(),
        "a service's checks leave with it"
    );
    let again = put(&s.at("/v1/agent/service/deregister/api-1"), "").await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert!(again.text.contains("Unknown service ID"));
    let gone = get(&s.at("/v1/agent/service/api-1")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn snake_case_and_lowercase_keys_work_like_consul() {
    let s = TestServer::start().await;
    let def = json!({"name": "low", "port": 1, "enable_tag_override": true,
                     "check": {"ttl": "10s", "deregister_critical_service_after": "90s"}});
    ok(put_json(&s.at("/v1/agent/service/register"), &def).await);
    let svc = ok(get(&s.at("/v1/agent/service/low")).await).json();
    assert_eq!(svc["EnableTagOverride"], true);
    let checks = ok(get(&s.at("/v1/agent/checks")).await).json();
    assert_eq!(
        checks["service:low"]["Definition"]["DeregisterCriticalServiceAfter"],
        "1m30s"
    );
}

#[tokio::test]
async fn ttl_pass_warn_fail_update() {
    let s = TestServer::start().await;
    ok(put_json(
        &s.at("/v1/agent/service/register"),
        &json!({"Name": "db", "Port": 5432}),
    )
    .await);
    let check = json!({"ID": "db-ttl", "Name": "db ttl", "ServiceID": "db", "TTL": "15s"});
    ok(put_json(&s.at("/v1/agent/check/register"), &check).await);

    let status = |s: &TestServer| {
        let url = s.at("/v1/agent/checks");
        async move {
            let c = ok(get(&url).await).json();
            (
                c["db-ttl"]["Status"].as_str().unwrap().to_string(),
                c["db-ttl"]["Output"].as_str().unwrap().to_string(),
            )
        }
    };
    assert_eq!(status(&s).await.0, "critical");
    let steps = [
        (
            "/v1/agent/check/pass/db-ttl?note=all%20good",
            "passing",
            "all good",
        ),
        ("/v1/agent/check/warn/db-ttl?note=slow", "warning", "slow"),
        ("/v1/agent/check/fail/db-ttl", "critical", ""),
    ];
    for (path, want, output) in steps {
        ok(put(&s.at(path), "").await);
        assert_eq!(
            status(&s).await,
            (want.to_string(), output.to_string()),
            "{path}"
        );
    }
    ok(put_json(
        &s.at("/v1/agent/check/update/db-ttl"),
        &json!({"Status": "passing", "Output": "fine"}),
    )
    .await);
    assert_eq!(status(&s).await, ("passing".into(), "fine".into()));
    let passing = ok(get(&s.at("/v1/health/service/db?passing")).await).json();
    assert_eq!(passing.as_array().unwrap().len(), 1);

    let bad = put_json(
        &s.at("/v1/agent/check/update/db-ttl"),
        &json!({"Status": "great"}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let missing = put(&s.at("/v1/agent/check/pass/nope"), "").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    ok(put(&s.at("/v1/agent/check/deregister/db-ttl"), "").await);
    let gone = put(&s.at("/v1/agent/check/deregister/db-ttl"), "").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pass_on_a_non_ttl_check_is_refused() {
    let s = TestServer::start().await;
    let def = json!({"Name": "web", "Port": 80, "Check": {"HTTP": "http://127.0.0.1:1/", "Interval": "10s"}});
    ok(put_json(&s.at("/v1/agent/service/register"), &def).await);
    let r = put(&s.at("/v1/agent/check/pass/service:web"), "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.text.contains("does not have associated TTL"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn maintenance_mode_takes_an_instance_out_and_back() {
    let s = TestServer::start().await;
    ok(put_json(
        &s.at("/v1/agent/service/register"),
        &json!({"Name": "web", "Port": 80}),
    )
    .await);
    let passing = |s: &TestServer| {
        let url = s.at("/v1/health/service/web?passing");
        async move { ok(get(&url).await).json().as_array().unwrap().len() }
    };
    assert_eq!(passing(&s).await, 1);
    ok(put(
        &s.at("/v1/agent/service/maintenance/web?enable=true&reason=deploy"),
        "",
    )
    .await);
    assert_eq!(passing(&s).await, 0);
    let checks = ok(get(&s.at("/v1/agent/checks")).await).json();
    assert_eq!(checks["_service_maintenance:web"]["Notes"], "deploy");
    ok(put(&s.at("/v1/agent/service/maintenance/web?enable=false"), "").await);
    assert_eq!(passing(&s).await, 1);

    let cases = [
        ("/v1/agent/service/maintenance/web", StatusCode::BAD_REQUEST),
        (
            "/v1/agent/service/maintenance/web?enable=maybe",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/agent/service/maintenance/nope?enable=true",
            StatusCode::NOT_FOUND,
        ),
    ];
    for (path, want) in cases {
        assert_eq!(put(&s.at(path), "").await.status, want, "{path}");
    }
}

#[tokio::test]
async fn self_and_members_describe_this_node() {
    let s = TestServer::start().await;
    let me = ok(get(&s.at("/v1/agent/self")).await).json();
    assert_eq!(me["Config"]["NodeName"], "test-node");
    assert_eq!(me["Config"]["Datacenter"], "dc1");
    assert_eq!(me["Config"]["Server"], true);
    assert_eq!(me["Member"]["Name"], "test-node");
    let members = ok(get(&s.at("/v1/agent/members")).await).json();
    assert_eq!(members.as_array().unwrap().len(), 1);
    assert_eq!(members[0]["Name"], "test-node");
    assert_eq!(members[0]["Status"], 1);
}

#[tokio::test]
async fn agent_services_filter() {
    let s = TestServer::start().await;
    for (id, tag) in [("a", "blue"), ("b", "green")] {
        ok(put_json(
            &s.at("/v1/agent/service/register"),
            &json!({"ID": id, "Name": "web", "Port": 80, "Tags": [tag]}),
        )
        .await);
    }
    let got =
        ok(get(&s.at("/v1/agent/services?filter=Tags%20contains%20%22green%22")).await).json();
    let ids: Vec<&String> = got.as_object().unwrap().keys().collect();
    assert_eq!(ids, vec!["b"]);
}

#[tokio::test]
async fn agent_service_blocks_on_its_content_hash() {
    let s = TestServer::start().await;
    let def = json!({"ID": "h-1", "Name": "hashed", "Port": 80});
    ok(put_json(s.at("/v1/agent/service/register"), &def).await);
    let first = ok(get(s.at("/v1/agent/service/h-1")).await);
    let hash = first.json()["ContentHash"].as_str().unwrap().to_string();
    let url = s.at(&format!("/v1/agent/service/h-1?hash={hash}&wait=30s"));
    let waiter = tokio::spawn(async move { get(url).await });
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    ok(put_json(
        s.at("/v1/agent/service/register"),
        &json!({"Name": "other", "Port": 1}),
    )
    .await);
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert!(
        !waiter.is_finished(),
        "another service changing must not end the wait"
    );
    ok(put_json(
        s.at("/v1/agent/service/register"),
        &json!({"ID": "h-1", "Name": "hashed", "Port": 81}),
    )
    .await);
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.json()["Port"], 81);
    assert_ne!(r.json()["ContentHash"], hash);
    let quick = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        get(s.at(&format!("/v1/agent/service/h-1?hash={hash}&wait=30s"))),
    )
    .await
    .expect("a stale hash answers at once");
    assert_eq!(quick.json()["Port"], 81);
}
