//! Heartbeats: when a TTL check was last refreshed. A refresh that changes
//! nothing in the catalog (the same status and output again) writes
//! nothing and moves no index, yet it must still push the TTL's deadline
//! back; this in-memory record is what the TTL timers read.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// Told of every refresh this server receives (see [`Heartbeats::forward_to`]).
pub type BeatForward = Box<dyn Fn(&str, &str) + Send + Sync>;

/// Last refresh time per `(node, check ID)`.
#[derive(Default)]
pub struct Heartbeats {
    last: Mutex<HashMap<(String, String), Instant>>,
    /// With several servers, refreshes are passed on to the others.
    forward: OnceLock<BeatForward>,
}

impl std::fmt::Debug for Heartbeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeats").finish_non_exhaustive()
    }
}

impl Heartbeats {
    /// Records a refresh of `check_id` on `node` now, received by this
    /// server (and passes it on, when set up to).
    pub fn beat(&self, node: &str, check_id: &str) {
        if let Some(forward) = self.forward.get() {
            forward(node, check_id);
        }
        self.beat_seen(node, check_id);
    }

    /// Passes every refresh [`Heartbeats::beat`] records on to `forward`
    /// (servers sharing a catalog tell each other); set once.
    pub fn forward_to(&self, forward: BeatForward) {
        let _ = self.forward.set(forward);
    }

    /// Records a refresh another server received.
    pub fn beat_seen(&self, node: &str, check_id: &str) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.insert((node.to_string(), check_id.to_string()), Instant::now());
    }

    /// When `check_id` on `node` was last refreshed, if ever.
    pub fn last(&self, node: &str, check_id: &str) -> Option<Instant> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.get(&(node.to_string(), check_id.to_string())).copied()
    }

    /// Forgets a check (it was deregistered).
    pub fn forget(&self, node: &str, check_id: &str) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.remove(&(node.to_string(), check_id.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_latest_beat_per_check() {
        let h = Heartbeats::default();
        assert!(h.last("n", "c").is_none());
        h.beat("n", "c");
        let first = h.last("n", "c").unwrap();
        h.beat("n", "c");
        assert!(h.last("n", "c").unwrap() >= first);
        assert!(h.last("n", "other").is_none() && h.last("m", "c").is_none());
        h.forget("n", "c");
        assert!(h.last("n", "c").is_none());
    }
}
