//! TLS flags of the binary: the HTTPS API listeners of `server`, `dev` and
//! `agent` (`--https-addr`, `--tls-*`), with their reloads on SIGHUP and
//! on file changes, and the client side every role that talks to a
//! registry shares (`--ca-file`, `--client-cert`, `--client-key`, as
//! Consul's CLI spells them, with its `CONSUL_*` variables).

use crate::listen::{self, Bound, ListenAddr};
use anyhow::{bail, Context};
use axum::Router;
use shoal_api::{ClientTls, ServerTls, ServerTlsFiles};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often the certificate files are checked for a change.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Flags of the HTTPS API, served beside the plain one (as Consul's
/// `ports.https`): `server`, `dev` and `agent`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct HttpsArgs {
    /// Address of the HTTPS API, beside --http-addr (IP or host name; every
    /// address a name resolves to is bound). Needs --tls-cert and --tls-key.
    #[arg(long, env = "SHOAL_HTTPS_ADDR")]
    pub https_addr: Option<ListenAddr>,
    /// The HTTPS API's certificate chain (PEM, leaf first); reloaded on
    /// SIGHUP and when the file changes.
    #[arg(long, env = "SHOAL_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "SHOAL_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that sign client certificates, for
    /// --tls-verify-incoming.
    #[arg(long, env = "SHOAL_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Require every HTTPS client to present a certificate signed by --tls-ca.
    #[arg(long, env = "SHOAL_TLS_VERIFY_INCOMING")]
    pub tls_verify_incoming: bool,
}

impl HttpsArgs {
    /// The files HTTPS is served with; `None` without --https-addr. Every
    /// flag mistake is refused here, before anything is loaded.
    pub fn files(&self) -> anyhow::Result<Option<ServerTlsFiles>> {
        let Some(addr) = &self.https_addr else {
            let given = [
                (self.tls_cert.is_some(), "--tls-cert"),
                (self.tls_key.is_some(), "--tls-key"),
                (self.tls_ca.is_some(), "--tls-ca"),
                (self.tls_verify_incoming, "--tls-verify-incoming"),
            ];
            if let Some((_, flag)) = given.iter().find(|(set, _)| *set) {
                bail!("{flag} is for the HTTPS API: give --https-addr too");
            }
            return Ok(None);
        };
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            bail!("--https-addr {addr} needs --tls-cert FILE and --tls-key FILE");
        };
        if self.tls_verify_incoming && self.tls_ca.is_none() {
            bail!(
                "--tls-verify-incoming needs --tls-ca FILE, the CA that signs client certificates"
            );
        }
        Ok(Some(ServerTlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: self.tls_ca.clone(),
            verify_incoming: self.tls_verify_incoming,
        }))
    }

    /// Checks the flags and loads the certificate (a missing or bad file
    /// fails start-up, named); `None` without --https-addr.
    pub fn load(&self) -> anyhow::Result<Option<Arc<ServerTls>>> {
        let Some(files) = self.files()? else {
            return Ok(None);
        };
        let tls = ServerTls::load(files).context("cannot set up the HTTPS API")?;
        Ok(Some(tls))
    }

    /// Binds the HTTPS listeners (after [`Self::load`]).
    pub async fn bind(
        &self,
        tls: Option<Arc<ServerTls>>,
        what: &str,
    ) -> anyhow::Result<Option<Https>> {
        let (Some(tls), Some(addr)) = (tls, &self.https_addr) else {
            return Ok(None);
        };
        let listeners = listen::bind_tcp(addr, what).await?;
        Ok(Some(Https { tls, listeners }))
    }
}

/// The bound HTTPS listeners and their reloadable certificate.
pub struct Https {
    tls: Arc<ServerTls>,
    listeners: Vec<Bound<TcpListener>>,
}

impl Https {
    /// The bound addresses.
    pub fn addrs(&self) -> Vec<std::net::SocketAddr> {
        self.listeners.iter().map(|b| b.addr).collect()
    }

