//! Balancers: which instance gets the next request. One per file; each
//! picks among the instances `eligible` allows (not yet tried for this
//! request, not ejected), so retries and passive health work for all.

mod consistent_hash;
mod least_outstanding;
mod round_robin;

pub use consistent_hash::ConsistentHash;
pub use least_outstanding::LeastOutstanding;
pub use round_robin::RoundRobin;

use crate::config::{Balance, HashKey};
use crate::instance::Instance;
use hyper::HeaderMap;
use std::net::IpAddr;

/// A request's headers as balancers read them: hyper's map on the
/// full path, spans into the read buffer on the plain path.
pub trait HeaderLookup: Sync {
    /// Every value of header `name` (lowercase).
    fn values_of(&self, name: &str) -> Vec<&[u8]>;
}

impl HeaderLookup for HeaderMap {
    fn values_of(&self, name: &str) -> Vec<&[u8]> {
        self.get_all(name).iter().map(|v| v.as_bytes()).collect()
    }
}

impl HeaderLookup for crate::http::plain::wire::RawHeaders<'_> {
    fn values_of(&self, name: &str) -> Vec<&[u8]> {
        self.values(name).collect()
    }
}

/// What a balancer may look at in a request.
pub struct PickInput<'a> {
    /// The client's address.
    pub client_ip: IpAddr,
    /// The request's headers.
    pub headers: &'a dyn HeaderLookup,
}

/// Chooses an instance.
pub trait Balancer: Send + Sync {
    /// An index into `instances` for which `eligible` holds, if any.
    fn pick(
        &self,
        instances: &[Instance],
        input: &PickInput,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize>;
}

/// The balancer for `balance` over `instances`.
pub fn build(balance: &Balance, instances: &[Instance]) -> Box<dyn Balancer> {
    match balance {
        Balance::RoundRobin => Box::new(RoundRobin::new(instances)),
        Balance::LeastOutstanding => Box::new(LeastOutstanding),
        Balance::Hash(key) => Box::new(ConsistentHash::new(key.clone())),
    }
}

/// The value a hash key names in a request, if present.
pub fn hash_input(key: &HashKey, input: &PickInput) -> Option<Vec<u8>> {
    match key {
        HashKey::ClientIp => Some(input.client_ip.to_string().into_bytes()),
        HashKey::Header(name) => input.headers.values_of(name).first().map(|v| v.to_vec()),
        HashKey::Cookie(name) => input
            .headers
            .values_of("cookie")
            .into_iter()
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name).then(|| v.as_bytes().to_vec())
            }),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use std::sync::Arc;

    /// `n` instances with the given weights.
    pub fn instances(weights: &[u32]) -> Vec<Instance> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Instance {
                id: format!("i{i}"),
                addr: format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                weight: *w,
                tags: vec![],
                state: Arc::default(),
            })
            .collect()
    }

    /// Counts picks per instance over `n` requests.
    pub fn spread(b: &dyn Balancer, inst: &[Instance], n: usize, input: &PickInput) -> Vec<usize> {
        let mut counts = vec![0; inst.len()];
        for _ in 0..n {
            counts[b.pick(inst, input, &|_| true).unwrap()] += 1;
        }
        counts
    }
}
