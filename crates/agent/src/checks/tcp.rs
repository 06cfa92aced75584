//! TCP checks: passing when a connection to `host:port` opens in time.

use super::probe::{Outcome, Probe};
use async_trait::async_trait;
use shoal_catalog::HealthStatus;
use std::time::Duration;

pub(crate) struct TcpProbe {
    pub target: String,
}

#[async_trait]
impl Probe for TcpProbe {
    async fn run(&self) -> Outcome {
        match tokio::net::TcpStream::connect(self.target.as_str()).await {
            Ok(_) => Outcome {
                status: HealthStatus::Passing,
                output: format!("TCP connect {}: Success", self.target),
            },
            Err(e) => Outcome::critical(format!("dial tcp {}: {e}", self.target)),
        }
    }

    fn timed_out(&self, after: Duration) -> Outcome {
        Outcome::critical(format!(
            "dial tcp {}: i/o timeout after {after:?}",
            self.target
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_port_passes_and_closed_port_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        let ok = TcpProbe {
            target: open.clone(),
        }
        .run()
        .await;
        assert_eq!(ok.status, HealthStatus::Passing);
        assert_eq!(ok.output, format!("TCP connect {open}: Success"));
        drop(listener);
        let bad = TcpProbe {
            target: open.clone(),
        }
        .run()
        .await;
        assert_eq!(bad.status, HealthStatus::Critical);
        assert!(
            bad.output.starts_with(&format!("dial tcp {open}: ")),
            "{}",
            bad.output
        );
    }
}
