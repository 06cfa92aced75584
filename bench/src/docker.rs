//! `shoal-bench docker`: how fast a started container gets traffic. One
//! `shoal dev --docker` (registrator + proxy in one process); for each of
//! N containers (created beforehand, a `FROM scratch` image of the
//! benchmarked binary running `shoal hello`), times from `docker start`
//! returning to (a) the app answering on its published port directly and
//! (b) the first request through the proxy that this container answers.
//! Target: p99 of (b) - (a) ≤ 200 ms (traffic within 200 ms of the app
//! listening).

use crate::report::{print_summary, Figure};
use crate::stats::Summary;
use anyhow::{anyhow, bail, Context, Result};
use shoal_testkit::ServerProcess;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TARGET: Duration = Duration::from_millis(200);
/// Longest one container may take to get traffic before the run gives up.
const DEADLINE: Duration = Duration::from_secs(20);

/// Options of `shoal-bench docker`.
#[derive(clap::Args)]
pub struct Args {
    /// Containers started, one after the other.
    #[arg(long, default_value_t = 20)]
    containers: usize,
}

fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .context("cannot run the docker CLI")?;
    if !out.status.success() {
        bail!(
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Builds the image `tag`: the binary and the libraries `ldd` names, at their paths.
fn build_image(shoal: &Path, tag: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::copy(shoal, dir.path().join("shoal"))?;
    let _ = Command::new("strip").arg(dir.path().join("shoal")).status();
    let ldd = Command::new("ldd").arg(shoal).output().context("ldd")?;
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split("=>")
            .last()
            .unwrap_or("")
            .split_whitespace()
            .next()
            .unwrap_or("");
        if path.starts_with('/') {
            let dest: PathBuf = dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().unwrap())?;
            std::fs::copy(path, &dest).with_context(|| format!("copy {path}"))?;
        }
    }
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY . /\nEXPOSE 8080\nENTRYPOINT [\"/shoal\",\"hello\",\"--addr\",\"0.0.0.0\",\"--port\",\"8080\"]\n",
    )?;
    docker(&[
        "build",
        "-q",
        "--label",
        "shoal-test=1",
        "-t",
        tag,
        dir.path().to_str().unwrap(),
    ])?;
    Ok(())
}

/// Removes the containers and the image, even when the run fails.
struct Cleanup {
    names: Vec<String>,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.names.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(self.names.iter().map(String::as_str));
            let _ = docker(&args);
        }
        let _ = docker(&["rmi", "-f", &self.image]);
    }
}

/// A free TCP port on 127.0.0.1 (released at once, for `docker -p`).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Polls `GET url` (with `host`) until the answer comes from container `hostname`.
async fn first_answer(
    client: &reqwest::Client,
    url: &str,
    host: &str,
    hostname: &str,
) -> Result<Instant> {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if let Ok(r) = client.get(url).header("Host", host).send().await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if v["hostname"] == hostname {
                    return Ok(Instant::now());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Err(anyhow!(
        "{host}: no answer from {hostname} within {DEADLINE:?}"
    ))
}

/// Runs the benchmark.
pub async fn run(shoal: &Path, args: &Args, command: &str) -> Result<()> {
    docker(&["info", "--format", "{{.ServerVersion}}"]).context("no Docker engine")?;
    let tag = format!("shoal-bench-hello:{}", std::process::id());
    let mut cleanup = Cleanup {
        names: Vec::new(),
        image: tag.clone(),
    };
    build_image(shoal, &tag)?;
    let bin = shoal.to_path_buf();
    let (dev, proxy) =
        tokio::task::spawn_blocking(move || ServerProcess::try_start_dev(&bin, &["--docker"]))
            .await?
            .map_err(|e| anyhow!(e))?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()?;
    let mut containers = Vec::new();
    for i in 0..args.containers {
        let name = format!("shoal-bench-{}-{i}", std::process::id());
        let port = free_port()?;
        let id = docker(&[
            "create",
            "--name",
            &name,
            "--label",
            "shoal-test=1",
            "-p",
            &format!("127.0.0.1:{port}:8080"),
            "-e",
            &format!("SERVICE_NAME={name}"),
            &tag,
        ])?;
        cleanup.names.push(name.clone());
        containers.push((name, port, id[..12].to_string()));
    }
    let (mut listening, mut routed, mut after_listen) = (Vec::new(), Vec::new(), Vec::new());
    for (name, port, short) in &containers {
        docker(&["start", name])?;
        let t0 = Instant::now();
        let host = format!("{name}.localhost");
        let (direct_url, proxy_url) = (
            format!("http://127.0.0.1:{port}/json"),
            format!("{proxy}/json"),
        );
        let direct = first_answer(&client, &direct_url, "x", short);
        let proxied = first_answer(&client, &proxy_url, &host, short);
        let (direct, proxied) = tokio::join!(direct, proxied);
        let (direct, proxied) = (direct?, proxied?);
        listening.push(direct - t0);
        routed.push(proxied - t0);
        after_listen.push(proxied.saturating_duration_since(direct));
    }
    let (l, r, a) = (
        Summary::of(&listening).unwrap(),
        Summary::of(&routed).unwrap(),
        Summary::of(&after_listen).unwrap(),
    );
    println!(
        "docker start returned -> app answers directly: {}",
        l.line()
    );
    println!(
        "docker start returned -> first request through the proxy: {}",
        r.line()
    );
    println!(
        "app answers directly -> first request through the proxy: {}",
        a.line()
    );
    let figures = vec![
        Figure::info(
            "start -> first proxied request, p50",
            crate::stats::ms(r.p50),
        ),
        Figure::info(
            "start -> first proxied request, p99",
            crate::stats::ms(r.p99),
        ),
        Figure::info(
            "start -> app answers directly, p50",
            crate::stats::ms(l.p50),
        ),
        Figure::delay_at_most("app listens -> first proxied request, p50", a.p50, TARGET),
        Figure::delay_at_most("app listens -> first proxied request, p99", a.p99, TARGET),
    ];
    print_summary(
        "docker",
        &figures,
        &[
            format!("command: {command}"),
            format!(
                "{} containers (FROM scratch, shoal hello), started one after the other with `docker start`; \
                 polled every ~1 ms directly on the published port and through the proxy with Host: <name>.localhost",
                args.containers
            ),
        ],
    );
    drop(dev);
    drop(cleanup);
    Ok(())
}
