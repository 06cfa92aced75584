//! A real gRPC server and client (Python grpcio, unchanged, from
//! `tests/python/grpc_echo.py`) through the proxy: three server instances
//! of a service tagged `proto=grpc`, reached over HTTP/2 (h2c) end to
//! end; unary calls balanced over all three with their trailers, a
//! bidirectional stream, the same over TLS (ALPN h2), and `UNAVAILABLE`,
//! not an HTTP error page, when no instance appears in time.
//!
//! grpcio is installed by `scripts/test` into `<target>/pyclients/grpcio`;
//! a missing one fails the test saying so.

mod common;

use common::stack::bin;
use common::*;
use serde_json::{json, Value};
use shoal_testkit::{ServerProcess, TestCerts};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn grpcio() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap().join("pyclients").join("grpcio");
    assert!(
        dir.join("grpc").is_dir(),
        "grpcio is not installed in {}: run scripts/test (it installs it)",
        dir.display()
    );
    dir
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/grpc_echo.py")
}

fn python(args: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(script())
        .args(args)
        .env("PYTHONPATH", grpcio())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "*")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("grpc_proxy");
    cmd
}

/// A gRPC server instance: the process (ends when its stdin closes) and
/// its port.
struct Instance {
    child: Child,
    port: u16,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(id: &str) -> Instance {
    let mut child = python(&["serve", id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .expect("the server said its port")
        .unwrap();
    let port = line
        .strip_prefix("PORT ")
        .unwrap_or_else(|| panic!("unexpected: {line}"))
        .parse()
        .unwrap();
    Instance { child, port }
}

/// Runs a client command (bounded: every call has a deadline, and the
/// interpreter is killed after 60 s); its JSON line.
fn client_json(args: &[&str]) -> Value {
    let mut child = python(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "grpc_echo.py {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test]
async fn grpc_unary_and_streaming_calls_are_balanced_over_http2() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = TestCerts::self_signed(dir.path(), "echo", &["echo.localhost"]);
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let (dev, _) = ServerProcess::start_dev(
        bin(),
        &[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            &cert_s,
            "--tls-key",
            &key_s,
            "--queue-timeout",
            "300ms",
            "--no-docker",
        ],
    );
    let plain = dev
        .announced_url("shoal proxy")
        .unwrap()
        .trim_start_matches("http://")
        .to_string();
    let tls = dev
        .announced_url("TLS")
        .expect("TLS listener announced")
        .trim_start_matches("https://")
        .to_string();
    let instances: Vec<Instance> = ["g1", "g2", "g3"].iter().map(|id| serve(id)).collect();
    for (id, inst) in ["g1", "g2", "g3"].iter().zip(&instances) {
        let reg = json!({"ID": id, "Name": "echo", "Address": "127.0.0.1", "Port": inst.port, "Tags": ["proto=grpc"]});
        ok(put_json(dev.at("/v1/agent/service/register"), &reg).await);
    }
    // Until all three are in the proxy's table, a round of calls may
    // miss one; the registrations are acknowledged, so this is short.
    let deadline = Instant::now() + Duration::from_secs(10);
    let summary = loop {
        let s = client_json(&["call", &plain, "echo.localhost", "30"]);
        if s["counts"].as_object().unwrap().len() == 3 || Instant::now() > deadline {
            break s;
        }
    };
    let counts = summary["counts"].as_object().unwrap();
    assert_eq!(counts.len(), 3, "balanced over all three: {summary}");
    assert!(
        counts.values().all(|n| n.as_u64().unwrap() >= 5),
        "{summary}"
    );
    assert_eq!(
        summary["trailers_ok"], true,
        "trailers passed on: {summary}"
    );
    assert_eq!(summary["chat_echoed"], true, "{summary}");
    assert_eq!(
        summary["chat_instances"].as_array().unwrap().len(),
        1,
        "one stream stays on one instance: {summary}"
    );

    // The same over TLS, HTTP/2 chosen by ALPN.
    let summary = client_json(&["call", &tls, "echo.localhost", "6", &cert_s]);
    assert_eq!(summary["counts"].as_object().unwrap().len(), 3, "{summary}");
    assert_eq!(summary["trailers_ok"], true, "{summary}");
    assert_eq!(summary["chat_echoed"], true, "{summary}");

    // No instance in time: a gRPC UNAVAILABLE saying why.
    let failed = client_json(&["unavailable", &plain, "ghost.localhost"]);
    assert_eq!(failed["code"], "UNAVAILABLE", "{failed}");
    assert!(
        failed["details"].as_str().unwrap().contains("ghost"),
        "{failed}"
    );
    // And when every instance is gone.
    drop(instances);
    let failed = client_json(&["unavailable", &plain, "echo.localhost"]);
    assert_eq!(failed["code"], "UNAVAILABLE", "{failed}");
}
