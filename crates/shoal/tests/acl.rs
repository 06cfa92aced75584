//! Access control against a real `shoal server --acl-enabled
//! --acl-default-policy deny`, driven by curl-like HTTP calls, the CLI
//! and py-consul holding tokens, as Consul users hold theirs.

mod common;

use reqwest::Method;
use serde_json::{json, Value};
use shoal_testkit::ServerProcess;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

fn deny_server() -> ServerProcess {
    ServerProcess::start(
        bin(),
        &[
            "--in-memory",
            "--node-name",
            "acl-node",
            "--acl-enabled",
            "--acl-default-policy",
            "deny",
        ],
    )
}

/// A request with `token` (as `X-Consul-Token`; `None`: no token).
async fn call(
    method: Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut rb = common::client().request(method, &url);
    if let Some(t) = token {
        rb = rb.header("X-Consul-Token", t);
    }
    if let Some(b) = body {
        rb = rb.body(serde_json::to_vec(&b).unwrap());
    }
    let resp = rb.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap_or_default())
}

async fn bootstrap(s: &ServerProcess) -> String {
    let (status, _, text) = call(Method::PUT, s.at("/v1/acl/bootstrap"), None, None).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["Policies"][0]["Name"], "global-management", "{v}");
    v["SecretID"].as_str().unwrap().to_string()
}

