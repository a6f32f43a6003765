//! A sync costs what changed, not what exists (issue 18), and skipping the
//! rest never misses a change: real files, real inotify (IN_OPEN counts the
//! reads), the real binary. What a watch cannot see (a change while the
//! daemon was stopped, an installed copy changed behind hostbridge's back,
//! a rewrite that restores the modification time) is still caught by the
//! paths that read everything or compare stamps.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{Env, listings_and_reads_during, reads_during, wait_for};

const RULE: &str =
    "SUBSYSTEM==\"usb\", ATTRS{idVendor}==\"051d\", ATTRS{bDeviceClass}!=\"09\", MODE=\"0660\"\n";
const OTHER: &str =
    "SUBSYSTEM==\"usb\", ATTRS{idVendor}==\"051e\", ATTRS{bDeviceClass}!=\"09\", MODE=\"0660\"\n";

/// Waits until `dir` and every file in it were last changed over a second
/// ago: a stamp is trusted only for a file (or a dir's listing) that had
/// been quiet that long when it was read (`core::stamp::SETTLED`), and no
/// process can set a change time back, so the test waits on the clock for
/// it.
fn wait_settled(dir: &Path) {
    wait_for(
        "source files quiet for over 1 s",
        || {
            let entries = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path());
            std::iter::once(dir.to_path_buf()).chain(entries).all(|p| {
                let m = fs::metadata(p).unwrap();
                let ctime = std::time::UNIX_EPOCH
                    + Duration::new(
                        std::os::unix::fs::MetadataExt::ctime(&m) as u64,
                        std::os::unix::fs::MetadataExt::ctime_nsec(&m) as u32,
                    );
                SystemTime::now()
                    .duration_since(ctime)
                    .is_ok_and(|age| age > Duration::from_millis(1500))
            })
        },
        String::new,
    );
}

/// Rewrites `name` with `content` of the same size, then sets its
/// modification time back to what it was: only its change time tells.
fn rewrite_keeping_mtime(dir: &Path, name: &str, content: &str) {
    let path = dir.join(name);
    let before = fs::metadata(&path).unwrap();
    assert_eq!(before.len(), content.len() as u64, "same size");
    fs::write(&path, content).unwrap();
    let f = fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(before.modified().unwrap()).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().modified().unwrap(),
        before.modified().unwrap()
    );
}

fn sync_ok(env: &Env, args: &[&str]) {
    let out = env.run(args);
    assert!(out.status.success(), "{args:?}: {out:?}");
}

/// `hostbridge sync` reads a file again only when its stamp changed; a
/// rewrite of the same size with the modification time restored still
/// changes the stamp (the change time), so it is read and installed;
/// `--full` reads everything.
#[test]
fn sync_reads_only_the_files_whose_stamp_changed() {
    let env = Env::new("");
    fs::create_dir_all(&env.src).unwrap();
    for i in 0..5 {
        env.put(&format!("6{i}-ups.rules"), RULE);
    }
    wait_settled(&env.src);
    let first = reads_during(&env, || sync_ok(&env, &["sync"]));
    assert_eq!(first.len(), 5, "the first sync reads every file: {first:?}");

    let again = reads_during(&env, || sync_ok(&env, &["sync"]));
    assert!(again.is_empty(), "nothing changed, nothing read: {again:?}");

    rewrite_keeping_mtime(&env.src, "62-ups.rules", OTHER);
    let changed = reads_during(&env, || {
        let out = env.run(&["sync"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("replaced 62-ups.rules"), "{text}");
    });
    assert_eq!(
        changed.keys().collect::<Vec<_>>(),
        ["62-ups.rules"],
        "only the rewritten file is read: {changed:?}"
    );
    assert!(
        env.dest_content("62-ups.rules").unwrap().contains("051e"),
        "the new content is installed"
    );

    let full = reads_during(&env, || sync_ok(&env, &["sync", "--full"]));
    assert_eq!(full.len(), 5, "--full reads every file: {full:?}");
}

/// A file read moments after it was written is read again next time: its
/// stamp may not yet stand for its content (a write within the same clock
/// tick leaves the times as they were).
#[test]
fn a_file_read_moments_after_its_write_is_read_again() {
    let env = Env::new("");
    fs::create_dir_all(&env.src).unwrap();
    env.put("60-ups.rules", RULE);
    sync_ok(&env, &["sync"]);
    let again = reads_during(&env, || sync_ok(&env, &["sync"]));
    // Unless the machine took over a second between the write and the
    // first sync's read, the stamp was not trusted.
    let written = fs::metadata(env.src.join("60-ups.rules"))
        .unwrap()
        .modified()
        .unwrap();
    if SystemTime::now()
        .duration_since(written)
        .is_ok_and(|age| age < Duration::from_millis(900))
    {
        assert_eq!(again.get("60-ups.rules"), Some(&1), "{again:?}");
    }
}

/// The daemon's sync after one change reads that file only, not the
/// others: its watch saw every change since the last sync.
#[test]
fn the_daemon_reads_only_what_its_watch_saw_change() {
    let env = Env::new("    settle: { quiet: 100ms, max_wait: 5s }\n");
    fs::create_dir_all(&env.src).unwrap();
    for i in 0..40 {
        env.put(&format!("{i:02}-ups.rules"), RULE);
    }
    let d = env.start();
    assert_eq!(env.installed().len(), 40);
    let counts = reads_during(&env, || {
        fs::write(env.src.join("07-ups.rules"), OTHER).unwrap();
        wait_for(
            "the change installed",
            || {
                env.dest_content("07-ups.rules")
                    .is_some_and(|c| c.contains("051e"))
            },
            || d.log(),
        );
    });
    // Our own write opens it once, the daemon's read once.
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["07-ups.rules"],
        "only the changed file is opened: {counts:?}"
    );
    assert!(counts["07-ups.rules"] <= 2, "{counts:?}");
}

