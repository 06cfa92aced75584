//! The Docker registrator against the real Docker engine: conventions
//! field by field, checks, scaling (docker run / rm, docker-compose),
//! draining on stop and kill under load, catching up after downtime.
//! Without a Docker engine every test says so loudly and returns, except
//! in CI (`CI=true`), where a missing engine fails the run.

#[path = "../common/mod.rs"]
mod common;
mod engine;

use engine::{compose, compose_available, docker, host_port, unique, Containers};
use reqwest::StatusCode;
use serde_json::Value;
use shoal_testkit::{assert_eventually, ServerProcess};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Node name of every test registry: IDs are `dtest:<container>:<port>`.
const NODE: &str = "dtest";

use common::client;

/// `shoal dev --docker` on port-0 listeners, plus `extra`; returns it and its proxy URL.
fn dev(extra: &[&str]) -> (ServerProcess, String) {
    let mut args = vec!["--node-name", NODE, "--docker"];
    args.extend_from_slice(extra);
    ServerProcess::start_dev(engine::bin(), &args)
}

async fn get_json(url: &str) -> Value {
    let r = client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    r.json().await.unwrap()
}

/// `/v1/catalog/service/NAME` entries.
async fn catalog(dev: &ServerProcess, name: &str) -> Vec<Value> {
    get_json(&dev.at(&format!("/v1/catalog/service/{name}")))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Instance IDs of service `name`.
async fn ids(dev: &ServerProcess, name: &str) -> BTreeSet<String> {
    catalog(dev, name)
        .await
        .iter()
        .map(|e| e["ServiceID"].as_str().unwrap().to_string())
        .collect()
}

/// Instance IDs of `name` whose checks all pass.
async fn passing(dev: &ServerProcess, name: &str) -> BTreeSet<String> {
    let list = get_json(&dev.at(&format!("/v1/health/service/{name}?passing"))).await;
    list.as_array()
        .into_iter()
        .flatten()
        .map(|e| e["Service"]["ID"].as_str().unwrap().to_string())
        .collect()
}

fn set<S: AsRef<str>>(items: &[S]) -> BTreeSet<String> {
    items.iter().map(|s| s.as_ref().to_string()).collect()
}

/// The container that answered a request to `host` through the proxy (its hostname).
async fn answered_by(proxy: &str, host: &str) -> Option<String> {
    common::proxied_field(proxy, host, "hostname").await
}

macro_rules! require_docker {
    () => {
        if !$crate::engine::available() {
            return;
        }
    };
}

mod containers;

#[tokio::test]
async fn conventions_reach_the_catalog_field_by_field() {
    require_docker!();
    let mut c = Containers::default();
    let u = unique("conv");
    let (api, multi, ign, troff, tr, plain) = (
        format!("{u}-api"),
        format!("{u}-multi"),
        format!("{u}-ign"),
        format!("{u}-troff"),
        format!("{u}-tr"),
        format!("{u}-plain"),
    );
    c.run(
        &api,
        &[
            "-e",
            &format!("SERVICE_NAME={u}-api"),
            "-e",
            r"SERVICE_TAGS=a,b\,c",
            "-e",
            "SERVICE_REGION=eu",
            "--label",
            "SERVICE_NAME=from-label",
            "--label",
            "SERVICE_OWNER=ops",
        ],
    );
    c.run(
        &multi,
        &[
            "--expose",
            "9090",
            "--expose",
            "5353/udp",
            "-e",
            &format!("SERVICE_NAME={u}-multi"),
            "-e",
            &format!("SERVICE_5353_NAME={u}-dns"),
            "-e",
            "SERVICE_9090_IGNORE=1",
        ],
    );
    c.run(
        &ign,
        &[
            "-e",
            "SERVICE_IGNORE=1",
            "-e",
            &format!("SERVICE_NAME={u}-ign"),
        ],
    );
    c.run(
        &troff,
        &[
            "--label",
            "traefik.enable=false",
            "-e",
            &format!("SERVICE_NAME={u}-troff"),
        ],
    );
    c.run(
        &tr,
        &[
            "--expose",
            "9090",
            "-e",
            &format!("SERVICE_NAME={u}-tr"),
            "--label",
            "traefik.http.services.x.loadbalancer.server.port=8080",
        ],
    );
    c.run(&plain, &[]);

    let (reg, _proxy) = dev(&[]);
    let api_id = format!("{NODE}:{api}:8080");
    assert_eventually!(
        ids(&reg, &format!("{u}-api")).await == set(&[&api_id]),
        "api registered"
    );
    let e = &catalog(&reg, &format!("{u}-api")).await[0];
    assert_eq!(e["Node"], NODE);
    assert_eq!(e["ServiceAddress"], "127.0.0.1");
    assert_eq!(e["ServicePort"], host_port(&api, "8080/tcp"));
    assert_eq!(
        e["ServiceTags"],
        serde_json::json!(["a", "b,c"]),
        "SERVICE_TAGS with an escaped comma"
    );
    assert_eq!(
        e["ServiceMeta"],
        serde_json::json!({"region": "eu", "owner": "ops"}),
        "other SERVICE_* are meta"
    );

    // Several ports: -port suffix; a port's own name has none; udp; ignored port.
    let multi_id = format!("{NODE}:{multi}:8080");
    assert_eventually!(
        ids(&reg, &format!("{u}-multi-8080")).await == set(&[&multi_id]),
        "multi 8080"
    );
    let dns = catalog(&reg, &format!("{u}-dns")).await;
    assert_eq!(dns.len(), 1, "{dns:?}");
    assert_eq!(dns[0]["ServiceID"], format!("{NODE}:{multi}:5353:udp"));
    assert_eq!(dns[0]["ServiceTags"], serde_json::json!(["udp"]));
    assert_eq!(dns[0]["ServicePort"], host_port(&multi, "5353/udp"));
    assert!(
        ids(&reg, &format!("{u}-multi-9090")).await.is_empty(),
        "SERVICE_9090_IGNORE"
    );

    // Traefik's port label keeps one port: no suffix.
    assert_eventually!(
        ids(&reg, &format!("{u}-tr")).await == set(&[format!("{NODE}:{tr}:8080")]),
        "traefik port"
    );
    // The default name is the image's basename.
    let plain_id = format!("{NODE}:{plain}:8080");
    assert_eventually!(
        ids(&reg, "shoal-test-hello").await.contains(&plain_id),
        "image basename"
    );
    assert!(
        ids(&reg, &format!("{u}-ign")).await.is_empty(),
        "SERVICE_IGNORE"
    );
    assert!(
        ids(&reg, &format!("{u}-troff")).await.is_empty(),
        "traefik.enable=false"
    );

    // --explicit skips unnamed containers; --tags adds to all; --internal uses the container's address.
    let (explicit, _p) = dev(&["--explicit", "--tags", "x,y", "--internal"]);
    assert_eventually!(
        ids(&explicit, &format!("{u}-api")).await == set(&[&api_id]),
        "explicit: named one"
    );
    let e = &catalog(&explicit, &format!("{u}-api")).await[0];
    assert_eq!(e["ServiceTags"], serde_json::json!(["a", "b,c", "x", "y"]));
    assert_eq!(e["ServiceAddress"], engine::container_ip(&api));
    assert_eq!(e["ServicePort"], 8080);
    assert!(
        !ids(&explicit, "shoal-test-hello").await.contains(&plain_id),
        "explicit skips unnamed"
    );
    // `--ip` sets the address of ports published on every address.
    let (ip, _p) = dev(&["--ip", "10.9.8.7"]);
    assert_eventually!(
        !catalog(&ip, &format!("{u}-api")).await.is_empty(),
        "registered with --ip"
    );
    assert_eq!(
        catalog(&ip, &format!("{u}-api")).await[0]["ServiceAddress"],
        "10.9.8.7"
    );
}

#[tokio::test]
async fn checks_from_env_and_docker_healthcheck() {
    require_docker!();
    let mut c = Containers::default();
    let u = unique("chk");
    let (http, ttl, healthy, sick, script) = (
        format!("{u}-http"),
        format!("{u}-ttl"),
        format!("{u}-ok"),
        format!("{u}-sick"),
        format!("{u}-script"),
    );
    c.run(
        &http,
        &[
            "-e",
            &format!("SERVICE_NAME={u}-http"),
            "-e",
            "SERVICE_CHECK_HTTP=/health",
            "-e",
            "SERVICE_CHECK_INTERVAL=1s",
            "-e",
            "SERVICE_CHECK_TIMEOUT=2s",
        ],
    );
    c.run(
        &ttl,
        &[
            "-e",
            &format!("SERVICE_NAME={u}-ttl"),
            "-e",
            "SERVICE_CHECK_TTL=30s",
            "-e",
            "SERVICE_CHECK_DEREGISTER_AFTER=5m",
            "-e",
            "SERVICE_CHECK_INITIAL_STATUS=warning",
        ],
    );
    c.run(
        &script,
        &[
            "-e",
            &format!("SERVICE_NAME={u}-script"),
            "-e",
            "SERVICE_CHECK_SCRIPT=echo hi",
        ],
    );
    let ok_image = engine::image_with_healthcheck(r#"["/shoal","--version"]"#);
    let sick_image = engine::image_with_healthcheck(r#"["/nonexistent"]"#);
    c.run_image(
        &healthy,
        &["-e", &format!("SERVICE_NAME={u}-hc")],
        &ok_image,
    );
    c.run_image(&sick, &["-e", &format!("SERVICE_NAME={u}-hc")], &sick_image);
    let (reg, _proxy) = dev(&[]);

    let http_id = format!("{NODE}:{http}:8080");
    assert_eventually!(
        passing(&reg, &format!("{u}-http")).await == set(&[&http_id]),
        "HTTP check passes"
    );
    let checks = get_json(&reg.at(&format!("/v1/health/checks/{u}-http"))).await;
    let check = &checks[0];
    assert_eq!(check["CheckID"], format!("service:{http_id}"));
    assert_eq!(check["Type"], "http");
    assert_eq!(
        check["Definition"]["HTTP"],
        format!("http://127.0.0.1:{}/health", host_port(&http, "8080/tcp"))
    );
    assert_eq!(check["Definition"]["Interval"], "1s");
    assert_eq!(check["Definition"]["Timeout"], "2s");

    assert_eventually!(
        !catalog(&reg, &format!("{u}-ttl")).await.is_empty(),
        "ttl instance"
    );
    let check = &get_json(&reg.at(&format!("/v1/health/checks/{u}-ttl"))).await[0];
    assert_eq!(
        (check["Type"].as_str(), check["Status"].as_str()),
        (Some("ttl"), Some("warning"))
    );
    assert_eq!(check["Definition"]["TTL"], "30s");
    assert_eq!(
        check["Definition"]["DeregisterCriticalServiceAfter"],
        "5m0s"
    );

    // A script check is refused: the instance is there, without a check.
    assert_eventually!(
        passing(&reg, &format!("{u}-script")).await.len() == 1,
        "script: registered, no check"
    );
    assert!(get_json(&reg.at(&format!("/v1/health/checks/{u}-script")))
        .await
        .as_array()
        .unwrap()
        .is_empty());

    // HEALTHCHECK: the healthy one passes once Docker says so, the sick one never does.
    let (ok_id, sick_id) = (
        format!("{NODE}:{healthy}:8080"),
        format!("{NODE}:{sick}:8080"),
    );
    assert_eventually!(
        ids(&reg, &format!("{u}-hc")).await == set(&[&ok_id, &sick_id]),
        "both registered"
    );
    assert_eventually!(
        passing(&reg, &format!("{u}-hc")).await == set(&[&ok_id]),
        "only the healthy one passes"
    );
    assert_eventually!(
        get_json(&reg.at(&format!("/v1/health/checks/{u}-hc")))
            .await
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["CheckID"] == format!("docker-health:{sick_id}")
                && c["Output"] == "Docker health status: unhealthy"),
        "the sick one's check says unhealthy"
    );
}

#[tokio::test]
async fn scale_one_five_one_with_docker_run_and_rm() {
    require_docker!();
    let mut c = Containers::default();
    let u = unique("scale");
    let (reg, proxy) = dev(&[]);
    let names: Vec<String> = (0..5).map(|i| format!("{u}-{i}")).collect();
    let env = format!("SERVICE_NAME={u}");
    c.run(&names[0], &["-e", &env]);
    assert_eventually!(ids(&reg, &u).await.len() == 1, "one instance");
    for n in &names[1..] {
        c.run(n, &["-e", &env]);
    }
    let all: BTreeSet<String> = names.iter().map(|n| format!("{NODE}:{n}:8080")).collect();
    assert_eventually!(ids(&reg, &u).await == all, "five instances");
    // Each of the five answers through the proxy.
    let host = format!("{u}.localhost");
    let mut seen = BTreeSet::new();
    assert_eventually!(
        {
            if let Some(h) = answered_by(&proxy, &host).await {
                seen.insert(h);
            }
            seen.len() == 5
        },
        "five containers answered through the proxy: {seen:?}"
    );
    let mut args = vec!["rm", "-f"];
    args.extend(names[1..].iter().map(String::as_str));
    docker(&args);
    assert_eventually!(
        ids(&reg, &u).await == set(&[format!("{NODE}:{}:8080", names[0])]),
        "back to one"
    );
}

#[tokio::test]
async fn scale_with_docker_compose() {
    require_docker!();
    if !compose_available() {
        return;
    }
    let mut c = Containers::default();
    let project = unique("shoalcompose").replace('-', "");
    let yaml = format!(
        "version: \"2.1\"\nservices:\n  web:\n    image: {}\n    ports: [\"8080\"]\n    environment:\n      SERVICE_NAME: {project}\n    labels:\n      shoal-test: \"1\"\n",
        engine::image()
    );
    let file = c.compose_file(&project, &yaml);
    let (reg, proxy) = dev(&[]);
    compose(&project, &file, &["up", "-d", "--scale", "web=5"]);
    assert_eventually!(
        ids(&reg, &project).await.len() == 5,
        "five compose instances: {:?}",
        ids(&reg, &project).await
    );
    let mut seen = BTreeSet::new();
    let host = format!("{project}.localhost");
    assert_eventually!(
        {
            if let Some(h) = answered_by(&proxy, &host).await {
                seen.insert(h);
            }
            seen.len() == 5
        },
        "five answered: {seen:?}"
    );
    compose(
        &project,
        &file,
        &["up", "-d", "--scale", "web=1", "-t", "1"],
    );
    assert_eventually!(ids(&reg, &project).await.len() == 1, "back to one");
}

/// Sends GETs through the proxy from `workers` loops until `stop`; returns (ok, failed).
fn load(
    proxy: &str,
    host: &str,
    workers: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(u64, u64, Vec<String>)> {
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (proxy, host, stop, ok, failed, errors) = (
            proxy.to_string(),
            host.to_string(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let client = client();
            while !stop.load(Ordering::SeqCst) {
                match client
                    .get(format!("{proxy}/json"))
                    .header("Host", &host)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == StatusCode::OK => ok.fetch_add(1, Ordering::SeqCst),
                    Ok(r) => {
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("status {}", r.status()));
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                    Err(e) => {
                        errors.lock().unwrap().push(e.to_string());
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
        }));
    }
    tokio::spawn(async move {
        for t in tasks {
            let _ = t.await;
        }
        let errors = errors.lock().unwrap().clone();
        (
            ok.load(Ordering::SeqCst),
            failed.load(Ordering::SeqCst),
            errors,
        )
    })
}

/// Three instances under load; `action` (docker stop / kill) on two of them,
/// one after the other; no request may fail.
async fn no_failed_request_while(action: &str) {
    let mut c = Containers::default();
    let u = unique(action);
    let (reg, proxy) = dev(&[]);
    let names: Vec<String> = (0..3).map(|i| format!("{u}-{i}")).collect();
    for n in &names {
        c.run(n, &["-e", &format!("SERVICE_NAME={u}")]);
    }
    assert_eventually!(passing(&reg, &u).await.len() == 3, "three instances");
    let host = format!("{u}.localhost");
    assert_eventually!(
        answered_by(&proxy, &host).await.is_some(),
        "the proxy routes"
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = load(&proxy, &host, 4, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in &names[..2] {
        let args: Vec<&str> = if action == "stop" {
            vec!["stop", "-t", "5", n]
        } else {
            vec!["kill", n]
        };
        docker(&args);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (ok, failed, errors) = running.await.unwrap();
    let stats = get_json(&reg.at("/v1/proxy/stats")).await;
    eprintln!(
        "docker {action} under load: {ok} requests answered, {failed} failed; proxy stats: {stats}"
    );
    assert!(ok > 100, "the load loop ran: {ok} requests");
    assert_eq!(
        failed,
        0,
        "docker {action}: {failed} failed of {}: {:?}",
        ok + failed,
        &errors[..errors.len().min(5)]
    );
    assert_eventually!(
        ids(&reg, &u).await == set(&[format!("{NODE}:{}:8080", names[2])]),
        "the stopped ones left"
    );
}

#[tokio::test]
async fn docker_stop_under_load_fails_no_request() {
    require_docker!();
    no_failed_request_while("stop").await;
}

#[tokio::test]
async fn docker_kill_under_load_is_hidden_by_retries() {
    require_docker!();
    no_failed_request_while("kill").await;
}

#[tokio::test]
async fn events_missed_while_down_are_caught_at_start() {
    require_docker!();
    let mut c = Containers::default();
    let u = unique("missed");
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_string();
    let durable = |extra: &[&str]| {
        let mut args = vec![
            "dev",
            "--data-dir",
            &dir,
            "--http-addr",
            "127.0.0.1:0",
            "--dns-addr",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "warn",
            "--node-name",
            NODE,
            "--docker",
        ];
        args.extend_from_slice(extra);
        ServerProcess::start_role(engine::bin(), &args, "HTTP API")
    };
    let (a, b, d) = (format!("{u}-a"), format!("{u}-b"), format!("{u}-d"));
    let id = |n: &str| format!("{NODE}:{n}:8080");
    c.run(&a, &["-e", &format!("SERVICE_NAME={u}")]);
    c.run(&b, &["-e", &format!("SERVICE_NAME={u}")]);
    let mut reg = durable(&[]);
    assert_eventually!(ids(&reg, &u).await == set(&[id(&a), id(&b)]), "a and b");
    reg.kill();
    docker(&["rm", "-f", &a]);
    c.run(&d, &["-e", &format!("SERVICE_NAME={u}")]);
    // Without --cleanup (registrator's default) the gone container stays.
    let start = Instant::now();
    let mut reg = durable(&[]);
    assert_eventually!(
        ids(&reg, &u).await.contains(&id(&d)),
        "d registered by the start-up sync"
    );
    assert!(
        ids(&reg, &u).await.contains(&id(&a)),
        "no cleanup without --cleanup"
    );
    reg.kill();
    let reg = durable(&["--cleanup"]);
    assert_eventually!(
        ids(&reg, &u).await == set(&[id(&b), id(&d)]),
        "--cleanup removed a"
    );
    eprintln!("caught up in {:?}", start.elapsed());
}

#[tokio::test]
async fn pause_drains_and_deregister_on_success_keeps_failed_containers() {
    require_docker!();
    let mut c = Containers::default();
    let u = unique("pause");
    let (reg, _proxy) = dev(&["--deregister", "on-success"]);
    let (a, b) = (format!("{u}-a"), format!("{u}-b"));
    let id = |n: &str| format!("{NODE}:{n}:8080");
    c.run(&a, &["-e", &format!("SERVICE_NAME={u}")]);
    c.run(&b, &["-e", &format!("SERVICE_NAME={u}")]);
    assert_eventually!(
        passing(&reg, &u).await == set(&[id(&a), id(&b)]),
        "both pass"
    );
    docker(&["pause", &a]);
    assert_eventually!(passing(&reg, &u).await == set(&[id(&b)]), "paused: drained");
    docker(&["unpause", &a]);
    assert_eventually!(
        passing(&reg, &u).await == set(&[id(&a), id(&b)]),
        "unpaused: back"
    );
    // Killed (exit 137): kept, drained, until it runs again.
    docker(&["kill", &a]);
    assert_eventually!(passing(&reg, &u).await == set(&[id(&b)]), "killed: drained");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ids(&reg, &u).await,
        set(&[id(&a), id(&b)]),
        "on-success keeps a failed container"
    );
    docker(&["start", &a]);
    assert_eventually!(
        passing(&reg, &u).await == set(&[id(&a), id(&b)]),
        "restarted: back"
    );
    // A clean stop (hello exits 0 on SIGTERM) deregisters.
    docker(&["stop", "-t", "5", &b]);
    assert_eventually!(
        ids(&reg, &u).await == set(&[id(&a)]),
        "exit 0: deregistered"
    );
}

#[tokio::test]
async fn an_unreachable_daemon_leaves_the_rest_running() {
    // Needs no Docker engine: the socket does not exist.
    let reg = ServerProcess::start_role(
        engine::bin(),
        &[
            "dev",
            "--in-memory",
            "--http-addr",
            "127.0.0.1:0",
            "--dns-addr",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "error",
            "--docker",
            "unix:///nonexistent/docker.sock",
        ],
        "HTTP API",
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let leader = get_json(&reg.at("/v1/status/leader")).await;
    assert!(leader.is_string(), "the API still answers: {leader}");
}

#[tokio::test]
async fn shoal_agent_docker_registers_on_its_node_and_syncs_to_the_server() {
    require_docker!();
    let mut c = Containers::default();
    let u = unique("agent");
    let server = ServerProcess::start(engine::bin(), &["--in-memory"]);
    let agent = ServerProcess::start_role(
        engine::bin(),
        &[
            "agent",
            "--registry",
            &server.url,
            "--node-name",
            "dagent",
            "--http-addr",
            "127.0.0.1:0",
            "--log-level",
            "warn",
            "--docker",
        ],
        "shoal agent",
    );
    c.run(
        &u,
        &[
            "-e",
            &format!("SERVICE_NAME={u}"),
            "-e",
            "SERVICE_CHECK_HTTP=/health",
            "-e",
            "SERVICE_CHECK_INTERVAL=1s",
        ],
    );
    let id = format!("dagent:{u}:8080");
    // The agent's own view, and the server's after anti-entropy, with the check's result.
    assert_eventually!(
        get_json(&agent.at("/v1/agent/services"))
            .await
            .get(&id)
            .is_some(),
        "on the agent"
    );
    assert_eventually!(
        passing(&server, &u).await == set(&[&id]),
        "passing on the server"
    );
    let e = &catalog(&server, &u).await[0];
    assert_eq!(
        (e["Node"].as_str(), e["ServiceAddress"].as_str()),
        (Some("dagent"), Some("127.0.0.1"))
    );
    docker(&["stop", "-t", "5", &u]);
    assert_eventually!(
        ids(&server, &u).await.is_empty(),
        "gone from the server after docker stop"
    );
}
