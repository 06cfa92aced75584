//! Answers checked by an independent decoder (hickory-proto).

use super::*;
use crate::config::ServiceTtl;
use hickory_proto::op::{Edns, Message, Query as HQuery, ResponseCode};
use hickory_proto::rr::{Name as HName, RData, RecordType};
use shoal_catalog::{Catalog, Check, HealthStatus, Node, Registration, Registry, Service, Weights};
use std::collections::BTreeSet;

async fn catalog() -> View {
    let r = Registry::in_memory();
    let reg =
        |node: &str, node_addr: &str, id: &str, addr: &str, tags: &[&str], status: HealthStatus| {
            Registration {
                node: Node {
                    name: node.into(),
                    address: node_addr.into(),
                    meta: [
                        ("rack", format!("r-{node}")),
                        ("rfc1035-note", "plain".into()),
                    ]
                    .map(|(k, v)| (k.to_string(), v))
                    .into(),
                    ..Default::default()
                },
                service: Some(Service {
                    id: id.into(),
                    name: "web".into(),
                    address: addr.into(),
                    port: 8000 + id.len() as u16,
                    tags: tags.iter().map(|t| t.to_string()).collect(),
                    weights: Weights {
                        passing: 10,
                        warning: 3,
                    },
                    ..Default::default()
                }),
                checks: vec![Check {
                    node: node.into(),
                    check_id: format!("check-{id}"),
                    service_id: id.into(),
                    status,
                    ..Default::default()
                }],
                ..Default::default()
            }
        };
    use HealthStatus::*;
    for reg in [
        reg("n1", "10.0.0.1", "w1", "", &["primary", "v1"], Passing),
        reg("n2", "10.0.0.2", "w22", "10.0.1.2", &["v1"], Warning),
        reg("n3", "10.0.0.3", "w333", "10.0.1.3", &["primary"], Critical),
        reg("n4", "fd00::4", "w4444", "", &["v6"], Passing),
    ] {
        r.register(reg).await.unwrap();
    }
    let config = DnsConfig {
        service_ttl: ServiceTtl::parse(&["web=30s"]).unwrap(),
        ..DnsConfig::default()
    };
    View::build(&r.snapshot(), &config)
}

fn ask(view: &View, name: &str, rtype: RecordType, edns: Option<u16>, limit: usize) -> Message {
    ask_as(view, None, name, rtype, edns, limit)
}

