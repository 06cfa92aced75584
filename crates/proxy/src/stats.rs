//! Counters per instance (kept in its shared state) and for the proxy as a
//! whole, rendered as JSON (`/v1/proxy/stats`) and Prometheus text (`/metrics`).

use serde_json::{json, Map, Value};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency histogram bucket bounds, in milliseconds (then +Inf).
pub const BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

/// Counters of one instance.
#[derive(Default)]
pub struct InstanceStats {
    /// Requests sent to it.
    pub requests: AtomicU64,
    /// Answers by class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub by_class: [AtomicU64; 5],
    /// Attempts that failed before an answer (connect, reset, timeout).
    pub errors: AtomicU64,
    /// Requests that were retried away from it.
    pub retries: AtomicU64,
    /// Times passive health ejected it.
    pub ejections: AtomicU64,
    /// Time to response head, bucketed as `BUCKETS_MS` plus +Inf.
    pub latency: [AtomicU64; BUCKETS_MS.len() + 1],
    /// Sum of times to response head, in microseconds.
    pub latency_sum_us: AtomicU64,
}

impl InstanceStats {
    /// An answer with `status` after `elapsed`.
    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let ms = elapsed.as_millis() as u64;
        let bucket = BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(BUCKETS_MS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// JSON form; `active` is the requests in flight now.
    pub fn to_json(&self, active: usize) -> Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let buckets: Map<String, Value> = BUCKETS_MS
            .iter()
            .map(|b| format!("le_{b}ms"))
            .chain(std::iter::once("le_inf".to_string()))
            .zip(self.latency.iter().map(|a| json!(get(a))))
            .collect();
        json!({
            "requests": get(&self.requests),
            "1xx": get(&self.by_class[0]), "2xx": get(&self.by_class[1]), "3xx": get(&self.by_class[2]),
            "4xx": get(&self.by_class[3]), "5xx": get(&self.by_class[4]),
            "errors": get(&self.errors),
            "retries": get(&self.retries),
            "ejections": get(&self.ejections),
            "active": active,
            "latency": buckets,
            "latency_sum_ms": get(&self.latency_sum_us) as f64 / 1000.0,
        })
    }

    /// Prometheus lines for this instance.
    pub fn write_prometheus(&self, out: &mut String, service: &str, instance: &str, active: usize) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let l = format!(
            "service=\"{}\",instance=\"{}\"",
            escape(service),
            escape(instance)
        );
        let _ = writeln!(
            out,
            "shoal_proxy_requests_total{{{l}}} {}",
            get(&self.requests)
        );
        for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
            let _ = writeln!(
                out,
                "shoal_proxy_responses_total{{{l},code=\"{class}\"}} {}",
                get(&self.by_class[i])
            );
        }
        let _ = writeln!(
            out,
            "shoal_proxy_upstream_errors_total{{{l}}} {}",
            get(&self.errors)
        );
        let _ = writeln!(
            out,
            "shoal_proxy_retries_total{{{l}}} {}",
            get(&self.retries)
        );
        let _ = writeln!(
            out,
            "shoal_proxy_ejections_total{{{l}}} {}",
            get(&self.ejections)
        );
        let _ = writeln!(out, "shoal_proxy_active_requests{{{l}}} {active}");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS_MS
            .iter()
            .map(|b| format!("{}", *b as f64 / 1000.0))
            .chain(std::iter::once("+Inf".to_string()))
            .enumerate()
        {
            cumulative += get(&self.latency[i]);
            let _ = writeln!(
                out,
                "shoal_proxy_upstream_latency_seconds_bucket{{{l},le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "shoal_proxy_upstream_latency_seconds_sum{{{l}}} {}",
            get(&self.latency_sum_us) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "shoal_proxy_upstream_latency_seconds_count{{{l}}} {cumulative}"
        );
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Counters of the proxy as a whole.
#[derive(Default)]
pub struct ProxyStats {
    /// Requests received.
    pub requests: AtomicU64,
    /// Requests that matched no route (404).
    pub no_route: AtomicU64,
    /// Requests that waited for a first instance.
    pub queued: AtomicU64,
    /// Queued requests that timed out (503).
    pub queue_timeouts: AtomicU64,
    /// Requests refused for bad framing or limits.
    pub rejected: AtomicU64,
    /// Requests refused because they would loop back to this proxy (508).
    pub loops: AtomicU64,
}

impl ProxyStats {
    /// JSON form.
    pub fn to_json(&self) -> Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "requests": get(&self.requests),
            "no_route": get(&self.no_route),
            "queued": get(&self.queued),
            "queue_timeouts": get(&self.queue_timeouts),
            "rejected": get(&self.rejected),
            "loops": get(&self.loops),
        })
    }

    /// Prometheus lines.
    pub fn write_prometheus(&self, out: &mut String) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "shoal_proxy_received_requests_total {}",
            get(&self.requests)
        );
        let _ = writeln!(out, "shoal_proxy_no_route_total {}", get(&self.no_route));
        let _ = writeln!(out, "shoal_proxy_queued_total {}", get(&self.queued));
        let _ = writeln!(
            out,
            "shoal_proxy_queue_timeouts_total {}",
            get(&self.queue_timeouts)
        );
        let _ = writeln!(out, "shoal_proxy_rejected_total {}", get(&self.rejected));
        let _ = writeln!(out, "shoal_proxy_loops_total {}", get(&self.loops));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_classes_and_buckets() {
        let s = InstanceStats::default();
        s.record(200, Duration::from_millis(3));
        s.record(503, Duration::from_millis(700));
        s.record(404, Duration::from_secs(9));
        let v = s.to_json(2);
        assert_eq!(
            (v["2xx"].clone(), v["4xx"].clone(), v["5xx"].clone()),
            (json!(1), json!(1), json!(1))
        );
        assert_eq!(v["latency"]["le_5ms"], 1);
        assert_eq!(v["latency"]["le_1000ms"], 1);
        assert_eq!(v["latency"]["le_inf"], 1);
        let mut text = String::new();
        s.write_prometheus(&mut text, "web", "web-1", 2);
        assert!(text.contains("shoal_proxy_upstream_latency_seconds_bucket{service=\"web\",instance=\"web-1\",le=\"+Inf\"} 3"));
        assert!(text.contains("shoal_proxy_active_requests{service=\"web\",instance=\"web-1\"} 2"));
    }
}
