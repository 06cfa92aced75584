//! `shoal lock` as users run it: several real `shoal lock` processes on
//! one prefix against a real `shoal server`, each running a shell command
//! that records when it starts and stops. Leader election: exactly one
//! command runs at any time, a SIGKILLed holder's command dies with it,
//! and a waiter takes over within 30 s with the defaults (also with the
//! contenders spread over two servers on etcd). Semaphore
//! (`-n 2`): never more than two at once, and a freed slot is taken.

use shoal_testkit::ServerProcess;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

/// The command each contender runs: appends `start <pid> <ns>` to its
/// file, `stop <pid> <ns>` when it gets SIGTERM, and otherwise waits.
const SCRIPT: &str = r#"echo "start $$ $(date +%s%N)" >> "$LOG"
trap 'echo "stop $$ $(date +%s%N)" >> "$LOG"; exit 0' TERM
while true; do sleep 0.1; done"#;

/// One `shoal lock` process and the file its command writes.
struct Contender {
    child: Child,
    log: PathBuf,
}

impl Contender {
    fn start(dir: &Path, name: &str, registry: &str, extra: &[&str]) -> Contender {
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(bin())
            .arg("lock")
            .args(extra)
            .args(["--registry", registry, "svc/leader", "--", SCRIPT])
            .env("LOG", &log)
            .env("SHOAL_LOG_LEVEL", "warn")
            .env_remove("CONSUL_HTTP_ADDR")
            .stdin(Stdio::null())
            .spawn()
            .expect("shoal lock starts");
        Contender { child, log }
    }

