//! DNS wire reading under arbitrary input: `Query::parse` never panics
//! and reads back exactly what an independent encoder (hickory-proto)
//! wrote; a running server fed garbage over UDP and TCP keeps answering.
//! Bounded: 256 cases unless `PROPTEST_CASES` says otherwise.

use hickory_proto::op::{Edns, Message, Query as HQuery};
use hickory_proto::rr::{Name, RecordType};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use shoal_dns::wire::{Query, Rejection};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn label() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9-]{0,20}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn fuzz_query_parse_never_panics(packet in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(q) = Query::parse(&packet) {
            prop_assert!(q.labels().count() == q.label_count());
            prop_assert!(q.name_len() <= 255);
        }
    }

    /// A valid header with a random tail: the question and additional
    /// section parsers get the garbage, not the header check.
    #[test]
    fn fuzz_query_parse_random_questions(tail in proptest::collection::vec(any::<u8>(), 0..300), ar in 0u16..4) {
        let mut packet = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
        packet.extend(ar.to_be_bytes());
        packet.extend(tail);
        match Query::parse(&packet) {
            Ok(q) => prop_assert_eq!(q.id, 0x1234),
            Err(Rejection::Reply { id, .. }) => prop_assert_eq!(id, 0x1234),
            Err(Rejection::Drop) => prop_assert!(false, "a query with a header is never dropped"),
        }
    }

    /// What hickory-proto encodes, `Query::parse` reads back as it was.
    #[test]
    fn fuzz_query_round_trip(
        labels in proptest::collection::vec(label(), 1..8),
        qtype in prop_oneof![Just(1u16), Just(28), Just(33), Just(6), Just(255), any::<u16>()],
        id in any::<u16>(),
        rd in any::<bool>(),
        edns in proptest::option::of(512u16..4096),
    ) {
        let name = labels.join(".") + ".";
        let mut m = Message::new();
        m.set_id(id).set_recursion_desired(rd);
        m.add_query(HQuery::query(Name::from_ascii(&name).unwrap(), RecordType::from(qtype)));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        let packet = m.to_vec().unwrap();
        let q = Query::parse(&packet).map_err(|e| TestCaseError::fail(format!("{name}: {e:?}")))?;
        prop_assert_eq!((q.id, q.qtype, q.qclass, q.recursion_desired), (id, qtype, 1, rd));
        let got: Vec<String> = q.labels().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
        prop_assert_eq!(got, labels);
        prop_assert_eq!(q.edns.map(|e| e.payload), edns);
    }
}

fn cases() -> usize {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256)
}

fn valid_query() -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(7).set_recursion_desired(true);
    m.add_query(HQuery::query(
        Name::from_ascii("shoal.node.consul.").unwrap(),
        RecordType::A,
    ));
    m.to_vec().unwrap()
}

#[tokio::test]
async fn fuzz_server_keeps_answering_through_garbage() {
    let registry = shoal_catalog::Registry::in_memory();
    let (udp, tcp) = shoal_dns::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = udp.local_addr().unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let config = shoal_dns::DnsConfig::default();
    let server = tokio::spawn(shoal_dns::serve(udp, tcp, registry, config, cancel.clone()));

    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(addr).await.unwrap();
    let mut runner = TestRunner::default();
    let garbage = proptest::collection::vec(any::<u8>(), 0..700);
    for _ in 0..cases() {
        let packet = garbage.new_tree(&mut runner).unwrap().current();
        client.send(&packet).await.unwrap();
        // Over TCP too, with a length prefix that may lie.
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let claimed =
            (packet.len() as u16).wrapping_add(packet.first().copied().unwrap_or(0) as u16 % 3);
        let _ = stream.write_all(&claimed.to_be_bytes()).await;
        let _ = stream.write_all(&packet).await;
        drop(stream);
    }
    // Still there: a valid query gets its answer.
    let mut buf = vec![0u8; 4096];
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            client.send(&valid_query()).await.unwrap();
            let n = client.recv(&mut buf).await.unwrap();
            if n >= 2 && buf[..2] == [0, 7] {
                return n;
            }
        }
    })
    .await
    .expect("the server stopped answering");
    Message::from_vec(&buf[..answered]).expect("a well-formed answer");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let q = valid_query();
    stream
        .write_all(&(q.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&q).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut len))
        .await
        .expect("TCP answer")
        .unwrap();
    cancel.cancel();
    let _ = server.await;
}
