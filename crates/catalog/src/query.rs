//! Prepared queries (`/v1/query`): a stored service lookup (service name,
//! tags, passing-only) that clients and DNS (`<name>.query.consul`) run by
//! ID or name. One datacenter: failover settings are kept but have nowhere
//! to fail over to.

use crate::apply::Txn;
use crate::error::{Error, Result};
use crate::model::{HealthStatus, ServiceEntry};
use crate::records::key_query;
use crate::state::State;
use crate::watch::Topic;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Failover settings (kept as given; there is no other datacenter).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct QueryFailover {
    /// Nearest other datacenters to try.
    pub nearest_n: u32,
    /// Datacenters to try in order.
    pub datacenters: Vec<String>,
}

/// What a query looks up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct QueryService {
    /// Service name (required).
    pub service: String,
    /// Failover (no effect with one datacenter).
    pub failover: QueryFailover,
    /// Only instances whose checks all pass (else: all but critical).
    pub only_passing: bool,
    /// Tags every instance must have; `!tag` means must not have.
    pub tags: Vec<String>,
    /// Accepted and kept; sorting by distance needs coordinates shoal lacks.
    pub near: String,
}

/// DNS settings of a query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct QueryDns {
    /// TTL of the DNS answers (Go duration), empty for the default.
    #[serde(rename = "TTL")]
    pub ttl: String,
}

/// A prepared query as `/v1/query` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PreparedQuery {
    /// UUID chosen by the server.
    #[serde(rename = "ID")]
    pub id: String,
    /// Optional unique name (also its DNS name).
    pub name: String,
    /// Optional session: the query goes away with it.
    pub session: String,
    /// Token (ACLs are not enforced; kept as given).
    pub token: String,
    /// The lookup.
    pub service: QueryService,
    /// DNS settings.
    #[serde(rename = "DNS")]
    pub dns: QueryDns,
    /// Index of the creating commit.
    pub create_index: u64,
    /// Index of the last change.
    pub modify_index: u64,
}

impl PreparedQuery {
    /// Whether an instance passes this query's filters, as Consul's
    /// executor decides: critical instances never; warning ones only
    /// without `OnlyPassing`; tags matched case-insensitively.
    pub fn matches(&self, entry: &ServiceEntry) -> bool {
        let status = entry.aggregate_status();
        let healthy = match status {
            HealthStatus::Passing => true,
            HealthStatus::Critical => false,
            _ => !self.service.only_passing,
        };
        healthy
            && self.service.tags.iter().all(|t| {
                let (want, tag) = match t.strip_prefix('!') {
                    Some(rest) => (false, rest),
                    None => (true, t.as_str()),
                };
                let has = entry
                    .service
                    .tags
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(tag));
                has == want
            })
    }
}

impl State {
    /// Every prepared query, with the queries' index.
    pub fn queries(&self) -> (u64, Vec<Arc<PreparedQuery>>) {
        (
            self.table_indexes().queries,
            self.queries.values().cloned().collect(),
        )
    }

    /// A query by ID, or else by name (as `/execute` and DNS look it up).
    pub fn query(&self, id_or_name: &str) -> Option<Arc<PreparedQuery>> {
        self.queries.get(id_or_name).cloned().or_else(|| {
            self.queries
                .values()
                .find(|q| !q.name.is_empty() && q.name == id_or_name)
                .cloned()
        })
    }

    /// Runs a query: the matching instances of its service.
    pub fn execute_query(&self, q: &PreparedQuery) -> (u64, Vec<ServiceEntry>) {
        let (index, mut entries) = self.service_entries(&q.service.service);
        entries.retain(|e| q.matches(e));
        (index, entries)
    }
}

impl Txn<'_> {
    /// Creates or replaces a query after Consul's validation.
    pub(crate) fn query_put(&mut self, mut q: PreparedQuery) -> Result<()> {
        if q.id.is_empty() {
            return Err(Error::invalid("Missing query ID"));
        }
        if q.service.service.is_empty() {
            return Err(Error::Rejected(
                "Must provide a Service name to query".into(),
            ));
        }
        if !q.session.is_empty() && !self.st.sessions.contains_key(&q.session) {
            return Err(Error::Rejected(format!("invalid session {:?}", q.session)));
        }
        if !q.name.is_empty() {
            if let Some(other) = self
                .st
                .queries
                .values()
                .find(|o| o.name == q.name && o.id != q.id)
            {
                return Err(Error::Rejected(format!(
                    "name {:?} aliases an existing query name {:?}",
                    q.name, other.id
                )));
            }
        }
        q.create_index = self
            .st
            .queries
            .get(&q.id)
            .map_or(self.idx, |o| o.create_index);
        q.modify_index = self.idx;
        self.put(key_query(&q.id), &q);
        self.st.queries.insert(q.id.clone(), Arc::new(q));
        self.touch_queries();
        Ok(())
    }

    /// Deletes a query; an unknown one is not an error.
    pub(crate) fn query_delete(&mut self, id: &str) -> Result<()> {
        if self.st.queries.remove(id).is_some() {
            self.delete(key_query(id));
            self.touch_queries();
        }
        Ok(())
    }

    /// Deletes the queries tied to a session that went away.
    pub(crate) fn delete_queries_of_session(&mut self, session: &str) {
        let ids: Vec<String> = self
            .st
            .queries
            .values()
            .filter(|q| q.session == session)
            .map(|q| q.id.clone())
            .collect();
        for id in ids {
            let _ = self.query_delete(&id);
        }
    }

    fn touch_queries(&mut self) {
        self.dirty = true;
        self.st.tables.queries = self.idx;
        self.changes.topics.insert(Topic::Queries);
    }
}
