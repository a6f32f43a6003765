//! End-to-end tests of the core pipeline with real inotify, real files and
//! the real `hostbridge` binary; udevadm is the recording stand-in from
//! tests/support (no udevd runs on test machines).

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};

use common::{Env, list, wait_for};

const RELOAD_THEN: &str = "    then:\n      - udev-reload\n";

/// The log line of a sync that installed only the marker.
const MARKER_SYNC: &str = "1 file changed: installed zz-marker.rules";

/// Writes `zz-marker.rules` after the writes under test and waits until the
/// sync that installed it has logged: every sync the earlier writes caused
/// has then finished, so counts taken afterwards are final.
fn flush_with_marker(env: &Env, d: &common::Daemon) {
    env.put("zz-marker.rules", "# marker\n");
    d.wait_log("installed zz-marker.rules");
}

/// Syncs that changed files, not counting one that installed only the marker.
fn syncs_before_marker(d: &common::Daemon) -> usize {
    d.log()
        .lines()
        .filter(|l| common::is_changing_sync(l) && !l.contains(MARKER_SYNC))
        .count()
}

#[test]
fn slow_writer_is_installed_whole_by_the_first_sync() {
    let env = Env::new(RELOAD_THEN);
    fs::create_dir_all(&env.src).unwrap();
    let d = env.start();

    common::slow_writer(&env.src, 40);
    wait_for("first reload", || !env.reloads().is_empty(), || d.log());
    assert_eq!(
        env.reloads()[0],
        "control --reload files=40",
        "the first action must see every file"
    );
    for f in 0..40 {
        let got = env.dest_content(&common::slow_name(f)).unwrap();
        // The canonical form names the SHA-256 of the source it was made
        // from: equal means the whole file was read and judged.
        let whole = common::canonical(&common::slow_name(f), &common::slow_content(f));
        assert_eq!(got, whole, "file {f} incomplete");
    }
    flush_with_marker(&env, &d);
    assert_eq!(syncs_before_marker(&d), 1, "{}", d.log());
    assert_eq!(
        env.reloads().len(),
        2,
        "one reload for the burst, one for the marker: {:?}",
        env.reloads()
    );
}

#[test]
fn burst_of_2000_files_gives_at_most_two_syncs() {
    // A longer quiet period keeps a stalled writer on a loaded machine from
    // splitting the burst more than the bound allows.
    let env = Env::new(
        "    settle: { quiet: 1s }\n    max_files: 5000\n    then:\n      - udev-reload\n",
    );
    fs::create_dir_all(&env.src).unwrap();
    let d = env.start();
    for i in 0..2000 {
        fs::write(
            env.src.join(format!("{i:04}-burst.rules")),
            format!("# burst {i}\n"),
        )
        .unwrap();
    }
    wait_for(
        "2000 files installed",
        || env.installed().len() == 2000,
        || d.log(),
    );
    flush_with_marker(&env, &d);
    let syncs = syncs_before_marker(&d);
    eprintln!(
        "burst: {syncs} syncs, {} reloads in all",
        env.reloads().len()
    );
    assert!(
        (1..=2).contains(&syncs),
        "{syncs} syncs for one burst:\n{}",
        d.log()
    );
    assert_eq!(
        env.reloads().len(),
        d.changing_syncs(),
        "one reload per sync"
    );
}

