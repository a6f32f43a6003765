//! Fault injection (issue 16): each test reproduces one fault with the real
//! thing (a writer racing a slow sync, a hanging udevadm, a full or
//! read-only destination, a crash at the swap point, exhausted inotify
//! instances), asserts that the fault shows while it lasts and that it heals
//! once it clears, with nothing lost and nothing half-installed. udevadm is
//! a stand-in (no udevd runs on test machines); everything else is real.
//! Tests that need root say so and skip unprivileged; under `CI=true` they
//! must run.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use common::{Env, make_executable, wait_for};

/// A udevadm that has `verify` (each call logged as "verify NAME"), blocks
/// the verify of `blocked` on the FIFO `gate` (logging "verify-wait NAME"
/// first), and passes every other call to the recording stand-in.
fn gated_udevadm(env: &Env, blocked: &str) -> (PathBuf, PathBuf) {
    let dir = env.tmp.path();
    let gate = dir.join("verify-gate");
    nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let standin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/udevadm-standin");
    let script = dir.join("udevadm-gated");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             if [ \"$1\" = verify ]; then\n\
             \x20 case \"$*\" in *--help*) exit 0;; esac\n\
             \x20 for a; do last=$a; done\n\
             \x20 name=$(basename \"$last\")\n\
             \x20 echo \"verify $name\" >> {log}\n\
             \x20 if [ \"$name\" = {blocked} ]; then\n\
             \x20   echo \"verify-wait $name\" >> {log}\n\
             \x20   read -r _ < {gate}\n\
             \x20 fi\n\
             \x20 exit 0\n\
             fi\n\
             exec {standin} \"$@\"\n",
            log = env.log.display(),
            gate = gate.display(),
            standin = standin.display(),
        ),
    )
    .unwrap();
    make_executable(&script);
    let cfg = fs::read_to_string(&env.config).unwrap().replace(
        &standin.display().to_string(),
        &script.display().to_string(),
    );
    fs::write(&env.config, cfg).unwrap();
    (script, gate)
}

/// Writes `first` (with [`gated_udevadm`] blocking its verify) and waits
/// until the sync that reads it is blocked there; files written before it
/// in the same window are read after it (name order) once the gate opens.
fn block_in_verify(env: &Env, d: &common::Daemon, first: &str) {
    env.put(first, "# first\n");
    wait_for(
        "the sync to block in verify",
        || {
            env.udevadm_calls()
                .iter()
                .any(|l| l == &format!("verify-wait {first}"))
        },
        || d.log(),
    );
}

fn open_gate(gate: &Path) {
    let mut f = fs::OpenOptions::new().write(true).open(gate).unwrap();
    writeln!(f, "go").unwrap();
}

/// Point 1: a writer that truncates and rewrites a file in place while a
/// slow sync is reading the source. The sync reads the torn state (one of
/// two lines); the events of that write arrived after the sync began, so
/// the file is held, not installed, and the next window installs it whole.
#[test]
fn a_file_rewritten_in_place_during_a_slow_sync_is_held_not_installed_torn() {
    let env = Env::new("    settle: { quiet: 100ms }\n    then:\n      - udev-reload\n");
    let (_, gate) = gated_udevadm(&env, "10-first.rules");
    fs::create_dir_all(&env.src).unwrap();
    let d = env.start();

    // One window with both files, new: the scan reads 10-first.rules first
    // (name order) and its verify blocks; 20-victim.rules is read after.
    env.put("20-victim.rules", "# line 1\n# line 2\n");
    block_in_verify(&env, &d, "10-first.rules");
    // The non-atomic writer: truncate, write half, keep the file open.
    let mut w = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(env.src.join("20-victim.rules"))
        .unwrap();
    w.write_all(b"# line 1\n").unwrap();
    w.flush().unwrap();
    open_gate(&gate);
    d.wait_log("held 20-victim.rules");
    assert!(
        env.dest_content("10-first.rules").is_some(),
        "the other file is installed: {}",
        d.log()
    );
    assert_eq!(
        env.dest_content("20-victim.rules"),
        None,
        "the torn file must not be installed: {}",
        d.log()
    );
    // The writer finishes: the close opens a window that installs it whole.
    w.write_all(b"# line 2\n").unwrap();
    drop(w);
    env.wait_installed(
        &d,
        "the whole file installed",
        "20-victim.rules",
        "# line 1\n# line 2\n",
    );
    // No reload ever saw the torn file: each reload's count of files is one
    // the destination had with whole files only (1, then 2). The second
    // reload runs after the install: waited for.
    wait_for("the second reload", || env.reloads().len() >= 2, || d.log());
    let reloads = env.reloads();
    assert_eq!(
        reloads,
        ["control --reload files=1", "control --reload files=2"],
        "{}",
        d.log()
    );
}

