//! Forwarding queries outside the domain to the configured recursors,
//! tried in order, each for at most the recursor timeout. The query is
//! relayed as it came (ID, EDNS and all) so the answer fits the client.

use crate::config::DnsConfig;
use crate::wire;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Asks each recursor over UDP until one answers.
pub async fn udp(config: &DnsConfig, query: &[u8]) -> Option<Vec<u8>> {
    for &recursor in &config.recursors {
        match tokio::time::timeout(config.recursor_timeout, udp_once(recursor, query)).await {
            Ok(Ok(answer)) => return Some(answer),
            Ok(Err(e)) => tracing::debug!(%recursor, error = %e, "recursor failed"),
            Err(_) => tracing::debug!(%recursor, "recursor timed out"),
        }
    }
    None
}

async fn udp_once(recursor: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if recursor.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(recursor).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Only the answer to this query (same ID, a response) counts.
        if n >= wire::HEADER_LEN && buf[..2] == query[..2] && buf[2] & 0x80 != 0 {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

/// Asks each recursor over TCP until one answers.
pub async fn tcp(config: &DnsConfig, query: &[u8]) -> Option<Vec<u8>> {
    for &recursor in &config.recursors {
        match tokio::time::timeout(config.recursor_timeout, tcp_once(recursor, query)).await {
            Ok(Ok(answer)) => return Some(answer),
            Ok(Err(e)) => tracing::debug!(%recursor, error = %e, "recursor failed over TCP"),
            Err(_) => tracing::debug!(%recursor, "recursor timed out over TCP"),
        }
    }
    None
}

async fn tcp_once(recursor: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(recursor).await?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

/// SERVFAIL for `query` (no recursor answered): a header only.
pub fn servfail(query: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let flags = u16::from_be_bytes([query[2], query[3]]) & 0x7900;
    wire::write_rejection(
        &mut out,
        u16::from_be_bytes([query[0], query[1]]),
        flags,
        wire::rcode::SERVFAIL,
    );
    out
}
