//! The loops that run one check: a probe every interval (HTTP, TCP), or a
//! TTL timer that turns the check critical when nobody refreshed it.

use super::probe::Probe;
use super::report::Reporter;
use super::schedule::Schedule;
use super::status::Thresholds;
use rand::Rng;
use shoal_catalog::{CheckDefinition, HealthStatus};
use std::time::Duration;
use tokio::time::{sleep, sleep_until, Instant};

/// Shortest interval a check runs at, as in Consul.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Timeout of a run when the definition gives none, as in Consul.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The interval a definition asks for, raised to the minimum.
pub(crate) fn interval_of(def: &CheckDefinition) -> Duration {
    def.interval.unwrap_or(MIN_INTERVAL).max(MIN_INTERVAL)
}

/// Runs a probe at once (at registration), then as its [`Schedule`] says:
/// quickly until it first answers, every interval after that.
pub(crate) async fn run_probe(
    probe: Box<dyn Probe>,
    def: &CheckDefinition,
    mut reporter: Reporter,
) {
    let timeout = def
        .timeout
        .filter(|t| !t.is_zero())
        .unwrap_or(DEFAULT_TIMEOUT);
    let mut thresholds = Thresholds::new(def);
    let mut schedule = Schedule::new(interval_of(def), Instant::now());
    loop {
        sleep_until(schedule.due()).await;
        let started = Instant::now();
        let outcome = match tokio::time::timeout(timeout, probe.run()).await {
            Ok(outcome) => outcome,
            Err(_) => probe.timed_out(timeout),
        };
        let answered = outcome.status != HealthStatus::Critical;
        reporter.registry.metrics().check_runs.inc();
        if let Some(status) = thresholds.observe(outcome.status) {
            // Boxed: a write's future is large and rare; thousands of
            // these loops should not each carry room for one.
            Box::pin(reporter.report(status, outcome.output)).await;
        }
        let phase = rand::thread_rng().gen_range(0.0..1.0);
        schedule.next(started, answered, phase, Instant::now());
    }
}

/// What a TTL check's output says once it expired, as in Consul.
pub(crate) fn expired_output(last: &str) -> String {
    if last.is_empty() {
        "TTL expired".to_string()
    } else {
        format!("TTL expired (last output before timeout follows): {last}")
    }
}

/// Turns the check critical whenever `ttl` passes without a refresh
/// (a heartbeat recorded by the pass/warn/fail/update endpoints).
pub(crate) async fn run_ttl(ttl: Duration, mut reporter: Reporter) {
    let started = Instant::now();
    let mut expired_at: Option<Option<std::time::Instant>> = None;
    loop {
        let last = reporter
            .registry
            .heartbeats()
            .last(&reporter.node, &reporter.check_id);
        let deadline = last.map_or(started, Instant::from_std) + ttl;
        if Instant::now() < deadline {
            sleep_until(deadline).await;
            continue;
        }
        if expired_at != Some(last) {
            reporter.registry.metrics().check_runs.inc();
            if let Some(output) = reporter.current_output() {
                // Boxed, as in `run_probe`: 10,000 idle TTL loops should
                // not each carry room for a write's future.
                Box::pin(reporter.report(HealthStatus::Critical, expired_output(&output))).await;
            }
            expired_at = Some(last);
        }
        // Expired: look again within one TTL, which finds any refresh in
        // time to expire it exactly one TTL after it.
        sleep(ttl).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_have_a_floor() {
        let cases = [
            (None, MIN_INTERVAL),
            (Some(Duration::from_millis(10)), MIN_INTERVAL),
            (Some(Duration::from_secs(30)), Duration::from_secs(30)),
        ];
        for (asked, want) in cases {
            let def = CheckDefinition {
                interval: asked,
                ..Default::default()
            };
            assert_eq!(interval_of(&def), want, "{asked:?}");
        }
    }

    #[test]
    fn expired_output_keeps_the_last_words() {
        assert_eq!(expired_output(""), "TTL expired");
        assert_eq!(
            expired_output("all good"),
            "TTL expired (last output before timeout follows): all good"
        );
    }
}
