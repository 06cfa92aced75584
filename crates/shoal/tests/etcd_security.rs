//! `shoal server --store etcd` on an etcd that wants TLS with client
//! certificates (made with `openssl` at test time) or a user and password:
//! with the right options servers share one catalog as usual; without
//! them, or with wrong ones, a server does not start and says why.

mod common;

use common::*;
use shoal_testkit::{EtcdCluster, EtcdOptions, EtcdTls, TestCerts};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

/// Runs `shoal server` on `endpoints` with `extra` flags, expecting it to
/// exit (within 30 s) without starting; its stderr.
fn refused_start(endpoints: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin());
    cmd.args([
        "server",
        "--http-addr",
        "127.0.0.1:0",
        "--dns-addr",
        "127.0.0.1:0",
    ])
    .args([
        "--store",
        "etcd",
        "--etcd-endpoints",
        endpoints,
        "--data-dir",
    ])
    .arg(dir.path())
    .args(extra)
    .env("SHOAL_NO_DOCKER", "true");
    let (status, stderr) = shoal_testkit::run_to_exit(cmd, Duration::from_secs(30));
    let Some(status) = status else {
        panic!("shoal server {extra:?} neither started nor exited in 30 s");
    };
    assert!(!status.success(), "started: {stderr}");
    stderr
}

/// A write on `a` is read `?consistent` on `b`, and wakes a blocking
/// query there (the watch works too).
async fn one_catalog(a: &shoal_testkit::ServerProcess, b: &shoal_testkit::ServerProcess, v: &str) {
    let index = get(b.at("/v1/kv/sec/key")).await.index;
    let waiter = tokio::spawn(get(b.at(&format!("/v1/kv/sec/key?index={index}&wait=20s"))));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ok(put(a.at("/v1/kv/sec/key"), v).await).text, "true");
    assert_eq!(ok(get(b.at("/v1/kv/sec/key?consistent&raw")).await).text, v);
    let woken = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("B's blocking query was not woken")
        .unwrap();
    assert!(ok(woken).index > index);
}

#[tokio::test]
async fn etcd_with_tls_and_client_certificates() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::generate(certs_dir.path());
    let etcd = EtcdCluster::start_with(
        1,
        EtcdOptions {
            tls: Some(EtcdTls {
                certs: certs.clone(),
                client_cert_auth: true,
            }),
            ..Default::default()
        },
    );
    let endpoint = etcd.endpoint(0);
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    let (ca, cert, key) = (
        certs.ca.to_str().unwrap(),
        certs.client_cert.to_str().unwrap(),
        certs.client_key.to_str().unwrap(),
    );
    let tls = ["--etcd-cacert", ca, "--etcd-cert", cert, "--etcd-key", key];
    let a = etcd.start_shoal(bin(), "server-a", &tls);
    let b = etcd.start_shoal(bin(), "server-b", &tls);
    one_catalog(&a, &b, "over-tls").await;
    // A server registers itself (its lease works over TLS too).
    let consul = ok(get(b.at("/v1/catalog/service/consul?consistent")).await).json();
    assert_eq!(consul.as_array().unwrap().len(), 2, "{consul}");

    // No client certificate: etcd refuses the connection.
    let err = refused_start(&endpoint, &["--etcd-cacert", ca]);
    assert!(err.contains(&endpoint), "{err}");
    assert!(
        err.contains("BadCertificate") || err.contains("CertificateRequired"),
        "{err}"
    );
    // The members' certificate is not signed by the CA given.
    let other = certs.other_ca.to_str().unwrap();
    let err = refused_start(
        &endpoint,
        &[
            "--etcd-cacert",
            other,
            "--etcd-cert",
            cert,
            "--etcd-key",
            key,
        ],
    );
    assert!(err.contains(&endpoint), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    // No CA at all: the members' certificate is not trusted either.
    let err = refused_start(&endpoint, &["--etcd-cert", cert, "--etcd-key", key]);
    assert!(err.contains("UnknownIssuer"), "{err}");
    // Options that cannot work are refused before anything is tried.
    let err = refused_start(&endpoint, &["--etcd-cert", cert]);
    assert!(
        err.contains("--etcd-cert and --etcd-key go together"),
        "{err}"
    );
    let err = refused_start(&endpoint, &["--etcd-cacert", key]);
    assert!(err.contains("holds no PEM certificate"), "{err}");
    let missing = certs_dir.path().join("nowhere.pem");
    let err = refused_start(&endpoint, &["--etcd-cacert", missing.to_str().unwrap()]);
    assert!(err.contains("cannot read etcd CA"), "{err}");
}

#[tokio::test]
async fn etcd_with_users_and_passwords() {
    // Tokens that expire after 1 s: servers must log in again by themselves.
    let mut etcd = EtcdCluster::start_with(
        1,
        EtcdOptions {
            args: vec!["--auth-token-ttl".into(), "1".into()],
            ..Default::default()
        },
    );
    let ctl = |etcd: &EtcdCluster, args: &[&str]| {
        etcd.etcdctl(args)
            .unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}"))
    };
    ctl(&etcd, &["user", "add", "root:root-secret"]);
    let _ = etcd.etcdctl(&["role", "add", "root"]);
    ctl(&etcd, &["user", "grant-role", "root", "root"]);
    // A user that may use /shoal/ only, as an operator would set it up.
    ctl(&etcd, &["role", "add", "shoal"]);
    ctl(
        &etcd,
        &[
            "role",
            "grant-permission",
            "shoal",
            "--prefix=true",
            "readwrite",
            "/shoal/",
        ],
    );
    ctl(&etcd, &["user", "add", "shoal:shoal-secret"]);
    ctl(&etcd, &["user", "grant-role", "shoal", "shoal"]);
    ctl(&etcd, &["user", "add", "nobody:nobody-secret"]);
    ctl(&etcd, &["auth", "enable"]);
    etcd.set_etcdctl_user(Some("root:root-secret"));
    etcd.wait_healthy();

    let a = etcd.start_shoal(bin(), "server-a", &["--etcd-user", "shoal:shoal-secret"]);
    let b = etcd.start_shoal(
        bin(),
        "server-b",
        &["--etcd-user", "shoal", "--etcd-password", "shoal-secret"],
    );
    one_catalog(&a, &b, "one").await;
    // Past the tokens' TTL, both still write, follow and keep their leases.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    one_catalog(&b, &a, "two").await;
    let consul = ok(get(a.at("/v1/catalog/service/consul?consistent")).await).json();
    assert_eq!(consul.as_array().unwrap().len(), 2, "{consul}");
    let stale = get(a.at("/v1/kv/sec/key")).await;
    assert_eq!(
        stale.status,
        reqwest::StatusCode::OK,
        "default reads after the token expired: {}",
        stale.text
    );

    let endpoint = etcd.endpoint(0);
    let err = refused_start(&endpoint, &["--etcd-user", "shoal:wrong"]);
    assert!(err.contains(&endpoint), "{err}");
    assert!(err.contains("authentication failed"), "{err}");
    let err = refused_start(&endpoint, &[]);
    assert!(err.contains("user name is empty"), "{err}");
    // A user without a right to the prefix is told so.
    let err = refused_start(&endpoint, &["--etcd-user", "nobody:nobody-secret"]);
    assert!(err.contains("permission denied"), "{err}");
    let err = refused_start(&endpoint, &["--etcd-user", "shoal"]);
    assert!(err.contains("needs a password"), "{err}");
}
