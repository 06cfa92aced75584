//! Running wrk (closed loop: each connection sends its next request as
//! soon as the previous answer is read) and reading its report:
//! requests/s, the `--latency` distribution and the errors.

use super::fleet::{command_line, pinned};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::time::Duration;

/// One wrk run's settings.
#[derive(Clone)]
pub struct Load {
    /// wrk threads (`-t`).
    pub threads: u32,
    /// Open connections (`-c`).
    pub connections: u32,
    /// Length of the run (`-d`).
    pub seconds: u64,
    /// `Host` header sent with every request.
    pub host: String,
}

/// What wrk reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Requests completed.
    pub requests: u64,
    /// Requests per second.
    pub rate: f64,
    /// Latency percentiles.
    pub p50: Duration,
    /// 75th percentile.
    pub p75: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest latency.
    pub max: Duration,
    /// Answers that were not 2xx or 3xx.
    pub non_2xx: u64,
    /// Socket errors of every kind (connect, read, write, timeout).
    pub socket_errors: u64,
}

impl Report {
    /// Failed requests of any kind.
    pub fn errors(&self) -> u64 {
        self.non_2xx + self.socket_errors
    }
}

/// The wrk command for `url` (pinned to `cpus` if given).
pub fn command(wrk: &Path, load: &Load, url: &str, cpus: Option<&str>) -> (String, Vec<String>) {
    let args = vec![
        format!("-t{}", load.threads),
        format!("-c{}", load.connections),
        format!("-d{}s", load.seconds),
        "--latency".into(),
        "-H".into(),
        format!("Host: {}", load.host),
        url.to_string(),
    ];
    let (program, argv) = pinned(cpus, wrk, &args);
    let shown = command_line(&program, &argv);
    let mut all = vec![program.display().to_string()];
    all.extend(argv);
    (shown, all)
}

/// Runs wrk (bounded: killed 30 s after its planned end) and parses it.
pub async fn run(argv: &[String], seconds: u64) -> Result<Report> {
    let (program, args) = argv.split_first().ok_or_else(|| anyhow!("empty command"))?;
    let child = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output();
    let limit = Duration::from_secs(seconds + 30);
    let output = tokio::time::timeout(limit, child)
        .await
        .map_err(|_| anyhow!("wrk did not finish within {limit:?}"))?
        .with_context(|| format!("cannot run {program}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            output.status,
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse(&text).with_context(|| format!("cannot read wrk's report:\n{text}"))
}

/// Reads wrk's `--latency` report.
pub fn parse(text: &str) -> Result<Report> {
    let mut r = Report::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", rate] => r.rate = rate.parse()?,
            ["Latency", _avg, _stdev, max, ..] => r.max = duration(max)?,
            ["50%", t] => r.p50 = duration(t)?,
            ["75%", t] => r.p75 = duration(t)?,
            ["90%", t] => r.p90 = duration(t)?,
            ["99%", t] => r.p99 = duration(t)?,
            [n, "requests", "in", ..] => r.requests = n.parse()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => r.non_2xx = n.parse()?,
            ["Socket", "errors:", ..] => r.socket_errors = socket_errors(line),
            _ => {}
        }
    }
    if r.rate == 0.0 || r.p99.is_zero() {
        bail!("no Requests/sec or 99% line");
    }
    Ok(r)
}

/// `Socket errors: connect 0, read 2, write 0, timeout 1` → 3.
fn socket_errors(line: &str) -> u64 {
    line.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u64>().ok())
        .sum()
}

/// wrk's times: `812.00us`, `2.74ms`, `1.02s`, `1.50m`.
pub(super) fn duration(text: &str) -> Result<Duration> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(|| anyhow!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse()?;
    let nanos_per_unit = match unit {
        "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => bail!("unknown unit in {text:?}"),
    };
    Ok(Duration::from_nanos((value * nanos_per_unit).round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 5s test @ http://127.0.0.1:18092/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.60ms  313.86us   1.02s    87.01%
    Req/Sec    24.81k   587.35    25.84k    72.00%
  Latency Distribution
     50%  812.00us
     75%    2.84ms
     90%    2.98ms
     99%    3.85ms
  123456 requests in 5.00s, 20.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 12
Requests/sec:  24686.30
Transfer/sec:      4.00MB
";

    #[test]
    fn reads_a_latency_report() {
        let r = parse(SAMPLE).unwrap();
        assert_eq!(r.requests, 123_456);
        assert!((r.rate - 24686.30).abs() < 1e-6);
        assert_eq!(r.p50, Duration::from_micros(812));
        assert_eq!(r.p75, Duration::from_micros(2840));
        assert_eq!(r.p90, Duration::from_micros(2980));
        assert_eq!(r.p99, Duration::from_micros(3850));
        assert_eq!(r.max, Duration::from_millis(1020));
        assert_eq!((r.non_2xx, r.socket_errors, r.errors()), (12, 3, 15));
        assert!(parse("Running 5s test\n").is_err());
    }

    #[test]
    fn builds_the_command() {
        let load = Load {
            threads: 1,
            connections: 64,
            seconds: 10,
            host: "web.localhost".into(),
        };
        let (shown, argv) = command(Path::new("wrk"), &load, "http://127.0.0.1:1/", Some("0"));
        assert_eq!(
            shown,
            "taskset -c 0 wrk -t1 -c64 -d10s --latency -H 'Host: web.localhost' http://127.0.0.1:1/"
        );
        assert_eq!(argv[0], "taskset");
        assert_eq!(argv.last().unwrap(), "http://127.0.0.1:1/");
    }
}
