//! `RemoteCatalog` (the Catalog trait over HTTP) against a real server,
//! and the generic instance watch on top of it.

use bytes::Bytes;
use shoal_api::{RemoteCatalog, RemoteConfig};
use shoal_catalog::blocking::watch_instances;
use shoal_catalog::{
    Catalog, Check, HealthStatus, InstanceFilter, Node, QueryOptions, Registration, Service, Topic,
};
use shoal_testkit::{assert_eventually, TestServer};
use std::sync::Arc;
use std::time::Duration;

fn reg(node: &str, id: &str, tags: &[&str], status: HealthStatus) -> Registration {
    Registration {
        node: Node {
            name: node.into(),
            address: "10.0.0.9".into(),
            ..Default::default()
        },
        service: Some(Service {
            id: id.into(),
            name: "web".into(),
            port: 80,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }),
        checks: vec![Check {
            check_id: format!("c-{id}"),
            name: "c".into(),
            service_id: id.into(),
            status,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn remote(s: &TestServer) -> RemoteCatalog {
    RemoteCatalog::new(RemoteConfig::new(s.url.clone())).unwrap()
}

#[tokio::test]
async fn writes_and_reads_round_trip() {
    let s = TestServer::start().await;
    let c = remote(&s);
    c.register(reg("n1", "web-1", &["a"], HealthStatus::Passing))
        .await
        .unwrap();
    c.register(reg("n2", "web-2", &["b"], HealthStatus::Critical))
        .await
        .unwrap();

    let services = c.services(QueryOptions::default()).await.unwrap();
    assert_eq!(
        services.value["web"],
        vec!["a".to_string(), "b".to_string()]
    );
    assert!(services.index > 0);

    let all = c
        .instances("web", &InstanceFilter::default(), QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(all.value.len(), 2);
    assert_eq!(all.value[0].node.address, "10.0.0.9");
    let passing = InstanceFilter {
        passing_only: true,
        ..Default::default()
    };
    let healthy = c
        .instances("web", &passing, QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(
        healthy
            .value
            .iter()
            .map(|e| e.service.id.as_str())
            .collect::<Vec<_>>(),
        vec!["web-1"]
    );
    let tagged = InstanceFilter {
        tags: vec!["b".into()],
        ..Default::default()
    };
    assert_eq!(
        c.instances("web", &tagged, QueryOptions::default())
            .await
            .unwrap()
            .value
            .len(),
        1
    );

    c.update_check(
        "n2",
        "c-web-2",
        HealthStatus::Passing,
        Some("ok now".into()),
    )
    .await
    .unwrap();
    let healthy = c
        .instances("web", &passing, QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(healthy.value.len(), 2);
    // The server has the output (read over its API, as any store serves it).
    let checks: serde_json::Value = reqwest::get(s.at("/v1/health/node/n2"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let check = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == "c-web-2")
        .expect("check c-web-2 on n2");
    assert_eq!(check["Output"], "ok now");
    assert!(c
        .update_check("n2", "nope", HealthStatus::Passing, None)
        .await
        .is_err());

    c.deregister_service("n1", "web-1").await.unwrap();
    c.deregister_node("n2").await.unwrap();
    assert!(c
        .instances("web", &InstanceFilter::default(), QueryOptions::default())
        .await
        .unwrap()
        .value
        .is_empty());
}

#[tokio::test]
async fn kv_round_trip_with_cas() {
    let s = TestServer::start().await;
    let c = remote(&s);
    assert!(c
        .kv_put("cfg/a b", Bytes::from_static(b"\x00bin"), 7, None)
        .await
        .unwrap());
    let e = c
        .kv_get("cfg/a b", QueryOptions::default())
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!((e.value.as_ref(), e.flags), (&b"\x00bin"[..], 7));
    assert!(!c.kv_put("cfg/a b", Bytes::new(), 0, Some(0)).await.unwrap());
    assert!(c
        .kv_put(
            "cfg/a b",
            Bytes::from_static(b"v2"),
            0,
            Some(e.modify_index)
        )
        .await
        .unwrap());
    assert!(c.kv_put("cfg/c", Bytes::new(), 0, None).await.unwrap());
    assert_eq!(
        c.kv_list("cfg/", QueryOptions::default())
            .await
            .unwrap()
            .value
            .len(),
        2
    );
    assert!(c
        .kv_get("missing", QueryOptions::default())
        .await
        .unwrap()
        .value
        .is_none());
    assert!(c.kv_delete("cfg/", true, None).await.unwrap());
    assert!(c
        .kv_list("cfg/", QueryOptions::default())
        .await
        .unwrap()
        .value
        .is_empty());
    let err = c.kv_put("", Bytes::new(), 0, None).await.unwrap_err();
    assert!(err.to_string().contains("Missing key name"), "{err}");
}

#[tokio::test]
async fn blocking_reads_and_wait_for_change() {
    let s = TestServer::start().await;
    let c = Arc::new(remote(&s));
    c.register(reg("n1", "web-1", &[], HealthStatus::Passing))
        .await
        .unwrap();
    let idx = c
        .instances("web", &InstanceFilter::default(), QueryOptions::default())
        .await
        .unwrap()
        .index;
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move {
            c.wait_for_change(&Topic::Service("web".into()), idx, Duration::from_secs(30))
                .await
        })
    };
    let kv_waiter = {
        let c = c.clone();
        tokio::spawn(async move {
            c.kv_get("k", QueryOptions::blocking(1, Duration::from_millis(200)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished());
    c.register(reg("n1", "web-2", &[], HealthStatus::Passing))
        .await
        .unwrap();
    let new_idx = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(new_idx > idx);
    let kv = tokio::time::timeout(Duration::from_secs(5), kv_waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(kv.value.is_none());
    assert!(
        c.wait_for_change(&Topic::Any, 1, Duration::from_millis(10))
            .await
            .is_err(),
        "Any is not answerable remotely"
    );
}

#[tokio::test]
async fn watch_instances_follows_changes_over_http() {
    let s = TestServer::start().await;
    let c: Arc<dyn Catalog> = Arc::new(remote(&s));
    let passing = InstanceFilter {
        passing_only: true,
        ..Default::default()
    };
    let rx = watch_instances(c.clone(), "web".into(), passing, Duration::from_secs(30));
    let count = |rx: &tokio::sync::watch::Receiver<_>| {
        let v: &Option<shoal_catalog::Indexed<Vec<shoal_catalog::ServiceEntry>>> = &rx.borrow();
        v.as_ref().map(|i| i.value.len())
    };
    assert_eventually!(count(&rx) == Some(0), "first answer (no instances)");
    c.register(reg("n1", "web-1", &[], HealthStatus::Passing))
        .await
        .unwrap();
    assert_eventually!(count(&rx) == Some(1), "instance registered");
    c.register(reg("n1", "web-2", &[], HealthStatus::Critical))
        .await
        .unwrap();
    c.update_check("n1", "c-web-2", HealthStatus::Passing, None)
        .await
        .unwrap();
    assert_eventually!(count(&rx) == Some(2), "second instance became healthy");
    c.deregister_service("n1", "web-1").await.unwrap();
    assert_eventually!(count(&rx) == Some(1), "instance removed");
}

#[tokio::test]
async fn unreachable_server_is_an_error_not_a_hang() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let c = RemoteCatalog::new(RemoteConfig::new(url.clone())).unwrap();
    let err = c.services(QueryOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains(&url), "{err}");
}
