//! `hostbridge wait` against a real daemon (real inotify, socket, files and
//! the udevadm stand-in), and the daemon's readiness when a bridge is not
//! well (issue 19, scenario 6). The VM tests run it with a real udevd and
//! NUT (tests/vm.rs).

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Output;

use common::Env;

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn wait_returns_once_files_written_just_before_are_installed_and_reloaded() {
    // A long quiet window: a `wait` that did not wait for the file to be
    // synced would return long before it is installed.
    let env = Env::new("    settle: { quiet: 1s, max_wait: 5s }\n    then:\n      - udev-reload\n");
    env.put("10-first.rules", "# first\n");
    let d = env.start();
    env.put("62-nut-usbups.rules", "# nut\n");
    let out = env.run(&["wait", "--bridge", "test", "--timeout", "120s"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}\n{}", d.log());
    assert!(
        stdout.starts_with("test: ready: 2 files in place"),
        "{stdout}"
    );
    // Everything `wait` promises had happened when it returned.
    assert_eq!(env.installed(), ["10-first.rules", "62-nut-usbups.rules"]);
    assert!(
        env.reloads().last().is_some_and(|r| r.ends_with("files=2")),
        "the reload after the second file ran before wait returned: {:?}",
        env.reloads()
    );
    assert!(
        d.log().contains("test: `hostbridge wait` asked"),
        "{}",
        d.log()
    );

    // Nothing changed since: it is ready again, after another look.
    let out = env.run(&["wait", "--bridge", "test"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
}

#[test]
fn wait_fails_at_once_on_a_refused_file_naming_file_and_line() {
    let env = Env::new("    then:\n      - udev-reload\n");
    env.put("10-ok.rules", "# fine\n");
    let d = env.start();
    env.put(
        "62-evil.rules",
        "# line 1\nACTION==\"add\", RUN+=\"/bin/sh -c id\"\n",
    );
    // A timeout far longer than the test: the refusal must end it.
    let out = env.run(&["wait", "--bridge", "test", "--timeout", "120s"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(65), "{stdout}{stderr}\n{}", d.log());
    assert!(stderr.contains("62-evil.rules:2"), "{stderr}");
    assert!(!env.installed().contains(&"62-evil.rules".to_string()));
}

#[test]
fn wait_fails_when_an_action_fails_and_says_which() {
    let env = Env::new("    then:\n      - udev-reload\n");
    let d = env.spawn_daemon(&[("STANDIN_FAIL", "udevd is not answering")]);
    d.wait_log("ready:");
    env.put("a.rules", "# a\n");
    let out = env.run(&["wait", "--bridge", "test", "--timeout", "120s"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}\n{}", d.log());
    assert!(stderr.contains("udev-reload failed"), "{stderr}");
    assert!(stderr.contains("udevd is not answering"), "{stderr}");
}

#[test]
fn wait_without_a_daemon_times_out_saying_it_is_not_running() {
    let env = Env::new("");
    let out = env.run(&["wait", "--bridge", "test", "--timeout", "1s"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("hostbridge is not running"), "{stderr}");
    assert!(stderr.contains("test: not ready after 1s"), "{stderr}");
}

#[test]
fn wait_for_a_bridge_the_daemon_lacks_or_a_bad_device_id_is_a_usage_error() {
    let env = Env::new("");
    let _d = env.start();
    let out = env.run(&["wait", "--bridge", "nosuch", "--timeout", "30s"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no bridge named \"nosuch\""), "{stderr}");
    assert!(stderr.contains("bridges: test"), "{stderr}");

    let out = env.run(&["wait", "--bridge", "test", "--usb", "51d:2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("is not VID:PID"), "{:?}", text(&out));
}

#[test]
fn ready_is_never_sent_as_if_all_were_well() {
    // A refused file at startup: READY=1 goes out (the daemon serves every
    // bridge), but its STATUS= says which bridge is degraded and why, and
    // the log says units waiting with `hostbridge wait` keep waiting.
    let env = Env::new("    then:\n      - udev-reload\n");
    env.put("62-evil.rules", "RUN+=\"/bin/true\"\n");
    let sock_path = env.tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(common::DEADLINE)).unwrap();
    let notify = sock_path.display().to_string();
    let d = env.spawn_daemon(&[("NOTIFY_SOCKET", notify.as_str())]);
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        ready.starts_with("READY=1\nSTATUS=degraded: 1 of 1 bridge; test: 62-evil.rules:1:"),
        "{ready:?}"
    );
    d.wait_log("ready: 1 bridge reconciled, 1 degraded (test: 62-evil.rules:1:");
    let out = env.run(&["wait", "--bridge", "test", "--timeout", "120s"]);
    assert_eq!(out.status.code(), Some(65), "{:?}", text(&out));
}
