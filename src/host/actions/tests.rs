//! Tests of the action runner with real child processes: argv building,
//! timeouts that kill a whole process group, output captured within a cap.

use super::*;

/// Polls `cond` until it holds, for up to 60 s.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is gone (or a zombie nobody reaped yet: dead all the same).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn a_timed_out_action_is_killed_with_its_grandchildren() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    // The shell starts a grandchild and waits for it: killing the
    // shell alone would leave `sleep 1000` running.
    let script = format!("sleep 1000 & echo $! > {}; wait", pidfile.display());
    let started = std::time::Instant::now();
    let e = run_command(
        Path::new("/bin/sh"),
        &["-c".into(), script],
        Duration::from_secs(2),
    )
    .await
    .unwrap_err();
    assert!(e.contains("timed out after 2s"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "killed, not waited for"
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("the shell wrote its grandchild's pid within 2 s")
        .trim()
        .parse()
        .unwrap();
    wait_for(&format!("grandchild {pid} gone"), || gone(pid));
}

#[tokio::test]
async fn an_exec_action_past_its_timeout_is_killed_with_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let argv: Vec<String> = vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("sleep 1000 & echo $! > {}; wait", pidfile.display()),
    ];
    let ctx = ActionCtx {
        udevadm: "/nonexistent".into(),
        systemctl: "/nonexistent".into(),
        podman: "/nonexistent".into(),
        proc_root: "/proc".into(),
        bridge: "b".into(),
        changed: vec![],
        changed_dir: dir.path().join("changed"),
        replugged: vec![],
    };
    let action = Action::Exec {
        argv,
        timeout: Duration::from_secs(2),
    };
    let outcome = run(&action, &ctx).await;
    let e = outcome.result.unwrap_err();
    assert!(e.contains("timed out"), "{e}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("the shell wrote its grandchild's pid within 2 s")
        .trim()
        .parse()
        .unwrap();
    wait_for(&format!("grandchild {pid} gone"), || gone(pid));
}

#[test]
fn trigger_argv() {
    let t = Trigger {
        subsystem: Some("usb".into()),
        action: "change",
        attrs: vec![("idVendor".into(), "051d".into())],
        settle_timeout: Duration::from_secs(30),
    };
    assert_eq!(
        trigger_args(&t),
        [
            "trigger",
            "--action=change",
            "--subsystem-match=usb",
            "--attr-match=idVendor=051d"
        ]
    );
}

#[tokio::test]
async fn an_action_writing_200_mb_to_stderr_finishes_with_its_output_capped() {
    // 200,000,000 bytes of "y\n": far more than a pipe holds, so the child
    // finishes only if its stderr is drained to the end.
    let script = "yes | head -c 200000000 >&2; exit 1";
    let e = run_command(
        Path::new("/bin/sh"),
        &["-c".into(), script.into()],
        Duration::from_secs(600),
    )
    .await
    .unwrap_err();
    // The first 500 bytes shown ("y\ny\n…y", its newlines escaped only
    // when logged), the rest counted.
    assert!(
        e.ends_with("y\ny … 199999501 bytes cut"),
        "{}",
        &e[..e.len().min(2000)]
    );
    assert!(e.len() < 1000, "{} bytes", e.len());
}

#[tokio::test]
async fn a_pipe_is_drained_to_its_end_and_only_its_head_kept() {
    let mut cmd = Command::from(crate::host::child::command("/bin/sh"));
    cmd.args(["-c", "yes | head -c 200000000"])
        .stdout(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let c = capture(child.stdout.take()).await;
    assert!(child.wait().await.unwrap().success());
    assert_eq!(c.total, 200_000_000);
    assert_eq!(c.head.len(), crate::host::child::CAPTURE_CAP);
    assert!(c.head.starts_with(b"y\ny\n"));
}

#[test]
fn excerpt_shows_the_head_and_counts_what_it_cut() {
    let cap = |head: &[u8], total: u64| Capture {
        head: head.to_vec(),
        total,
    };
    let long = "x".repeat(600);
    // A 2-byte "é" straddling byte 500 is not split.
    let straddle = format!("{}é{}", "a".repeat(499), "b".repeat(10));
    let cases: Vec<(Capture, String)> = vec![
        (cap(b"", 0), String::new()),
        (cap(b"  ok\n", 5), "ok".into()),
        (
            cap(long.as_bytes(), 600),
            format!("{} … 100 bytes cut", &long[..500]),
        ),
        (cap(b"\n\nhead", 1000), "head … 996 bytes cut".into()),
        (cap(b"   ", 10), "… 10 bytes cut".into()),
        (
            cap(straddle.as_bytes(), straddle.len() as u64),
            format!("{} … 12 bytes cut", "a".repeat(499)),
        ),
        (cap(b"\xff\xfe", 2), "\u{fffd}\u{fffd}".into()),
    ];
    for (c, want) in cases {
        assert_eq!(excerpt(&c), want, "{c:?}");
    }
}
