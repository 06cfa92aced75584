//! `shoal render` as a supervisor and as consul-template's command line:
//! the `-exec` child starts after the first complete render, gets the
//! reload signal on change, other signals forwarded, the exec kill signal
//! when shoal render is stopped; exit codes as consul-template's
//! (0, 12 interrupt, 13 flags, 14 runner, 15 config, the child's own);
//! a template that fails at run time keeps the old file and says why.

use shoal_testkit::ServerProcess;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shoal"))
}

async fn put_key(server: &ServerProcess, key: &str, value: &str) {
    let resp = reqwest::Client::new()
        .put(server.at(&format!("/v1/kv/{key}")))
        .body(value.to_string())
        .send()
        .await
        .expect("put key");
    assert!(resp.status().is_success(), "put: {}", resp.status());
}

fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Waits at most `secs` for the child's exit code.
fn exit_code(child: &mut Child, secs: u64) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shoal render did not exit within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An executable shell script that logs each signal it gets to `log`.
fn child_script(dir: &Path, log: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("child.sh");
    let l = log.display();
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n\
             trap 'echo HUP >> {l}' HUP\n\
             trap 'echo USR1 >> {l}' USR1\n\
             trap 'echo TERM >> {l}; exit 7' TERM\n\
             echo start >> {l}\n{body}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn render_cmd(server: &ServerProcess, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("render")
        .args(["-consul-addr", &server.url, "-log-level", "warn"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

#[tokio::test]
async fn exec_child_is_started_after_the_first_render_and_signalled() {
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("t.ctmpl");
    std::fs::write(&src, "v={{ key \"app/v\" }}\n").unwrap();
    let dest = dir.path().join("t.out");
    let log = dir.path().join("child.log");
    let script = child_script(dir.path(), &log, "while :; do sleep 0.05; done");
    let spec = format!("{}:{}", src.display(), dest.display());
    let mut render = render_cmd(
        &server,
        &[
            "-template",
            &spec,
            "-exec",
            &script.display().to_string(),
            "-exec-reload-signal",
            "SIGHUP",
            "-exec-kill-signal",
            "SIGTERM",
        ],
    )
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(!log.exists(), "child started before the first render");

    put_key(&server, "app/v", "1").await;
    wait_for(10, "first render and child start", || {
        read(&dest) == "v=1\n" && read(&log) == "start\n"
    });
    // A change: the child gets the exec reload signal (not a restart).
    put_key(&server, "app/v", "2").await;
    wait_for(10, "render of the change and HUP to the child", || {
        read(&dest) == "v=2\n" && read(&log) == "start\nHUP\n"
    });
    // No change, no signal: the same value written again.
    put_key(&server, "app/v", "2").await;
    // Any other signal goes to the child.
    signal(render.id(), "USR1");
    wait_for(10, "USR1 forwarded", || read(&log) == "start\nHUP\nUSR1\n");
    // The kill signal (SIGINT): the child gets its kill signal, shoal
    // render exits 12 as consul-template does.
    signal(render.id(), "INT");
    assert_eq!(exit_code(&mut render, 10), Some(12));
    assert_eq!(read(&log), "start\nHUP\nUSR1\nTERM\n");
}

#[tokio::test]
async fn without_a_reload_signal_the_child_is_restarted_and_its_exit_code_is_ours() {
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    put_key(&server, "app/v", "1").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("t.ctmpl");
    std::fs::write(&src, "v={{ key \"app/v\" }}\n").unwrap();
    let dest = dir.path().join("t.out");
    let log = dir.path().join("child.log");
    // Exits 3 once its log says it was restarted (two starts).
    let body = format!(
        "while :; do [ \"$(grep -c start {l})\" -ge 2 ] && sleep 0.3 && exit 3; sleep 0.05; done",
        l = log.display()
    );
    let script = child_script(dir.path(), &log, &body);
    let spec = format!("{}:{}", src.display(), dest.display());
    let mut render = render_cmd(
        &server,
        &["-template", &spec, "-exec", &script.display().to_string()],
    )
    .spawn()
    .unwrap();
    wait_for(10, "child start", || read(&log) == "start\n");
    put_key(&server, "app/v", "2").await;
    // consul-template with no exec reload signal stops the child with its
    // kill signal (SIGTERM) and starts it again.
    assert_eq!(exit_code(&mut render, 20), Some(3), "the child's exit code");
    assert_eq!(read(&log), "start\nTERM\nstart\n");
    assert_eq!(read(&dest), "v=2\n");
}

#[tokio::test]
async fn exit_codes_are_consul_templates() {
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.ctmpl");
    std::fs::write(&good, "x\n").unwrap();
    let spec = |src: &Path| format!("{}:{}", src.display(), dir.path().join("o").display());

    // Flags that do not parse: 13.
    let out = render_cmd(&server, &["-no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(13));
    // A configuration error: 15, with the reason.
    let out = render_cmd(&server, &["-template", &spec(&good), "-wait", "soon"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(15),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = dir.path().join("bad.hcl");
    std::fs::write(&cfg, "template {\n  source = \n}\n").unwrap();
    let out = render_cmd(&server, &["-config", &cfg.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(15),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.hcl"),
        "the error names the file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A template that does not parse: 14, naming file:line:col.
    let broken = dir.path().join("broken.ctmpl");
    std::fs::write(&broken, "a\n{{ if }}\n").unwrap();
    let out = render_cmd(&server, &["-template", &spec(&broken), "-once"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(14));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2:", broken.display())), "{err}");
    // -once done: 0.
    let out = render_cmd(&server, &["-template", &spec(&good), "-once"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Stopped by the kill signal: 12. SIGTERM with no child stops as well.
    for (sig, flags) in [
        ("INT", &[][..]),
        ("TERM", &[][..]),
        ("USR2", &["-kill-signal", "SIGUSR2"][..]),
    ] {
        let mut args = vec!["-template".to_string(), spec(&good)];
        args.extend(flags.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = render_cmd(&server, &args).spawn().unwrap();
        wait_for(10, "first render", || dir.path().join("o").exists());
        std::thread::sleep(Duration::from_millis(200));
        signal(child.id(), sig);
        assert_eq!(exit_code(&mut child, 10), Some(12), "after SIG{sig}");
        std::fs::remove_file(dir.path().join("o")).unwrap();
    }
}

#[tokio::test]
async fn a_template_failing_at_run_time_keeps_the_old_file_and_says_why() {
    let server = ServerProcess::start(bin(), &["--in-memory"]);
    put_key(&server, "app/workers", "3").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("w.ctmpl");
    std::fs::write(
        &src,
        "worker_processes {{ key \"app/workers\" | parseInt }};\n",
    )
    .unwrap();
    let dest = dir.path().join("w.conf");
    let marker = dir.path().join("ran");
    let spec = format!(
        "{}:{}:echo x >> {}",
        src.display(),
        dest.display(),
        marker.display()
    );
    let logf = dir.path().join("render.log");
    let mut render = Command::new(bin())
        .arg("render")
        .args(["-consul-addr", &server.url, "-log-level", "info"])
        .args(["-template", &spec])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&logf).unwrap())
        .spawn()
        .unwrap();
    wait_for(10, "first render", || read(&marker) == "x\n");
    assert_eq!(read(&dest), "worker_processes 3;\n");

    put_key(&server, "app/workers", "many").await;
    wait_for(10, "the render error in the log", || {
        read(&logf).contains(&format!("{}:1:", src.display()))
    });
    let log = read(&logf);
    assert!(log.contains("parseInt"), "the error says which call: {log}");
    assert_eq!(read(&dest), "worker_processes 3;\n", "old file kept");
    assert_eq!(read(&marker), "x\n", "no command after a failed render");

    put_key(&server, "app/workers", "4").await;
    wait_for(10, "render after the fix", || {
        read(&dest) == "worker_processes 4;\n" && read(&marker) == "x\nx\n"
    });
    let _ = render.kill();
    let _ = render.wait();
}
