//! Fuzz tests of what the registrator decodes from the Docker daemon:
//! the `/events` stream split into JSON lines, and `inspect` answers
//! turned into instances. Invariants: no panic, bounded memory (the
//! stream's buffer never holds more than what was fed), and events read
//! back as they were written. Bounded: 256 cases unless `PROPTEST_CASES`.

use super::client::split_event;
use super::container::{short_id, Container};
use super::convention::{plan, Settings};
use bytes::BytesMut;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Strings a container's fields hold, odd ones included.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_.-]{0,12}",
        "SERVICE_[A-Z0-9_]{0,12}=[ -~]{0,16}",
        "[0-9]{1,5}/(tcp|udp)",
        any::<String>(),
    ]
}

fn strings() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(text(), 0..6)
}

fn map() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map(text(), text().prop_map(Value::String), 0..5)
        .prop_map(|m| m.into_iter().collect())
}

/// An `inspect` answer shaped like Docker's, with random contents.
fn inspect() -> impl Strategy<Value = Value> {
    let ports = proptest::collection::btree_map(
        text(),
        proptest::option::of(proptest::collection::vec((text(), text()), 0..3)),
        0..4,
    );
    (text(), text(), any::<bool>(), strings(), map(), map(), text(), text(), ports, map())
        .prop_map(|(id, name, running, env, labels, exposed, mode, ip, ports, nets)| {
            let ports: Map<String, Value> = ports
                .into_iter()
                .map(|(k, b)| {
                    let b = b.map(|list| {
                        list.into_iter()
                            .map(|(ip, port)| json!({"HostIp": ip, "HostPort": port}))
                            .collect::<Vec<_>>()
                    });
                    (k, json!(b))
                })
                .collect();
            let nets: Map<String, Value> =
                nets.into_iter().map(|(k, v)| (k, json!({"IPAddress": v, "GlobalIPv6Address": v}))).collect();
            json!({
                "Id": id, "Name": name,
                "State": {"Running": running, "Health": {"Status": "healthy"}},
                "Config": {"Image": "img", "Env": env, "Labels": labels, "ExposedPorts": exposed},
                "HostConfig": {"NetworkMode": mode},
                "NetworkSettings": {"IPAddress": ip, "Ports": ports, "Networks": nets},
            })
        })
}

fn settings() -> impl Strategy<Value = Settings> {
    let choice = (
        proptest::option::of(text()),
        strings(),
        any::<bool>(),
        any::<bool>(),
    );
    (
        (text(), text(), any::<bool>(), any::<bool>(), strings()),
        choice,
    )
        .prop_map(
            |(
                (hostname, host_ip, internal, explicit, tags),
                (network, proxy_networks, prefer_ipv6, compose_names),
            )| Settings {
                hostname,
                host_ip,
                internal,
                explicit,
                tags,
                network,
                proxy_networks,
                prefer_ipv6,
                compose_names,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random bytes in random chunks: every complete line is taken off
    /// (as an event or an error), nothing else is kept.
    #[test]
    fn fuzz_event_stream_splitting(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..10)) {
        let mut buf = BytesMut::new();
        let mut fed = 0;
        for chunk in chunks {
            fed += chunk.len();
            buf.extend_from_slice(&chunk);
            while split_event(&mut buf).is_some() {}
            prop_assert!(buf.len() <= fed);
            prop_assert!(!buf.contains(&b'\n'), "a complete line was left behind");
        }
    }

    /// An event written as Docker writes it, split anywhere, reads back.
    #[test]
    fn fuzz_event_round_trip(kind in text(), action in text(), id in text(), attrs in proptest::collection::btree_map(text(), text(), 0..4), nano in any::<i64>(), cut in any::<prop::sample::Index>()) {
        let line = json!({"Type": kind, "Action": action, "Actor": {"ID": id, "Attributes": attrs}, "timeNano": nano});
        let mut bytes = serde_json::to_vec(&line).unwrap();
        bytes.push(b'\n');
        let at = cut.index(bytes.len());
        let mut buf = BytesMut::from(&bytes[..at]);
        prop_assert!(at == bytes.len() || split_event(&mut buf).is_none());
        buf.extend_from_slice(&bytes[at..]);
        let event = split_event(&mut buf).unwrap().unwrap();
        prop_assert_eq!((event.kind, event.action, event.actor.id, event.actor.attributes, event.time_nano), (kind, action, id, attrs, nano));
    }

    /// Whatever an `inspect` answer holds, planning its instances never
    /// panics, and every ID it plans starts with the host's name.
    #[test]
    fn fuzz_inspect_decoding_and_planning(value in inspect(), s in settings()) {
        let c: Container = match serde_json::from_value(value) {
            Ok(c) => c,
            Err(_) => return Ok(()),
        };
        let _ = (c.short_name(), c.short_id(), c.ip());
        let p = plan(&c, &s);
        for i in &p.instances {
            prop_assert!(i.service.id.starts_with(&s.hostname), "{} for host {}", i.service.id, s.hostname);
        }
    }

    #[test]
    fn fuzz_short_ids(id in any::<String>()) {
        let short = short_id(&id);
        prop_assert!(id.starts_with(short));
        prop_assert_eq!(short.chars().count(), id.chars().count().min(12));
    }
}
