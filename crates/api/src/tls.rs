//! TLS material from PEM files, shared by the API's HTTPS listeners
//! ([`crate::tls_server`]) and by [`crate::RemoteCatalog`]'s client side
//! ([`crate::tls_client`]): every failure names the file and what was
//! wrong with it, since that is what an operator has to fix.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What can go wrong setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file was read but holds nothing usable.
    #[error("{what} {} is unusable: {reason}", path.display())]
    Unusable {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The flags (or fields) do not make a TLS setup.
    #[error("{0}")]
    Config(String),
}

/// Result of TLS setup.
pub type TlsResult<T> = std::result::Result<T, TlsError>;

/// The one crypto provider: ring, the one reqwest's rustls-tls builds, so
/// the choice does not depend on which features another crate enabled.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> TlsResult<Vec<u8>> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn unusable(what: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::Unusable {
        what,
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Every certificate of a PEM file, in order (a chain: leaf first).
pub(crate) fn read_certs(
    what: &'static str,
    path: &Path,
) -> TlsResult<Vec<CertificateDer<'static>>> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unusable(what, path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(unusable(what, path, "no CERTIFICATE block in it"));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn read_key(what: &'static str, path: &Path) -> TlsResult<PrivateKeyDer<'static>> {
    let pem = read(what, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            unusable(what, path, "no PRIVATE KEY block in it")
        }
        e => unusable(what, path, format!("bad PEM: {e}")),
    })
}

/// The CA certificates of a PEM file, as trust anchors.
pub(crate) fn read_roots(what: &'static str, path: &Path) -> TlsResult<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(what, path)? {
        roots
            .add(cert)
            .map_err(|e| unusable(what, path, format!("not a CA certificate: {e}")))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_named_with_what_is_wrong() {
        let dir = std::env::temp_dir().join(format!("shoal-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").unwrap();
        let missing = dir.join("missing.pem");
        let cases: [(TlsResult<()>, &str); 4] = [
            (
                read_certs("certificate", &missing).map(drop),
                "cannot read certificate",
            ),
            (
                read_certs("certificate", &empty).map(drop),
                "no CERTIFICATE block",
            ),
            (read_key("key", &empty).map(drop), "no PRIVATE KEY block"),
            (
                read_roots("CA file", &empty).map(drop),
                "no CERTIFICATE block",
            ),
        ];
        for (got, want) in cases {
            let msg = got.unwrap_err().to_string();
            assert!(msg.contains(want), "{msg}");
            assert!(msg.contains(dir.to_str().unwrap()), "{msg} names no file");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
