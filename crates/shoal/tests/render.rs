//! `shoal render` end to end against a real `shoal server` over HTTP:
//! templates written here, rendered with `-once`, `-dry`, and a
//! long-running render that follows a registration and runs its command
//! once. Every test runs twice: over the server's change stream (the
//! default against shoal) and against a server started with `--no-stream`
//! (no stream, as a real Consul: one blocking query per dependency), with
//! the same results.

use shoal_testkit::ServerProcess;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

async fn register(server: &ServerProcess, id: &str, port: u16, status: &str) {
    let body = serde_json::json!({
        "Node": "node1", "Address": "127.0.0.1",
        "Service": {"ID": id, "Service": "web", "Port": port, "Tags": ["b", "a"]},
        "Check": {"CheckID": format!("c-{id}"), "ServiceID": id, "Name": "c", "Status": status},
    });
    let resp = reqwest::Client::new()
        .put(server.at("/v1/catalog/register"))
        .json(&body)
        .send()
        .await
        .expect("register");
    assert!(resp.status().is_success(), "register: {}", resp.status());
}

const UPSTREAM: &str = "upstream web {\n{{- range service \"web\" }}\n  server {{ .Address }}:{{ .Port }}; # {{ join \",\" .Tags }}\n{{- else }}\n  server 127.0.0.1:1 down;\n{{- end }}\n}\n";

/// The server's flags for the two ways shoal render reads it: its change
/// stream, and (stream switched off, as with a real Consul) one blocking
/// query per dependency.
const MODES: [&[&str]; 2] = [&["--in-memory"], &["--in-memory", "--no-stream"]];