#[test]
fn rename_in_place_write_modify_and_delete() {
    let env = Env::new(RELOAD_THEN);
    fs::create_dir_all(&env.src).unwrap();
    let d = env.start();

    // cp to a temp name, then mv into place (what `install` and most tools do).
    fs::write(env.src.join(".a.rules.XXXXXX"), "# a v1\n").unwrap();
    fs::rename(env.src.join(".a.rules.XXXXXX"), env.src.join("a.rules")).unwrap();
    env.wait_installed(&d, "a installed", "a.rules", "# a v1\n");

    // In-place write.
    env.put("b.rules", "# b v1\n");
    env.wait_installed(&d, "b installed", "b.rules", "# b v1\n");

    // Modify → replaced.
    env.put("b.rules", "# b v2\n");
    env.wait_installed(&d, "b replaced", "b.rules", "# b v2\n");

    // Delete → pruned.
    fs::remove_file(env.src.join("a.rules")).unwrap();
    wait_for(
        "a pruned",
        || env.dest_content("a.rules").is_none(),
        || d.log(),
    );
    d.wait_log("pruned a.rules");

    let mode = fs::metadata(env.dest.join("b.rules"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o644);
    assert_eq!(env.installed(), ["b.rules"], "no temp file is left behind");
    assert_eq!(
        env.reloads().len(),
        4,
        "one reload per change: {:?}",
        env.reloads()
    );
}

#[test]
fn identical_content_writes_nothing_and_runs_no_action() {
    let env = Env::new(RELOAD_THEN);
    env.put("a.rules", "# a\n");
    let d = env.start();
    assert_eq!(
        env.reloads().len(),
        1,
        "startup reconcile installs and reloads"
    );
    let ino = fs::metadata(env.dest.join("a.rules"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    env.put("a.rules", "# a\n"); // same bytes again
    d.wait_log("nothing to change");
    let ino2 = fs::metadata(env.dest.join("a.rules"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    assert_eq!(ino, ino2, "file was not rewritten");
    assert_eq!(env.reloads().len(), 1, "no action without a change");
}

#[test]
fn events_during_a_running_action_are_not_lost() {
    let env = Env::new(RELOAD_THEN).with_gate();
    fs::create_dir_all(&env.src).unwrap();
    let d = env.start();
    env.put("first.rules", "# 1\n");
    // The stand-in now blocks inside `udevadm control --reload`.
    wait_for(
        "reload blocked",
        || env.udevadm_calls().iter().any(|l| l.contains("gate-wait")),
        || d.log(),
    );
    env.put("second.rules", "# 2\n");
    d.wait_log("change during sync (second.rules)");
    env.open_gate();
    wait_for(
        "second installed",
        || env.dest_content("second.rules").is_some(),
        || d.log(),
    );
    wait_for("second reload", || env.reloads().len() == 2, || d.log());
    assert_eq!(env.reloads()[1], "control --reload files=2");
}

#[test]
fn source_dir_absent_at_start_then_created_and_recreated() {
    // Neither the source nor the destination dir exists at start.
    let env = Env::new(RELOAD_THEN);
    let d = env.start();
    assert!(d.log().contains("does not exist yet"), "{}", d.log());
    assert!(!env.dest.exists());

    env.put("a.rules", "# a\n");
    wait_for(
        "a installed after the dir appeared",
        || env.dest_content("a.rules").is_some(),
        || d.log(),
    );

    // Delete the whole source dir: installed files are kept (no information).
    fs::remove_dir_all(&env.src).unwrap();
    d.wait_log("source dir is missing");
    assert!(
        env.dest_content("a.rules").is_some(),
        "a vanished export dir does not prune"
    );

    // Recreate it with different content: now prune and install apply.
    env.put("b.rules", "# b\n");
    wait_for(
        "b installed, a pruned",
        || env.installed() == ["b.rules"],
        || d.log(),
    );
}

#[test]
fn deep_missing_source_path_is_waited_for() {
    let env = Env::new(RELOAD_THEN);
    let deep = env.tmp.path().join("a/b/c/export");
    let cfg = fs::read_to_string(&env.config)
        .unwrap()
        .replace(&env.src.display().to_string(), &deep.display().to_string());
    fs::write(&env.config, cfg).unwrap();
    let d = env.start();
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("x.rules"), "# x\n").unwrap();
    wait_for(
        "x installed",
        || env.dest_content("x.rules").is_some(),
        || d.log(),
    );
}

#[test]
fn bad_input_is_skipped_with_a_warning_and_never_blocks() {
    let env = Env::new(RELOAD_THEN);
    fs::create_dir_all(&env.src).unwrap();
    let secret = env.tmp.path().join("shadow");
    fs::write(&secret, "root:$6$secret:19000:0:99999:7:::\n").unwrap();
    symlink(&secret, env.src.join("evil.rules")).unwrap();
    nix::unistd::mkfifo(
        &env.src.join("fifo.rules"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let big = fs::File::create(env.src.join("big.rules")).unwrap();
    big.set_len(50 << 20).unwrap();
    drop(big);
    fs::write(env.src.join(".hidden.rules"), "# hidden\n").unwrap();
    fs::write(
        env.src.join(std::ffi::OsStr::from_bytes(b"bad\xff.rules")),
        "# bad name\n",
    )
    .unwrap();
    fs::create_dir(env.src.join("dir.rules")).unwrap();
    fs::write(env.src.join("good.rules"), "# good\n").unwrap();

    let d = env.start();
    assert_eq!(env.installed(), ["good.rules"]);
    let log = d.log();
    for needle in [
        "skipped evil.rules: is a symlink",
        "skipped fifo.rules: is a FIFO",
        "skipped big.rules: is 52428800 bytes, over the max_file_size limit",
        "skipped dir.rules: is a directory",
        "name is not valid UTF-8",
    ] {
        assert!(log.contains(needle), "missing {needle:?} in\n{log}");
    }
    assert!(
        !log.contains(".hidden.rules"),
        "hidden files are ignored quietly"
    );
    assert!(
        !fs::read_dir(&env.dest)
            .unwrap()
            .any(|e| fs::read(e.unwrap().path()).unwrap().starts_with(b"root:"))
    );
}

#[test]
fn stale_temp_files_are_removed_at_startup() {
    let env = Env::new("");
    fs::create_dir_all(&env.dest).unwrap();
    fs::write(env.dest.join(".hostbridge-999-0.tmp"), "half a fi").unwrap();
    fs::write(env.dest.join("operator.rules"), "# not ours\n").unwrap();
    env.put("a.rules", "# a\n");
    let d = env.start();
    assert!(
        d.log()
            .contains("removed stale temp file .hostbridge-999-0.tmp"),
        "{}",
        d.log()
    );
    assert_eq!(env.installed(), ["a.rules", "operator.rules"]);
}

#[test]
fn foreign_destination_file_is_a_conflict_not_overwritten() {
    let env = Env::new("");
    fs::create_dir_all(&env.dest).unwrap();
    fs::write(env.dest.join("a.rules"), "# operator's own\n").unwrap();
    env.put("a.rules", "# container's\n");
    let d = env.start();
    assert!(
        d.log()
            .contains("not touching a.rules: destination file was not installed by hostbridge"),
        "{}",
        d.log()
    );
    assert_eq!(env.dest_content("a.rules").unwrap(), "# operator's own\n");
}

#[test]
fn kill_9_never_leaves_a_partial_file_under_a_final_name() {
    // Trusted: the 512 KiB sources are installed byte for byte, so a partial
    // install shows (permissions-only installs the short canonical form).
    let env = Env::new("    policy: trusted\n    max_files: 150\n    max_bytes: 100MiB\n");
    fs::create_dir_all(&env.src).unwrap();
    // 150 files of 512 KiB; every round rewrites all of them.
    let body = |round: usize, i: usize| {
        format!("# round {round} file {i}\n") + &format!("# {i:08} padding line\n").repeat(22_000)
    };
    let name = |i: usize| format!("{i:03}-big.rules");
    for round in 0..5 {
        for i in 0..150 {
            fs::write(env.src.join(name(i)), body(round, i)).unwrap();
        }
        let mut d = env.spawn_daemon(&[]);
        // Files are installed in name order: kill once file k has the new content.
        let k = 10 + round * 25;
        let marker = format!("# round {round} file {k}\n");
        wait_for(
            "sync under way",
            || fs::read(env.dest.join(name(k))).is_ok_and(|b| b.starts_with(marker.as_bytes())),
            || d.log(),
        );
        d.kill9();
        for f in list(&env.dest) {
            if f.starts_with(".hostbridge-") {
                continue; // a temp file may be partial; it is never read
            }
            let i: usize = f[..3].parse().unwrap();
            let got = fs::read_to_string(env.dest.join(&f)).unwrap();
            let ok = got == body(round, i) || (round > 0 && got == body(round - 1, i));
            assert!(ok, "round {round}: {f} is partial ({} bytes)", got.len());
        }
    }
    let d = env.start();
    assert_eq!(
        list(&env.dest).len(),
        150,
        "restart completes the sync and cleans temps: {}",
        d.log()
    );
    for i in 0..150 {
        assert_eq!(env.dest_content(&name(i)).unwrap(), body(4, i));
    }
}

#[test]
fn failed_action_is_retried_on_the_next_sync() {
    let env = Env::new(RELOAD_THEN);
    env.put("a.rules", "# a\n");
    let d = env.spawn_daemon(&[(
        "STANDIN_FAIL",
        "Failed to send reload request: No such file or directory",
    )]);
    d.wait_log("ready:");
    assert!(
        d.log()
            .contains("udev-reload failed (retried on the next sync)"),
        "{}",
        d.log()
    );
    assert!(
        d.log().contains("Failed to send reload request"),
        "stderr is in the log: {}",
        d.log()
    );
    drop(d);
    // Nothing changed on disk, but the owed reload runs at the next start.
    let d = env.start();
    assert!(d.log().contains("udev-reload ok"), "{}", d.log());
    assert_eq!(env.reloads().len(), 1);
}

#[test]
fn invalid_replacement_keeps_the_last_good_copy() {
    let env = Env::new(RELOAD_THEN);
    env.put("a.rules", "# good\n");
    let good = common::canonical("a.rules", "# good\n");
    let d = env.start();
    assert_eq!(env.dest_content("a.rules"), Some(good.clone()));
    // The container replaces the file with a symlink, then with an oversized file.
    fs::remove_file(env.src.join("a.rules")).unwrap();
    symlink("/etc/passwd", env.src.join("a.rules")).unwrap();
    d.wait_log("skipped a.rules: is a symlink");
    assert_eq!(env.dest_content("a.rules"), Some(good.clone()));
    fs::remove_file(env.src.join("a.rules")).unwrap();
    fs::write(env.src.join("a.rules"), vec![b'#'; 2 << 20]).unwrap();
    d.wait_log("skipped a.rules: is 2097152 bytes");
    assert_eq!(env.dest_content("a.rules"), Some(good.clone()));
    assert_eq!(env.reloads().len(), 1, "nothing changed, nothing reloaded");
}

#[test]
fn queue_overflow_falls_back_to_a_full_rescan() {
    // Far more files than udev-rules bridges take by default.
    let env = Env::new("    max_files: 100000\n");
    fs::create_dir_all(&env.src).unwrap();
    let d = env.start();
    let max: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384);
    if max > 100_000 {
        eprintln!("SKIP queue_overflow: max_queued_events is {max}, too many files to write");
        return;
    }
    // Freeze the daemon (a real SIGSTOP) so the kernel queue fills up: each
    // file gives at least CREATE, MODIFY and CLOSE_WRITE.
    let pid = d.pid();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let n = max / 3 + 2000;
    for i in 0..n {
        fs::write(env.src.join(format!("{i:06}.rules")), "#\n").unwrap();
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    d.wait_log("inotify queue overflowed");
    wait_for(
        "all files installed",
        || env.installed().len() == n,
        || d.log(),
    );
}

#[test]
fn a_sync_reads_each_source_file_once() {
    // A rules bridge: the scan reads, vets and parses each file, the install
    // writes the canonical form it kept, the grants come from its parse.
    let env = Env::new(RELOAD_THEN);
    fs::create_dir_all(&env.src).unwrap();
    for i in 0..5 {
        env.put(
            &format!("6{i}-ups.rules"),
            "SUBSYSTEM==\"usb\", ATTRS{idVendor}==\"051d\", ATTRS{bDeviceClass}!=\"09\", MODE=\"0660\"\n",
        );
    }
    let counts = common::reads_during(&env, || {
        let out = env.run(&["sync"]);
        assert!(out.status.success(), "{out:?}");
    });
    assert_eq!(env.installed().len(), 5, "{:?}", env.installed());
    assert_eq!(counts.len(), 5, "every file read: {counts:?}");
    assert!(counts.values().all(|n| *n == 1), "each once: {counts:?}");

    // A files bridge with a TLS pair: the pair check reads the bytes the
    // scan kept, and the symlink-dir swap publishes them.
    let env = Env::new_files(TLS_PAIR);
    fs::create_dir_all(&env.src).unwrap();
    let (crt, key, _) = common::openssl_pair("p256", "once", 30);
    env.put_renamed("tls.crt", &crt);
    env.put_renamed("tls.key", &key);
    env.put("ca.txt", "not checked\n");
    let counts = common::reads_during(&env, || {
        let out = env.run(&["sync"]);
        assert!(out.status.success(), "{out:?}");
    });
    assert_eq!(fs::read(env.dest.join("tls.crt")).unwrap(), crt);
    assert_eq!(counts.len(), 3, "every file read: {counts:?}");
    assert!(counts.values().all(|n| *n == 1), "each once: {counts:?}");
}

const TLS_PAIR: &str = "    require: [tls.crt, tls.key]\n    validate: { tls-pair: { cert: tls.crt, key: tls.key } }\n";
