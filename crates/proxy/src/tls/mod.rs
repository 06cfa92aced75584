//! TLS at the proxy's edge and towards instances. Listeners terminate
//! TLS 1.2 and 1.3 with rustls (ring), offer ALPN `h2` and `http/1.1`,
//! and resume sessions by ticket and by session ID; the certificate for
//! a handshake is chosen by SNI from [`certs::CertStore`], which a KV
//! watch keeps current ([`watch_kv`]). Instances tagged `proto=https`
//! are reached through [`upstream`].

pub mod certs;
pub mod upstream;

use certs::{CertStore, KV_PREFIX};
use rustls::server::ServerSessionMemoryCache;
use rustls::ServerConfig;
use shoal_catalog::{Catalog, QueryOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// ALPN protocol IDs offered by TLS listeners, preferred first.
pub const ALPN_H2: &[u8] = b"h2";
/// HTTP/1.1's ALPN ID.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Sessions remembered for resumption by session ID (TLS 1.2 clients
/// without tickets); tickets need no memory on the proxy.
const SESSION_CACHE: usize = 16 * 1024;

/// The one crypto provider: ring, as the API's TLS uses.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS listener's configuration over `store`.
pub fn server_config(store: Arc<CertStore>) -> Result<Arc<ServerConfig>, String> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    cfg.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    cfg.ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| format!("TLS tickets: {e}"))?;
    cfg.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    Ok(Arc::new(cfg))
}

/// Keeps `store`'s KV certificates equal to what is under
/// `shoal/certs/` in `catalog`, with blocking queries (a write is served
/// to new handshakes as soon as the query returns), until `cancel`.
pub async fn watch_kv(catalog: Arc<dyn Catalog>, store: Arc<CertStore>, cancel: CancellationToken) {
    let mut index = 0;
    let mut failing = false;
    loop {
        let list = catalog.kv_list(
            KV_PREFIX,
            QueryOptions::blocking(index, Duration::from_secs(300)),
        );
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = list => r,
        };
        match result {
            Ok(found) => {
                if failing {
                    tracing::info!("proxy: reading KV certificates again");
                    failing = false;
                }
                // A store that went back (a restored snapshot) starts over.
                let changed = found.index != index;
                index = if found.index < index { 0 } else { found.index };
                if changed {
                    let entries = found.value.iter().map(|e| {
                        (
                            e.key.strip_prefix(KV_PREFIX).unwrap_or(&e.key),
                            e.value.as_ref(),
                        )
                    });
                    let taken = store.set_kv(entries);
                    tracing::debug!(certificates = taken, index, "proxy: KV certificates loaded");
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "proxy: cannot read KV certificates (retrying; the ones loaded stay)");
                    failing = true;
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}
