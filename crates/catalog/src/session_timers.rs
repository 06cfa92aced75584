//! TTL timers of sessions. A renewal (`/v1/session/renew`) only pushes a
//! deadline back in memory, never writes the store: that is what lets one
//! server sustain many thousands of renewals a second, and it is what
//! Consul does (its leader keeps the timers). When a deadline passes —
//! twice the TTL after the last renewal, Consul's grace — the session is
//! invalidated by an ordinary durable [`Command::SessionDestroy`]. When
//! [`expire_sessions`] starts (after a restart, or on a server that just
//! took the lead) every TTL session's timer starts again from its full
//! length, as Consul's timers do after a leader change.
//!
//! With several servers on one catalog (etcd), only the leader runs
//! [`expire_sessions`]; a renewal received by any server is passed on
//! ([`SessionTimers::forward_to`]) so the leader's timers see it
//! ([`SessionTimers::renewal_seen`]).

use crate::command::Command;
use crate::registry::Registry;
use crate::session::SESSION_TTL_MULTIPLIER;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Told of every renewal this server receives (see [`SessionTimers::forward_to`]).
pub type RenewalForward = Box<dyn Fn(&str) + Send + Sync>;

/// How often deadlines are looked at; bounds how late an expiry is seen.
const TICK: Duration = Duration::from_millis(100);

/// Deadlines of TTL sessions by ID.
#[derive(Default)]
pub struct SessionTimers {
    deadlines: Mutex<HashMap<String, Instant>>,
    /// With several servers, renewals are passed on to the others.
    forward: OnceLock<RenewalForward>,
}

impl std::fmt::Debug for SessionTimers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTimers").finish_non_exhaustive()
    }
}

impl SessionTimers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.deadlines.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A session was created or renewed on this server: (re)starts its
    /// timer, which expires `ttl × 2` from now, and passes the renewal on
    /// (when set up to).
    pub fn reset(&self, id: &str, ttl: Duration) {
        if let Some(forward) = self.forward.get() {
            forward(id);
        }
        self.renewal_seen(id, ttl);
    }

    /// Records a renewal another server received (restarts the timer).
    pub fn renewal_seen(&self, id: &str, ttl: Duration) {
        let deadline = Instant::now() + ttl * SESSION_TTL_MULTIPLIER;
        self.lock().insert(id.to_string(), deadline);
    }

    /// Passes every renewal [`SessionTimers::reset`] records on to
    /// `forward` (servers sharing a catalog tell each other); set once.
    pub fn forward_to(&self, forward: RenewalForward) {
        let _ = self.forward.set(forward);
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

    /// Drops the timers of sessions the current state no longer has (a
    /// server that does not lead keeps timers it never acts on: sessions
    /// destroyed through another server would otherwise stay forever).
    pub fn forget_gone(&self, registry: &Registry) {
        let snapshot = registry.snapshot();
        self.lock().retain(|id, _| snapshot.session(id).is_some());
    }

    /// Gives every TTL session of the current state a timer: a full TTL
    /// when `restart` (this server starts expiring sessions: after a
    /// restart or a change of leader, a renewal it did not see may have
    /// happened), else only to sessions without one (created or loaded
    /// since). Timers of sessions that are gone are dropped.
    fn adopt(&self, registry: &Registry, restart: bool) {
        let (_, sessions) = registry.snapshot().sessions();
        let now = Instant::now();
        let mut map = self.lock();
        let live: std::collections::HashSet<&str> =
            sessions.iter().map(|s| s.id.as_str()).collect();
        map.retain(|id, _| live.contains(id.as_str()));
        for s in &sessions {
            if let Some(ttl) = s.ttl() {
                let full = now + ttl * SESSION_TTL_MULTIPLIER;
                if restart {
                    map.insert(s.id.clone(), full);
                } else {
                    map.entry(s.id.clone()).or_insert(full);
                }
            }
        }
    }
}

/// Invalidates TTL sessions whose timer ran out, until the future is
/// dropped. Run exactly one per catalog: the one server, or the leader of
/// servers sharing one (see the module doc).
pub async fn expire_sessions(registry: Arc<Registry>) {
    let timers = registry.session_timers();
    timers.adopt(&registry, true);
    let mut adopted_at = registry.snapshot().sessions_index();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Sessions created through another server (or loaded again) get
        // a timer once this server's view has them.
        let index = registry.snapshot().sessions_index();
        if index != adopted_at {
            timers.adopt(&registry, false);
            adopted_at = index;
        }
        for id in timers.take_expired(Instant::now()) {
            if registry.snapshot().session(&id).is_none() {
                continue;
            }
            let cmd = Command::SessionDestroy { id: id.clone() };
            match registry.write(cmd).await {
                Ok(outcome) if outcome.applied => {
                    registry.metrics().sessions_expired.inc();
                    tracing::info!(session = %id, "session TTL expired; invalidated it");
                }
                Ok(_) => tracing::debug!(session = %id, "expired session was already gone"),
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "cannot invalidate an expired session; retrying");
                    timers.lock().insert(id, Instant::now() + TICK);
                }
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