/// `hostbridge status --json` as a value (and the exit code).
fn status_json(env: &Env) -> (Option<i32>, serde_json::Value) {
    let out = env.run(&["status", "--json"]);
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), v)
}

/// Whether private namespaces of `what` work here; under CI they must.
fn namespaces_work(args: &[&str], what: &str) -> bool {
    let ok = std::process::Command::new("unshare")
        .args(args)
        .arg("true")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must allow {what} (unshare {args:?})"
        );
        eprintln!("SKIP: no {what} here");
    }
    ok
}

/// Point 4: inotify instances run out (`max_user_instances`, here lowered
/// to 1 in a private user namespace, the limit's own scope, so nothing else
/// on the machine is starved). Every configured bridge is still listed,
/// synced at start and, with the error in its status, retried; once the
/// limit is raised the watches are placed and changes flow again.
#[test]
fn bridges_without_an_inotify_instance_are_listed_synced_and_retried() {
    if !namespaces_work(&["--user", "--map-root-user"], "user namespaces") {
        return;
    }
    let env = Env::new_files("");
    let mut cfg = fs::read_to_string(&env.config).unwrap();
    for n in ["two", "three"] {
        cfg.push_str(&format!(
            "  - name: {n}\n    kind: files\n    source: {src}\n    install_to: {dest}\n",
            src = env.tmp.path().join(format!("src-{n}")).display(),
            dest = env.tmp.path().join(format!("dest-{n}")).display(),
        ));
        fs::create_dir_all(env.tmp.path().join(format!("src-{n}"))).unwrap();
        fs::write(env.tmp.path().join(format!("src-{n}/{n}.txt")), n).unwrap();
    }
    fs::write(&env.config, cfg).unwrap();
    env.put("one.txt", "one");
    let limit = "echo 1 > /proc/sys/user/max_inotify_instances && exec \"$@\"";
    let d = env.spawn_daemon_via(
        &[
            "unshare",
            "--user",
            "--map-root-user",
            "sh",
            "-c",
            limit,
            "sh",
        ],
        &[],
    );
    d.wait_log("ready:");
    let (code, st) = status_json(&env);
    let bridges = st["bridges"].as_array().cloned().unwrap_or_default();
    assert_eq!(bridges.len(), 3, "every bridge is listed: {st}");
    let down: Vec<&serde_json::Value> = bridges
        .iter()
        .filter(|b| {
            b["watching"]
                .as_str()
                .is_some_and(|w| w.contains("max_user_instances"))
        })
        .collect();
    assert_eq!(down.len(), 2, "two bridges have no instance: {st}");
    assert!(down.iter().all(|b| b["health"] == "degraded"), "{st}");
    assert_eq!(code, Some(1), "degraded, not healthy: {st}");
    for n in ["two", "three"] {
        let got = fs::read_to_string(env.tmp.path().join(format!("dest-{n}/{n}.txt")));
        assert_eq!(got.ok().as_deref(), Some(n), "synced at start anyway");
    }
    // The fault clears: the retry (every 5 s) places the watches.
    let raised = std::process::Command::new("nsenter")
        .args(["--user", "-t", &d.pid().to_string()])
        .args([
            "sh",
            "-c",
            "echo 128 > /proc/sys/user/max_inotify_instances",
        ])
        .status()
        .unwrap();
    assert!(raised.success());
    wait_for(
        "every bridge watching",
        || {
            let (code, st) = status_json(&env);
            code == Some(0)
                && st["bridges"]
                    .as_array()
                    .is_some_and(|b| b.iter().all(|b| b["watching"] == "source"))
        },
        || format!("{:?}\n{}", status_json(&env), d.log()),
    );
    fs::write(env.tmp.path().join("src-three/new.txt"), "new").unwrap();
    wait_for(
        "a change in a retried bridge synced",
        || env.tmp.path().join("dest-three/new.txt").exists(),
        || d.log(),
    );
}

/// Prepends top-level settings to the env's config.
fn with_top_level(env: &Env, yaml: &str) {
    let cfg = fs::read_to_string(&env.config).unwrap();
    fs::write(&env.config, format!("{yaml}{cfg}")).unwrap();
}

