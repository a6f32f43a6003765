//! `hostbridge status`, the status socket, sd_notify, reload and shutdown,
//! against the real daemon: a real Unix socket, a real NOTIFY_SOCKET datagram
//! socket owned by the test, and real signals.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::{Env, wait_for};
use nix::sys::signal::{Signal, kill};

const BAD_RULE: &str = "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", RUN+=\"/tmp/x\"\n";

fn status(env: &Env, args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn status_exit_codes_healthy_degraded_not_running() {
    let env = Env::new("    then:\n      - udev-reload\n");
    assert_eq!(status(&env, &[]).0, Some(3), "no daemon: not running");

    env.put("a.rules", "# a\n");
    let mut d = env.start();
    let (code, text) = status(&env, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("): healthy, up "), "{text}");
    assert!(
        text.contains("✔ test             synced 0 s ago: installed 1 file; udev-reload ok")
            || text.contains("✔ test             synced 1 s ago"),
        "{text}"
    );

    env.put("b.rules", BAD_RULE);
    d.wait_log("error[run]");
    let (code, text) = status(&env, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("✖ test"), "{text}");
    assert!(
        text.contains("b.rules:1:43: error[run]: RUN+= would execute '/tmp/x'"),
        "{text}"
    );

    // A typo is a usage error that names the bridges there are.
    let (code, text) = status(&env, &["--bridge", "nope"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("no bridge named \"nope\"; the daemon runs test"),
        "{text}"
    );

    assert!(d.stop().success());
    assert!(
        !env.state.join("status.sock").exists(),
        "socket removed on exit"
    );
    assert_eq!(status(&env, &[]).0, Some(3));
}

/// Replaces values that differ between runs with placeholders.
fn normalise(v: &mut serde_json::Value, tmp: &str) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match k.as_str() {
                    "pid" | "config_loaded_at" | "started_at" | "at" | "last_success_at"
                    | "since_ms"
                        if !x.is_null() =>
                    {
                        *x = "<number>".into()
                    }
                    "version" => *x = "<version>".into(),
                    _ => normalise(x, tmp),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| normalise(x, tmp)),
        serde_json::Value::String(s) => *s = s.replace(tmp, "<tmp>"),
        _ => {}
    }
}

#[test]
fn json_matches_the_pinned_fixture() {
    let env = Env::new("    then:\n      - udev-reload\n");
    env.put("a.rules", "# a\n");
    env.put("b.rules", BAD_RULE);
    let _d = env.start();
    let (code, text) = status(&env, &["--json"]);
    assert_eq!(code, Some(1));
    let mut got: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(got["schema_version"], 1);
    normalise(&mut got, &env.tmp.path().display().to_string());
    matches_fixture(&got, "status.json");
}

/// Compares `got` with tests/fixtures/`name` (rewritten with
/// UPDATE_FIXTURES=1).
fn matches_fixture(got: &serde_json::Value, name: &str) {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        fs::write(&fixture, serde_json::to_string_pretty(got).unwrap() + "\n").unwrap();
    }
    let want: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&fixture).unwrap()).unwrap();
    assert_eq!(
        *got, want,
        "the status JSON changed; if on purpose, bump SCHEMA_VERSION when incompatible and rerun with UPDATE_FIXTURES=1"
    );
}

#[test]
fn a_certificate_bridge_json_matches_its_pinned_fixture() {
    let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/certs");
    // Port 1 on loopback: nothing listens, so the verify's answer is fixed.
    let env = Env::new_files(
        "    validate: { tls-pair: { cert: tls.crt, key: tls.key } }\n    then: []\n    verify: { tls-endpoint: \"127.0.0.1:1\", within: 1s }\n",
    );
    env.put_renamed("tls.crt", &fs::read(certs.join("a.pem")).unwrap());
    env.put_renamed("tls.key", &fs::read(certs.join("a.key")).unwrap());
    let d = env.start();
    d.wait_log("verify failed");
    let (code, text) = status(&env, &["--json"]);
    assert_eq!(code, Some(1));
    let mut got: serde_json::Value = serde_json::from_str(&text).unwrap();
    normalise(&mut got, &env.tmp.path().display().to_string());
    matches_fixture(&got, "status-cert.json");
}

#[test]
fn metrics_from_the_daemon_parse() {
    let env = Env::new("    then:\n      - udev-reload\n");
    env.put("a.rules", "# a\n");
    let _d = env.start();
    let (code, text) = status(&env, &["--metrics"]);
    assert_eq!(code, Some(0));
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let installed = scrape
        .samples
        .iter()
        .find(|s| s.metric == "hostbridge_files_installed_total")
        .unwrap();
    assert!(matches!(installed.value, prometheus_parse::Value::Counter(v) if v == 1.0));

    // And the textfile for node_exporter.
    let prom = env.tmp.path().join("textfile");
    fs::create_dir_all(&prom).unwrap();
    let cfg = fs::read_to_string(&env.config).unwrap();
    fs::write(
        &env.config,
        format!("metrics_file: {}/hostbridge.prom\n{cfg}", prom.display()),
    )
    .unwrap();
    drop(_d);
    let _d = env.start();
    let text = fs::read_to_string(prom.join("hostbridge.prom")).unwrap();
    assert!(
        text.contains("hostbridge_syncs_total{bridge=\"test\",result=\"ok\"} 1"),
        "{text}"
    );
}

