//! Prepared queries over DNS (`<name-or-id>.query[.<dc>].<domain>`): each
//! stored query executed once per catalog snapshot, its matching
//! instances kept in the same shape as a service's, so they are answered
//! (A, AAAA, SRV) by the same code. A view is rebuilt when nodes,
//! services, checks or the queries themselves change.

use crate::config::DnsConfig;
use crate::view::{hex_ip, secs, Instance, ServiceRecords};
use crate::wire::encode_name;
use shoal_catalog::{topic_index, HealthStatus, ServiceEntry, State, Topic};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// The prepared queries of one catalog snapshot, executed.
#[derive(Debug, Default)]
pub struct QueryView {
    /// The nodes, services, checks and queries table indexes it was built
    /// from ([`QueryView::key`]).
    pub key: [u64; 4],
    /// By lowercase ID and by lowercase name (both point to one result).
    queries: HashMap<Box<[u8]>, Arc<ServiceRecords>>,
}

impl QueryView {
    /// What a query view of `state` depends on.
    pub fn key(state: &State) -> [u64; 4] {
        [Topic::Nodes, Topic::Services, Topic::Checks, Topic::Queries]
            .map(|t| topic_index(state, &t))
    }

    /// Executes every query of `state`.
    pub fn build(state: &State, config: &DnsConfig) -> QueryView {
        let mut queries = HashMap::new();
        for q in state.queries().1 {
            let (_, entries) = state.execute_query(&q);
            let instances = entries.iter().filter_map(|e| instance(e, config)).collect();
            // The query's own DNS TTL, else the service's (Consul's rule).
            let ttl = shoal_catalog::duration::parse(&q.dns.ttl)
                .ok()
                .filter(|_| !q.dns.ttl.is_empty())
                .unwrap_or_else(|| {
                    config
                        .service_ttl
                        .get(&q.service.service.to_ascii_lowercase())
                });
            let records = Arc::new(ServiceRecords {
                ttl: secs(ttl),
                instances,
            });
            if !q.name.is_empty() {
                let name = q.name.to_ascii_lowercase().into_bytes();
                queries.insert(name.into(), records.clone());
            }
            queries.insert(q.id.to_ascii_lowercase().into_bytes().into(), records);
        }
        QueryView {
            key: QueryView::key(state),
            queries,
        }
    }

    /// A query's results by lowercase ID or name.
    pub fn get(&self, name: &[u8]) -> Option<&ServiceRecords> {
        self.queries.get(name).map(|r| &**r)
    }
}

/// One matching instance as DNS shows it; the same rules as a service's
/// instances in `view.rs` (weight by status, SRV target by address).
fn instance(e: &ServiceEntry, config: &DnsConfig) -> Option<Instance> {
    let suffix = |kind: &str| format!(".{kind}.{}.{}", config.datacenter, config.domain);
    let weights = e.service.weights;
    let weight = match e.aggregate_status() {
        HealthStatus::Passing => weights.passing,
        _ => weights.warning,
    };
    let address = e.address();
    let ip = address.parse::<IpAddr>().ok();
    let own = !e.service.address.is_empty() && e.service.address != e.node.address;
    let by_ip = |ip: IpAddr| encode_name(&format!("{}{}", hex_ip(ip), suffix("addr")));
    let target = match ip {
        _ if !own => encode_name(&format!("{}{}", e.node.name, suffix("node"))),
        Some(ip) => by_ip(ip),
        None => encode_name(address),
    };
    let target = target.or_else(|| ip.and_then(by_ip))?;
    Some(Instance {
        ip,
        port: e.service.port,
        weight: weight.clamp(0, u16::MAX as i32) as u16,
        tags: Vec::new(),
        target: target.into(),
    })
}
