//! Closed-loop write load: `clients` tasks share one keep-alive client and
//! each sends its next write as soon as the previous one is acknowledged,
//! until `count` writes were taken or the time limit passed.

use crate::stats::Summary;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much load to offer.
#[derive(Clone, Copy)]
pub struct Plan {
    /// Concurrent clients (each with at most one request in flight).
    pub clients: usize,
    /// Total writes to send at most.
    pub count: u64,
    /// No write is started after this long.
    pub limit: Duration,
}

/// What a load run achieved.
#[derive(Default)]
pub struct Outcome {
    /// Writes acknowledged with the expected answer.
    pub ok: u64,
    /// Writes that failed or were answered unexpectedly.
    pub errors: u64,
    /// From the first write sent to the last answer received.
    pub elapsed: Duration,
    /// Per-write latency (sent → acknowledged) of the successful writes.
    pub latencies: Vec<Duration>,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

impl Outcome {
    /// Successful writes per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// One line: count, time, rate, errors and latency percentiles.
    pub fn line(&self) -> String {
        let lat = Summary::of(&self.latencies).map_or("-".into(), |s| s.line());
        format!(
            "{} ok, {} errors in {:.2} s = {:.0}/s; latency {lat}",
            self.ok,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.rate()
        )
    }

    fn merge(&mut self, other: Outcome) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.latencies.extend(other.latencies);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Builds write number `i`, and says what body acknowledges it (`None`: any).
pub type MakeWrite = dyn Fn(u64) -> (reqwest::RequestBuilder, Option<&'static str>) + Send + Sync;

/// Runs `plan`, with `make` building each write.
pub async fn run(plan: Plan, make: Arc<MakeWrite>) -> Outcome {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + plan.limit;
    let workers: Vec<_> = (0..plan.clients)
        .map(|_| tokio::spawn(worker(plan.count, deadline, next.clone(), make.clone())))
        .collect();
    let mut total = Outcome::default();
    for w in workers {
        match w.await {
            Ok(out) => total.merge(out),
            Err(e) => total.first_error = total.first_error.or(Some(e.to_string())),
        }
    }
    total.elapsed = start.elapsed();
    total
}

/// One client: takes write numbers from `next` until `count` or `deadline`.
async fn worker(
    count: u64,
    deadline: Instant,
    next: Arc<AtomicU64>,
    make: Arc<MakeWrite>,
) -> Outcome {
    let mut out = Outcome::default();
    while Instant::now() < deadline {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= count {
            break;
        }
        let (request, expect) = make(i);
        let sent = Instant::now();
        match acknowledged(request, expect).await {
            Ok(()) => {
                out.ok += 1;
                out.latencies.push(sent.elapsed());
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e);
            }
        }
    }
    out
}

/// Sends the write; `Ok` when answered 2xx with the expected body.
async fn acknowledged(
    request: reqwest::RequestBuilder,
    expect: Option<&str>,
) -> Result<(), String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", body.trim()));
    }
    match expect {
        Some(want) if body.trim() != want => Err(format!("answered {body:?}, expected {want:?}")),
        _ => Ok(()),
    }
}
