//! Test fixtures for shoal (a dev-dependency only): start a server on
//! 127.0.0.1 port 0, in-process ([`TestServer`]) or as a child process of
//! the real binary ([`ServerProcess`]), and wait for conditions with
//! [`assert_eventually!`].
#![forbid(unsafe_code)]

mod etcd;
mod process;

pub use etcd::{EtcdCluster, EtcdOptions, EtcdTls, TestCerts};
pub use process::{run_to_exit, ServerProcess};

use shoal_api::{ApiConfig, ApiState};
use shoal_catalog::{RedbStore, Registry};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A shoal API server running inside the test process.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The catalog behind it, for direct inspection.
    pub registry: Arc<Registry>,
    /// Identity the API reports.
    pub config: Arc<ApiConfig>,
    cancel: CancellationToken,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// An in-memory server with node name `test-node`.
    pub async fn start() -> TestServer {
        Self::start_with(Registry::in_memory(), None).await
    }

    /// A server on a redb store in a fresh temporary directory.
    pub async fn start_durable() -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RedbStore::open(dir.path()).expect("open redb store");
        let registry = Registry::open(Box::new(store)).expect("open registry");
        Self::start_with(registry, Some(dir)).await
    }

    async fn start_with(registry: Arc<Registry>, dir: Option<tempfile::TempDir>) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let config = Arc::new(ApiConfig {
            node_name: "test-node".into(),
            node_id: "00000000-0000-4000-8000-000000000001".into(),
            datacenter: "dc1".into(),
            node_address: "127.0.0.1".into(),
            server: true,
        });
        shoal_api::register_local_node(&registry, &config)
            .await
            .expect("register local node");
        let cancel = CancellationToken::new();
        let state = ApiState::new(registry.clone(), config.clone());
        tokio::spawn(shoal_api::serve(listener, state, cancel.clone()));
        TestServer {
            addr,
            url: format!("http://{addr}"),
            registry,
            config,
            cancel,
            _dir: dir,
        }
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Polls an (async) boolean expression until it holds, failing the test
/// with the message after `timeout` (default 10 s). The expression may use
/// `.await`. For behaviour, not timing: the bound only stops a hung test.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $($msg:tt)+) => {
        $crate::assert_eventually!(@with std::time::Duration::from_secs(10), $cond, $($msg)+)
    };
    (@with $timeout:expr, $cond:expr, $($msg:tt)+) => {{
        let deadline = std::time::Instant::now() + $timeout;
        loop {
            if async { $cond }.await {
                break;
            }
            if std::time::Instant::now() >= deadline {
                panic!("condition never held within {:?}: {}", $timeout, format!($($msg)+));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }};
}
