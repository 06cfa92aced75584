//! Prepared queries over DNS, with `dig` against a real `shoal server`:
//! `<name>.query.consul` and `<id>.query.consul` answer A and SRV with
//! the query's matching instances (its tags, `OnlyPassing`), with its
//! `DNS.TTL`, and follow changes to the instances and to the query.

mod common;

use common::dns::{dig, dig_short, dig_status};
use serde_json::json;
use shoal_testkit::ServerProcess;
use std::path::Path;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

/// Registers instance `id` of `web` on its own node, with one check.
async fn instance(server: &ServerProcess, id: &str, n: u8, tags: &[&str], status: &str) {
    let reg = json!({
        "Node": format!("n{n}"), "Address": format!("10.0.0.{n}"),
        "Service": {"ID": id, "Service": "web", "Port": 8000 + n as u16, "Tags": tags},
        "Check": {"CheckID": format!("c-{id}"), "Name": "probe", "ServiceID": id, "Status": status},
    });
    let r = common::put_json(server.at("/v1/catalog/register"), &reg).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn query(server: &ServerProcess, body: serde_json::Value) -> String {
    let body = serde_json::to_vec(&body).unwrap();
    let r = common::call(reqwest::Method::POST, server.at("/v1/query"), Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["ID"].as_str().unwrap().to_string()
}

/// Whether dig's output has a record line `owner rest` (any spacing).
fn has_record(output: &str, owner: &str, rest: &str) -> bool {
    let want: Vec<&str> = std::iter::once(owner).chain(rest.split(' ')).collect();
    output
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_queries_answer_a_and_srv_by_name_and_id() {
    let server = ServerProcess::start(bin(), &["--in-memory", "--dns-service-ttl", "web=5s"]);
    let addr = server.dns_addr().expect("DNS address announced");
    instance(&server, "w1", 1, &["v1"], "passing").await;
    instance(&server, "w2", 2, &["v1"], "warning").await;
    instance(&server, "w3", 3, &["v2"], "passing").await;
    instance(&server, "w4", 4, &["v1"], "critical").await;
    let strict = json!({"Name": "web-v1", "Service": {"Service": "web", "Tags": ["v1"], "OnlyPassing": true}, "DNS": {"TTL": "42s"}});
    query(&server, strict).await;
    let all = query(
        &server,
        json!({"Service": {"Service": "web", "Tags": ["!v2"]}}),
    )
    .await;

    let cases: &[(&[&str], &[&str])] = &[
        (&["web-v1.query.consul"], &["10.0.0.1"]),
        (&["WEB-V1.query.dc1.consul", "A"], &["10.0.0.1"]),
        (
            &["web-v1.query.consul", "SRV"],
            &["1 1 8001 n1.node.dc1.consul."],
        ),
        (&[&format!("{all}.query.consul")], &["10.0.0.1", "10.0.0.2"]),
        (
            &[&format!("{all}.query.consul"), "SRV"],
            &[
                "1 1 8001 n1.node.dc1.consul.",
                "1 1 8002 n2.node.dc1.consul.",
            ],
        ),
        (&["web-v1.query.consul", "AAAA"], &[]),
    ];
    for (args, want) in cases {
        assert_eq!(dig_short(addr, args), *want, "dig {args:?}");
    }
    // TTLs: the query's own, else the service's.
    let full = dig(addr, &["+noall", "+answer", "web-v1.query.consul"]);
    assert!(
        has_record(&full, "web-v1.query.consul.", "42 IN A 10.0.0.1"),
        "{full}"
    );
    let full = dig(addr, &["+noall", "+answer", &format!("{all}.query.consul")]);
    let owner = format!("{all}.query.consul.");
    assert!(has_record(&full, &owner, "5 IN A 10.0.0.2"), "{full}");
    // The SRV target resolves in the additional section.
    let srv = dig(addr, &["web-v1.query.consul", "SRV"]);
    assert!(
        has_record(&srv, "n1.node.dc1.consul.", "42 IN A 10.0.0.1"),
        "{srv}"
    );

    let unknown = dig(addr, &["nope.query.consul"]);
    assert_eq!(dig_status(&unknown), "NXDOMAIN", "{unknown}");
    let nested = dig(addr, &["a.b.query.consul"]);
    assert_eq!(dig_status(&nested), "NXDOMAIN", "{nested}");

    // The answers follow the catalog and the queries.
    instance(&server, "w5", 5, &["v1"], "passing").await;
    assert_eq!(
        dig_short(addr, &["web-v1.query.consul"]),
        ["10.0.0.1", "10.0.0.5"]
    );
    let r = common::delete(server.at(&format!("/v1/query/{all}"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let gone = dig(addr, &[&format!("{all}.query.consul")]);
    assert_eq!(dig_status(&gone), "NXDOMAIN", "{gone}");
}