fn ask_as(
    view: &View,
    authz: Option<&Authorizer>,
    name: &str,
    rtype: RecordType,
    edns: Option<u16>,
    limit: usize,
) -> Message {
    let mut m = Message::new();
    m.set_id(7).set_recursion_desired(true);
    m.add_query(HQuery::query(HName::from_ascii(name).unwrap(), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    let packet = m.to_vec().unwrap();
    let q = Query::parse(&packet).unwrap();
    let mut out = Vec::new();
    let responder = Responder::new(&DnsConfig::default());
    assert_eq!(
        responder.respond(
            &q,
            view,
            &Default::default(),
            authz,
            &mut Scratch::default(),
            &mut out,
            limit
        ),
        Outcome::Answered
    );
    assert!(out.len() <= limit, "{name}: {} > {limit}", out.len());
    Message::from_vec(&out).unwrap_or_else(|e| panic!("{name}: undecodable answer: {e}"))
}

fn summary(m: &Message) -> BTreeSet<String> {
    m.answers()
        .iter()
        .map(|r| match r.data() {
            RData::A(a) => a.0.to_string(),
            RData::AAAA(a) => a.0.to_string(),
            RData::SRV(s) => format!(
                "{} {} {} {}",
                s.priority(),
                s.weight(),
                s.port(),
                s.target()
            ),
            RData::TXT(t) => t
                .txt_data()
                .iter()
                .map(|d| String::from_utf8_lossy(d))
                .collect(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn answers_every_name_form() {
    let view = catalog().await;
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let srv_all = set(&[
        "1 10 8002 n1.node.dc1.consul.",
        "1 3 8003 0a000102.addr.dc1.consul.",
        "1 10 8005 n4.node.dc1.consul.",
    ]);
    use RecordType::*;
    let cases: &[(&str, RecordType, ResponseCode, BTreeSet<String>)] = &[
        (
            "web.service.consul.",
            A,
            ResponseCode::NoError,
            set(&["10.0.0.1", "10.0.1.2"]),
        ),
        (
            "WEB.Service.CONSUL.",
            A,
            ResponseCode::NoError,
            set(&["10.0.0.1", "10.0.1.2"]),
        ),
        (
            "web.service.dc1.consul.",
            AAAA,
            ResponseCode::NoError,
            set(&["fd00::4"]),
        ),
        (
            "web.service.consul.",
            SRV,
            ResponseCode::NoError,
            srv_all.clone(),
        ),
        (
            "_web._tcp.service.consul.",
            SRV,
            ResponseCode::NoError,
            srv_all,
        ),
        (
            "primary.web.service.consul.",
            A,
            ResponseCode::NoError,
            set(&["10.0.0.1"]),
        ),
        (
            "_web._v1.service.consul.",
            SRV,
            ResponseCode::NoError,
            set(&[
                "1 10 8002 n1.node.dc1.consul.",
                "1 3 8003 0a000102.addr.dc1.consul.",
            ]),
        ),
        ("v6.web.service.consul.", A, ResponseCode::NoError, set(&[])),
        ("web.service.consul.", TXT, ResponseCode::NoError, set(&[])),
        (
            "nope.web.service.consul.",
            A,
            ResponseCode::NXDomain,
            set(&[]),
        ),
        ("db.service.consul.", A, ResponseCode::NXDomain, set(&[])),
        (
            "web.service.dc2.consul.",
            A,
            ResponseCode::NXDomain,
            set(&[]),
        ),
        (
            "n2.node.consul.",
            A,
            ResponseCode::NoError,
            set(&["10.0.0.2"]),
        ),
        (
            "N2.node.dc1.consul.",
            A,
            ResponseCode::NoError,
            set(&["10.0.0.2"]),
        ),
        ("n4.node.consul.", A, ResponseCode::NoError, set(&[])),
        (
            "n2.node.consul.",
            TXT,
            ResponseCode::NoError,
            set(&["rack=r-n2", "plain"]),
        ),
        (
            "n2.node.consul.",
            ANY,
            ResponseCode::NoError,
            set(&["rack=r-n2", "plain", "10.0.0.2"]),
        ),
        ("n9.node.consul.", A, ResponseCode::NXDomain, set(&[])),
        (
            "0a000102.addr.dc1.consul.",
            A,
            ResponseCode::NoError,
            set(&["10.0.1.2"]),
        ),
        ("zz.addr.dc1.consul.", A, ResponseCode::NXDomain, set(&[])),
        ("what.consul.", A, ResponseCode::NXDomain, set(&[])),
        ("consul.", A, ResponseCode::NoError, set(&[])),
    ];
    for (name, rtype, code, want) in cases {
        let m = ask(&view, name, *rtype, None, 512);
        assert_eq!(m.response_code(), *code, "{name} {rtype}");
        assert_eq!(&summary(&m), want, "{name} {rtype}");
        assert!(m.authoritative() && !m.truncated(), "{name}");
        assert_eq!(
            m.queries()[0].name().to_ascii(),
            *name,
            "question echoed as sent"
        );
        let soa = m.name_servers().iter().any(|r| r.record_type() == SOA);
        assert_eq!(soa, want.is_empty(), "{name} {rtype}: SOA iff no answer");
        if !want.is_empty() && *rtype != SRV {
            assert_eq!(
                m.answers()[0].ttl(),
                if name.contains("node") || name.contains("addr") {
                    0
                } else {
                    30
                },
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn srv_targets_resolve_in_the_additional_section() {
    let view = catalog().await;
    let m = ask(
        &view,
        "web.service.consul.",
        RecordType::SRV,
        Some(1232),
        1232,
    );
    let additional: BTreeSet<String> = m
        .additionals()
        .iter()
        .map(|r| format!("{} {}", r.name(), r.data()))
        .collect();
    let want: BTreeSet<String> = [
        "n1.node.dc1.consul. 10.0.0.1",
        "0a000102.addr.dc1.consul. 10.0.1.2",
        "n4.node.dc1.consul. fd00::4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(additional, want);
    assert_eq!(m.extensions().as_ref().map(|e| e.max_payload()), Some(4096));
}

#[tokio::test]
async fn outside_the_domain_is_refused_or_forwarded() {
    let view = View::default();
    let mut m = Message::new();
    m.add_query(HQuery::query(
        HName::from_ascii("example.org.").unwrap(),
        RecordType::A,
    ));
    let packet = m.to_vec().unwrap();
    let q = Query::parse(&packet).unwrap();
    let mut out = Vec::new();
    let plain = Responder::new(&DnsConfig::default());
    assert_eq!(
        plain.respond(
            &q,
            &view,
            &Default::default(),
            None,
            &mut Scratch::default(),
            &mut out,
            512
        ),
        Outcome::Answered
    );
    assert_eq!(
        Message::from_vec(&out).unwrap().response_code(),
        ResponseCode::Refused
    );
    let forwarding = Responder::new(&DnsConfig {
        recursors: vec!["127.0.0.1:53".parse().unwrap()],
        ..DnsConfig::default()
    });
    assert_eq!(
        forwarding.respond(
            &q,
            &view,
            &Default::default(),
            None,
            &mut Scratch::default(),
            &mut out,
            512
        ),
        Outcome::Forward
    );
}

#[tokio::test]
async fn with_acls_only_what_the_token_may_read_is_answered() {
    use shoal_catalog::acl::Rules;
    let view = catalog().await;
    let rules = Rules::parse(
        r#"service "web" { policy = "read" }
node_prefix "n" { policy = "read" }
node "n2" { policy = "deny" }"#,
    )
    .unwrap();
    let reader = Authorizer::new(&[&rules], false);
    let nobody = Authorizer::new(&[], false);
    // (token, name, rcode, A answers)
    let cases: Vec<(&Authorizer, &str, ResponseCode, Vec<&str>)> = vec![
        (
            &reader,
            "web.service.consul.",
            ResponseCode::NoError,
            vec!["10.0.0.1"],
        ),
        (
            &nobody,
            "web.service.consul.",
            ResponseCode::NXDomain,
            vec![],
        ),
        (
            &reader,
            "n1.node.consul.",
            ResponseCode::NoError,
            vec!["10.0.0.1"],
        ),
        (&reader, "n2.node.consul.", ResponseCode::NXDomain, vec![]),
        (&nobody, "n1.node.consul.", ResponseCode::NXDomain, vec![]),
    ];
    for (authz, name, code, want) in cases {
        let m = ask_as(&view, Some(authz), name, RecordType::A, None, 512);
        assert_eq!(m.response_code(), code, "{name}");
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(summary(&m), want, "{name}");
    }
    // Without ACLs the instance on n2 is answered too.
    let open = summary(&ask(&view, "web.service.consul.", RecordType::A, None, 512));
    assert_eq!(open, ["10.0.0.1", "10.0.1.2"].map(String::from).into());
    // The instance on n2 (readable without ACLs) is left out of SRV too.
    let open = summary(&ask(
        &view,
        "web.service.consul.",
        RecordType::SRV,
        None,
        512,
    ));
    let filtered = summary(&ask_as(
        &view,
        Some(&reader),
        "web.service.consul.",
        RecordType::SRV,
        None,
        512,
    ));
    assert!(open.len() > filtered.len(), "{open:?} / {filtered:?}");
    assert!(
        !filtered
            .iter()
            .any(|a| a.contains("n2.") || a.contains("10.0.1.2")),
        "{filtered:?}"
    );
}

#[test]
fn shuffle_covers_every_order() {
    let mut s = Scratch::default();
    let mut firsts = BTreeSet::new();
    for _ in 0..200 {
        s.order = (0..4).collect();
        firsts.insert(s.pick(0));
        let mut all: Vec<u32> = (0..4).map(|i| s.pick(i)).collect();
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3]);
    }
    assert_eq!(firsts.len(), 4);
}

#[tokio::test]
async fn answers_are_cut_at_the_limit_with_every_promised_address() {
    let r = Registry::in_memory();
    for i in 0..50u16 {
        let reg = Registration {
            node: Node {
                name: format!("node-{i}"),
                address: format!("10.0.0.{i}"),
                ..Default::default()
            },
            service: Some(Service {
                id: format!("db-{i}"),
                name: "db".into(),
                port: 5000 + i,
                ..Default::default()
            }),
            ..Default::default()
        };
        r.register(reg).await.unwrap();
    }
    let view = View::build(&r.snapshot(), &DnsConfig::default());
    for (rtype, edns, limit, complete) in [
        (RecordType::SRV, None, 512, false),
        (RecordType::SRV, Some(1232), 1232, false),
        (RecordType::SRV, None, 65535, true),
        (RecordType::A, Some(1232), 1232, true),
        (RecordType::A, None, 512, false),
        (RecordType::A, Some(512), 300, false),
    ] {
        let m = ask(&view, "db.service.consul.", rtype, edns, limit);
        assert_eq!(m.truncated(), !complete, "{rtype} {limit}");
        assert_eq!(m.answers().len() == 50, complete, "{rtype} {limit}");
        if rtype == RecordType::SRV {
            let addresses = m
                .additionals()
                .iter()
                .filter(|r| r.record_type() == RecordType::A);
            assert_eq!(
                addresses.count(),
                m.answers().len(),
                "{limit}: an address per target"
            );
        }
    }
}
