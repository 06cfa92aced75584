//! The real Docker engine for the registrator tests: a `FROM scratch`
//! image of this build's `shoal` binary (no pulls), containers and compose
//! projects removed by a guard even when a test panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::UNIX_EPOCH;

/// The `shoal` binary under test.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

/// Runs `docker ARGS`; panics with its stderr if it fails.
pub fn docker(args: &[&str]) -> String {
    let out = try_docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn try_docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("cannot run the docker CLI")
}

/// Whether this run is CI's (`CI` set to anything but empty, `false` or
/// `0`, as CI services set `CI=true`).
fn in_ci(ci: Option<&str>) -> bool {
    ci.is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// What to do without `what` (the Docker engine, docker-compose): a
/// developer's machine skips loudly; in CI a missing tool fails the run,
/// so a CI without Docker never passes silently.
fn missing(what: &str, ci: Option<&str>) -> Result<(), String> {
    if in_ci(ci) {
        return Err(format!(
            "{what} is missing in CI (CI={:?}): the Docker tests must run there; \
             scripts/test installs and starts Docker",
            ci.unwrap_or_default()
        ));
    }
    eprintln!("\n*** SKIPPED: {what} is missing: the Docker registrator tests did not run (set CI=true to make this an error) ***\n");
    Ok(())
}

fn ci_env() -> Option<String> {
    std::env::var("CI").ok()
}

/// Whether a Docker engine answers; when not, says so loudly (a
/// developer's machine) or panics (CI).
pub fn available() -> bool {
    static UP: OnceLock<bool> = OnceLock::new();
    let up = *UP.get_or_init(|| {
        Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !up {
        if let Err(e) = missing(
            "a Docker engine (`docker info` failed)",
            ci_env().as_deref(),
        ) {
            panic!("{e}");
        }
    }
    up
}

/// Whether `docker-compose` (v1) runs; when not, says so loudly (a
/// developer's machine) or panics (CI).
pub fn compose_available() -> bool {
    let up = Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !up {
        if let Err(e) = missing("docker-compose", ci_env().as_deref()) {
            panic!("{e}");
        }
    }
    up
}

/// A name unique to this test process and call: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// The binary's size and mtime: images built from it are tagged with
/// this, so reruns reuse them and a rebuilt binary gets new ones.
fn binary_stamp() -> String {
    let meta = std::fs::metadata(bin()).expect("shoal binary");
    let mtime = meta
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("{}-{mtime}", meta.len())
}

/// Removes the images of `repo` labelled `shoal-test=1` (an older binary's).
fn remove_test_images(repo: &str) {
    let old = docker(&[
        "images",
        "-q",
        "--filter",
        "label=shoal-test=1",
        "--filter",
        &format!("reference={repo}"),
    ]);
    for id in old.lines() {
        let _ = try_docker(&["rmi", "-f", id]);
    }
}

/// The repository root (scripts/, examples/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shoal image as users get it: `scripts/image` run on this build's
/// binary, tagged `shoal-test:<stamp>`; built once per binary and shared
/// by every test (and the examples' scripts, through `SHOAL_IMAGE`).
pub fn shoal_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let tag = format!("shoal-test:{}", binary_stamp());
        if try_docker(&["image", "inspect", &tag]).status.success() {
            return tag;
        }
        remove_test_images("shoal-test-hello");
        remove_test_images("shoal-test");
        let out = Command::new(repo_root().join("scripts/image"))
            .args(["--binary", bin().to_str().unwrap(), "--tag", &tag])
            .args(["--label", "shoal-test=1"])
            .output()
            .expect("cannot run scripts/image");
        assert!(
            out.status.success(),
            "scripts/image failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
        tag
    })
}

/// The registrator tests' image: the shoal image running `shoal hello` on
/// port 8080, which it exposes, without the image's HEALTHCHECK (a test
/// adds one where it wants one).
pub fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let base = shoal_image();
        // The base's stamp, not the binary's again: one pair per build.
        let tag = base.replacen("shoal-test:", "shoal-test-hello:", 1);
        if try_docker(&["image", "inspect", &tag]).status.success() {
            return tag;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            format!(
                "FROM {base}\nHEALTHCHECK NONE\nEXPOSE 8080\n\
                 ENTRYPOINT [\"/shoal\",\"hello\",\"--addr\",\"0.0.0.0\",\"--port\",\"8080\"]\nCMD []\n"
            ),
        )
        .unwrap();
        build(&tag, dir.path());
        tag
    })
}

/// A variant of the test image with a Docker HEALTHCHECK running `cmd` (exec form).
pub fn image_with_healthcheck(cmd: &str) -> String {
    let base = image();
    let tag = format!(
        "{base}-hc{:x}",
        cmd.bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64))
    );
    if try_docker(&["image", "inspect", &tag]).status.success() {
        return tag;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        // Every option given: unset ones are inherited from the shoal image.
        format!("FROM {base}\nHEALTHCHECK --interval=1s --timeout=2s --start-period=1ms --retries=1 CMD {cmd}\n"),
    )
    .unwrap();
    build(&tag, dir.path());
    tag
}

