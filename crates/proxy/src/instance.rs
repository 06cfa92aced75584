//! One instance of a service as the proxy sees it: its address and weight,
//! and the state that outlives routing-table rebuilds (requests in flight,
//! passive-health ejection, the keep-alive connection pool, counters).

use crate::config::EjectConfig;
use crate::http::full::pool::{H2Slot, Pool};
use crate::http::plain::idle::IdleStreams;
use crate::stats::InstanceStats;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Milliseconds since the proxy's clock started (monotonic).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// What survives routing-table rebuilds for one instance.
#[derive(Default)]
pub struct InstanceState {
    /// Requests sent and not yet fully answered.
    pub outstanding: AtomicUsize,
    /// Consecutive failures (connect errors, 5xx).
    failures: AtomicU32,
    /// How many times it was ejected (the ejection time doubles each time).
    ejections: AtomicU32,
    /// Ejected until this `now_ms()`; 0 when in rotation.
    ejected_until: AtomicU64,
    /// Idle keep-alive connections (full path).
    pub pool: Pool,
    /// Idle keep-alive connections (plain path).
    pub streams: IdleStreams,
    /// The HTTP/2 connection to a `proto=h2c` instance.
    pub h2: H2Slot,
    /// Counters.
    pub stats: InstanceStats,
}

impl InstanceState {
    /// Whether passive health has it out of rotation now.
    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    /// Whether passive health has it out of rotation now; reads the clock
    /// only for an instance that was ejected and not back in use since.
    pub fn is_ejected_now(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && until > now_ms()
    }

    /// A good answer: the failure streak ends (and an ejection that ran
    /// out is forgotten, so picking it reads no clock).
    pub fn record_success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until != 0 && until <= now_ms() {
            self.ejected_until.store(0, Ordering::Relaxed);
        }
    }

    /// A failure; returns true when it crossed the threshold and the caller
    /// may eject the instance (see [`InstanceState::eject`]).
    pub fn record_failure(&self, cfg: &EjectConfig) -> bool {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        n >= cfg.consecutive_failures && !self.is_ejected(now_ms())
    }

    /// Takes the instance out of rotation for base × 2^(ejections).
    pub fn eject(&self, cfg: &EjectConfig) -> Duration {
        let times = self.ejections.fetch_add(1, Ordering::Relaxed).min(16);
        let time = cfg.base_time.saturating_mul(1 << times).min(cfg.max_time);
        self.ejected_until
            .store(now_ms() + time.as_millis() as u64, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.stats.ejections.fetch_add(1, Ordering::Relaxed);
        time
    }
}

/// An instance in one routing table.
#[derive(Clone)]
pub struct Instance {
    /// Instance ID in the catalog.
    pub id: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Relative share of requests (the catalog's passing weight, ≥ 1).
    pub weight: u32,
    /// Tags, for `<tag>.<service>` subsets.
    pub tags: Vec<String>,
    /// Shared state.
    pub state: Arc<InstanceState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejects_after_the_threshold_with_doubling_time() {
        let cfg = EjectConfig {
            consecutive_failures: 3,
            base_time: Duration::from_secs(1),
            max_time: Duration::from_secs(3),
            max_percent: 50,
        };
        let st = InstanceState::default();
        assert!(!st.record_failure(&cfg));
        assert!(!st.record_failure(&cfg));
        assert!(st.record_failure(&cfg));
        assert_eq!(st.eject(&cfg), Duration::from_secs(1));
        assert!(st.is_ejected(now_ms()));
        assert_eq!(st.eject(&cfg), Duration::from_secs(2));
        assert_eq!(st.eject(&cfg), Duration::from_secs(3), "capped at max_time");
        st.record_success();
        assert!(!st.record_failure(&cfg), "a success resets the streak");
    }
}