/// Adds a `files` bridge `name` (source `src-NAME`, destination
/// `dest-NAME` in the env's temp dir); returns (source, destination).
fn add_files_bridge(env: &Env, name: &str) -> (PathBuf, PathBuf) {
    let (src, dest) = (
        env.tmp.path().join(format!("src-{name}")),
        env.tmp.path().join(format!("dest-{name}")),
    );
    let mut cfg = fs::read_to_string(&env.config).unwrap();
    cfg.push_str(&format!(
        "  - name: {name}\n    kind: files\n    source: {}\n    install_to: {}\n    settle: {{ quiet: 100ms }}\n",
        src.display(),
        dest.display()
    ));
    fs::write(&env.config, cfg).unwrap();
    fs::create_dir_all(&src).unwrap();
    (src, dest)
}

/// Point 3: `udevadm verify` hangs (a stuck NSS lookup). Only its own
/// bridge waits: another bridge syncs meanwhile; status shows the stuck
/// sync and the step it is at ("syncing for N s: udevadm verify 10-x.rules",
/// degraded, exit 1); at `verify_timeout` the child is killed and the file
/// refused with that reason, and the bridge is no longer syncing.
#[test]
fn a_hanging_verify_holds_only_its_bridge_shows_as_stuck_and_is_killed() {
    let env = Env::new("    settle: { quiet: 100ms }\n");
    gated_udevadm(&env, "10-x.rules"); // the gate is never opened
    let (other_src, other_dest) = add_files_bridge(&env, "other");
    with_top_level(&env, "verify_timeout: 15s\nstuck_after: 1s\n");
    fs::create_dir_all(&env.src).unwrap();
    let d = env.start();

    block_in_verify(&env, &d, "10-x.rules");
    fs::write(other_src.join("a.txt"), "a").unwrap();
    wait_for(
        "the other bridge synced while verify hangs",
        || other_dest.join("a.txt").exists(),
        || d.log(),
    );
    wait_for(
        "status to show the stuck sync",
        || {
            let (code, st) = status_json(&env);
            let b = &st["bridges"][0];
            code == Some(1)
                && b["health"] == "degraded"
                && b["reason"].as_str().is_some_and(|r| {
                    r.starts_with("syncing for ") && r.ends_with(": udevadm verify 10-x.rules")
                })
        },
        || format!("{:?}", status_json(&env)),
    );
    let text = String::from_utf8_lossy(&env.run(&["status"]).stdout).into_owned();
    assert!(text.contains("udevadm verify 10-x.rules"), "{text}");
    wait_for(
        "the verify killed at verify_timeout and the file refused",
        || {
            let (_, st) = status_json(&env);
            let b = &st["bridges"][0];
            b["syncing"].is_null()
                && b["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("did not finish within 15s; killed"))
        },
        || format!("{:?}\n{}", status_json(&env), d.log()),
    );
    assert_eq!(env.dest_content("10-x.rules"), None);
}

/// Point 3: SIGTERM while a sync waits on a hung child: the child is
/// killed and the daemon exits 0 (before, it logged "stopped" and hung).
#[test]
fn stop_is_bounded_while_a_child_hangs() {
    let env = Env::new("    settle: { quiet: 100ms }\n");
    gated_udevadm(&env, "10-x.rules");
    with_top_level(&env, "verify_timeout: 1h\n");
    fs::create_dir_all(&env.src).unwrap();
    let mut d = env.start();
    block_in_verify(&env, &d, "10-x.rules");
    let log = d.log();
    let status = d.stop_within_deadline();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exits 0 within the deadline: {log}"
    );
}

fn is_root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs the fault tests as root"
        );
        eprintln!("SKIP: needs root");
    }
    root
}

/// A tmpfs of `size` mounted on `dir` for the test's life (lazily
/// unmounted when dropped, also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let st = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let st = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The names the bridge's manifest lists.
fn manifest_names(env: &Env, bridge: &str) -> Vec<String> {
    // The manifest's `file` lines end with the name (docs/architecture.md).
    let path = env.state.join(format!("bridges/{bridge}.manifest"));
    fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("file "))
        .filter_map(|l| l.rsplit(' ').next().map(str::to_string))
        .collect()
}

