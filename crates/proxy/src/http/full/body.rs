//! The bodies the full path passes on, watched for the request rules: a
//! client's request body (did the client send it all, or break its
//! framing: a client fault), and an instance's answer body (did it end
//! where its framing said: if not, a failure of the instance).

use super::pool::UpstreamBody;
use crate::instance::{Instance, InstanceState};
use crate::request::outcome::{answer_ended, AnswerEnd, InFlight};
use crate::table::Upstream;
use crate::Shared;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::watch;

/// What became of a client's request body, seen from the exchange.
#[derive(Clone)]
pub struct BodySignal {
    sent: watch::Receiver<bool>,
    fault: Arc<Mutex<Option<String>>>,
}

impl BodySignal {
    /// Completes once the whole body went out (or broke off).
    pub async fn sent(&self) {
        let mut sent = self.sent.clone();
        let _ = sent.wait_for(|done| *done).await;
    }

    /// The client's framing error, if its body broke.
    pub fn client_fault(&self) -> Option<String> {
        self.fault.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// An error with its causes (hyper's own words say only "error reading a
/// body"; the framing watch's reason is its cause).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A client's request body on its way upstream.
struct ClientBody {
    inner: Incoming,
    sent: watch::Sender<bool>,
    fault: Arc<Mutex<Option<String>>>,
}

/// Wraps a client's request body: the body to send, and its signal.
pub fn client_body(inner: Incoming) -> (UpstreamBody, BodySignal) {
    let (sent, rx) = watch::channel(inner.is_end_stream());
    let fault = Arc::new(Mutex::new(None));
    let signal = BodySignal {
        sent: rx,
        fault: fault.clone(),
    };
    let body = ClientBody { inner, sent, fault };
    (body.boxed(), signal)
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Err(e))) => {
                *this.fault.lock().unwrap_or_else(|e| e.into_inner()) = Some(with_causes(e));
                this.sent.send_replace(true);
            }
            Poll::Ready(None) => {
                this.sent.send_replace(true);
            }
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => {
                this.sent.send_replace(true);
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Who an answer is reported for once it ends.
struct Report {
    shared: Arc<Shared>,
    upstream: Arc<Upstream>,
    inst: Instance,
    status: u16,
}

/// An upstream answer's body: holds its in-flight count and reports how
/// it ended (`crate::request::outcome::answer_ended`).
pub struct Tracked {
    inner: Incoming,
    report: Option<Report>,
    _in_flight: InFlight<Arc<InstanceState>>,
}

impl Tracked {
    /// The body of `inst`'s answer with `status`.
    pub fn new(
        inner: Incoming,
        shared: Arc<Shared>,
        upstream: Arc<Upstream>,
        inst: Instance,
        status: u16,
        in_flight: InFlight<Arc<InstanceState>>,
    ) -> Self {
        Tracked {
            inner,
            report: Some(Report {
                shared,
                upstream,
                inst,
                status,
            }),
            _in_flight: in_flight,
        }
    }

    /// Reports the answer's end (once).
    pub fn end(&mut self, end: AnswerEnd) {
        if let Some(r) = self.report.take() {
            answer_ended(&r.shared, &r.upstream, &r.inst, r.status, &end);
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let end = if self.inner.is_end_stream() {
            AnswerEnd::Complete
        } else {
            AnswerEnd::ClientGone
        };
        self.end(end);
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Err(e))) => this.end(AnswerEnd::Broken(e.to_string())),
            Poll::Ready(None) => this.end(AnswerEnd::Complete),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.end(AnswerEnd::Complete),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
