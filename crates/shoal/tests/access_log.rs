//! The API's request log: `--access-log` on `server`, `dev` and `agent`
//! logs one line per request (target `shoal::access`, the proxy's fields);
//! a refused request's reason is logged at debug (target `shoal::api`)
//! whatever the flag.

mod common;

use common::client;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

/// A shoal process whose stderr (JSON log lines) the test reads.
struct Logged {
    child: Child,
    url: String,
}

impl Logged {
    fn start(args: &[&str], ready: &str) -> Logged {
        let mut child = Command::new(bin())
            .args(args)
            .args(["--log-format", "json"])
            .env("SHOAL_NO_DOCKER", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = stdout
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| {
                l.contains(ready)
                    .then(|| l.split("listening on ").nth(1).map(str::to_string))?
            })
            .expect("no ready line");
        // Keep draining stdout: a closed pipe would fail the child's next line.
        std::thread::spawn(move || stdout.for_each(drop));
        Logged { child, url }
    }

    /// Stops it (SIGKILL) and returns its log lines as JSON.
    fn stop(mut self) -> Vec<Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = BufReader::new(self.child.stderr.take().unwrap());
        stderr
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn of_target<'a>(lines: &'a [Value], target: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["target"] == target).collect()
}

async fn requests(url: &str) {
    let c = client();
    let _ = c
        .get(format!("{url}/v1/kv/nope?recurse"))
        .send()
        .await
        .unwrap();
    let _ = c
        .put(format!("{url}/v1/kv/x?flags=abc"))
        .body("1")
        .send()
        .await
        .unwrap();
    // Give the log a moment to reach the pipe.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

const SERVER: &[&str] = &[
    "server",
    "--in-memory",
    "--http-addr",
    "127.0.0.1:0",
    "--dns-addr",
    "127.0.0.1:0",
];

#[tokio::test]
async fn access_log_has_one_line_per_request_with_the_proxy_fields() {
    let args = [SERVER, &["--access-log", "--log-level", "info"]].concat();
    let s = Logged::start(&args, "HTTP API");
    requests(&s.url).await;
    let lines = s.stop();
    let access = of_target(&lines, "shoal::access");
    let find = |path: &str| {
        access
            .iter()
            .find(|l| l["fields"]["path"] == path)
            .unwrap_or_else(|| panic!("no access line for {path} in {access:?}"))
    };
    let nope = &find("/v1/kv/nope")["fields"];
    assert_eq!(
        (
            nope["method"].as_str(),
            nope["status"].as_u64(),
            nope["query"].as_str()
        ),
        (Some("GET"), Some(404), Some("recurse"))
    );
    for field in ["client", "host", "ms"] {
        assert!(nope.get(field).is_some(), "{field} missing in {nope}");
    }
    assert!(
        nope["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{nope}"
    );
    assert_eq!(find("/v1/kv/x")["fields"]["status"], 400);
    // At info, no refusal lines.
    assert!(of_target(&lines, "shoal::api").is_empty());
}

#[tokio::test]
async fn refusals_are_logged_with_their_reason_at_debug() {
    for (args, ready) in [
        (
            [SERVER, &["--log-level", "warn,shoal::api=debug"]].concat(),
            "HTTP API",
        ),
        (
            vec![
                "dev",
                "--in-memory",
                "--http-addr",
                "127.0.0.1:0",
                "--dns-addr",
                "127.0.0.1:0",
                "--listen",
                "127.0.0.1:0",
                "--log-level",
                "warn,shoal::api=debug",
            ],
            "HTTP API",
        ),
    ] {
        let s = Logged::start(&args, ready);
        requests(&s.url).await;
        let lines = s.stop();
        assert!(
            of_target(&lines, "shoal::access").is_empty(),
            "no access log without --access-log"
        );
        let refused = of_target(&lines, "shoal::api");
        let flags = refused
            .iter()
            .find(|l| l["fields"]["path"] == "/v1/kv/x")
            .unwrap_or_else(|| panic!("{:?}: no refusal line in {refused:?}", args[0]));
        let f = &flags["fields"];
        assert_eq!(f["status"], 400);
        assert!(
            f["reason"].as_str().unwrap().contains("Invalid flags"),
            "{f}"
        );
        assert_eq!(flags["level"], "DEBUG");
    }
}

#[tokio::test]
async fn agent_and_dev_take_access_log_too() {
    let server = Logged::start(SERVER, "HTTP API");
    let agent = Logged::start(
        &[
            "agent",
            "--registry",
            &server.url,
            "--http-addr",
            "127.0.0.1:0",
            "--access-log",
            "--log-level",
            "info",
        ],
        "shoal agent",
    );
    let _ = client()
        .get(format!("{}/v1/agent/services", agent.url))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = agent.stop();
    assert!(
        of_target(&lines, "shoal::access")
            .iter()
            .any(|l| l["fields"]["path"] == "/v1/agent/services"),
        "{lines:?}"
    );
    let dev = Logged::start(
        &[
            "dev",
            "--in-memory",
            "--http-addr",
            "127.0.0.1:0",
            "--dns-addr",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
            "--access-log",
            "--log-level",
            "info",
        ],
        "HTTP API",
    );
    let _ = client()
        .get(format!("{}/v1/catalog/services", dev.url))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = dev.stop();
    assert!(
        of_target(&lines, "shoal::access")
            .iter()
            .any(|l| l["fields"]["path"] == "/v1/catalog/services"),
        "{lines:?}"
    );
}
