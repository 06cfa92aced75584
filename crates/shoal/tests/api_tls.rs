//! The API over HTTPS, against real peers: curl and py-consul read and
//! write over it, a certificate from an unknown CA is refused by curl, the
//! CLI and the agent with the reason, `--tls-verify-incoming` requires a
//! client certificate, an agent syncs to an HTTPS server, and start-up
//! refuses flag mistakes and bad files naming them. Certificates are made
//! with `openssl` in a temporary directory (testkit's `TestCerts`).

mod common;

use common::stack::bin;
use common::tls::{curl, Watched};
use shoal_testkit::{assert_eventually, run_to_exit, ServerProcess, TestCerts};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A server with HTTPS beside HTTP; returns it and its https:// URL.
fn https_server(certs: &TestCerts, extra: &[&str]) -> (ServerProcess, String) {
    let mut args = vec![
        "--in-memory",
        "--https-addr",
        "127.0.0.1:0",
        "--tls-cert",
        p(&certs.server_cert),
        "--tls-key",
        p(&certs.server_key),
    ];
    args.extend_from_slice(extra);
    let server = ServerProcess::start(bin(), &args);
    let url = server
        .announced_url("HTTPS API")
        .expect("an HTTPS API line")
        .to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    (server, url)
}

/// `shoal ARGS` to its end: (success, stderr).
fn shoal(args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_CACERT")
        .env("NO_PROXY", "*");
    let (status, stderr) = run_to_exit(cmd, Duration::from_secs(30));
    (status.is_some_and(|s| s.success()), stderr)
}

#[test]
fn curl_reads_and_writes_over_https_and_plain_http_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::generate(dir.path());
    let (server, https) = https_server(&certs, &[]);
    let ca = p(&certs.ca);
    let put = curl(&[
        "--fail",
        "--cacert",
        ca,
        "-X",
        "PUT",
        "-d",
        "over tls",
        &format!("{https}/v1/kv/tls/a"),
    ]);
    assert_eq!((put.0, put.1.as_str()), (true, "true"), "{}", put.2);
    // By name as well as by IP: the certificate names both.
    let port = https.rsplit(':').next().unwrap();
    let by_name = format!("https://localhost:{port}/v1/kv/tls/a?raw");
    let get = curl(&[
        "--fail",
        "--cacert",
        ca,
        "--resolve",
        &format!("localhost:{port}:127.0.0.1"),
        &by_name,
    ]);
    assert_eq!((get.0, get.1.as_str()), (true, "over tls"), "{}", get.2);
    // TLS 1.2 is served too; plain HTTP on --http-addr sees the same catalog.
    let tls12 = curl(&[
        "--fail",
        "--cacert",
        ca,
        "--tls-max",
        "1.2",
        &format!("{https}/v1/kv/tls/a?raw"),
    ]);
    assert_eq!(tls12.1, "over tls", "{}", tls12.2);
    let plain = curl(&["--fail", &server.at("/v1/kv/tls/a?raw")]);
    assert_eq!(plain.1, "over tls", "{}", plain.2);
}

