//! Metrics: counters, gauges and histograms cheap enough for hot paths
//! (atomics; a histogram takes an uncontended lock), a plain data model of
//! what they read ([`Family`]), and one writer of the Prometheus text
//! exposition format ([`text`]) that every `/metrics` in shoal uses.
//!
//! It lives in the catalog crate because that is the one crate every
//! other depends on: the registry's own metrics are defined here
//! ([`RegistryMetrics`]), and the API, the agent and the proxy render or
//! add to them without depending on each other.

mod registry;
pub mod text;

pub use registry::RegistryMetrics;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (things in flight, a 0/1 state).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Adds `n` (negative to subtract).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The value now.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Bucket bounds of every duration histogram, in seconds.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A distribution of durations: Prometheus buckets, plus the count, sum,
/// minimum, maximum and sum of squares Consul's JSON `Samples` report.
#[derive(Debug, Default)]
pub struct Histogram(Mutex<HistogramSnapshot>);

/// What a [`Histogram`] holds, read at one instant. Times in seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations at most each bound of [`DURATION_BUCKETS`] (not
    /// cumulative; one extra slot for larger ones).
    pub buckets: [u64; DURATION_BUCKETS.len() + 1],
    /// Observations.
    pub count: u64,
    /// Sum of the observations.
    pub sum: f64,
    /// Smallest observation (0 when there is none).
    pub min: f64,
    /// Largest observation.
    pub max: f64,
    /// Sum of the squares, for the standard deviation.
    pub sum_squares: f64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let mut h = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let slot = DURATION_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(DURATION_BUCKETS.len());
        h.buckets[slot] += 1;
        h.min = if h.count == 0 { secs } else { h.min.min(secs) };
        h.max = h.max.max(secs);
        h.count += 1;
        h.sum += secs;
        h.sum_squares += secs * secs;
    }
    /// A copy of what it holds now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The kind of a metric family, as the `# TYPE` line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
}

/// One sample's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// An integer (counters, integer gauges).
    Int(i64),
    /// A float gauge.
    Float(f64),
    /// A histogram.
    Histogram(HistogramSnapshot),
}

/// A metric family: one name, help and kind, and its samples, one per
/// label set. This is what every renderer (Prometheus text, Consul JSON)
/// takes, so each states its format once.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// Prometheus name (`shoal_catalog_writes_total`).
    pub name: &'static str,
    /// One line saying what it counts.
    pub help: &'static str,
    /// Its kind.
    pub kind: Kind,
    /// Its samples: label pairs and value.
    pub samples: Vec<(Vec<(&'static str, String)>, Value)>,
}

impl Family {
    /// A family without labels and one value.
    pub fn single(name: &'static str, help: &'static str, kind: Kind, value: Value) -> Family {
        Family {
            name,
            help,
            kind,
            samples: vec![(Vec::new(), value)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_tracks_buckets_and_extremes() {
        let h = Histogram::default();
        for ms in [3, 1, 700, 9_000] {
            h.observe(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], 1, "1 ms <= 0.001 s");
        assert_eq!(s.buckets[2], 1, "3 ms <= 0.005 s");
        assert_eq!(s.buckets[9], 1, "700 ms <= 1 s");
        assert_eq!(s.buckets[DURATION_BUCKETS.len()], 1, "9 s: +Inf");
        assert_eq!((s.min, s.max), (0.001, 9.0));
        assert!((s.sum - 9.704).abs() < 1e-9);
    }
}
