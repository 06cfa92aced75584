//! `shoal-bench https`: the API's throughput over HTTPS against plain HTTP,
//! in one run against one `shoal server --in-memory` serving both (the
//! certificate made with `openssl` at start, testkit's `TestCerts`).
//!
//! `--connections` keep-alive connections each send `GET --path` (default
//! `/v1/kv/bench/x`, a 64-byte value) one after another, as fast as the
//! answers come, for `--seconds` or until `--count` requests, first over
//! HTTP, then over HTTPS (TLS 1.3, connections made and handshaken before
//! the clock starts). Reported: requests/s of each and HTTPS/HTTP. The
//! client is a thin HTTP/1.1 loop (a fixed request, the head parsed for
//! Content-Length), so the figures are mostly the server's cost.
//! `--plain-only` measures HTTP alone, for a binary without TLS (to compare
//! the plain path of two builds).
//!
//! Every loop is bounded in count and in time; every read has a timeout.

use crate::report::{print_summary, Figure};
use anyhow::{anyhow, bail, Context, Result};
use shoal_testkit::{ServerProcess, TestCerts};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// No single answer may take longer than this.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `shoal-bench https`.
#[derive(clap::Args)]
pub struct Args {
    /// Concurrent keep-alive connections per protocol.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Most requests per protocol.
    #[arg(long, default_value_t = 200_000)]
    count: u64,
    /// Longest run per protocol, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// The API path every request reads.
    #[arg(long, default_value = "/v1/kv/bench/x")]
    path: String,
    /// Measure plain HTTP only (for a shoal binary without TLS).
    #[arg(long)]
    plain_only: bool,
}

/// Runs the benchmark with the binary `shoal`; `command` is echoed in the summary.
pub async fn run(shoal: &Path, args: &Args, command: &str) -> Result<()> {
    if args.connections == 0 || args.count == 0 || args.seconds == 0 {
        bail!("--connections, --count and --seconds must be at least 1");
    }
    crate::server::check_open_files(args.connections as u64 * 2 + 64)?;
    let dir = tempfile::tempdir().context("temporary directory")?;
    let (certs, server) = start(shoal, dir.path(), args.plain_only).await?;
    seed(&server.url).await?;
    let http_addr = server.url.trim_start_matches("http://").to_string();
    let mut figures = Vec::new();
    let http = measure(args, || plain(&http_addr)).await?;
    println!("HTTP:  {http:.0} requests/s");
    figures.push(Figure::info(
        "HTTP API keep-alive GET",
        format!("{http:.0}/s"),
    ));
    if let Some(https_url) = server
        .announced_url("HTTPS API")
        .filter(|_| !args.plain_only)
    {
        let addr = https_url.trim_start_matches("https://").to_string();
        let config = client_config(&certs.ca)?;
        let https = measure(args, || tls(&addr, config.clone())).await?;
        println!("HTTPS: {https:.0} requests/s");
        figures.push(Figure::info(
            "HTTPS API keep-alive GET",
            format!("{https:.0}/s"),
        ));
        figures.push(Figure::info(
            "HTTPS / HTTP",
            format!("{:.2}x", https / http),
        ));
    }
    let notes = vec![
        format!("command: {command}"),
        format!(
            "server: {} server --in-memory --http-addr 127.0.0.1:0 --https-addr 127.0.0.1:0 \
             --tls-cert <P-256 cert> --tls-key <key> (testkit's flags)",
            shoal.display()
        ),
        format!(
            "{} connections per protocol, GET {}, at most {} requests or {} s each; \
             client and server share this machine's CPUs",
            args.connections, args.path, args.count, args.seconds
        ),
    ];
    print_summary("https", &figures, &notes);
    Ok(())
}

/// Makes the certificates and starts the server (HTTPS unless `plain_only`).
async fn start(shoal: &Path, dir: &Path, plain_only: bool) -> Result<(TestCerts, ServerProcess)> {
    let (bin, dir) = (shoal.to_path_buf(), dir.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let certs = TestCerts::generate(&dir);
        let (cert, key) = (certs.server_cert.display(), certs.server_key.display());
        let (cert, key) = (cert.to_string(), key.to_string());
        let mut flags = vec!["--in-memory"];
        if !plain_only {
            flags.extend([
                "--https-addr",
                "127.0.0.1:0",
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
            ]);
        }
        let server = ServerProcess::try_start(&bin, &flags)
            .map_err(|e| anyhow!("cannot start shoal server: {e}"))?;
        Ok((certs, server))
    })
    .await?
}

