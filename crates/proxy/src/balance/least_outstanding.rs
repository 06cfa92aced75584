//! Least outstanding requests by the power of two choices: take two
//! random eligible instances, send to the one with fewer requests in flight
//! per unit of weight. Near-optimal and lock-free.

use super::{Balancer, PickInput};
use crate::instance::Instance;
use rand::Rng;
use std::sync::atomic::Ordering;

/// P2C over requests in flight.
pub struct LeastOutstanding;

impl Balancer for LeastOutstanding {
    fn pick(
        &self,
        instances: &[Instance],
        _input: &PickInput,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let candidates: Vec<usize> = (0..instances.len()).filter(|&i| eligible(i)).collect();
        let load = |i: usize| {
            let inst = &instances[i];
            (inst.state.outstanding.load(Ordering::Relaxed) as f64 + 1.0)
                / f64::from(inst.weight.max(1))
        };
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            n => {
                let mut rng = rand::thread_rng();
                let a = candidates[rng.gen_range(0..n)];
                let mut b = candidates[rng.gen_range(0..n - 1)];
                if b == a {
                    b = candidates[n - 1];
                }
                Some(if load(b) < load(a) { b } else { a })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::instances;
    use hyper::HeaderMap;

    #[test]
    fn avoids_the_busy_instance() {
        let headers = HeaderMap::new();
        let input = PickInput {
            client_ip: "127.0.0.1".parse().unwrap(),
            headers: &headers,
        };
        let inst = instances(&[1, 1]);
        inst[0].state.outstanding.store(50, Ordering::Relaxed);
        for _ in 0..20 {
            assert_eq!(LeastOutstanding.pick(&inst, &input, &|_| true), Some(1));
        }
        assert_eq!(LeastOutstanding.pick(&inst, &input, &|i| i == 0), Some(0));
        assert_eq!(LeastOutstanding.pick(&inst, &input, &|_| false), None);
    }

    /// With one of three ineligible (ejected) and nothing in flight, the
    /// other two share evenly.
    #[test]
    fn an_ineligible_instance_shifts_no_share_onto_one_neighbour() {
        let headers = HeaderMap::new();
        let input = PickInput {
            client_ip: "127.0.0.1".parse().unwrap(),
            headers: &headers,
        };
        let inst = instances(&[1, 1, 1]);
        for out in 0..3 {
            let mut counts = [0usize; 3];
            for _ in 0..2000 {
                counts[LeastOutstanding.pick(&inst, &input, &|i| i != out).unwrap()] += 1;
            }
            assert_eq!(counts[out], 0);
            for (i, &c) in counts.iter().enumerate() {
                assert!(
                    i == out || (850..1150).contains(&c),
                    "{out} out: {counts:?}"
                );
            }
        }
    }
}
