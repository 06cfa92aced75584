//! Consistent hashing for sticky sessions, by weighted rendezvous hashing:
//! each instance scores `-w / ln(h(key, instance))` and the best wins. The
//! same key keeps its instance while that instance lives; removing an
//! instance moves only that instance's keys. Requests without the key are
//! spread at random.

use super::{hash_input, Balancer, PickInput};
use crate::config::HashKey;
use crate::instance::Instance;
use rand::Rng;
use std::hash::{Hash, Hasher};

/// Rendezvous hashing on a request property.
pub struct ConsistentHash {
    key: HashKey,
}

impl ConsistentHash {
    /// Hashes on `key`.
    pub fn new(key: HashKey) -> Self {
        ConsistentHash { key }
    }
}

fn score(key: &[u8], inst: &Instance) -> f64 {
    // A fixed-key hasher: the same key and instance score the same in every
    // process, so several proxies agree.
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    inst.id.hash(&mut h);
    inst.addr.hash(&mut h);
    let unit = ((h.finish() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(inst.weight.max(1)) / unit.ln()
}

impl Balancer for ConsistentHash {
    fn pick(
        &self,
        instances: &[Instance],
        input: &PickInput,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let candidates = (0..instances.len()).filter(|&i| eligible(i));
        match hash_input(&self.key, input) {
            Some(key) => candidates
                .max_by(|&a, &b| score(&key, &instances[a]).total_cmp(&score(&key, &instances[b]))),
            None => {
                let all: Vec<usize> = candidates.collect();
                (!all.is_empty()).then(|| all[rand::thread_rng().gen_range(0..all.len())])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::instances;
    use hyper::HeaderMap;

    fn input_with_cookie(headers: &mut HeaderMap, v: &str) {
        headers.insert(
            hyper::header::COOKIE,
            format!("a=1; sid={v}").parse().unwrap(),
        );
    }

    #[test]
    fn same_key_same_instance_and_minimal_movement() {
        let inst = instances(&[1, 1, 1, 1]);
        let ch = ConsistentHash::new(HashKey::Cookie("sid".into()));
        let mut moved = 0;
        let mut per_instance = [0usize; 4];
        for user in 0..400 {
            let mut headers = HeaderMap::new();
            input_with_cookie(&mut headers, &format!("user{user}"));
            let input = PickInput {
                client_ip: "127.0.0.1".parse().unwrap(),
                headers: &headers,
            };
            let first = ch.pick(&inst, &input, &|_| true).unwrap();
            assert_eq!(ch.pick(&inst, &input, &|_| true), Some(first), "sticky");
            per_instance[first] += 1;
            let without_3 = ch.pick(&inst, &input, &|i| i != 3).unwrap();
            if first != 3 {
                assert_eq!(without_3, first, "keys of other instances do not move");
            } else {
                moved += 1;
            }
        }
        assert_eq!(moved, per_instance[3]);
        assert!(
            per_instance.iter().all(|&c| c > 50),
            "roughly even: {per_instance:?}"
        );
    }

    /// An ejected instance's keys go to the others evenly (each key to
    /// its next best), not all to one neighbour; requests without the key
    /// spread evenly over the rest.
    #[test]
    fn an_ineligible_instance_spreads_its_keys_over_the_others() {
        let inst = instances(&[1, 1, 1, 1]);
        let ch = ConsistentHash::new(HashKey::Header("x-user".into()));
        let mut moved_to = [0usize; 4];
        for user in 0..4000 {
            let mut headers = HeaderMap::new();
            headers.insert("x-user", format!("u{user}").parse().unwrap());
            let input = PickInput {
                client_ip: "127.0.0.1".parse().unwrap(),
                headers: &headers,
            };
            if ch.pick(&inst, &input, &|_| true) == Some(1) {
                moved_to[ch.pick(&inst, &input, &|i| i != 1).unwrap()] += 1;
            }
        }
        let moved: usize = moved_to.iter().sum();
        assert_eq!(moved_to[1], 0);
        for i in [0, 2, 3] {
            assert!(
                moved_to[i] * 100 >= moved * 25 && moved_to[i] * 100 <= moved * 42,
                "{moved_to:?}"
            );
        }
        let headers = HeaderMap::new();
        let input = PickInput {
            client_ip: "127.0.0.1".parse().unwrap(),
            headers: &headers,
        };
        let mut keyless = [0usize; 4];
        for _ in 0..3000 {
            keyless[ch.pick(&inst, &input, &|i| i != 1).unwrap()] += 1;
        }
        assert_eq!(keyless[1], 0);
        assert!(
            keyless
                .iter()
                .enumerate()
                .all(|(i, &c)| i == 1 || (850..1150).contains(&c)),
            "{keyless:?}"
        );
    }

    #[test]
    fn client_ip_and_missing_key() {
        let inst = instances(&[1, 1, 1]);
        let headers = HeaderMap::new();
        let by_ip = ConsistentHash::new(HashKey::ClientIp);
        let input = PickInput {
            client_ip: "10.0.0.7".parse().unwrap(),
            headers: &headers,
        };
        let first = by_ip.pick(&inst, &input, &|_| true);
        assert!((0..10).all(|_| by_ip.pick(&inst, &input, &|_| true) == first));
        let by_header = ConsistentHash::new(HashKey::Header("x-user".into()));
        assert!(
            by_header.pick(&inst, &input, &|_| true).is_some(),
            "no header: still answered"
        );
        assert_eq!(by_header.pick(&inst, &input, &|_| false), None);
    }
}
