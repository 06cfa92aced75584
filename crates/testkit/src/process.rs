//! The real `shoal` binary as a child process on port 0.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A `shoal server` child process.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT` it announced.
    pub url: String,
    bin: PathBuf,
    args: Vec<String>,
}

/// What a child printed before it was ready (or died).
fn wait_ready(child: &mut Child) -> Result<String, String> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some((_, url)) = line.split_once("listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20)).map_err(|_| {
        let status = child.try_wait().ok().flatten();
        format!("server did not announce its address (exit status: {status:?})")
    })
}

impl ServerProcess {
    /// Starts `bin server --http-addr 127.0.0.1:0 ARGS...` and waits until it
    /// announces its address. Panics with the reason if it cannot start.
    pub fn start(bin: &Path, args: &[&str]) -> ServerProcess {
        Self::try_start(bin, args).unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()))
    }

    /// Like [`ServerProcess::start`], returning the failure instead.
    pub fn try_start(bin: &Path, args: &[&str]) -> Result<ServerProcess, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut child = Command::new(bin)
            .arg("server")
            .args(["--http-addr", "127.0.0.1:0", "--log-level", "warn"])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| e.to_string())?;
        match wait_ready(&mut child) {
            Ok(url) => Ok(ServerProcess {
                child,
                url,
                bin: bin.to_path_buf(),
                args,
            }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
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
        *self = ServerProcess::start(&self.bin.clone(), &args);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
