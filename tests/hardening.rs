//! The daemon hardening attacks (docs/security.md, "What a container can
//! still try"), each run for real against the real binary: a symlink swapped
//! in for an ancestor of the source, pid files that would have hostbridge
//! signal a stranger or itself, file names that would forge log lines,
//! hard links to root-only files, a regular file and a FIFO exchanged with
//! `renameat2(RENAME_EXCHANGE)` in a loop, a flood of held status
//! connections under a lowered `RLIMIT_NOFILE`, an export of more files
//! than the bridge allows, and the modes of the state files.
//!
//! The "container" is an unprivileged user (nobody, through `setpriv`)
//! where the attack needs one; those tests need root to set that up and say
//! so when skipped (under `CI=true` they must run).

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Env, wait_for};

/// The unprivileged "container" user.
const NOBODY: u32 = 65534;

/// Whether this test can act as root; otherwise says why it is skipped
/// (and fails under CI, where it must run).
fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs root and CI=true is set: it must run here"
    );
    eprintln!("skipping {test}: needs root (chown to another user, setpriv)");
    false
}

/// Runs `script` with sh as the unprivileged user, as the container would.
fn as_container(script: &str) {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-ec",
            script,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "container script failed: {script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
}

/// An env whose bridge is of kind files (include "*", mode 0644).
fn files_env(extra: &str) -> Env {
    Env::new_files(extra)
}

fn rewrite_as_files(env: &Env, extra: &str) {
    env.write_files_config(extra);
}

/// A root-only dir holding a root-only secret file.
fn secret_dir(root: &Path) -> PathBuf {
    let secret = root.join("root-only");
    fs::create_dir(&secret).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o700)).unwrap();
    let f = secret.join("shadow.conf");
    fs::write(&f, "root:$6$secrethash:19000:0:99999:7:::\n").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    secret
}

/// Gives `dir` a POSIX access ACL granting nobody rwx (the xattr written
/// directly, in the kernel's format: no setfacl needed).
fn set_acl_granting_nobody(dir: &Path) {
    const UNDEFINED: u32 = u32::MAX;
    let mut acl = 2u32.to_le_bytes().to_vec(); // version
    for (tag, perm, id) in [
        (0x01u16, 7u16, UNDEFINED), // user::rwx
        (0x02, 7, NOBODY),          // user:nobody:rwx
        (0x04, 5, UNDEFINED),       // group::r-x
        (0x10, 7, UNDEFINED),       // mask::rwx
        (0x20, 5, UNDEFINED),       // other::r-x
    ] {
        acl.extend(tag.to_le_bytes());
        acl.extend(perm.to_le_bytes());
        acl.extend(id.to_le_bytes());
    }
    rustix::fs::setxattr(
        dir,
        "system.posix_acl_access",
        &acl,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
}

fn status_json(env: &Env) -> String {
    String::from_utf8(env.run(&["status", "--json"]).stdout).unwrap()
}

#[test]
fn a_symlink_swapped_in_for_an_ancestor_of_the_source_is_never_followed() {
    if !root_or_skip("a_symlink_swapped_in_for_an_ancestor_of_the_source_is_never_followed") {
        return;
    }
    let mut env = Env::new("");
    let root = env.tmp.path().to_path_buf();
    let secret = secret_dir(&root);
    // /…/cexp belongs to the container; the source is two levels below it.
    let cexp = root.join("cexp");
    fs::create_dir_all(cexp.join("out/files")).unwrap();
    for p in [&cexp, &cexp.join("out"), &cexp.join("out/files")] {
        chown(p, NOBODY);
    }
    env.src = cexp.join("out/files");
    rewrite_as_files(&env, "    settle: { quiet: 50ms, max_wait: 2s }\n");
    // check names the ancestor a container can rename.
    let check = env.run(&["check"]);
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        err.contains("warning") && err.contains(&cexp.display().to_string()),
        "check did not warn about {}: {err}",
        cexp.display()
    );
    let mut d = env.start();
    as_container(&format!(
        "cd {}; echo first > out/files/a.conf",
        cexp.display()
    ));
    wait_for(
        "a.conf installed",
        || env.dest_content("a.conf").is_some(),
        || d.log(),
    );
    // The attack: rename the source's parent away, leave a symlink to a
    // root-only dir of the same layout in its place, and write into the old
    // (still watched) dir.
    let target = root.join("root-only-tree");
    fs::create_dir_all(target.join("files")).unwrap();
    fs::copy(secret.join("shadow.conf"), target.join("files/shadow.conf")).unwrap();
    fs::set_permissions(
        target.join("files/shadow.conf"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o700)).unwrap();
    as_container(&format!(
        "cd {c}; mv out out.old; ln -s {t} out; echo more > out.old/files/b.conf",
        c = cexp.display(),
        t = target.display()
    ));
    wait_for(
        "the symlink refused (or followed)",
        || d.log().contains("is a symlink") || env.dest_content("shadow.conf").is_some(),
        || d.log(),
    );
    for leaked in ["shadow.conf", "b.conf"] {
        assert!(
            env.dest_content(leaked).is_none(),
            "{leaked} was installed through the symlink\n{}",
            d.log()
        );
    }
    assert_eq!(env.dest_content("a.conf").as_deref(), Some("first\n"));
    // The container puts a real dir back: hostbridge watches the new one.
    as_container(&format!(
        "cd {}; rm out; mkdir -p out/files; echo back > out/files/c.conf",
        cexp.display()
    ));
    wait_for(
        "c.conf from the new dir installed",
        || env.dest_content("c.conf").as_deref() == Some("back\n"),
        || d.log(),
    );
    // And it keeps watching that one.
    as_container(&format!("echo later > {}/out/files/d.conf", cexp.display()));
    wait_for(
        "d.conf installed",
        || env.dest_content("d.conf").is_some(),
        || d.log(),
    );
    assert!(d.stop().success());
}

