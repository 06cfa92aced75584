//! Checks of a container's instances, from registrator's conventions
//! (`SERVICE_CHECK_*`, as its Consul backend reads them), from Docker's own
//! HEALTHCHECK, and the maintenance check that drains a stopping container.
//! Pure functions: no I/O.

use shoal_catalog::{duration, Check, CheckDefinition, HealthStatus};
use std::collections::BTreeMap;
use std::time::Duration;

/// Interval of HTTP and TCP checks without `SERVICE_CHECK_INTERVAL`
/// (registrator's `DefaultInterval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// ID of the check that mirrors a container's Docker HEALTHCHECK.
pub fn docker_health_id(service_id: &str) -> String {
    format!("docker-health:{service_id}")
}

/// ID Consul gives a service's maintenance check (the agent API uses it too).
pub fn maintenance_id(service_id: &str) -> String {
    format!("_service_maintenance:{service_id}")
}

/// What `SERVICE_CHECK_*` attributes (lowercased, without `SERVICE_` and
/// the port) ask for, for an instance reachable at `ip:port`.
///
/// Registrator's precedence: `check_http`, `check_https`, (`check_cmd`,
/// `check_script`: refused here), `check_ttl`, `check_tcp`. `Ok(None)`: no
/// check asked for. `Err`: a reason to log; the instance is then
/// registered without the check.
pub fn from_attrs(
    attrs: &BTreeMap<String, String>,
    ip: &str,
    port: u16,
) -> Result<Option<(CheckDefinition, HealthStatus)>, String> {
    let get = |k: &str| attrs.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let dur = |k: &str| -> Result<Option<Duration>, String> {
        get(k)
            .map(|v| {
                duration::parse(v).map_err(|e| format!("SERVICE_{}={v}: {e}", k.to_uppercase()))
            })
            .transpose()
    };
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    let mut def = CheckDefinition::default();
    let mut probed = true;
    if let Some(path) = get("check_http") {
        def.http = format!("http://{host}:{port}{path}");
    } else if let Some(path) = get("check_https") {
        def.http = format!("https://{host}:{port}{path}");
        def.tls_skip_verify = get("check_tls_skip_verify") == Some("true");
    } else if get("check_cmd").is_some() || get("check_script").is_some() {
        return Err("SERVICE_CHECK_SCRIPT and SERVICE_CHECK_CMD are refused: shoal runs no commands for a registration".into());
    } else if get("check_ttl").is_some() {
        def.ttl = dur("check_ttl")?;
        probed = false;
    } else if get("check_tcp").is_some() {
        def.tcp = format!("{host}:{port}");
    } else {
        return Ok(None);
    }
    if probed {
        def.timeout = dur("check_timeout")?;
        def.interval = Some(dur("check_interval")?.unwrap_or(DEFAULT_INTERVAL));
    }
    def.deregister_critical_service_after = dur("check_deregister_after")?;
    let status = match get("check_initial_status") {
        None => HealthStatus::Critical,
        Some(s) => HealthStatus::parse(s).ok_or_else(|| {
            format!("SERVICE_CHECK_INITIAL_STATUS={s}: not passing, warning or critical")
        })?,
    };
    Ok(Some((def, status)))
}

/// The check built from `SERVICE_CHECK_*` for instance `service_id`, with
/// the ID and name Consul gives a service's single inline check.
pub fn convention_check(
    service_id: &str,
    service_name: &str,
    def: CheckDefinition,
    status: HealthStatus,
) -> Check {
    Check {
        check_id: format!("service:{service_id}"),
        name: format!("Service '{service_name}' check"),
        status,
        service_id: service_id.to_string(),
        kind: def.kind().to_string(),
        definition: def,
        ..Default::default()
    }
}

/// Docker's HEALTHCHECK status as a check status: only `healthy` passes
/// (`starting` gets no traffic yet, as Docker's own `--health` semantics).
pub fn docker_health_status(status: &str) -> HealthStatus {
    match status {
        "healthy" => HealthStatus::Passing,
        _ => HealthStatus::Critical,
    }
}

/// The check that mirrors a HEALTHCHECK: no definition, so the check
/// runner leaves it alone; the registrator sets it from `health_status`
/// events.
pub fn docker_health_check(service_id: &str, status: &str) -> Check {
    Check {
        check_id: docker_health_id(service_id),
        name: "Docker HEALTHCHECK".into(),
        status: docker_health_status(status),
        output: format!("Docker health status: {status}"),
        service_id: service_id.to_string(),
        ..Default::default()
    }
}

