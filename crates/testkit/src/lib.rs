//! Test fixtures for shoal (a dev-dependency only): start a server on
//! 127.0.0.1 port 0, in-process ([`TestServer`]) or as a child process of
//! the real binary ([`ServerProcess`]), and wait for conditions with
//! [`assert_eventually!`].
#![forbid(unsafe_code)]

mod etcd;
mod process;
pub mod store;

pub use etcd::{EtcdCluster, EtcdOptions, EtcdTls, TestCerts};
pub use process::{run_to_exit, ServerProcess};

use shoal_api::{ApiConfig, ApiState};
use shoal_catalog::{RedbStore, Registry};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A shoal API server for a test: inside the test process, or, when the
/// suites run on etcd (see [`store`]), a `shoal server --store etcd`
/// child process with the same node name and address.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The catalog behind it (in-process only): see [`TestServer::registry`].
    registry: Option<Arc<Registry>>,
    /// Identity the API reports.
    pub config: Arc<ApiConfig>,
    cancel: CancellationToken,
    _dir: Option<tempfile::TempDir>,
    _process: Option<ServerProcess>,
}

impl TestServer {
    /// An in-memory server with node name `test-node` (on etcd, a
    /// `shoal server` process on a fresh prefix, when the suites run there).
    pub async fn start() -> TestServer {
        if store::on_etcd() {
            return Self::start_process();
        }
        Self::start_with(Registry::in_memory(), None).await
    }

    /// The catalog behind the server, for direct inspection. Panics when
    /// the server is a process (the suites on etcd): a test that reads it
    /// runs on the embedded store only.
    pub fn registry(&self) -> &Arc<Registry> {
        self.registry.as_ref().expect(
            "this test reads the in-process registry: it cannot run with SHOAL_TEST_STORE=etcd",
        )
    }

    fn start_process() -> TestServer {
        let bin = shoal_binary();
        let process = ServerProcess::start(&bin, &["--in-memory", "--node-name", "test-node"]);
        let addr: SocketAddr = process
            .url
            .trim_start_matches("http://")
            .parse()
            .expect("the server's address");
        TestServer {
            addr,
            url: process.url.clone(),
            registry: None,
            config: Arc::new(test_config()),
            cancel: CancellationToken::new(),
            _dir: None,
            _process: Some(process),
        }
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
        let config = Arc::new(test_config());
        shoal_api::register_local_node(&registry, &config)
            .await
            .expect("register local node");
        let cancel = CancellationToken::new();
        let state = ApiState::new(registry.clone(), config.clone());
        tokio::spawn(shoal_api::serve(listener, state, cancel.clone()));
        TestServer {
            addr,
            url: format!("http://{addr}"),
            registry: Some(registry),
            config,
            cancel,
            _dir: dir,
            _process: None,
        }
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }
}

/// The identity every test server reports.
fn test_config() -> ApiConfig {
    ApiConfig {
        node_name: "test-node".into(),
        node_id: "00000000-0000-4000-8000-000000000001".into(),
        datacenter: "dc1".into(),
        node_address: "127.0.0.1".into(),
        server: true,
    }
}

/// The `shoal` binary beside the running test (`target/debug/deps/T` ->
/// `target/debug/shoal`), or `SHOAL_TEST_BIN`.
fn shoal_binary() -> std::path::PathBuf {
    if let Ok(bin) = std::env::var("SHOAL_TEST_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("shoal"))
        .expect("the test runs from target/*/deps");
    assert!(
        bin.is_file(),
        "no shoal binary at {} (build it, or set SHOAL_TEST_BIN)",
        bin.display()
    );
    bin
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
