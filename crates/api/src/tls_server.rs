//! HTTPS for the API: the listeners' certificate (reloaded without a
//! restart) and the TLS handshake in front of the same HTTP/1.1 server
//! plain connections get ([`crate::http1`]).
//!
//! A reload swaps the whole rustls configuration: new connections get the
//! new certificate (and client CA), connections already open keep the one
//! they were made with. A reload that fails keeps the previous
//! configuration, so a half-written rotation never takes HTTPS down.

use crate::http1::{self, Conn};
use crate::tls::{provider, read_certs, read_key, read_roots, TlsError, TlsResult};
use crate::transport::TlsTransport;
use arc_swap::ArcSwap;
use axum::Router;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// A TLS handshake must be complete within this time (a client that
/// connects and says nothing holds a task no longer than that).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the HTTPS listeners' certificate, key and client CA are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The server's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// CAs that sign client certificates (PEM); needed by `verify_incoming`.
    pub ca: Option<PathBuf>,
    /// Whether every client must present a certificate signed by `ca`
    /// (Consul's `verify_incoming`).
    pub verify_incoming: bool,
}

/// A file's identity at one moment: changed when any part differs.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

impl ServerTlsFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }

    fn stamps(&self) -> Vec<Stamp> {
        self.paths().map(stamp).collect()
    }

    /// Reads the files into a server configuration: TLS 1.2 and 1.3 with
    /// rustls's safe default suites, ALPN http/1.1 (and 1.0), and client
    /// certificates required when `verify_incoming`.
    pub fn load(&self) -> TlsResult<ServerConfig> {
        if self.verify_incoming && self.ca.is_none() {
            return Err(TlsError::Config(
                "verifying incoming client certificates needs the CA that signs them (--tls-ca)"
                    .into(),
            ));
        }
        let certs = read_certs("certificate", &self.cert)?;
        let key = read_key("key", &self.key)?;
        let roots = self
            .ca
            .as_deref()
            .map(|ca| read_roots("CA file", ca))
            .transpose()?;
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(format!("TLS versions: {e}")))?;
        let builder = match roots {
            Some(roots) if self.verify_incoming => {
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| TlsError::Config(format!("client certificate verifier: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            TlsError::Config(format!(
                "key {} and certificate {} are no pair: {e}",
                self.key.display(),
                self.cert.display()
            ))
        })?;
        // http/1.1 preferred; http/1.0 too, as the server speaks it (a
        // client that offers only that is otherwise refused by rustls).
        config.alpn_protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
        Ok(config)
    }
}

/// The HTTPS listeners' current configuration, reloadable.
pub struct ServerTls {
    files: ServerTlsFiles,
    current: ArcSwap<ServerConfig>,
    /// The files' stamps when they were last read (whether or not that
    /// read made a configuration): what the watcher compares against.
    seen: Mutex<Vec<Stamp>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the files once; a missing or bad file fails here, named.
    pub fn load(files: ServerTlsFiles) -> TlsResult<Arc<Self>> {
        let seen = files.stamps();
        let config = files.load()?;
        Ok(Arc::new(ServerTls {
            files,
            current: ArcSwap::from_pointee(config),
            seen: Mutex::new(seen),
        }))
    }

    /// The files this configuration comes from.
    pub fn files(&self) -> &ServerTlsFiles {
        &self.files
    }

    /// Reads the files again and, when they make a configuration, serves
    /// it to new connections. On error the previous one stays.
    pub fn reload(&self) -> TlsResult<()> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        // Stamped before reading: a write after the read is a new change.
        *seen = self.files.stamps();
        let config = self.files.load()?;
        self.current.store(Arc::new(config));
        Ok(())
    }

    /// [`Self::reload`], logged: `why` says what asked for it.
    pub fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(()) => tracing::info!(
                cert = %self.files.cert.display(),
                why,
                "HTTPS: certificate reloaded; new connections get it"
            ),
            Err(e) => tracing::error!(
                error = %e,
                why,
                "HTTPS: certificate reload failed; still serving the previous certificate"
            ),
        }
    }

    /// Whether any file changed since it was last read.
    fn changed(&self) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        *seen != self.files.stamps()
    }

    /// Reloads whenever a file's modification time, size or inode
    /// changes (checked every `every`), until `cancel` fires.
    pub async fn watch_files(self: Arc<Self>, every: Duration, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = cancel.cancelled() => return,
            }
            if self.changed() {
                self.reload_logged("a file changed");
            }
        }
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }
}

/// Serves `app` over TLS on `listener` until `cancel` fires, with the same
/// HTTP/1.1 server and shutdown as [`http1::serve`]; each connection first
/// completes its handshake (within [`HANDSHAKE_TIMEOUT`]) with the
/// configuration current when it was accepted.
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    tls: Arc<ServerTls>,
    cancel: CancellationToken,
    grace: Duration,
) -> io::Result<()> {
    let conn_cancel = cancel.clone();
    http1::accept_loop(listener, cancel, grace, move |stream, peer| {
        let (acceptor, app, cancel) = (tls.acceptor(), app.clone(), conn_cancel.clone());
        async move {
            if let Some(stream) = handshake(acceptor, stream, peer, &cancel).await {
                Conn::new(TlsTransport::new(stream), peer, app, cancel)
                    .run()
                    .await;
            }
        }
    })
    .await
}

/// The server side of a handshake; `None` (logged) when it fails, times
/// out or shutdown starts first. Only this connection is affected.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    cancel: &CancellationToken,
) -> Option<TlsStream<TcpStream>> {
    let done = tokio::select! {
        done = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => done,
        _ = cancel.cancelled() => return None,
    };
    match done {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::info!(target: "shoal::api", client = %peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(target: "shoal::api", client = %peer,
                "TLS handshake not complete within {}s", HANDSHAKE_TIMEOUT.as_secs());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_incoming_without_a_ca_is_refused_before_any_file_is_read() {
        let files = ServerTlsFiles {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
            ca: None,
            verify_incoming: true,
        };
        let msg = files.load().unwrap_err().to_string();
        assert!(msg.contains("--tls-ca"), "{msg}");
    }

    #[test]
    fn a_missing_certificate_is_named() {
        let files = ServerTlsFiles {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
            ca: None,
            verify_incoming: false,
        };
        let msg = ServerTls::load(files).err().unwrap().to_string();
        assert!(
            msg.contains("cannot read certificate /nonexistent/cert.pem"),
            "{msg}"
        );
    }
}
