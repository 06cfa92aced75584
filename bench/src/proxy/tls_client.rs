//! The TLS client of `shoal-bench proxy edge` (rustls, as tokio-rustls
//! drives it): one-off HTTPS GETs to check a balancer (which backend
//! answered, which certificate, protocol version, cipher suite and ALPN),
//! and the handshake loop: several tasks, each connecting, handshaking
//! (full, or resumed from its own session cache),
//! sending one `GET` with `Connection: close`, reading the whole answer
//! and closing, again and again, bounded in count and time.
//!
//! Like wrk and h2load, the client does not verify the server's
//! certificate (a verifier that accepts anything): checking it costs the
//! client more than the server's signature costs the server, and the
//! client shares a CPU with the backends. [`get`] hands back the
//! certificate the server sent, so the benchmark checks once that every
//! balancer serves the one it made.

use crate::stats::Summary;
use anyhow::{bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, Resumption};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// No connection (connect, handshake, request, answer) may take longer.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// Which TLS versions the client offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Versions {
    /// TLS 1.3 and 1.2 (1.3 is chosen by every contender).
    Tls13,
    /// TLS 1.2 only: resumption by session ID or TLS 1.2 ticket.
    Tls12,
}

impl Versions {
    /// For the report.
    pub fn label(self) -> &'static str {
        match self {
            Versions::Tls13 => "TLS 1.3 and 1.2 offered",
            Versions::Tls12 => "TLS 1.2 only",
        }
    }
}

/// A client configuration: `resume` keeps tickets and session IDs in a
/// memory cache of this configuration (shared by every connection made
/// with it), otherwise every handshake is a full one; `alpn` is what it
/// offers.
pub fn config(versions: Versions, resume: bool, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone());
    let builder = match versions {
        Versions::Tls13 => builder.with_safe_default_protocol_versions()?,
        Versions::Tls12 => builder.with_protocol_versions(&[&rustls::version::TLS12])?,
    };
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = if resume {
        Resumption::store(Arc::new(ClientSessionMemoryCache::new(64)))
    } else {
        Resumption::disabled()
    };
    Ok(Arc::new(config))
}

/// Accepts any certificate (see the module's documentation).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Where to connect and what to ask.
#[derive(Clone)]
pub struct Target {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The server name sent (SNI) and the `Host` header.
    pub host: String,
}

impl Target {
    fn request(&self) -> Vec<u8> {
        format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host
        )
        .into_bytes()
    }
}

/// What one connection saw.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The answer's status code (0 if only the handshake was made).
    pub status: u16,
    /// The answer's body.
    pub body: String,
    /// Full or resumed handshake.
    pub kind: Option<HandshakeKind>,
    /// `TLSv1_3`, ...
    pub version: String,
    /// The cipher suite.
    pub suite: String,
    /// The protocol chosen by ALPN, if any.
    pub alpn: Option<String>,
    /// The certificate the server presented.
    pub certificate: Option<CertificateDer<'static>>,
}

/// One connection: handshake, then (if `request`) one GET and its whole
/// answer; then close_notify and close. Bounded by [`EXCHANGE_TIMEOUT`].
pub async fn get(target: &Target, config: &Arc<ClientConfig>, request: bool) -> Result<Exchange> {
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(target, config, request))
        .await
        .with_context(|| format!("no answer from {} within {EXCHANGE_TIMEOUT:?}", target.addr))?
}

async fn exchange(target: &Target, config: &Arc<ClientConfig>, request: bool) -> Result<Exchange> {
    let tcp = TcpStream::connect(&target.addr)
        .await
        .with_context(|| format!("connecting to {}", target.addr))?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(target.host.clone())?;
    let mut tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .context("TLS handshake")?;
    let (mut status, mut body) = (0, String::new());
    if request {
        tls.write_all(&target.request()).await?;
        (status, body) = read_answer(&mut tls).await?;
    }
    let (_, conn) = tls.get_ref();
    let result = Exchange {
        status,
        body,
        kind: conn.handshake_kind(),
        version: conn
            .protocol_version()
            .map_or_else(String::new, |v| format!("{v:?}")),
        suite: conn
            .negotiated_cipher_suite()
            .map_or_else(String::new, |s| format!("{:?}", s.suite())),
        alpn: conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        certificate: conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned()),
    };
    // close_notify; the server may already have closed its side.
    let _ = tls.shutdown().await;
    Ok(result)
}

/// Reads one HTTP/1.1 answer: its status and body, by Content-Length, to
/// the end of a chunked body, or to the end of the stream.
async fn read_answer<S: AsyncRead + Unpin>(conn: &mut S) -> Result<(u16, String)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match conn.read(&mut chunk).await {
            Ok(n) => n,
            // A server that closes without close_notify, after the answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e).context("reading the answer"),
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(done) = complete(&buf, n == 0)? {
            return Ok(done);
        }
        if n == 0 {
            bail!(
                "the connection closed before a whole answer ({} bytes)",
                buf.len()
            );
        }
        if buf.len() > MAX_ANSWER {
            bail!("answer over {MAX_ANSWER} bytes");
        }
    }
}

