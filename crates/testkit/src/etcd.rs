//! A real etcd cluster on loopback for tests: `etcd` members (Debian's
//! `etcd-server`) on free ports with data in a temporary directory, that a
//! test can kill and restart; and `shoal server --store etcd` processes on
//! it. `etcdctl` (Debian's `etcd-client`) does the cluster's chores.

use crate::ServerProcess;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One member: its ports stay the same across restarts.
struct Member {
    name: String,
    client: u16,
    peer: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A running etcd cluster.
pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    dir: tempfile::TempDir,
    /// Client TLS of the members (https client URLs), if any.
    tls: Option<EtcdTls>,
    /// `user:password` that `etcdctl` logs in with once auth is on.
    etcdctl_user: Option<String>,
    /// More flags for every member.
    args: Vec<String>,
}

/// How to start the members beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct EtcdOptions {
    /// TLS on the client port.
    pub tls: Option<EtcdTls>,
    /// More flags for every member (e.g. `--auth-token-ttl 1`).
    pub args: Vec<String>,
}

/// TLS on the members' client port: their certificate, and with
/// `client_ca` the CA that must sign every client's certificate
/// (etcd's `--client-cert-auth`).
#[derive(Clone, Debug)]
pub struct EtcdTls {
    pub certs: TestCerts,
    pub client_cert_auth: bool,
}

/// A CA, a certificate for 127.0.0.1 signed by it (for etcd: server and
/// client use, as etcd's own gateway connects with it), a client
/// certificate signed by it, and another CA that signed nothing here, all
/// made with `openssl` at test time (PEM files in `dir`).
#[derive(Clone, Debug)]
pub struct TestCerts {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed none of these.
    pub other_ca: PathBuf,
}

impl TestCerts {
    /// Makes the certificates in `dir` with `openssl` (P-256 keys, valid
    /// for two days). Panics with openssl's message if it cannot.
    pub fn generate(dir: &Path) -> TestCerts {
        std::fs::create_dir_all(dir).expect("cert dir");
        let path = |name: &str| dir.join(name);
        let run = |args: &[&str]| openssl(dir, args);
        let key = EC_KEY;
        for (ca, cn) in [("ca", "/CN=shoal test CA"), ("other-ca", "/CN=another CA")] {
            let (k, c) = (format!("{ca}.key"), format!("{ca}.crt"));
            let mut args = vec!["req", "-x509", "-days", "2", "-subj", cn];
            args.extend_from_slice(&key);
            args.extend_from_slice(&["-keyout", &k, "-out", &c]);
            run(&args);
        }
        std::fs::write(
            path("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .expect("server.ext");
        std::fs::write(path("client.ext"), "extendedKeyUsage=clientAuth\n").expect("client.ext");
        for (name, cn) in [("server", "/CN=127.0.0.1"), ("client", "/CN=shoal")] {
            let (k, csr, c, ext) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
                format!("{name}.ext"),
            );
            let mut args = vec!["req", "-subj", cn];
            args.extend_from_slice(&key);
            args.extend_from_slice(&["-keyout", &k, "-out", &csr]);
            run(&args);
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &c,
            ]);
        }
        TestCerts {
            ca: path("ca.crt"),
            server_cert: path("server.crt"),
            server_key: path("server.key"),
            client_cert: path("client.crt"),
            client_key: path("client.key"),
            other_ca: path("other-ca.crt"),
        }
    }
}

impl TestCerts {
    /// A self-signed certificate for `names` (DNS names; the first is the
    /// subject's CN) and its key, made with `openssl` in `dir` as
    /// `<stem>.crt` and `<stem>.key` (P-256, two days).
    pub fn self_signed(dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        std::fs::create_dir_all(dir).expect("cert dir");
        let (cert, key) = (format!("{stem}.crt"), format!("{stem}.key"));
        let sans: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        let subject = format!("/CN={}", names.first().copied().unwrap_or("localhost"));
        let san = format!("subjectAltName={}", sans.join(","));
        let mut args = vec!["req", "-x509", "-days", "2", "-subj", &subject];
        args.extend_from_slice(&EC_KEY);
        args.extend_from_slice(&["-addext", &san, "-keyout", &key, "-out", &cert]);
        openssl(dir, &args);
        (dir.join(cert), dir.join(key))
    }
}

