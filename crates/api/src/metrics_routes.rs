//! `/metrics` (Prometheus text) and `/v1/agent/metrics` (Consul's JSON
//! shape, or Prometheus text with `?format=prometheus`): the registry's
//! own metrics plus those of whatever runs beside it (the proxy in
//! `shoal dev`), read from one list of [`Family`]s, so both formats say
//! the same thing.

use crate::error::{ApiError, ApiResult};
use crate::request::Ctx;
use crate::response::json;
use crate::ApiState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json as j, Map, Value as Json};
use shoal_catalog::metrics::{text, Family, HistogramSnapshot, Kind, Value};
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/metrics", get(prometheus))
        .route("/v1/agent/metrics", get(agent_metrics))
}

/// Every family this server reports.
fn families(api: &ApiState) -> Vec<Family> {
    let mut all = api.registry.metric_families();
    for source in api.metric_sources.iter() {
        all.extend(source());
    }
    all
}

fn prometheus_answer(api: &ApiState) -> Response {
    let body = text::render(&families(api));
    ([(header::CONTENT_TYPE, text::CONTENT_TYPE)], body).into_response()
}

/// Metrics need `agent:read` on this agent, as Consul's.
async fn prometheus(
    State(api): State<ApiState>,
    access: std::sync::Arc<crate::acl::Access>,
) -> ApiResult<Response> {
    access.need_read(shoal_catalog::acl::Resource::Agent, &api.config.node_name)?;
    Ok(prometheus_answer(&api))
}

async fn agent_metrics(State(api): State<ApiState>, ctx: Ctx) -> ApiResult<Response> {
    ctx.acl
        .need_read(shoal_catalog::acl::Resource::Agent, &api.config.node_name)?;
    match ctx.params.get("format") {
        None | Some("") => {}
        Some("prometheus") => return Ok(prometheus_answer(&api)),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid format {other:?}: the only format is prometheus (or none, for JSON)"
            )))
        }
    }
    let uptime = api.started.elapsed().as_secs_f64().max(1e-3);
    Ok(json(
        None,
        ctx.pretty,
        &consul_json(&families(&api), uptime, SystemTime::now()),
    ))
}

/// The Consul name of a family: dots for underscores, no unit suffix
/// (Consul's timers are in milliseconds whatever the Prometheus unit).
fn consul_name(name: &str) -> String {
    let bare = name
        .strip_suffix("_total")
        .or_else(|| name.strip_suffix("_seconds"))
        .unwrap_or(name);
    bare.replace('_', ".")
}

/// go-metrics' `AgentInfo`: `Gauges`, `Points`, `Counters`, `Samples`.
/// Counters and samples cover the process's life (`Rate` per second of
/// it), not one 10 s interval as in Consul: shoal keeps no intervals.
fn consul_json(families: &[Family], uptime: f64, now: SystemTime) -> Json {
    let (mut gauges, mut counters, mut samples) = (Vec::new(), Vec::new(), Vec::new());
    for f in families {
        let name = consul_name(f.name);
        for (labels, value) in &f.samples {
            let labels: Map<String, Json> =
                labels.iter().map(|(k, v)| (k.to_string(), j!(v))).collect();
            match (f.kind, value) {
                (Kind::Counter, Value::Int(n)) => {
                    counters.push(counter(&name, labels, (*n).max(0) as f64, uptime))
                }
                (_, Value::Int(n)) => gauges.push(j!({"Name": name, "Value": n, "Labels": labels})),
                (_, Value::Float(v)) => {
                    gauges.push(j!({"Name": name, "Value": v, "Labels": labels}))
                }
                (_, Value::Histogram(h)) => samples.push(timer(&name, labels, h, uptime)),
            }
        }
    }
    j!({
        "Timestamp": go_utc(now),
        "Gauges": gauges,
        "Points": [],
        "Counters": counters,
        "Samples": samples,
    })
}

/// A counter of increments of one, as an aggregate sample.
fn counter(name: &str, labels: Map<String, Json>, n: f64, uptime: f64) -> Json {
    let one = if n > 0.0 { 1.0 } else { 0.0 };
    j!({
        "Name": name, "Count": n, "Rate": n / uptime, "Sum": n,
        "Min": one, "Max": one, "Mean": one, "Stddev": 0.0, "Labels": labels,
    })
}

/// A histogram of seconds as a Consul timer sample in milliseconds.
fn timer(name: &str, labels: Map<String, Json>, h: &HistogramSnapshot, uptime: f64) -> Json {
    let n = h.count as f64;
    let (sum, sum_sq) = (h.sum * 1e3, h.sum_squares * 1e6);
    let mean = if n > 0.0 { sum / n } else { 0.0 };
    let stddev = if n > 1.0 {
        ((sum_sq - sum * sum / n) / (n - 1.0)).max(0.0).sqrt()
    } else {
        0.0
    };
    j!({
        "Name": name, "Count": h.count, "Rate": sum / uptime, "Sum": sum,
        "Min": h.min * 1e3, "Max": h.max * 1e3, "Mean": mean, "Stddev": stddev,
        "Labels": labels,
    })
}

/// `now` as Go prints a UTC `time.Time`: `2006-01-02 15:04:05 +0000 UTC`.
fn go_utc(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (Howard Hinnant's well-known `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_catalog::metrics::Histogram;
    use std::time::Duration;

    #[test]
    fn go_timestamps() {
        let cases = [
            (0, "1970-01-01 00:00:00 +0000 UTC"),
            (951_782_400, "2000-02-29 00:00:00 +0000 UTC"),
            (1_502_160_910, "2017-08-08 02:55:10 +0000 UTC"),
        ];
        for (secs, want) in cases {
            assert_eq!(go_utc(UNIX_EPOCH + Duration::from_secs(secs)), want);
        }
    }

    #[test]
    fn consul_shape_from_families() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(2));
        h.observe(Duration::from_millis(4));
        let families = vec![
            Family::single("shoal_x_total", "X.", Kind::Counter, Value::Int(10)),
            Family::single("shoal_y", "Y.", Kind::Gauge, Value::Int(3)),
            Family::single(
                "shoal_z_seconds",
                "Z.",
                Kind::Histogram,
                Value::Histogram(h.snapshot()),
            ),
        ];
        let v = consul_json(&families, 5.0, UNIX_EPOCH);
        assert_eq!(v["Points"], j!([]));
        assert_eq!(
            v["Gauges"][0],
            j!({"Name": "shoal.y", "Value": 3, "Labels": {}})
        );
        let c = &v["Counters"][0];
        assert_eq!(
            (c["Name"].clone(), c["Count"].clone(), c["Rate"].clone()),
            (j!("shoal.x"), j!(10.0), j!(2.0))
        );
        let s = &v["Samples"][0];
        assert_eq!(s["Name"], "shoal.z");
        assert_eq!(s["Count"], 2);
        let close = |a: &Json, b: f64| (a.as_f64().unwrap() - b).abs() < 1e-9;
        assert!(
            close(&s["Sum"], 6.0)
                && close(&s["Mean"], 3.0)
                && close(&s["Min"], 2.0)
                && close(&s["Max"], 4.0),
            "{s}"
        );
        assert!(close(&s["Stddev"], 2f64.sqrt()), "{s}");
    }
}
