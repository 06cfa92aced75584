//! Real Consul client libraries, unchanged, against a real `shoal server`:
//! py-consul and python-consul2 run the coordination scenarios of
//! `tests/python/coordination.py` (sessions, locks, TTL expiry, lock-delay,
//! txn, events, maintenance, agent health, prepared queries, bad input).
//!
//! The libraries are installed by `scripts/test` into
//! `<target>/pyclients/<package>` (each its own directory: both are the
//! `consul` module); a missing one fails the test saying so.

use shoal_testkit::ServerProcess;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

/// Where scripts/test installed `package`.
fn client_dir(package: &str) -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp
        .parent()
        .expect("target dir")
        .join("pyclients")
        .join(package);
    assert!(
        dir.join("consul").is_dir(),
        "{package} is not installed in {}: run scripts/test (it installs the Python clients)",
        dir.display()
    );
    dir
}

/// Runs one scenario with one client library against a fresh server.
fn run(package: &str, scenario: &str) {
    let dir = client_dir(package);
    let mut server = ServerProcess::start(bin(), &["--in-memory", "--node-name", "py-node"]);
    let port = server.url.rsplit(':').next().expect("port").to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/coordination.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .args(["127.0.0.1", &port, scenario])
        .env("PYTHONPATH", &dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("CONSUL_HTTP_ADDR")
        .env("NO_PROXY", "*")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    // Every scenario is bounded inside; this only stops a hung interpreter.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{package} {scenario}: still running after 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    server.terminate();
    assert!(
        out.status.success(),
        "{package} {scenario} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod py_consul {
            $(#[test] fn $name() { super::run("py-consul", stringify!($name)); })*
        }
        mod python_consul2 {
            $(#[test] fn $name() { super::run("python-consul2", stringify!($name)); })*
        }
    };
}

scenarios!(
    sessions_basic,
    ttl_expiry_hands_lock_over,
    delete_behavior,
    lock_delay,
    session_on_critical_check,
    txn,
    events,
    maintenance_and_agent_health,
    bad_input,
    agent_self,
    prepared_queries,
);
