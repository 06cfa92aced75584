//! Whether shoal runs inside a container, and the addresses that follow
//! from it. On a host every role listens on 127.0.0.1 by default; in a
//! container loopback is the container's own, so nothing published or on
//! its networks would reach it: there the listen flags default to every
//! address (0.0.0.0), and an address to advertise is the container's own on
//! its default route, never 127.0.0.1 (which no other container reaches).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

/// `SHOAL_IN_CONTAINER=1|0` forces the answer (a VM that looks like a
/// container, a container that should behave like a host).
const FORCE_ENV: &str = "SHOAL_IN_CONTAINER";

/// Why this looks like a container (`/.dockerenv`, ...), or None on a host.
/// Computed once.
pub fn detected() -> Option<&'static str> {
    static WHY: OnceLock<Option<String>> = OnceLock::new();
    WHY.get_or_init(|| {
        detect(
            std::env::var(FORCE_ENV).ok().as_deref(),
            |p| std::path::Path::new(p).exists(),
            |p| std::fs::read_to_string(p).ok(),
        )
    })
    .as_deref()
}

/// The decision, with its inputs passed in (testable without a container).
fn detect(
    force: Option<&str>,
    exists: impl Fn(&str) -> bool,
    read: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    match force.map(str::trim) {
        Some("1" | "true" | "yes") => return Some(format!("{FORCE_ENV}=1")),
        Some("0" | "false" | "no") => return None,
        _ => {}
    }
    for marker in ["/.dockerenv", "/run/.containerenv"] {
        if exists(marker) {
            return Some(marker.to_string());
        }
    }
    // cgroup v1 paths name the runtime (`/docker/<id>`, `/kubepods/...`);
    // under cgroup v2 with a namespace they are `/`, and the markers above decide.
    let cgroup = read("/proc/1/cgroup").unwrap_or_default();
    let runtimes = ["docker", "kubepods", "containerd", "libpod", "lxc"];
    if cgroup
        .lines()
        .any(|l| runtimes.iter().any(|r| l.contains(&format!("/{r}"))))
    {
        return Some("/proc/1/cgroup".to_string());
    }
    None
}

/// The IP every listen flag defaults to: 0.0.0.0 in a container, 127.0.0.1 on a host.
pub fn default_listen_ip() -> IpAddr {
    match detected() {
        Some(_) => Ipv4Addr::UNSPECIFIED.into(),
        None => Ipv4Addr::LOCALHOST.into(),
    }
}

/// The IPv4 default gateway from `/proc/net/route` (in a Docker container:
/// the Docker host's address on the container's first network).
pub fn default_gateway() -> Option<Ipv4Addr> {
    parse_gateway(&std::fs::read_to_string("/proc/net/route").ok()?)
}

fn parse_gateway(table: &str) -> Option<Ipv4Addr> {
    // Iface Destination Gateway Flags ...; hex in host (little-endian) order.
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || f[1] != "00000000" {
            return None;
        }
        let gw = u32::from_str_radix(f[2], 16).ok().filter(|g| *g != 0)?;
        Some(Ipv4Addr::from(gw.swap_bytes()))
    })
}

/// This container's own address on its default route (what its peers on
/// that network reach it at), when there is one.
pub fn own_address() -> Option<IpAddr> {
    let gw = default_gateway()?;
    let ip = crate::identity::route_ip(&format!("{gw}:9"));
    (!ip.is_loopback()).then_some(ip)
}

/// This container's ID when it is one of a Docker daemon's: Docker
/// bind-mounts `/etc/hostname` and `/etc/resolv.conf` from
/// `.../containers/<64 hex ID>/`, which `/proc/self/mountinfo` shows.
pub fn self_id() -> Option<String> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| parse_self_id(&std::fs::read_to_string("/proc/self/mountinfo").ok()?))
        .clone()
}

fn parse_self_id(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        let (_, rest) = line.split_once("/containers/")?;
        let id: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
        (id.len() == 64 && rest[64..].starts_with('/')).then_some(id)
    })
}

/// Says once, at start, that shoal runs in a container and what follows.
pub fn log_defaults() {
    if let Some(why) = detected() {
        tracing::info!(
            detected_by = why,
            own_address = ?own_address(),
            "running in a container: listen addresses default to 0.0.0.0 (every interface); \
             set {FORCE_ENV}=0 to keep 127.0.0.1"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_detection_by_marker_cgroup_and_override() {
        let none = |_: &str| None;
        // (SHOAL_IN_CONTAINER, marker files, /proc/1/cgroup, answer)
        type Case<'a> = (Option<&'a str>, Vec<&'a str>, &'a str, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (None, vec![], "0::/\n", None),
            (None, vec!["/.dockerenv"], "", Some("/.dockerenv")),
            (
                None,
                vec!["/run/.containerenv"],
                "",
                Some("/run/.containerenv"),
            ),
            (
                None,
                vec![],
                "12:pids:/docker/0123abcd\n",
                Some("/proc/1/cgroup"),
            ),
            (
                None,
                vec![],
                "1:name=systemd:/kubepods/besteffort/pod1\n",
                Some("/proc/1/cgroup"),
            ),
            (None, vec![], "1:name=systemd:/user.slice\n", None),
            (Some("0"), vec!["/.dockerenv"], "", None),
            (Some("1"), vec![], "", Some("SHOAL_IN_CONTAINER=1")),
            (Some("maybe"), vec![], "", None),
        ];
        for (force, markers, cgroup, want) in cases {
            let got = detect(
                force,
                |p| markers.contains(&p),
                |p| (p == "/proc/1/cgroup").then(|| cgroup.to_string()),
            );
            assert_eq!(got.as_deref(), want, "{force:?} {markers:?} {cgroup:?}");
        }
        assert_eq!(detect(None, |_| false, none), None);
    }

    #[test]
    fn own_container_id_from_mountinfo() {
        let id = "0123456789abcdef".repeat(4);
        let line = format!(
            "512 498 0:44 /var/lib/docker/containers/{id}/hostname /etc/hostname rw,relatime - ext4 /dev/sda1 rw\n"
        );
        assert_eq!(parse_self_id(&line), Some(id.clone()));
        assert_eq!(parse_self_id("1 2 0:1 / / rw - overlay overlay rw\n"), None);
        assert_eq!(parse_self_id("x /containers/abc/hostname y\n"), None);
        assert_eq!(
            parse_self_id(&format!("x /containers/{id}0/hostname y\n")),
            None
        );
    }

    #[test]
    fn gateway_is_read_from_the_route_table() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                     eth0\t0012A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n\
                     eth0\t00000000\t0112A8C0\t0003\t0\t0\t0\t00000000\n";
        assert_eq!(parse_gateway(table), Some(Ipv4Addr::new(192, 168, 18, 1)));
        assert_eq!(parse_gateway("Iface\tDestination\tGateway\n"), None);
        assert_eq!(parse_gateway("garbage\nx y\n"), None);
    }
}
