//! Tests of the action runner with real child processes: argv building,
//! timeouts that kill a whole process group.

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
