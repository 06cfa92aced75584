//! One blocking-query loop per distinct dependency, shared by every
//! template that reads it; each new value goes to the runner. Index
//! rules (reset on a backwards index, never block on 0, pace unchanged
//! returns) are the catalog crate's; errors retry with a capped backoff.

use crate::deps::{Data, Dependency};
use crate::source::Source;
use shoal_catalog::blocking::{next_index, RateLimit};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long one blocking query waits at most.
const WAIT: Duration = Duration::from_secs(60);

/// A new value of a dependency.
pub type Update = (Dependency, Arc<Data>);

/// The running watches.
pub struct Watcher {
    source: Arc<dyn Source>,
    tx: mpsc::UnboundedSender<Update>,
    running: HashMap<Dependency, JoinHandle<()>>,
}

impl Watcher {
    /// A watcher sending updates to `tx`.
    pub fn new(source: Arc<dyn Source>, tx: mpsc::UnboundedSender<Update>) -> Self {
        Watcher {
            source,
            tx,
            running: HashMap::new(),
        }
    }

    /// Starts watching `dep` unless it is watched already.
    pub fn ensure(&mut self, dep: &Dependency) {
        if self.running.contains_key(dep) {
            return;
        }
        if let Some(dc) = dep.datacenter() {
            tracing::warn!(dependency = %dep, datacenter = dc, "render: shoal serves one datacenter; reading the local one");
        }
        let handle = tokio::spawn(watch(self.source.clone(), dep.clone(), self.tx.clone()));
        self.running.insert(dep.clone(), handle);
    }

    /// Stops the watches `keep` does not want.
    pub fn retain(&mut self, keep: impl Fn(&Dependency) -> bool) {
        self.running.retain(|d, h| {
            let k = keep(d);
            if !k {
                h.abort();
            }
            k
        });
    }

    /// How many dependencies are watched.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// Whether nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        for h in self.running.values() {
            h.abort();
        }
    }
}

async fn watch(source: Arc<dyn Source>, dep: Dependency, tx: mpsc::UnboundedSender<Update>) {
    let block_on_missing = matches!(dep, Dependency::KvGet { block: true, .. });
    let mut index = 0;
    let mut last: Option<Arc<Data>> = None;
    let mut pace = RateLimit::new(Duration::from_millis(50));
    let mut backoff = Duration::from_millis(100);
    loop {
        match source.fetch(&dep, index, WAIT).await {
            Ok(got) => {
                backoff = Duration::from_millis(100);
                let changed = got.index != index;
                index = next_index(index, got.index);
                // `key` on a missing key waits for it: no value is delivered.
                let absent = matches!(got.value, Data::Kv(None));
                if !(block_on_missing && absent) && last.as_deref() != Some(&got.value) {
                    let data = Arc::new(got.value);
                    last = Some(data.clone());
                    if tx.send((dep.clone(), data)).is_err() {
                        return;
                    }
                }
                pace.pace(changed).await;
            }
            Err(e) => {
                tracing::warn!(dependency = %dep, error = %e, "render: query failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
