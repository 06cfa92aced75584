//! When a probe (HTTP, TCP) runs next.
//!
//! Two phases. Until the check has answered once (a raw result that is not
//! critical), the app behind it is most likely still starting: it is
//! retried quickly, [`FIRST_RETRY`] after the last run and doubling up to
//! the interval, so a new instance becomes routable within moments of
//! answering instead of a random part of the interval later. Once it has
//! answered, it runs every interval, the first of those runs a random part
//! of the interval later (so checks registered together spread out) and
//! every run on a [`SLOT`] boundary (so the checks due together share one
//! wake-up of the thread). A check that never answers ends up at the
//! interval too, so a dead instance costs only a few extra runs.

use std::time::Duration;
use tokio::time::Instant;

/// The first quick retry of a check that has not answered yet.
pub(crate) const FIRST_RETRY: Duration = Duration::from_millis(50);

/// Runs at the interval start on the next multiple of this since the
/// process began, so that the checks due within one slot start on one
/// wake-up of the thread (and their answers tend to arrive together):
/// thousands of checks cost far fewer wake-ups and context switches than
/// runs spread to the millisecond would.
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

/// The run times of one probe; see the module doc.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    interval: Duration,
    /// The wait before the next quick retry, while the check never answered.
    retry: Option<Duration>,
    /// When the last run was due (the base of the next interval).
    due: Instant,
}

impl Schedule {
    /// A schedule whose first run is due at `first` (registration).
    pub fn new(interval: Duration, first: Instant) -> Self {
        Schedule {
            interval,
            retry: Some(FIRST_RETRY.min(interval)),
            due: first,
        }
    }

    /// When the next run is due.
    pub fn due(&self) -> Instant {
        self.due
    }

    /// Takes the result of the run that started at `started` (`answered`:
    /// its raw status was not critical) and returns when the next run is
    /// due. `phase` in `[0, 1)` picks the random part of the interval
    /// before the first regular run; `now` is when the run ended.
    pub fn next(&mut self, started: Instant, answered: bool, phase: f64, now: Instant) -> Instant {
        let next = match self.retry {
            Some(wait) if !answered && wait < self.interval => {
                self.retry = Some(wait.saturating_mul(2).min(self.interval));
                // Not on a slot: a starting app is waited for to the millisecond.
                self.due = (started + wait).max(now);
                return self.due;
            }
            Some(_) if answered => {
                self.retry = None;
                started + self.interval.mul_f64(phase)
            }
            // Never answered, retries already at the interval.
            Some(_) => started + self.interval,
            None => self.due + self.interval,
        };
        // A run that took longer than the interval: no burst to catch up.
        self.due = slot_of(next.max(now));
        self.due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// Runs `results` (answered or not; each run takes `took`) through a
    /// schedule and returns the due times, as offsets from the first run.
    fn dues(interval: Duration, took: Duration, results: &[bool]) -> Vec<Duration> {
        let base = slot_of(Instant::now()) + Duration::from_secs(1);
        let mut s = Schedule::new(interval, base);
        let mut out = Vec::new();
        for &answered in results {
            let started = s.due();
            s.next(started, answered, 0.5, started + took);
            out.push(s.due() - base);
        }
        out
    }

    #[test]
    fn unanswered_checks_retry_quickly_then_settle_at_the_interval() {
        let no = false;
        let yes = true;
        // (interval, run time, results, due times after each run)
        type Case = (Duration, Duration, Vec<bool>, Vec<Duration>);
        let cases: Vec<Case> = vec![
            // Answers at once: half the interval later (phase 0.5), then every interval.
            (
                MS(10_000),
                MS(1),
                vec![yes, yes, yes],
                vec![MS(5000), MS(15_000), MS(25_000)],
            ),
            // Starting app: 50, 100, 200, 400 ms later; then the regular phase.
            (
                MS(10_000),
                MS(1),
                vec![no, no, no, no, yes, yes],
                vec![MS(50), MS(150), MS(350), MS(750), MS(5750), MS(15_750)],
            ),
            // A check that never answers: the waits double up to the interval, then stay there.
            (
                MS(1000),
                MS(1),
                vec![no, no, no, no, no, no, no],
                vec![
                    MS(50),
                    MS(150),
                    MS(350),
                    MS(750),
                    MS(1550),
                    MS(2550),
                    MS(3550),
                ],
            ),
            // Once answered, a failure waits a whole interval: no quick retries any more.
            (
                MS(1000),
                MS(1),
                vec![yes, no, no],
                vec![MS(500), MS(1500), MS(2500)],
            ),
            // A run slower than the wait: the next one starts when it ended.
            (MS(10_000), MS(80), vec![no], vec![MS(80)]),
        ];
        for (interval, took, results, want) in cases {
            assert_eq!(
                dues(interval, took, &results),
                want,
                "{interval:?} {results:?}"
            );
        }
    }

    #[test]
    fn regular_runs_land_on_slots_and_quick_retries_need_not() {
        let base = slot_of(Instant::now()) + Duration::from_secs(1);
        let started = base + MS(3);
        let mut s = Schedule::new(MS(10_000), started);
        assert_eq!(
            s.next(started, false, 0.5, started + MS(1)),
            started + MS(50)
        );
        let started = s.due();
        let regular = s.next(started, true, 0.123, started + MS(1));
        assert_eq!(regular, slot_of(regular), "on a slot");
        assert!(regular >= started + MS(1230), "{:?}", regular - started);
    }
}
