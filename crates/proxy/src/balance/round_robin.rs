//! Weighted round robin, smooth (as nginx's): weights 5,1,1 give
//! a a b a c a a, not a a a a a b c.

use super::{Balancer, PickInput};
use crate::instance::Instance;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Cycles through a precomputed smooth weighted schedule.
pub struct RoundRobin {
    schedule: Vec<usize>,
    cursor: AtomicUsize,
}

/// Weights above this are scaled down so the schedule stays small.
const MAX_SCHEDULE: u64 = 4096;

impl RoundRobin {
    /// The schedule for `instances`' weights; starts at a random point so
    /// many proxies do not all hit the first instance first.
    pub fn new(instances: &[Instance]) -> Self {
        let total: u64 = instances.iter().map(|i| u64::from(i.weight.max(1))).sum();
        let scale = total.div_ceil(MAX_SCHEDULE).max(1);
        let weights: Vec<i64> = instances
            .iter()
            .map(|i| (u64::from(i.weight.max(1)) / scale).max(1) as i64)
            .collect();
        let sum: i64 = weights.iter().sum();
        let mut current = vec![0i64; weights.len()];
        let mut schedule = Vec::with_capacity(sum as usize);
        for _ in 0..sum {
            for (c, w) in current.iter_mut().zip(&weights) {
                *c += w;
            }
            let Some(best) = (0..current.len()).max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
            else {
                break;
            };
            current[best] -= sum;
            schedule.push(best);
        }
        let start = if schedule.is_empty() {
            0
        } else {
            rand::random::<usize>() % schedule.len()
        };
        RoundRobin {
            schedule,
            cursor: AtomicUsize::new(start),
        }
    }
}

impl Balancer for RoundRobin {
    fn pick(
        &self,
        _instances: &[Instance],
        _input: &PickInput,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = self.schedule.len();
        if n == 0 {
            return None;
        }
        // Each slot skipped moves the shared cursor too: an ineligible
        // instance's turns are spread over the others in schedule order,
        // not all handed to its neighbour in the schedule.
        (0..n)
            .map(|_| self.schedule[self.cursor.fetch_add(1, Ordering::Relaxed) % n])
            .find(|&i| eligible(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{instances, spread};
    use hyper::HeaderMap;

    #[test]
    fn spreads_by_weight_and_smoothly() {
        let headers = HeaderMap::new();
        let input = PickInput {
            client_ip: "127.0.0.1".parse().unwrap(),
            headers: &headers,
        };
        let cases: [(&[u32], &[usize]); 3] = [
            (&[1, 1, 1], &[100, 100, 100]),
            (&[5, 1, 1], &[500, 100, 100]),
            (&[2, 3], &[200, 300]),
        ];
        for (weights, want) in cases {
            let inst = instances(weights);
            let rr = RoundRobin::new(&inst);
            let n: usize = want.iter().sum();
            assert_eq!(spread(&rr, &inst, n, &input), want, "weights {weights:?}");
        }
        let inst = instances(&[5, 1, 1]);
        let rr = RoundRobin {
            cursor: AtomicUsize::new(0),
            ..RoundRobin::new(&inst)
        };
        let seq: Vec<usize> = (0..7)
            .map(|_| rr.pick(&inst, &input, &|_| true).unwrap())
            .collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    /// One of three (or of four, weighted) ejected: the others keep their
    /// relative shares instead of one neighbour taking the ejected share.
    #[test]
    fn an_ineligible_instance_shifts_no_share_onto_one_neighbour() {
        let headers = HeaderMap::new();
        let input = PickInput {
            client_ip: "127.0.0.1".parse().unwrap(),
            headers: &headers,
        };
        let cases: [(&[u32], usize, &[usize]); 3] = [
            (&[1, 1, 1], 1, &[300, 0, 300]),
            (&[1, 1, 1], 0, &[0, 300, 300]),
            (&[2, 1, 1, 2], 1, &[240, 0, 120, 240]),
        ];
        for (weights, out, want) in cases {
            let inst = instances(weights);
            let rr = RoundRobin::new(&inst);
            let n: usize = want.iter().sum();
            let mut counts = vec![0; inst.len()];
            for _ in 0..n {
                counts[rr.pick(&inst, &input, &|i| i != out).unwrap()] += 1;
            }
            assert_eq!(counts, want, "weights {weights:?}, {out} out");
        }
    }

    #[test]
    fn skips_ineligible_instances() {
        let headers = HeaderMap::new();
        let input = PickInput {
            client_ip: "127.0.0.1".parse().unwrap(),
            headers: &headers,
        };
        let inst = instances(&[1, 1, 1]);
        let rr = RoundRobin::new(&inst);
        for _ in 0..10 {
            assert_eq!(rr.pick(&inst, &input, &|i| i == 2), Some(2));
        }
        assert_eq!(rr.pick(&inst, &input, &|_| false), None);
    }
}
