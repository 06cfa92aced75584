//! An open-loop client: requests leave on a fixed schedule (`rate` per
//! second) whatever the answers do, on kept-alive connections of one
//! pooled client, each a `GET /json` through the proxy whose answer names
//! the instance that served it. Bounded: `rate × duration` requests at
//! most, at most `max_in_flight` at once (a request that cannot leave on
//! time counts as failed), and each has the client's timeout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// How much load to offer.
#[derive(Clone, Copy)]
pub struct Plan {
    /// Requests per second.
    pub rate: f64,
    /// How long to send for.
    pub duration: Duration,
    /// Requests in flight at most.
    pub max_in_flight: usize,
    /// How long the last answers are awaited after the last send.
    pub grace: Duration,
}

/// A failed request.
pub struct Failure {
    /// When it was sent, from the start of the run.
    pub at: Duration,
    /// What went wrong.
    pub what: String,
}

/// What the run achieved.
#[derive(Default)]
pub struct Outcome {
    /// Requests the schedule called for.
    pub planned: u64,
    /// Answered 200 by an instance.
    pub ok: u64,
    /// Every failed request (non-200, transport error, timeout, not sent).
    pub failed: u64,
    /// The first failures, in the order they were recorded.
    pub failures: Vec<Failure>,
    /// Send → whole answer, of the successful requests.
    pub latencies: Vec<Duration>,
    /// Successful answers per instance ID.
    pub by_instance: BTreeMap<String, u64>,
    /// From the first send to the last answer.
    pub elapsed: Duration,
    /// From the first send to the last.
    pub sending: Duration,
}

/// Failures kept in detail.
const KEPT_FAILURES: usize = 20;

impl Outcome {
    fn record(&mut self, result: Result<(Duration, String), Failure>) {
        match result {
            Ok((latency, id)) => {
                self.ok += 1;
                self.latencies.push(latency);
                *self.by_instance.entry(id).or_default() += 1;
            }
            Err(f) => self.fail(f),
        }
    }

    fn fail(&mut self, failure: Failure) {
        self.failed += 1;
        if self.failures.len() < KEPT_FAILURES {
            self.failures.push(failure);
        }
    }

    /// Successful answers per second of sending.
    pub fn ok_rate(&self) -> f64 {
        self.ok as f64 / self.sending.as_secs_f64().max(1e-9)
    }
}

type Answer = Result<(Duration, String), Failure>;

/// Sends `GET url` with `Host: host` on the schedule of `plan`.
pub async fn run(client: reqwest::Client, url: String, host: String, plan: Plan) -> Outcome {
    let total = (plan.rate * plan.duration.as_secs_f64()).round() as u64;
    let mut out = Outcome {
        planned: total,
        ..Outcome::default()
    };
    let start = Instant::now();
    let due = |n: u64| start + Duration::from_secs_f64(n as f64 / plan.rate);
    let mut set: JoinSet<Answer> = JoinSet::new();
    let mut next = 0;
    while next < total {
        tokio::time::sleep_until(due(next).into()).await;
        let now = Instant::now();
        while next < total && due(next) <= now {
            if set.len() >= plan.max_in_flight {
                out.fail(Failure {
                    at: now - start,
                    what: format!("not sent: {} requests already in flight", set.len()),
                });
            } else {
                let (client, url, host) = (client.clone(), url.clone(), host.clone());
                set.spawn(one(client, url, host, start));
            }
            next += 1;
        }
        while let Some(done) = set.try_join_next() {
            out.record(joined(done, start));
        }
    }
    out.sending = start.elapsed();
    let deadline = tokio::time::Instant::now() + plan.grace;
    while let Ok(Some(done)) = tokio::time::timeout_at(deadline, set.join_next()).await {
        out.record(joined(done, start));
    }
    for _ in 0..set.len() {
        out.fail(Failure {
            at: start.elapsed(),
            what: "no answer before the end of the run".into(),
        });
    }
    set.abort_all();
    out.elapsed = start.elapsed();
    out
}

fn joined(done: Result<Answer, tokio::task::JoinError>, start: Instant) -> Answer {
    done.unwrap_or_else(|e| {
        Err(Failure {
            at: start.elapsed(),
            what: format!("request task failed: {e}"),
        })
    })
}

/// One request: its latency and the answering instance, or its failure.
async fn one(client: reqwest::Client, url: String, host: String, start: Instant) -> Answer {
    let sent = Instant::now();
    let fail = |what: String| Failure {
        at: sent - start,
        what,
    };
    let response = client
        .get(&url)
        .header("Host", host)
        .send()
        .await
        .map_err(|e| fail(format!("request failed: {}", chain(&e))))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| fail(format!("reading the answer: {}", chain(&e))))?;
    let latency = sent.elapsed();
    if status != reqwest::StatusCode::OK {
        let text = String::from_utf8_lossy(&body);
        return Err(fail(format!("HTTP {status}: {}", text.trim())));
    }
    let id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_string))
        .unwrap_or_else(|| "(no id)".into());
    Ok((latency, id))
}

/// An error with its causes: `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}