#[test]
fn sd_notify_messages_arrive_in_order() {
    let env = Env::new("    then:\n      - udev-reload\n");
    let sock_path = env.tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(common::DEADLINE)).unwrap();
    env.put("a.rules", "# a\n");
    let notify = sock_path.display().to_string();
    let mut d = env.spawn_daemon(&[("NOTIFY_SOCKET", notify.as_str())]);
    let next = || {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next();
    assert!(
        ready.starts_with("READY=1\nSTATUS=1 bridge ok; last: test installed 1 file"),
        "{ready:?}"
    );
    env.put("b.rules", "# b\n");
    let st = next();
    assert!(
        st.starts_with(
            "STATUS=1 bridge ok; last: test installed 1 file, 1 unchanged; udev-reload ok"
        ),
        "{st:?}"
    );
    kill(d.pid(), Signal::SIGHUP).unwrap();
    assert!(next().starts_with("RELOADING=1\nMONOTONIC_USEC="));
    assert!(next().starts_with("READY=1\nSTATUS="));
    assert!(d.stop().success());
    assert!(next().starts_with("STOPPING=1"));
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one() {
    let env = Env::new("    then:\n      - udev-reload\n");
    let d = env.start();
    let good = fs::read_to_string(&env.config).unwrap();
    fs::write(&env.config, format!("{good}    bogus_key: 1\n")).unwrap();
    kill(d.pid(), Signal::SIGHUP).unwrap();
    d.wait_log("config reload failed, keeping the running config");
    assert!(
        d.log().contains(&format!("{}:", env.config.display())),
        "file:line:col in the log: {}",
        d.log()
    );
    let (code, text) = status(&env, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("last reload failed, still running the previous config"),
        "{text}"
    );
    assert!(text.contains("unknown field `bogus_key`"), "{text}");
    // The old config still works.
    env.put("a.rules", "# a\n");
    wait_for(
        "a installed",
        || env.dest_content("a.rules").is_some(),
        || d.log(),
    );
    // `hostbridge reload` reports the same failure, then success once fixed.
    let out = env.run(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    fs::write(&env.config, good).unwrap();
    let out = env.run(&["reload"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status(&env, &[]).0, Some(0));
}

#[test]
fn sighup_adding_a_bridge_starts_watching_it() {
    let env = Env::new("    include: [\"a-*.rules\"]\n");
    let d = env.start();
    let src2 = env.tmp.path().join("export2");
    let cfg = fs::read_to_string(&env.config).unwrap();
    let extra = format!(
        "  - name: second\n    kind: udev-rules\n    source: {}\n    install_to: {}\n    include: [\"b-*.rules\"]\n",
        src2.display(),
        env.dest.display()
    );
    fs::write(&env.config, cfg + &extra).unwrap();
    kill(d.pid(), Signal::SIGHUP).unwrap();
    d.wait_log("config reloaded: 2 bridges");
    fs::create_dir_all(&src2).unwrap();
    fs::write(src2.join("b-1.rules"), "# b\n").unwrap();
    wait_for(
        "b-1 installed by the new bridge",
        || env.dest_content("b-1.rules").is_some(),
        || d.log(),
    );
    // The unchanged bridge kept working.
    env.put("a-1.rules", "# a\n");
    wait_for(
        "a-1 installed",
        || env.dest_content("a-1.rules").is_some(),
        || d.log(),
    );
    assert!(!d.log().contains("test: config changed"), "{}", d.log());
}

#[test]
fn sigterm_during_a_long_install_leaves_no_partial_file_and_no_socket() {
    // Trusted: the source bytes are installed as they are, so a partial
    // file would show as one (permissions-only installs a short canonical
    // form, tested in rules_daemon.rs and pipeline.rs).
    let env = Env::new("    policy: trusted\n    max_files: 100\n    max_bytes: 200MiB\n");
    fs::create_dir_all(&env.src).unwrap();
    let body = |i: usize| format!("# file {i}\n") + &"# padding padding padding\n".repeat(40_000);
    for i in 0..100 {
        fs::write(env.src.join(format!("{i:03}.rules")), body(i)).unwrap();
    }
    let mut d = env.spawn_daemon(&[]);
    wait_for(
        "install under way",
        || env.installed().iter().any(|n| n == "005.rules"),
        || d.log(),
    );
    let started = std::time::Instant::now();
    let st = d.stop();
    assert!(st.success(), "exit 0 on SIGTERM: {st:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded shutdown"
    );
    assert!(!env.state.join("status.sock").exists());
    for name in env.installed() {
        assert!(!name.starts_with(".hostbridge-"), "temp file left: {name}");
        let i: usize = name[..3].parse().unwrap();
        assert_eq!(
            fs::read_to_string(env.dest.join(&name)).unwrap(),
            body(i),
            "{name} partial"
        );
    }
}

#[test]
fn watchdog_pings_when_systemd_asks_for_them() {
    let env = Env::new("");
    let sock_path = env.tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(common::DEADLINE)).unwrap();
    let notify = sock_path.display().to_string();
    // WATCHDOG_USEC=400ms: the loop pings every 200 ms.
    let _d = env.spawn_daemon(&[
        ("NOTIFY_SOCKET", notify.as_str()),
        ("WATCHDOG_USEC", "400000"),
    ]);
    let mut pings = 0;
    while pings < 3 {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a notification");
        if String::from_utf8_lossy(&buf[..n]).starts_with("WATCHDOG=1") {
            pings += 1;
        }
    }
}

#[test]
fn status_group_members_may_ask_and_others_are_told_why_not() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP status_group: needs root (the daemon chowns the socket; setpriv)");
        return;
    }
    if std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have setpriv (util-linux)"
        );
        eprintln!("SKIP status_group: no setpriv (util-linux)");
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = Env::new("");
    // Like /run/hostbridge (RuntimeDirectoryMode=0755): others may traverse.
    fs::set_permissions(env.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let sock = env.tmp.path().join("status.sock");
    let cfg = fs::read_to_string(&env.config).unwrap();
    fs::write(
        &env.config,
        format!(
            "status_socket: {}\nstatus_group: dialout\n{cfg}",
            sock.display()
        ),
    )
    .unwrap();
    let dialout = nix::unistd::Group::from_name("dialout")
        .unwrap()
        .unwrap()
        .gid;
    fs::create_dir_all(&env.src).unwrap(); // healthy: the source is there
    let _d = env.start();
    let m = fs::metadata(&sock).unwrap();
    assert_eq!((m.gid(), m.mode() & 0o777), (dialout.as_raw(), 0o660));
    // `nobody`, with and without the group.
    let as_nobody = |groups: &str| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", groups, "--"])
            .arg(common::bin())
            .args(["status", "--socket"])
            .arg(&sock)
            .output()
            .unwrap()
    };
    let member = as_nobody(&format!("--groups={dialout}"));
    assert_eq!(
        member.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&member.stderr)
    );
    assert!(String::from_utf8_lossy(&member.stdout).contains("healthy"));
    let outsider = as_nobody("--clear-groups");
    let err = String::from_utf8_lossy(&outsider.stderr);
    assert_eq!(outsider.status.code(), Some(4), "{err}");
    assert!(
        err.contains("permission denied on") && err.contains("status_group"),
        "{err}"
    );
}

