//! The certificates a TLS listener serves: pairs of files given at start
//! (the first is the default) and PEM values under the catalog's KV
//! prefix `shoal/certs/` (key = host name, `*.example.com` for a
//! wildcard; value = certificate chain and private key), which a watch
//! keeps current so one KV write rotates a certificate for every proxy.
//! The choice for a handshake (by SNI) reads one immutable snapshot.

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where KV certificates live: `shoal/certs/<host>`.
pub const KV_PREFIX: &str = "shoal/certs/";

/// A certificate and key file, as given by `--tls-cert`/`--tls-key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A certificate chain and key from PEM text: the error says what is wrong.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    if chain.is_empty() {
        return Err("no CERTIFICATE block".into());
    }
    webpki::EndEntityCert::try_from(&chain[0])
        .map_err(|e| format!("the first certificate is not a usable X.509 certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY block".to_string(),
        e => format!("bad PEM: {e}"),
    })?;
    let key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("unsupported private key: {e}"))?;
    let certified = CertifiedKey::new(chain, key);
    certified
        .keys_match()
        .map_err(|_| "the private key does not belong to the certificate".to_string())?;
    Ok(Arc::new(certified))
}

/// Reads a pair of files; the error names the file at fault.
pub fn load_files(files: &CertFiles) -> Result<Arc<CertifiedKey>, String> {
    let read = |what: &str, path: &Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
    };
    let (cert, key) = (read("certificate", &files.cert)?, read("key", &files.key)?);
    certified_key(&cert, &key)
        .map_err(|e| format!("{} with {}: {e}", files.cert.display(), files.key.display()))
}

/// Whether `key`'s leaf certificate is valid for `name` (its SANs, with
/// wildcards as RFC 6125 has them).
fn valid_for(key: &CertifiedKey, name: &str) -> bool {
    let Ok(server) = ServerName::try_from(name) else {
        return false;
    };
    let Some(leaf) = key.cert.first() else {
        return false;
    };
    webpki::EndEntityCert::try_from(leaf)
        .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&server).is_ok())
}

/// The certificates at one moment.
#[derive(Default)]
struct Certs {
    /// From files, in the order given; the first is the default.
    files: Vec<Arc<CertifiedKey>>,
    /// From KV, by lowercase host name (`*.example.com` for a wildcard).
    kv: HashMap<String, Arc<CertifiedKey>>,
}

impl Certs {
    fn pick(&self, name: Option<&str>) -> Result<Arc<CertifiedKey>, ()> {
        let Some(name) = name else {
            return self.files.first().cloned().ok_or(());
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.kv.get(&name) {
            return Ok(key.clone());
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(key) = self.kv.get(&format!("*.{parent}")) {
                return Ok(key.clone());
            }
        }
        if let Some(key) = self.files.iter().find(|k| valid_for(k, &name)) {
            return Ok(key.clone());
        }
        Err(())
    }
}

/// The certificate store of a proxy's TLS listeners; also rustls's
/// resolver. A client naming a host no certificate is for gets the
/// default (the first file pair), or no handshake when there is none; it
/// is counted (`unknown_sni`) and logged (at most once a second, with
/// how many since).
pub struct CertStore {
    certs: ArcSwap<Certs>,
    /// Handshakes that named a host no certificate is for.
    unknown_sni: Arc<AtomicU64>,
    logged: Mutex<(Option<Instant>, u64)>,
    /// The KV values last read and what they parsed to, by host.
    kv_parsed: Mutex<KvParsed>,
}

type KvParsed = HashMap<String, (Vec<u8>, Option<Arc<CertifiedKey>>)>;

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore").finish_non_exhaustive()
    }
}

impl CertStore {
    /// A store with the certificates of `files`; fails naming the pair at
    /// fault. Unknown names are counted in `unknown_sni`.
    pub fn from_files(
        files: &[CertFiles],
        unknown_sni: Arc<AtomicU64>,
    ) -> Result<CertStore, String> {
        let files = files.iter().map(load_files).collect::<Result<_, _>>()?;
        Ok(CertStore {
            certs: ArcSwap::from_pointee(Certs {
                files,
                kv: HashMap::new(),
            }),
            unknown_sni,
            logged: Mutex::new((None, 0)),
            kv_parsed: Mutex::new(HashMap::new()),
        })
    }

    /// Replaces the KV certificates with `entries` (key without prefix,
    /// PEM value); a value that is not a certificate and key is skipped
    /// with a warning and the others still served. Returns how many were
    /// taken.
    pub fn set_kv<'a>(&self, entries: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> usize {
        let mut parsed = self.kv_parsed.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = HashMap::new();
        let mut kv = HashMap::new();
        for (host, pem) in entries {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            if host.is_empty() || host.contains('/') {
                continue;
            }
            // A value that did not change is not parsed (or warned of) again.
            let result = match parsed.remove(&host) {
                Some((raw, result)) if raw == pem => result,
                _ => {
                    let result = certified_key(pem, pem);
                    if let Err(e) = &result {
                        tracing::warn!(key = %format!("{KV_PREFIX}{host}"), error = %e, "proxy: KV certificate skipped");
                    }
                    result.ok()
                }
            };
            if let Some(key) = &result {
                kv.insert(host.clone(), key.clone());
            }
            next.insert(host, (pem.to_vec(), result));
        }
        *parsed = next;
        let taken = kv.len();
        let files = self.certs.load().files.clone();
        self.certs.store(Arc::new(Certs { files, kv }));
        taken
    }

    fn unknown(&self, name: &str) {
        let seen = self.unknown_sni.fetch_add(1, Ordering::Relaxed) + 1;
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        let due = logged.0.is_none_or(|at| at.elapsed().as_secs() >= 1);
        if due {
            let since = seen - logged.1;
            tracing::warn!(server_name = %name, handshakes = since, "proxy: TLS client asked for a host no certificate is for (served the default certificate, if any)");
            *logged = (Some(Instant::now()), seen);
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name();
        let certs = self.certs.load();
        match certs.pick(name) {
            Ok(key) => Some(key),
            Err(()) => {
                self.unknown(name.unwrap_or("(none)"));
                certs.files.first().cloned()
            }
        }
    }
}
