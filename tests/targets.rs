//! `then:` targets against real processes and real signals: a helper that
//! records SIGHUP, stale, dead, symlinked and FIFO pid files, and exec with
//! its environment and its timeout.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use common::{Env, wait_for};

fn files_env(then: &str) -> Env {
    Env::new_files(&format!("    then:\n{then}"))
}

/// A helper named `hb-hup-helper` (a copy of /bin/sh, so /proc/PID/comm says
/// so) that appends "hup" to `log` on every SIGHUP and writes its pid file.
struct Helper {
    child: Child,
    log: PathBuf,
    pidfile: PathBuf,
}

impl Helper {
    fn start(dir: &Path) -> Helper {
        let exe = dir.join("hb-hup-helper");
        fs::copy("/bin/sh", &exe).unwrap();
        common::make_executable(&exe);
        let (log, pidfile) = (dir.join("hups.log"), dir.join("helper.pid"));
        let script = format!(
            "trap 'echo hup >> {}' HUP; echo $$ > {}.tmp; mv {}.tmp {}; while :; do sleep 30 & wait $!; done",
            log.display(),
            pidfile.display(),
            pidfile.display(),
            pidfile.display()
        );
        // A shell cannot trap a signal it was started with ignored (a test
        // run under `nohup` ignores SIGHUP): `env` gives it the default.
        let child = Command::new("env")
            .arg("--default-signal=HUP")
            .arg(&exe)
            .args(["-c", &script])
            .spawn()
            .unwrap();
        wait_for("helper ready", || pidfile.exists(), String::new);
        Helper {
            child,
            log,
            pidfile,
        }
    }
    fn hups(&self) -> usize {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .count()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn signal_by_pidfile_and_by_process_name_reach_the_helper() {
    let dir = tempfile::tempdir().unwrap();
    let helper = Helper::start(dir.path());
    let then = format!(
        "      - signal: {{ pidfile: {}, process: hb-hup-helper, signal: HUP }}\n      - signal: {{ process: hb-hup-helper, signal: SIGHUP }}\n",
        helper.pidfile.display()
    );
    let env = files_env(&then);
    let d = env.start();
    env.put("a.conf", "a\n");
    // Both actions signal the same process back to back; the kernel merges
    // a SIGHUP that arrives while another is still pending, so the helper
    // may see one or two. It sees at least one, and each action says it sent.
    wait_for("a HUP", || helper.hups() >= 1, || d.log());
    d.wait_log("signal ok: sent SIGHUP to hb-hup-helper (pids [");
    assert!(
        d.log().contains("signal ok: sent SIGHUP to pid"),
        "{}",
        d.log()
    );
    assert_eq!(env.run(&["status"]).status.code(), Some(0));
}

#[test]
fn stale_dead_symlinked_and_fifo_pidfiles_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A live process that is not the one named: a reused pid.
    let mut sleeper = Command::new("sleep").arg("300").spawn().unwrap();
    let stale = dir.path().join("stale.pid");
    fs::write(&stale, format!("{}\n", sleeper.id())).unwrap();
    // A dead pid.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let dead = dir.path().join("dead.pid");
    fs::write(&dead, format!("{dead_pid}\n")).unwrap();
    let link = dir.path().join("link.pid");
    std::os::unix::fs::symlink(&stale, &link).unwrap();
    let fifo = dir.path().join("fifo.pid");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();

    let cases = [
        (
            &stale,
            "is \"sleep\", not \"nginx\" (stale pid file?); not signalling it",
        ),
        (&dead, "is not running"),
        (&link, "is a symlink; refusing it"),
        (&fifo, "is a FIFO; refusing it"),
    ];
    for (pidfile, want) in cases {
        let env = files_env(&format!(
            "      - signal: {{ pidfile: {}, process: nginx, signal: HUP }}\n",
            pidfile.display()
        ));
        env.put("a.conf", "a\n");
        let d = env.start();
        assert!(d.log().contains(want), "{}: {}", pidfile.display(), d.log());
        let out = env.run(&["status"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "a missing target degrades the bridge"
        );
    }
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "the stranger was not signalled"
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn exec_gets_the_changed_files_and_is_killed_on_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("changed.txt");
    let child_pid = dir.path().join("child.pid");
    let then = format!(
        "      - exec: {{ argv: [/bin/sh, -c, 'echo \"$HOSTBRIDGE_BRIDGE: $HOSTBRIDGE_CHANGED\" > {}'] }}\n      - exec: {{ argv: [/bin/sh, -c, 'echo $$ > {}; exec sleep 300'], timeout: 1s }}\n",
        out.display(),
        child_pid.display()
    );
    let env = files_env(&then);
    env.put("a.conf", "a\n");
    env.put("b.conf", "b\n");
    let d = env.start();
    assert_eq!(fs::read_to_string(&out).unwrap(), "test: a.conf b.conf\n");
    assert!(
        d.log()
            .contains("exec failed (retried on the next sync): /bin/sh -c echo $$"),
        "{}",
        d.log()
    );
    assert!(d.log().contains("timed out after 1s"), "{}", d.log());
    let pid: i32 = fs::read_to_string(&child_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for(
        "timed-out child killed",
        || {
            !Path::new(&format!("/proc/{pid}")).exists()
                || fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
        },
        || d.log(),
    );
}

/// Two files bridges, `test` (settling as `test_settle`) then `second`
/// (quiet 50 ms), both with one exec action appending
/// "$HOSTBRIDGE_BRIDGE: $HOSTBRIDGE_CHANGED" to `runs`. Returns the env,
/// `runs`, second's source and destination, and second's config lines.
fn shared_action_env(test_settle: &str) -> (Env, PathBuf, PathBuf, PathBuf, String) {
    let env = Env::new("");
    let runs = env.tmp.path().join("runs.log");
    let (src_b, dest_b) = (
        env.tmp.path().join("export-b"),
        env.tmp.path().join("dest-b"),
    );
    let then = format!(
        "    then:\n      - exec: {{ argv: [/bin/sh, -c, 'echo \"$HOSTBRIDGE_BRIDGE: $HOSTBRIDGE_CHANGED\" >> {}'] }}\n",
        runs.display()
    );
    let cfg = fs::read_to_string(&env.config)
        .unwrap()
        .replace("kind: udev-rules", "kind: files");
    let second = format!(
        "  - name: second\n    kind: files\n    source: {}\n    install_to: {}\n    settle: {{ quiet: 50ms }}\n{then}",
        src_b.display(),
        dest_b.display()
    );
    fs::write(
        &env.config,
        format!("{cfg}    settle: {test_settle}\n{then}{second}"),
    )
    .unwrap();
    fs::create_dir_all(&env.src).unwrap();
    fs::create_dir_all(&src_b).unwrap();
    (env, runs, src_b, dest_b, second)
}

#[test]
fn a_target_named_by_two_bridges_is_acted_on_once_per_burst() {
    // `test` (listed first) settles long after `second`: `second` syncs first
    // and its action waits for `test`, which is still collecting changes.
    let (env, runs, src_b, dest_b, _) = shared_action_env("{ quiet: 2s }");
    let d = env.start();
    // One burst touching both bridges (as one fetchcert run writing two
    // certs). The action sees the bridges in config order, not settle order.
    fs::write(env.src.join("a.pem"), "a\n").unwrap();
    fs::write(src_b.join("b.pem"), "b\n").unwrap();
    wait_for(
        "both synced",
        || d.log().matches("exec ok").count() >= 2,
        || d.log(),
    );
    let lines = fs::read_to_string(&runs).unwrap();
    assert_eq!(
        lines, "test,second: a.pem b.pem\n",
        "one run for both bridges"
    );
    assert!(dest_b.join("b.pem").exists() && env.dest.join("a.pem").exists());
}

#[test]
fn removing_the_bridge_an_action_waits_for_lets_it_run_at_once() {
    // `test` collects changes for an hour: `second`'s action waits for it.
    let (env, runs, src_b, dest_b, second) = shared_action_env("{ quiet: 1h, max_wait: 2h }");
    let mut d = env.start();
    fs::write(env.src.join("a.pem"), "a\n").unwrap();
    wait_for(
        "test is collecting",
        || {
            let out = env.run(&["status", "--json"]);
            let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            !st["bridges"][0]["pending"].is_null()
        },
        || d.log(),
    );
    fs::write(src_b.join("b.pem"), "b\n").unwrap();
    // `second` installed its file; its action is owed until `test` settles.
    wait_for(
        "b.pem installed",
        || dest_b.join("b.pem").exists(),
        || d.log(),
    );
    assert_eq!(env.run(&["status"]).status.code(), Some(0));
    assert!(!runs.exists(), "the action waits for `test`");
    // Drop `test` from the config: nothing is left to wait for.
    let cfg = fs::read_to_string(&env.config).unwrap();
    let (head, _) = cfg.split_once("  - name: test\n").unwrap();
    fs::write(&env.config, format!("{head}{second}")).unwrap();
    nix::sys::signal::kill(d.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_for(
        "second's action",
        || fs::read_to_string(&runs).is_ok_and(|r| r == "second: b.pem\n"),
        || d.log(),
    );
    assert!(d.stop().success());
}

#[test]
fn unit_and_container_targets_call_systemctl_and_podman() {
    // systemd and podman do not run on test machines: recording stand-ins
    // (mocks, on purpose) show the exact commands hostbridge runs.
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls.log");
    for tool in ["systemctl", "podman"] {
        let path = dir.path().join(tool);
        fs::write(
            &path,
            format!("#!/bin/sh\necho \"{tool} $*\" >> {}\n", calls.display()),
        )
        .unwrap();
        common::make_executable(&path);
    }
    let then = "      - signal: { unit: loki.service, signal: USR1 }\n      - signal: { container: nginx, signal: HUP }\n      - reload-unit: nginx.service\n      - restart-unit: loki.service\n";
    let env = files_env(then);
    let cfg = fs::read_to_string(&env.config).unwrap();
    fs::write(
        &env.config,
        format!(
            "systemctl: {d}/systemctl\npodman: {d}/podman\n{cfg}",
            d = dir.path().display()
        ),
    )
    .unwrap();
    env.put("a.conf", "a\n");
    let _d = env.start();
    assert_eq!(
        fs::read_to_string(&calls).unwrap(),
        "systemctl kill --kill-whom=main --signal=SIGUSR1 loki.service\npodman kill --signal HUP nginx\nsystemctl reload nginx.service\nsystemctl try-restart loki.service\n"
    );
}

#[test]
fn owner_group_and_mode_are_set_before_the_file_appears() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP owner_group: needs root to chown");
        return;
    }
    let group = nix::unistd::Group::from_name("users")
        .unwrap()
        .expect("group users");
    let env = Env::new("    mode: \"0640\"\n    owner: nobody\n    group: users\n");
    let cfg = fs::read_to_string(&env.config)
        .unwrap()
        .replace("kind: udev-rules", "kind: files");
    fs::write(&env.config, cfg).unwrap();
    env.put("secret.key", "k\n");
    let _d = env.start();
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(env.dest.join("secret.key")).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o777),
        (nobody.uid.as_raw(), group.gid.as_raw(), 0o640)
    );
}

