//! Servers on one etcd know each other: `/v1/status/leader|peers` and the
//! `consul` service list the live ones; agents fail over between them and
//! a dead agent is reaped by the one leader.

mod common;

use common::*;
use serde_json::Value;
use shoal_testkit::{EtcdCluster, ServerProcess};
use std::path::Path;
use std::time::{Duration, Instant};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

async fn eventually(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn json_of(url: String) -> Value {
    ok(get(url).await).json()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn status_and_the_consul_service_list_the_live_servers() {
    let etcd = EtcdCluster::start(3);
    let mut a = etcd.start_shoal(bin(), "server-a", &[]);
    let b = etcd.start_shoal(bin(), "server-b", &[]);
    let both = sorted(vec![host_port(&a.url), host_port(&b.url)]);
    for s in [&a, &b] {
        eventually("both servers are peers", 15, async || {
            let peers: Vec<String> =
                serde_json::from_value(json_of(s.at("/v1/status/peers")).await).unwrap();
            sorted(peers) == both
        })
        .await;
    }
    let leader_a = json_of(a.at("/v1/status/leader")).await;
    let leader_b = json_of(b.at("/v1/status/leader")).await;
    assert_eq!(leader_a, leader_b, "one leader, the same for everyone");
    assert!(both.contains(&leader_a.as_str().unwrap().to_string()));
    let consul = json_of(b.at("/v1/catalog/service/consul?consistent")).await;
    let nodes = sorted(
        consul
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Node"].as_str().unwrap().to_string())
            .collect(),
    );
    assert_eq!(nodes, vec!["server-a".to_string(), "server-b".to_string()]);
    // A dies: B leads alone, and A's consul service goes.
    a.kill();
    let only_b = vec![host_port(&b.url)];
    eventually("B is the only peer and the leader", 20, async || {
        let peers: Vec<String> =
            serde_json::from_value(json_of(b.at("/v1/status/peers")).await).unwrap();
        let leader = json_of(b.at("/v1/status/leader")).await;
        peers == only_b && leader == Value::String(only_b[0].clone())
    })
    .await;
    eventually("A's consul service is removed", 20, async || {
        let consul = json_of(b.at("/v1/catalog/service/consul")).await;
        consul.as_array().unwrap().len() == 1 && consul[0]["Node"] == "server-b"
    })
    .await;
}

fn agent(registry: &str, node: &str, ttl: &str) -> ServerProcess {
    ServerProcess::start_agent(bin(), registry, node, &["--heartbeat-ttl", ttl])
}

async fn has_node(server: &ServerProcess, node: &str) -> bool {
    let nodes = json_of(server.at("/v1/catalog/nodes")).await;
    nodes.as_array().unwrap().iter().any(|n| n["Node"] == node)
}

#[tokio::test]
async fn an_agent_fails_over_between_servers_and_is_reaped_when_dead() {
    let etcd = EtcdCluster::start(3);
    let mut a = etcd.start_shoal(bin(), "server-a", &[]);
    let b = etcd.start_shoal(bin(), "server-b", &[]);
    let mut host = agent(&format!("{},{}", a.url, b.url), "agent-1", "2s");
    eventually("the agent's node is in the catalog", 15, async || {
        has_node(&b, "agent-1").await
    })
    .await;
    // Its heartbeats reach A only; B (or whoever leads) must not reap it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        has_node(&b, "agent-1").await,
        "a live agent was reaped (its beats went to another server)"
    );
    // A dies: the agent moves to B and stays.
    a.kill();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        has_node(&b, "agent-1").await,
        "the agent did not fail over to B"
    );
    // The agent dies: its node leaves the catalog.
    host.kill();
    eventually("the dead agent's node is reaped", 20, async || {
        !has_node(&b, "agent-1").await
    })
    .await;
}

