//! The one retry loop: pick an instance, refuse one that is the proxy
//! itself, try it through the protocol's [`Exchange`], and on a failure
//! decide (by [`Failure::may_retry`]) whether another instance gets the
//! request. Every protocol path calls [`send_with_retries`].

use super::outcome::{attempt_failed, Failure};
use crate::balance::PickInput;
use crate::error::ProxyError;
use crate::instance::Instance;
use crate::table::Upstream;
use crate::Shared;
use std::sync::atomic::Ordering;

/// One protocol's way to send a request to one instance and get the head
/// of its answer (or everything, for a path that relays inside).
pub trait Exchange {
    /// What a successful attempt hands back.
    type Answer;

    /// Tries `inst`; a failure says whose fault it was and whether the
    /// request could still go elsewhere.
    async fn attempt(
        &mut self,
        shared: &Shared,
        upstream: &Upstream,
        inst: &Instance,
    ) -> Result<Self::Answer, Failure>;
}

/// Instances tried for one request: inline for the usual few attempts.
#[derive(Default)]
struct Tried {
    inline: [usize; 4],
    len: usize,
    more: Vec<usize>,
}

impl Tried {
    fn push(&mut self, i: usize) {
        if self.len < self.inline.len() {
            self.inline[self.len] = i;
        } else {
            if self.more.is_empty() {
                self.more.extend_from_slice(&self.inline);
            }
            self.more.push(i);
        }
        self.len += 1;
    }

    fn as_slice(&self) -> &[usize] {
        if self.more.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.more
        }
    }
}

/// Tries instances of `upstream` until one answers: `cfg.retries` more
/// after a failure that may have reached the instance, and, after one that
/// sent nothing (a refused connection: an instance going away while it is
/// still listed), every instance not tried yet, since that costs a connect
/// and cannot have done anything twice. Scaling 5 -> 1 leaves four dying
/// instances listed for a moment; a budget of two retries let a request
/// meet three of them and fail.
pub async fn send_with_retries<E: Exchange>(
    shared: &Shared,
    upstream: &Upstream,
    input: &PickInput<'_>,
    exchange: &mut E,
    replayable: bool,
) -> Result<E::Answer, ProxyError> {
    let mut tried = Tried::default();
    let mut last: Option<Failure> = None;
    let mut budget = shared.cfg.retries;
    while let Some(i) = upstream.pick(input, tried.as_slice()) {
        let inst = &upstream.instances[i];
        if let Some(&prev) = tried.as_slice().last() {
            let prev: &Instance = &upstream.instances[prev];
            prev.state.stats.retries.fetch_add(1, Ordering::Relaxed);
        }
        tried.push(i);
        if shared.is_own_listener(inst.addr) {
            return Err(ProxyError::Loop {
                service: upstream.service.clone(),
                instance: inst.id.clone(),
                addr: inst.addr,
            });
        }
        let failure = match exchange.attempt(shared, upstream, inst).await {
            Ok(answer) => return Ok(answer),
            Err(failure) => failure,
        };
        attempt_failed(shared, upstream, inst, &failure);
        if let Failure::Client(reason) = failure {
            return Err(ProxyError::Client(reason));
        }
        let free = matches!(failure, Failure::NotSent(_));
        let retry = failure.may_retry(replayable) && (free || budget > 0);
        if retry && !free {
            budget -= 1;
        }
        let described = format!("instance {} ({}): {}", inst.id, inst.addr, failure.reason());
        last = Some(match failure {
            Failure::Timeout(_) => Failure::Timeout(described),
            _ => Failure::BadAnswer(described),
        });
        if !retry {
            break;
        }
    }
    Err(match last {
        Some(Failure::Timeout(reason)) => ProxyError::UpstreamTimeout {
            service: upstream.service.clone(),
            reason,
        },
        Some(f) => ProxyError::Upstream {
            service: upstream.service.clone(),
            reason: f.reason().to_string(),
        },
        None => ProxyError::Upstream {
            service: upstream.service.clone(),
            reason: "no instance could be tried".into(),
        },
    })
}