/// What no watch saw (a source rewritten with its modification time kept,
/// an installed copy edited, while the daemon was stopped) is caught when
/// it starts: the startup sync reads everything.
#[test]
fn changes_made_while_the_daemon_was_stopped_are_caught_at_start() {
    let env = Env::new("");
    fs::create_dir_all(&env.src).unwrap();
    env.put("60-ups.rules", RULE);
    env.put("61-ups.rules", RULE);
    wait_settled(&env.src);
    let mut d = env.start();
    assert_eq!(env.installed().len(), 2);
    assert!(d.stop().success());

    rewrite_keeping_mtime(&env.src, "60-ups.rules", OTHER);
    fs::write(env.dest.join("61-ups.rules"), "# edited by hand\n").unwrap();
    let d = env.start();
    wait_for(
        "both repaired",
        || {
            env.dest_content("60-ups.rules")
                .is_some_and(|c| c.contains("051e"))
                && env
                    .dest_content("61-ups.rules")
                    .is_some_and(|c| c.contains("051d"))
        },
        || d.log(),
    );
}

/// `hostbridge sync` looks at each installed copy's stamp: one edited
/// behind hostbridge's back is put back, as the canonical form of its
/// source (which the scan had taken unread, so it is read and judged
/// again for it).
#[test]
fn sync_puts_back_an_installed_copy_changed_behind_its_back() {
    let env = Env::new("");
    fs::create_dir_all(&env.src).unwrap();
    env.put("60-ups.rules", RULE);
    env.put("61-ups.rules", RULE);
    wait_settled(&env.src);
    sync_ok(&env, &["sync"]);
    let good = env.dest_content("60-ups.rules").unwrap();
    fs::write(env.dest.join("60-ups.rules"), "# edited by hand\n").unwrap();
    let out = env.run(&["sync"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("replaced 60-ups.rules"), "{text}");
    assert_eq!(env.dest_content("60-ups.rules").unwrap(), good);
}

/// A manifest of an earlier version (JSON) is read, so an upgrade in place
/// keeps ownership of what is installed, and replaced by the line format.
#[test]
fn a_json_manifest_of_an_earlier_version_is_read_and_replaced() {
    let env = Env::new("");
    fs::create_dir_all(&env.src).unwrap();
    env.put("60-ups.rules", RULE);
    sync_ok(&env, &["sync"]);
    let manifest = env.state.join("bridges/test.manifest");
    let text = fs::read_to_string(&manifest).unwrap();
    let line = text.lines().find(|l| l.starts_with("file ")).unwrap();
    let sha = line.split(' ').nth(1).unwrap();
    let json = format!(
        "{{\"version\": 1, \"destination\": \"{}\", \"actions_pending\": false, \"files\": {{\"60-ups.rules\": {{\"sha256\": \"{sha}\", \"mode\": 420}}}}}}",
        env.dest.display()
    );
    fs::remove_file(&manifest).unwrap();
    let old = env.state.join("bridges/test.json");
    fs::write(&old, json).unwrap();
    let out = env.run(&["sync"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("nothing to change; 1 unchanged"),
        "owned, not a conflict: {text}"
    );
    assert!(manifest.exists() && !old.exists());
}

/// A burst of 20,000 files: one sync, one run of the `exec` action, which
/// sees every name in `HOSTBRIDGE_CHANGED_FILE` (one a line), while
/// `HOSTBRIDGE_CHANGED` stays within 32 KiB (past 128 KiB one variable
/// makes execve fail with E2BIG, and the action would never run).
#[test]
fn a_burst_of_20000_files_runs_the_exec_action_once_with_every_name() {
    const N: usize = 20_000;
    let env = Env::new_files("");
    let runs = env.tmp.path().join("runs");
    env.write_files_config(&format!(
        "    settle: {{ quiet: 1s, max_wait: 300s }}\n    max_files: {N}\n    then:\n      - exec: {{ argv: [/bin/sh, -c, 'echo \"$(wc -l < \"$HOSTBRIDGE_CHANGED_FILE\") $(printf %s \"$HOSTBRIDGE_CHANGED\" | wc -c) ${{HOSTBRIDGE_CHANGED##* }}\" >> {}'] }}\n",
        runs.display()
    ));
    fs::create_dir_all(&env.src).unwrap();
    let d = env.start();
    // Written aside, then renamed in: the burst is over in well under the
    // quiet time however slow the writes are.
    let staging = env.tmp.path().join("staging");
    fs::create_dir_all(&staging).unwrap();
    for i in 0..N {
        fs::write(staging.join(format!("f{i:05}.conf")), "x\n").unwrap();
    }
    for i in 0..N {
        let name = format!("f{i:05}.conf");
        fs::rename(staging.join(&name), env.src.join(&name)).unwrap();
    }
    wait_for(
        "the action ran",
        || fs::read_to_string(&runs).is_ok_and(|r| !r.is_empty()),
        || d.log(),
    );
    assert_eq!(env.installed().len(), N);
    let text = fs::read_to_string(&runs).unwrap();
    assert_eq!(text.lines().count(), 1, "one run: {text}");
    let mut f = text.split_whitespace();
    let (lines, env_len, last) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
    assert_eq!(lines, N.to_string(), "every name in the file: {text}");
    assert!(env_len.parse::<usize>().unwrap() <= 32 * 1024, "{text}");
    assert_eq!(last, "more", "the variable says it was cut: {text}");
    assert!(
        fs::read_dir(env.state.join("changed"))
            .unwrap()
            .next()
            .is_none(),
        "the list file is removed after the action"
    );
}

/// Host lookups are made once per sync, not once per file: 30 rules files
/// naming the same group open /etc/group a few times at most (real
/// inotify on it; other tests running meanwhile may add a few opens).
#[test]
fn a_group_many_files_name_is_looked_up_once_per_sync() {
    use inotify::{Inotify, WatchMask};
    // A system group of Debian's base-passwd (gid 20), present on every
    // Debian machine CI runs on.
    if !fs::read_to_string("/etc/group").is_ok_and(|g| g.contains("\ndialout:")) {
        eprintln!("skipped: no group dialout in /etc/group here");
        return;
    }
    let env = Env::new("    allow_groups: [dialout]\n");
    fs::create_dir_all(&env.src).unwrap();
    for i in 0..30 {
        env.put(
            &format!("{i:02}-ups.rules"),
            &RULE.replace("MODE=\"0660\"", "MODE=\"0660\", GROUP=\"dialout\""),
        );
    }
    let mut ino = Inotify::init().unwrap();
    ino.watches().add("/etc/group", WatchMask::OPEN).unwrap();
    sync_ok(&env, &["sync"]);
    assert_eq!(env.installed().len(), 30);
    let mut buf = [0u8; 4096];
    let opens = match ino.read_events(&mut buf) {
        Ok(events) => events.count(),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => panic!("{e}"),
    };
    assert!(opens <= 5, "/etc/group opened {opens} times for 30 files");
}

/// The daemon's sync of a changed file writes its intent record before
/// the destination changes, as a few lines appended after the manifest
/// (not the whole manifest again), and the manifest once, at the actions'
/// end, which removes the record: one whole write per sync, in this order.
#[test]
fn a_changing_sync_appends_its_intent_and_writes_the_manifest_once() {
    use inotify::{EventMask, Inotify, WatchMask};
    let env =
        Env::new("    settle: { quiet: 100ms, max_wait: 5s }\n    then:\n      - udev-reload\n");
    fs::create_dir_all(&env.src).unwrap();
    env.put("60-ups.rules", RULE);
    let d = env.start();
    let bridges = env.state.join("bridges");
    let settled = |name: &str| {
        fs::read_to_string(bridges.join("test.manifest"))
            .is_ok_and(|m| m.contains("\nactions_pending 0\n") && m.contains(name))
            && !bridges.join("test.intent").exists()
    };
    // The startup sync's own last write comes after its reload.
    wait_for(
        "the startup sync settled",
        || settled("60-ups.rules"),
        || d.log(),
    );
    let mut ino = Inotify::init().unwrap();
    // CREATE too: it parts the renames' events, which the kernel would
    // otherwise merge into one (same mask and name, unread).
    let mask = WatchMask::MOVED_TO | WatchMask::CREATE | WatchMask::DELETE;
    ino.watches().add(&bridges, mask).unwrap();
    ino.watches().add(&env.dest, WatchMask::MOVED_TO).unwrap();
    fs::write(env.src.join("61-ups.rules"), RULE).unwrap();
    wait_for("the reload ran", || env.reloads().len() >= 2, || d.log());
    // The actions' end is the last write: wait until it says none is owed.
    wait_for(
        "the manifest says no action is owed",
        || settled("61-ups.rules"),
        || d.log(),
    );
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    loop {
        let events = match ino.read_events(&mut buf) {
            Ok(events) => events,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        };
        for e in events {
            let name = e.name.map(|n| n.to_string_lossy().into_owned());
            let what = match name.as_deref() {
                Some("test.intent") if e.mask.contains(EventMask::CREATE) => "intent",
                Some("test.intent") if e.mask.contains(EventMask::DELETE) => "intent removed",
                Some("test.manifest") if e.mask.contains(EventMask::MOVED_TO) => "manifest",
                Some("61-ups.rules") => "installed",
                _ => continue,
            };
            seen.push(what);
        }
    }
    assert_eq!(
        seen,
        ["intent", "installed", "manifest", "intent removed"],
        "{}",
        d.log()
    );
}

/// A set held back (a `require`d file missing) changes nothing, but the
/// other names its window saw change are read again by the next sync,
/// whose window may name only the returning file.
#[test]
fn a_held_set_does_not_lose_the_other_changes_of_its_window() {
    let env = Env::new_files("    settle: { quiet: 100ms, max_wait: 5s }\n    require: [a.conf]\n");
    fs::create_dir_all(&env.src).unwrap();
    env.put("a.conf", "a1\n");
    env.put("x.conf", "x1\n");
    let d = env.start();
    assert_eq!(env.dest_content("x.conf").as_deref(), Some("x1\n"));
    fs::remove_file(env.src.join("a.conf")).unwrap();
    fs::write(env.src.join("x.conf"), "x2-new\n").unwrap();
    d.wait_log("holding: waiting for a.conf (require)");
    fs::write(env.src.join("a.conf"), "a1\n").unwrap();
    wait_for(
        "x.conf's change installed with the set",
        || env.dest_content("x.conf").as_deref() == Some("x2-new\n"),
        || d.log(),
    );
}

/// `hostbridge sync` reads the config anew: under checks other than the
/// ones its manifest's verdicts were made under (a tightened
/// `allow_groups`), it reads every file, so a rule the new policy refuses
/// is removed, unchanged stamps or not.
#[test]
fn sync_judges_everything_again_under_a_changed_policy() {
    let grant = RULE.replace("MODE=\"0660\"", "MODE=\"0660\", GROUP=\"dialout\"");
    let env = Env::new("    allow_groups: [dialout]\n");
    fs::create_dir_all(&env.src).unwrap();
    env.put("60-ups.rules", &grant);
    wait_settled(&env.src);
    sync_ok(&env, &["sync"]);
    assert!(env.dest_content("60-ups.rules").is_some());
    env.write_config("    allow_groups: [plugdev]\n");
    let out = env.run(&["sync"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(65), "{text}");
    assert!(text.contains("group-not-allowed"), "{text}");
    assert!(
        env.dest_content("60-ups.rules").is_none(),
        "the rule the new policy refuses is removed: {text}"
    );
}

/// `hostbridge sync` finds "nothing to change" from a stat of each file on
/// each side, without writing the manifest, and without listing the source
/// while the dir's stamp is the one recorded when its names were the
/// manifest's; every kind of difference still takes the full way and is
/// acted on (each case from the same settled, installed state). The check
/// looks at the names in two halves, one a thread: each difference is
/// made at the first name, at one in the middle and at the last, so it
/// falls in either half and at the cut.
#[test]
fn a_sync_with_nothing_to_change_writes_nothing_and_misses_no_difference() {
    type Change = fn(&Env, &str);
    type Case = (&'static str, Change, fn(&str) -> String);
    let cases: [Case; 9] = [
        (
            "installed copy chmod 0600",
            |e, n| {
                fs::set_permissions(
                    e.dest.join(n),
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .unwrap()
            },
            |n| format!("replaced {n}"),
        ),
        (
            "installed copy removed",
            |e, n| fs::remove_file(e.dest.join(n)).unwrap(),
            |n| format!("installed {n}"),
        ),
        (
            "a new source file",
            |e, n| e.put(&new_name(n), RULE),
            |n| format!("installed {}", new_name(n)),
        ),
        (
            "a source file removed",
            |e, n| fs::remove_file(e.src.join(n)).unwrap(),
            |n| format!("pruned {n}"),
        ),
        (
            "a source file renamed",
            |e, n| fs::rename(e.src.join(n), e.src.join(new_name(n))).unwrap(),
            |n| format!("installed {}", new_name(n)),
        ),
        (
            "a source file replaced by a rename",
            |e, n| {
                fs::write(e.tmp.path().join("next"), OTHER).unwrap();
                fs::rename(e.tmp.path().join("next"), e.src.join(n)).unwrap();
            },
            |n| format!("replaced {n}"),
        ),
        (
            "a hard link to a source file",
            |e, n| fs::hard_link(e.src.join(n), e.tmp.path().join("elsewhere")).unwrap(),
            |_| "hard links".into(),
        ),
        (
            "a name the bridge refuses",
            |e, n| e.put(&new_name(n).replace('-', " "), RULE),
            |n| new_name(n).replace('-', " "),
        ),
        (
            "the manifest's record of a file dropped",
            |e, n| {
                let path = e.state.join("bridges/test.manifest");
                let text = fs::read_to_string(&path).unwrap();
                let kept: String = text
                    .lines()
                    .filter(|l| !l.ends_with(&format!(" {n}")))
                    .map(|l| format!("{l}\n"))
                    .collect();
                fs::write(&path, kept).unwrap();
            },
            |n| n.to_string(),
        ),
    ];
    const FILES: usize = 9;
    for (what, change, want) in cases {
        for at in [0, FILES / 2, FILES - 1] {
            let name = format!("6{at}-ups.rules");
            let env = Env::new("");
            fs::create_dir_all(&env.src).unwrap();
            for i in 0..FILES {
                env.put(&format!("6{i}-ups.rules"), RULE);
            }
            wait_settled(&env.src);
            sync_ok(&env, &["sync"]);
            sync_ok(&env, &["sync"]);
            let manifest = env.state.join("bridges/test.manifest");
            let stamp = |p: &Path| {
                let m = fs::metadata(p).unwrap();
                use std::os::unix::fs::MetadataExt;
                (m.ino(), m.ctime(), m.ctime_nsec())
            };
            let before = stamp(&manifest);
            assert!(
                env.state.join("bridges/test.listing").exists(),
                "{what}: the listing is recorded"
            );
            let (listed, reads) = listings_and_reads_during(&env, || {
                let out = env.run(&["sync"]);
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(
                    text.contains(&format!("nothing to change; {FILES} unchanged")),
                    "{what}: {text}"
                );
            });
            assert!(reads.is_empty(), "{what}: nothing read: {reads:?}");
            assert_eq!(listed, 0, "{what}: the source is not listed");
            assert_eq!(
                stamp(&manifest),
                before,
                "{what}: the manifest is not written"
            );

            change(&env, &name);
            let out = env.run(&["sync"]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains(&want(&name)), "{what} at {name}: {text}");
        }
    }
}

/// A name next to `name` in name order (`60-ups.rules` -> `60-ups-new.rules`).
fn new_name(name: &str) -> String {
    name.replace(".rules", "-new.rules")
}

/// After a sync that left the source as its manifest records it, the
/// daemon's next looks at the names its watch saw change and at nothing
/// else: it does not list the source, and opens only the files written.
/// What it leaves is what a full sync finds nothing to change in. A file
/// the source holds but may not install makes the syncs after it look at
/// every name again, so the refusal stays in what each one reports; once
/// it is gone, they look at the changes alone again.
#[test]
fn a_daemon_sync_after_a_complete_one_looks_only_at_what_changed() {
    let env = Env::new("    settle: { quiet: 100ms, max_wait: 5s }\n");
    fs::create_dir_all(&env.src).unwrap();
    for i in 0..30 {
        env.put(&format!("{i:02}-ups.rules"), RULE);
    }
    let d = env.start();
    assert_eq!(env.installed().len(), 30);
    let (listings, opens) = listings_and_reads_during(&env, || {
        fs::write(env.src.join("07-ups.rules"), OTHER).unwrap();
        fs::write(env.src.join("40-ups.rules"), RULE).unwrap();
        fs::remove_file(env.src.join("03-ups.rules")).unwrap();
        wait_for(
            "the three changes in place",
            || {
                env.dest_content("07-ups.rules")
                    .is_some_and(|c| c.contains("051e"))
                    && env.dest_content("40-ups.rules").is_some()
                    && env.dest_content("03-ups.rules").is_none()
            },
            || d.log(),
        );
    });
    assert_eq!(listings, 0, "the source is not listed\n{}", d.log());
    assert_eq!(
        opens.keys().collect::<Vec<_>>(),
        ["07-ups.rules", "40-ups.rules"],
        "only the written files are opened: {opens:?}"
    );
    // Our own write opens each once, the daemon's read once.
    assert!(opens.values().all(|n| *n <= 2), "{opens:?}");
    let out = env.run(&["sync", "--full", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("nothing to change"), "{text}");
    assert!(text.contains("30 unchanged"), "{text}");

    // A refused file: each sync looks at everything and reports it again.
    env.put("50-evil.rules", "RUN+=\"/bin/true\"\n");
    d.wait_log("skipped 50-evil.rules");
    let (listings, _) = listings_and_reads_during(&env, || {
        fs::write(env.src.join("08-ups.rules"), OTHER).unwrap();
        d.wait_log_count("skipped 50-evil.rules", 2);
        wait_for(
            "08 replaced",
            || {
                env.dest_content("08-ups.rules")
                    .is_some_and(|c| c.contains("051e"))
            },
            || d.log(),
        );
    });
    assert!(listings > 0, "the source is listed while a file is refused");
    assert!(!env.installed().contains(&"50-evil.rules".to_string()));

    // Gone: the next sync is a complete one, and the one after it looks
    // at its change alone.
    fs::remove_file(env.src.join("50-evil.rules")).unwrap();
    fs::write(env.src.join("09-ups.rules"), OTHER).unwrap();
    wait_for(
        "09 replaced",
        || {
            env.dest_content("09-ups.rules")
                .is_some_and(|c| c.contains("051e"))
        },
        || d.log(),
    );
    let (listings, opens) = listings_and_reads_during(&env, || {
        fs::write(env.src.join("10-ups.rules"), OTHER).unwrap();
        wait_for(
            "10 replaced",
            || {
                env.dest_content("10-ups.rules")
                    .is_some_and(|c| c.contains("051e"))
            },
            || d.log(),
        );
    });
    assert_eq!(listings, 0, "{}", d.log());
    assert_eq!(opens.keys().collect::<Vec<_>>(), ["10-ups.rules"]);
    let out = env.run(&["sync", "--full", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("nothing to change"), "{text}");
}

/// A daemon killed after its sync of a changed file put it in place,
/// while the actions run (the manifest not written again yet), leaves the
/// intent record appended after the manifest: the next start reads it, so
/// the file is hostbridge's own (not a stranger's to leave alone), the
/// actions are still owed and run, and the manifest written then holds it
/// all and the record is gone.
#[test]
fn a_crash_after_an_appended_intent_leaves_the_file_owned_and_the_actions_owed() {
    let env =
        Env::new("    settle: { quiet: 100ms, max_wait: 5s }\n    then:\n      - udev-reload\n")
            .with_gate();
    fs::create_dir_all(&env.src).unwrap();
    let bridges = env.state.join("bridges");
    // Nothing to install: no reload, the gate waits for the next one.
    let mut d = env.start();
    fs::write(env.src.join("61-ups.rules"), RULE).unwrap();
    wait_for(
        "the reload held at the gate",
        || env.udevadm_calls().iter().any(|c| c.contains("gate-wait")),
        || d.log(),
    );
    assert!(env.dest_content("61-ups.rules").is_some());
    assert!(
        bridges.join("test.intent").exists(),
        "{:?} {:?} {}",
        common::list(&bridges),
        env.udevadm_calls(),
        d.log()
    );
    let manifest = fs::read_to_string(bridges.join("test.manifest")).unwrap();
    assert!(!manifest.contains("61-ups.rules"), "{manifest}");
    d.kill9();
    env.open_gate(); // the stand-in the daemon left behind ends
    let d = env.start();
    let log = d.log();
    assert!(!log.contains("not installed by hostbridge"), "{log}");
    wait_for(
        "the owed reload ran and the manifest says so",
        || {
            fs::read_to_string(bridges.join("test.manifest"))
                .is_ok_and(|m| m.contains("\nactions_pending 0\n") && m.contains(" 61-ups.rules\n"))
                && !bridges.join("test.intent").exists()
        },
        || d.log(),
    );
    assert!(d.log().contains("udev-reload ok"), "{}", d.log());
}

/// The daemon's sync of changed names keeps the source listing the
/// startup sync recorded while it changes contents only, and drops it when
/// it installs or removes a name: a listing always stands for the names of
/// the manifest it is saved with.
#[test]
fn the_recorded_listing_is_kept_for_a_content_change_and_dropped_for_a_new_name() {
    let env = Env::new("    settle: { quiet: 100ms, max_wait: 5s }\n");
    fs::create_dir_all(&env.src).unwrap();
    for i in 0..3 {
        env.put(&format!("0{i}-ups.rules"), RULE);
    }
    wait_settled(&env.src);
    let d = env.start();
    assert_eq!(env.installed().len(), 3);
    // The listing line of the file beside the manifest (its first line
    // names the manifest file, which every save makes anew).
    let listing = || {
        fs::read_to_string(env.state.join("bridges/test.listing"))
            .ok()
            .and_then(|text| text.lines().nth(1).map(str::to_string))
    };
    let first = listing();
    assert!(first.is_some(), "the startup sync lists a settled dir");

    fs::write(env.src.join("01-ups.rules"), OTHER).unwrap();
    d.wait_log("replaced 01-ups.rules");
    assert_eq!(listing(), first, "kept for a content change\n{}", d.log());

    env.put("05-new.rules", RULE);
    d.wait_log("installed 05-new.rules");
    assert_eq!(listing(), None, "dropped for a new name\n{}", d.log());
    let out = env.run(&["sync"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("4 unchanged"), "{text}");
}

/// The daemon's sync of a changed name takes the bridge's bounds as the
/// full way does: the files not changed keep the places and bytes the last
/// sync recorded for them, so a new file past `max_bytes` or `max_files`
/// is refused (and what is installed stays), and one that fits is
/// installed.
#[test]
fn a_sync_of_changed_names_keeps_the_bounds_of_the_whole_source() {
    let env = Env::new_files(
        "    settle: { quiet: 100ms, max_wait: 5s }\n    max_files: 3\n    max_bytes: 100\n",
    );
    fs::create_dir_all(&env.src).unwrap();
    for n in ["a", "b"] {
        env.put(&format!("{n}.conf"), "012345678\n");
    }
    let d = env.start();
    assert_eq!(env.installed().len(), 2);

    // 20 bytes taken: 85 more pass max_bytes.
    env.put("c.conf", &"x".repeat(85));
    d.wait_log("max_bytes limit of 100");
    assert_eq!(env.installed(), ["a.conf", "b.conf"]);
    fs::remove_file(env.src.join("c.conf")).unwrap();
    // 70 more fit.
    env.put("e.conf", &"y".repeat(70));
    wait_for(
        "e.conf installed",
        || env.dest_content("e.conf").is_some(),
        || d.log(),
    );
    // Three files (90 bytes): a fourth passes max_files.
    env.put("f.conf", "z\n");
    d.wait_log("max_files limit of 3");
    assert_eq!(env.installed(), ["a.conf", "b.conf", "e.conf"]);
}