/// `openssl req` flags for a new P-256 key, unencrypted.
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// Runs `openssl ARGS` in `dir`; panics with its message if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run openssl (Debian's openssl; scripts/test installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port nobody listens on right now (the OS's pick for port 0).
/// `n` distinct free ports: every listener is held until all are chosen,
/// so the kernel cannot hand the same port out twice (one port picked and
/// released at a time can come back: etcd then refuses a duplicate URL).
pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster has a leader.
    pub fn start(n: usize) -> EtcdCluster {
        EtcdCluster::start_with(n, EtcdOptions::default())
    }

    /// Like [`EtcdCluster::start`], with `options`: with TLS,
    /// [`EtcdCluster::endpoint`] is `https://`.
    pub fn start_with(n: usize, options: EtcdOptions) -> EtcdCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(2 * n);
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: ports[2 * i],
                peer: ports[2 * i + 1],
                dir: dir.path().join(format!("m{i}")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members,
            initial_cluster,
            dir,
            tls: options.tls,
            etcdctl_user: None,
            args: options.args,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster.wait_healthy();
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let log = self.dir.path().join(format!("m{i}.log"));
        let m = &mut self.members[i];
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("etcd log file");
        let err = out.try_clone().expect("etcd log file");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let mut etcd = Command::new("etcd");
        if let Some(tls) = &self.tls {
            etcd.arg("--cert-file")
                .arg(&tls.certs.server_cert)
                .arg("--key-file")
                .arg(&tls.certs.server_key);
            if tls.client_cert_auth {
                etcd.arg("--client-cert-auth")
                    .arg("--trusted-ca-file")
                    .arg(&tls.certs.ca);
            }
        }
        etcd.args(&self.args);
        let child = etcd
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", "shoal-test"])
            .args(["--initial-cluster-state", "new"])
            // Quicker elections than the defaults (100 ms / 1 s): tests
            // kill members.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            // etcd's default limits (128 operations and 1.5 MiB a
            // request): shoal must fit in them, restores included.
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect(
                "cannot start etcd (is Debian's etcd-server installed? scripts/test installs it)",
            );
        m.child = Some(child);
    }

    /// Client URLs of every member, comma-separated (for --etcd-endpoints).
    pub fn endpoints(&self) -> String {
        (0..self.members.len())
            .map(|i| self.endpoint(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.members[i].client)
    }

    /// Has `etcdctl` log in as `user:password` from now on (once the test
    /// has turned etcd's auth on).
    pub fn set_etcdctl_user(&mut self, user: Option<&str>) {
        self.etcdctl_user = user.map(str::to_string);
    }

    /// The directory of the cluster's data (certificates can go there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILL member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its ports and data (after [`kill`]).
    ///
    /// [`kill`]: EtcdCluster::kill
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// Whether member `i` is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// `etcdctl ARGS` against the running members; stdout, or the failure.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String, String> {
        let endpoints: Vec<String> = (0..self.members.len())
            .filter(|i| self.is_running(*i))
            .map(|i| self.endpoint(i))
            .collect();
        let mut etcdctl = Command::new("etcdctl");
        etcdctl
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .args(["--command-timeout", "5s"]);
        if let Some(tls) = &self.tls {
            etcdctl.arg("--cacert").arg(&tls.certs.ca);
            if tls.client_cert_auth {
                etcdctl
                    .arg("--cert")
                    .arg(&tls.certs.client_cert)
                    .arg("--key")
                    .arg(&tls.certs.client_key);
            }
        }
        if let Some(user) = &self.etcdctl_user {
            etcdctl.arg(format!("--user={user}"));
        }
        let out = etcdctl
            .args(args)
            .output()
            .map_err(|e| format!("cannot run etcdctl (Debian's etcd-client): {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The cluster's current revision.
    pub fn revision(&self) -> u64 {
        let out = self
            .etcdctl(&["endpoint", "status", "--write-out", "json"])
            .expect("etcdctl endpoint status");
        let at = out.find("\"revision\":").expect("revision in status") + 11;
        out[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .expect("revision number")
    }

    /// Compacts the history up to the current revision.
    pub fn compact(&self) -> u64 {
        let rev = self.revision();
        self.etcdctl(&["compact", &rev.to_string(), "--physical"])
            .expect("etcdctl compact");
        rev
    }

    /// Waits (up to 30 s) until a linearizable read succeeds, i.e. the
    /// running members have a leader.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.etcdctl(&["get", "--consistency=l", "shoal-test-probe"]) {
                Ok(_) => return,
                Err(e) if Instant::now() >= deadline => {
                    panic!("etcd cluster not healthy within 30 s: {e}\n{}", self.logs())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The tail of every member's log (for a failure message).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 0..self.members.len() {
            let text = std::fs::read_to_string(self.dir.path().join(format!("m{i}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- etcd m{i} ---\n"));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// A directory for a shoal server's node identity, under the cluster's.
    fn shoal_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("shoal-{name}"))
    }

    /// Starts `shoal server --store etcd` on this cluster as node `name`
    /// (its data dir, for the node ID only, under the cluster's), with
    /// `extra` flags.
    pub fn start_shoal(&self, bin: &Path, name: &str, extra: &[&str]) -> ServerProcess {
        self.start_shoal_on(bin, name, &self.endpoints(), extra)
    }

    /// Like [`EtcdCluster::start_shoal`], given only the `endpoints`
    /// (comma-separated) of some members.
    pub fn start_shoal_on(
        &self,
        bin: &Path,
        name: &str,
        endpoints: &str,
        extra: &[&str],
    ) -> ServerProcess {
        let dir = self.shoal_dir(name);
        let dir = dir.to_str().expect("utf-8 temp path");
        let mut args = vec![
            "--store",
            "etcd",
            "--etcd-endpoints",
            endpoints,
            "--data-dir",
            dir,
            "--node-name",
            name,
        ];
        args.extend_from_slice(extra);
        ServerProcess::start(bin, &args)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
