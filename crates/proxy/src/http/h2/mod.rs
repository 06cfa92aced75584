//! HTTP/2 from clients: over TLS (ALPN `h2`) and in the clear with prior
//! knowledge (h2c, the connection preface on a plain listener). hyper's
//! h2 serves the connection; every stream is one request under the same
//! rules as HTTP/1.1 (`crate::http::full::forward::handle`: routing by
//! `:authority`, waiting, retries, ejection, stats, access log), sent on
//! to the instances over their own protocol (HTTP/1.1 pools, or HTTP/2 to
//! `proto=h2c`/`grpc` services). Limits: concurrent streams, the header
//! list size, pending and locally caused resets (h2's), the control
//! frame budget of [`guard`], and a connection with no open stream for
//! `h2_idle_timeout` is closed (GOAWAY, then drained).

pub mod guard;

use crate::config::DRAIN;
use crate::http::full::forward::{handle, ProxyBody};
use crate::Shared;
use guard::{Guarded, Meter};
use hyper::body::{Body, Frame, SizeHint};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// Streams a client may have open at once (nginx's and HAProxy's default
/// is 128 and 100).
pub const MAX_CONCURRENT_STREAMS: u32 = 128;

/// Streams a client may reset before the proxy accepted them, and streams
/// the proxy may reset for a client's errors, before the connection ends
/// with GOAWAY (h2's rapid-reset defences).
const MAX_PENDING_RESETS: usize = 32;
const MAX_LOCAL_ERROR_RESETS: usize = 256;

/// A PING when the connection was quiet this long; no answer within the
/// same time ends it (a client that went away without closing).
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// Serves one HTTP/2 connection whose next bytes are the client preface.
pub async fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    fixed: Option<Arc<str>>,
    https: bool,
    cancel: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = shared.cfg.clone();
    let counted = shared.clone();
    let meter = Meter::new(cfg.max_header_bytes);
    let stream = Guarded::new(stream, meter, move |abuse| {
        counted.stats.h2_abuse.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(client = %peer, reason = abuse.reason(), "proxy: HTTP/2 connection closed");
    });
    shared.stats.h2_connections.fetch_add(1, Ordering::Relaxed);
    let streams = Arc::new(OpenStreams::default());
    let counted = streams.clone();
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let (shared, fixed) = (shared.clone(), fixed.clone());
        let open = Open::new(counted.clone());
        async move {
            let resp = handle(shared, req, peer, fixed, https).await;
            Ok::<_, Infallible>(resp.map(|body| OpenBody { body, _open: open }))
        }
    });
    let header_list = u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX);
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(header_list)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS)
        .keep_alive_interval(KEEP_ALIVE)
        .keep_alive_timeout(KEEP_ALIVE)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let idle = cfg.h2_idle_timeout;
    // GOAWAY, then streams get `DRAIN` to finish; an idle connection has
    // none, and only the client's acknowledgement is waited for, briefly.
    let drain = tokio::select! {
        _ = conn.as_mut() => return,
        _ = cancel.cancelled() => DRAIN,
        _ = streams.idle_for(idle) => {
            tracing::debug!(client = %peer, ?idle, "proxy: idle HTTP/2 connection closed");
            IDLE_DRAIN
        }
    };
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(drain, conn).await;
}

/// How long an idle connection told to go away may take to acknowledge.
const IDLE_DRAIN: Duration = Duration::from_secs(1);

/// Streams open on one connection.
#[derive(Default)]
struct OpenStreams {
    open: AtomicUsize,
    /// Streams ever opened: tells a quiet spell from one a stream crossed.
    opened: AtomicU64,
    /// Signalled when the last open stream ends.
    quiet: tokio::sync::Notify,
}

impl OpenStreams {
    /// Completes once no stream has been open for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let ended = self.quiet.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.open.load(Ordering::Acquire) != 0 {
                ended.await;
                continue;
            }
            let opened = self.opened.load(Ordering::Acquire);
            tokio::time::sleep(idle).await;
            if self.open.load(Ordering::Acquire) == 0
                && self.opened.load(Ordering::Acquire) == opened
            {
                return;
            }
        }
    }
}

/// One open stream: from its request to the end of its answer's body.
struct Open(Arc<OpenStreams>);

impl Open {
    fn new(streams: Arc<OpenStreams>) -> Self {
        streams.opened.fetch_add(1, Ordering::AcqRel);
        streams.open.fetch_add(1, Ordering::AcqRel);
        Open(streams)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.quiet.notify_waiters();
        }
    }
}

/// An answer's body that keeps its stream counted as open until it is
/// sent (or dropped).
struct OpenBody {
    body: ProxyBody,
    _open: Open,
}

impl Body for OpenBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
