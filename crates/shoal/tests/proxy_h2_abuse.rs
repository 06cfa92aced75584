//! HTTP/2 abuse against the proxy's h2c listener, from a hand-made frame
//! writer: rapid reset (CVE-2023-44487), a CONTINUATION flood, SETTINGS
//! and PING floods, and a header block over the limit each end with the
//! connection closed by the proxy, at a bounded cost in CPU and memory,
//! and the proxy serves the next client as before.

mod common;

use common::stack::bin;
use shoal_testkit::ServerProcess;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK literal header field without indexing, with a literal name.
fn literal(name: &str, value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x00];
    out.extend(length(name.len()));
    out.extend_from_slice(name.as_bytes());
    out.extend(length(value.len()));
    out.extend_from_slice(value);
    out
}

/// An HPACK string length (7-bit prefix, no Huffman).
fn length(mut n: usize) -> Vec<u8> {
    if n < 127 {
        return vec![n as u8];
    }
    let mut out = vec![127];
    n -= 127;
    while n >= 128 {
        out.push((n % 128 + 128) as u8);
        n /= 128;
    }
    out.push(n as u8);
    out
}

/// GET / for hello.localhost: :method GET, :scheme http, :path / from the
/// static table, :authority with the static name.
fn get_block() -> Vec<u8> {
    let mut b = vec![0x82, 0x86, 0x84, 0x01];
    b.extend(length(b"hello.localhost".len()));
    b.extend_from_slice(b"hello.localhost");
    b
}

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// Connects, sends the preface and an empty SETTINGS, then `attack` in
/// writes of ~64 KiB while another thread reads; true when the proxy
/// closed the connection within 10 s of the attack being sent (or of a
/// write failing because it had).
fn closed_by_proxy(port: u16, attack: &[u8]) -> bool {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = conn.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        let closed = loop {
            match reader.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break false,
                Err(_) => break true,
            }
        };
        let _ = tx.send(closed);
    });
    let mut start = PREFACE.to_vec();
    start.extend(frame(0x4, 0, 0, &[]));
    if conn.write_all(&start).is_err() {
        return true;
    }
    for chunk in attack.chunks(64 * 1024) {
        if conn.write_all(chunk).is_err() {
            break;
        }
    }
    rx.recv_timeout(Duration::from_secs(15)).unwrap_or(false)
}

/// CPU seconds (user + system) and resident KiB of `pid`.
fn cost(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // After the command name: state is field 3, utime 14 and stime 15.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    (ticks as f64 / 100.0, rss)
}

fn h2c_get(port: u16) -> bool {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "--http2-prior-knowledge",
            "-o/dev/null",
        ])
        .args(["-w", "%{http_code}", "-H", "Host: hello.localhost"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout) == "200"
}

#[test]
fn abusive_http2_clients_are_closed_at_a_bounded_cost() {
    let (dev, proxy) = ServerProcess::start_dev(bin(), &["--demo", "1", "--no-docker"]);
    let port: u16 = proxy.rsplit(':').next().unwrap().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !h2c_get(port) {
        assert!(
            Instant::now() < deadline,
            "the demo instance never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut rapid_reset = Vec::new();
    for i in 0..20_000u32 {
        let id = 1 + 2 * i;
        rapid_reset.extend(frame(0x1, END_STREAM | END_HEADERS, id, &get_block()));
        rapid_reset.extend(frame(0x3, 0, id, &8u32.to_be_bytes()));
    }
    let mut continuation = frame(0x1, END_STREAM, 1, &get_block());
    let filler = literal("x-filler", &[b'a'; 990]);
    for _ in 0..10_000 {
        continuation.extend(frame(0x9, 0, 1, &filler));
    }
    let mut settings = Vec::new();
    for _ in 0..100_000 {
        settings.extend(frame(0x4, 0, 0, &[0x00, 0x03, 0, 0, 0, 100]));
    }
    let mut pings = Vec::new();
    for i in 0..100_000u64 {
        pings.extend(frame(0x6, 0, 0, &i.to_be_bytes()));
    }
    // One header block of ~100 KiB: 16 KiB frames, over the 64 KiB limit.
    let mut oversize = get_block();
    oversize.extend(literal("x-big", &vec![b'b'; 100 * 1024]));
    let parts: Vec<&[u8]> = oversize.chunks(16 * 1024).collect();
    let mut big = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let (kind, flags) = if i == 0 { (0x1, END_STREAM) } else { (0x9, 0) };
        big.extend(frame(
            kind,
            flags | if last { END_HEADERS } else { 0 },
            1,
            part,
        ));
    }

    let (cpu_before, rss_before) = cost(dev.pid());
    for (name, attack) in [
        ("rapid reset", &rapid_reset),
        ("CONTINUATION flood", &continuation),
        ("SETTINGS flood", &settings),
        ("PING flood", &pings),
        ("oversize header block", &big),
    ] {
        assert!(
            closed_by_proxy(port, attack),
            "{name}: the proxy kept the connection open"
        );
        assert!(h2c_get(port), "after the {name}, a client is served");
    }
    let (cpu_after, rss_after) = cost(dev.pid());
    let cpu = cpu_after - cpu_before;
    let grown = rss_after.saturating_sub(rss_before);
    eprintln!("abuse cost: {cpu:.2} s CPU, RSS {rss_before} -> {rss_after} KiB");
    // Five attacks of up to 1.2 MB each: the proxy reads a little of each
    // and closes; generous bounds that an unbounded loop or buffer breaks.
    assert!(cpu < 10.0, "{cpu:.2} s of CPU for the attacks");
    assert!(grown < 128 * 1024, "RSS grew {grown} KiB");
    let metrics = reqwest_blocking_get(&dev.at("/v1/proxy/stats"));
    let closed = metrics["proxy"]["h2_abuse"].as_u64().unwrap();
    assert!(
        closed >= 3,
        "connections closed for abuse counted: {metrics}"
    );
}

fn reqwest_blocking_get(url: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", url])
        .output()
        .expect("curl runs");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Frame types read from `conn` until it closes (at most 10 s).
fn frames_until_closed(conn: &mut TcpStream) -> (Vec<u8>, bool) {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        match conn.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    let mut kinds = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = usize::from(bytes[at]) << 16
            | usize::from(bytes[at + 1]) << 8
            | usize::from(bytes[at + 2]);
        kinds.push(bytes[at + 3]);
        at += 9 + len;
    }
    (kinds, closed)
}

#[tokio::test]
async fn idle_http2_connections_are_closed_with_goaway() {
    let cfg = shoal_proxy::ProxyConfig {
        h2_idle_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let s = common::stack::Stack::start(cfg).await;
    let addr = s.addr;
    let (kinds, closed) = tokio::task::spawn_blocking(move || {
        let mut conn = TcpStream::connect(addr).unwrap();
        let mut start = PREFACE.to_vec();
        start.extend(frame(0x4, 0, 0, &[]));
        conn.write_all(&start).unwrap();
        let started = Instant::now();
        let seen = frames_until_closed(&mut conn);
        eprintln!("idle connection closed after {:?}", started.elapsed());
        seen
    })
    .await
    .unwrap();
    assert!(closed, "the idle connection stayed open");
    assert!(kinds.contains(&0x7), "closed with GOAWAY: frames {kinds:?}");
}