/// Point 2: the destination is full (ENOSPC on a 32 KiB tmpfs). The file
/// that fits is installed, the one that does not is reported, never listed
/// in the manifest, and tried again with backoff (no new event needed);
/// once there is room, it is installed and the bridge is healthy.
#[test]
fn a_full_destination_is_reported_kept_out_of_the_manifest_and_retried() {
    if !is_root() {
        return;
    }
    let env = Env::new_files("    settle: { quiet: 100ms }\n");
    let dest = Tmpfs::mount(&env.dest, "32k");
    fs::create_dir_all(&env.src).unwrap();
    fs::write(env.src.join("big.bin"), vec![7u8; 256 * 1024]).unwrap();
    env.put("small.txt", "small");
    let d = env.start();
    wait_for(
        "the failure retried",
        || d.log().contains("sync failed 2 time(s) in a row"),
        || d.log(),
    );
    let (code, st) = status_json(&env);
    assert_eq!(code, Some(1), "{st}");
    let reason = st["bridges"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("big.bin") && reason.contains("No space left on device"),
        "{st}"
    );
    assert_eq!(env.dest_content("small.txt").as_deref(), Some("small"));
    assert_eq!(
        manifest_names(&env, "test"),
        ["small.txt"],
        "the manifest lists only what is there"
    );
    dest.resize("1m");
    wait_for(
        "healed once there is room",
        || env.tmp.path().join("rules.d/big.bin").exists() && status_json(&env).0 == Some(0),
        || format!("{:?}\n{}", status_json(&env), d.log()),
    );
    assert_eq!(manifest_names(&env, "test"), ["big.bin", "small.txt"]);
}

/// Point 2: a source file the daemon cannot read (EACCES: in a user
/// namespace, root's override does not reach a file of an unmapped owner,
/// as with a FUSE source that refuses it). The other files sync, the
/// failure is retried without any event, and a permission change
/// (IN_ATTRIB) heals it.
#[test]
fn an_unreadable_source_file_is_retried_and_a_permission_change_heals_it() {
    if !is_root() || !namespaces_work(&["--user", "--map-root-user"], "user namespaces") {
        return;
    }
    let env = Env::new_files("    settle: { quiet: 100ms }\n");
    fs::create_dir_all(&env.src).unwrap();
    env.put("ok.txt", "ok");
    env.put("locked.txt", "locked");
    let locked = env.src.join("locked.txt");
    std::os::unix::fs::chown(&locked, Some(12345), Some(12345)).unwrap();
    fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let d = env.spawn_daemon_via(&["unshare", "--user", "--map-root-user"], &[]);
    d.wait_log("ready:");
    wait_for(
        "retried without an event",
        || d.log().contains("sync failed 2 time(s) in a row"),
        || d.log(),
    );
    assert!(
        d.log().contains("skipped locked.txt: cannot open"),
        "{}",
        d.log()
    );
    assert_eq!(env.dest_content("ok.txt").as_deref(), Some("ok"));
    fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    wait_for(
        "installed once readable",
        || env.dest_content("locked.txt").as_deref() == Some("locked"),
        || d.log(),
    );
    wait_for(
        "healthy",
        || status_json(&env).0 == Some(0),
        || format!("{:?}", status_json(&env)),
    );
}

/// Point 2: a refusal is not retried (it lasts until the container changes
/// the file), but a change of owner is a change: IN_ATTRIB rescans, and the
/// file, now owned by an allowed uid, is installed.
#[test]
fn a_change_of_owner_in_the_source_is_seen() {
    if !is_root() {
        return;
    }
    let env = Env::new_files("    settle: { quiet: 100ms }\n    source_owner: [4242]\n");
    fs::create_dir_all(&env.src).unwrap();
    env.put("a.txt", "a");
    let d = env.start();
    assert!(d.log().contains("is owned by uid 0"), "{}", d.log());
    assert!(!d.log().contains("in a row"), "a refusal is not retried");
    std::os::unix::fs::chown(env.src.join("a.txt"), Some(4242), None).unwrap();
    wait_for(
        "installed after the chown",
        || env.dest_content("a.txt").as_deref() == Some("a"),
        || d.log(),
    );
}

/// Point 2: `hostbridge reload` with an unchanged config resyncs every
/// bridge now (the operator's "try again"), without a source event.
#[test]
fn reload_resyncs_unchanged_bridges() {
    let env = Env::new_files("    settle: { quiet: 100ms }\n");
    fs::create_dir_all(&env.src).unwrap();
    env.put("a.txt", "a");
    let d = env.start();
    let before = d.log().matches("test: settled after").count();
    assert!(env.run(&["reload"]).status.success());
    d.wait_log_count("test: settled after", before + 1);
}

