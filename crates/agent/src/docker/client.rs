//! A small Docker Engine API client: the five calls the registrator makes
//! (`/_ping`, `/containers/json`, `/containers/{id}/json`, `/events`),
//! one HTTP/1.1 connection per call over the daemon's unix socket or TCP.

use super::container::{Container, ContainerSummary, Event};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::AbortHandle;

/// The socket Docker listens on by default.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// API version asked for: 1.41 is Docker 20.10's, and every later daemon
/// still serves it.
const API: &str = "/v1.41";

/// Longest a non-streaming call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// An event object larger than this is not an event: the stream is broken.
const MAX_EVENT: usize = 1 << 20;

/// What can go wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// No daemon there, or no permission to use its socket.
    #[error("cannot connect to the Docker daemon at {endpoint}: {source}")]
    Connect {
        /// The daemon's address.
        endpoint: String,
        /// Why (`PermissionDenied`, `NotFound`, `ConnectionRefused`...).
        source: std::io::Error,
    },
    /// The connection failed mid-call, or the call timed out.
    #[error("Docker API call {path} failed: {0}", path = .1)]
    Http(String, String),
    /// The daemon answered with an error status.
    #[error("Docker API call {path} answered {status}: {body}")]
    Status {
        /// Path called.
        path: String,
        /// The status.
        status: StatusCode,
        /// The daemon's message.
        body: String,
    },
    /// The daemon's answer was not the JSON expected.
    #[error("Docker API call {0} returned unexpected JSON: {1}")]
    Json(String, String),
    /// The endpoint URL is not `unix://PATH`, a path, `tcp://` or `http://`.
    #[error(
        "unsupported Docker endpoint {0:?}: use unix:///path/to/docker.sock or tcp://host:port"
    )]
    BadEndpoint(String),
}

impl DockerError {
    /// Whether the daemon's socket refused us for lack of permission.
    pub fn permission_denied(&self) -> bool {
        matches!(self, DockerError::Connect { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied)
    }
}

type Result<T> = std::result::Result<T, DockerError>;

#[derive(Clone, Debug)]
enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

/// A client of one Docker daemon.
#[derive(Clone, Debug)]
pub struct DockerClient {
    endpoint: Endpoint,
    url: String,
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

impl DockerClient {
    /// A client of the daemon at `url`: `unix:///var/run/docker.sock`, a
    /// bare socket path, `tcp://host:2375` or `http://host:2375`.
    pub fn new(url: &str) -> Result<Self> {
        let endpoint = if let Some(path) = url.strip_prefix("unix://") {
            Endpoint::Unix(path.into())
        } else if url.starts_with('/') {
            Endpoint::Unix(url.into())
        } else if let Some(addr) = url
            .strip_prefix("tcp://")
            .or_else(|| url.strip_prefix("http://"))
        {
            Endpoint::Tcp(addr.trim_end_matches('/').to_string())
        } else {
            return Err(DockerError::BadEndpoint(url.to_string()));
        };
        Ok(DockerClient {
            endpoint,
            url: url.to_string(),
        })
    }

    /// The daemon's address as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn connect(&self) -> Result<Box<dyn Io>> {
        let conn = match &self.endpoint {
            Endpoint::Unix(path) => tokio::net::UnixStream::connect(path)
                .await
                .map(|s| Box::new(s) as Box<dyn Io>),
            Endpoint::Tcp(addr) => tokio::net::TcpStream::connect(addr.as_str())
                .await
                .map(|s| Box::new(s) as Box<dyn Io>),
        };
        conn.map_err(|source| DockerError::Connect {
            endpoint: self.url.clone(),
            source,
        })
    }

