//! TLS passed through by server name (`--route ADDR=*/sni`, fabio's
//! `tcp+sni`): the proxy reads the ClientHello's SNI, routes it as an
//! HTTP host, and hands the connection whole to the instance, which
//! terminates TLS itself (a real `openssl s_server` here, with curl and
//! `openssl s_client` as clients).

mod common;

use common::tls::tls_backend;
use common::*;
use serde_json::json;
use shoal_testkit::{ServerProcess, TestCerts};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

/// curl through the route with `name` as the server name; its stdout,
/// or `None` when the connection failed.
fn curl(route: u16, name: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "--resolve"])
        .arg(format!("{name}:{route}:127.0.0.1"))
        .arg(format!("https://{name}:{route}/"))
        .output()
        .expect("curl runs");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn subject(pem_or_chain: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-subject"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(pem_or_chain).unwrap();
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout)
        .trim()
        .to_string()
}

#[tokio::test]
async fn tls_is_routed_by_server_name_and_passed_through_whole() {
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::generate(dir.path());
    let (mut backend, port) = tls_backend(&certs.server_cert, &certs.server_key);
    let (dev, _) = ServerProcess::start_dev(
        bin(),
        &[
            "--route",
            "127.0.0.1:0=*/sni",
            "--queue-timeout",
            "300ms",
            "--no-docker",
        ],
    );
    let route: u16 = dev
        .announced_url("route to *")
        .expect("the sni route announced")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let reg = json!({"ID": "web-1", "Name": "web", "Address": "127.0.0.1", "Port": port});
    ok(put_json(dev.at("/v1/agent/service/register"), &reg).await);

    // web.localhost routes to web, as an HTTP host would; the instance
    // answers over the TLS it terminates itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        if let Some(page) = curl(route, "web.localhost") {
            break page;
        }
        assert!(Instant::now() < deadline, "never routed to the TLS backend");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(page.contains("s_server"), "{page}");
    // The certificate the client sees is the instance's own: not terminated.
    let shown = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{route}")])
        .args(["-servername", "web.localhost"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let want = subject(&std::fs::read(&certs.server_cert).unwrap());
    assert_eq!(subject(&shown.stdout), want);
    // A name no instance answers, and plain HTTP, are closed.
    assert_eq!(curl(route, "nope.localhost"), None);
    let plain = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{route}/"),
        ])
        .output()
        .unwrap();
    assert!(!plain.status.success(), "plain HTTP was answered");
    let _ = backend.kill();
    let _ = backend.wait();
}