fn build(tag: &str, dir: &Path) {
    let dir = dir.to_str().unwrap();
    docker(&["build", "-q", "--label", "shoal-test=1", "-t", tag, dir]);
}

/// Containers, networks and compose projects created by one test, removed
/// on drop (a panicking test too).
#[derive(Default)]
pub struct Containers {
    names: Vec<String>,
    /// (project, compose file, whether this test wrote the file).
    projects: Vec<(String, PathBuf, bool)>,
    networks: Vec<String>,
}

impl Containers {
    /// `docker run -d -P --name NAME --label shoal-test=1 ARGS IMAGE`; returns the ID.
    pub fn run(&mut self, name: &str, args: &[&str]) -> String {
        self.run_image(name, args, image())
    }

    /// Like [`Containers::run`] with another image.
    pub fn run_image(&mut self, name: &str, args: &[&str], image: &str) -> String {
        self.names.push(name.to_string());
        let mut full = vec!["run", "-d", "-P", "--name", name, "--label", "shoal-test=1"];
        full.extend_from_slice(args);
        full.push(image);
        docker(&full)
    }

    /// `docker run -d --name NAME --label shoal-test=1 ARGS IMAGE CMD`
    /// without publishing anything; returns the ID.
    pub fn run_unpublished(
        &mut self,
        name: &str,
        args: &[&str],
        image: &str,
        cmd: &[&str],
    ) -> String {
        self.names.push(name.to_string());
        let mut full = vec!["run", "-d", "--name", name, "--label", "shoal-test=1"];
        full.extend_from_slice(args);
        full.push(image);
        full.extend_from_slice(cmd);
        docker(&full)
    }

    /// `docker create` (started later with `docker start`), removed on drop.
    pub fn create(&mut self, name: &str, args: &[&str], image: &str, cmd: &[&str]) -> String {
        self.names.push(name.to_string());
        let mut full = vec!["create", "--name", name, "--label", "shoal-test=1"];
        full.extend_from_slice(args);
        full.push(image);
        full.extend_from_slice(cmd);
        docker(&full)
    }

    /// `docker network create ARGS NAME`, removed on drop; Err(stderr) when
    /// the engine refuses (IPv6 where it has none).
    pub fn network(&mut self, name: &str, args: &[&str]) -> Result<(), String> {
        let mut full = vec!["network", "create", "--label", "shoal-test=1"];
        full.extend_from_slice(args);
        full.push(name);
        let out = try_docker(&full);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        self.networks.push(name.to_string());
        Ok(())
    }

    /// Remembers a compose project (its file, which stays) for `down` on drop.
    pub fn project(&mut self, project: &str, file: PathBuf) {
        self.projects.push((project.to_string(), file, false));
    }

    /// Writes a compose file for `project` and remembers it for `down`.
    pub fn compose_file(&mut self, project: &str, yaml: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("{project}.yml"));
        std::fs::write(&path, yaml).unwrap();
        self.projects
            .push((project.to_string(), path.clone(), true));
        path
    }
}

/// Runs `docker-compose -p PROJECT -f FILE ARGS`; panics if it fails.
pub fn compose(project: &str, file: &Path, args: &[&str]) {
    let out = Command::new("docker-compose")
        .args(["-p", project, "-f", file.to_str().unwrap()])
        .args(args)
        .output()
        .expect("docker-compose");
    assert!(
        out.status.success(),
        "docker-compose {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Containers {
    fn drop(&mut self) {
        if !self.names.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(self.names.iter().map(String::as_str));
            let _ = try_docker(&args);
        }
        for (project, file, written) in &self.projects {
            let _ = Command::new("docker-compose")
                .args([
                    "-p",
                    project,
                    "-f",
                    file.to_str().unwrap(),
                    "down",
                    "-t",
                    "1",
                ])
                .output();
            // Only what the test wrote: a checkout under /tmp (a CI clone)
            // holds the examples' own compose files, which must stay.
            if *written {
                let _ = std::fs::remove_file(file);
            }
        }
        for net in &self.networks {
            let _ = try_docker(&["network", "rm", net]);
        }
    }
}

/// The container's address on `network` (`IPAddress` or `GlobalIPv6Address`).
pub fn ip_on(name: &str, network: &str, field: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").{field}}}}}"),
        name,
    ])
}

/// The host port Docker published container port `port` (`8080/tcp`) on.
pub fn host_port(name: &str, port: &str) -> u16 {
    let out = docker(&["port", name, port]);
    let first = out.lines().next().unwrap_or_default();
    first
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("docker port {name} {port}: {out}"))
}

/// The container's IP on the default bridge.
pub fn container_ip(name: &str) -> String {
    docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", name])
}

#[test]
fn a_missing_engine_fails_in_ci_and_skips_elsewhere() {
    let cases = [
        (Some("true"), false),
        (Some("1"), false),
        (Some("yes"), false),
        (None, true),
        (Some(""), true),
        (Some("false"), true),
        (Some("0"), true),
    ];
    for (ci, skips) in cases {
        let got = missing("a Docker engine", ci);
        assert_eq!(got.is_ok(), skips, "CI={ci:?}: {got:?}");
        if let Err(e) = got {
            assert!(e.contains("a Docker engine is missing in CI"), "{e}");
        }
    }
}
