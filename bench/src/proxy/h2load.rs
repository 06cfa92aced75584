//! Running h2load (nghttp2's HTTP/2 load generator; closed loop: each
//! client keeps `-m` streams open on one connection) in timing-based mode
//! (`-D`), and reading its report: requests/s, the outcome counts, the
//! protocols negotiated, and latency percentiles from its per-request
//! `--log-file`.

use super::fleet::{command_line, pinned};
use super::wrk::duration;
use crate::stats::Summary;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One h2load run's settings.
#[derive(Clone)]
pub struct Load {
    /// Native threads (`-t`).
    pub threads: u32,
    /// Connections (`-c`).
    pub clients: u32,
    /// Concurrent streams per connection (`-m`).
    pub streams: u32,
    /// Measured duration (`-D`).
    pub seconds: u64,
    /// Unmeasured time before it (`--warm-up-time`), 0 for none.
    pub warmup: u64,
    /// `:authority` of every request.
    pub authority: String,
}

/// What h2load reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Requests per second over the measured duration.
    pub rate: f64,
    /// Requests done.
    pub done: u64,
    /// Requests answered 2xx.
    pub ok_2xx: u64,
    /// Requests h2load counted as failed (errored, timed out, or not 2xx/3xx).
    pub failed: u64,
    /// `TLS Protocol:` (e.g. `TLSv1.3`).
    pub tls: String,
    /// `Application protocol:` (`h2` when HTTP/2 was negotiated).
    pub protocol: String,
    /// Mean of `time for request`.
    pub mean: Duration,
    /// Largest `time for request`.
    pub max: Duration,
    /// Percentiles from the log file, if it had lines.
    pub latency: Option<Summary>,
}

/// The h2load command for `url` (pinned to `cpus` if given), writing its
/// per-request log to `log`.
pub fn command(
    h2load: &Path,
    load: &Load,
    url: &str,
    log: &Path,
    cpus: Option<&str>,
) -> (String, Vec<String>) {
    let mut args = vec![
        format!("-t{}", load.threads),
        format!("-c{}", load.clients),
        format!("-m{}", load.streams),
        "-D".into(),
        load.seconds.to_string(),
    ];
    if load.warmup > 0 {
        args.extend(["--warm-up-time".into(), load.warmup.to_string()]);
    }
    args.extend([
        "-H".into(),
        // h2load answers `host:` with both headers (nginx then says 400).
        format!(":authority: {}", load.authority),
        "--log-file".into(),
        log.display().to_string(),
        url.to_string(),
    ]);
    let (program, argv) = pinned(cpus, h2load, &args);
    let shown = command_line(&program, &argv);
    let mut all = vec![program.display().to_string()];
    all.extend(argv);
    (shown, all)
}

/// Runs h2load (bounded: killed 30 s after its planned end), then parses
/// its report and its log file `log` (removed first: h2load appends).
pub async fn run(argv: &[String], load: &Load, log: &PathBuf) -> Result<Report> {
    let (program, args) = argv.split_first().ok_or_else(|| anyhow!("empty command"))?;
    let _ = std::fs::remove_file(log);
    let child = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output();
    let limit = Duration::from_secs(load.seconds + load.warmup + 30);
    let output = tokio::time::timeout(limit, child)
        .await
        .map_err(|_| anyhow!("h2load did not finish within {limit:?}"))?
        .with_context(|| format!("cannot run {program}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "h2load failed ({}): {}{}",
            output.status,
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut report =
        parse(&text).with_context(|| format!("cannot read h2load's report:\n{text}"))?;
    let lines = std::fs::read_to_string(log).unwrap_or_default();
    report.latency = Summary::of(&latencies(&lines));
    Ok(report)
}

/// Reads h2load's report.
pub fn parse(text: &str) -> Result<Report> {
    let mut r = Report::default();
    let mut seen_finished = false;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            // `finished in 5.00s, 34567.80 req/s, 1.23MB/s`
            let rate = rest
                .split(", ")
                .nth(1)
                .and_then(|r| r.strip_suffix(" req/s"))
                .ok_or_else(|| anyhow!("no req/s in {line:?}"))?;
            r.rate = rate.parse()?;
            seen_finished = true;
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            // `N total, N started, N done, N succeeded, N failed, N errored, N timeout`
            r.done = count(rest, "done")?;
            r.failed = count(rest, "failed")?;
        } else if let Some(rest) = line.strip_prefix("status codes: ") {
            r.ok_2xx = count(rest, "2xx")?;
        } else if let Some(rest) = line.strip_prefix("TLS Protocol: ") {
            r.tls = rest.trim().to_string();
        } else if let Some(rest) = line.strip_prefix("Application protocol: ") {
            r.protocol = rest.trim().to_string();
        } else if let Some(rest) = line.strip_prefix("time for request:") {
            // min max mean sd +/-sd
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let [_min, max, mean, ..] = words.as_slice() {
                r.max = duration(max)?;
                r.mean = duration(mean)?;
            }
        }
    }
    if !seen_finished {
        bail!("no `finished in` line");
    }
    Ok(r)
}

