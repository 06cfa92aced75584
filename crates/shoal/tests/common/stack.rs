//! A registry, a proxy in this process, and `shoal hello` backends.
#![allow(dead_code)]

use reqwest::StatusCode;
use serde_json::{json, Value};
use shoal_proxy::{PortRoute, Proxy, ProxyConfig};
use shoal_testkit::{ServerProcess, TestServer};
use std::net::SocketAddr;
use std::path::Path;
use tokio_util::sync::CancellationToken;

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

/// Registry + proxy on 127.0.0.1 port 0.
pub struct Stack {
    pub registry: TestServer,
    pub proxy: Proxy,
    pub addr: SocketAddr,
    cancel: CancellationToken,
    http: reqwest::Client,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A `shoal hello` backend process.
pub struct Backend {
    pub process: ServerProcess,
    pub id: String,
    pub port: u16,
}

impl Backend {
    /// Requests this backend has answered so far (its own counter, read
    /// directly, not through the proxy; this read counts too).
    pub async fn requests(&self) -> u64 {
        let v: Value = reqwest::get(self.process.at("/json"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["requests"].as_u64().unwrap()
    }
}

/// Starts a hello backend (not registered).
pub fn hello(name: &str) -> Backend {
    let process = ServerProcess::start_role(
        bin(),
        &["hello", "--name", name, "--log-level", "warn"],
        "shoal hello",
    );
    let port: u16 = process.url.rsplit(':').next().unwrap().parse().unwrap();
    Backend {
        id: format!("{name}-{port}"),
        port,
        process,
    }
}

impl Stack {
    pub async fn start(cfg: ProxyConfig) -> Stack {
        Self::start_with_routes(cfg, &[]).await.0
    }

    /// Also serves each port route on its own port-0 listener; returns their addresses.
    pub async fn start_with_routes(
        cfg: ProxyConfig,
        routes: &[(&str, bool)],
    ) -> (Stack, Vec<SocketAddr>) {
        let registry = TestServer::start().await;
        let cancel = CancellationToken::new();
        let proxy = Proxy::start(registry.registry().clone(), cfg, cancel.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (p, c) = (proxy.clone(), cancel.clone());
        tokio::spawn(async move { p.serve_http(listener, c).await });
        let mut route_addrs = Vec::new();
        for (service, tcp) in routes {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let route = PortRoute {
                listen: l.local_addr().unwrap(),
                service: service.to_string(),
                tcp: *tcp,
                sni: false,
            };
            route_addrs.push(route.listen);
            let (p, c) = (proxy.clone(), cancel.clone());
            tokio::spawn(async move { p.serve_route(l, &route, c).await });
        }
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        (
            Stack {
                registry,
                proxy,
                addr,
                cancel,
                http,
            },
            route_addrs,
        )
    }

    /// Registers `backend` as an instance of `service` (no checks: passing).
    pub async fn register(&self, service: &str, id: &str, port: u16, tags: &[&str]) {
        let body =
            json!({"ID": id, "Name": service, "Address": "127.0.0.1", "Port": port, "Tags": tags});
        let r = self
            .http
            .put(self.registry.at("/v1/agent/service/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    pub async fn deregister(&self, id: &str) {
        let r = self
            .http
            .put(
                self.registry
                    .at(&format!("/v1/agent/service/deregister/{id}")),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    /// GET `path` through the proxy with `Host: host`.
    pub async fn get(&self, host: &str, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(format!("http://{}{path}", self.addr))
            .header("Host", host)
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// The instance ID that answered a GET through the proxy.
    pub async fn who(&self, host: &str, path: &str) -> String {
        let (status, body) = self.get(host, path).await;
        assert_eq!(status, StatusCode::OK, "{host}{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    /// Waits until the proxy has routed `host` to an instance at least once.
    pub async fn until_routed(&self, host: &str) {
        shoal_testkit::assert_eventually!(
            self.get(host, "/json").await.0 == StatusCode::OK,
            "{host} never became routable"
        );
    }

    /// Waits until a GET for `host` through the proxy answers `status`.
    pub async fn until_routed_status(&self, host: &str, status: u16) {
        shoal_testkit::assert_eventually!(
            self.get(host, "/").await.0.as_u16() == status,
            "{host} never answered {status}"
        );
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }
}

pub fn fast_queue() -> ProxyConfig {
    ProxyConfig {
        queue_timeout: std::time::Duration::from_millis(500),
        ..ProxyConfig::default()
    }
}