/// A token with one new policy of `rules`; returns (accessor, secret).
async fn token_with(s: &ServerProcess, root: &str, name: &str, rules: &str) -> (String, String) {
    let (status, _, text) = call(
        Method::PUT,
        s.at("/v1/acl/policy"),
        Some(root),
        Some(json!({"Name": name, "Rules": rules})),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let (status, _, text) = call(
        Method::PUT,
        s.at("/v1/acl/token"),
        Some(root),
        Some(json!({"Description": name, "Policies": [{"Name": name}]})),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    (
        v["AccessorID"].as_str().unwrap().to_string(),
        v["SecretID"].as_str().unwrap().to_string(),
    )
}

fn instance(id: &str, name: &str) -> Value {
    json!({"ID": id, "Name": name, "Port": 80, "Address": "127.0.0.1"})
}

#[tokio::test]
async fn default_deny_refuses_writes_and_filters_reads_until_a_token_allows() {
    let s = deny_server();
    // Bootstrap once; the second time is refused, as Consul.
    let root = bootstrap(&s).await;
    let (status, _, text) = call(Method::PUT, s.at("/v1/acl/bootstrap"), None, None).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("ACL bootstrap no longer allowed"), "{text}");

    // The management token may do anything.
    let (status, _, text) = call(
        Method::PUT,
        s.at("/v1/agent/service/register"),
        Some(&root),
        Some(instance("db-0", "db-0")),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    // No token: writes 403, reads filtered (and say so).
    let (status, _, text) = call(
        Method::PUT,
        s.at("/v1/agent/service/register"),
        None,
        Some(instance("web-1", "web-1")),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("Permission denied"), "{text}");
    let (status, _, text) = call(Method::PUT, s.at("/v1/kv/app/x"), None, None).await;
    assert_eq!(status, 403, "{text}");
    let (status, headers, text) = call(Method::GET, s.at("/v1/catalog/services"), None, None).await;
    assert_eq!((status, text.as_str()), (200, "{}"), "db-0 is hidden");
    assert_eq!(headers["X-Consul-Results-Filtered-By-ACLs"], "true");
    // A secret that names no token: 403 ACL not found, whatever the endpoint.
    let (status, _, text) = call(
        Method::GET,
        s.at("/v1/catalog/services"),
        Some("guess"),
        None,
    )
    .await;
    assert_eq!((status, text.trim()), (403, "ACL not found"));

    // service_prefix "web-" write: web-1 yes, db-1 no.
    let rules = r#"service_prefix "web-" { policy = "write" }
node_prefix "" { policy = "read" }"#;
    let (accessor, web) = token_with(&s, &root, "web-writer", rules).await;
    let (status, _, text) = call(
        Method::PUT,
        s.at("/v1/agent/service/register"),
        Some(&web),
        Some(instance("web-1", "web-1")),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let (status, _, text) = call(
        Method::PUT,
        s.at("/v1/agent/service/register"),
        Some(&web),
        Some(instance("db-1", "db-1")),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains(&accessor) && text.contains("service:write"),
        "{text}"
    );
    assert!(text.contains("db-1"), "{text}");
    // The holder sees the services it may read, and only those.
    let (_, headers, text) =
        call(Method::GET, s.at("/v1/catalog/services"), Some(&web), None).await;
    let services: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(services, json!({"web-1": []}));
    assert_eq!(headers["X-Consul-Results-Filtered-By-ACLs"], "true");
    // The same through ?filter=, which reads the instances.
    let (_, headers, text) = call(
        Method::GET,
        s.at("/v1/catalog/services?filter=ServicePort%20%3D%3D%2080"),
        Some(&web),
        None,
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"web-1": []})
    );
    assert_eq!(headers["X-Consul-Results-Filtered-By-ACLs"], "true");
    let (_, _, text) = call(
        Method::GET,
        s.at("/v1/health/service/web-1"),
        Some(&web),
        None,
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&text)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (_, _, text) = call(Method::GET, s.at("/v1/health/service/web-1"), None, None).await;
    assert_eq!(text, "[]", "anonymous sees no instance");
    // The change stream carries the whole catalog: not for this token.
    let (status, _, text) = call(
        Method::GET,
        s.at("/v1/shoal/stream?probe"),
        Some(&web),
        None,
    )
    .await;
    assert_eq!(status, 403, "{text}");
    let (status, _, _) = call(
        Method::GET,
        s.at("/v1/shoal/stream?probe"),
        Some(&root),
        None,
    )
    .await;
    assert_eq!(status, 204);
    // Its own token, without any acl permission.
    let (status, _, text) = call(Method::GET, s.at("/v1/acl/token/self"), Some(&web), None).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(&web), "{text}");
    // But it cannot list tokens (and learn secrets).
    let (status, _, _) = call(Method::GET, s.at("/v1/acl/tokens"), Some(&web), None).await;
    assert_eq!(status, 403);
    let (_, _, text) = call(Method::GET, s.at("/v1/acl/tokens"), Some(&root), None).await;
    assert!(
        text.contains(&web),
        "the management token sees secrets: {text}"
    );

    // A deleted token stops working at once.
    let (status, _, _) = call(
        Method::DELETE,
        s.at(&format!("/v1/acl/token/{accessor}")),
        Some(&root),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, text) = call(
        Method::PUT,
        s.at("/v1/agent/service/register"),
        Some(&web),
        Some(instance("web-2", "web-2")),
    )
    .await;
    assert_eq!((status, text.trim()), (403, "ACL not found"));
}

