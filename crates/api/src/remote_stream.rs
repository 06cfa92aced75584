//! `RemoteCatalog::subscribe`: follows a shoal server's `/v1/shoal/stream`
//! over one connection, reconnecting (to the next server too) and resuming
//! from the last `Synced` index after a drop; a server that has no such
//! endpoint (a real Consul, or a shoal server with `--no-stream`) is
//! followed with Consul's blocking queries instead ([`crate::remote_fallback`]).

use crate::remote::RemoteCatalog;
use reqwest::{Method, StatusCode};
use shoal_catalog::{Error, Result, StreamEvent, StreamRequest};
use std::time::Duration;
use tokio::sync::mpsc;

/// A connection that sends nothing (not even a heartbeat) for this long is
/// taken as dead and replaced.
const SILENCE: Duration = Duration::from_secs(35);
/// Longest line accepted (one service's instances): a bound, not a goal.
const MAX_LINE: usize = 256 * 1024 * 1024;

type Tx = mpsc::Sender<Result<StreamEvent>>;

/// How one connection ended.
enum Ended {
    /// The consumer is gone.
    Consumer,
    /// The server has no stream endpoint.
    NoStream,
    /// The server closed the stream (restart, shutdown).
    Server,
}

/// Runs a subscription until its receiver is dropped.
pub(crate) async fn run(client: RemoteCatalog, mut req: StreamRequest, tx: Tx) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let ended = tokio::select! {
            r = follow(&client, &mut req, &tx, &mut backoff) => r,
            _ = tx.closed() => return,
        };
        match ended {
            Ok(Ended::Consumer) => return,
            Ok(Ended::NoStream) => {
                tracing::info!(server = %client.base_url(), "registry has no change stream; following it with blocking queries");
                return crate::remote_fallback::run(client, req, tx).await;
            }
            Ok(Ended::Server) => {}
            Err(e) => {
                tracing::debug!(error = %e, "change stream: reconnecting");
                if tx.send(Err(e)).await.is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = tx.closed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection: sends its events on, keeps `req.index` at the last
/// `Synced` seen, so the next connection resumes there.
async fn follow(
    client: &RemoteCatalog,
    req: &mut StreamRequest,
    tx: &Tx,
    backoff: &mut Duration,
) -> Result<Ended> {
    if client.no_stream() {
        return Ok(Ended::NoStream);
    }
    let mut params = vec![("index", req.index.to_string())];
    if let Some(prefix) = &req.kv_prefix {
        params.push(("kv", prefix.clone()));
    }
    if req.delta {
        params.push(("delta", "1".into()));
    }
    let rb = client
        .request(Method::GET, "/v1/shoal/stream")
        .query(&params)
        // The stream has no end; silence is what ends it (below).
        .timeout(Duration::from_secs(24 * 3600));
    let mut resp = client.send(rb, "GET /v1/shoal/stream").await?;
    if resp.status() == StatusCode::NOT_FOUND {
        return Ok(Ended::NoStream);
    }
    let what = || format!("change stream from {}", client.base_url());
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let chunk = tokio::time::timeout(SILENCE, resp.chunk())
            .await
            .map_err(|_| Error::Remote(format!("{}: silent for {SILENCE:?}", what())))?
            .map_err(|e| Error::Remote(format!("{}: {e}", what())))?;
        let Some(chunk) = chunk else {
            return Ok(Ended::Server);
        };
        buf.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = buf[start..].iter().position(|b| *b == b'\n') {
            let line = &buf[start..start + end];
            start += end + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let event: StreamEvent = serde_json::from_slice(line)
                .map_err(|e| Error::Remote(format!("{}: bad event: {e}", what())))?;
            if let StreamEvent::Synced { index } = &event {
                req.index = *index;
                *backoff = Duration::from_millis(50);
            }
            if tx.send(Ok(event)).await.is_err() {
                return Ok(Ended::Consumer);
            }
        }
        buf.drain(..start);
        if buf.len() > MAX_LINE {
            return Err(Error::Remote(format!(
                "{}: an event longer than {MAX_LINE} bytes",
                what()
            )));
        }
    }
}