/// A critical maintenance check: the proxy stops sending new requests to
/// the instance (a container being stopped, killed or paused).
pub fn maintenance_check(service_id: &str, reason: &str) -> Check {
    Check {
        check_id: maintenance_id(service_id),
        name: "Service Maintenance Mode".into(),
        status: HealthStatus::Critical,
        notes: reason.to_string(),
        service_id: service_id.to_string(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn conventions_build_the_checks_registrator_builds() {
        let s = Duration::from_secs;
        // (attributes, http, tcp, ttl, interval, timeout, deregister, status)
        type Row<'a> = (
            Vec<(&'a str, &'a str)>,
            &'a str,
            &'a str,
            Option<Duration>,
            Option<Duration>,
            Option<Duration>,
            Option<Duration>,
            HealthStatus,
        );
        let cases: Vec<Row> = vec![
            (
                vec![("check_http", "/health"), ("check_interval", "15s")],
                "http://10.0.0.1:8080/health",
                "",
                None,
                Some(s(15)),
                None,
                None,
                HealthStatus::Critical,
            ),
            (
                vec![("check_https", "/h"), ("check_timeout", "2s")],
                "https://10.0.0.1:8080/h",
                "",
                None,
                Some(DEFAULT_INTERVAL),
                Some(s(2)),
                None,
                HealthStatus::Critical,
            ),
            (
                vec![("check_tcp", "true"), ("check_initial_status", "passing")],
                "",
                "10.0.0.1:8080",
                None,
                Some(DEFAULT_INTERVAL),
                None,
                None,
                HealthStatus::Passing,
            ),
            (
                vec![("check_ttl", "30s"), ("check_deregister_after", "1m")],
                "",
                "",
                Some(s(30)),
                None,
                None,
                Some(s(60)),
                HealthStatus::Critical,
            ),
            // HTTP wins over TTL and TCP, as in registrator.
            (
                vec![
                    ("check_tcp", "true"),
                    ("check_ttl", "5s"),
                    ("check_http", "/"),
                ],
                "http://10.0.0.1:8080/",
                "",
                None,
                Some(DEFAULT_INTERVAL),
                None,
                None,
                HealthStatus::Critical,
            ),
        ];
        for (kv, http, tcp, ttl, interval, timeout, dereg, status) in cases {
            let (def, st) = from_attrs(&attrs(&kv), "10.0.0.1", 8080).unwrap().unwrap();
            assert_eq!(def.http, http, "{kv:?}");
            assert_eq!(def.tcp, tcp, "{kv:?}");
            assert_eq!(def.ttl, ttl, "{kv:?}");
            assert_eq!(def.interval, interval, "{kv:?}");
            assert_eq!(def.timeout, timeout, "{kv:?}");
            assert_eq!(def.deregister_critical_service_after, dereg, "{kv:?}");
            assert_eq!(st, status, "{kv:?}");
        }
    }

    #[test]
    fn no_check_refused_and_bad_values() {
        assert_eq!(from_attrs(&attrs(&[("foo", "bar")]), "h", 1), Ok(None));
        for kv in [
            vec![("check_script", "curl x")],
            vec![("check_cmd", "/bin/true")],
            vec![("check_http", "/"), ("check_interval", "soon")],
            vec![("check_ttl", "30s"), ("check_initial_status", "fine")],
        ] {
            assert!(from_attrs(&attrs(&kv), "h", 1).is_err(), "{kv:?}");
        }
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        let (def, _) = from_attrs(&attrs(&[("check_http", "/x")]), "fd00::2", 80)
            .unwrap()
            .unwrap();
        assert_eq!(def.http, "http://[fd00::2]:80/x");
    }

    #[test]
    fn docker_health_maps_to_status() {
        for (docker, status) in [
            ("healthy", HealthStatus::Passing),
            ("unhealthy", HealthStatus::Critical),
            ("starting", HealthStatus::Critical),
        ] {
            assert_eq!(docker_health_check("a", docker).status, status);
            assert_eq!(docker_health_check("a", docker).definition.kind(), "");
        }
        let m = maintenance_check("a", "stopping");
        assert_eq!(
            (m.check_id.as_str(), m.status),
            ("_service_maintenance:a", HealthStatus::Critical)
        );
    }
}
