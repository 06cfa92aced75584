//! What an attempt on an instance came to, and what that means for the
//! instance: the one classification every path (plain and full HTTP/1,
//! TCP) uses. A client's fault (a malformed request body) is never held
//! against an instance; an instance's fault (no connection, no answer in
//! time, a malformed or truncated answer, a 5xx) counts toward ejection.

use crate::instance::{Instance, InstanceState};
use crate::table::Upstream;
use crate::Shared;
use std::borrow::Borrow;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Why an attempt got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nothing was sent (no connection, or the connection refused the
    /// request before a byte of it went out): always tried elsewhere.
    NotSent(String),
    /// The request went out but not one byte of an answer came back.
    NoAnswer(String),
    /// No answer byte within the per-attempt timeout.
    Timeout(String),
    /// The answer was malformed, or broke off.
    BadAnswer(String),
    /// The client's request itself was at fault (a malformed body).
    Client(String),
}

impl Failure {
    /// Whether this counts against the instance (errors, ejection).
    pub fn instance_fault(&self) -> bool {
        !matches!(self, Failure::Client(_))
    }

    /// Whether the request may go to another instance after this.
    pub fn may_retry(&self, replayable: bool) -> bool {
        match self {
            Failure::NotSent(_) => true,
            Failure::NoAnswer(_) | Failure::Timeout(_) => replayable,
            Failure::BadAnswer(_) | Failure::Client(_) => false,
        }
    }

    /// The failure's own words.
    pub fn reason(&self) -> &str {
        let (Failure::NotSent(r)
        | Failure::NoAnswer(r)
        | Failure::Timeout(r)
        | Failure::BadAnswer(r)
        | Failure::Client(r)) = self;
        r
    }
}

/// Whether a method may be sent twice (RFC 9110 9.2.2).
pub fn idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"PUT" | b"DELETE" | b"TRACE"
    )
}

/// An attempt on `inst` that failed: counted and shown to passive health
/// when it was the instance's fault.
pub fn attempt_failed(shared: &Shared, upstream: &Upstream, inst: &Instance, failure: &Failure) {
    if !failure.instance_fault() {
        return;
    }
    inst.state.stats.errors.fetch_add(1, Ordering::Relaxed);
    upstream.record_failure(inst, &shared.cfg.eject);
}

/// How an answer whose head arrived ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerEnd {
    /// Relayed to its end.
    Complete,
    /// The upstream broke it off or framed it wrong.
    Broken(String),
    /// The client went away first: says nothing about the instance.
    ClientGone,
}

/// An answer head with `status` arrived after `latency`.
pub fn answer_started(inst: &Instance, status: u16, latency: Duration) {
    inst.state.stats.record(status, latency);
}

/// The answer with `status` ended as `end`: a 5xx or a broken answer is
/// a failure of the instance, a complete other answer a success.
pub fn answer_ended(
    shared: &Shared,
    upstream: &Upstream,
    inst: &Instance,
    status: u16,
    end: &AnswerEnd,
) {
    match end {
        AnswerEnd::Broken(reason) => {
            tracing::warn!(service = %upstream.service, instance = %inst.id, address = %inst.addr, %reason, "upstream answer broke off; client connection closed");
            attempt_failed(shared, upstream, inst, &Failure::BadAnswer(reason.clone()));
        }
        _ if status >= 500 => upstream.record_failure(inst, &shared.cfg.eject),
        AnswerEnd::Complete => inst.state.record_success(),
        AnswerEnd::ClientGone => {}
    }
}

/// Counts a request as sent to an instance, and as in flight there until
/// this guard is dropped (when its answer is relayed).
pub struct InFlight<S: Borrow<InstanceState>>(S);

impl<S: Borrow<InstanceState>> InFlight<S> {
    /// A request goes to the instance whose state is `state`.
    pub fn start(state: S) -> Self {
        let s = state.borrow();
        s.stats.requests.fetch_add(1, Ordering::Relaxed);
        s.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(state)
    }
}

impl<S: Borrow<InstanceState>> Drop for InFlight<S> {
    fn drop(&mut self) {
        self.0.borrow().outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_may_be_retried_and_what_counts() {
        let cases = [
            // (failure, retried when replayable, when not, instance fault)
            (Failure::NotSent("x".into()), true, true, true),
            (Failure::NoAnswer("x".into()), true, false, true),
            (Failure::Timeout("x".into()), true, false, true),
            (Failure::BadAnswer("x".into()), false, false, true),
            (Failure::Client("x".into()), false, false, false),
        ];
        for (f, replayable, not, fault) in cases {
            assert_eq!(f.may_retry(true), replayable, "{f:?}");
            assert_eq!(f.may_retry(false), not, "{f:?}");
            assert_eq!(f.instance_fault(), fault, "{f:?}");
        }
    }

    #[test]
    fn idempotent_methods() {
        for (m, want) in [
            (&b"GET"[..], true),
            (b"PUT", true),
            (b"POST", false),
            (b"PATCH", false),
        ] {
            assert_eq!(idempotent(m), want);
        }
    }
}