#[test]
fn py_consul_registers_and_reads_over_https() {
    let pyclients = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("pyclients/py-consul");
    assert!(
        pyclients.join("consul").is_dir(),
        "py-consul is not installed in {}: run scripts/test",
        pyclients.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::generate(dir.path());
    let (_server, https) = https_server(&certs, &[]);
    let port = https.rsplit(':').next().unwrap();
    let script = r#"
import sys, consul, requests
port, ca, other = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = consul.Consul(host="127.0.0.1", port=port, scheme="https", verify=ca)
c.agent.service.register("web", service_id="web-1", port=8080, tags=["tls"])
_, nodes = c.catalog.service("web")
assert [n["ServiceID"] for n in nodes] == ["web-1"], nodes
assert c.kv.put("tls/py", "over https") is True
_, entry = c.kv.get("tls/py")
assert entry["Value"] == b"over https", entry
try:
    consul.Consul(host="127.0.0.1", port=port, scheme="https", verify=other).kv.get("tls/py")
    sys.exit("a server signed by another CA was trusted")
except requests.exceptions.SSLError:
    pass
print("ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, port, p(&certs.ca), p(&certs.other_ca)])
        .env("PYTHONPATH", &pyclients)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "*")
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_certificate_from_an_unknown_ca_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::generate(dir.path());
    let (server, https) = https_server(&certs, &[]);
    let other = p(&certs.other_ca);
    let (ok, _, err) = curl(&["--cacert", other, &format!("{https}/v1/kv/x")]);
    assert!(!ok && err.contains("certificate"), "curl trusted it: {err}");
    // The CLI: refused with the reason, then accepted with the right CA.
    let (ok, err) = shoal(&[
        "kv",
        "put",
        "k",
        "v",
        "--registry",
        &https,
        "--ca-file",
        other,
    ]);
    assert!(!ok, "the CLI trusted a certificate from another CA");
    assert!(
        err.contains("unknown CA") && err.contains("--ca-file"),
        "{err}"
    );
    let (ok, err) = shoal(&[
        "kv",
        "put",
        "k",
        "v",
        "--registry",
        &https,
        "--ca-file",
        p(&certs.ca),
    ]);
    assert!(ok, "{err}");
    // CONSUL_HTTP_SSL: a bare host:port means https.
    let bare = https.trim_start_matches("https://");
    let mut cmd = Command::new(bin());
    cmd.args(["kv", "get", "k", "--registry", bare])
        .env("CONSUL_HTTP_SSL", "true")
        .env("CONSUL_CACERT", p(&certs.ca))
        .env("NO_PROXY", "*");
    let (status, err) = run_to_exit(cmd, Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{err}");
    // The agent: it keeps retrying, saying why, and never registers.
    let agent = Watched::spawn(
        bin(),
        &[
            "agent",
            "--registry",
            &https,
            "--ca-file",
            other,
            "--node-name",
            "distrust",
            "--http-addr",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ],
    );
    let line = agent.wait_line("cannot sync with the registry");
    assert!(line.contains("unknown CA"), "{line}");
    let nodes = curl(&["--fail", &server.at("/v1/catalog/nodes")]);
    assert!(!nodes.1.contains("distrust"), "{}", nodes.1);
}

#[test]
fn verify_incoming_requires_a_client_certificate_signed_by_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::generate(dir.path());
    let (_server, https) =
        https_server(&certs, &["--tls-ca", p(&certs.ca), "--tls-verify-incoming"]);
    let url = format!("{https}/v1/status/leader");
    let ca = p(&certs.ca);
    let (ok, out, _) = curl(&["--fail", "--cacert", ca, &url]);
    assert!(
        !ok && out.is_empty(),
        "served without a client certificate: {out}"
    );
    let (ok, out, err) = curl(&[
        "--fail",
        "--cacert",
        ca,
        "--cert",
        p(&certs.client_cert),
        "--key",
        p(&certs.client_key),
        &url,
    ]);
    assert!(ok && out.contains("127.0.0.1"), "{err}");
    // A certificate the server's CA did not sign is refused too.
    let other_key = certs.other_ca.with_extension("key");
    let (ok, _, _) = curl(&[
        "--fail",
        "--cacert",
        ca,
        "--cert",
        p(&certs.other_ca),
        "--key",
        p(&other_key),
        &url,
    ]);
    assert!(!ok, "a certificate of an unknown CA was accepted");
    // The CLI, without and with its certificate.
    let (ok, err) = shoal(&["kv", "put", "m", "v", "--registry", &https, "--ca-file", ca]);
    assert!(!ok && err.contains("client certificate"), "{err}");
    let (ok, err) = shoal(&[
        "kv",
        "put",
        "m",
        "v",
        "--registry",
        &https,
        "--ca-file",
        ca,
        "--client-cert",
        p(&certs.client_cert),
        "--client-key",
        p(&certs.client_key),
    ]);
    assert!(ok, "{err}");
}

#[tokio::test]
async fn an_agent_registers_against_an_https_server() {
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::generate(dir.path());
    let (server, https) = https_server(&certs, &[]);
    let agent =
        ServerProcess::start_agent(bin(), &https, "tls-agent", &["--ca-file", p(&certs.ca)]);
    let body = r#"{"Name":"api","ID":"api-1","Port":9000}"#;
    let put = curl(&[
        "--fail",
        "-X",
        "PUT",
        "-d",
        body,
        &agent.at("/v1/agent/service/register"),
    ]);
    assert!(put.0, "{}", put.2);
    let catalog = server.at("/v1/catalog/service/api");
    assert_eventually!(
        curl(&["--fail", &catalog]).1.contains("api-1"),
        "the agent's instance never reached the HTTPS server's catalog"
    );
}

#[test]
fn start_up_refuses_flag_mistakes_and_bad_files_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let certs = TestCerts::generate(&dir.path().join("certs"));
    let base = [
        "server",
        "--in-memory",
        "--http-addr",
        "127.0.0.1:0",
        "--dns-addr",
        "127.0.0.1:0",
    ];
    let https = ["--https-addr", "127.0.0.1:0"];
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            https.to_vec(),
            "needs --tls-cert FILE and --tls-key FILE".into(),
        ),
        (
            vec!["--tls-cert", p(&certs.server_cert)],
            "give --https-addr".into(),
        ),
        (
            [
                &https[..],
                &["--tls-cert", p(&garbage), "--tls-key", p(&certs.server_key)],
            ]
            .concat(),
            format!("certificate {} is unusable", garbage.display()),
        ),
        (
            [
                &https[..],
                &[
                    "--tls-cert",
                    p(&certs.server_cert),
                    "--tls-key",
                    p(&certs.client_key),
                ],
            ]
            .concat(),
            "are no pair".into(),
        ),
        (
            [
                &https[..],
                &[
                    "--tls-cert",
                    p(&certs.server_cert),
                    "--tls-key",
                    p(&certs.server_key),
                    "--tls-verify-incoming",
                ],
            ]
            .concat(),
            "--tls-verify-incoming needs --tls-ca".into(),
        ),
    ];
    for (flags, want) in cases {
        let mut cmd = Command::new(bin());
        cmd.args(base).args(&flags);
        let (status, stderr) = run_to_exit(cmd, Duration::from_secs(20));
        assert!(status.is_some_and(|s| !s.success()), "{flags:?} started");
        assert!(stderr.contains(&want), "{flags:?}: {stderr}");
    }
}