/// Issue 17: a bridge whose source dir has never been seen (a typo in
/// `source:`) is not healthy: status says what it waits for, exit 1; once
/// the dir appears it is. A sync that failed says "sync failed", and the
/// ready line counts it.
#[test]
fn a_source_never_seen_is_degraded_and_a_failed_sync_says_so() {
    let env = Env::new("    settle: { quiet: 100ms }\n");
    let d = env.start();
    assert!(
        d.log()
            .contains("the source dir does not exist (yet); nothing is installed from it"),
        "{}",
        d.log()
    );
    let (code, text) = status(&env, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("waiting for the source dir"), "{text}");
    assert!(text.contains("nothing has been seen at"), "{text}");
    fs::create_dir_all(&env.src).unwrap();
    wait_for(
        "healthy once the dir appears",
        || status(&env, &[]).0 == Some(0),
        || format!("{:?}\n{}", status(&env, &[]), d.log()),
    );

    let env = Env::new("");
    env.put("a.rules", "# a\n");
    fs::write(&env.dest, "a file where the destination dir should be").unwrap();
    let d = env.start();
    assert!(
        d.log()
            .contains("ready: 1 bridge reconciled, 1 degraded (test: "),
        "{}",
        d.log()
    );
    let (code, text) = status(&env, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("✖ test"), "{text}");
    assert!(text.contains("sync failed "), "{text}");
}

/// Issue 17: with a custom `state_dir` and a config broken since the daemon
/// started, `status` and `reload` still find the daemon's socket (they read
/// the config's top-level lines one by one when it does not parse).
#[test]
fn status_and_reload_find_the_socket_of_a_custom_state_dir_in_a_broken_config() {
    let env = Env::new("");
    fs::create_dir_all(&env.src).unwrap();
    let d = env.start();
    assert_eq!(status(&env, &[]).0, Some(0));
    let cfg = fs::read_to_string(&env.config).unwrap();
    fs::write(&env.config, format!("{cfg}  - name: [this is not yaml\n")).unwrap();
    let (code, text) = status(&env, &[]);
    assert_eq!(code, Some(0), "found the running daemon: {text}");
    let out = env.run(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(3), "not 'not running': {err}");
    assert!(!err.contains("not running"), "{err}");
    drop(d);
}