/// Points 2 and 6: a sync whose every file operation failed changed
/// nothing, so it runs no action; the retry that installs the file does.
#[test]
fn a_sync_that_changed_nothing_runs_no_action() {
    if !is_root() {
        return;
    }
    let env = Env::new_files("    settle: { quiet: 100ms }\n    then:\n      - udev-reload\n");
    let dest = Tmpfs::mount(&env.dest, "32k");
    fs::create_dir_all(&env.src).unwrap();
    fs::write(env.src.join("big.bin"), vec![7u8; 256 * 1024]).unwrap();
    let d = env.start();
    wait_for(
        "two failed syncs",
        || d.log().contains("sync failed 2 time(s) in a row"),
        || d.log(),
    );
    assert_eq!(env.reloads(), Vec::<String>::new(), "{}", d.log());
    dest.resize("1m");
    wait_for(
        "installed and acted on once",
        || env.reloads().len() == 1,
        || d.log(),
    );
}

/// Point 8: a file deleted while a slow sync reads the source is a race,
/// not a fault: held (reported as such, with its source name), the bridge
/// stays healthy, no sync counts as failed, and the next window settles it.
/// The race is between a listing and a read: a file kept with `prune:
/// false` after its source left makes every sync list the source (the
/// daemon's sync of the changed names alone, which lists nothing, reads
/// only a source the manifest records whole), and a removed name there is
/// simply gone.
#[test]
fn a_file_vanishing_mid_sync_is_a_race_not_a_fault() {
    let env = Env::new("    settle: { quiet: 100ms }\n    prune: false\n");
    let (_, gate) = gated_udevadm(&env, "10-first.rules");
    fs::create_dir_all(&env.src).unwrap();
    env.put("05-kept.rules", "# kept\n");
    let d = env.start();
    fs::remove_file(env.src.join("05-kept.rules")).unwrap();
    d.wait_log("settled after");
    env.put("20-gone.rules", "# gone\n");
    block_in_verify(&env, &d, "10-first.rules");
    fs::remove_file(env.src.join("20-gone.rules")).unwrap();
    open_gate(&gate);
    d.wait_log("held 20-gone.rules: vanished while it was read");
    wait_for(
        "healthy, nothing failed",
        || {
            let (code, st) = status_json(&env);
            code == Some(0) && st["bridges"][0]["counters"]["syncs_failed"] == 0
        },
        || format!("{:?}\n{}", status_json(&env), d.log()),
    );
    assert!(!d.log().contains("skipped 20-gone"), "{}", d.log());
    let (_, st) = status_json(&env);
    assert_eq!(
        st["daemon"]["errors_since_start"], 0,
        "nothing logged as an error: {st}"
    );
    assert_eq!(env.installed(), ["05-kept.rules", "10-first.rules"]);
}

/// Point 5: a kill -9 between the `..data` swap and the link updates of a
/// symlink-dir destination. The state that crash leaves is made here on
/// disk exactly (a new generation without `c.txt`, `..data` swapped to it,
/// the old `c.txt -> ..data/c.txt` left dangling, the manifest still
/// listing it), since no hook stops the daemon at that instruction. The
/// next start removes the dangling link, says so, forgets it in the
/// manifest, and is healthy.
#[test]
fn startup_reconciles_the_links_of_an_interrupted_symlink_dir_swap() {
    let env = Env::new_files("    swap: symlink-dir\n    settle: { quiet: 100ms }\n");
    fs::create_dir_all(&env.src).unwrap();
    for n in ["a.txt", "b.txt", "c.txt"] {
        env.put(n, n);
    }
    let mut d = env.start();
    assert_eq!(env.dest_content("c.txt").as_deref(), Some("c.txt"));
    assert!(d.stop().success());
    // The crash: c.txt left the source; the new generation is written and
    // swapped in; the daemon dies before removing the link.
    fs::remove_file(env.src.join("c.txt")).unwrap();
    let generation = "..1999999999.000000000";
    fs::create_dir(env.dest.join(generation)).unwrap();
    for n in ["a.txt", "b.txt"] {
        fs::write(env.dest.join(generation).join(n), n).unwrap();
    }
    std::os::unix::fs::symlink(generation, env.dest.join("..data_tmp")).unwrap();
    fs::rename(env.dest.join("..data_tmp"), env.dest.join("..data")).unwrap();
    assert!(fs::symlink_metadata(env.dest.join("c.txt")).is_ok());
    assert!(
        !env.dest.join("c.txt").exists(),
        "dangling, as the crash left it"
    );
    assert!(manifest_names(&env, "test").contains(&"c.txt".to_string()));

    let d = env.start();
    assert!(
        fs::symlink_metadata(env.dest.join("c.txt")).is_err(),
        "the dangling link is removed: {}",
        d.log()
    );
    assert!(d.log().contains("removed the link c.txt"), "{}", d.log());
    assert_eq!(env.dest_content("a.txt").as_deref(), Some("a.txt"));
    assert_eq!(manifest_names(&env, "test"), ["a.txt", "b.txt"]);
    assert_eq!(status_json(&env).0, Some(0));
}