    /// (start, stop) of each run of the command, in ns since the epoch;
    /// `None` while it still runs. Also the PID of each run.
    fn runs(&self) -> Vec<(u64, Option<u64>, u32)> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut runs: Vec<(u64, Option<u64>, u32)> = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [what, pid, ns] = f[..] else { continue };
            let (pid, ns) = (pid.parse().unwrap(), ns.parse().unwrap());
            match what {
                "start" => runs.push((ns, None, pid)),
                _ => {
                    if let Some(run) = runs.iter_mut().find(|r| r.2 == pid) {
                        run.1 = Some(ns);
                    }
                }
            }
        }
        runs
    }

    fn running(&self) -> bool {
        self.runs().iter().any(|r| r.1.is_none())
    }

    fn sigterm(&mut self) {
        signal(self.child.id(), "TERM");
        let _ = self.child.wait();
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for (_, stop, pid) in self.runs() {
            if stop.is_none() {
                signal(pid, "KILL");
            }
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn wait_for(what: &str, limit: Duration, mut pred: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !pred() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    t0.elapsed()
}

/// The most runs of the command that overlapped at any instant.
fn max_overlap(all: &[&Contender]) -> usize {
    let mut edges: Vec<(u64, i32)> = Vec::new();
    for c in all {
        for (start, stop, _) in c.runs() {
            edges.push((start, 1));
            edges.push((stop.unwrap_or(u64::MAX), -1));
        }
    }
    // At a tie, a stop counts before a start.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn three_locks_elect_one_leader_and_a_killed_leader_is_replaced() {
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    let url = server.url.as_str();
    elect_one_and_replace_a_killed_leader([url, url, url]);
}

/// The same across two servers on one etcd catalog: contenders a and c
/// talk to server A, b to server B, so a lock taken through one server is
/// handed over through the other, and the killed holder's session is
/// invalidated by whichever server leads (renewed through another
/// server, expired by the leader).
#[test]
fn locks_on_two_servers_over_etcd_elect_one_leader_and_replace_a_killed_one() {
    let etcd = shoal_testkit::EtcdCluster::start(3);
    let a = etcd.start_shoal(bin(), "server-a", &[]);
    let b = etcd.start_shoal(bin(), "server-b", &[]);
    elect_one_and_replace_a_killed_leader([&a.url, &b.url, &a.url]);
}

/// Three `shoal lock` contenders (through `registries`): one runs; its
/// SIGKILL hands the lock to another within 30 s; a SIGTERM to that one
/// hands it to the third at once; never two at a time.
fn elect_one_and_replace_a_killed_leader(registries: [&str; 3]) {
    let dir = tempfile::tempdir().unwrap();
    let mut c: Vec<Contender> = ["a", "b", "c"]
        .iter()
        .zip(registries)
        .map(|(n, registry)| Contender::start(dir.path(), n, registry, &[]))
        .collect();
    let running = |c: &[Contender]| c.iter().filter(|x| x.running()).count();
    wait_for("a first leader", Duration::from_secs(20), || {
        running(&c) == 1
    });
    // The others wait: still one after a while.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(running(&c), 1, "exactly one command runs");
    let first = c.iter().position(|x| x.running()).unwrap();
    let first_pid = c[first].runs()[0].2;

    // SIGKILL the holder's `shoal lock`: its command must die with it,
    // and a waiter must take over within 30 s with the defaults.
    c[first].child.kill().unwrap();
    let _ = c[first].child.wait();
    let killed = Instant::now();
    wait_for(
        "the killed holder's command stops",
        Duration::from_secs(8),
        || !alive(first_pid),
    );
    assert!(
        c[first].runs()[0].1.is_some(),
        "the command was sent SIGTERM (it wrote its stop line)"
    );
    wait_for("a new leader", Duration::from_secs(30), || running(&c) == 1);
    let takeover = killed.elapsed();
    assert!(takeover < Duration::from_secs(30), "took {takeover:?}");
    let second = c.iter().position(|x| x.running()).unwrap();
    assert_ne!(second, first);

    // A holder that stops cleanly gives the lock up at once.
    c[second].sigterm();
    let handover = wait_for("the third leader", Duration::from_secs(10), || {
        running(&c) == 1
    });
    let third = c.iter().position(|x| x.running()).unwrap();
    assert!(third != first && third != second);
    eprintln!("takeover after SIGKILL: {takeover:?}; after SIGTERM: {handover:?}");

    let all: Vec<&Contender> = c.iter().collect();
    assert_eq!(max_overlap(&all), 1, "two commands ran at once");
    let runs: usize = c.iter().map(|x| x.runs().len()).sum();
    assert_eq!(runs, 3, "each contender ran exactly once");
}

#[test]
fn a_semaphore_of_two_runs_two_and_hands_a_freed_slot_on() {
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    let dir = tempfile::tempdir().unwrap();
    let mut c: Vec<Contender> = ["a", "b", "c"]
        .iter()
        .map(|n| Contender::start(dir.path(), n, &server.url, &["-n", "2"]))
        .collect();
    let running = |c: &[Contender]| c.iter().filter(|x| x.running()).count();
    wait_for("two holders", Duration::from_secs(20), || running(&c) == 2);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(running(&c), 2, "no third holder while two hold");
    let waiter = c.iter().position(|x| !x.running()).unwrap();
    let holder = c.iter().position(|x| x.running()).unwrap();
    c[holder].sigterm();
    wait_for(
        "the waiter takes the freed slot",
        Duration::from_secs(10),
        || c[waiter].running(),
    );
    assert_eq!(running(&c), 2);
    let all: Vec<&Contender> = c.iter().collect();
    assert_eq!(max_overlap(&all), 2, "more than two ran at once");

    // A contender with another limit is refused, not let in.
    let odd = Command::new(bin())
        .args(["lock", "-n", "3", "--registry", &server.url, "svc/leader"])
        .args(["--", "true"])
        .env_remove("CONSUL_HTTP_ADDR")
        .output()
        .unwrap();
    assert!(!odd.status.success());
    let err = String::from_utf8_lossy(&odd.stderr);
    assert!(err.contains("limit conflict"), "{err}");
}

#[test]
fn a_holder_cut_off_from_the_server_stops_its_command_before_the_session_can_expire() {
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    let dir = tempfile::tempdir().unwrap();
    let holder = Contender::start(dir.path(), "a", &server.url, &[]);
    wait_for("the lock is held", Duration::from_secs(20), || {
        holder.running()
    });
    // The server stops answering (frozen, as if the network were cut): the
    // holder's renewals go unanswered. The server would end the session
    // 20 s (2 x TTL) after the last renewal; the command must be stopped
    // well before that, within the TTL and the guard's grace.
    signal(server.pid(), "STOP");
    let frozen = Instant::now();
    let took = wait_for(
        "the cut-off holder stops its command",
        Duration::from_secs(25),
        || !holder.running(),
    );
    signal(server.pid(), "CONT");
    assert!(
        took < Duration::from_secs(17),
        "stopped after {took:?}; the session could expire at 20 s"
    );
    eprintln!(
        "command stopped {:?} after the server froze",
        frozen.elapsed()
    );
}
