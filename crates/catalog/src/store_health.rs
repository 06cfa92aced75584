//! Whether the durable store can commit. A failed commit (disk full, I/O
//! error) marks the store failing; the next successful commit or probe
//! clears it. While it fails, writes are refused and what reads return
//! may be stale — check results, for one, cannot be recorded — so the API
//! says there is no known leader instead of serving it as fresh.

use crate::error::Result;
use crate::metrics::RegistryMetrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Since when and why the store cannot commit.
#[derive(Clone, Debug)]
pub struct StoreFailure {
    /// The first failed commit of this failure.
    pub since: Instant,
    /// The latest error.
    pub error: String,
}

/// The store's health, written by the registry's writer thread and read
/// by every API answer (an atomic load when healthy).
#[derive(Debug, Default)]
pub(crate) struct StoreHealth {
    failing: AtomicBool,
    failure: Mutex<Option<StoreFailure>>,
}

impl StoreHealth {
    /// `Some` while the store fails.
    pub fn failure(&self) -> Option<StoreFailure> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the outcome of a commit or probe; logs each transition.
    pub fn record(&self, outcome: &Result<()>, metrics: &RegistryMetrics) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        match (outcome, failure.as_mut()) {
            (Ok(()), None) => {}
            (Ok(()), Some(f)) => {
                tracing::warn!(
                    failed_for_ms = f.since.elapsed().as_millis() as u64,
                    "durable store recovered: writes are accepted again"
                );
                *failure = None;
                metrics.store_failing.set(0);
                self.failing.store(false, Ordering::Release);
            }
            (Err(e), Some(f)) => {
                metrics.store_errors.inc();
                f.error = e.to_string();
            }
            (Err(e), None) => {
                metrics.store_errors.inc();
                tracing::error!(
                    error = %e,
                    "durable store cannot commit: writes are refused and reads report no known \
                     leader until it recovers (retried every second)"
                );
                *failure = Some(StoreFailure {
                    since: Instant::now(),
                    error: e.to_string(),
                });
                metrics.store_failing.set(1);
                self.failing.store(true, Ordering::Release);
            }
        }
    }
}