    /// Announces each listener (`<label> listening on https://...`), then
    /// serves `app` on it, reloads the certificate on SIGHUP and when its
    /// files change, until `cancel` fires.
    pub fn serve(
        self,
        label: &str,
        app: Router,
        cancel: &CancellationToken,
        tasks: &mut JoinSet<()>,
    ) -> anyhow::Result<()> {
        // Installed before the announcement: a SIGHUP sent once the role
        // said it listens must reload, not end the process.
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot watch SIGHUP")?;
        let (tls, c) = (self.tls.clone(), cancel.clone());
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    Some(()) = hup.recv() => tls.reload_logged("SIGHUP"),
                    _ = c.cancelled() => return,
                }
            }
        });
        tasks.spawn(self.tls.clone().watch_files(WATCH_EVERY, cancel.clone()));
        for bound in self.listeners {
            println!("{label} listening on https://{}", bound.addr);
            let (app, tls, cancel) = (app.clone(), self.tls.clone(), cancel.clone());
            tasks.spawn(async move {
                if let Err(e) = shoal_api::serve_router_tls(bound.socket, app, tls, cancel).await {
                    tracing::error!(error = %e, addr = %bound.addr, "HTTPS API failed");
                }
            });
        }
        Ok(())
    }
}

/// How a client of a registry speaks TLS, with Consul's CLI flags and
/// variables (`shoal agent`, `shoal proxy` and the command-line client).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientTlsArgs {
    /// CA certificate (PEM) an https registry's certificate must chain to
    /// (default: the built-in web roots).
    #[arg(long, env = "CONSUL_CACERT", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for registries that verify incoming
    /// connections; needs --client-key.
    #[arg(long, env = "CONSUL_CLIENT_CERT", value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "CONSUL_CLIENT_KEY", value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// A registry address without a scheme (host:port) means https.
    #[arg(long, env = "CONSUL_HTTP_SSL")]
    pub http_ssl: bool,
}

impl ClientTlsArgs {
    /// The TLS settings of a [`shoal_api::RemoteConfig`].
    pub fn client_tls(&self) -> ClientTls {
        ClientTls {
            ca_file: self.ca_file.clone(),
            cert_file: self.client_cert.clone(),
            key_file: self.client_key.clone(),
            https: self.http_ssl,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(flags: &[&str]) -> HttpsArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            https: HttpsArgs,
        }
        let mut all = vec!["shoal"];
        all.extend_from_slice(flags);
        <Cli as clap::Parser>::try_parse_from(all).unwrap().https
    }

    #[test]
    fn flag_mistakes_are_named() {
        let cases: [(&[&str], &str); 5] = [
            (
                &["--https-addr", "127.0.0.1:0"],
                "needs --tls-cert FILE and --tls-key FILE",
            ),
            (
                &["--https-addr", "127.0.0.1:0", "--tls-cert", "c.pem"],
                "needs --tls-cert",
            ),
            (
                &[
                    "--https-addr",
                    "127.0.0.1:0",
                    "--tls-cert",
                    "c",
                    "--tls-key",
                    "k",
                    "--tls-verify-incoming",
                ],
                "--tls-verify-incoming needs --tls-ca",
            ),
            (
                &["--tls-cert", "c.pem"],
                "--tls-cert is for the HTTPS API: give --https-addr",
            ),
            (
                &["--tls-verify-incoming"],
                "--tls-verify-incoming is for the HTTPS API",
            ),
        ];
        for (flags, want) in cases {
            let msg = format!("{:#}", args(flags).files().unwrap_err());
            assert!(msg.contains(want), "{flags:?}: {msg}");
        }
    }

    #[test]
    fn complete_flags_make_the_files_and_none_make_nothing() {
        assert_eq!(args(&[]).files().unwrap(), None);
        let files = args(&[
            "--https-addr",
            "127.0.0.1:0",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-ca",
            "ca.pem",
            "--tls-verify-incoming",
        ])
        .files()
        .unwrap()
        .unwrap();
        assert_eq!(files.cert, PathBuf::from("c.pem"));
        assert_eq!(files.ca, Some(PathBuf::from("ca.pem")));
        assert!(files.verify_incoming);
    }

    #[test]
    fn a_missing_certificate_fails_naming_the_file() {
        let msg = format!(
            "{:#}",
            args(&[
                "--https-addr",
                "127.0.0.1:0",
                "--tls-cert",
                "/no/such/c.pem",
                "--tls-key",
                "/no/k.pem"
            ])
            .load()
            .unwrap_err()
        );
        assert!(msg.contains("/no/such/c.pem"), "{msg}");
    }
}