/// Point 7: a container restart deletes its export dir, creates it again
/// empty and refills it a moment later. Nothing is pruned meanwhile, udev
/// is never reloaded with the rules gone, and the refill changes nothing.
#[test]
fn a_recreated_source_dir_refilled_soon_prunes_nothing() {
    let env = Env::new("    settle: { quiet: 100ms }\n    then:\n      - udev-reload\n");
    fs::create_dir_all(&env.src).unwrap();
    env.put("a.rules", "# a\n");
    env.put("b.rules", "# b\n");
    let d = env.start();
    assert_eq!(env.installed(), ["a.rules", "b.rules"]);
    assert_eq!(env.reloads(), ["control --reload files=2"]);
    fs::remove_dir_all(&env.src).unwrap();
    fs::create_dir(&env.src).unwrap();
    d.wait_log("pruning waits for its content or prune_grace");
    assert_eq!(env.installed(), ["a.rules", "b.rules"], "{}", d.log());
    env.put("a.rules", "# a\n");
    env.put("b.rules", "# b\n");
    d.wait_log_count("2 unchanged", 1);
    assert_eq!(env.installed(), ["a.rules", "b.rules"]);
    assert_eq!(env.reloads(), ["control --reload files=2"], "{}", d.log());
}

/// Point 7: a recreated source dir that stays empty prunes once
/// `prune_grace` has passed (one timer, at its end).
#[test]
fn a_recreated_source_dir_left_empty_prunes_after_the_grace() {
    let env = Env::new(
        "    settle: { quiet: 100ms }\n    prune_grace: 2s\n    then:\n      - udev-reload\n",
    );
    fs::create_dir_all(&env.src).unwrap();
    env.put("a.rules", "# a\n");
    let d = env.start();
    fs::remove_dir_all(&env.src).unwrap();
    fs::create_dir(&env.src).unwrap();
    d.wait_log("pruning waits for its content or prune_grace");
    assert_eq!(env.installed(), ["a.rules"]);
    d.wait_log("stayed empty for prune_grace (2s); pruning");
    wait_for(
        "pruned and reloaded",
        || env.installed().is_empty() && env.reloads().len() == 2,
        || d.log(),
    );
    assert_eq!(env.reloads()[1], "control --reload files=0");
}

