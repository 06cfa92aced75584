//! Flags a newcomer types, against the real binary: bad values are refused
//! with a message saying what is accepted (never silently taken), host
//! names work on every listen flag, and logs carry no colour codes unless
//! they go to a terminal. Every role is covered.

use shoal_testkit::ServerProcess;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

/// An address nothing listens on, for roles that follow a registry.
const NO_REGISTRY: &str = "http://127.0.0.1:1";

/// Every long-running role with flags that start it on port-0 listeners,
/// and the line of its info log that says it started.
fn roles() -> Vec<(&'static str, Vec<&'static str>, &'static str)> {
    let l = "127.0.0.1:0";
    vec![
        (
            "server",
            vec!["server", "--in-memory", "--http-addr", l, "--dns-addr", l],
            "shoal started",
        ),
        (
            "dev",
            vec![
                "dev",
                "--in-memory",
                "--no-docker",
                "--http-addr",
                l,
                "--dns-addr",
                l,
                "--listen",
                l,
            ],
            "shoal started",
        ),
        (
            "agent",
            vec!["agent", "--registry", NO_REGISTRY, "--http-addr", l],
            "shoal agent started",
        ),
        (
            "proxy",
            vec![
                "proxy",
                "--registry",
                NO_REGISTRY,
                "--listen",
                l,
                "--stats-addr",
                l,
            ],
            "shoal proxy started",
        ),
        ("hello", vec!["hello"], "shoal hello started"),
    ]
}

/// Runs `shoal ARGS` (with `env`), which must exit by itself within 10 s;
/// returns (exit code, stderr). A process still running is killed and
/// reported as code -1 (a bad flag silently taken).
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .envs(env.iter().copied())
        .env("SHOAL_NO_DOCKER", "true");
    let (status, err) = shoal_testkit::run_to_exit(cmd, Duration::from_secs(10));
    (status.and_then(|s| s.code()).unwrap_or(-1), err)
}

/// Asserts `shoal ARGS` is refused as a usage error whose message has `says`.
fn refused(args: &[&str], says: &[&str]) {
    let (code, err) = run_to_exit(args, &[]);
    assert_eq!(code, 2, "shoal {args:?} must be refused; stderr: {err}");
    for part in says {
        assert!(err.contains(part), "shoal {args:?}: {part:?} not in: {err}");
    }
}

#[test]
fn bad_log_levels_are_refused_by_every_role() {
    for (role, args, _) in roles() {
        let mut with_flag = vec!["--log-level", "bogus!!"];
        with_flag.extend(&args);
        let (code, err) = run_to_exit(&with_flag, &[]);
        assert_eq!(
            code, 2,
            "{role}: --log-level 'bogus!!' must be refused: {err}"
        );
        assert!(
            err.contains("invalid --log-level \"bogus!!\""),
            "{role}: {err}"
        );
        assert!(
            err.contains("accepted: off, error, warn, info, debug, trace"),
            "{role}: {err}"
        );
        // The same value from the environment.
        let (code, err) = run_to_exit(&args, &[("SHOAL_LOG_LEVEL", "bogus!!")]);
        assert_eq!(
            code, 2,
            "{role}: SHOAL_LOG_LEVEL=bogus!! must be refused: {err}"
        );
    }
}

/// Starts `shoal ARGS` with stderr on a pipe; returns everything it wrote
/// there up to and including the first line containing `until` (10 s at most).
fn stderr_until(args: &[&str], until: &str, env: &[(&str, &str)]) -> String {
    let mut child = Command::new(bin())
        .args(args)
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .env("SHOAL_NO_DOCKER", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(until) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.contains(until),
        "shoal {args:?} never logged {until:?}: {seen}"
    );
    seen
}

#[test]
fn logs_on_a_pipe_carry_no_colour_codes() {
    for (role, mut args, started) in roles() {
        args.extend(["--log-level", "info"]);
        let logs = stderr_until(&args, started, &[]);
        assert!(
            !logs.contains('\u{1b}'),
            "{role} coloured its logs on a pipe: {logs:?}"
        );
        assert!(logs.contains("INFO"), "{role}: {logs}");
    }
}

#[test]
fn unknown_route_kinds_are_refused() {
    let kinds = "accepted kinds: http, tcp";
    for role in [
        vec!["proxy", "--registry", NO_REGISTRY],
        vec!["dev", "--in-memory"],
    ] {
        for (route, says) in [
            ("127.0.0.1:0=web/udp", vec!["unknown kind \"udp\"", kinds]),
            ("127.0.0.1:0=web/", vec!["unknown kind \"\"", kinds]),
            ("127.0.0.1:0=", vec!["no service name"]),
            ("127.0.0.1:0", vec!["no `=`"]),
            ("nowhere=web", vec!["has no port"]),
        ] {
            let mut args = role.clone();
            args.extend(["--route", route]);
            let mut want = says;
            want.push("ADDR=SERVICE/tcp");
            refused(&args, &want);
        }
    }
}

