//! The loops that run one check: a probe every interval (HTTP, TCP), or a
//! TTL timer that turns the check critical when nobody refreshed it.

use super::probe::Probe;
use super::report::Reporter;
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

/// Runs a probe at once, then every interval. The second run comes after
/// a random part of the interval, so checks registered together spread
/// over the interval instead of firing together forever after.
pub(crate) async fn run_probe(
    probe: Box<dyn Probe>,
    def: &CheckDefinition,
    mut reporter: Reporter,
) {
    let interval = interval_of(def);
    let timeout = def
        .timeout
        .filter(|t| !t.is_zero())
        .unwrap_or(DEFAULT_TIMEOUT);
    let mut thresholds = Thresholds::new(def);
    let mut next = Instant::now();
    let mut first = true;
    loop {
        sleep_until(next).await;
        let started = Instant::now();
        let outcome = match tokio::time::timeout(timeout, probe.run()).await {
            Ok(outcome) => outcome,
            Err(_) => probe.timed_out(timeout),
        };
        reporter.registry.metrics().check_runs.inc();
        if let Some(status) = thresholds.observe(outcome.status) {
            // Boxed: a write's future is large and rare; thousands of
            // these loops should not each carry room for one.
            Box::pin(reporter.report(status, outcome.output)).await;
        }
        next = if first {
            let phase = rand::thread_rng().gen_range(0.0..1.0);
            started + interval.mul_f64(phase)
        } else {
            next + interval
        };
        first = false;
        // A run that took longer than the interval: no burst to catch up.
        next = slot_of(next.max(Instant::now()));
    }
}

/// Later runs start on the next multiple of this since the process began,
/// so that the checks due within one slot start on one wake-up of the
/// thread (and their answers tend to arrive together): thousands of
/// checks cost far fewer wake-ups and context switches than runs spread
/// to the millisecond would.
pub(crate) const SLOT: Duration = Duration::from_millis(25);

/// `t` rounded up to the next slot boundary.
pub(crate) fn slot_of(t: Instant) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let since = t.saturating_duration_since(epoch).as_nanos();
    let slot = SLOT.as_nanos();
    let slots = since.div_ceil(slot);
    epoch + Duration::from_nanos((slots * slot) as u64)
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
                reporter
                    .report(HealthStatus::Critical, expired_output(&output))
                    .await;
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
    fn later_runs_start_on_slot_boundaries() {
        let base = slot_of(Instant::now());
        let cases = [
            (Duration::ZERO, Duration::ZERO),
            (Duration::from_millis(1), SLOT),
            (SLOT - Duration::from_nanos(1), SLOT),
            (SLOT, SLOT),
            (SLOT + Duration::from_millis(3), SLOT * 2),
        ];
        for (offset, want) in cases {
            assert_eq!(slot_of(base + offset) - base, want, "{offset:?}");
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
