//! A probe: one kind of active check (HTTP, TCP), run once per interval.

use async_trait::async_trait;
use shoal_catalog::HealthStatus;

/// What one run of a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The raw result, before thresholds.
    pub status: HealthStatus,
    /// What the check's `Output` says about it.
    pub output: String,
}

impl Outcome {
    pub fn critical(output: String) -> Self {
        Outcome {
            status: HealthStatus::Critical,
            output,
        }
    }
}

/// One kind of active check.
#[async_trait]
pub(crate) trait Probe: Send + Sync {
    /// Runs the check once; the caller bounds it with the check's timeout.
    async fn run(&self) -> Outcome;
    /// What the output says when the run takes longer than the timeout.
    fn timed_out(&self, after: std::time::Duration) -> Outcome;
}
