//! Who this node is: its name (the hostname by default) and a node ID that
//! stays the same across restarts when there is a data directory.

use anyhow::Context;
use rand::Rng;
use std::path::Path;

/// The machine's hostname, or `shoal` when it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "shoal".to_string())
}

fn new_uuid() -> String {
    let b: [u8; 16] = rand::thread_rng().gen();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]]),
    )
}

/// The node ID kept in `dir/node-id`, created on first use; a fresh one
/// each run when there is no data directory.
pub fn node_id(dir: Option<&Path>) -> anyhow::Result<String> {
    let Some(dir) = dir else {
        return Ok(new_uuid());
    };
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            let id = new_uuid();
            std::fs::write(&path, &id)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
    }
}

/// The local address this host uses to reach `url`'s host (no packet is
/// sent: a UDP socket is only connected), so an agent's node address is
/// one its servers and proxies can reach. Loopback when nothing better.
pub fn route_ip(url: &str) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs, UdpSocket};
    let host_port = url
        .split("://")
        .last()
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or_default();
    let local = || -> Option<IpAddr> {
        let target = host_port.to_socket_addrs().ok()?.next()?;
        let bind = if target.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let socket = UdpSocket::bind(bind).ok()?;
        socket.connect(target).ok()?;
        Some(socket.local_addr().ok()?.ip())
    };
    local()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shape_and_persistence() {
        let id = new_uuid();
        let parts: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 4, 4, 4, 12]);
        let dir = tempfile::tempdir().unwrap();
        let a = node_id(Some(dir.path())).unwrap();
        assert_eq!(node_id(Some(dir.path())).unwrap(), a);
    }

    #[test]
    fn route_ip_of_loopback_servers_is_loopback() {
        let cases = [
            ("http://127.0.0.1:8500", "127.0.0.1"),
            ("127.0.0.1:8500", "127.0.0.1"),
            ("http://[::1]:8500/", "::1"),
            ("http://no-such-host.invalid:1", "127.0.0.1"),
        ];
        for (url, want) in cases {
            assert_eq!(route_ip(url).to_string(), want, "{url}");
        }
    }
}