#[tokio::test]
async fn key_prefix_rules_govern_kv_recursive_deletes_and_txn() {
    let s = deny_server();
    let root = bootstrap(&s).await;
    let rules = r#"key_prefix "app/" { policy = "write" }
key "app/secret" { policy = "deny" }"#;
    let (_, app) = token_with(&s, &root, "app", rules).await;
    for (key, token) in [("app/a", &root), ("app/secret", &root), ("other/b", &root)] {
        let (status, _, text) = call(
            Method::PUT,
            s.at(&format!("/v1/kv/{key}")),
            Some(token),
            Some(json!(1)),
        )
        .await;
        assert_eq!(status, 200, "{key}: {text}");
    }
    // (method, path, status)
    let cases = [
        (Method::PUT, "/v1/kv/app/new", 200),
        (Method::GET, "/v1/kv/app/a", 200),
        (Method::GET, "/v1/kv/app/secret", 403),
        (Method::PUT, "/v1/kv/app/secret", 403),
        (Method::PUT, "/v1/kv/other/b", 403),
        (Method::GET, "/v1/kv/other/b", 403),
        (Method::DELETE, "/v1/kv/other/b", 403),
        // A denied key under the prefix: the recursive delete is refused whole.
        (Method::DELETE, "/v1/kv/app/?recurse", 403),
        (Method::DELETE, "/v1/kv/?recurse", 403),
    ];
    for (method, path, want) in cases {
        let (status, _, text) = call(method.clone(), s.at(path), Some(&app), Some(json!(2))).await;
        assert_eq!(status, want, "{method} {path}: {text}");
    }
    // Nothing was deleted by the refused recursive deletes.
    let (status, _, _) = call(Method::GET, s.at("/v1/kv/app/secret"), Some(&root), None).await;
    assert_eq!(status, 200);
    // A recursive read lists only what the token may read.
    let (_, headers, text) = call(Method::GET, s.at("/v1/kv/?recurse"), Some(&app), None).await;
    let keys: Vec<String> = serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["app/a", "app/new"]);
    assert_eq!(headers["X-Consul-Results-Filtered-By-ACLs"], "true");
    let (_, _, text) = call(Method::GET, s.at("/v1/kv/?keys"), Some(&app), None).await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!(["app/a", "app/new"])
    );
    // A transaction with one forbidden operation is refused whole.
    let txn = json!([
        {"KV": {"Verb": "set", "Key": "app/t1", "Value": "eA=="}},
        {"KV": {"Verb": "set", "Key": "other/t2", "Value": "eA=="}}
    ]);
    let (status, _, text) = call(Method::PUT, s.at("/v1/txn"), Some(&app), Some(txn)).await;
    assert_eq!(status, 409, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["Errors"][0]["OpIndex"], 1, "{v}");
    assert!(
        v["Errors"][0]["What"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{v}"
    );
    let (status, _, _) = call(Method::GET, s.at("/v1/kv/app/t1"), Some(&root), None).await;
    assert_eq!(status, 404, "the allowed half was not applied");
    // get-tree answers only the readable keys.
    let txn = json!([{"KV": {"Verb": "get-tree", "Key": "app/"}}]);
    let (status, _, text) = call(Method::PUT, s.at("/v1/txn"), Some(&app), Some(txn)).await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("app/secret"), "{text}");
    // Snapshots hold every secret: management only.
    let (status, _, _) = call(Method::GET, s.at("/v1/snapshot"), Some(&app), None).await;
    assert_eq!(status, 403);
    let (status, _, _) = call(Method::GET, s.at("/v1/snapshot"), Some(&root), None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_cli_takes_its_token_from_the_flag_or_consul_http_token() {
    let s = deny_server();
    let root = bootstrap(&s).await;
    let (_, app) = token_with(
        &s,
        &root,
        "cli",
        r#"key_prefix "cli/" { policy = "write" }"#,
    )
    .await;
    let shoal = |args: &[&str], token: Option<&str>| {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .args(["--registry", &s.url])
            .env_remove("CONSUL_HTTP_TOKEN");
        if let Some(t) = token {
            cmd.env("CONSUL_HTTP_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    let out = shoal(&["kv", "put", "cli/a", "1"], Some(&app));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = shoal(&["kv", "put", "cli/b", "1", "--token", &app], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = shoal(&["kv", "put", "other/a", "1"], Some(&app));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied"), "{err}");
    let out = shoal(&["kv", "put", "cli/c", "1"], None);
    assert!(!out.status.success(), "no token, no write");
}

/// Where scripts/test installed py-consul.
fn py_consul() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp
        .parent()
        .expect("target dir")
        .join("pyclients")
        .join("py-consul");
    assert!(
        dir.join("consul").is_dir(),
        "py-consul is not installed in {}: run scripts/test",
        dir.display()
    );
    dir
}

#[tokio::test]
async fn py_consul_with_a_token_reads_and_writes_what_its_policy_allows() {
    let s = deny_server();
    let root = bootstrap(&s).await;
    let rules = r#"key_prefix "py/" { policy = "write" }
service_prefix "py-" { policy = "write" }
node_prefix "" { policy = "read" }"#;
    let (_, token) = token_with(&s, &root, "py", rules).await;
    let port = s.url.rsplit(':').next().unwrap().to_string();
    let script = r#"
import sys, consul
port, token = int(sys.argv[1]), sys.argv[2]
c = consul.Consul(host="127.0.0.1", port=port, token=token)
assert c.kv.put("py/a", "1") is True
assert c.kv.get("py/a")[1]["Value"] == b"1"
try:
    c.kv.put("other/a", "1")
    raise SystemExit("other/a was written")
except consul.ACLPermissionDenied:
    pass
c.agent.service.register("py-web", service_id="py-web-1", port=80)
try:
    c.agent.service.register("db", service_id="db-1", port=80)
    raise SystemExit("db was registered")
except consul.ACLPermissionDenied:
    pass
index, nodes = c.health.service("py-web")
assert len(nodes) == 1, nodes
anon = consul.Consul(host="127.0.0.1", port=port)
assert anon.health.service("py-web")[1] == []
print("ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, &port, &token])
        .env("PYTHONPATH", py_consul())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .env("NO_PROXY", "*")
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn dns_answers_with_the_default_tokens_rights() {
    use common::dns::{dig, dig_short, dig_status};
    let s = ServerProcess::start(
        bin(),
        &[
            "--in-memory",
            "--node-name",
            "acl-node",
            "--acl-enabled",
            "--acl-default-policy",
            "deny",
            "--acl-default-token",
            "dns-secret",
        ],
    );
    let dns = s.dns_addr().expect("DNS address announced");
    let root = bootstrap(&s).await;
    for name in ["web-1", "db-1"] {
        let (status, _, text) = call(
            Method::PUT,
            s.at("/v1/agent/service/register"),
            Some(&root),
            Some(instance(name, name)),
        )
        .await;
        assert_eq!(status, 200, "{text}");
    }
    // The default token does not exist yet: DNS shows nothing.
    let out = dig(dns, &["web-1.service.consul", "A"]);
    assert_eq!(dig_status(&out), "NXDOMAIN", "{out}");
    // Once it does, DNS shows what it may read, and only that.
    let (status, _, text) = call(
        Method::PUT,
        s.at("/v1/acl/policy"),
        Some(&root),
        Some(json!({"Name": "dns", "Rules": "service \"web-1\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }"})),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let (status, _, text) = call(
        Method::PUT,
        s.at("/v1/acl/token"),
        Some(&root),
        Some(json!({"SecretID": "dns-secret", "Policies": [{"Name": "dns"}]})),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        dig_short(dns, &["web-1.service.consul", "A"]),
        ["127.0.0.1"]
    );
    let out = dig(dns, &["db-1.service.consul", "A"]);
    assert_eq!(dig_status(&out), "NXDOMAIN", "{out}");
    // HTTP requests without a token use it too, as Consul's default token.
    let (_, _, text) = call(Method::GET, s.at("/v1/catalog/services"), None, None).await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"web-1": []})
    );
}

/// Waits (bounded) until `check` holds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_agent_syncs_under_default_deny_with_its_token_and_checks_its_callers() {
    let s = deny_server();
    let root = bootstrap(&s).await;
    let rules = r#"node "agent-ok" { policy = "write" }
service_prefix "" { policy = "write" }
node_prefix "" { policy = "read" }"#;
    let (_, agent_token) = token_with(&s, &root, "agent", rules).await;
    let (_, web) = token_with(&s, &root, "web", r#"service "web" { policy = "write" }"#).await;
    let with =
        ServerProcess::start_agent(bin(), &s.url, "agent-ok", &["--agent-token", &agent_token]);
    let without = ServerProcess::start_agent(bin(), &s.url, "agent-none", &[]);
    // The agent's own endpoints check callers' tokens through the servers.
    for (agent, token, id, want) in [
        (&with, None, "web-0", 403),
        (&with, Some(web.as_str()), "db-1", 403),
        (&with, Some(web.as_str()), "web-1", 200),
        (&without, Some(root.as_str()), "web-2", 200),
    ] {
        let name = id.split('-').next().unwrap();
        let (status, _, text) = call(
            Method::PUT,
            agent.at("/v1/agent/service/register"),
            token,
            Some(instance(id, name)),
        )
        .await;
        assert_eq!(status, want, "{id} on {}: {text}", agent.url);
    }
    // Its reads too: the local health of web needs service:read on web.
    let path = with.at("/v1/agent/health/service/name/web");
    assert_eq!(call(Method::GET, path.clone(), None, None).await.0, 403);
    assert_eq!(call(Method::GET, path, Some(&web), None).await.0, 200);
    let (_, _, text) = call(Method::GET, with.at("/v1/agent/services"), Some(&web), None).await;
    assert!(text.contains("web-1"), "{text}");
    let (_, _, text) = call(Method::GET, with.at("/v1/agent/services"), None, None).await;
    assert_eq!(text, "{}", "anonymous sees no local service");
    // The agent with its token brings its node and web-1 to the servers.
    eventually("web-1 on the server", async || {
        let (_, _, text) = call(
            Method::GET,
            s.at("/v1/health/service/web"),
            Some(&root),
            None,
        )
        .await;
        text.contains("web-1")
    })
    .await;
    // The one without is refused: neither its node nor web-2 get there.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let (_, _, text) = call(Method::GET, s.at("/v1/catalog/nodes"), Some(&root), None).await;
    assert!(
        text.contains("agent-ok") && !text.contains("agent-none"),
        "{text}"
    );
    let (_, _, text) = call(
        Method::GET,
        s.at("/v1/health/service/web"),
        Some(&root),
        None,
    )
    .await;
    assert!(!text.contains("web-2"), "{text}");
}

#[tokio::test]
async fn shoal_devs_proxy_statistics_and_metrics_need_agent_read() {
    let (dev, _) = ServerProcess::start_dev(
        bin(),
        &[
            "--acl-enabled",
            "--acl-default-policy",
            "deny",
            "--no-docker",
        ],
    );
    let root = bootstrap(&dev).await;
    let (_, reader) =
        token_with(&dev, &root, "ops", r#"agent_prefix "" { policy = "read" }"#).await;
    for path in ["/v1/proxy/stats", "/v1/agent/metrics", "/metrics"] {
        let (status, _, text) = call(Method::GET, dev.at(path), None, None).await;
        assert_eq!(status, 403, "{path} without a token: {text}");
        assert!(text.contains("agent:read"), "{path}: {text}");
        let (status, _, text) = call(Method::GET, dev.at(path), Some(&reader), None).await;
        assert_eq!(status, 200, "{path} with agent read: {text}");
    }
}

#[tokio::test]
async fn tokens_live_in_the_shared_catalog_and_a_delete_reaches_every_server() {
    let etcd = shoal_testkit::EtcdCluster::start(3);
    let deny = ["--acl-enabled", "--acl-default-policy", "deny"];
    let a = etcd.start_shoal(bin(), "acl-a", &deny);
    let b = etcd.start_shoal(bin(), "acl-b", &deny);
    let root = bootstrap(&a).await;
    // Bootstrapped once for the whole catalog: B refuses a second one.
    let (status, _, text) = call(Method::PUT, b.at("/v1/acl/bootstrap"), None, None).await;
    assert_eq!(status, 403, "{text}");
    let (accessor, app) = token_with(
        &a,
        &root,
        "app",
        r#"key_prefix "app/" { policy = "write" }"#,
    )
    .await;
    // Made on A, it works on B (its view has it once the write is acknowledged there).
    eventually("the token works on B", async || {
        call(
            Method::PUT,
            b.at("/v1/kv/app/x"),
            Some(&app),
            Some(json!(1)),
        )
        .await
        .0 == 200
    })
    .await;
    let (status, _, _) = call(
        Method::PUT,
        b.at("/v1/kv/other/x"),
        Some(&app),
        Some(json!(1)),
    )
    .await;
    assert_eq!(status, 403);
    // Deleted through B: refused on B at once, and on A once its view has the delete.
    let (status, _, _) = call(
        Method::DELETE,
        b.at(&format!("/v1/acl/token/{accessor}")),
        Some(&root),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, text) = call(
        Method::PUT,
        b.at("/v1/kv/app/y"),
        Some(&app),
        Some(json!(1)),
    )
    .await;
    assert_eq!((status, text.trim()), (403, "ACL not found"));
    eventually("the deleted token refused on A", async || {
        call(Method::GET, a.at("/v1/kv/app/x"), Some(&app), None)
            .await
            .0
            == 403
    })
    .await;
    let (status, _, _) = call(Method::GET, a.at("/v1/kv/app/y"), Some(&root), None).await;
    assert_eq!(status, 404, "nothing was written with the deleted token");
}

#[tokio::test]
async fn curl_with_a_token_and_tokens_that_expire() {
    let s = deny_server();
    let root = bootstrap(&s).await;
    let (_, app) = token_with(&s, &root, "curl", r#"key_prefix "c/" { policy = "write" }"#).await;
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
            ])
            .args(args)
            .output()
            .expect("curl runs (scripts/test installs it)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let url = s.at("/v1/kv/c/a");
    // Each of Consul's ways to send a token.
    assert_eq!(
        curl(&[
            "-X",
            "PUT",
            "-d",
            "1",
            "-H",
            &format!("X-Consul-Token: {app}"),
            &url
        ]),
        "200"
    );
    assert_eq!(
        curl(&[
            "-X",
            "PUT",
            "-d",
            "1",
            "-H",
            &format!("Authorization: Bearer {app}"),
            &url
        ]),
        "200"
    );
    assert_eq!(
        curl(&["-X", "PUT", "-d", "1", &format!("{url}?token={app}")]),
        "200"
    );
    assert_eq!(curl(&["-X", "PUT", "-d", "1", &url]), "403");
    // A time in the past is refused; a TTL ends the token by itself.
    let (status, _, text) = call(
        Method::PUT,
        s.at("/v1/acl/token"),
        Some(&root),
        Some(json!({"Policies": [{"Name": "curl"}], "ExpirationTime": "2020-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    let (status, _, text) = call(
        Method::PUT,
        s.at("/v1/acl/token"),
        Some(&root),
        Some(json!({"Policies": [{"Name": "curl"}], "ExpirationTTL": "2s"})),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let short: Value = serde_json::from_str(&text).unwrap();
    assert!(short["ExpirationTime"].as_str().is_some(), "{short}");
    let secret = short["SecretID"].as_str().unwrap();
    assert_eq!(
        curl(&[
            "-X",
            "PUT",
            "-d",
            "1",
            "-H",
            &format!("X-Consul-Token: {secret}"),
            &url
        ]),
        "200"
    );
    eventually("the token expired", async || {
        call(Method::GET, s.at("/v1/kv/c/a"), Some(secret), None)
            .await
            .0
            == 403
    })
    .await;
}

#[tokio::test]
async fn a_standalone_proxys_statistics_need_agent_read_at_its_registry() {
    let s = deny_server();
    let root = bootstrap(&s).await;
    let rules = r#"service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }"#;
    let (_, reader) = token_with(&s, &root, "proxy", rules).await;
    let (_, ops) = token_with(&s, &root, "ops", r#"agent_prefix "" { policy = "read" }"#).await;
    let proxy = ServerProcess::start_role(
        bin(),
        &[
            "proxy",
            "--registry",
            &s.url,
            "--token",
            &reader,
            "--listen",
            "127.0.0.1:0",
            "--stats-addr",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ],
        // Its stats line comes after its proxy's: wait for that one.
        "stats",
    );
    let stats = proxy.url.clone();
    for path in ["/v1/proxy/stats", "/metrics"] {
        let url = format!("{stats}{path}");
        let (status, _, text) = call(Method::GET, url.clone(), None, None).await;
        assert_eq!(status, 403, "{path}: {text}");
        let (status, _, text) = call(Method::GET, url, Some(&ops), None).await;
        assert_eq!(status, 200, "{path}: {text}");
    }
    // The dashboard's page itself is static: no token needed to load it.
    let (status, _, _) = call(Method::GET, format!("{stats}/ui/"), None, None).await;
    assert_eq!(status, 200);
}
