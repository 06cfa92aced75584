//! Certificate rotation without a restart: new files and SIGHUP (or the
//! files changing alone) give new connections the new certificate, as
//! `openssl s_client` sees it, while a keep-alive connection made before
//! keeps being served; a broken file is refused with a log line naming it
//! and the previous certificate stays.

mod common;

use common::stack::bin;
use common::tls::{curl, fingerprint, reissue, served_fingerprint, Watched};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use shoal_testkit::{assert_eventually, TestCerts};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A TLS connection to `addr` trusting `ca`, kept open by the test.
async fn connect(addr: &str, ca: &Path) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// One keep-alive GET on `conn`; returns the answer's status line and body.
async fn get(conn: &mut TlsStream<TcpStream>, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "the connection closed: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_string)
            })
            .expect("content-length")
            .trim()
            .parse()
            .unwrap();
        if body.len() >= length {
            assert!(head.contains("connection: keep-alive"), "{head}");
            return (head.lines().next().unwrap().to_string(), body.to_string());
        }
    }
}

/// The DER of the certificate `conn` was served.
fn peer_cert(conn: &TlsStream<TcpStream>) -> Vec<u8> {
    conn.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Replaces `to` by `from` the way rotation tools do: written beside, renamed.
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[tokio::test]
async fn a_rotated_certificate_reaches_new_connections_and_old_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::generate(&dir.path().join("ca"));
    let (cert, key) = (dir.path().join("live.crt"), dir.path().join("live.key"));
    install(&certs.server_cert, &cert);
    install(&certs.server_key, &key);
    let mut server = Watched::spawn(
        bin(),
        &[
            "server",
            "--in-memory",
            "--http-addr",
            "127.0.0.1:0",
            "--dns-addr",
            "127.0.0.1:0",
            "--https-addr",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--log-level",
            "info",
        ],
    );
    let https = server.url("HTTPS API");
    server.url("HTTP API");
    let addr = https.trim_start_matches("https://").to_string();
    let first = std::fs::read(&certs.server_cert).unwrap();
    assert_eq!(served_fingerprint(&addr, &certs.ca), fingerprint(&first));
    let mut kept = connect(&addr, &certs.ca).await;
    let first_der = peer_cert(&kept);
    assert_eq!(
        get(&mut kept, "/v1/status/leader").await.0,
        "HTTP/1.1 200 OK"
    );

    // Rotation 1: new files, then SIGHUP.
    let (cert2, key2) = reissue(&certs, dir.path(), "second");
    install(&cert2, &cert);
    install(&key2, &key);
    server.signal("HUP");
    let second = fingerprint(&std::fs::read(&cert2).unwrap());
    assert_eventually!(
        served_fingerprint(&addr, &certs.ca) == second,
        "new connections never got the certificate installed before SIGHUP"
    );
    // The connection made before is still served, with the old certificate.
    assert_eq!(
        get(&mut kept, "/v1/status/leader").await.0,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(peer_cert(&kept), first_der);
    let fresh = connect(&addr, &certs.ca).await;
    assert_ne!(peer_cert(&fresh), first_der);

    // Rotation 2: the files change, no signal.
    let (cert3, key3) = reissue(&certs, dir.path(), "third");
    install(&cert3, &cert);
    install(&key3, &key);
    let third = fingerprint(&std::fs::read(&cert3).unwrap());
    assert_eventually!(
        served_fingerprint(&addr, &certs.ca) == third,
        "new connections never got the certificate whose files changed"
    );

    // A broken certificate: refused, named in the log, the last one stays.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    server.signal("HUP");
    // (A reload may also have failed mid-rotation, new certificate with
    // the old key: that line says "no pair"; this one names the bad PEM.)
    let line = server.wait_line(&format!("certificate {} is unusable", cert.display()));
    assert!(line.contains("certificate reload failed"), "{line}");
    assert_eq!(served_fingerprint(&addr, &certs.ca), third);
    assert_eq!(
        get(&mut kept, "/v1/status/leader").await.0,
        "HTTP/1.1 200 OK"
    );
    let (ok, body, err) = curl(&[
        "--fail",
        "--cacert",
        certs.ca.to_str().unwrap(),
        &format!("{https}/v1/status/leader"),
    ]);
    assert!(ok && body.contains("127.0.0.1"), "{err}");
    assert!(server.running(), "the server stopped");
}
