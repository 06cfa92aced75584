//! The client side of TLS for every connection shoal makes to an API
//! server ([`crate::RemoteCatalog`] and the command-line client): which
//! CA to trust, which certificate to present, and what a failed handshake
//! means in words an operator can act on.

use crate::tls::{provider, read_certs, read_key, read_roots, TlsError, TlsResult};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
use std::path::PathBuf;

/// How a client trusts an https server and proves who it is (Consul's
/// `CONSUL_CACERT`, `CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`,
/// `CONSUL_HTTP_SSL`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// CA certificates (PEM) the server's certificate must chain to,
    /// instead of the built-in web roots: what a private CA needs.
    pub ca_file: Option<PathBuf>,
    /// A certificate (PEM) to present, for servers that verify incoming
    /// connections; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// Whether an address without a scheme (`host:port`) means https.
    pub https: bool,
}

impl ClientTls {
    /// Whether nothing is configured beyond the defaults (web roots, no
    /// client certificate).
    fn is_default(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }

    /// The scheme a bare `host:port` gets.
    pub fn default_scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// The rustls configuration these settings make: TLS 1.2 and 1.3,
    /// ALPN http/1.1, the CA file's roots (or the built-in web roots).
    pub fn rustls_config(&self) -> TlsResult<ClientConfig> {
        let roots = match &self.ca_file {
            Some(ca) => read_roots("CA file", ca)?,
            None => {
                let mut roots = RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                roots
            }
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(format!("TLS versions: {e}")))?
            .with_root_certificates(roots);
        let mut config = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = read_certs("client certificate", cert)?;
                let key_der = read_key("client key", key)?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    TlsError::Config(format!(
                        "client key {} and certificate {} are no pair: {e}",
                        key.display(),
                        cert.display()
                    ))
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(TlsError::Config(
                    "a client certificate needs its key (--client-key, CONSUL_CLIENT_KEY)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(TlsError::Config(
                    "a client key needs its certificate (--client-cert, CONSUL_CLIENT_CERT)".into(),
                ))
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// `builder` set up to speak TLS this way; unchanged when nothing is
    /// configured (reqwest's own rustls setup has the same defaults).
    pub fn apply(&self, builder: reqwest::ClientBuilder) -> TlsResult<reqwest::ClientBuilder> {
        if self.is_default() {
            return Ok(builder);
        }
        Ok(builder.use_preconfigured_tls(self.rustls_config()?))
    }
}

/// What a TLS failure somewhere in `e`'s chain of causes means, in words
/// that say what to check; `None` when the chain holds no TLS failure.
pub fn explain(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    find_rustls(e).and_then(explain_rustls)
}

/// The rustls error in `e`'s causes, looking inside I/O errors too: they
/// wrap it (hyper-rustls wraps tokio-rustls's I/O error in another), and
/// an I/O error's `source` skips what it wraps.
fn find_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        if let Some(tls) = find_rustls(inner) {
            return Some(tls);
        }
    }
    e.source().and_then(find_rustls)
}

fn explain_rustls(e: &rustls::Error) -> Option<&'static str> {
    use rustls::Error as E;
    Some(match e {
        E::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "unknown CA: the server's certificate is not signed by a CA this client trusts \
             (give the CA with --ca-file or CONSUL_CACERT)"
        }
        E::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "expired: the server's certificate is past its end date",
        E::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "not yet valid: the server's certificate starts later (check the clocks)",
        E::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "name mismatch: the server's certificate does not name the host or IP of the URL",
        E::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired,
        ) => {
            "client certificate refused: the server wants one signed by a CA it trusts \
             (--client-cert and --client-key)"
        }
        E::InvalidCertificate(_) => "the server's certificate is invalid",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_a_client_identity_is_refused() {
        let cert_only = ClientTls {
            cert_file: Some("/x/cert.pem".into()),
            ..Default::default()
        };
        let key_only = ClientTls {
            key_file: Some("/x/key.pem".into()),
            ..Default::default()
        };
        for (tls, want) in [(cert_only, "--client-key"), (key_only, "--client-cert")] {
            let msg = tls.rustls_config().unwrap_err().to_string();
            assert!(msg.contains(want), "{msg}");
        }
    }

    #[test]
    fn tls_failures_are_explained_through_io_errors() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let wrapped = std::io::Error::new(std::io::ErrorKind::InvalidData, unknown);
        // As hyper-rustls hands it on: an I/O error in an I/O error.
        let twice = std::io::Error::other(wrapped);
        assert!(explain(&twice).unwrap().starts_with("unknown CA"));
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert!(explain(&name).unwrap().starts_with("name mismatch"));
        let plain = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(explain(&plain), None);
    }

    #[test]
    fn a_bare_address_gets_https_when_asked() {
        let tls = ClientTls {
            https: true,
            ..Default::default()
        };
        assert_eq!(tls.default_scheme(), "https");
        assert_eq!(ClientTls::default().default_scheme(), "http");
    }
}