fn render(server: &ServerProcess, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("render")
        .args(["-consul-addr", &server.url, "-log-level", "warn"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run shoal render")
}

#[tokio::test]
async fn once_renders_healthy_instances_sorted_and_dry_prints_dest() {
    for mode in MODES {
        let server = ServerProcess::start(bin(), mode);
        register(&server, "web-2", 8002, "passing").await;
        register(&server, "web-1", 8001, "passing").await;
        register(&server, "web-3", 8003, "critical").await;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("up.ctmpl");
        std::fs::write(&src, UPSTREAM).unwrap();
        let dest = dir.path().join("out/up.conf");
        let spec = format!("{}:{}", src.display(), dest.display());
        let out = render(&server, &["-template", &spec, "-once"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want =
            "upstream web {\n  server 127.0.0.1:8001; # a,b\n  server 127.0.0.1:8002; # a,b\n}\n";
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), want);

        std::fs::remove_file(&dest).unwrap();
        let out = render(&server, &["-template", &spec, "-once", "-dry"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("> {}\n{want}", dest.display())
        );
        assert!(!dest.exists(), "-dry writes nothing");
    }
}

#[tokio::test]
async fn a_broken_template_reports_file_line_col_and_keeps_the_old_file() {
    for mode in MODES {
        let server = ServerProcess::start(bin(), mode);
        register(&server, "web-1", 8001, "passing").await;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("bad.ctmpl");
        std::fs::write(
            &src,
            "ok\n{{ range service \"web\" }}{{ .Port | toLower }}{{ end }}\n",
        )
        .unwrap();
        let dest = dir.path().join("out.conf");
        std::fs::write(&dest, "old\n").unwrap();
        let spec = format!("{}:{}", src.display(), dest.display());
        let out = render(&server, &["-template", &spec, "-once"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{}:2:", src.display())),
            "no file:line in {err}"
        );
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "old\n");
    }
}

#[tokio::test]
async fn key_waits_for_the_key_and_the_command_runs_once_after_the_change() {
    for mode in MODES {
        let server = ServerProcess::start(bin(), mode);
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("k.ctmpl");
        std::fs::write(&src, "mode={{ key \"cfg/mode\" }}\n").unwrap();
        let dest = dir.path().join("k.out");
        let marker = dir.path().join("ran");
        let spec = format!(
            "{}:{}:echo x >> {}",
            src.display(),
            dest.display(),
            marker.display()
        );
        let mut child = Command::new(bin())
            .arg("render")
            .args([
                "-consul-addr",
                &server.url,
                "-template",
                &spec,
                "-wait",
                "100ms:1s",
            ])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(700));
        assert!(!dest.exists(), "rendered before the key existed");
        let put = reqwest::Client::new()
            .put(server.at("/v1/kv/cfg/mode"))
            .body("http")
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !marker.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "mode=http\n");
        assert_eq!(
            std::fs::read_to_string(&marker).unwrap(),
            "x\n",
            "command ran once"
        );
    }
}

/// What the public demos' templates use (`services | byTag` ranged as a
/// map, `service (printf "%s.%s" $tag .Name)`, `service "x" "any"`,
/// `range $i, $s`, `contains`, `keyOrDefault`, `ls`, `env | split`,
/// `replaceAll`, `regexMatch`/`regexReplaceAll`), over a catalog with a
/// service address overriding its node's, critical and warning instances
/// and a nested key. The expected text is what Go's text/template printed
/// for the same template and catalog (with consul-template's sorting and
/// filtering), checked once by hand against this exact fixture.
#[tokio::test]
async fn the_demo_templates_features_render_as_go_does() {
    for mode in MODES {
        let server = ServerProcess::start(bin(), mode);
        let client = reqwest::Client::new();
        let reg = |node: &str,
                   addr: &str,
                   id: &str,
                   name: &str,
                   port: u16,
                   tags: &[&str],
                   svc_addr: &str,
                   status: &str| {
            json_body(node, addr, id, name, port, tags, svc_addr, status)
        };
        for body in [
            reg(
                "node2",
                "10.0.0.2",
                "api-2",
                "api",
                8002,
                &["prod", "v1"],
                "",
                "passing",
            ),
            reg(
                "node1",
                "10.0.0.1",
                "api-1",
                "api",
                8001,
                &["v1", "prod", "alias=api.example.com"],
                "10.1.1.1",
                "passing",
            ),
            reg(
                "node1",
                "10.0.0.1",
                "api-3",
                "api",
                8003,
                &["prod"],
                "",
                "critical",
            ),
            reg(
                "node2",
                "10.0.0.2",
                "web-b",
                "web",
                9002,
                &["prod", "sticky"],
                "",
                "warning",
            ),
            reg(
                "node1",
                "10.0.0.1",
                "web-a",
                "web",
                9001,
                &["prod"],
                "",
                "passing",
            ),
        ] {
            let r = client
                .put(server.at("/v1/catalog/register"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
        for (k, v) in [
            ("lb/mode", "http"),
            ("lb/timeouts/connect", "5s"),
            ("lb/timeouts/client", "30s"),
            ("lb/timeouts/deep/x", "1s"),
        ] {
            let r = client
                .put(server.at(&format!("/v1/kv/{k}")))
                .body(v)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("features.ctmpl");
        std::fs::write(&src, FEATURES).unwrap();
        let dest = dir.path().join("out");
        let spec = format!("{}:{}", src.display(), dest.display());
        let out = Command::new(bin())
            .arg("render")
            .args([
                "-consul-addr",
                &server.url,
                "-log-level",
                "warn",
                "-template",
                &spec,
                "-once",
            ])
            .env("LB_DOMAINS", "example_com:test")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), FEATURES_WANT);
    }
}

/// A gauge of the server's `/metrics`.
async fn gauge(server: &ServerProcess, name: &str) -> i64 {
    let text = reqwest::get(server.at("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// Over the change stream, a template reading 40 services and a key holds
/// no blocking query on the server (one connection for everything) and
/// still follows each change of what it reads; without the stream it holds
/// one blocking query per dependency, as consul-template does.
#[tokio::test]
async fn over_the_stream_many_dependencies_cost_one_connection_and_follow_changes() {
    const SERVICES: usize = 40;
    let per_dependency = SERVICES as i64..=SERVICES as i64 + 1;
    // (server flags, shoal render's own flags, blocking queries it adds)
    let modes: [(&[&str], &[&str], _); 3] = [
        (MODES[0], &[], 0..=0),
        (MODES[1], &[], per_dependency.clone()),
        (MODES[0], &["-no-stream"], per_dependency),
    ];
    for (mode, client, added) in modes {
        let server = ServerProcess::start(bin(), mode);
        // The server's own watches (its check runner's) park too.
        let before = gauge(&server, "shoal_catalog_blocking_queries").await;
        let parked_want = before + added.start()..=before + added.end();
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("many.ctmpl");
        let mut tmpl = String::from("k={{ keyOrDefault \"cfg/x\" \"none\" }}\n");
        for i in 0..SERVICES {
            tmpl.push_str(&format!(
                "{{{{ range service \"svc{i}\" }}}}svc{i}:{{{{ .Port }}}}\n{{{{ end }}}}"
            ));
        }
        std::fs::write(&src, tmpl).unwrap();
        let dest = dir.path().join("many.out");
        let spec = format!("{}:{}", src.display(), dest.display());
        let _child = Reaped(
            Command::new(bin())
                .arg("render")
                .args(["-consul-addr", &server.url, "-log-level", "warn"])
                .args(["-template", &spec, "-wait", "50ms:200ms"])
                .args(client)
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let read = || std::fs::read_to_string(&dest).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(20);
        while read() != "k=none\n" {
            assert!(
                Instant::now() < deadline,
                "{mode:?} {client:?}: first render: {:?}",
                read()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Every dependency's watch is in place once the server counts them.
        let settle = Instant::now() + Duration::from_secs(10);
        let mut parked = gauge(&server, "shoal_catalog_blocking_queries").await;
        while !parked_want.contains(&parked) && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(50)).await;
            parked = gauge(&server, "shoal_catalog_blocking_queries").await;
        }
        assert!(
            parked_want.contains(&parked),
            "{mode:?} {client:?}: {parked} blocking queries parked on the server, want {parked_want:?}"
        );
        // Changes to what it reads reach the file.
        let svc = format!("svc{}", SERVICES - 1);
        let body = json_body("n1", "127.0.0.1", "i1", &svc, 7001, &[], "", "passing");
        let r = reqwest::Client::new()
            .put(server.at("/v1/catalog/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let r = reqwest::Client::new()
            .put(server.at("/v1/kv/cfg/x"))
            .body("set")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let want = format!("k=set\n{svc}:7001\n");
        while read() != want {
            assert!(
                Instant::now() < deadline,
                "{mode:?} {client:?}: after the changes: {:?}",
                read()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A child process killed when the test ends, whether it passed or not.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[allow(clippy::too_many_arguments)]
fn json_body(
    node: &str,
    addr: &str,
    id: &str,
    name: &str,
    port: u16,
    tags: &[&str],
    svc_addr: &str,
    status: &str,
) -> serde_json::Value {
    serde_json::json!({
        "Node": node, "Address": addr,
        "Service": {"ID": id, "Service": name, "Port": port, "Tags": tags, "Address": svc_addr},
        "Check": {"CheckID": format!("c-{id}"), "ServiceID": id, "Name": "c", "Status": status},
    })
}

const FEATURES: &str = r#"
{{- range $tag, $services := services | byTag }}
tag {{ $tag }}:{{ range $services }} {{ .Name }}{{ end }}
{{- range $services }}{{ range service (printf "%s.%s" $tag .Name) }}
  {{ $tag }}/{{ .Name }} {{ .ID }} {{ .Address }}:{{ .Port }}
{{- end }}{{ end }}
{{- end }}
{{- range $i, $s := service "web" "any" }}
server s{{ $i }} {{ $s.Address }}:{{ $s.Port }} [{{ join "," $s.Tags }}]{{ if .Tags | contains "sticky" }} sticky{{ end }}
{{- end }}
maxconn {{ keyOrDefault "lb/maxconn" "4096" }} mode {{ key "lb/mode" }}
{{- range ls "lb/timeouts" }}
timeout {{ .Key }} {{ .Value }}
{{- end }}
{{- range env "LB_DOMAINS" | split ":" }}
domain {{ . | replaceAll "_" "." }}
{{- end }}
{{- range services }}{{ $svc := .Name }}{{ range .Tags }}{{ if . | regexMatch "^alias=" }}
alias {{ $svc }} {{ . | regexReplaceAll "^alias=" "" }}
{{- end }}{{ end }}{{ end }}
"#;

const FEATURES_WANT: &str = "
tag alias=api.example.com: api
  alias=api.example.com/api api-1 10.1.1.1:8001
tag prod: api web
  prod/api api-1 10.1.1.1:8001
  prod/api api-2 10.0.0.2:8002
  prod/web web-a 10.0.0.1:9001
tag sticky: web
tag v1: api
  v1/api api-1 10.1.1.1:8001
  v1/api api-2 10.0.0.2:8002
server s0 10.0.0.1:9001 [prod]
server s1 10.0.0.2:9002 [prod,sticky] sticky
maxconn 4096 mode http
timeout client 30s
timeout connect 5s
domain example.com
domain test
alias api api.example.com
";

/// The examples' rendered configs (`examples/*/*.example`) are what their
/// templates render to for the catalog their READMEs describe.
#[tokio::test]
async fn the_examples_render_to_the_configs_shown_beside_them() {
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    let client = reqwest::Client::new();
    let aliases = "server_aliases=www.example.com,example.com";
    for (node, addr, id, name, port, tags) in [
        ("host1", "10.0.0.1", "web-1", "web", 8081, vec![aliases]),
        ("host2", "10.0.0.2", "web-2", "web", 8082, vec![aliases]),
        ("host1", "10.0.0.1", "api-1", "api", 9000, vec![]),
    ] {
        let body = serde_json::json!({
            "Node": node, "Address": addr,
            "Service": {"ID": id, "Service": name, "Port": port, "Tags": tags},
        });
        let r = client
            .put(server.at("/v1/catalog/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for (template, example) in [
        (
            "examples/nginx/upstreams.ctmpl",
            "examples/nginx/shoal-upstreams.conf.example",
        ),
        (
            "examples/haproxy/haproxy.ctmpl",
            "examples/haproxy/haproxy.cfg.example",
        ),
    ] {
        let spec = format!("{}:/nonexistent/out", root.join(template).display());
        let out = render(&server, &["-template", &spec, "-once", "-dry"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        let rendered = printed.split_once('\n').map_or("", |(_, r)| r);
        let want = std::fs::read_to_string(root.join(example)).unwrap();
        assert_eq!(rendered, want, "{template} no longer renders to {example}");
    }
}
