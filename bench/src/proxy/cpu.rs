//! CPU time from `/proc` (Linux), to tell which process was the
//! bottleneck of a run: a process tree's user+system time (a process and
//! its children, e.g. an nginx master and its worker), the time of this
//! process's reaped children (wrk, once it has exited), and its own.
//! Elsewhere every figure reads as zero.

use std::time::Duration;

/// Clock ticks per second of `/proc` times (`getconf CLK_TCK`, else 100).
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// The fields after `(comm)` of a `/proc/<pid>/stat` line: state is [0],
/// ppid [1], utime [11], stime [12], cutime [13], cstime [14].
fn stat_fields(stat: &str) -> Option<Vec<u64>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

fn read_stat(pid: &str) -> Option<Vec<u64>> {
    stat_fields(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// User+system ticks of `pid` and of its direct children.
pub fn tree_ticks(pid: u32) -> u64 {
    let own = |f: &[u64]| f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    let mut total = read_stat(&pid.to_string()).map_or(0, |f| own(&f));
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return total;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Some(f) = read_stat(&name) {
            if f.get(1) == Some(&u64::from(pid)) {
                total += own(&f);
            }
        }
    }
    total
}

/// User+system ticks of this process's own threads (the edge
/// benchmark's TLS client runs in it).
pub fn self_ticks() -> u64 {
    read_stat("self").map_or(0, |f| {
        f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
    })
}

/// User+system ticks of this process's children that have exited and
/// been waited for.
pub fn reaped_children_ticks() -> u64 {
    read_stat("self").map_or(0, |f| {
        f.get(13).copied().unwrap_or(0) + f.get(14).copied().unwrap_or(0)
    })
}

/// `ticks` over `wall` as a percentage of one core.
pub fn percent(ticks: u64, per_second: u64, wall: Duration) -> f64 {
    if wall.is_zero() || per_second == 0 {
        return 0.0;
    }
    100.0 * ticks as f64 / per_second as f64 / wall.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stat_fields_after_the_command_name() {
        let line = "42 (nginx: worker (x)) S 41 42 42 0 -1 4194624 10 0 0 0 7 3 5 6 20 0 1";
        let f = stat_fields(line).unwrap();
        assert_eq!(f[1], 41);
        assert_eq!((f[11], f[12], f[13], f[14]), (7, 3, 5, 6));
        assert_eq!(percent(150, 100, Duration::from_secs(1)), 150.0);
        assert!(tree_ticks(std::process::id()) < u64::MAX);
    }
}
