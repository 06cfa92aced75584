//! Prepared queries over DNS (`<name-or-id>.query[.<dc>].<domain>`): each
//! stored query executed once per catalog snapshot, its matching
//! instances kept in the same shape as a service's, so they are answered
//! (A, AAAA, SRV) by the same code. A view is rebuilt when nodes,
//! services, checks or the queries themselves change.

use crate::config::DnsConfig;
use crate::view::{secs, Names, ServiceRecords};
use shoal_catalog::{topic_index, State, Topic};
use std::collections::HashMap;
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
        let names = Names::new(config);
        for q in state.queries().1 {
            let (_, entries) = state.execute_query(&q);
            let instances = entries.iter().filter_map(|e| names.instance(e)).collect();
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
                name: q.service.service.as_str().into(),
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