/// A copy of /bin/sh named `name`, recording SIGHUP and SIGTERM in `log`.
struct Victim {
    child: Child,
    log: PathBuf,
}

impl Victim {
    fn start(dir: &Path, name: &str) -> Victim {
        let exe = dir.join(name);
        fs::copy("/bin/sh", &exe).unwrap();
        common::make_executable(&exe);
        let log = dir.join(format!("{name}.signals"));
        let ready = dir.join(format!("{name}.ready"));
        let script = format!(
            "trap 'echo hup >> {l}' HUP; trap 'echo term >> {l}' TERM; : > {r}; while :; do sleep 30 & wait $!; done",
            l = log.display(),
            r = ready.display()
        );
        let child = Command::new(&exe).args(["-c", &script]).spawn().unwrap();
        wait_for("victim ready", || ready.exists(), String::new);
        Victim { child, log }
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn signals(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pid_files_a_container_could_write_are_refused_and_hostbridge_never_signals_itself() {
    // Config: a pid file alone, or one inside a source, is a config error.
    let env = files_env("");
    let pidfile_in_source = env.src.join("victim.pid");
    for (then, want) in [
        (
            "      - signal: { pidfile: /run/x.pid, signal: TERM }\n".to_string(),
            "needs process: too",
        ),
        (
            format!(
                "      - signal: {{ pidfile: {}, process: sshd, signal: TERM }}\n",
                pidfile_in_source.display()
            ),
            "inside bridge \"test\"'s source",
        ),
        (
            format!(
                "      - signal: {{ pidfile: {}, process: sshd, signal: TERM }}\n",
                env.dest.join("victim.pid").display()
            ),
            "inside bridge \"test\"'s install_to",
        ),
    ] {
        rewrite_as_files(&env, &format!("    then:\n{then}"));
        let out = env.run(&["check"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{then}: {err}");
        assert!(err.contains(want), "{then}: {err}");
    }
    if !root_or_skip(
        "pid_files_a_container_could_write_are_refused_and_hostbridge_never_signals_itself",
    ) {
        return;
    }
    // A real victim, and a pid file naming it in a dir the container owns.
    let root = env.tmp.path();
    let victim = Victim::start(root, "hb-victim");
    let open_dir = root.join("container-run");
    fs::create_dir(&open_dir).unwrap();
    chown(&open_dir, NOBODY);
    let forged = open_dir.join("victim.pid");
    as_container(&format!("echo {} > {}", victim.pid(), forged.display()));
    // And a pid file in a root-only dir that names hostbridge itself.
    let own = root.join("own.pid");
    rewrite_as_files(
        &env,
        &format!(
            "    settle: {{ quiet: 50ms, max_wait: 2s }}\n    then:\n      - signal: {{ pidfile: {}, process: hb-victim, signal: TERM }}\n",
            forged.display()
        ),
    );
    let out = env.run(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("in reach of another user"), "{err}");
    // The daemon refuses it at run time too (check is not always run).
    let mut d = env.start();
    env.put("a.conf", "x\n");
    wait_for(
        "the signal refused",
        || d.log().contains("in reach of another user"),
        || d.log(),
    );
    assert_eq!(victim.signals(), "", "the victim was signalled");
    assert!(d.stop().success());

    // A pid file another user owns, in a root-only dir: refused at run time.
    let root_dir = root.join("root-run");
    fs::create_dir(&root_dir).unwrap();
    let theirs = root_dir.join("victim.pid");
    fs::write(&theirs, format!("{}\n", victim.pid())).unwrap();
    chown(&theirs, NOBODY);
    rewrite_as_files(
        &env,
        &format!(
            "    settle: {{ quiet: 50ms, max_wait: 2s }}\n    then:\n      - signal: {{ pidfile: {}, process: hb-victim, signal: TERM }}\n",
            theirs.display()
        ),
    );
    let mut d = env.start();
    env.put("c.conf", "z\n");
    wait_for(
        "a pid file of another owner refused",
        || d.log().contains("is owned by uid 65534"),
        || d.log(),
    );
    assert_eq!(victim.signals(), "", "the victim was signalled");
    assert!(d.stop().success());

    // A root-owned 0755 dir whose access ACL lets nobody write: check says so.
    let acl_dir = root.join("acl-run");
    fs::create_dir(&acl_dir).unwrap();
    fs::set_permissions(&acl_dir, fs::Permissions::from_mode(0o755)).unwrap();
    set_acl_granting_nobody(&acl_dir);
    rewrite_as_files(
        &env,
        &format!(
            "    then:\n      - signal: {{ pidfile: {}, process: hb-victim, signal: TERM }}\n",
            acl_dir.join("victim.pid").display()
        ),
    );
    let out = env.run(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("access ACL"), "{err}");

    rewrite_as_files(
        &env,
        &format!(
            "    settle: {{ quiet: 50ms, max_wait: 2s }}\n    then:\n      - signal: {{ pidfile: {}, process: hostbridge, signal: TERM }}\n",
            own.display()
        ),
    );
    let mut d = env.spawn_daemon(&[]);
    d.wait_log("ready:");
    fs::write(&own, format!("{}\n", d.pid())).unwrap();
    env.put("b.conf", "y\n");
    wait_for(
        "signalling itself refused",
        || d.log().contains("is hostbridge itself"),
        || d.log(),
    );
    // Still alive and answering.
    assert!(env.run(&["status"]).status.code().is_some_and(|c| c != 3));
    assert!(d.stop().success());
}

#[test]
fn names_and_text_from_the_container_cannot_forge_log_lines_or_drive_the_terminal() {
    let env = files_env("    settle: { quiet: 50ms, max_wait: 2s }\n");
    let mut d = env.start();
    fs::create_dir_all(&env.src).unwrap();
    let forged = "x\n2026-12-02T00:00:00Z  INFO test: installed fake\x1b[2J\u{202e}";
    fs::write(env.src.join(forged), "boo\n").unwrap();
    wait_for(
        "the bad name reported",
        || d.log().contains("installed fake"),
        || d.log(),
    );
    let log = d.log();
    for line in log.lines() {
        assert!(
            !line.starts_with("2026-12-02T00:00:00Z"),
            "a forged line reached the log:\n{log}"
        );
    }
    assert!(
        !log.contains('\x1b') && !log.contains('\u{202e}'),
        "{log:?}"
    );
    assert!(
        log.contains("x\\n2026-12-02") && log.contains("\\x1b[2J"),
        "{log}"
    );
    // The human status: the same name, escaped, on one line.
    let text = String::from_utf8(env.run(&["status"]).stdout).unwrap();
    assert!(
        !text.contains('\x1b') && !text.contains('\u{202e}'),
        "{text:?}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("2026-12-02")),
        "status shows a forged line:\n{text}"
    );
    // `hostbridge sync` prints it escaped too.
    let out = env.run(&["sync", "--dry-run"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        !shown.contains('\x1b') && !shown.lines().any(|l| l.starts_with("2026-12-02")),
        "{shown}"
    );
    assert!(d.stop().success());
}

#[test]
fn hard_links_and_files_of_other_owners_are_refused_and_never_quoted() {
    if !root_or_skip("hard_links_and_files_of_other_owners_are_refused_and_never_quoted") {
        return;
    }
    // A rules bridge: a finding would quote the line of a hard-linked
    // /etc/shadow if the file were read.
    let env = Env::new("    settle: { quiet: 50ms, max_wait: 2s }\n");
    let secret = secret_dir(env.tmp.path());
    let mut d = env.start();
    fs::create_dir_all(&env.src).unwrap();
    fs::hard_link(secret.join("shadow.conf"), env.src.join("10-shadow.rules")).unwrap();
    wait_for(
        "the hard link refused",
        || d.log().contains("hard links"),
        || d.log(),
    );
    assert!(env.dest_content("10-shadow.rules").is_none());
    assert!(!d.log().contains("secrethash"), "{}", d.log());
    assert!(!status_json(&env).contains("secrethash"));
    assert!(d.stop().success());

    // A files bridge with source_owner: a file the container's uid does not
    // own (here: root's) is refused, the container's own is installed.
    let env = files_env(&format!(
        "    settle: {{ quiet: 50ms, max_wait: 2s }}\n    source_owner: [{NOBODY}]\n"
    ));
    fs::create_dir_all(&env.src).unwrap();
    chown(&env.src, NOBODY);
    let mut d = env.start();
    fs::write(env.src.join("root.conf"), "root's\n").unwrap();
    as_container(&format!("echo mine > {}/mine.conf", env.src.display()));
    wait_for(
        "mine.conf installed",
        || env.dest_content("mine.conf").is_some(),
        || d.log(),
    );
    wait_for(
        "root.conf refused",
        || d.log().contains("owned by uid 0"),
        || d.log(),
    );
    assert!(env.dest_content("root.conf").is_none());
    assert!(d.stop().success());
}

#[test]
fn a_file_exchanged_with_a_fifo_in_a_loop_is_never_opened_as_the_fifo() {
    let env = files_env("    settle: { quiet: 1ms, max_wait: 20ms }\n");
    fs::create_dir_all(&env.src).unwrap();
    fs::write(env.src.join("a.conf"), "regular\n").unwrap();
    let fifo = env.src.join(".swap");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // A writer blocks in open() until someone opens the FIFO for reading:
    // the daemon, if it ever opens the name while the FIFO is under it.
    let done = Arc::new(AtomicBool::new(false));
    let opened_by_daemon = Arc::new(AtomicBool::new(false));
    let writer = {
        let (fifo, done, flag) = (fifo.clone(), done.clone(), opened_by_daemon.clone());
        std::thread::spawn(move || {
            let f = fs::OpenOptions::new().write(true).open(&fifo);
            if !done.load(Ordering::SeqCst) {
                flag.store(true, Ordering::SeqCst);
            }
            drop(f);
        })
    };
    let mut d = env.start();
    let dir = nix::fcntl::open(
        &env.src,
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let syncs_before = d.log().matches("test:").count();
    let start = Instant::now();
    let mut swaps = 0u32;
    // Bounded in time and count; each exchange is a rename event, so the
    // daemon keeps re-reading the name.
    while start.elapsed() < Duration::from_secs(4) && swaps < 200_000 {
        nix::fcntl::renameat2(
            &dir,
            "a.conf",
            &dir,
            ".swap",
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        )
        .unwrap();
        swaps += 1;
        if opened_by_daemon.load(Ordering::SeqCst) {
            break;
        }
    }
    if swaps % 2 == 1 {
        nix::fcntl::renameat2(
            &dir,
            "a.conf",
            &dir,
            ".swap",
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        )
        .unwrap();
    }
    wait_for(
        "the daemon read the name during the swaps",
        || d.log().matches("test:").count() > syncs_before + 3,
        || d.log(),
    );
    done.store(true, Ordering::SeqCst);
    // Release the writer ourselves.
    let mut r = fs::OpenOptions::new()
        .read(true)
        .custom_flags_nonblock()
        .open(&fifo)
        .unwrap();
    let _ = r.read(&mut [0u8; 8]);
    writer.join().unwrap();
    assert!(
        !opened_by_daemon.load(Ordering::SeqCst),
        "the daemon opened the FIFO swapped in under a.conf ({swaps} swaps)\n{}",
        d.log()
    );
    // The file that ends up under the name is the regular one, installed.
    wait_for(
        "a.conf installed",
        || env.dest_content("a.conf").as_deref() == Some("regular\n"),
        || d.log(),
    );
    assert!(d.stop().success());
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(nix::libc::O_NONBLOCK)
    }
}

/// CPU time (user + system) of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat(5): utime, stime (index 11, 12 after comm).
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn held_status_connections_under_a_low_fd_limit_neither_spin_nor_starve_syncs() {
    let env = files_env("    settle: { quiet: 50ms, max_wait: 2s }\n");
    fs::create_dir_all(&env.src).unwrap(); // healthy: the source is there
    let mut d = env.spawn_daemon_via(&["prlimit", "--nofile=96:96", "--"], &[]);
    d.wait_log("ready:");
    let sock = env.state.join("status.sock");
    // 300 clients connect and hold (send nothing): far more than the fds.
    let mut held = Vec::new();
    for _ in 0..300 {
        match std::os::unix::net::UnixStream::connect(&sock) {
            Ok(s) => held.push(s),
            Err(_) => break, // the backlog is full: that is the bound working
        }
    }
    assert!(held.len() >= 64, "only {} connections", held.len());
    // The accept loop must not spin: measure the daemon's CPU for 2 s of
    // wall time (a measurement window, not synchronisation).
    let pid = d.pid().as_raw() as u32;
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    std::thread::sleep(Duration::from_secs(2));
    let (wall, cpu) = (t0.elapsed(), cpu_ticks(pid) - c0);
    let ticks_per_s = 100; // USER_HZ
    assert!(
        cpu * 1000 / ticks_per_s < wall.as_millis() as u64 / 4,
        "the daemon used {cpu} ticks of CPU in {wall:?} while clients held the socket"
    );
    // Root is answered during the flood (unprivileged clients past the cap
    // are closed at once, so the backlog never fills).
    if nix::unistd::geteuid().is_root() {
        let out = env.run(&["status"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "status during the flood: {out:?}"
        );
    }
    // Syncs still work during the flood.
    env.put("during-flood.conf", "ok\n");
    wait_for(
        "a file installed during the flood",
        || env.dest_content("during-flood.conf").is_some(),
        || d.log(),
    );
    drop(held);
    wait_for(
        "status answers again",
        || env.run(&["status"]).status.code() == Some(0),
        || d.log(),
    );
    assert!(d.stop().success());
}

#[test]
fn a_failed_sync_is_tried_again_without_a_new_event() {
    let env = files_env("    settle: { quiet: 50ms, max_wait: 2s }\n");
    // install_to is a file: every sync fails until it is removed.
    fs::write(&env.dest, "not a dir\n").unwrap();
    env.put("a.conf", "x\n");
    let mut d = env.start();
    wait_for(
        "a retry scheduled",
        || d.log().contains("trying again in"),
        || d.log(),
    );
    fs::remove_file(&env.dest).unwrap();
    // No event in the source: only the retry can install it.
    wait_for(
        "a.conf installed by a retry",
        || env.dest_content("a.conf").is_some(),
        || d.log(),
    );
    assert!(d.stop().success());
}

#[test]
fn an_export_over_max_files_or_max_bytes_keeps_what_is_installed() {
    let env = files_env(
        "    settle: { quiet: 50ms, max_wait: 2s }\n    max_files: 3\n    max_bytes: 100\n",
    );
    for n in ["b", "c", "d"] {
        env.put(&format!("{n}.conf"), "0123456789\n");
    }
    let mut d = env.start();
    wait_for("3 installed", || env.installed().len() == 3, || d.log());
    // A flood of new names, some sorting before the installed ones.
    for i in 0..50 {
        env.put(&format!("a{i:02}.conf"), "new\n");
    }
    // One line for the whole flood, not one per file.
    wait_for(
        "the flood refused",
        || {
            d.log()
                .contains("a19.conf and 30 more: over the bridge's max_files limit of 3")
        },
        || d.log(),
    );
    assert_eq!(env.installed(), ["b.conf", "c.conf", "d.conf"]);
    let out = env.run(&["status"]);
    assert_eq!(out.status.code(), Some(1), "status is not degraded");
    // Room again: one file over max_bytes is refused, a small one fits.
    for i in 0..50 {
        fs::remove_file(env.src.join(format!("a{i:02}.conf"))).unwrap();
    }
    fs::remove_file(env.src.join("d.conf")).unwrap();
    env.put("big.conf", &"x".repeat(90));
    wait_for(
        "big.conf refused",
        || d.log().contains("max_bytes limit of 100"),
        || d.log(),
    );
    assert!(env.dest_content("big.conf").is_none());
    assert_eq!(env.installed(), ["b.conf", "c.conf"]);
    assert!(d.stop().success());
}

#[test]
fn state_files_are_for_root_only() {
    let env = files_env("");
    env.put("a.conf", "x\n");
    let mut d = env.start();
    wait_for(
        "installed",
        || env.dest_content("a.conf").is_some(),
        || d.log(),
    );
    let manifest = env.state.join("bridges/test.manifest");
    for p in [manifest, env.state.join("lock")] {
        let mode = fs::metadata(&p).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", p.display());
    }
    assert!(d.stop().success());
}

#[test]
fn a_source_past_the_listing_cap_changes_nothing_until_it_shrinks() {
    let env = files_env("    settle: { quiet: 50ms, max_wait: 2s }\n    max_files: 3\n");
    env.put("a.conf", "a\n");
    let mut d = env.start();
    wait_for(
        "a.conf installed",
        || env.dest_content("a.conf").is_some(),
        || d.log(),
    );
    // 1000 is the least a scan lists (4 x max_files, at least 1000).
    for i in 0..1001 {
        fs::write(env.src.join(format!("flood-{i:04}.conf")), "").unwrap();
    }
    fs::remove_file(env.src.join("a.conf")).unwrap();
    wait_for(
        "the flood noticed",
        || d.log().contains("holds more than 1000 entries"),
        || d.log(),
    );
    // Nothing read, nothing pruned: a.conf stays although its source went.
    assert_eq!(env.installed(), ["a.conf"]);
    assert_eq!(env.run(&["status"]).status.code(), Some(1), "not degraded");
    for i in 0..1001 {
        fs::remove_file(env.src.join(format!("flood-{i:04}.conf"))).unwrap();
    }
    env.put("b.conf", "b\n");
    wait_for(
        "back to normal: b installed, a pruned",
        || env.installed() == ["b.conf"],
        || d.log(),
    );
    assert!(d.stop().success());
}

#[test]
fn check_refuses_a_source_path_through_a_symlink_and_warns_about_hard_links() {
    let mut env = files_env("");
    let root = env.tmp.path().to_path_buf();
    fs::create_dir_all(root.join("real/export")).unwrap();
    std::os::unix::fs::symlink(root.join("real"), root.join("via")).unwrap();
    env.src = root.join("via/export");
    rewrite_as_files(&env, "");
    let out = env.run(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("via is a symlink")
            && err.contains(&format!("write {}", root.join("real/export").display())),
        "{err}"
    );
    env.src = root.join("real/export");
    rewrite_as_files(&env, "");
    let out = env.run(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    // Where the temp dir shares a file system with /etc (or / …), check
    // says hard links could bring host files in.
    let dev = |p: &Path| fs::metadata(p).unwrap().dev();
    if ["/etc", "/root", "/var", "/"]
        .iter()
        .any(|d| dev(Path::new(d)) == dev(&root))
    {
        assert!(err.contains("on the same file system as"), "{err}");
    }
}

#[test]
fn a_tightened_policy_removes_an_installed_rule_that_breaks_it() {
    // Installed while the bridge allowed links under /dev/ups/ …
    let rule = "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", SYMLINK+=\"ups/apc\"\n";
    let env =
        Env::new("    settle: { quiet: 50ms, max_wait: 2s }\n    allow_symlinks: [\"ups/\"]\n");
    env.put("62-ups.rules", rule);
    let mut d = env.start();
    wait_for(
        "installed",
        || env.dest_content("62-ups.rules").is_some(),
        || d.log(),
    );
    // … then the operator takes that away. The container's file is now
    // refused; the copy installed under the old policy must not stay.
    env.write_config("    settle: { quiet: 50ms, max_wait: 2s }\n");
    assert!(env.run(&["reload"]).status.success());
    wait_for(
        "the installed copy removed",
        || env.dest_content("62-ups.rules").is_none(),
        || d.log(),
    );
    // The sync's report is logged after its files are in place.
    d.wait_log("removing the installed 62-ups.rules: it breaks the bridge's current policy");
    assert!(d.stop().success());
}