/// The key every request reads: 64 bytes.
async fn seed(base: &str) -> Result<()> {
    let client = crate::server::http_client(Duration::from_secs(10))?;
    let resp = client
        .put(format!("{base}/v1/kv/bench/x"))
        .body(vec![b'x'; 64])
        .send()
        .await
        .context("PUT /v1/kv/bench/x")?;
    if !resp.status().is_success() {
        bail!("PUT /v1/kv/bench/x: {}", resp.status());
    }
    Ok(())
}

fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

pub(crate) async fn plain(addr: &str) -> Result<Box<dyn Stream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(Box::new(tcp))
}

async fn tls(addr: &str, config: Arc<rustls::ClientConfig>) -> Result<Box<dyn Stream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .context("TLS handshake")?;
    Ok(Box::new(stream))
}

/// A connection of either kind.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Opens the connections with `connect`, then runs them all until the
/// count or the time is up; returns answered requests per second.
async fn measure<F, Fut>(args: &Args, connect: F) -> Result<f64>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Box<dyn Stream>>>,
{
    let request = format!("GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", args.path);
    let load = Load {
        connections: args.connections,
        count: args.count,
        seconds: args.seconds,
    };
    load.run(request.into_bytes().into(), connect).await
}

/// How much keep-alive load one measurement puts on the server.
pub(crate) struct Load {
    /// Concurrent connections.
    pub connections: usize,
    /// Most requests in all.
    pub count: u64,
    /// Longest run, in seconds.
    pub seconds: u64,
}

impl Load {
    /// Opens the connections with `connect`, then has each send `request`
    /// (a whole HTTP/1.1 request) again and again, reading every answer
    /// (which must be a 200 with a Content-Length), until the count or the
    /// time is up; returns answered requests per second.
    pub(crate) async fn run<F, Fut>(&self, request: Arc<[u8]>, connect: F) -> Result<f64>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Box<dyn Stream>>>,
    {
        let mut conns = Vec::with_capacity(self.connections);
        for _ in 0..self.connections {
            conns.push(connect().await?);
        }
        let done = Arc::new(AtomicU64::new(0));
        let (limit, deadline) = (
            self.count,
            Instant::now() + Duration::from_secs(self.seconds),
        );
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for conn in conns {
            let (request, done) = (request.clone(), done.clone());
            tasks.spawn(drive(conn, request, done, limit, deadline));
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        let answered = done.load(Ordering::Relaxed).min(limit);
        Ok(answered as f64 / started.elapsed().as_secs_f64())
    }
}

/// One connection's loop: a request, its whole answer, again.
async fn drive(
    mut conn: Box<dyn Stream>,
    request: Arc<[u8]>,
    done: Arc<AtomicU64>,
    limit: u64,
    deadline: Instant,
) -> Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    while Instant::now() < deadline && done.fetch_add(1, Ordering::Relaxed) < limit {
        conn.write_all(&request).await?;
        read_answer(&mut conn, &mut buf).await?;
    }
    Ok(())
}

/// Reads one answer with a Content-Length body; fails on anything but 200.
async fn read_answer(conn: &mut Box<dyn Stream>, buf: &mut [u8]) -> Result<()> {
    let mut have = 0;
    loop {
        let n = tokio::time::timeout(READ_TIMEOUT, conn.read(&mut buf[have..]))
            .await
            .context("no answer within 10 s")??;
        if n == 0 {
            bail!("the server closed the connection (or the answer is over 16 KiB)");
        }
        have += n;
        let got = &buf[..have];
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&got[..end]).context("answer head")?;
        if !head.starts_with("HTTP/1.1 200") {
            bail!("unexpected answer: {}", head.lines().next().unwrap_or(""));
        }
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .context("no content-length")?
            .trim()
            .parse()?;
        if have >= end + 4 + length {
            return Ok(());
        }
    }
}
