//! The DNS interface: every name form with `dig` against a real `shoal
//! server`, health filtering, truncation and TCP fallback, forwarding to a
//! recursor, malformed input, and HAProxy discovering backends by SRV.

mod common;

use common::dns::{self, answers, dig, dig_short, dig_status};
use common::stack::{bin, hello};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::json;
use shoal_catalog::{Catalog, Check, HealthStatus, Node, Registration, Registry, Service, Weights};
use shoal_dns::DnsConfig;
use shoal_testkit::{assert_eventually, ServerProcess};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Registers an instance of `service` through the catalog API.
async fn register(server: &ServerProcess, node: &str, node_addr: &str, body: serde_json::Value) {
    let reg = json!({"Node": node, "Address": node_addr, "Service": body});
    let r = common::put_json(server.at("/v1/catalog/register"), &reg).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn dig_answers_every_name_form() {
    let server = ServerProcess::start(
        bin(),
        &[
            "--in-memory",
            "--node-name",
            "node-a",
            "--dns-node-ttl",
            "7s",
            "--dns-service-ttl",
            "w*=3s",
            "--dns-service-ttl",
            "db=1m",
        ],
    );
    let addr = server.dns_addr().expect("DNS address announced");
    register(
        &server,
        "n1",
        "10.0.0.1",
        json!({"ID": "w1", "Service": "web", "Port": 8001, "Tags": ["v1"]}),
    )
    .await;
    register(&server, "n2", "10.0.0.2", json!({"ID": "w2", "Service": "web", "Address": "10.0.1.2", "Port": 8002, "Tags": ["v2"], "Weights": {"Passing": 7, "Warning": 1}})).await;
    register(
        &server,
        "n6",
        "fd00::6",
        json!({"ID": "w6", "Service": "web", "Port": 8006}),
    )
    .await;

    let cases: &[(&[&str], &[&str])] = &[
        (&["web.service.consul"], &["10.0.0.1", "10.0.1.2"]),
        (&["WEB.service.dc1.consul", "A"], &["10.0.0.1", "10.0.1.2"]),
        (&["web.service.consul", "AAAA"], &["fd00::6"]),
        (
            &["web.service.consul", "SRV"],
            &[
                "1 1 8001 n1.node.dc1.consul.",
                "1 1 8006 n6.node.dc1.consul.",
                "1 7 8002 0a000102.addr.dc1.consul.",
            ],
        ),
        (
            &["_web._tcp.service.consul", "SRV"],
            &[
                "1 1 8001 n1.node.dc1.consul.",
                "1 1 8006 n6.node.dc1.consul.",
                "1 7 8002 0a000102.addr.dc1.consul.",
            ],
        ),
        (&["v1.web.service.consul"], &["10.0.0.1"]),
        (
            &["_web._v2.service.consul", "SRV"],
            &["1 7 8002 0a000102.addr.dc1.consul."],
        ),
        (&["n2.node.consul"], &["10.0.0.2"]),
        (&["n2.node.dc1.consul"], &["10.0.0.2"]),
        (&["node-a.node.consul"], &["127.0.0.1"]),
        (&["0a000102.addr.dc1.consul"], &["10.0.1.2"]),
        (
            &["web.service.consul", "SRV", "+tcp"],
            &[
                "1 1 8001 n1.node.dc1.consul.",
                "1 1 8006 n6.node.dc1.consul.",
                "1 7 8002 0a000102.addr.dc1.consul.",
            ],
        ),
    ];
    for (args, want) in cases {
        assert_eq!(dig_short(addr, args), *want, "dig {args:?}");
    }

    // SRV targets come with their addresses.
    let full = dig(addr, &["web.service.consul", "SRV"]);
    assert!(
        full.contains("n1.node.dc1.consul.\t3\tIN\tA\t10.0.0.1"),
        "{full}"
    );
    assert!(
        full.contains("0a000102.addr.dc1.consul. 3\tIN\tA\t10.0.1.2"),
        "{full}"
    );
    assert!(full.contains("flags: qr aa rd;"), "{full}");

    // TTLs: per service (wildcard), per node.
    let ttl_of = |args: &[&str]| {
        let mut full = vec!["+noall", "+answer"];
        full.extend_from_slice(args);
        let out = dig(addr, &full);
        out.lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(ttl_of(&["web.service.consul"]), "3");
    assert_eq!(ttl_of(&["web.service.consul", "SRV"]), "3");
    assert_eq!(ttl_of(&["n1.node.consul"]), "7");

    // NXDOMAIN for names that do not exist, NOERROR without answer for a
    // type they do not have; an SOA in both.
    for (args, status) in [
        (&["db.service.consul"][..], "NXDOMAIN"),
        (&["v3.web.service.consul"], "NXDOMAIN"),
        (&["web.service.dc2.consul"], "NXDOMAIN"),
        (&["n9.node.consul"], "NXDOMAIN"),
        (&["web.nothing.consul"], "NXDOMAIN"),
        (&["web.service.consul", "TXT"], "NOERROR"),
        (&["n6.node.consul", "A"], "NOERROR"),
        (&["v1.web.service.consul", "AAAA"], "NOERROR"),
    ] {
        let out = dig(addr, args);
        assert_eq!(dig_status(&out), status, "dig {args:?}:\n{out}");
        assert!(out.contains("ANSWER: 0,"), "{out}");
        assert!(
            out.contains("IN\tSOA\tns.consul. hostmaster.consul."),
            "dig {args:?}:\n{out}"
        );
    }
    // Without a recursor, other names are refused.
    assert_eq!(dig_status(&dig(addr, &["example.com"])), "REFUSED");
}

fn instance(node: &str, id: &str, port: u16, status: HealthStatus) -> Registration {
    Registration {
        node: Node {
            name: node.into(),
            address: "127.0.0.1".into(),
            ..Default::default()
        },
        service: Some(Service {
            id: id.into(),
            name: "api".into(),
            address: format!("127.0.1.{}", port % 250),
            port,
            weights: Weights {
                passing: 5,
                warning: 2,
            },
            ..Default::default()
        }),
        checks: vec![Check {
            node: node.into(),
            check_id: format!("{id}-check"),
            service_id: id.into(),
            status,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn only_instances_that_are_not_critical_are_answered() {
    let registry = Registry::in_memory();
    let ttl = shoal_dns::ServiceTtl::parse(&["api=45s"]).unwrap();
    let (addr, _dns) = dns::serve(
        registry.clone(),
        DnsConfig {
            service_ttl: ttl,
            ..DnsConfig::default()
        },
    )
    .await;
    for (id, port, status) in [
        ("a1", 1001, HealthStatus::Passing),
        ("a2", 1002, HealthStatus::Warning),
        ("a3", 1003, HealthStatus::Critical),
    ] {
        registry
            .register(instance("n", id, port, status))
            .await
            .unwrap();
    }
    let (m, _) = dns::udp(addr, "api.service.consul.", RecordType::SRV, None).await;
    assert_eq!(
        answers(&m),
        [
            "1001 5 7f000101.addr.dc1.consul.",
            "1002 2 7f000102.addr.dc1.consul."
        ],
        "warning instances keep their warning weight, critical ones are gone"
    );
    assert!(m.answers().iter().all(|r| r.ttl() == 45), "service TTL");
    registry
        .update_check("n", "a1-check", HealthStatus::Critical, None)
        .await
        .unwrap();
    let (m, _) = dns::udp(addr, "api.service.consul.", RecordType::A, None).await;
    assert_eq!(answers(&m), ["127.0.1.2"]);
    registry
        .update_check("n", "a2-check", HealthStatus::Critical, None)
        .await
        .unwrap();
    let (m, _) = dns::udp(addr, "api.service.consul.", RecordType::A, None).await;
    assert_eq!(
        m.response_code(),
        ResponseCode::NXDomain,
        "no instance left"
    );
    registry
        .update_check("n", "a3-check", HealthStatus::Passing, None)
        .await
        .unwrap();
    let m = dns::tcp(addr, "api.service.consul.", RecordType::A).await;
    assert_eq!(answers(&m), ["127.0.1.3"]);
}

// Multi-threaded: dig blocks a thread while the in-process server answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_answers_are_truncated_over_udp_and_complete_over_tcp() {
    let registry = Registry::in_memory();
    let (addr, _dns) = dns::serve(registry.clone(), DnsConfig::default()).await;
    for i in 0..100u16 {
        registry
            .register(instance(
                &format!("node{i}"),
                &format!("i{i}"),
                2000 + i,
                HealthStatus::Passing,
            ))
            .await
            .unwrap();
    }
    for (edns, limit) in [
        (None, 512),
        (Some(1232), 1232),
        (Some(100), 512),
        (Some(65000), 4096),
    ] {
        let (m, size) = dns::udp(addr, "api.service.consul.", RecordType::SRV, edns).await;
        assert!(m.truncated(), "{edns:?}");
        assert!(size <= limit && size > limit - 80, "{edns:?}: {size} bytes");
        assert!(!m.answers().is_empty() && m.answers().len() < 100);
        assert_eq!(
            m.additionals()
                .iter()
                .filter(|r| r.record_type() == RecordType::A)
                .count(),
            m.answers().len()
        );
    }
    let m = dns::tcp(addr, "api.service.consul.", RecordType::SRV).await;
    assert!(!m.truncated());
    assert_eq!((m.answers().len(), m.additionals().len()), (100, 100));

    // Each answer is shuffled: the first record varies.
    let mut firsts = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let (m, _) = dns::udp(addr, "api.service.consul.", RecordType::A, None).await;
        firsts.insert(m.answers()[0].data().to_string());
    }
    assert!(firsts.len() > 3, "{firsts:?}");

    // dig falls back to TCP by itself and gets everything.
    let out = dig(addr, &["+noedns", "api.service.consul", "SRV"]);
    assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
    assert!(out.contains("ANSWER: 100,"), "{out}");
}

#[tokio::test]
async fn names_outside_the_domain_go_to_the_recursor() {
    let other = ServerProcess::start(
        bin(),
        &[
            "--in-memory",
            "--dns-domain",
            "other.",
            "--node-name",
            "far",
        ],
    );
    let other_dns = other.dns_addr().unwrap().to_string();
    register(
        &other,
        "far",
        "10.9.9.9",
        json!({"ID": "r1", "Service": "remote", "Port": 9}),
    )
    .await;
    let server = ServerProcess::start(bin(), &["--in-memory", "--recursor", &other_dns]);
    let addr = server.dns_addr().unwrap();
    for transport in ["+notcp", "+tcp"] {
        assert_eq!(
            dig_short(addr, &[transport, "remote.service.other"]),
            ["10.9.9.9"],
            "{transport}"
        );
        assert_eq!(
            dig_short(addr, &[transport, "_remote._tcp.service.other", "SRV"]),
            ["1 1 9 far.node.dc1.other."]
        );
        let out = dig(addr, &[transport, "nothing.service.other"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{out}");
    }
    // Its own domain is still its own.
    assert_eq!(
        dig_short(addr, &["other.node.consul"]),
        Vec::<String>::new()
    );
    // A recursor that does not answer: SERVFAIL, not silence forever.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let lonely = ServerProcess::start(
        bin(),
        &[
            "--in-memory",
            "--recursor",
            &dead.local_addr().unwrap().to_string(),
        ],
    );
    let out = dig(lonely.dns_addr().unwrap(), &["+time=5", "example.org"]);
    assert_eq!(dig_status(&out), "SERVFAIL", "{out}");
}

#[tokio::test]
async fn malformed_input_is_dropped_or_refused_and_serving_goes_on() {
    let registry = Registry::in_memory();
    registry
        .register(instance("n", "m1", 3001, HealthStatus::Passing))
        .await
        .unwrap();
    let (addr, _dns) = dns::serve(registry.clone(), DnsConfig::default()).await;
    let valid = dns::query("api.service.consul.", RecordType::A, None);
    let mut garbage: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("short", vec![1, 2, 3]),
        ("header only", vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
        ("truncated question", valid[..valid.len() - 3].to_vec()),
        ("a response", {
            let mut v = valid.clone();
            v[2] |= 0x80;
            v
        }),
        ("label past the end", {
            let mut v = valid.clone();
            v[12] = 63;
            v
        }),
        ("pointer loop", {
            let mut v = valid[..12].to_vec();
            v.extend([0xC0, 12, 0, 1, 0, 1]);
            v
        }),
        ("huge", vec![0xAB; 4000]),
        ("many counts", {
            let mut v = valid.clone();
            v[4..12].copy_from_slice(&[0xFF; 8]);
            v
        }),
    ];
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for n in 0..200 {
        let len = 12 + n % 80;
        let bytes = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        garbage.push(("random", bytes));
    }
    // Each piece of garbage is followed by a valid query from the same
    // socket: once its answer is in, whatever the garbage got is too. What
    // garbage gets is a bare header (FORMERR, NOTIMP) or nothing.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0u8; 65535];
    let mut replies_to_garbage = 0;
    for (what, packet) in &garbage {
        socket.send_to(packet, addr).await.unwrap();
        socket.send_to(&valid, addr).await.unwrap();
        loop {
            let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("{what}: the server stopped answering"))
                .unwrap();
            if n > 12 && buf[..2] == valid[..2] {
                break;
            }
            assert_eq!(n, 12, "{what}: {n}-byte answer to garbage");
            assert_eq!(buf[2] & 0x80, 0x80, "{what}: answers are responses");
            replies_to_garbage += 1;
        }
    }
    assert!(replies_to_garbage > 0, "malformed queries get FORMERR");
    // TCP: a zero-length frame, a frame shorter than a header, a frame cut
    // short, a length with nothing after it, garbage in a full frame.
    for frame in [
        &[0u8, 0][..],
        &[0, 5, 1, 2, 3, 4, 5],
        &[0, 200, 1, 2, 3],
        &[0xFF, 0xFF],
        &[
            0, 12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ],
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(frame).await.unwrap();
        drop(s);
    }
    let (m, _) = dns::udp(addr, "api.service.consul.", RecordType::A, None).await;
    assert_eq!(answers(&m), ["127.0.1.1"]);
    assert_eq!(
        answers(&dns::tcp(addr, "api.service.consul.", RecordType::A).await),
        ["127.0.1.1"]
    );
}

/// A free TCP port on 127.0.0.1 (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn haproxy_discovers_backends_through_srv_records() {
    dns::require("haproxy", "haproxy");
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    let dns_addr: SocketAddr = server.dns_addr().unwrap();
    let backends = [hello("hello"), hello("hello")];
    for b in &backends {
        register(
            &server,
            "host-1",
            "127.0.0.1",
            json!({"ID": b.id, "Service": "hello", "Address": "127.0.0.1", "Port": b.port}),
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "global\n  maxconn 100\n\
         defaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
         resolvers shoal\n  nameserver shoal {dns_addr}\n  accepted_payload_size 8192\n  hold valid 1s\n  resolve_retries 3\n  timeout resolve 100ms\n  timeout retry 200ms\n\
         frontend web\n  bind 127.0.0.1:{port}\n  default_backend hello\n\
         backend hello\n  balance roundrobin\n  server-template hello 4 _hello._tcp.service.consul resolvers shoal resolve-prefer ipv4 init-addr none\n"
    );
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, config).unwrap();
    let mut haproxy = std::process::Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start haproxy");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://127.0.0.1:{port}/json");
    let mut seen = std::collections::BTreeSet::new();
    assert_eventually!(
        @with Duration::from_secs(20),
        {
            if let Ok(r) = client.get(&url).send().await {
                if let Ok(v) = r.json::<serde_json::Value>().await {
                    if let Some(id) = v["id"].as_str() {
                        seen.insert(id.to_string());
                    }
                }
            }
            seen.len() == backends.len()
        },
        "HAProxy never reached every instance through shoal's SRV records (seen {seen:?})"
    );
    let want: std::collections::BTreeSet<String> = backends.iter().map(|b| b.id.clone()).collect();
    assert_eq!(seen, want);
    let _ = haproxy.kill();
    let _ = haproxy.wait();
}

#[test]
fn dns_port_taken_is_a_clear_error() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(bin())
        .args([
            "server",
            "--in-memory",
            "--http-addr",
            "127.0.0.1:0",
            "--dns-addr",
            &addr,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("cannot listen on {addr} for DNS")),
        "{err}"
    );
    assert!(err.contains("in use"), "{err}");
    let out = std::process::Command::new(bin())
        .args([
            "server",
            "--in-memory",
            "--http-addr",
            "127.0.0.1:0",
            "--dns-addr",
            "127.0.0.1:0",
            "--dns-service-ttl",
            "web",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("NAME=DURATION"), "{err}");
}

#[test]
fn shoal_dev_answers_dns_for_its_demo_instances() {
    let (dev, _proxy) = ServerProcess::start_dev(bin(), &["--demo", "2"]);
    let addr = dev.dns_addr().expect("shoal dev announces its DNS address");
    let srv = dig_short(addr, &["_hello._demo.service.consul", "SRV"]);
    assert_eq!(srv.len(), 2, "{srv:?}");
    assert_eq!(dig_short(addr, &["hello.service.consul"]), ["127.0.0.1"]);
}