#[test]
fn other_compound_values_are_checked() {
    refused(
        &["register", "web", "--port", "1", "--meta", "=prod"],
        &["has no key: want key=value"],
    );
    refused(
        &["register", "web", "--port", "1", "--meta", "env"],
        &["is not key=value"],
    );
    let (code, err) = run_to_exit(
        &[
            "server",
            "--in-memory",
            "--http-addr",
            "127.0.0.1:0",
            "--dns-service-ttl",
            "=5s",
        ],
        &[],
    );
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("has no service name"), "{err}");
    refused(
        &["server", "--http-addr", "localhost"],
        &[
            "--http-addr",
            "has no port",
            "e.g. 127.0.0.1:8500, localhost:8500",
        ],
    );
    refused(
        &["proxy", "--listen", "::1:8080"],
        &["--listen", "needs brackets"],
    );
    refused(
        &["hello", "--addr", "bad host"],
        &["neither an IP address nor a host name"],
    );
}

/// GET `url` with a plain HTTP/1.0 request over TCP; returns the status line.
fn status_line(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').map_or((rest, "/"), |(h, p)| (h, p));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /{} HTTP/1.0\r\nHost: {host}\r\n\r\n",
        path.trim_start_matches('/')
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_string()
}

#[test]
fn every_listen_flag_takes_a_host_name() {
    let server = ServerProcess::start_role(
        bin(),
        &[
            "server",
            "--in-memory",
            "--http-addr",
            "localhost:0",
            "--dns-addr",
            "localhost:0",
            "--log-level",
            "warn",
        ],
        "HTTP API",
    );
    // localhost was resolved and bound on its loopback address(es).
    assert!(server.url.starts_with("http://127.0.0.1:") || server.url.starts_with("http://[::1]:"));
    assert!(server.dns_addr().unwrap().ip().is_loopback());
    let port = server.url.rsplit(':').next().unwrap();
    assert_eq!(
        status_line(&format!("http://localhost:{port}/v1/status/leader")),
        "HTTP/1.0 200 OK"
    );

    let proxy = ServerProcess::start_role(
        bin(),
        &[
            "proxy",
            "--registry",
            &server.url,
            "--listen",
            "localhost:0",
            "--stats-addr",
            "localhost:0",
            "--route",
            "localhost:0=web/tcp",
            "--route",
            "localhost:0=web",
            "--log-level",
            "warn",
        ],
        "stats",
    );
    let stats = proxy.announced_url("stats").unwrap();
    assert!(
        status_line(&format!("{stats}/v1/proxy/stats")).contains("200"),
        "{stats}"
    );
    let routes: Vec<&str> = proxy
        .announced
        .iter()
        .filter(|(l, _)| l.contains("route"))
        .map(|(_, u)| u.as_str())
        .collect();
    assert!(
        routes.iter().any(|u| u.starts_with("tcp://127.0.0.1:")),
        "{:?}",
        proxy.announced
    );
    assert!(
        routes.iter().any(|u| u.starts_with("http://127.0.0.1:")),
        "{:?}",
        proxy.announced
    );
    // An HTTP route to a service with no instance: the proxy answers (503 after its queue).
    let main = proxy.announced_url("shoal proxy").unwrap();
    assert!(main.starts_with("http://127.0.0.1:"), "{main}");

    let agent = ServerProcess::start_role(
        bin(),
        &[
            "agent",
            "--registry",
            &server.url,
            "--http-addr",
            "localhost:0",
            "--log-level",
            "warn",
        ],
        "HTTP API",
    );
    assert!(status_line(&format!("{}/v1/agent/self", agent.url)).contains("200"));

    let hello = ServerProcess::start_role(
        bin(),
        &["hello", "--addr", "localhost", "--log-level", "warn"],
        "shoal hello",
    );
    assert_eq!(
        status_line(&format!("{}/health", hello.url)),
        "HTTP/1.0 200 OK"
    );
}

#[test]
fn a_taken_port_is_a_clear_error_naming_what_was_tried() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let addr = format!("localhost:{port}");
    let (code, err) = run_to_exit(&["server", "--in-memory", "--http-addr", &addr], &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!("cannot listen on {addr} (127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("for the HTTP API"), "{err}");
}
