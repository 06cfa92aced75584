//! The client side of blocking queries, as Consul's documentation asks
//! every watcher to behave: reset the index when it goes backwards, never
//! block on index 0, and rate-limit loops that return without a change.

use crate::catalog::{Catalog, Indexed, InstanceFilter, QueryOptions};
use crate::model::ServiceEntry;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The index to send with the next blocking query, given the one sent
/// before and the one the server just returned.
pub fn next_index(sent: u64, returned: u64) -> u64 {
    if returned < sent {
        // The server's index went backwards (restore, restart, reset):
        // start over with a non-blocking read.
        0
    } else {
        // An index of 0 would never block; Consul's docs say use 1.
        returned.max(1)
    }
}

/// Spaces out consecutive queries that return without any change, so a
/// misbehaving server cannot make a watcher spin.
#[derive(Debug)]
pub struct RateLimit {
    min_interval: Duration,
    last: Option<Instant>,
}

impl RateLimit {
    /// At most one unchanged return per `min_interval`.
    pub fn new(min_interval: Duration) -> Self {
        RateLimit {
            min_interval,
            last: None,
        }
    }

    /// Call after each query; sleeps if the previous unchanged one was too
    /// recent. `changed` queries are never delayed.
    pub async fn pace(&mut self, changed: bool) {
        let now = Instant::now();
        if !changed {
            if let Some(last) = self.last {
                let due = last + self.min_interval;
                if due > now {
                    tokio::time::sleep_until(due).await;
                }
            }
        }
        self.last = Some(Instant::now());
    }
}

/// Keeps a `watch` channel updated with the instances of a service, by
/// blocking queries against any catalog, until every receiver is gone.
/// Errors are retried with a capped backoff; the last good value stays.
pub fn watch_instances(
    catalog: Arc<dyn Catalog>,
    service: String,
    filter: InstanceFilter,
    wait: Duration,
) -> watch::Receiver<Option<Indexed<Vec<ServiceEntry>>>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut index = 0;
        let mut pace = RateLimit::new(Duration::from_millis(50));
        let mut backoff = Duration::from_millis(100);
        while !tx.is_closed() {
            let q = QueryOptions::blocking(index, wait);
            let query = catalog.instances(&service, &filter, q);
            let result = tokio::select! {
                r = query => r,
                _ = tx.closed() => return,
            };
            match result {
                Ok(got) => {
                    backoff = Duration::from_millis(100);
                    let changed = got.index != index;
                    index = next_index(index, got.index);
                    if changed || tx.borrow().is_none() {
                        tx.send_replace(Some(got));
                    }
                    pace.pace(changed).await;
                }
                Err(e) => {
                    tracing::warn!(service = %service, error = %e, "watch query failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_rules() {
        // (sent, returned, next)
        let cases = [
            (0, 5, 5),
            (5, 9, 9),
            (9, 9, 9),
            (9, 3, 0),
            (0, 0, 1),
            (4, 0, 0),
        ];
        for (sent, returned, want) in cases {
            assert_eq!(
                next_index(sent, returned),
                want,
                "sent {sent} returned {returned}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unchanged_returns_are_paced() {
        let mut rl = RateLimit::new(Duration::from_millis(100));
        let start = Instant::now();
        rl.pace(false).await;
        rl.pace(false).await;
        rl.pace(false).await;
        assert!(start.elapsed() >= Duration::from_millis(200));
        let t = Instant::now();
        rl.pace(true).await;
        assert_eq!(t.elapsed(), Duration::ZERO);
    }
}
