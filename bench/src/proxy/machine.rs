//! What this machine offers the throughput benchmark: programs found on
//! `PATH` (or in the sbin directories), and the CPUs to pin the balancer
//! under test and the rest of the benchmark to.

use super::contenders::Pinning;
use std::path::{Path, PathBuf};

/// `program` itself if it is a path, else the first match in `PATH` or
/// the sbin directories (nginx and HAProxy live there on Debian).
pub fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file());
    found
}

/// The last allowed CPU for the balancer under test, the others for the
/// rest; no pinning with `--no-pin`, one CPU, or no `taskset`.
pub fn pinning(no_pin: bool) -> Pinning {
    let cpus = allowed_cpus();
    if no_pin || cpus.len() < 2 || find_program(Path::new("taskset")).is_none() {
        return Pinning::default();
    }
    let (last, rest) = cpus.split_last().expect("two CPUs or more");
    Pinning {
        proxy: Some(last.to_string()),
        rest: Some(
            rest.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
    }
}

/// The CPUs this process may run on (`Cpus_allowed_list`, e.g. `0-3,6`).
fn allowed_cpus() -> Vec<u32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(list) = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
    else {
        return Vec::new();
    };
    parse_cpu_list(list.trim())
}

fn parse_cpu_list(list: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (from, to) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(from), Ok(to)) = (from.trim().parse::<u32>(), to.trim().parse::<u32>()) {
            cpus.extend(from..=to);
        }
    }
    cpus
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1"), vec![0, 1]);
        assert_eq!(parse_cpu_list("0,2-4,7"), vec![0, 2, 3, 4, 7]);
        assert_eq!(parse_cpu_list(""), Vec::<u32>::new());
    }
}
