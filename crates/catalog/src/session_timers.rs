//! TTL timers of sessions. A renewal (`/v1/session/renew`) only pushes a
//! deadline back in memory, never writes the store: that is what lets one
//! server sustain many thousands of renewals a second, and it is what
//! Consul does (its leader keeps the timers). When a deadline passes —
//! twice the TTL after the last renewal, Consul's grace — the session is
//! invalidated by an ordinary durable [`Command::SessionDestroy`]. After a
//! restart every TTL session's timer starts again from its full length,
//! as Consul's timers do after a leader change.

use crate::command::Command;
use crate::registry::Registry;
use crate::session::SESSION_TTL_MULTIPLIER;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often deadlines are looked at; bounds how late an expiry is seen.
const TICK: Duration = Duration::from_millis(100);

/// Deadlines of TTL sessions by ID.
#[derive(Debug, Default)]
pub struct SessionTimers {
    deadlines: Mutex<HashMap<String, Instant>>,
}

impl SessionTimers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.deadlines.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (Re)starts a session's timer: it expires `ttl × 2` from now.
    pub fn reset(&self, id: &str, ttl: Duration) {
        let deadline = Instant::now() + ttl * SESSION_TTL_MULTIPLIER;
        self.lock().insert(id.to_string(), deadline);
    }

    /// Forgets a session's timer (it was destroyed).
    pub fn clear(&self, id: &str) {
        self.lock().remove(id);
    }

    /// How many timers run.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no timer runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes and returns the sessions whose deadline is at or before `now`.
    fn take_expired(&self, now: Instant) -> Vec<String> {
        let mut map = self.lock();
        let expired: Vec<String> = map
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            map.remove(id);
        }
        expired
    }

    /// Starts a timer for every TTL session of the current state that has
    /// none (after a restart: all of them).
    fn adopt(&self, registry: &Registry) {
        let (_, sessions) = registry.snapshot().sessions();
        let mut map = self.lock();
        for s in sessions {
            if let Some(ttl) = s.ttl() {
                map.entry(s.id.clone())
                    .or_insert_with(|| Instant::now() + ttl * SESSION_TTL_MULTIPLIER);
            }
        }
    }
}

/// Invalidates TTL sessions whose timer ran out, until the future is
/// dropped. Run exactly one per catalog (the server that writes).
pub async fn expire_sessions(registry: Arc<Registry>) {
    let timers = registry.session_timers();
    timers.adopt(&registry);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for id in timers.take_expired(Instant::now()) {
            if registry.snapshot().session(&id).is_none() {
                continue;
            }
            tracing::info!(session = %id, "session TTL expired; invalidating it");
            let cmd = Command::SessionDestroy { id: id.clone() };
            if let Err(e) = registry.write(cmd).await {
                tracing::warn!(session = %id, error = %e, "cannot invalidate an expired session; retrying");
                timers.lock().insert(id, Instant::now() + TICK);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_twice_the_ttl_and_renewal_pushes_it_back() {
        let t = SessionTimers::default();
        t.reset("a", Duration::from_secs(10));
        t.reset("b", Duration::from_secs(10));
        let now = Instant::now();
        // (looked at, expected expired)
        let cases: [(Duration, &[&str]); 2] = [
            (Duration::from_secs(19), &[]),
            (Duration::from_secs(21), &["a", "b"]),
        ];
        for (after, want) in cases {
            let mut got = t.take_expired(now + after);
            got.sort();
            assert_eq!(got, want, "after {after:?}");
        }
        assert!(t.is_empty());
        t.reset("c", Duration::from_secs(10));
        t.clear("c");
        assert!(t.take_expired(now + Duration::from_secs(100)).is_empty());
    }
}
