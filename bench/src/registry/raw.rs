//! A deliberately thin HTTP/1.1 client for the watchers: one kept-alive
//! socket each, a fixed GET, and just enough parsing to find the status,
//! `X-Consul-Index` and the end of the body. With 1,000 watchers on a
//! 2-core machine a full client library spends more CPU receiving the
//! answers than the server spends sending them, which would measure the
//! client; this keeps the instrument light (as wrk does). Also the
//! writers of `scale`'s DNS-under-writes figure (fixed PUTs).

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One kept-alive connection.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// What a watcher needs from an answer.
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// `X-Consul-Index`, if present.
    pub index: Option<u64>,
}

impl RawConn {
    /// Connects to `base` (`http://host:port`).
    pub async fn connect(base: &str) -> Result<RawConn> {
        let addr = base.trim_start_matches("http://").trim_end_matches('/');
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            buf: Vec::with_capacity(8192),
        })
    }

    /// Sends `GET path`; the caller then awaits [`RawConn::answer`].
    pub async fn send(&mut self, path: &str) -> Result<(), String> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        self.stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("sending: {e}"))
    }

    /// Sends `PUT path` with `body`; the caller then awaits [`RawConn::answer`].
    pub async fn send_put(&mut self, path: &str, body: &[u8]) -> Result<(), String> {
        let mut request = format!(
            "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        self.stream
            .write_all(&request)
            .await
            .map_err(|e| format!("sending: {e}"))
    }

    /// Reads one whole answer (headers and a Content-Length body).
    pub async fn answer(&mut self) -> Result<Answer, String> {
        let head_end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos + 4;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("bad status line")?;
        let header = |name: &str| -> Option<u64> {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().parse().ok())?
            })
        };
        let length = header("content-length").ok_or("answer without Content-Length")? as usize;
        while self.buf.len() < head_end + length {
            self.fill().await?;
        }
        let index = header("x-consul-index");
        self.buf.drain(..head_end + length);
        Ok(Answer { status, index })
    }

    async fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 8192];
        let n = self
            .stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading: {e}"))?;
        if n == 0 {
            return Err("connection closed by the server".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