#[test]
fn hostbridge_sync_by_hand_acts_once_for_bridges_sharing_an_action() {
    let (env, runs, src_b, dest_b, _) = shared_action_env("{ quiet: 50ms }");
    fs::write(env.src.join("a.pem"), "a\n").unwrap();
    fs::write(src_b.join("b.pem"), "b\n").unwrap();
    let out = env.run(&["sync"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(
        fs::read_to_string(&runs).unwrap(),
        "test,second: a.pem b.pem\n",
        "one run for both bridges"
    );
    assert!(
        text.contains("test: synced: installed a.pem")
            && text.contains("second: synced: installed b.pem"),
        "{text}"
    );
    assert!(dest_b.join("b.pem").exists() && env.dest.join("a.pem").exists());
}

/// A files bridge whose one exec action appends "$HOSTBRIDGE_CHANGED" to
/// `runs` and fails until the file `ok` exists (both in `dir`). Returns the
/// env and both paths.
fn changed_log_env(dir: &Path) -> (Env, PathBuf, PathBuf) {
    let (runs, ok) = (dir.join("runs.log"), dir.join("ok"));
    let env = files_env(&format!(
        "      - exec: {{ argv: [/bin/sh, -c, 'echo \"$HOSTBRIDGE_CHANGED\" >> {}; test -e {}'] }}\n",
        runs.display(),
        ok.display()
    ));
    (env, runs, ok)
}

/// The lines of `runs` (none if it does not exist).
fn runs_of(runs: &Path) -> Vec<String> {
    fs::read_to_string(runs)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_failed_action_is_retried_with_the_changed_names_it_is_owed() {
    let dir = tempfile::tempdir().unwrap();
    let (env, runs, ok) = changed_log_env(dir.path());
    let sync = || {
        let out = env.run(&["sync"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    env.put("a.conf", "a\n");
    assert_eq!(sync().0, Some(1), "the action fails");
    assert_eq!(runs_of(&runs), ["a.conf"]);
    // Nothing changed, but the action is owed: it runs again, for a.conf.
    assert_eq!(sync().0, Some(1));
    assert_eq!(runs_of(&runs), ["a.conf", "a.conf"]);
    // A new change while it is owed: the names are merged.
    env.put("b.conf", "b\n");
    assert_eq!(sync().0, Some(1));
    assert_eq!(runs_of(&runs)[2], "a.conf b.conf");
    fs::write(&ok, "").unwrap();
    let (code, text) = sync();
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(runs_of(&runs)[3], "a.conf b.conf");
    // Done: nothing is owed, and the next changes (a.conf pruned, c.conf
    // installed) are alone.
    assert_eq!(sync().0, Some(0));
    assert_eq!(runs_of(&runs).len(), 4, "nothing owed, nothing run");
    fs::remove_file(env.src.join("a.conf")).unwrap();
    env.put("c.conf", "c\n");
    assert_eq!(sync().0, Some(0));
    assert_eq!(runs_of(&runs)[4..], ["a.conf c.conf"]);
}

#[test]
fn actions_do_not_run_when_every_file_operation_failed() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: needs root for a private read-only mount");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (env, runs, ok) = changed_log_env(dir.path());
    fs::write(&ok, "").unwrap();
    env.put("a.conf", "a\n");
    env.put("b.conf", "b\n");
    // Every install fails: the destination is a read-only mount.
    let Some((code, text)) = common::sync_with_read_only_dest(&env) else {
        return;
    };
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("Read-only file system"), "{text}");
    assert!(env.installed().is_empty(), "{:?}", env.installed());
    assert!(
        runs_of(&runs).is_empty(),
        "nothing changed, nothing run: {text}"
    );
    // Writable again: the files go in and the action runs, once.
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(env.installed(), ["a.conf", "b.conf"]);
    assert_eq!(runs_of(&runs), ["a.conf b.conf"]);
}
