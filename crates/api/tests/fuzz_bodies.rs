//! Arbitrary JSON and arbitrary bytes to every body-taking endpoint of the
//! API, through the router in memory (`oneshot`): never a 5xx, never a
//! panic, and a refusal always says why. Bounded: 256 cases per property
//! unless `PROPTEST_CASES` says otherwise (`bench/fuzz.sh` raises it).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{Map, Value};
use shoal_api::{register_local_node, router, ApiConfig, ApiState};
use shoal_catalog::Registry;
use std::sync::Arc;
use tower::ServiceExt;

/// Every endpoint that reads a body (KV takes raw bytes, the rest JSON).
const ENDPOINTS: &[&str] = &[
    "/v1/catalog/register",
    "/v1/catalog/deregister",
    "/v1/agent/service/register",
    "/v1/agent/check/register",
    "/v1/agent/check/update/fuzz",
    "/v1/kv/fuzz/key",
];

/// Field names the API knows, so random objects reach past the decoder.
const KEYS: &[&str] = &[
    "ID",
    "Name",
    "Port",
    "Address",
    "Tags",
    "Meta",
    "Check",
    "Checks",
    "TTL",
    "HTTP",
    "TCP",
    "Interval",
    "Timeout",
    "Status",
    "Node",
    "Service",
    "ServiceID",
    "CheckID",
    "Weights",
    "Passing",
    "Warning",
    "TaggedAddresses",
    "NodeMeta",
    "Header",
    "Method",
    "Body",
    "Output",
    "DeregisterCriticalServiceAfter",
    "SuccessBeforePassing",
    "FailuresBeforeCritical",
    "EnableTagOverride",
    "Kind",
    "Datacenter",
    "SkipNodeUpdate",
    "enable_tag_override",
    "Notes",
];

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u16>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("10s".to_string()),
            Just("passing".to_string()),
            Just("http://127.0.0.1:1/".to_string()),
            Just("127.0.0.1:1".to_string()),
            any::<String>(),
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        let key = prop_oneof![
            proptest::sample::select(KEYS).prop_map(str::to_string),
            any::<String>()
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((key, inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn app() -> Router {
    let registry = Registry::in_memory();
    let config = ApiConfig::default();
    register_local_node(&registry, &config).await.unwrap();
    let app = router(ApiState::new(registry, Arc::new(config)));
    let check = r#"{"ID":"fuzz","Name":"fuzz","TTL":"30s"}"#;
    let (status, _) = send(&app, "/v1/agent/check/register", check.as_bytes().to_vec()).await;
    assert_eq!(status, StatusCode::OK);
    app
}

async fn send(app: &Router, path: &str, body: Vec<u8>) -> (StatusCode, String) {
    let req = Request::builder()
        .method("PUT")
        .uri(path)
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The invariant for one answer.
fn check(path: &str, status: StatusCode, text: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        !status.is_server_error(),
        "{} answered {}: {}",
        path,
        status,
        text
    );
    if status.is_client_error() {
        prop_assert!(
            !text.trim().is_empty(),
            "{} refused without a reason ({})",
            path,
            status
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn fuzz_json_bodies_never_5xx(value in json()) {
        let rt = runtime();
        rt.block_on(async {
            let app = app().await;
            let body = serde_json::to_vec(&value).unwrap();
            for path in ENDPOINTS {
                let (status, text) = send(&app, path, body.clone()).await;
                check(path, status, &text)?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    }

    #[test]
    fn fuzz_byte_bodies_never_5xx(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let rt = runtime();
        rt.block_on(async {
            let app = app().await;
            for path in ENDPOINTS {
                let (status, text) = send(&app, path, bytes.clone()).await;
                check(path, status, &text)?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    }

    /// Nesting past serde_json's limit of 128, in arrays and objects and
    /// mixed: a 400 that names the limit.
    #[test]
    fn fuzz_deep_json_is_a_clear_400(depth in 129usize..4_000, kinds in proptest::collection::vec(any::<bool>(), 1..8)) {
        let rt = runtime();
        rt.block_on(async {
            let app = app().await;
            let (mut open, mut close) = (String::new(), String::new());
            for i in 0..depth {
                if kinds[i % kinds.len()] {
                    open.push('[');
                    close.insert(0, ']');
                } else {
                    open.push_str("{\"Meta\":");
                    close.insert(0, '}');
                }
            }
            let body = format!("{open}1{close}").into_bytes();
            for path in ENDPOINTS.iter().filter(|p| !p.starts_with("/v1/kv")) {
                let (status, text) = send(&app, path, body.clone()).await;
                prop_assert_eq!(status, StatusCode::BAD_REQUEST, "{}: {}", path, text);
                prop_assert!(text.contains("recursion limit exceeded"), "{}: {}", path, text);
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}
