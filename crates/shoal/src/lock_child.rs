//! `shoal lock-child` (hidden): the process `shoal lock` puts between
//! itself and the user's command, so that the command cannot outlive the
//! lock holder.
//!
//! `consul lock` starts its child directly; when `consul lock` is killed
//! with SIGKILL its child keeps running, and once the session expires
//! another contender starts a second copy: two leaders. Here the guard
//! asks the kernel for a SIGTERM when its parent dies (Linux's
//! `PR_SET_PDEATHSIG`), runs the command in a process group of its own,
//! and on SIGTERM, SIGINT or SIGHUP ends the whole group: SIGTERM, then
//! SIGKILL after [`GRACE`]. A dead `shoal lock` therefore takes its
//! command down at once — long before the server lets anyone else take
//! the lock (twice the session TTL, then the lock-delay). When the
//! command itself exits, whatever it left in its group is ended too:
//! nothing keeps running after the lock is given back.

use anyhow::{bail, Context};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

/// Between SIGTERM and SIGKILL to the command's group (Consul's
/// `lockKillGracePeriod`).
pub const GRACE: Duration = Duration::from_secs(5);

/// Flags of `shoal lock-child`.
#[derive(clap::Args, Debug)]
pub struct LockChildArgs {
    /// The process ID of the `shoal lock` that started this guard; if it is
    /// already gone, the command is not started.
    #[arg(long)]
    parent: u32,
    /// The command: one argument runs through `sh -c`, several are run as given.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// The user's command as `shoal lock` documents it.
fn command(argv: &[String]) -> Command {
    if argv.len() == 1 {
        let mut c = Command::new("sh");
        c.arg("-c").arg(&argv[0]);
        c
    } else {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    }
}

/// Runs the guard; exits with the command's exit code (128 + signal when
/// it was killed by one).
pub async fn run(args: LockChildArgs) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)
        .context("cannot ask for a signal when shoal lock dies")?;
    // The parent may have died between starting us and the line above.
    if std::os::unix::process::parent_id() != args.parent {
        bail!("shoal lock ended before its command started");
    }
    let mut child = command(&args.command)
        .process_group(0)
        .env("CONSUL_LOCK_HELD", "true")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {:?}", args.command))?;
    let group = Pid::from_raw(child.id().context("the command has no process ID")? as i32);
    let code = tokio::select! {
        status = child.wait() => exit_code(status.context("waiting for the command")?),
        _ = term.recv() => stop_group(group, &mut child).await,
        _ = int.recv() => stop_group(group, &mut child).await,
        _ = hup.recv() => stop_group(group, &mut child).await,
    };
    // Leftovers of the command (background jobs) must not run unlocked.
    let _ = killpg(group, Signal::SIGTERM);
    std::process::exit(code);
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// SIGTERM to the group; SIGKILL to it after [`GRACE`]; the exit code.
async fn stop_group(group: Pid, child: &mut Child) -> i32 {
    let _ = killpg(group, Signal::SIGTERM);
    if let Ok(Ok(status)) = tokio::time::timeout(GRACE, child.wait()).await {
        return exit_code(status);
    }
    tracing::warn!("the command did not stop within {GRACE:?} of SIGTERM; killing it");
    let _ = killpg(group, Signal::SIGKILL);
    match child.wait().await {
        Ok(status) => exit_code(status),
        Err(_) => 137,
    }
}
