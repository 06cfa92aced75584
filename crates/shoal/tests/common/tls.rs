//! Helpers of the HTTPS tests: certificates made with `openssl`, `curl`
//! and `openssl s_client` as independent TLS peers, and a child process
//! whose output lines the test can wait for.

use shoal_testkit::TestCerts;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs `openssl ARGS` in `dir`, panicking with its message on failure.
pub fn openssl(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run openssl (scripts/test installs it)");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().expect("openssl output")
}

/// A new key and certificate for 127.0.0.1 and localhost, signed by the
/// CA of `certs` (so clients that trust it accept it), named `name` in
/// `dir`: what a rotation installs.
pub fn reissue(certs: &TestCerts, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (key, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    let ca_key = certs.ca.with_extension("key");
    for args in [
        vec![
            "req",
            "-subj",
            "/CN=127.0.0.1",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            certs.ca.to_str().unwrap(),
            "-CAkey",
            ca_key.to_str().unwrap(),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            &crt,
        ],
    ] {
        let out = openssl(dir, &args, None);
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (dir.join(crt), dir.join(key))
}

/// The SHA-256 fingerprint of a PEM certificate, as openssl prints it.
pub fn fingerprint(pem: &[u8]) -> String {
    let out = openssl(
        Path::new("/"),
        &["x509", "-noout", "-fingerprint", "-sha256"],
        Some(pem),
    );
    assert!(
        out.status.success(),
        "not a certificate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The fingerprint of the certificate a new connection to `addr` (host:port)
/// is served, verified against `ca`, as `openssl s_client` sees it.
pub fn served_fingerprint(addr: &str, ca: &Path) -> String {
    let out = openssl(
        Path::new("/"),
        &[
            "s_client",
            "-connect",
            addr,
            "-CAfile",
            ca.to_str().unwrap(),
            "-servername",
            "localhost",
            "-verify_return_error",
        ],
        Some(b""),
    );
    assert!(
        out.status.success(),
        "s_client to {addr}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    fingerprint(&out.stdout)
}

/// `curl -sS --noproxy '*' ARGS`: (success, stdout, stderr).
pub fn curl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "20"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run curl (scripts/test installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `openssl s_server -www` on a free port of 127.0.0.1: (process, port).
pub fn tls_backend(cert: &Path, key: &Path) -> (Child, u16) {
    let mut child = Command::new("openssl")
        .args(["s_server", "-accept", "127.0.0.1:0", "-www", "-cert"])
        .arg(cert)
        .arg("-key")
        .arg(key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run openssl (scripts/test installs it)");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        let line = lines.next().expect("s_server said where").unwrap();
        if let Some(addr) = line.strip_prefix("ACCEPT ") {
            break addr.rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, port)
}

/// A child process whose stdout and stderr lines are kept as they come.
pub struct Watched {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Watched {
    /// Spawns `bin ARGS` with both outputs captured line by line.
    pub fn spawn(bin: &Path, args: &[&str]) -> Watched {
        let mut child = Command::new(bin)
            .args(args)
            .env("SHOAL_NO_DOCKER", "true")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shoal");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for pipe in [out, err] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Watched { child, lines }
    }

    /// The first line containing `part`, waiting for it (bounded: a hung
    /// child fails the test with everything it printed).
    pub fn wait_line(&self, part: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| l.contains(part)) {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no line with {part:?}; printed:\n{}",
                self.lines.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The URL announced by the line `<label> listening on <url>`.
    pub fn url(&self, label: &str) -> String {
        let line = self.wait_line(&format!("{label} listening on "));
        line.rsplit("listening on ")
            .next()
            .unwrap()
            .trim()
            .to_string()
    }

    /// Sends `signal` (e.g. "HUP") to the child.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Whether the child is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