/// Point 9: a file that passed `udevadm verify` is not verified again by
/// the next process (a restart, a crash loop, a `sync` by hand): the pass
/// is remembered by content digest in the state dir. New content is.
#[test]
fn verify_passes_are_remembered_across_restarts() {
    let env = Env::new("");
    gated_udevadm(&env, "none");
    fs::create_dir_all(&env.src).unwrap();
    for i in 0..5 {
        env.put(&format!("{i}.rules"), &format!("# {i}\n"));
    }
    let verifies = || {
        env.udevadm_calls()
            .iter()
            .filter(|l| l.starts_with("verify "))
            .count()
    };
    // A dry run verifies but installs nothing: each run is a fresh process
    // facing five not-yet-installed files, as a daemon in a crash loop is.
    let out = env.run(&["sync", "--dry-run"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(verifies(), 5);
    let out = env.run(&["sync", "--dry-run"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(verifies(), 5, "nothing verified twice");
    env.put("3.rules", "# changed\n");
    assert!(env.run(&["sync", "--dry-run"]).status.success());
    assert_eq!(verifies(), 6, "new content is verified");
}

/// Point 6: one bridge's action hangs; another bridge's action, on another
/// target, runs meanwhile (actions run in groups by target), and stopping
/// the daemon kills the hung one with its whole process group.
#[test]
fn a_hung_action_holds_up_only_its_own_target() {
    let env = Env::new_files("    settle: { quiet: 100ms }\n");
    let started = env.tmp.path().join("hang-started");
    let marker = env.tmp.path().join("other-acted");
    let mut cfg = fs::read_to_string(&env.config).unwrap();
    let pidfile = env.tmp.path().join("grandchild.pid");
    cfg.push_str(&format!(
        "    then:\n      - exec: {{ argv: [/bin/sh, -c, \"sleep 3600 & echo $! > {}; touch {}; wait\"], timeout: 1h }}\n",
        pidfile.display(),
        started.display()
    ));
    fs::write(&env.config, cfg).unwrap();
    let (other_src, _) = add_files_bridge(&env, "other");
    let mut cfg = fs::read_to_string(&env.config).unwrap();
    cfg.push_str(&format!(
        "    then:\n      - exec: {{ argv: [/usr/bin/touch, {}] }}\n",
        marker.display()
    ));
    fs::write(&env.config, cfg).unwrap();
    fs::create_dir_all(&env.src).unwrap();
    let mut d = env.start();
    env.put("a.txt", "a");
    wait_for("the first action to hang", || started.exists(), || d.log());
    fs::write(other_src.join("b.txt"), "b").unwrap();
    wait_for(
        "the other bridge's action to run meanwhile",
        || marker.exists(),
        || d.log(),
    );
    let grandchild: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let status = d.stop_within_deadline();
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    // The hung action's whole process group went with the daemon.
    wait_for(
        "the action's grandchild killed at stop",
        || nix::sys::signal::kill(nix::unistd::Pid::from_raw(grandchild), None).is_err(),
        || format!("pid {grandchild} still there"),
    );
}

/// Review finding: a hold never shields an installed copy from today's
/// policy. A rules file installed under `allow_symlinks: ["ups/"]`; the
/// daemon restarts with that permission gone, and while its startup sync
/// is held up (in the verify of another file) the container rewrites the
/// file in place and keeps it open, so the sync holds it. The installed
/// copy breaks today's policy: it is removed anyway.
#[test]
fn a_held_file_is_still_revoked_when_its_installed_copy_breaks_the_policy() {
    let rule = "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", SYMLINK+=\"ups/apc\"\n";
    let settle = "    settle: { quiet: 50ms }\n";
    let env = Env::new(&format!("{settle}    allow_symlinks: [\"ups/\"]\n"));
    let (_, gate) = gated_udevadm(&env, "10-first.rules");
    env.put("62-ups.rules", rule);
    let mut d = env.start();
    assert!(env.dest_content("62-ups.rules").is_some(), "{}", d.log());
    assert!(d.stop().success());

    let udevadm = fs::read_to_string(&env.config).unwrap();
    env.write_config(settle);
    // Keep the gated udevadm of the first config.
    let line = udevadm.lines().find(|l| l.starts_with("udevadm:")).unwrap();
    let cfg = fs::read_to_string(&env.config).unwrap();
    let cfg: String = cfg
        .lines()
        .map(|l| if l.starts_with("udevadm:") { line } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(&env.config, cfg + "\n").unwrap();
    env.put("10-first.rules", "# first\n");
    let d = env.spawn_daemon(&[]);
    wait_for(
        "the startup sync to block in verify",
        || {
            env.udevadm_calls()
                .iter()
                .any(|l| l == "verify-wait 10-first.rules")
        },
        || d.log(),
    );
    let mut w = fs::OpenOptions::new()
        .write(true)
        .open(env.src.join("62-ups.rules"))
        .unwrap();
    w.write_all(rule.as_bytes()).unwrap();
    w.flush().unwrap();
    open_gate(&gate);
    d.wait_log("held 62-ups.rules");
    d.wait_log("removing the installed 62-ups.rules: it breaks the bridge's current policy");
    assert_eq!(env.dest_content("62-ups.rules"), None, "{}", d.log());
    drop(w);
}

/// Review finding: a container creating and deleting names the bridge
/// never syncs (hidden ones), as fast as it can, costs the daemon no
/// memory that grows with them, and the bridge still syncs afterwards.
#[test]
fn a_flood_of_ignored_names_costs_no_memory() {
    let env = Env::new("    settle: { quiet: 100ms }\n");
    fs::create_dir_all(&env.src).unwrap();
    let d = env.start();
    let rss = || {
        let status = fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
    };
    let before = rss();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut n = 0u64;
    while std::time::Instant::now() < end {
        let p = env.src.join(format!(".flood-{n:012}"));
        fs::write(&p, b"").unwrap();
        fs::remove_file(&p).unwrap();
        n += 1;
    }
    let after = rss();
    eprintln!("flood: {n} names, RSS {before} kB -> {after} kB");
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} kB to {after} kB over {n} names"
    );
    env.put("a.rules", "# a\n");
    wait_for(
        "a change synced after the flood",
        || env.dest_content("a.rules").is_some(),
        || d.log(),
    );
}

/// Found by the soak in CI: a file just created by its writer, empty until
/// the first write, is held while the writer has it open (not installed
/// empty), and installed whole once it closes.
#[test]
fn a_file_created_and_not_yet_written_is_held_until_closed() {
    let env = Env::new("    settle: { quiet: 100ms }\n");
    fs::create_dir_all(&env.src).unwrap();
    let d = env.start();
    let mut w = fs::File::create(env.src.join("20-new.rules")).unwrap();
    env.put("10-other.rules", "# other\n");
    d.wait_log("held 20-new.rules: still open for writing");
    assert!(env.dest_content("10-other.rules").is_some(), "{}", d.log());
    assert_eq!(env.dest_content("20-new.rules"), None, "{}", d.log());
    w.write_all(b"# new\n").unwrap();
    drop(w);
    env.wait_installed(&d, "installed whole once closed", "20-new.rules", "# new\n");
}

/// A writer that opened a file before anything watched the source and has
/// written half of it: no event says so until it writes again, and its
/// times are old, so neither the events nor the settle time can tell. The
/// kernel's count of writers can (a read lease): `hostbridge sync` and the
/// daemon's first sync hold the file (exit 65, its last good copy kept),
/// and the daemon installs it whole once its writer closes it.
#[test]
fn a_file_a_writer_opened_before_the_watch_is_held_until_it_is_closed() {
    let quiet = std::time::Duration::from_millis(100);
    let env = Env::new("    settle: { quiet: 100ms }\n");
    fs::create_dir_all(&env.src).unwrap();
    env.put("10-other.rules", "# other\n");
    let path = env.src.join("20-half.rules");
    let mut w = fs::File::create(&path).unwrap();
    w.write_all(b"# first half\n").unwrap();
    let written = fs::metadata(&path).unwrap().modified().unwrap();
    wait_for(
        "the half-written file to look quiet by its times",
        || written.elapsed().is_ok_and(|age| age > 2 * quiet),
        String::new,
    );

    let out = env.run(&["sync"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(65), "{text}");
    assert!(
        text.contains("! hold 20-half.rules: open for writing by another process"),
        "{text}"
    );
    assert!(env.dest_content("10-other.rules").is_some(), "{text}");
    assert_eq!(env.dest_content("20-half.rules"), None, "{text}");

    let d = env.start();
    d.wait_log("held 20-half.rules: open for writing by another process");
    assert_eq!(env.dest_content("20-half.rules"), None, "{}", d.log());
    w.write_all(b"# second half\n").unwrap();
    drop(w);
    env.wait_installed(
        &d,
        "installed whole once closed",
        "20-half.rules",
        "# first half\n# second half\n",
    );
}

/// Takes a read lease on `file` (the lease-break signal set to SIGWINCH,
/// ignored by default, so a break does not kill the test), then breaks it
/// with an open for writing that does not wait and fails: the lease stays
/// "being broken" for `lease-break-time` (45 s by default), and while it
/// is, the kernel refuses anyone else a lease on the file as if a writer
/// had it open. No writer has, and no event follows.
fn lease_pending_break(file: &fs::File, path: &Path) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: a descriptor this function borrows, integer arguments only
    // (F_SETSIG is 10 on every architecture Rust builds for).
    #[allow(unsafe_code)]
    unsafe {
        assert_ne!(nix::libc::fcntl(fd, 10, nix::libc::SIGWINCH), -1);
        assert_ne!(
            nix::libc::fcntl(fd, nix::libc::F_SETLEASE, nix::libc::F_RDLCK),
            -1,
            "{}",
            std::io::Error::last_os_error()
        );
    }
    let opened = fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path);
    assert_eq!(
        opened.map(drop).map_err(|e| e.raw_os_error()),
        Err(Some(nix::libc::EWOULDBLOCK))
    );
}

/// A file the kernel refuses a lease on although no writer has it open
/// (another holder's lease on it is being broken) is held, and no event
/// will come for it: the daemon looks at it again by itself (after 1 s,
/// then with backoff) and installs it once the lease is gone.
#[test]
fn a_file_held_open_with_no_close_to_come_is_looked_at_again() {
    let env = Env::new("    settle: { quiet: 100ms }\n");
    fs::create_dir_all(&env.src).unwrap();
    let path = env.src.join("30-leased.rules");
    fs::write(&path, "# leased\n").unwrap();
    let holder = fs::File::open(&path).unwrap();
    lease_pending_break(&holder, &path);
    let d = env.start();
    d.wait_log("held 30-leased.rules: open for writing by another process");
    assert_eq!(env.dest_content("30-leased.rules"), None, "{}", d.log());
    // Gone without an event (a read-only descriptor's close sends none
    // that a bridge watches).
    drop(holder);
    env.wait_installed(
        &d,
        "installed by a second look",
        "30-leased.rules",
        "# leased\n",
    );
    assert!(
        d.log()
            .contains("looking again at 1 file(s) held open for writing"),
        "{}",
        d.log()
    );
}
