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
}

/// A port nobody listens on right now (the OS's pick for port 0).
/// `n` distinct free ports: every listener is held until all are chosen,
/// so the kernel cannot hand the same port out twice (one port picked and
/// released at a time can come back: etcd then refuses a duplicate URL).
fn free_ports(n: usize) -> Vec<u16> {
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
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let child = Command::new("etcd")
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
            // A snapshot restore is one transaction (see docs/etcd.md).
            .args(["--max-txn-ops", "100000"])
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
        format!("http://127.0.0.1:{}", self.members[i].client)
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
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .args(["--command-timeout", "5s"])
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
