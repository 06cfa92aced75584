//! The command-line client against a real server process.

use shoal_testkit::ServerProcess;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

/// Runs `shoal ARGS` against `registry`; returns (exit code, stdout, stderr).
fn shoal(registry: &str, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .env("CONSUL_HTTP_ADDR", registry)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(registry: &str, args: &[&str]) -> String {
    let (code, out, err) = shoal(registry, args, None);
    assert_eq!(code, 0, "shoal {args:?} failed: {err}");
    out
}

#[test]
fn register_list_instances_and_deregister() {
    let server = ServerProcess::start(bin(), &["--in-memory", "--node-name", "cli-node"]);
    let r = server.url.as_str();
    ok(
        r,
        &[
            "register",
            "web",
            "--port",
            "8080",
            "--id",
            "web-1",
            "--tag",
            "v1",
            "--tag",
            "blue",
            "--address",
            "127.0.0.2",
        ],
    );
    ok(
        r,
        &[
            "register", "web", "--port", "8081", "--id", "web-2", "--meta", "env=prod",
        ],
    );

    let services = ok(r, &["catalog", "services"]);
    assert_eq!(services, "NAME  TAGS\nweb   blue,v1\n");

    let table = ok(r, &["catalog", "instances", "web"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("ID") && lines[0].contains("STATUS"));
    assert!(
        lines[1].contains("web-1")
            && lines[1].contains("127.0.0.2")
            && lines[1].contains("8080")
            && lines[1].contains("passing")
    );
    assert!(
        lines[2].contains("web-2")
            && lines[2].contains("cli-node")
            && lines[2].contains("127.0.0.1")
    );

    let json: serde_json::Value = serde_json::from_str(&ok(
        r,
        &["catalog", "instances", "web", "--tag", "blue", "--json"],
    ))
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["Service"]["ID"], "web-1");

    ok(r, &["deregister", "web-1"]);
    let json: serde_json::Value =
        serde_json::from_str(&ok(r, &["catalog", "instances", "web", "--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["Service"]["Meta"]["env"], "prod");

    let (code, _, err) = shoal(r, &["deregister", "web-1"], None);
    assert_ne!(code, 0);
    assert!(err.contains("Unknown service ID"), "{err}");
}

#[test]
fn kv_get_put_list_delete() {
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    let r = server.url.as_str();
    ok(r, &["kv", "put", "app/name", "shoal"]);
    let (code, _, err) = shoal(r, &["kv", "put", "app/conf", "-"], Some("line1\nline2\n"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(ok(r, &["kv", "get", "app/name"]), "shoal\n");
    assert_eq!(ok(r, &["kv", "get", "app/conf"]), "line1\nline2\n");
    let list = ok(r, &["kv", "list", "app/"]);
    assert!(list.starts_with("KEY"), "{list}");
    assert!(list.contains("app/conf") && list.contains("app/name"));
    let json: serde_json::Value = serde_json::from_str(&ok(r, &["kv", "list", "--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);

    let idx = json[0]["ModifyIndex"].as_u64().unwrap();
    let (code, _, err) = shoal(
        r,
        &[
            "kv",
            "put",
            "app/conf",
            "x",
            "--cas",
            &(idx + 99).to_string(),
        ],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("check-and-set failed"), "{err}");

    ok(r, &["kv", "delete", "app/", "--recurse"]);
    let (code, _, err) = shoal(r, &["kv", "get", "app/name"], None);
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn unreachable_registry_is_a_clear_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (code, _, err) = shoal(&addr, &["catalog", "services"], None);
    assert_ne!(code, 0);
    assert!(err.contains(&addr), "the error names the registry: {err}");
}
