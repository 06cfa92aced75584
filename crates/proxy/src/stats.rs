//! Counters per instance (kept in its shared state) and for the proxy as a
//! whole, rendered as JSON (`/v1/proxy/stats`) and Prometheus text (`/metrics`).

use serde_json::{json, Map, Value as Json};
use shoal_catalog::metrics::{Family, HistogramSnapshot, Kind, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
    pub fn to_json(&self, active: usize) -> Json {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let buckets: Map<String, Json> = BUCKETS_MS
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

    /// Its latency histogram in the shared metrics model (seconds).
    fn latency_snapshot(&self) -> HistogramSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut h = HistogramSnapshot::default();
        for (slot, n) in h.buckets.iter_mut().zip(&self.latency) {
            *slot = get(n);
        }
        h.count = h.buckets.iter().sum();
        h.sum = get(&self.latency_sum_us) as f64 / 1e6;
        h
    }
}

/// One instance's counters with its labels, for [`families`].
pub struct InstanceSample<'a> {
    /// Service name.
    pub service: &'a str,
    /// Instance ID.
    pub instance: &'a str,
    /// Its counters.
    pub stats: &'a InstanceStats,
    /// Requests in flight now.
    pub active: usize,
}

/// The proxy's metrics as families (one per metric, every instance's
/// sample in it), rendered by the one Prometheus writer of
/// `shoal_catalog::metrics::text`.
pub fn families(proxy: &ProxyStats, instances: &[InstanceSample<'_>]) -> Vec<Family> {
    let get = |a: &AtomicU64| Value::Int(a.load(Ordering::Relaxed) as i64);
    let mut out = proxy.families();
    let per = |name, help, kind, value: &dyn Fn(&InstanceSample<'_>) -> Value| Family {
        name,
        help,
        kind,
        samples: instances
            .iter()
            .map(|i| (labels(i, None), value(i)))
            .collect(),
    };
    out.push(per(
        "shoal_proxy_requests_total",
        "Requests sent to the instance.",
        Kind::Counter,
        &|i| get(&i.stats.requests),
    ));
    out.push(Family {
        name: "shoal_proxy_responses_total",
        help: "Answers from the instance, by status class.",
        kind: Kind::Counter,
        samples: instances
            .iter()
            .flat_map(|i| {
                ["1xx", "2xx", "3xx", "4xx", "5xx"]
                    .iter()
                    .zip(&i.stats.by_class)
                    .map(move |(class, n)| (labels(i, Some(class)), get(n)))
            })
            .collect(),
    });
    out.push(per(
        "shoal_proxy_upstream_errors_total",
        "Attempts on the instance that failed before an answer.",
        Kind::Counter,
        &|i| get(&i.stats.errors),
    ));
    out.push(per(
        "shoal_proxy_retries_total",
        "Requests retried away from the instance.",
        Kind::Counter,
        &|i| get(&i.stats.retries),
    ));
    out.push(per(
        "shoal_proxy_ejections_total",
        "Times passive health ejected the instance.",
        Kind::Counter,
        &|i| get(&i.stats.ejections),
    ));
    out.push(per(
        "shoal_proxy_active_requests",
        "Requests in flight to the instance now.",
        Kind::Gauge,
        &|i| Value::Int(i.active as i64),
    ));
    out.push(per(
        "shoal_proxy_upstream_latency_seconds",
        "Time to the instance's response head.",
        Kind::Histogram,
        &|i| Value::Histogram(i.stats.latency_snapshot()),
    ));
    out
}

fn labels(i: &InstanceSample<'_>, code: Option<&str>) -> Vec<(&'static str, String)> {
    let mut l = vec![
        ("service", i.service.to_string()),
        ("instance", i.instance.to_string()),
    ];
    if let Some(code) = code {
        l.push(("code", code.to_string()));
    }
    l
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
    /// TLS handshakes completed on the proxy's TLS listeners.
    pub tls_handshakes: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_failures: AtomicU64,
    /// TLS handshakes naming a host no certificate is for (shared with
    /// the listeners' certificate stores).
    pub unknown_sni: Arc<AtomicU64>,
    /// HTTP/2 client connections served.
    pub h2_connections: AtomicU64,
    /// HTTP/2 connections closed for abuse (`http::h2::guard`).
    pub h2_abuse: AtomicU64,
}

impl ProxyStats {
    /// JSON form.
    pub fn to_json(&self) -> Json {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "requests": get(&self.requests),
            "no_route": get(&self.no_route),
            "queued": get(&self.queued),
            "queue_timeouts": get(&self.queue_timeouts),
            "rejected": get(&self.rejected),
            "loops": get(&self.loops),
            "tls_handshakes": get(&self.tls_handshakes),
            "tls_failures": get(&self.tls_failures),
            "unknown_sni": get(&self.unknown_sni),
            "h2_connections": get(&self.h2_connections),
            "h2_abuse": get(&self.h2_abuse),
        })
    }

    /// Its families (no labels).
    fn families(&self) -> Vec<Family> {
        let c = |name, help, a: &AtomicU64| {
            Family::single(
                name,
                help,
                Kind::Counter,
                Value::Int(a.load(Ordering::Relaxed) as i64),
            )
        };
        vec![
            c(
                "shoal_proxy_received_requests_total",
                "Requests received by the proxy.",
                &self.requests,
            ),
            c(
                "shoal_proxy_no_route_total",
                "Requests that matched no route (404).",
                &self.no_route,
            ),
            c(
                "shoal_proxy_queued_total",
                "Requests that waited for a first instance.",
                &self.queued,
            ),
            c(
                "shoal_proxy_queue_timeouts_total",
                "Queued requests that timed out (503).",
                &self.queue_timeouts,
            ),
            c(
                "shoal_proxy_rejected_total",
                "Requests refused for bad framing or limits.",
                &self.rejected,
            ),
            c(
                "shoal_proxy_tls_handshakes_total",
                "TLS handshakes completed on the proxy's TLS listeners.",
                &self.tls_handshakes,
            ),
            c(
                "shoal_proxy_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out.",
                &self.tls_failures,
            ),
            c(
                "shoal_proxy_tls_unknown_sni_total",
                "TLS handshakes naming a host no certificate is for.",
                &self.unknown_sni,
            ),
            c(
                "shoal_proxy_h2_connections_total",
                "HTTP/2 client connections served.",
                &self.h2_connections,
            ),
            c(
                "shoal_proxy_h2_abuse_closed_total",
                "HTTP/2 connections closed for flooding control frames or oversize header blocks.",
                &self.h2_abuse,
            ),
            c(
                "shoal_proxy_loops_total",
                "Requests refused with 508 because they would loop back into the proxy.",
                &self.loops,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_catalog::metrics::text;

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
        let one = |instance, active| InstanceSample {
            service: "web",
            instance,
            stats: &s,
            active,
        };
        let text = text::render(&families(
            &ProxyStats::default(),
            &[one("web-1", 2), one("web-2", 0)],
        ));
        text::validate(&text).unwrap();
        assert!(text.contains("shoal_proxy_upstream_latency_seconds_bucket{service=\"web\",instance=\"web-1\",le=\"+Inf\"} 3"));
        assert!(text.contains("shoal_proxy_active_requests{service=\"web\",instance=\"web-1\"} 2"));
        assert!(text.contains("# TYPE shoal_proxy_requests_total counter"));
    }
}
