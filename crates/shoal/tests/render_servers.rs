//! `shoal render` feeding a real nginx and a real HAProxy from a real
//! `shoal server` (blocking queries over HTTP, the path a real Consul
//! takes): traffic follows instances scaled 1 -> 5 -> 1, a burst of 50
//! registrations reloads once, nothing renders before the registry
//! answers, and every rendered file passes `nginx -t` / `haproxy -c`.
//! The templates are written here (they cover what the public demos'
//! templates use: `services`, `service`, `range`/`else`, tags, `env`,
//! `regexMatch`/`regexReplaceAll`/`replaceAll`, variables, trimming).

mod common;

use common::stack::{bin, hello, Backend};
use serde_json::json;
use shoal_testkit::ServerProcess;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Fails the test with a clear message when a peer program is missing
/// (scripts/test installs it).
fn require(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{program} not installed: run ./scripts/test (it installs {package})"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn register(server: &ServerProcess, service: &str, id: &str, port: u16, tags: &[&str]) {
    let body = json!({
        "Node": "node1", "Address": "127.0.0.1",
        "Service": {"ID": id, "Service": service, "Port": port, "Tags": tags},
    });
    let resp = reqwest::Client::new()
        .put(server.at("/v1/catalog/register"))
        .json(&body)
        .send()
        .await
        .expect("register");
    assert!(resp.status().is_success(), "register: {}", resp.status());
}

async fn deregister(server: &ServerProcess, id: &str) {
    let resp = reqwest::Client::new()
        .put(server.at("/v1/catalog/deregister"))
        .json(&json!({"Node": "node1", "ServiceID": id}))
        .send()
        .await
        .expect("deregister");
    assert!(resp.status().is_success(), "deregister: {}", resp.status());
}

/// A running `shoal render`, killed when dropped; its stderr goes to a file.
struct Render {
    child: Child,
    log: PathBuf,
}

