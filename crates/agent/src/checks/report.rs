//! Writing a check's results to the catalog: a status change at once, an
//! output-only change at most every few minutes (as Consul's
//! `check_update_interval`), and nothing at all for a run that changes
//! nothing.

use shoal_catalog::{Command, HealthStatus, Registry};
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
}

impl Reporter {
    pub fn new(registry: Arc<Registry>, node: &str, check_id: &str) -> Self {
        Reporter {
            registry,
            node: node.to_string(),
            check_id: check_id.to_string(),
            last_write: None,
        }
    }

    /// The check's current output, if it still exists.
    pub fn current_output(&self) -> Option<String> {
        let check = self.registry.snapshot().check(&self.node, &self.check_id)?;
        Some(check.output.clone())
    }

    /// Records a result; writes only what changed (see the module doc).
    pub async fn report(&mut self, status: HealthStatus, output: String) {
        let Some(current) = self.registry.snapshot().check(&self.node, &self.check_id) else {
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
