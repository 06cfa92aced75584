//! The proxy at the edge, end to end with real clients: `shoal proxy
//! --tls-listen` terminating TLS (curl, `openssl s_client`), the
//! certificate chosen by SNI from `--tls-cert` pairs and from KV
//! `shoal/certs/<host>` (rotated live), ALPN h2 and http/1.1, session
//! resumption, HTTP/2 over TLS and h2c with curl and h2load, the
//! `X-Forwarded-Proto` instances see, `shoal.redirect=https`, and
//! `proto=https` instances (a real `openssl s_server`).

mod common;

use common::stack::{bin, hello};
use common::tls::tls_backend;
use common::*;
use serde_json::{json, Value};
use shoal_testkit::{ServerProcess, TestCerts};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A registry and a `shoal proxy` with a plain and a TLS listener.
struct Edge {
    // The proxy goes first: it would complain of the registry gone.
    _proxy: ServerProcess,
    registry: ServerProcess,
    /// Plain HTTP listener port.
    http: u16,
    /// TLS listener port.
    https: u16,
    /// `/v1/proxy/stats` URL.
    stats: String,
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// Starts the registry and a proxy with `certs` as --tls-cert/--tls-key
/// pairs (the first is the default).
fn edge(certs: &[(PathBuf, PathBuf)]) -> Edge {
    let registry = ServerProcess::start(bin(), &["--in-memory"]);
    let mut args: Vec<String> = [
        "proxy",
        "--registry",
        &registry.url,
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
        "--stats-addr",
        "127.0.0.1:0",
        "--queue-timeout",
        "500ms",
        "--log-level",
        "warn",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (cert, key) in certs {
        args.push("--tls-cert".into());
        args.push(cert.display().to_string());
        args.push("--tls-key".into());
        args.push(key.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The stats line comes last: every listener was announced before it.
    let proxy = ServerProcess::start_role(bin(), &args, "stats");
    let http = port_of(proxy.announced_url("shoal proxy").unwrap());
    let https = port_of(proxy.announced_url("TLS").expect("TLS listener announced"));
    let stats = format!("{}/v1/proxy/stats", proxy.url);
    Edge {
        _proxy: proxy,
        registry,
        http,
        https,
        stats,
    }
}

async fn register(edge: &Edge, id: &str, name: &str, port: u16, tags: &[&str]) {
    let reg = json!({"ID": id, "Name": name, "Address": "127.0.0.1", "Port": port, "Tags": tags});
    ok(put_json(edge.registry.at("/v1/agent/service/register"), &reg).await);
}

/// curl with `args`, bounded in time.
fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs (scripts/test installs it)")
}

/// Runs `f` until it returns `Some`, for at most `within`.
async fn until<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `openssl s_client` to the TLS listener naming `name` (none: no SNI),
/// sending `request` (then waiting for the answer) or nothing; its stdout.
fn s_client(port: u16, name: Option<&str>, extra: &[&str], request: Option<&str>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")]);
    match name {
        Some(n) => cmd.args(["-servername", n]),
        None => cmd.arg("-noservername"),
    };
    cmd.args(extra);
    if request.is_some() {
        cmd.arg("-ign_eof");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl runs");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(r) = request {
        stdin.write_all(r.as_bytes()).unwrap();
    }
    drop(stdin);
    let out = wait_bounded(child, Duration::from_secs(10));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_bounded(mut child: Child, within: Duration) -> Output {
    let deadline = Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `openssl x509 -noout OPTION` of the first certificate in `pem`.
fn x509(pem: &[u8], option: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", option])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(pem).unwrap();
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout)
        .trim()
        .to_string()
}

fn fingerprint_of(path: &Path) -> String {
    x509(&std::fs::read(path).unwrap(), "-fingerprint")
}

/// The fingerprint of the certificate the listener serves to `name`.
fn served_fingerprint(port: u16, name: Option<&str>) -> String {
    x509(s_client(port, name, &[], None).as_bytes(), "-fingerprint")
}

async fn stats(edge: &Edge) -> Value {
    client()
        .get(&edge.stats)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn https_and_http2_with_the_certificate_sni_names() {
    let dir = tempfile::tempdir().unwrap();
    let default = TestCerts::self_signed(dir.path(), "default", &["default.test"]);
    let a = TestCerts::self_signed(dir.path(), "a", &["a.test", "*.a.test"]);
    let b = TestCerts::self_signed(dir.path(), "b", &["www.b.test"]);
    let edge = edge(&[default.clone(), a.clone(), b.clone()]);
    let web = hello("web");
    register(
        &edge,
        &web.id,
        "web",
        web.port,
        &["server_aliases=web.a.test,www.b.test"],
    )
    .await;
    let https = edge.https;
    let resolve = |host: &str| format!("{host}:{https}:127.0.0.1");
    let a_url = format!("https://web.a.test:{https}/json");
    let a_resolve = resolve("web.a.test");
    let a_ca = a.0.display().to_string();

    // HTTP/2 by ALPN, and curl verifies the wildcard certificate for
    // web.a.test against a.test's own (self-signed) certificate: the SNI
    // picked that pair.
    let out = until(Duration::from_secs(10), "web routed over TLS", || {
        let out = curl(&[
            "-v",
            "--http2",
            "--cacert",
            &a_ca,
            "--resolve",
            &a_resolve,
            &a_url,
        ]);
        out.status.success().then_some(out)
    })
    .await;
    let verbose = String::from_utf8_lossy(&out.stderr);
    assert!(verbose.contains("ALPN: server accepted h2"), "{verbose}");
    assert!(verbose.contains("< HTTP/2 200"), "{verbose}");
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["id"], web.id.as_str());
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https", "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-host"], "web.a.test", "{seen}");

    // HTTP/1.1 by ALPN, TLS 1.2 only, the other name's certificate.
    let b_url = format!("https://www.b.test:{https}/json");
    let b_ca = b.0.display().to_string();
    let out = curl(&[
        "-v",
        "--http1.1",
        "--tlsv1.2",
        "--tls-max",
        "1.2",
        "--cacert",
        &b_ca,
        "--resolve",
        &resolve("www.b.test"),
        &b_url,
    ]);
    let verbose = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{verbose}");
    assert!(
        verbose.contains("ALPN: server accepted http/1.1"),
        "{verbose}"
    );
    assert!(verbose.contains("TLSv1.2"), "{verbose}");

    // No name, or a name no certificate is for: the default certificate,
    // and the unknown name is counted.
    assert_eq!(served_fingerprint(https, None), fingerprint_of(&default.0));
    let before = stats(&edge).await["proxy"]["unknown_sni"].as_u64().unwrap();
    assert_eq!(
        served_fingerprint(https, Some("nope.test")),
        fingerprint_of(&default.0)
    );
    assert_eq!(
        served_fingerprint(https, Some("www.b.test")),
        fingerprint_of(&b.0)
    );
    let after = stats(&edge).await["proxy"]["unknown_sni"].as_u64().unwrap();
    assert_eq!(after, before + 1, "one unknown name counted");

    // Sessions resume: TLS 1.3 and 1.2 tickets, and 1.2 session IDs.
    let request = "GET /json HTTP/1.0\r\nHost: web.localhost\r\n\r\n";
    for (label, extra) in [
        ("TLS 1.3 ticket", vec![]),
        ("TLS 1.2 ticket", vec!["-tls1_2"]),
        ("TLS 1.2 session ID", vec!["-tls1_2", "-no_ticket"]),
    ] {
        let sess = dir.path().join("session");
        let _ = std::fs::remove_file(&sess);
        let sess_arg = sess.display().to_string();
        let mut first = extra.clone();
        first.extend(["-sess_out", &sess_arg]);
        let out = s_client(https, Some("web.a.test"), &first, Some(request));
        assert!(out.contains("New, TLS"), "{label}: {out}");
        assert!(out.contains(&web.id), "{label}: answered over TLS: {out}");
        let mut second = extra.clone();
        second.extend(["-sess_in", &sess_arg]);
        let out = s_client(https, Some("web.a.test"), &second, None);
        assert!(out.contains("Reused, TLS"), "{label}: not resumed: {out}");
    }

    // h2c with prior knowledge on the plain listener.
    let plain = format!("http://127.0.0.1:{}/json", edge.http);
    let out = curl(&[
        "-v",
        "--http2-prior-knowledge",
        "-H",
        "Host: web.localhost",
        &plain,
    ]);
    let verbose = String::from_utf8_lossy(&out.stderr);
    assert!(verbose.contains("< HTTP/2 200"), "{verbose}");
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http", "{seen}");

    // h2load: many streams multiplexed on few connections, over TLS and
    // in the clear, all answered.
    for (url, protocol) in [
        (format!("https://127.0.0.1:{https}/"), "h2"),
        (format!("http://127.0.0.1:{}/", edge.http), "h2c"),
    ] {
        let out = Command::new("h2load")
            .args(["-n", "300", "-c", "3", "-m", "10", "-T", "10"])
            .args(["-H", ":authority: web.localhost", &url])
            .output()
            .expect("h2load runs (scripts/test installs nghttp2-client)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("Application protocol: {protocol}")),
            "{text}"
        );
        assert!(text.contains("300 succeeded, 0 failed"), "{text}");
        assert!(text.contains("300 2xx"), "{text}");
    }
    assert!(
        stats(&edge).await["proxy"]["h2_connections"]
            .as_u64()
            .unwrap()
            >= 7
    );
}

#[tokio::test]
async fn kv_certificates_are_served_and_rotated_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    // No --tls-cert at all: only KV certificates.
    let edge = edge(&[]);
    let web = hello("web");
    register(&edge, &web.id, "web", web.port, &[]).await;
    let pem = |(cert, key): &(PathBuf, PathBuf)| {
        let mut v = std::fs::read(cert).unwrap();
        v.extend(std::fs::read(key).unwrap());
        v
    };
    let put = |key: &str, value: Vec<u8>| {
        let url = edge.registry.at(&format!("/v1/kv/shoal/certs/{key}"));
        async move {
            let r = client().put(url).body(value).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    let first = TestCerts::self_signed(dir.path(), "rot1", &["rot.test"]);
    let second = TestCerts::self_signed(dir.path(), "rot2", &["rot.test"]);
    let wild = TestCerts::self_signed(dir.path(), "wild", &["*.wild.test"]);
    let https = edge.https;

    put("rot.test", pem(&first)).await;
    put("*.wild.test", pem(&wild)).await;
    // A value that is no certificate is skipped; the others still serve.
    put("bad.test", b"not a certificate".to_vec()).await;
    let want = fingerprint_of(&first.0);
    until(
        Duration::from_secs(5),
        "first KV certificate served",
        || (served_fingerprint(https, Some("rot.test")) == want).then_some(()),
    )
    .await;
    assert_eq!(
        served_fingerprint(https, Some("x.wild.test")),
        fingerprint_of(&wild.0)
    );
    // Terminated TLS with a KV certificate reaches the instance.
    let ca = first.0.display().to_string();
    let out = curl(&[
        "--cacert",
        &ca,
        "--resolve",
        &format!("rot.test:{https}:127.0.0.1"),
        "-H",
        "Host: web.localhost",
        &format!("https://rot.test:{https}/json"),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&web.id));

    // One write rotates it: new handshakes get the new certificate within
    // a second, with no restart.
    put("rot.test", pem(&second)).await;
    let written = Instant::now();
    let want = fingerprint_of(&second.0);
    until(Duration::from_secs(1), "rotated certificate served", || {
        (served_fingerprint(https, Some("rot.test")) == want).then_some(())
    })
    .await;
    eprintln!("rotation served after {:?}", written.elapsed());

    // A name with no certificate and no default: no handshake, counted.
    let out = s_client(https, Some("none.test"), &[], None);
    assert!(!out.contains("BEGIN CERTIFICATE"), "{out}");
    assert!(stats(&edge).await["proxy"]["unknown_sni"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn redirects_to_https_and_https_instances() {
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::self_signed(dir.path(), "edge", &["secure.localhost"]);
    let edge = edge(std::slice::from_ref(&certs));
    let web = hello("secure");
    register(
        &edge,
        &web.id,
        "secure",
        web.port,
        &["shoal.redirect=https"],
    )
    .await;
    let plain = format!("http://127.0.0.1:{}/p/q?x=1", edge.http);

    // Plain HTTP gets the same URL over HTTPS: 301 for GET, 308 (method
    // and body kept) for POST.
    let out = until(Duration::from_secs(10), "redirect served", || {
        let out = curl(&["-D-", "-o/dev/null", "-H", "Host: secure.localhost", &plain]);
        let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        head.starts_with("http/1.1 301").then_some(head)
    })
    .await;
    assert!(
        out.contains("location: https://secure.localhost/p/q?x=1"),
        "{out}"
    );
    let out = curl(&[
        "-D-",
        "-o/dev/null",
        "-X",
        "POST",
        "-d",
        "x",
        "-H",
        "Host: secure.localhost",
        &plain,
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("HTTP/1.1 308"));
    // Over TLS it is served.
    let out = curl(&[
        "-k",
        "-H",
        "Host: secure.localhost",
        &format!("https://127.0.0.1:{}/json", edge.https),
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&web.id),
        "{out:?}"
    );

    // An instance that speaks only TLS: proto=https with tlsskipverify
    // is reached; without it, its self-signed certificate is refused.
    let (backend_cert, backend_key) = TestCerts::self_signed(dir.path(), "backend", &["backend"]);
    let (mut backend, port) = tls_backend(&backend_cert, &backend_key);
    register(
        &edge,
        "tb-1",
        "tlsback",
        port,
        &["proto=https", "tlsskipverify=true"],
    )
    .await;
    register(&edge, "strict-1", "strict", port, &["shoal.proto=https"]).await;
    let via = |host: &str| {
        curl(&[
            "-w",
            "\n%{http_code}",
            "-H",
            &format!("Host: {host}"),
            &format!("http://127.0.0.1:{}/", edge.http),
        ])
    };
    let page = until(Duration::from_secs(10), "tls instance reached", || {
        let out = via("tlsback.localhost");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.ends_with("200").then_some(text)
    })
    .await;
    assert!(page.contains("s_server"), "{page}");
    let strict = String::from_utf8_lossy(&via("strict.localhost").stdout).into_owned();
    assert!(
        strict.ends_with("502"),
        "an unverifiable instance: {strict}"
    );
    assert!(strict.contains("certificate"), "{strict}");
    let _ = backend.kill();
    let _ = backend.wait();
}

/// An HTTP/2 request (h2c, prior knowledge) on the plain listener: status
/// and body.
fn h2c(edge: &Edge, host: &str, path: &str) -> (String, String) {
    let out = curl(&[
        "--http2-prior-knowledge",
        "-w",
        "\n%{http_code}",
        "-H",
        &format!("Host: {host}"),
        &format!("http://127.0.0.1:{}{path}", edge.http),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.to_string(), body.to_string())
}

#[tokio::test]
async fn http2_requests_wait_retry_and_are_counted_as_http1_ones() {
    let edge = edge(&[]);
    // Waiting: a request for a service with no instance yet is held until
    // one registers (within --queue-timeout 500ms).
    let late = hello("late");
    let (host, http) = ("late.localhost".to_string(), edge.http);
    let waiting = std::thread::spawn(move || {
        let out = curl(&[
            "--http2-prior-knowledge",
            "-w",
            "\n%{http_code}",
            "-H",
            &format!("Host: {host}"),
            &format!("http://127.0.0.1:{http}/json"),
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    register(&edge, &late.id, "late", late.port, &[]).await;
    let answer = waiting.join().unwrap();
    assert!(answer.ends_with("200"), "waited for the instance: {answer}");
    assert!(answer.contains(&late.id), "{answer}");

    // Retries: an instance that refuses connections is skipped, every
    // request answered by the live one.
    let live = hello("mixed");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    register(&edge, "mixed-dead", "mixed", dead_port, &[]).await;
    register(&edge, &live.id, "mixed", live.port, &[]).await;
    until(
        Duration::from_secs(10),
        "both mixed instances routed",
        || (h2c(&edge, "mixed.localhost", "/json").0 == "200").then_some(()),
    )
    .await;
    for _ in 0..10 {
        let (status, body) = h2c(&edge, "mixed.localhost", "/json");
        assert_eq!(status, "200", "{body}");
        assert!(body.contains(&live.id), "{body}");
    }
    // A host no route is for: the same 404 an HTTP/1.1 client gets, counted.
    let (status, body) = h2c(&edge, "unrouted.example", "/");
    assert_eq!(status, "404", "{body}");
    let s = stats(&edge).await;
    assert!(s["proxy"]["no_route"].as_u64().unwrap() >= 1, "{s}");
    let dead = &s["services"]["mixed"]["instances"]["mixed-dead"];
    assert!(
        dead["errors"].as_u64().unwrap() >= 1,
        "its failures counted: {s}"
    );
    assert!(
        dead["retries"].as_u64().unwrap() >= 1,
        "and retried elsewhere: {s}"
    );
    assert_eq!(dead["ejected"], true, "passive health ejected it: {s}");
}
