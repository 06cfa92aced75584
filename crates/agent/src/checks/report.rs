//! Writing a check's results to the catalog: a status change at once, an
//! output-only change at most every few minutes (as Consul's
//! `check_update_interval`), and nothing at all for a run that changes
//! nothing.

use shoal_catalog::{Check, Command, HealthStatus, Registry};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often a changed output alone may be written.
pub(crate) const OUTPUT_UPDATE_INTERVAL: Duration = Duration::from_secs(300);

/// Writes one check's results.
pub(crate) struct Reporter {
    pub registry: Arc<Registry>,
    pub node: String,
    pub check_id: String,
    last_write: Option<Instant>,
    /// The check as last read, with the node's index then: while the
    /// index stays, the catalog's copy is unchanged and need not be
    /// looked up again (most runs of a steady check end here).
    seen: Option<(u64, Arc<Check>)>,
}

impl Reporter {
    pub fn new(registry: Arc<Registry>, node: &str, check_id: &str) -> Self {
        Reporter {
            registry,
            node: node.to_string(),
            check_id: check_id.to_string(),
            last_write: None,
            seen: None,
        }
    }

    /// The check as the catalog has it now, if it still exists.
    fn current(&mut self) -> Option<Arc<Check>> {
        let snapshot = self.registry.snapshot();
        let index = snapshot.node_index(&self.node);
        if let Some((seen_at, check)) = &self.seen {
            if *seen_at == index {
                return Some(check.clone());
            }
        }
        let check = snapshot.check(&self.node, &self.check_id)?;
        self.seen = Some((index, check.clone()));
        Some(check)
    }

    /// The check's current output, if it still exists.
    pub fn current_output(&mut self) -> Option<String> {
        Some(self.current()?.output.clone())
    }

    /// Records a result; writes only what changed (see the module doc).
    pub async fn report(&mut self, status: HealthStatus, output: String) {
        let Some(current) = self.current() else {
            return;
        };
        let status_changed = current.status != status;
        let output_due = current.output != output
            && self
                .last_write
                .is_none_or(|t| t.elapsed() >= OUTPUT_UPDATE_INTERVAL);
        if !status_changed && !output_due {
            return;
        }
        if status_changed {
            tracing::info!(
                node = %self.node,
                check = %self.check_id,
                service = %current.service_id,
                from = current.status.as_str(),
                to = status.as_str(),
                output = %output,
                "check status changed"
            );
        }
        let cmd = Command::UpdateCheck {
            node: self.node.clone(),
            check_id: self.check_id.clone(),
            status,
            output: Some(output),
        };
        match self.registry.write(cmd).await {
            Ok(_) => self.last_write = Some(Instant::now()),
            // Deregistered meanwhile: the runner stops this check next.
            Err(shoal_catalog::Error::NotFound(_)) => {}
            Err(e) => {
                tracing::warn!(check = %self.check_id, error = %e, "cannot record check result")
            }
        }
    }
}
