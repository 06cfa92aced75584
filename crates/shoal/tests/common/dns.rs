//! DNS helpers: an in-process DNS server on a registry, a small client on
//! hickory-proto over UDP and TCP, and `dig`.
#![allow(dead_code)]

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use shoal_catalog::Registry;
use shoal_dns::DnsConfig;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::{CancellationToken, DropGuard};

/// Serves DNS for `registry` on 127.0.0.1 port 0 until the guard drops.
pub async fn serve(registry: Arc<Registry>, config: DnsConfig) -> (SocketAddr, DropGuard) {
    let (udp, tcp) = shoal_dns::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = udp.local_addr().unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(shoal_dns::serve(udp, tcp, registry, config, cancel.clone()));
    (addr, cancel.drop_guard())
}

/// A query for `name`/`rtype`, with EDNS advertising `edns` bytes if given.
pub fn query(name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(rand_id()).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn rand_id() -> u16 {
    use std::time::SystemTime;
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u16
}

/// Sends `packet` over UDP; the raw answer, or `None` after 2 s.
pub async fn udp_raw(addr: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(packet, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Asks over UDP; the decoded answer and its size on the wire.
pub async fn udp(
    addr: SocketAddr,
    name: &str,
    rtype: RecordType,
    edns: Option<u16>,
) -> (Message, usize) {
    let packet = query(name, rtype, edns);
    let raw = udp_raw(addr, &packet)
        .await
        .unwrap_or_else(|| panic!("no UDP answer for {name} {rtype}"));
    let m = Message::from_vec(&raw).unwrap_or_else(|e| panic!("{name}: undecodable: {e}"));
    assert_eq!(m.id(), u16::from_be_bytes([packet[0], packet[1]]));
    (m, raw.len())
}

/// Asks over TCP (one connection per query).
pub async fn tcp(addr: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let packet = query(name, rtype, None);
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend(&packet);
    s.write_all(&framed).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut len))
        .await
        .expect("TCP answer in time")
        .unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

/// The answer section as sorted strings: addresses, or
/// `port weight target` for SRV.
pub fn answers(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers()
        .iter()
        .map(|r| match r.data() {
            RData::A(a) => a.0.to_string(),
            RData::AAAA(a) => a.0.to_string(),
            RData::SRV(s) => format!("{} {} {}", s.port(), s.weight(), s.target()),
            other => other.to_string(),
        })
        .collect();
    v.sort();
    v
}

/// Fails with how to get `tool` when it is not installed.
pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: run scripts/test as root (it installs {package}) \
         or `apt-get install {package}`"
    );
}

/// Runs `dig @127.0.0.1 -p PORT ARGS...` and returns its stdout.
pub fn dig(addr: SocketAddr, args: &[&str]) -> String {
    require("dig", "bind9-dnsutils");
    let out = Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dig +short` lines, sorted.
pub fn dig_short(addr: SocketAddr, args: &[&str]) -> Vec<String> {
    let mut full = vec!["+short"];
    full.extend_from_slice(args);
    let mut v: Vec<String> = dig(addr, &full).lines().map(str::to_string).collect();
    v.sort();
    v
}

/// The `status: X` of a full dig answer.
pub fn dig_status(output: &str) -> &str {
    output
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in dig output:\n{output}"))
}
