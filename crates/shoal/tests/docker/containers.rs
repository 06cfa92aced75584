//! shoal itself in containers, against the real engine: the image
//! `scripts/image` builds starts every role; an agent container registers
//! its siblings, which a proxy container routes to without published
//! ports; the network a container is registered on is the one chosen
//! (SERVICE_NETWORK / label, the agent's --network), IPv6 included; compose
//! labels reach Meta; each example's run.sh passes.

use crate::common;
use crate::engine::{self, docker, ip_on, unique, Containers};
use crate::get_json;
use shoal_testkit::assert_eventually;
use std::collections::BTreeSet;
use std::process::Command;

/// The group of the Docker socket, for `--group-add` (the image's user is unprivileged).
fn socket_gid() -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/var/run/docker.sock")
        .map(|m| m.gid().to_string())
        .unwrap_or_else(|_| "0".into())
}

/// The logs of container `name`, stdout and stderr.
fn logs(name: &str) -> String {
    let out = Command::new("docker")
        .args(["logs", name])
        .output()
        .expect("docker logs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `docker exec NAME /shoal health`: whether the role's endpoint answers.
fn healthy(name: &str) -> bool {
    Command::new("docker")
        .args(["exec", name, "/shoal", "health"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn the_image_starts_every_role_unprivileged_with_a_working_healthcheck() {
    require_docker!();
    let image = engine::shoal_image();
    let size: u64 = docker(&["image", "inspect", "-f", "{{.Size}}", image])
        .parse()
        .unwrap();
    eprintln!("image {image}: {} MiB", size / 1024 / 1024);
    let config = docker(&["image", "inspect", "-f", "{{json .Config}}", image]);
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/shoal"]));
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/shoal", "health"])
    );
    assert_eq!(config["Labels"]["org.opencontainers.image.title"], "shoal");
    assert!(
        config["ExposedPorts"].is_null(),
        "no EXPOSE (the registrator would register every exposed port): {config}"
    );

    let mut c = Containers::default();
    let u = unique("roles");
    let net = format!("{u}-net");
    c.network(&net, &[]).unwrap();
    let server = format!("{u}-server");
    let registry = format!("http://{server}:8500");
    let gid = socket_gid();
    let on_net = ["--network", net.as_str()];
    c.run_unpublished(&server, &on_net, image, &["server"]);
    let roles: Vec<(String, Vec<&str>, Vec<&str>)> = vec![
        (format!("{u}-dev"), vec![], vec!["dev", "--in-memory"]),
        (
            format!("{u}-agent"),
            vec![
                "-v",
                "/var/run/docker.sock:/var/run/docker.sock:ro",
                "--group-add",
                &gid,
            ],
            vec!["agent", "--registry", &registry, "--docker", "--explicit"],
        ),
        (
            format!("{u}-proxy"),
            vec![],
            vec!["proxy", "--registry", &registry],
        ),
        (
            format!("{u}-hello"),
            vec![],
            vec!["hello", "--port", "8080"],
        ),
    ];
    for (name, extra, cmd) in &roles {
        let mut args = on_net.to_vec();
        args.extend(extra.iter().copied());
        c.run_unpublished(name, &args, image, cmd);
    }
    let mut all = vec![server.clone()];
    all.extend(roles.iter().map(|r| r.0.clone()));
    for name in &all {
        assert_eventually!(
            logs(name).contains("listening on http://0.0.0.0:"),
            "{name} listens on every address in its container: {}",
            logs(name)
        );
        assert_eventually!(healthy(name), "{name}: /shoal health passes");
        let probe = docker(&["exec", name, "/shoal", "health"]);
        assert!(probe.starts_with("healthy: http://127.0.0.1:"), "{probe}");
    }
    // The server advertises its container address, never loopback.
    let server_ip = ip_on(&server, &net, "IPAddress");
    assert!(
        logs(&server).contains(&format!("address={server_ip}")),
        "{}",
        logs(&server)
    );
    // The agent registered from the socket with the unprivileged user + group.
    assert!(
        logs(&roles[1].0).contains("following container events"),
        "the agent reads the socket: {}",
        logs(&roles[1].0)
    );
    // render: one pass over a template, against the server, exits 0.
    let render = docker(&[
        "run",
        "--rm",
        "--label",
        "shoal-test=1",
        "--network",
        &net,
        image,
        "render",
        "--once",
        "--dry",
        "--consul-addr",
        &format!("{server}:8500"),
        "--template",
        "/etc/group:/data/group.out",
    ]);
    assert!(render.contains("shoal:x:65532:"), "render --dry: {render}");
    // The HEALTHCHECK itself: Docker reports the server healthy.
    assert_eventually!(
        docker(&["inspect", "-f", "{{.State.Health.Status}}", &server]) == "healthy",
        "Docker's health status of the server"
    );
}

/// `/v1/catalog/service/NAME` of the registry at `base`.
async fn entries(base: &str, name: &str) -> Vec<serde_json::Value> {
    get_json(&format!("{base}/v1/catalog/service/{name}"))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The instances' (address, port) of `name` on the registry at `base`.
async fn addresses(base: &str, name: &str) -> BTreeSet<(String, u64)> {
    entries(base, name)
        .await
        .iter()
        .map(|e| {
            (
                e["ServiceAddress"].as_str().unwrap_or_default().to_string(),
                e["ServicePort"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_agent_container_registers_siblings_that_a_proxy_container_reaches_without_published_ports(
) {
    require_docker!();
    let image = engine::shoal_image();
    let mut c = Containers::default();
    let u = unique("sib");
    let net = format!("{u}-net");
    c.network(&net, &[]).unwrap();
    let (server, proxy, agent) = (
        format!("{u}-server"),
        format!("{u}-proxy"),
        format!("{u}-agent"),
    );
    let registry = format!("http://{server}:8500");
    let gid = socket_gid();
    // The server's API and the proxy's listener are published for the test only.
    c.run_unpublished(
        &server,
        &["--network", &net, "-p", "127.0.0.1::8500"],
        image,
        &["server", "--in-memory"],
    );
    c.run_unpublished(
        &proxy,
        &["--network", &net, "-p", "127.0.0.1::8080"],
        image,
        &["proxy", "--registry", &registry],
    );
    c.run_unpublished(
        &agent,
        &[
            "--network",
            &net,
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock:ro",
            "--group-add",
            &gid,
        ],
        image,
        &[
            "agent",
            "--registry",
            &registry,
            "--docker",
            "--explicit",
            "--proxy-container",
            &proxy,
        ],
    );
    let apps: Vec<String> = (0..3).map(|i| format!("{u}-app{i}")).collect();
    for app in &apps {
        // Exposed, not published: reachable only on the network.
        c.run_unpublished(
            app,
            &[
                "--network",
                &net,
                "--expose",
                "8080",
                "-e",
                &format!("SERVICE_NAME={u}"),
                "-e",
                "SERVICE_CHECK_HTTP=/health",
                "-e",
                "SERVICE_CHECK_INTERVAL=1s",
                "--health-interval",
                "1s",
            ],
            image,
            &["hello", "--port", "8080"],
        );
    }
    let api = format!(
        "http://127.0.0.1:{}",
        engine::host_port(&server, "8500/tcp")
    );
    let reg = api.as_str();
    let want: BTreeSet<(String, u64)> = apps
        .iter()
        .map(|a| (ip_on(a, &net, "IPAddress"), 8080))
        .collect();
    assert_eventually!(
        addresses(reg, &u).await == want,
        "the three apps at their addresses on {net}: {:?}; agent: {}",
        addresses(reg, &u).await,
        logs(&agent)
    );
    let entry = &entries(reg, &u).await[0];
    assert!(
        entry["ServiceTaggedAddresses"][&net]["Address"].is_string()
            && entry["ServiceTaggedAddresses"]["lan_ipv4"]["Port"] == 8080,
        "{entry}"
    );
    let proxy_url = format!("http://127.0.0.1:{}", engine::host_port(&proxy, "8080/tcp"));
    let host = format!("{u}.localhost");
    let mut seen = BTreeSet::new();
    assert_eventually!(
        {
            if let Some(h) = common::proxied_field(&proxy_url, &host, "hostname").await {
                seen.insert(h);
            }
            seen.len() == 3
        },
        "the three answered through the proxy container: {seen:?}"
    );
    docker(&["stop", "-t", "5", &apps[0]]);
    assert_eventually!(
        entries(reg, &u).await.len() == 2,
        "a stopped sibling leaves the catalog"
    );
}

#[tokio::test]
async fn a_container_on_two_networks_is_registered_on_the_chosen_one() {
    require_docker!();
    let image = engine::shoal_image();
    let mut c = Containers::default();
    let u = unique("nets");
    let (a, b) = (format!("{u}-a"), format!("{u}-b"));
    c.network(&a, &[]).unwrap();
    c.network(&b, &[]).unwrap();
    let hello = ["hello", "--port", "8080"];
    // (container, its choice) on both networks from the start.
    let by_env = format!("{u}-env");
    let by_label = format!("{u}-label");
    let by_agent = format!("{u}-agent");
    let env = format!("SERVICE_NETWORK={b}");
    let label = format!("shoal.network={b}");
    let name_env = format!("SERVICE_NAME={u}");
    for (name, choice) in [
        (&by_env, vec!["-e", &env]),
        (&by_label, vec!["--label", &label]),
        (&by_agent, vec![]),
    ] {
        let mut args = vec!["--network", &a, "--expose", "8080", "-e", &name_env];
        args.extend(choice);
        c.create(name, &args, image, &hello);
        docker(&["network", "connect", &b, name]);
        docker(&["start", name]);
    }
    // Chosen by SERVICE_NETWORK, but on that network only later: refused
    // until `docker network connect`, then registered there.
    let late = format!("{u}-late");
    c.run_unpublished(
        &late,
        &[
            "--network",
            &a,
            "--expose",
            "8080",
            "-e",
            &name_env,
            "-e",
            &env,
        ],
        image,
        &hello,
    );
    // The registrator on the host, with --network naming the default.
    let (reg, proxy) = crate::dev(&["--network", &a, "--explicit"]);
    let addr_of = |name: &str, net: &str| (ip_on(name, net, "IPAddress"), 8080u64);
    let want: BTreeSet<_> = [
        addr_of(&by_env, &b),
        addr_of(&by_label, &b),
        addr_of(&by_agent, &a),
    ]
    .into_iter()
    .collect();
    assert_eventually!(
        addresses(&reg.url, &u).await == want,
        "env and label choose {b}, the agent's flag {a}: {:?}",
        addresses(&reg.url, &u).await
    );
    let entries = entries(&reg.url, &u).await;
    let env_entry = entries
        .iter()
        .find(|e| e["ServiceID"].as_str().unwrap().contains(&by_env))
        .unwrap();
    let tagged = &env_entry["ServiceTaggedAddresses"];
    assert_eq!(tagged[&a]["Address"], ip_on(&by_env, &a, "IPAddress"));
    assert_eq!(tagged[&b]["Address"], ip_on(&by_env, &b, "IPAddress"));
    assert_eq!(
        tagged["lan_ipv4"]["Address"],
        ip_on(&by_env, &b, "IPAddress")
    );
    assert_eq!(
        entries.len(),
        3,
        "the late one is not registered at another network's address"
    );
    docker(&["network", "connect", &b, &late]);
    let mut with_late = want.clone();
    with_late.insert(addr_of(&late, &b));
    assert_eventually!(
        addresses(&reg.url, &u).await == with_late,
        "after network connect, the late one is registered on {b}"
    );
    // Reachable through the proxy at those addresses.
    let host = format!("{u}.localhost");
    let mut seen = BTreeSet::new();
    assert_eventually!(
        {
            if let Some(h) = common::proxied_field(&proxy, &host, "hostname").await {
                seen.insert(h);
            }
            seen.len() == 4
        },
        "all four answered: {seen:?}"
    );
}

#[tokio::test]
async fn ipv6_on_a_dual_stack_network() {
    require_docker!();
    let image = engine::shoal_image();
    let mut c = Containers::default();
    let u = unique("v6");
    let net = format!("{u}-net");
    // A unique ULA /64 per test process.
    let subnet = format!("fd00:5a:{:x}::/64", std::process::id() & 0xffff);
    if let Err(why) = c.network(&net, &["--ipv6", "--subnet", &subnet]) {
        eprintln!("\n*** SKIPPED: ipv6_on_a_dual_stack_network: the engine refuses an IPv6 network: {why} ***\n");
        return;
    }
    let app = format!("{u}-app");
    c.run_unpublished(
        &app,
        &[
            "--network",
            &net,
            "--expose",
            "8080",
            "-e",
            &format!("SERVICE_NAME={u}"),
        ],
        image,
        &["hello", "--addr", "::", "--port", "8080"],
    );
    let v6 = ip_on(&app, &net, "GlobalIPv6Address");
    let v4 = ip_on(&app, &net, "IPAddress");
    assert!(
        v6.contains(':'),
        "the container has an IPv6 address: {v6:?}"
    );
    let (reg, proxy) = crate::dev(&["--network", &net, "--prefer-ipv6", "--explicit"]);
    assert_eventually!(
        addresses(&reg.url, &u).await == [(v6.clone(), 8080)].into_iter().collect(),
        "registered at its IPv6 address: {:?}",
        addresses(&reg.url, &u).await
    );
    let e = &entries(&reg.url, &u).await[0];
    assert_eq!(e["ServiceTaggedAddresses"]["lan_ipv6"]["Address"], v6);
    assert_eq!(e["ServiceTaggedAddresses"]["lan_ipv4"]["Address"], v4);
    assert_eventually!(
        common::proxied_field(&proxy, &format!("{u}.localhost"), "hostname")
            .await
            .is_some(),
        "reached through the proxy over IPv6"
    );
}

#[tokio::test]
async fn compose_labels_reach_meta_and_can_name_the_service() {
    require_docker!();
    if !engine::compose_available() {
        return;
    }
    let mut c = Containers::default();
    let project = unique("shoalmeta").replace('-', "");
    let service = format!("svc{project}");
    let yaml = format!(
        "version: \"2.1\"\nservices:\n  {service}:\n    image: {}\n    ports: [\"8080\"]\n    labels:\n      shoal-test: \"1\"\n",
        engine::image()
    );
    let file = c.compose_file(&project, &yaml);
    let (reg, _proxy) = crate::dev(&["--compose-names"]);
    engine::compose(&project, &file, &["up", "-d"]);
    assert_eventually!(
        entries(&reg.url, &service).await.len() == 1,
        "named after the compose service"
    );
    let e = &entries(&reg.url, &service).await[0];
    assert_eq!(
        e["ServiceMeta"],
        serde_json::json!({
            "compose_project": project,
            "compose_service": service,
            "compose_container_number": "1",
        })
    );
}

/// Runs `examples/NAME/run.sh` with this build's image and binary; its
/// output (the example's figures) goes to the test's output.
fn run_example(name: &str) {
    // One example at a time: each starts a whole compose project and a
    // load loop; three at once on a small CI machine measure contention.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let project = unique(name).replace('-', "");
    let mut c = Containers::default();
    let root = engine::repo_root();
    c.project(
        &project,
        root.join(format!("examples/{name}/docker-compose.yml")),
    );
    let out = Command::new(root.join(format!("examples/{name}/run.sh")))
        .env("SHOAL_IMAGE", engine::shoal_image())
        .env("SHOAL_BINARY", engine::bin())
        .env("COMPOSE_PROJECT_NAME", &project)
        .output()
        .expect("run.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}:")) || l.contains("FAILED"))
        .collect();
    eprintln!("examples/{name}/run.sh:\n{}", figures.join("\n"));
    assert!(
        out.status.success(),
        "examples/{name}/run.sh failed:\n{text}"
    );
    assert!(text.contains(&format!("{name}: OK")), "{text}");
    drop(c);
    assert_eq!(
        docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={project}")
        ]),
        "",
        "run.sh removed its containers"
    );
}

#[test]
fn example_hello_compose() {
    require_docker!();
    if engine::compose_available() {
        run_example("hello-compose");
    }
}

#[test]
fn example_internal_lb() {
    require_docker!();
    if engine::compose_available() {
        run_example("internal-lb");
    }
}

#[test]
fn example_haproxy() {
    require_docker!();
    if engine::compose_available() {
        run_example("haproxy");
    }
}

#[test]
fn the_examples_are_complete() {
    let root = engine::repo_root();
    for name in ["hello-compose", "internal-lb", "haproxy"] {
        for file in ["docker-compose.yml", "README.md", "run.sh"] {
            let path = root.join(format!("examples/{name}/{file}"));
            assert!(path.exists(), "{} is missing", path.display());
        }
    }
}
