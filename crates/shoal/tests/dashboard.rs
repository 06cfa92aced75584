//! The dashboard at `/ui/`: served by every role that has an API (and by
//! `shoal proxy` on its stats address), self-contained, and — in a real
//! headless Chromium driven by Selenium (`tests/python/dashboard.py`) —
//! live: instances coming and going, health, KV editing with CAS, the
//! operations, the traffic view, reconnection, 10,000 services, keyboard,
//! labels, contrast and a phone-sized screen.
//!
//! Chromium and chromedriver come from Debian's packages and Selenium from
//! PyPI, all installed by `scripts/test`; a missing one fails the test
//! saying so.

mod common;

use common::client;
use common::stack::bin;
use reqwest::StatusCode;
use shoal_testkit::ServerProcess;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The page and its assets as `base` serves them: (path, content type, body).
async fn assets(base: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for path in ["/ui/", "/ui/app.js", "/ui/app.css"] {
        let r = client().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{base}{path}");
        let ct = r.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        out.push((path.to_string(), ct, r.text().await.unwrap()));
    }
    out
}

fn assert_self_contained(served: &[(String, String, String)]) {
    let want = [
        ("/ui/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ];
    for ((path, ct, body), (want_path, want_ct)) in served.iter().zip(want) {
        assert_eq!(path, want_path);
        assert!(ct.starts_with(want_ct), "{path}: {ct}");
        // Nothing from another origin: no CDN, no font, no script.
        assert!(
            !body.contains("https://"),
            "{path} refers to another origin"
        );
        for (at, _) in body.match_indices("http://") {
            let rest = &body[at..];
            assert!(
                rest.starts_with("http://127.0.0.1"),
                "{path} refers to another origin: {}",
                &rest[..rest.len().min(60)]
            );
        }
    }
    let html = &served[0].2;
    assert!(html.contains(r#"<script src="app.js""#) && html.contains(r#"href="app.css""#));
    assert!(
        !html.contains("<script>"),
        "inline script would break the page's own CSP"
    );
}

#[tokio::test]
async fn every_role_serves_the_page_self_contained() {
    let (dev, proxy_url) = ServerProcess::start_dev(bin(), &[]);
    let _ = proxy_url;
    let served = assets(&dev.url).await;
    assert_self_contained(&served);
    let total: usize = served.iter().map(|(_, _, b)| b.len()).sum();
    assert_eq!(total, shoal_api::ui_routes::UI_BYTES);
    println!("dashboard: {total} bytes (page, script and style, uncompressed)");

    // `shoal dev`: `/` leads to the page; `/ui` to `/ui/`.
    let r = no_redirects().get(dev.at("/")).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()["location"], "/ui/");
    let r = no_redirects().get(dev.at("/ui")).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()["location"], "/ui/");

    // A second load costs a 304; the page carries its own CSP.
    let r = client().get(dev.at("/ui/app.js")).send().await.unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let r = client()
        .get(dev.at("/ui/app.js"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = client().get(dev.at("/ui/")).send().await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    // Unknown assets are the API's ordinary 404.
    let r = client().get(dev.at("/ui/nope.js")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // `shoal server`: the page, but `/` stays the API's 404 (as Consul's).
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    assert_self_contained(&assets(&server.url).await);
    let r = no_redirects().get(server.at("/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // `shoal agent`: its own page; the catalog calls it makes are
    // forwarded, the change stream included (it never ends, so it must be
    // passed on as it comes, not buffered).
    let agent = ServerProcess::start_agent(bin(), &server.url, "ui-agent", &[]);
    assert_self_contained(&assets(&agent.url).await);
    let mut r = client()
        .get(agent.at("/v1/shoal/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let started = Instant::now();
    let mut got = String::new();
    while !got.contains(r#""Type":"Synced""#) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no Synced through the agent in 20 s: {got}"
        );
        match tokio::time::timeout(Duration::from_secs(20), r.chunk()).await {
            Ok(Ok(Some(c))) => got.push_str(&String::from_utf8_lossy(&c)),
            other => panic!("the stream through the agent broke off: {other:?} after {got}"),
        }
    }
    assert!(got.starts_with(r#"{"Type":"Reset""#), "{got}");
}

#[tokio::test]
async fn the_proxy_serves_its_traffic_view_on_the_stats_address() {
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stats = l.local_addr().unwrap();
    drop(l);
    let mut proxy = ServerProcess::start_role(
        bin(),
        &[
            "proxy",
            "--registry",
            &server.url,
            "--listen",
            "127.0.0.1:0",
            "--stats-addr",
            &stats.to_string(),
            "--log-level",
            "warn",
        ],
        "stats",
    );
    let base = format!("http://{stats}");
    assert_self_contained(&assets(&base).await);
    let r = no_redirects().get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.headers()["location"], "/ui/");
    // The page tells a proxy from a registry by this 404.
    let r = client()
        .get(format!("{base}/v1/status/leader"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    proxy.terminate();
}

/// Where scripts/test installed Selenium.
fn selenium_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("pyclients")
        .join("selenium");
    assert!(
        dir.join("selenium").is_dir(),
        "Selenium is not installed in {}: run scripts/test (it installs it)",
        dir.display()
    );
    dir
}

fn chromedriver() -> PathBuf {
    let path = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"));
    assert!(
        path.is_file(),
        "{} not found: run scripts/test (it installs Debian's chromium and chromium-driver)",
        path.display()
    );
    path
}

/// Where the scenarios leave screenshots of every view, for a person.
fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("dashboard-screenshots")
}

/// Runs one browser scenario of `tests/python/dashboard.py`.
fn browser(scenario: &str) {
    let dir = selenium_dir();
    let driver = chromedriver();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/dashboard.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(bin())
        .arg(scenario)
        .env("PYTHONPATH", &dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("CHROMEDRIVER", &driver)
        .env("SHOAL_SCREENSHOTS", screenshots())
        // Selenium must not try to download a driver or reach a proxy.
        .env("SE_OFFLINE", "true")
        .env("NO_PROXY", "*")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    // Every wait inside is bounded; this only stops a hung browser.
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dashboard {scenario}: still running after 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    assert!(
        out.status.success(),
        "dashboard {scenario} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod in_a_browser {
            $(#[test] fn $name() { super::browser(stringify!($name)); })*
        }
    };
}

scenarios!(
    with_acls,
    live_catalog,
    kv_editing,
    operations,
    traffic,
    reconnects,
    without_stream,
    many_tabs,
    proxy_stats_page,
    many_services,
    accessible,
);
