//! Thresholds between a check's raw results and the status it reports,
//! as Consul's `SuccessBeforePassing`, `FailuresBeforeWarning` and
//! `FailuresBeforeCritical` define them.

use shoal_catalog::{CheckDefinition, HealthStatus};

/// Counts consecutive results and says when the reported status changes.
#[derive(Debug, Clone)]
pub(crate) struct Thresholds {
    success_before_passing: u32,
    failures_before_warning: u32,
    failures_before_critical: u32,
    successes: u32,
    failures: u32,
}

impl Thresholds {
    /// The thresholds of a definition (0 means "at once").
    pub fn new(def: &CheckDefinition) -> Self {
        let critical = def.failures_before_critical;
        Thresholds {
            success_before_passing: def.success_before_passing,
            // Optional; defaults to the critical threshold, as in Consul.
            failures_before_warning: if def.failures_before_warning == 0 {
                critical
            } else {
                def.failures_before_warning
            },
            failures_before_critical: critical,
            successes: 0,
            failures: 0,
        }
    }

    /// Takes one raw result; returns the status to report, or `None` while
    /// a threshold is not reached (the check keeps its current status).
    pub fn observe(&mut self, raw: HealthStatus) -> Option<HealthStatus> {
        if raw == HealthStatus::Critical {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.failures >= self.failures_before_critical {
                Some(HealthStatus::Critical)
            } else if self.failures >= self.failures_before_warning {
                Some(HealthStatus::Warning)
            } else {
                None
            }
        } else {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            (self.successes >= self.success_before_passing).then_some(raw)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::{Critical as C, Passing as P, Warning as W};

    fn def(sbp: u32, fbw: u32, fbc: u32) -> CheckDefinition {
        CheckDefinition {
            success_before_passing: sbp,
            failures_before_warning: fbw,
            failures_before_critical: fbc,
            ..Default::default()
        }
    }

    #[test]
    fn thresholds_follow_consul() {
        // (success_before_passing, failures_before_warning,
        //  failures_before_critical, raw results, reported)
        type Case<'a> = (
            u32,
            u32,
            u32,
            &'a [HealthStatus],
            &'a [Option<HealthStatus>],
        );
        let cases: &[Case] = &[
            (0, 0, 0, &[P, C, W], &[Some(P), Some(C), Some(W)]),
            (
                2,
                0,
                0,
                &[P, P, C, P, P],
                &[None, Some(P), Some(C), None, Some(P)],
            ),
            (0, 0, 3, &[C, C, C, C], &[None, None, Some(C), Some(C)]),
            (0, 1, 3, &[C, C, C], &[Some(W), Some(W), Some(C)]),
            // A success in between starts the failure count again.
            (0, 0, 2, &[C, P, C, C], &[None, Some(P), None, Some(C)]),
            // A warning result counts as a success.
            (2, 0, 2, &[W, W, C], &[None, Some(W), None]),
        ];
        for (sbp, fbw, fbc, raw, want) in cases {
            let mut t = Thresholds::new(&def(*sbp, *fbw, *fbc));
            let got: Vec<_> = raw.iter().map(|r| t.observe(*r)).collect();
            assert_eq!(&got, want, "sbp={sbp} fbw={fbw} fbc={fbc} raw={raw:?}");
        }
    }
}
