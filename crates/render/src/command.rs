//! Running commands as consul-template does: one string with spaces runs
//! through `sh -c`, otherwise the words are the argv. Reload commands run
//! with a timeout, their output goes to the log, a failure is reported.
//! [`Child`] supervises the `exec` process: started after the first
//! render, signalled on change, stopped with its kill signal.

use crate::error::{Error, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;
use tokio::process::Command;

/// argv of a command: `sh -c CMD` for one string with spaces.
pub fn argv(command: &[String]) -> Result<Vec<String>> {
    match command {
        [one] if one.split_whitespace().count() > 1 => {
            Ok(vec!["sh".into(), "-c".into(), one.clone()])
        }
        [first, ..] if !first.trim().is_empty() => Ok(command.to_vec()),
        _ => Err(Error::Command("empty command".into())),
    }
}

fn build(command: &[String]) -> Result<Command> {
    let argv = argv(command)?;
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    Ok(c)
}

/// Runs a reload command to completion within `timeout`, logging its
/// output; an error says how it failed (exit status, timeout, spawn).
pub async fn run(command: &[String], timeout: Duration) -> Result<()> {
    let shown = command.join(" ");
    let mut c = build(command)?;
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = c
        .spawn()
        .map_err(|e| Error::Command(format!("command {shown:?}: cannot start: {e}")))?;
    tracing::info!(command = %shown, "render: running command");
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(r) => r.map_err(|e| Error::Command(format!("command {shown:?}: {e}")))?,
        Err(_) => {
            return Err(Error::Command(format!(
                "command {shown:?} did not finish within {timeout:?} (killed)"
            )))
        }
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        tracing::info!(command = %shown, "{line}");
    }
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        tracing::warn!(command = %shown, "{line}");
    }
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command(format!(
            "command {shown:?} failed: {}",
            out.status
        )))
    }
}

/// Parses a signal name as consul-template accepts them (`SIGHUP`, `HUP`).
pub fn parse_signal(name: &str) -> Result<Signal> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).map_err(|_| Error::config(format!("unknown signal {name:?}")))
}

/// The supervised `exec` child.
pub struct Child {
    child: tokio::process::Child,
    kill_signal: Signal,
    kill_timeout: Duration,
}

impl Child {
    /// Starts `command` with inherited stdio.
    pub fn start(command: &[String], kill_signal: Signal, kill_timeout: Duration) -> Result<Child> {
        let shown = command.join(" ");
        let child = build(command)?
            .spawn()
            .map_err(|e| Error::Command(format!("exec {shown:?}: cannot start: {e}")))?;
        tracing::info!(command = %shown, pid = ?child.id(), "render: started child");
        Ok(Child {
            child,
            kill_signal,
            kill_timeout,
        })
    }

    /// Sends `sig` to the child.
    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.child.id() {
            if let Err(e) = kill(Pid::from_raw(pid as i32), sig) {
                tracing::warn!(error = %e, ?sig, "render: cannot signal child");
            }
        }
    }

    /// Waits for the child to exit; returns its exit code (128+signal
    /// when killed by one).
    pub async fn wait(&mut self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        match self.child.wait().await {
            Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
            Err(_) => 1,
        }
    }

    /// Sends the kill signal, waits up to the kill timeout, then SIGKILL.
    pub async fn stop(&mut self) -> i32 {
        self.signal(self.kill_signal);
        match tokio::time::timeout(self.kill_timeout, self.wait()).await {
            Ok(code) => code,
            Err(_) => {
                let _ = self.child.start_kill();
                self.wait().await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_with_spaces_go_through_sh() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            argv(&s(&["nginx -s reload"])).unwrap(),
            s(&["sh", "-c", "nginx -s reload"])
        );
        assert_eq!(argv(&s(&["/bin/true"])).unwrap(), s(&["/bin/true"]));
        assert_eq!(argv(&s(&["a", "b c"])).unwrap(), s(&["a", "b c"]));
        assert!(argv(&[]).is_err());
    }

    #[test]
    fn signal_names() {
        assert_eq!(parse_signal("SIGHUP").unwrap(), Signal::SIGHUP);
        assert_eq!(parse_signal("usr1").unwrap(), Signal::SIGUSR1);
        assert!(parse_signal("SIGNOPE").is_err());
    }

    #[tokio::test]
    async fn failures_and_timeouts_are_reported() {
        let s = |x: &str| vec![x.to_string()];
        assert!(run(&s("true"), Duration::from_secs(5)).await.is_ok());
        let e = run(&s("echo out; exit 3"), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("failed: exit status: 3"), "{e}");
        let e = run(&s("sleep 5"), Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("did not finish"), "{e}");
    }
}
