//! Foreign servers (nginx, HAProxy) as children in the foreground, each
//! stopped when its guard is dropped (also when the benchmark fails half
//! way): SIGTERM, which makes an nginx master stop its workers, then
//! SIGKILL if it has not exited within a few seconds.

use super::fleet::{command_line, pinned};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a foreign server gets to start answering.
const READY_LIMIT: Duration = Duration::from_secs(10);
/// How long it gets to exit after SIGTERM before SIGKILL.
const STOP_LIMIT: Duration = Duration::from_secs(5);

/// A running foreign server; dropping it stops it.
pub struct Daemon {
    child: Child,
    /// Short name for messages (`nginx (backends)`, `HAProxy`, ...).
    pub name: String,
    /// The command line, for the report.
    pub command: String,
    /// Where its stderr goes (shown when it fails to start).
    log: PathBuf,
}

impl Daemon {
    /// Starts `program args...` (pinned to `cpus` if given), stdout and
    /// stderr into `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        cpus: Option<&str>,
        log: PathBuf,
    ) -> Result<Daemon> {
        let (program, argv) = pinned(cpus, program, args);
        let command = command_line(&program, &argv);
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(&program)
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start `{command}`"))?;
        Ok(Daemon {
            child,
            name: name.to_string(),
            command,
            log,
        })
    }

    /// The child's process ID (the nginx master's, for nginx).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) until `probe` succeeds; fails early, with the
    /// server's own output, if it exits.
    pub async fn wait_ready<F, Fut>(&mut self, mut probe: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited at start ({status}): {}",
                    self.name,
                    self.output()
                );
            }
            if probe().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not answer within {READY_LIMIT:?}: {}",
                    self.name,
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn output(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let text = text.trim();
        if text.is_empty() {
            format!("no output (see {})", self.log.display())
        } else {
            text.to_string()
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_LIMIT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