impl Render {
    fn start(dir: &Path, consul: &str, args: &[&str], env: &[(&str, String)]) -> Render {
        let log = dir.join(format!("render-{}.log", free_port()));
        let mut cmd = Command::new(bin());
        cmd.arg("render")
            .args(["-consul-addr", consul, "-log-level", "info"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Render {
            child: cmd.spawn().expect("start shoal render"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Render {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 50 ms for at most `secs` seconds.
fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn reloads(marker: &Path) -> usize {
    std::fs::read_to_string(marker)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Sends requests (a new connection each) to `url` until the last
/// `window` answers came only from `want` and covered all of it; at most
/// 400 requests or 30 s. Returns the ids seen in that window.
async fn traffic_follows(url: &str, want: &BTreeSet<String>) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let window = want.len() * 3 + 6;
    let mut last: std::collections::VecDeque<String> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    for _ in 0..400 {
        let id = match client.get(url).send().await {
            Ok(r) => match r.json::<serde_json::Value>().await {
                Ok(v) => v["id"].as_str().unwrap_or("?").to_string(),
                Err(_) => "not-json".into(),
            },
            Err(_) => "error".into(),
        };
        last.push_back(id);
        if last.len() > window {
            last.pop_front();
        }
        let seen: BTreeSet<String> = last.iter().cloned().collect();
        if last.len() == window && &seen == want {
            return;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("traffic through {url} never followed {want:?}; last answers {last:?}");
}

fn ids(backends: &[&Backend]) -> BTreeSet<String> {
    backends.iter().map(|b| b.id.clone()).collect()
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------- nginx

/// A real nginx (master + one worker) in its own prefix directory, with
/// `conf.d/*.conf` included from `http {}` (empty until the first render).
struct Nginx {
    dir: PathBuf,
    child: Child,
}

impl Nginx {
    fn start(dir: &Path) -> Nginx {
        require("nginx", "nginx");
        for d in ["conf.d", "tmp", "logs"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0"))
            .unwrap_or(false);
        let d = dir.display();
        let conf = format!(
            "{user}daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
             fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
             include {d}/conf.d/*.conf;\n}}\n",
            user = if root { "user root;\n" } else { "" },
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .args(Self::args(dir))
            .stdin(Stdio::null())
            .spawn()
            .expect("start nginx");
        wait_for(10, "nginx writes its pid file", || {
            dir.join("nginx.pid").exists()
        });
        Nginx {
            dir: dir.to_path_buf(),
            child,
        }
    }

    fn args(dir: &Path) -> Vec<String> {
        vec![
            "-p".into(),
            format!("{}/", dir.display()),
            "-c".into(),
            format!("{}/nginx.conf", dir.display()),
        ]
    }

    /// `nginx -t -q && nginx -s reload && echo >> MARKER`, as one shell line.
    fn reload_command(&self, marker: &Path) -> String {
        let a = Self::args(&self.dir).join(" ");
        format!(
            "nginx {a} -t -q && nginx {a} -s reload && echo reload >> {}",
            marker.display()
        )
    }

    fn check(&self) {
        run_ok(
            Command::new("nginx").args(Self::args(&self.dir)).arg("-t"),
            "nginx -t",
        );
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, then exits.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const NGINX_TEMPLATE: &str = r#"# rendered by shoal render
upstream hello {
{{- range service "hello" }}
  server {{ .Address }}:{{ .Port }} max_fails=0; # {{ .ID }}
{{- else }}
  server 127.0.0.1:1 down;
{{- end }}
}
server {
  listen 127.0.0.1:{{ env "NGINX_TEST_PORT" }};
  location / {
    proxy_pass http://hello;
    proxy_next_upstream error timeout;
  }
}
"#;

#[tokio::test]
async fn nginx_follows_scaling_and_a_burst_reloads_once() {
    let dir = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(&dir.path().join("nginx"));
    let port = free_port();
    // The registry is not there yet: nothing may be rendered.
    let api_port = free_port();
    let consul = format!("http://127.0.0.1:{api_port}");
    let src = dir.path().join("hello.ctmpl");
    std::fs::write(&src, NGINX_TEMPLATE).unwrap();
    let dest = nginx.dir.join("conf.d/hello.conf");
    let marker = dir.path().join("reloads");
    let spec = format!(
        "{}:{}:{}",
        src.display(),
        dest.display(),
        nginx.reload_command(&marker)
    );
    let render = Render::start(
        dir.path(),
        &consul,
        &["-template", &spec, "-wait", "2s:30s"],
        &[("NGINX_TEST_PORT", port.to_string())],
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !dest.exists(),
        "rendered before the registry answered:\n{}",
        render.log()
    );
    assert_eq!(reloads(&marker), 0);

    let api = format!("127.0.0.1:{api_port}");
    let server = ServerProcess::start_role(
        bin(),
        &[
            "server",
            "--in-memory",
            "--http-addr",
            &api,
            "--dns-addr",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ],
        "HTTP API",
    );
    let backends: Vec<Backend> = (0..5).map(|_| hello("hello")).collect();
    let url = format!("http://127.0.0.1:{port}/json");

    // 1 instance.
    register(&server, "hello", &backends[0].id, backends[0].port, &[]).await;
    wait_for(30, "first render and reload", || reloads(&marker) == 1);
    nginx.check();
    traffic_follows(&url, &ids(&[&backends[0]])).await;

    // 1 -> 5.
    for b in &backends[1..] {
        register(&server, "hello", &b.id, b.port, &[]).await;
    }
    wait_for(30, "render of 5 instances", || {
        std::fs::read_to_string(&dest)
            .map(|s| s.matches("max_fails").count() == 5)
            .unwrap_or(false)
            && reloads(&marker) >= 2
    });
    nginx.check();
    traffic_follows(&url, &ids(&backends.iter().collect::<Vec<_>>())).await;

    // 5 -> 1.
    for b in &backends[1..] {
        deregister(&server, &b.id).await;
    }
    wait_for(30, "render of 1 instance", || {
        std::fs::read_to_string(&dest)
            .map(|s| s.matches("max_fails").count() == 1)
            .unwrap_or(false)
            && reloads(&marker) >= 3
    });
    nginx.check();
    traffic_follows(&url, &ids(&[&backends[0]])).await;

    // A burst of 50 registrations (concurrent, as a scale-up lands):
    // quiescence makes one render and one reload of them.
    let before = reloads(&marker);
    let burst: Vec<(String, u16)> = (0..50)
        .map(|i| (format!("burst-{i}"), 20_000 + i as u16))
        .collect();
    futures::future::join_all(
        burst
            .iter()
            .map(|(id, p)| register(&server, "hello", id, *p, &[])),
    )
    .await;
    wait_for(40, "render of the burst", || {
        std::fs::read_to_string(&dest)
            .map(|s| s.matches("max_fails").count() == 51)
            .unwrap_or(false)
            && reloads(&marker) > before
    });
    // Longer than the 2 s quiescence twice over: no second reload follows.
    std::thread::sleep(Duration::from_millis(4500));
    assert_eq!(
        reloads(&marker),
        before + 1,
        "the burst caused more than one reload:\n{}",
        render.log()
    );
    nginx.check();
    traffic_follows(&url, &ids(&[&backends[0]])).await;
}

// -------------------------------------------------------------- HAProxy

const HAPROXY_TEMPLATE: &str = r#"# rendered by shoal render
global
  maxconn 256
defaults
  mode http
  timeout connect 2s
  timeout client 10s
  timeout server 10s
  option redispatch
  retries 2
frontend http
  bind 127.0.0.1:{{ env "HAPROXY_TEST_PORT" }}
{{- range services }}{{ $svc := .Name }}{{ if ne .Name "consul" }}
  acl host_{{ .Name }} hdr(host) -i {{ .Name }}.localhost
{{- range .Tags }}{{ if . | regexMatch "^server_aliases=" }}
  acl host_{{ $svc }} hdr(host) -i {{ . | regexReplaceAll "^server_aliases=" "" | replaceAll "," " " }}
{{- end }}{{ end }}
  use_backend be_{{ .Name }} if host_{{ .Name }}
{{- end }}{{ end }}
{{- range services }}{{ if ne .Name "consul" }}
backend be_{{ .Name }}
  balance roundrobin
{{- range service .Name }}
  server {{ .ID }} {{ .Address }}:{{ .Port }}
{{- end }}
{{- end }}{{ end }}
"#;

fn haproxy_check(cfg: &Path) {
    run_ok(
        Command::new("haproxy").args(["-c", "-q", "-f"]).arg(cfg),
        "haproxy -c",
    );
}

#[tokio::test]
async fn haproxy_follows_scaling_with_host_aliases_from_tags() {
    require("haproxy", "haproxy");
    // Without the change stream, as a real Consul is read: one blocking
    // query per dependency (the nginx test reads the stream).
    let server = ServerProcess::start(bin(), &["--in-memory", "--no-stream"]);
    let backends: Vec<Backend> = (0..5).map(|_| hello("hello")).collect();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = [("HAPROXY_TEST_PORT", port.to_string())];
    let aliases = ["server_aliases=hi.example,hey.example", "v1"];
    register(
        &server,
        "hello",
        &backends[0].id,
        backends[0].port,
        &aliases,
    )
    .await;
    let src = dir.path().join("haproxy.ctmpl");
    std::fs::write(&src, HAPROXY_TEMPLATE).unwrap();
    let cfg = dir.path().join("haproxy.cfg");

    // -dry prints `> DEST` and the render, writing nothing.
    let spec = format!("{}:{}", src.display(), cfg.display());
    let dry = Command::new(bin())
        .arg("render")
        .args(["-consul-addr", &server.url, "-log-level", "warn"])
        .args(["-template", &spec, "-once", "-dry"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let printed = String::from_utf8(dry.stdout).unwrap();
    let (first, body) = printed.split_once('\n').unwrap();
    assert_eq!(first, format!("> {}", cfg.display()));
    assert!(!cfg.exists(), "-dry wrote the destination");
    assert!(body.contains("acl host_hello hdr(host) -i hi.example hey.example"));

    // -once writes it; HAProxy starts on it (master-worker, so a reload
    // is SIGUSR2 to the master).
    let once = Command::new(bin())
        .arg("render")
        .args(["-consul-addr", &server.url, "-log-level", "warn"])
        .args(["-template", &spec, "-once"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), body);
    haproxy_check(&cfg);
    let mut haproxy = Command::new("haproxy")
        .args(["-W", "-db", "-f"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy");
    let marker = dir.path().join("reloads");
    let command = format!(
        "haproxy -c -q -f {cfg} && kill -USR2 {pid} && echo reload >> {marker}",
        cfg = cfg.display(),
        pid = haproxy.id(),
        marker = marker.display()
    );
    let spec = format!("{}:{}:{command}", src.display(), cfg.display());
    let render = Render::start(
        dir.path(),
        &server.url,
        &["-template", &spec, "-wait", "300ms:5s"],
        &env,
    );
    let url = format!("http://127.0.0.1:{port}/json");
    let via = |host: &'static str| {
        let url = url.clone();
        async move {
            let c = reqwest::Client::builder().no_proxy().build().unwrap();
            c.get(&url)
                .header("Host", host)
                .send()
                .await
                .map(|r| r.status())
        }
    };
    wait_for(10, "haproxy listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    for host in ["hello.localhost", "hi.example", "hey.example"] {
        let status = via(host).await.expect("request through haproxy");
        assert_eq!(status, 200, "Host {host}");
    }
    // The same content: no rewrite, no reload at start.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(reloads(&marker), 0, "{}", render.log());

    let traffic = |want: BTreeSet<String>| {
        let url = url.clone();
        async move {
            // HAProxy routes by Host: the default has no backend.
            let client = reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let window = want.len() * 3 + 6;
            let mut last = std::collections::VecDeque::new();
            for _ in 0..400 {
                let id = match client.get(&url).header("Host", "hi.example").send().await {
                    Ok(r) => r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|v| v["id"].as_str().map(str::to_string))
                        .unwrap_or_else(|| "not-json".into()),
                    Err(_) => "error".into(),
                };
                last.push_back(id);
                if last.len() > window {
                    last.pop_front();
                }
                if last.len() == window && last.iter().cloned().collect::<BTreeSet<_>>() == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("HAProxy traffic never followed {want:?}: {last:?}");
        }
    };

    for b in &backends[1..] {
        register(&server, "hello", &b.id, b.port, &aliases).await;
    }
    wait_for(30, "render of 5 instances and a reload", || {
        std::fs::read_to_string(&cfg)
            .map(|s| s.matches("  server hello-").count() == 5)
            .unwrap_or(false)
            && reloads(&marker) == 1
    });
    haproxy_check(&cfg);
    traffic(ids(&backends.iter().collect::<Vec<_>>())).await;

    for b in &backends[1..] {
        deregister(&server, &b.id).await;
    }
    wait_for(30, "render of 1 instance and a reload", || {
        std::fs::read_to_string(&cfg)
            .map(|s| s.matches("  server hello-").count() == 1)
            .unwrap_or(false)
            && reloads(&marker) == 2
    });
    haproxy_check(&cfg);
    traffic(ids(&[&backends[0]])).await;
    drop(render);
    let _ = haproxy.kill();
    let _ = haproxy.wait();
}