async fn reaped(server: &ServerProcess) -> u64 {
    let text = ok(get(server.at("/metrics")).await).text;
    text.lines()
        .find_map(|l| l.strip_prefix("shoal_agents_reaped_total "))
        .unwrap_or_else(|| panic!("no shoal_agents_reaped_total on {}", server.url))
        .trim()
        .parse()
        .unwrap()
}

/// The agent and the leading server die together: one of the two others
/// takes the lead and reaps the agent's node, exactly once over all
/// servers, and within its lease and TTL.
#[tokio::test]
async fn a_dead_agent_is_reaped_exactly_once_when_the_leader_dies_with_it() {
    let etcd = EtcdCluster::start(3);
    let mut servers = vec![
        etcd.start_shoal(bin(), "server-a", &[]),
        etcd.start_shoal(bin(), "server-b", &[]),
        etcd.start_shoal(bin(), "server-c", &[]),
    ];
    let mut leader = String::new();
    eventually("the three servers agree on a leader", 15, async || {
        let mut seen = Vec::new();
        for s in &servers {
            seen.push(json_of(s.at("/v1/status/leader")).await);
        }
        leader = seen[0].as_str().unwrap_or("").to_string();
        !leader.is_empty() && seen.iter().all(|l| *l == seen[0])
    })
    .await;
    let at = servers
        .iter()
        .position(|s| host_port(&s.url) == leader)
        .expect("the leader is one of the servers");
    // The agent beats to the leader only.
    let mut host = agent(&servers[at].url, "agent-1", "2s");
    eventually("the agent's node is in the catalog", 15, async || {
        has_node(&servers[(at + 1) % 3], "agent-1").await
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for s in &servers {
        assert!(has_node(s, "agent-1").await, "a live agent was reaped");
        assert_eq!(reaped(s).await, 0);
    }
    host.kill();
    let mut dead = servers.remove(at);
    dead.kill();
    // Another server leads once the dead one's lease (5 s) is gone, gives
    // the node one TTL, then reaps it.
    for s in &servers {
        eventually("the dead agent's node is reaped", 30, async || {
            !has_node(s, "agent-1").await
        })
        .await;
    }
    // Reapers that were late or thought they led must not count it again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut total = 0;
    for s in &servers {
        total += reaped(s).await;
    }
    assert_eq!(total, 1, "reaped {total} times over the servers");
}

async fn consul_nodes(server: &ServerProcess) -> Vec<String> {
    let consul = json_of(server.at("/v1/catalog/service/consul")).await;
    sorted(
        consul
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Node"].as_str().unwrap().to_string())
            .collect(),
    )
}

/// A server joins just before etcd loses quorum: the leader's last member
/// list (read before the join) does not list it, and no newer list comes
/// while quorum is lost. The leader must not take that old list for "the
/// new server left" (it once removed the live server's `consul` service
/// then, for good).
#[tokio::test]
async fn a_live_server_is_not_reaped_on_a_member_list_older_than_it() {
    let mut etcd = EtcdCluster::start(3);
    let a = etcd.start_shoal(bin(), "server-a", &[]);
    // A leads alone, past the grace a new leader gives.
    eventually("A leads", 15, async || {
        json_of(a.at("/v1/status/leader")).await == Value::String(host_port(&a.url))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let b = etcd.start_shoal(bin(), "server-b", &[]);
    let both = vec!["server-a".to_string(), "server-b".to_string()];
    let deadline = Instant::now() + Duration::from_secs(15);
    while consul_nodes(&a).await != both {
        assert!(Instant::now() < deadline, "A never saw B's consul service");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // At once, before A reads the member list again (it does every second).
    etcd.kill(0);
    etcd.kill(1);
    tokio::time::sleep(Duration::from_secs(8)).await;
    etcd.restart(0);
    etcd.restart(1);
    etcd.wait_healthy();
    // Past one more lease and grace, both servers are still listed.
    tokio::time::sleep(Duration::from_secs(8)).await;
    for s in [&a, &b] {
        eventually("both servers' consul services are listed", 15, async || {
            consul_nodes(s).await == both
        })
        .await;
    }
}