/// `N what` in a comma-separated list of counts.
fn count(list: &str, what: &str) -> Result<u64> {
    list.split(',')
        .map(str::trim)
        .find_map(|part| part.strip_suffix(what).map(str::trim))
        .ok_or_else(|| anyhow!("no {what:?} in {list:?}"))?
        .parse()
        .map_err(|e| anyhow!("{what:?} in {list:?}: {e}"))
}

/// The third column (microseconds to the end of the answer) of every
/// line of h2load's `--log-file` (start time, status, microseconds).
pub fn latencies(log: &str) -> Vec<Duration> {
    log.lines()
        .filter_map(|line| line.split('\t').nth(2)?.trim().parse::<u64>().ok())
        .map(Duration::from_micros)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "starting benchmark...
spawning thread #0: 16 total client(s). Timing-based test with 1s of warm-up time and 5s of main duration for measurements.
TLS Protocol: TLSv1.3
Cipher: TLS_AES_128_GCM_SHA256
Server Temp Key: X25519 253 bits
Application protocol: h2
Main benchmark duration is over for thread #0. Stopping all clients.

finished in 6.00s, 23560.00 req/s, 1.53MB/s
requests: 117800 total, 117816 started, 117800 done, 117790 succeeded, 10 failed, 4 errored, 0 timeout
status codes: 117794 2xx, 0 3xx, 6 4xx, 0 5xx
traffic: 7.50MB (7864320) total, 2.00MB headers (space savings 51.02%), 1.00MB data
                     min         max         mean         sd        +/- sd
time for request:       28us     16.99ms       601us      1.42ms    90.55%
time for connect:     3.68ms      3.68ms      3.68ms         0us   100.00%
";

    #[test]
    fn reads_a_report() {
        let r = parse(SAMPLE).unwrap();
        assert!((r.rate - 23560.0).abs() < 1e-9);
        assert_eq!((r.done, r.failed, r.ok_2xx), (117_800, 10, 117_794));
        assert_eq!((r.tls.as_str(), r.protocol.as_str()), ("TLSv1.3", "h2"));
        assert_eq!(r.mean, Duration::from_micros(601));
        assert_eq!(r.max, Duration::from_micros(16_990));
        assert!(parse("starting benchmark...\n").is_err());
        let log = "1796692689422722\t200\t4219\n1796692689422724\t200\t4350\nbad\n";
        assert_eq!(
            latencies(log),
            vec![Duration::from_micros(4219), Duration::from_micros(4350)]
        );
    }

    #[test]
    fn builds_the_command() {
        let load = Load {
            threads: 1,
            clients: 16,
            streams: 10,
            seconds: 5,
            warmup: 1,
            authority: "web.localhost".into(),
        };
        let (shown, argv) = command(
            Path::new("h2load"),
            &load,
            "https://127.0.0.1:1/",
            Path::new("/tmp/h2.log"),
            Some("0"),
        );
        assert_eq!(
            shown,
            "taskset -c 0 h2load -t1 -c16 -m10 -D 5 --warm-up-time 1 \
             -H ':authority: web.localhost' --log-file /tmp/h2.log https://127.0.0.1:1/"
        );
        assert_eq!(argv.last().unwrap(), "https://127.0.0.1:1/");
    }
}