    /// Sends `GET path` on a new connection; returns the answer (status
    /// checked) and the task driving the connection.
    async fn get(&self, path: &str) -> Result<(Response<Incoming>, AbortHandle)> {
        let io = self.connect().await?;
        let http = |e: hyper::Error| DockerError::Http(e.to_string(), path.to_string());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(http)?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        })
        .abort_handle();
        let req = Request::get(format!("{API}{path}"))
            .header(hyper::header::HOST, "docker")
            .body(Empty::<Bytes>::new())
            .map_err(|e| DockerError::Http(e.to_string(), path.to_string()))?;
        let resp = sender.send_request(req).await.map_err(http)?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            driver.abort();
            return Err(DockerError::Status {
                path: path.to_string(),
                status,
                body: String::from_utf8_lossy(&body).trim().to_string(),
            });
        }
        Ok((resp, driver))
    }

    /// `GET path`, the whole body as JSON.
    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let call = async {
            let (resp, driver) = self.get(path).await?;
            let body = resp.into_body().collect().await;
            driver.abort();
            let body = body.map_err(|e| DockerError::Http(e.to_string(), path.to_string()))?;
            serde_json::from_slice(&body.to_bytes())
                .map_err(|e| DockerError::Json(path.to_string(), e.to_string()))
        };
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| {
                DockerError::Http(format!("no answer in {CALL_TIMEOUT:?}"), path.to_string())
            })?
    }

    /// `GET /_ping`: the daemon is there and answers.
    pub async fn ping(&self) -> Result<()> {
        let call = async {
            let (resp, driver) = self.get("/_ping").await?;
            let _ = resp.into_body().collect().await;
            driver.abort();
            Ok(())
        };
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| {
                DockerError::Http(format!("no answer in {CALL_TIMEOUT:?}"), "/_ping".into())
            })?
    }

    /// IDs of the running containers (paused ones included).
    pub async fn running(&self) -> Result<Vec<String>> {
        let list: Vec<ContainerSummary> = self.get_json("/containers/json").await?;
        Ok(list.into_iter().map(|c| c.id).collect())
    }

    /// A container's details; `None` if it no longer exists.
    pub async fn inspect(&self, id: &str) -> Result<Option<Container>> {
        match self.get_json(&format!("/containers/{id}/json")).await {
            Err(DockerError::Status { status, .. }) if status == StatusCode::NOT_FOUND => Ok(None),
            other => other.map(Some),
        }
    }

    /// Container and network events from `since` (Unix nanoseconds; the daemon replays
    /// those it still has) on, as they happen.
    pub async fn events(&self, since_nanos: Option<i64>) -> Result<EventStream> {
        // {"type":["container","network"]}: network connect/disconnect re-plan a container.
        let filters = "%7B%22type%22%3A%5B%22container%22%2C%22network%22%5D%7D";
        let path = match since_nanos {
            Some(n) => format!(
                "/events?filters={filters}&since={}.{:09}",
                n.div_euclid(1_000_000_000),
                n.rem_euclid(1_000_000_000)
            ),
            None => format!("/events?filters={filters}"),
        };
        let (resp, driver) = tokio::time::timeout(CALL_TIMEOUT, self.get(&path))
            .await
            .map_err(|_| {
                DockerError::Http(format!("no answer in {CALL_TIMEOUT:?}"), path.clone())
            })??;
        Ok(EventStream {
            body: resp.into_body(),
            buf: BytesMut::new(),
            driver,
        })
    }
}

/// The `/events` stream: one JSON object per line.
pub struct EventStream {
    body: Incoming,
    buf: BytesMut,
    driver: AbortHandle,
}

impl EventStream {
    /// The next event; `None` when the daemon closed the stream.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(event) = split_event(&mut self.buf) {
                return Some(event);
            }
            if self.buf.len() > MAX_EVENT {
                return Some(Err(DockerError::Json(
                    "/events".into(),
                    "event too large".into(),
                )));
            }
            match self.body.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Err(e) => return Some(Err(DockerError::Http(e.to_string(), "/events".into()))),
            }
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Takes the first complete line off `buf` and parses it as an event
/// (blank lines skipped).
pub(super) fn split_event(buf: &mut BytesMut) -> Option<Result<Event>> {
    loop {
        let nl = buf.iter().position(|&b| b == b'\n')?;
        let line = buf.split_to(nl + 1);
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        return Some(
            serde_json::from_slice(line)
                .map_err(|e| DockerError::Json("/events".into(), e.to_string())),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for (url, ok) in [
            ("unix:///var/run/docker.sock", true),
            ("/run/docker.sock", true),
            ("tcp://127.0.0.1:2375", true),
            ("http://127.0.0.1:2375/", true),
            ("npipe:////./pipe/docker_engine", false),
        ] {
            assert_eq!(DockerClient::new(url).is_ok(), ok, "{url}");
        }
    }

    #[test]
    fn events_are_split_on_lines_across_chunks() {
        let mut buf = BytesMut::from(
            &b"{\"Type\":\"container\",\"Action\":\"start\"}\n\n{\"Type\":\"con"[..],
        );
        let first = split_event(&mut buf).unwrap().unwrap();
        assert_eq!(first.action, "start");
        assert!(split_event(&mut buf).is_none());
        buf.extend_from_slice(b"tainer\",\"Action\":\"die\"}\n");
        assert_eq!(split_event(&mut buf).unwrap().unwrap().action, "die");
        buf.extend_from_slice(b"not json\n");
        assert!(split_event(&mut buf).unwrap().is_err());
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_connect_error() {
        let c = DockerClient::new("unix:///nonexistent/docker.sock").unwrap();
        let err = c.ping().await.unwrap_err();
        assert!(matches!(err, DockerError::Connect { .. }), "{err}");
        assert!(!err.permission_denied());
    }
}
