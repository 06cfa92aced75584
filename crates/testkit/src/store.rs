//! Which store the suites' servers run on: `SHOAL_TEST_STORE=etcd` has
//! every `shoal server`/`shoal dev` a suite starts through the testkit
//! ([`crate::ServerProcess::start`], `start_dev`, [`crate::TestServer`])
//! keep its catalog on etcd, each under a prefix of its own (so each
//! starts empty, as an in-memory one does), so the very suites that test
//! the embedded store test the etcd one too. Unset or `embedded`: the
//! embedded store, as always.
//!
//! The etcd: `SHOAL_TEST_ETCD_ENDPOINTS` (what `scripts/test` starts
//! once for all suites), else one member this process starts on first
//! use and that goes when the process does (it watches the process's
//! pipe, so not even a killed test run leaves it behind).

use std::io::Write;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Whether the suites run on etcd (`SHOAL_TEST_STORE=etcd`).
pub fn on_etcd() -> bool {
    match std::env::var("SHOAL_TEST_STORE").as_deref() {
        Ok("etcd") => true,
        Ok("") | Ok("embedded") | Err(_) => false,
        Ok(other) => panic!("SHOAL_TEST_STORE={other:?}: say `etcd` or `embedded`"),
    }
}

/// The flags that put one more server on etcd, under a fresh prefix.
pub fn etcd_flags() -> Vec<String> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    vec![
        "--store".into(),
        "etcd".into(),
        "--etcd-endpoints".into(),
        endpoints().to_string(),
        "--etcd-prefix".into(),
        format!("/shoal-test/{}-{n}/", std::process::id()),
    ]
}

/// `args` with [`etcd_flags`] added when the suites run on etcd and the
/// caller did not choose a store itself.
pub(crate) fn with_store(args: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if on_etcd() && !args.contains(&"--store") {
        out.extend(etcd_flags());
    }
    out
}

fn endpoints() -> &'static str {
    static ENDPOINTS: OnceLock<String> = OnceLock::new();
    ENDPOINTS.get_or_init(|| match std::env::var("SHOAL_TEST_ETCD_ENDPOINTS") {
        Ok(e) if !e.trim().is_empty() => e,
        _ => start_member(),
    })
}

/// Starts one etcd member that lives as long as this process: a shell
/// runs it and kills it (and removes its data) once this process's end
/// of the shell's stdin closes.
fn start_member() -> String {
    static KEEP: Mutex<Option<ChildStdin>> = Mutex::new(None);
    let ports = crate::etcd::free_ports(2);
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let client = format!("http://127.0.0.1:{}", ports[0]);
    let peer = format!("http://127.0.0.1:{}", ports[1]);
    let script = r#"etcd --name shared --data-dir "$1/data" \
        --listen-client-urls "$2" --advertise-client-urls "$2" \
        --listen-peer-urls "$3" --initial-advertise-peer-urls "$3" \
        --initial-cluster "shared=$3" --max-txn-ops 100000 >"$1/etcd.log" 2>&1 &
        e=$!; cat >/dev/null; kill $e; wait $e; rm -rf "$1""#;
    let mut child = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(&dir)
        .args([&client, &peer])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start sh for the shared etcd");
    let stdin = child.stdin.take().expect("piped stdin");
    *KEEP.lock().unwrap_or_else(|e| e.into_inner()) = Some(stdin);
    // Reaped by nobody: it outlives every test and ends with the process.
    std::mem::forget(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = format!("{}/health", client.replace("http://", ""));
    loop {
        if healthy(&health) {
            return client;
        }
        assert!(
            Instant::now() < deadline,
            "the shared etcd at {client} did not become healthy within 20 s \
             (is Debian's etcd-server installed? log: {})",
            dir.join("etcd.log").display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET /health` of `host:port/health` answers `"health":"true"`.
fn healthy(host_path: &str) -> bool {
    use std::io::Read;
    let Some((host, path)) = host_path.split_once('/') else {
        return false;
    };
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains(r#""health":"true""#)
}