/// The status and body of `buf` if it holds a whole answer (`eof`: the
/// stream has ended, which ends a body without length).
fn complete(buf: &[u8], eof: bool) -> Result<Option<(u16, String)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).context("answer head")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {:?}", head.lines().next()))?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    let body = &buf[end + 4..];
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if let Some(length) = header("content-length") {
        let length: usize = length.parse().context("content-length")?;
        return Ok((body.len() >= length).then(|| (status, text(&body[..length]))));
    }
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return Ok(body.ends_with(b"0\r\n\r\n").then(|| (status, text(body))));
    }
    Ok(eof.then(|| (status, text(body))))
}

/// How many handshakes one run makes.
#[derive(Clone, Copy)]
pub struct HandshakeLoad {
    /// Most connections in all.
    pub count: u64,
    /// Longest run.
    pub seconds: u64,
}

/// What a handshake run saw.
#[derive(Debug, Clone, Default)]
pub struct HandshakeReport {
    /// Connections that completed (handshake, 200 answer, close).
    pub done: u64,
    /// Of them, resumed handshakes.
    pub resumed: u64,
    /// Connections that failed (any step, or an answer other than 200).
    pub failed: u64,
    /// Completed connections per second.
    pub rate: f64,
    /// Connect to whole answer, of the completed ones.
    pub latency: Option<Summary>,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

/// One task per configuration in `configs` (each with its own session
/// cache, if it resumes), connecting to `target` one connection at a time
/// until `load.count` connections or `load.seconds` are used up.
///
/// Why not one cache for all tasks: rustls keeps at most 8 TLS 1.3
/// tickets per server name, and a ticket is used once; 16 tasks sharing 8
/// would start full handshakes whenever a server sends one ticket per
/// connection, counting the client's limit against the server.
pub async fn handshakes(
    target: &Target,
    configs: &[Arc<ClientConfig>],
    load: HandshakeLoad,
) -> HandshakeReport {
    let started_count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(load.seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for config in configs {
        let (target, config, counter) = (target.clone(), config.clone(), started_count.clone());
        tasks.spawn(async move {
            let mut seen = TaskSeen::default();
            while Instant::now() < deadline && counter.fetch_add(1, Ordering::Relaxed) < load.count
            {
                let t = Instant::now();
                match get(&target, &config, true).await {
                    Ok(e) if e.status == 200 => {
                        seen.latencies.push(t.elapsed());
                        seen.resumed += u64::from(e.kind == Some(HandshakeKind::Resumed));
                    }
                    Ok(e) => seen.fail(format!("HTTP {} ({})", e.status, e.body.trim())),
                    Err(e) => seen.fail(format!("{e:#}")),
                }
            }
            seen
        });
    }
    let mut report = HandshakeReport::default();
    let mut latencies = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let seen = match joined {
            Ok(seen) => seen,
            Err(e) => {
                report.failed += 1;
                report.first_error.get_or_insert_with(|| e.to_string());
                continue;
            }
        };
        report.done += seen.latencies.len() as u64;
        report.resumed += seen.resumed;
        report.failed += seen.failed;
        if report.first_error.is_none() {
            report.first_error = seen.first_error;
        }
        latencies.extend(seen.latencies);
    }
    report.rate = report.done as f64 / started.elapsed().as_secs_f64();
    report.latency = Summary::of(&latencies);
    report
}

/// One task's tally.
#[derive(Default)]
struct TaskSeen {
    latencies: Vec<Duration>,
    resumed: u64,
    failed: u64,
    first_error: Option<String>,
}

impl TaskSeen {
    fn fail(&mut self, error: String) {
        self.failed += 1;
        self.first_error.get_or_insert(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_whole_answers_only() {
        let full = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nhello-2";
        assert_eq!(
            complete(full, false).unwrap(),
            Some((200, "hello-2".to_string()))
        );
        let upper = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nServer: nginx\r\n\r\nhello-2";
        assert_eq!(complete(upper, false).unwrap().unwrap().1, "hello-2");
        assert_eq!(complete(&full[..full.len() - 1], false).unwrap(), None);
        assert_eq!(complete(b"HTTP/1.1 200 OK\r\n", false).unwrap(), None);
        let chunked =
            b"HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nbad\r\n0\r\n\r\n";
        assert_eq!(complete(chunked, false).unwrap().unwrap().0, 502);
        let unsized_answer = b"HTTP/1.1 200 OK\r\n\r\nhi";
        assert_eq!(complete(unsized_answer, false).unwrap(), None);
        assert_eq!(complete(unsized_answer, true).unwrap().unwrap().1, "hi");
        assert!(complete(b"nonsense\r\n\r\n", false).is_err());
    }

    #[test]
    fn configs_offer_what_was_asked() {
        let c = config(Versions::Tls12, false, &[b"http/1.1"]).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(config(Versions::Tls13, true, &[b"h2", b"http/1.1"]).is_ok());
    }
}
