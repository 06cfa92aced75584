//! The real `shoal` binary as a child process on port 0.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A `shoal` child process (any role).
pub struct ServerProcess {
    child: Child,
    /// The URL announced by the line the process was waited for.
    pub url: String,
    /// Every `<label>: listening on <url>` line seen before it was ready.
    pub announced: Vec<(String, String)>,
    bin: PathBuf,
    args: Vec<String>,
    ready: String,
}

/// Reads `label: ... listening on URL` lines until one whose label part
/// contains `ready`; returns (url of that line, all lines seen).
fn wait_ready(child: &mut Child, ready: &str) -> Result<(String, Vec<(String, String)>), String> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Keeps draining stdout for the child's whole life.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some((label, url)) = line.split_once("listening on ") {
                let url = url.split_whitespace().next().unwrap_or("").to_string();
                let _ = tx.send((label.trim().trim_end_matches(':').to_string(), url));
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((label, url)) => {
                let done = label.contains(ready);
                seen.push((label, url.clone()));
                if done {
                    return Ok((url, seen));
                }
            }
            Err(_) => {
                let status = child.try_wait().ok().flatten();
                return Err(format!(
                    "no {ready:?} line within 20 s (exit status: {status:?}; seen {seen:?})"
                ));
            }
        }
    }
}

impl ServerProcess {
    /// Starts `bin server --http-addr 127.0.0.1:0 --dns-addr 127.0.0.1:0
    /// --log-level warn ARGS...`
    /// and waits until it announces its API address. Panics with the reason
    /// if it cannot start.
    pub fn start(bin: &Path, args: &[&str]) -> ServerProcess {
        Self::try_start(bin, args)
            .unwrap_or_else(|e| panic!("cannot start {} server: {e}", bin.display()))
    }

    /// Like [`ServerProcess::start`], returning the failure instead.
    pub fn try_start(bin: &Path, args: &[&str]) -> Result<ServerProcess, String> {
        let mut full = vec![
            "server",
            "--http-addr",
            "127.0.0.1:0",
            "--dns-addr",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ];
        full.extend_from_slice(args);
        let full = crate::store::with_store(&full);
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        Self::try_start_role(bin, &full, "HTTP API")
    }

    /// Starts `bin dev` in memory with every listener (API, DNS, proxy) on
    /// port 0 of 127.0.0.1, plus `extra` flags; returns it and the proxy's
    /// URL. The one place that knows which listeners `shoal dev` opens.
    pub fn try_start_dev(bin: &Path, extra: &[&str]) -> Result<(ServerProcess, String), String> {
        let mut args = vec![
            "dev",
            "--in-memory",
            "--http-addr",
            "127.0.0.1:0",
            "--dns-addr",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ];
        args.extend_from_slice(extra);
        let args = crate::store::with_store(&args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let dev = Self::try_start_role(bin, &args, "HTTP API")?;
        let proxy = dev
            .announced_url("shoal proxy")
            .ok_or("shoal dev announced no proxy address")?
            .to_string();
        Ok((dev, proxy))
    }

    /// Like [`ServerProcess::try_start_dev`], panicking with the reason.
    pub fn start_dev(bin: &Path, extra: &[&str]) -> (ServerProcess, String) {
        Self::try_start_dev(bin, extra)
            .unwrap_or_else(|e| panic!("cannot start {} dev {extra:?}: {e}", bin.display()))
    }

    /// Starts `bin agent` as node `node` syncing to `registry`, its API on
    /// port 0 of 127.0.0.1, plus `extra` flags, and waits until it serves.
    pub fn start_agent(bin: &Path, registry: &str, node: &str, extra: &[&str]) -> ServerProcess {
        let mut args = vec![
            "agent",
            "--registry",
            registry,
            "--node-name",
            node,
            "--http-addr",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ];
        args.extend_from_slice(extra);
        Self::start_role(bin, &args, "shoal agent")
    }

    /// Starts `bin ARGS...` (role and all flags given) and waits for the
    /// announcement line whose label contains `ready` (e.g. `"HTTP API"`,
    /// `"shoal proxy"`, `"shoal hello"`).
    pub fn start_role(bin: &Path, args: &[&str], ready: &str) -> ServerProcess {
        Self::try_start_role(bin, args, ready)
            .unwrap_or_else(|e| panic!("cannot start {} {args:?}: {e}", bin.display()))
    }

    /// Like [`ServerProcess::start_role`], returning the failure instead.
    pub fn try_start_role(bin: &Path, args: &[&str], ready: &str) -> Result<ServerProcess, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        // `shoal dev` watches Docker when its socket exists: tests that want
        // that pass `--docker`, the others must not see every container.
        let mut child = Command::new(bin)
            .args(&args)
            .env("SHOAL_NO_DOCKER", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| e.to_string())?;
        match wait_ready(&mut child, ready) {
            Ok((url, announced)) => Ok(ServerProcess {
                child,
                url,
                announced,
                bin: bin.to_path_buf(),
                args,
                ready: ready.to_string(),
            }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// The URL announced on the line whose label contains `label`.
    pub fn announced_url(&self, label: &str) -> Option<&str> {
        self.announced
            .iter()
            .find(|(l, _)| l.contains(label))
            .map(|(_, u)| u.as_str())
    }

    /// The DNS address the process announced (`DNS listening on
    /// dns://IP:PORT`), the same port for UDP and TCP.
    pub fn dns_addr(&self) -> Option<std::net::SocketAddr> {
        self.announced_url("DNS")?
            .strip_prefix("dns://")?
            .parse()
            .ok()
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// The child's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().ok().and_then(|s| s.code())
    }

    /// Starts the same binary with the same arguments again (new port).
    pub fn restart(&mut self) {
        self.kill();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        *self = ServerProcess::start_role(&self.bin.clone(), &args, &self.ready.clone());
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` (stdin closed, stdout dropped, stderr captured) until it
/// exits by itself or `limit` passes. Returns its exit status, `None` if it
/// was still running and had to be killed, and its stderr either way.
pub fn run_to_exit(
    mut cmd: std::process::Command,
    limit: std::time::Duration,
) -> (Option<std::process::ExitStatus>, String) {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the command");
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the command") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    (status, stderr)
}
