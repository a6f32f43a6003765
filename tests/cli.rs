//! The command line as scripts see it: exit codes and output of `check`,
//! `sync` and `sync --dry-run`, run as the real binary.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;

use common::{Env, bin};

#[test]
fn config_errors_exit_78_with_file_line_and_column() {
    let env = Env::new("    prnue: true\n");
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!("{}:8:5: unknown field `prnue`", env.config.display());
    assert!(err.contains(&want), "{err}");
}

#[test]
fn missing_config_exits_78() {
    let out = std::process::Command::new(bin())
        .args(["--config", "/nonexistent/x.yaml", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.yaml: cannot read config")
    );
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let out = std::process::Command::new(bin())
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["sync", "--help"],
        &["check", "--help"],
    ] {
        let out = std::process::Command::new(bin())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage: hostbridge"),
            "{args:?}"
        );
    }
}

#[test]
fn check_fails_on_a_group_or_owner_the_host_lacks() {
    let env = Env::new("    group: hb-no-such-group\n    owner: hb-no-such-user\n");
    let cfg = fs::read_to_string(&env.config)
        .unwrap()
        .replace("kind: udev-rules", "kind: files");
    fs::write(
        &env.config,
        format!("status_group: hb-no-such-group\n{cfg}"),
    )
    .unwrap();
    let out = env.run(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        out.stdout.is_empty(),
        "no \"is valid\" for a config that is not"
    );
    assert!(
        err.contains(
            "config error: bridge test: owner \"hb-no-such-user\" does not exist on this host"
        ),
        "{err}"
    );
    assert!(
        err.contains("config error: status_group \"hb-no-such-group\" does not exist on this host"),
        "{err}"
    );
}

#[test]
fn check_prints_what_each_bridge_would_do() {
    let env = Env::new(
        "    then:\n      - udev-reload\n      - udev-trigger: { subsystem: usb, attrs: { idVendor: 051d } }\n      - usb-check: { user: root, expect: [051d:0002], on_replug: [ restart-unit: nut-server.service ] }\n",
    );
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        format!("bridge test (udev-rules, from {}):", env.config.display()),
        format!(
            "watch      {} (missing: will wait for it) for *.rules",
            env.src.display()
        ),
        format!("install to {} (mode 0644, prune on)", env.dest.display()),
        "settle     quiet 300ms, max_wait 10s; files up to 1048576 bytes".to_string(),
        "control --reload".to_string(),
        "trigger --action=change --subsystem-match=usb --attr-match=idVendor=051d".to_string(),
        "then       check USB access for user root, expecting 051d:0002\n  on replug  /usr/bin/systemctl try-restart nut-server.service\n".to_string(),
    ] {
        assert!(text.contains(&needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn sync_dry_run_prints_the_plan_and_changes_nothing() {
    let env = Env::new("    then:\n      - udev-reload\n");
    env.put("a.rules", "# a\n");
    env.put("b.rules", "# b\n");
    let out = env.run(&["sync", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("test: plan: would install a.rules, b.rules"),
        "{text}"
    );
    assert!(
        text.contains("  + install a.rules\n  + install b.rules\n"),
        "{text}"
    );
    assert!(!env.dest.exists(), "dry run created the destination");
    assert!(!env.state.exists(), "dry run wrote state");
    assert!(env.udevadm_calls().is_empty(), "dry run ran an action");
}

#[test]
fn sync_installs_runs_actions_once_and_is_idempotent() {
    let env =
        Env::new("    then:\n      - udev-reload\n      - udev-trigger: { subsystem: usb }\n");
    env.put("a.rules", "# a\n");
    let out = env.run(&["sync"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("  + install a.rules"));
    // What is installed is the canonical form of what the container wrote.
    assert_eq!(
        env.dest_content("a.rules"),
        Some(common::canonical("a.rules", "# a\n"))
    );
    assert_eq!(
        env.udevadm_calls(),
        [
            "control --reload files=1",
            "trigger --action=change --subsystem-match=usb files=1",
            "settle --timeout=30 files=1"
        ]
    );
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to change"));
    assert_eq!(
        env.udevadm_calls().len(),
        3,
        "no action when nothing changed"
    );
}

/// Issue 17: `sync` is for scripts and `ExecStartPre=`: a file refused by
/// the policy, or a set held back for failing validation, is exit 65
/// (EX_DATAERR), dry run or not; 0 stays "everything in place".
#[test]
fn sync_exits_65_when_something_is_refused_or_held_back() {
    let env = Env::new("");
    env.put("a.rules", "# a\n");
    env.put("b.rules", "RUN+=\"/tmp/x\"\n");
    for args in [&["sync", "--dry-run"][..], &["sync"][..]] {
        let out = env.run(args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(65), "{args:?}: {text}");
        // The finding is listed once, under the skip that it explains.
        assert!(
            text.contains("! skip b.rules: rejected by the rules checks (1 error, below)\n  b.rules:1:1: error["),
            "{text}"
        );
        assert_eq!(text.matches("b.rules:1:1: error[").count(), 1, "{text}");
    }
    assert!(
        env.dest_content("a.rules").is_some(),
        "the good file is installed"
    );
    fs::remove_file(env.src.join("b.rules")).unwrap();
    assert_eq!(env.run(&["sync"]).status.code(), Some(0));

    let files = Env::new_files(
        "    require: [tls.crt, tls.key]\n    validate: { tls-pair: { cert: tls.crt, key: tls.key } }\n",
    );
    files.put("tls.crt", "not a certificate");
    files.put("tls.key", "not a key");
    let out = files.run(&["sync"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(65), "{text}");
    assert!(text.contains("holding: "), "{text}");
}

#[test]
fn sync_reports_conflicts_with_exit_1_and_unknown_bridge_with_2() {
    let env = Env::new("");
    env.put("a.rules", "# a\n");
    fs::create_dir_all(&env.dest).unwrap();
    fs::write(env.dest.join("a.rules"), "# someone else's\n").unwrap();
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("! conflict a.rules: destination file was not installed by hostbridge")
    );
    let out = env.run(&["sync", "--bridge", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn drop_ins_merge_by_name_later_dirs_win_and_check_shows_origins() {
    let env = Env::new("    include: [\"a-*.rules\"]\n");
    let (usr, etc) = (env.tmp.path().join("usr.d"), env.tmp.path().join("etc.d"));
    fs::create_dir_all(&usr).unwrap();
    fs::create_dir_all(&etc).unwrap();
    let other = env.tmp.path().join("other");
    // 10-extra.yaml in both dirs: the later dir's copy wins.
    fs::write(usr.join("10-extra.yaml"), "bridges:\n  - name: ignored\n    kind: udev-rules\n    source: /nope\n    include: [\"z-*.rules\"]\n").unwrap();
    fs::write(
        etc.join("10-extra.yaml"),
        format!("bridges:\n  - name: extra\n    kind: udev-rules\n    source: {}\n    install_to: {}\n    include: [\"b-*.rules\"]\n", other.display(), env.dest.display()),
    )
    .unwrap();
    // 20-override.yaml replaces the main file's bridge "test" and a top-level key.
    fs::write(
        etc.join("20-override.yaml"),
        format!(
            "settle: {{ quiet: 1s }}\nbridges:\n  - name: test\n    kind: udev-rules\n    source: {}\n    install_to: {}\n    include: [\"c-*.rules\"]\n",
            env.src.display(),
            env.dest.display()
        ),
    )
    .unwrap();
    let out = env
        .cmd(&[
            "--config-dir",
            usr.to_str().unwrap(),
            "--config-dir",
            etc.to_str().unwrap(),
            "check",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("drop-in {}/10-extra.yaml", etc.display())),
        "{text}"
    );
    assert!(!text.contains("ignored"), "{text}");
    assert!(
        text.contains(&format!(
            "bridge test (udev-rules, from {}/20-override.yaml)",
            etc.display()
        )),
        "{text}"
    );
    assert!(text.contains("for c-*.rules"), "{text}");
    assert!(
        text.contains(&format!(
            "bridge extra (udev-rules, from {}/10-extra.yaml)",
            etc.display()
        )),
        "{text}"
    );
    assert!(text.contains("settle     quiet 1s"), "{text}");

    // With the main file absent, the drop-ins alone are the config, and
    // check says so rather than calling the missing file valid.
    let absent = env.config.with_file_name("absent.yaml");
    let out = std::process::Command::new(bin())
        .arg("--config")
        .arg(&absent)
        .args(["--config-dir", etc.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!(
            "config {} is absent; its drop-ins make a valid config\n",
            absent.display()
        )),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An error in a fragment names the fragment.
    fs::write(
        etc.join("30-bad.yaml"),
        "bridges:\n  - name: x\n    kind: udev-rules\n    source: relative\n",
    )
    .unwrap();
    let out = env
        .cmd(&["--config-dir", etc.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!(
        "{}/30-bad.yaml:4:13: path \"relative\" is relative",
        etc.display()
    )));
}

/// `hostbridge --config PATH ARGS` (no drop-ins).
fn hb(path: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin())
        .arg("--config")
        .arg(path)
        .args(args)
        .env("HOSTBRIDGE_CONFIG_DIRS", "")
        .output()
        .unwrap()
}

/// `hostbridge --config PATH check` exits 0; returns what it printed.
fn check_passes(path: &std::path::Path) -> String {
    let out = hb(path, &["check"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}:\n{}\n{}",
        path.display(),
        fs::read_to_string(path).unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn shipped_example_configs_pass_check_and_a_dry_run_rebased_to_a_temp_root() {
    let top = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut configs: Vec<_> = fs::read_dir(top.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    configs.push(top.join("units/examples/config.yaml"));
    assert!(configs.len() >= 5, "{configs:?}");
    // The NUT examples name the nut group and user, which `check` looks up.
    let nut = common::ensure_nut_user();
    for path in configs {
        let tmp = tempfile::tempdir().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let mut rebased = common::rebase_paths(&text, tmp.path());
        if !rebased.contains("\nstate_dir:") && !rebased.starts_with("state_dir:") {
            rebased = format!("state_dir: {}/state\n{rebased}", tmp.path().display());
        }
        let copy = tmp.path().join("config.yaml");
        fs::write(&copy, &rebased).unwrap();
        if !nut && rebased.contains("nut") {
            let out = hb(&copy, &["check"]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(78), "{}: {err}", path.display());
            assert!(err.contains("\"nut\", which does not exist"), "{err}");
            continue;
        }
        // Every source and destination it names is under the temp root.
        let plan = check_passes(&copy);
        for line in plan.lines().filter(|l| {
            let l = l.trim_start();
            l.starts_with("watch ") || l.starts_with("install to ") || l.starts_with("state_dir:")
        }) {
            assert!(
                line.contains(&tmp.path().display().to_string()),
                "{}: not rebased: {line}",
                path.display()
            );
        }
        // A dry run reads the (missing) sources and plans nothing.
        let out = hb(&copy, &["sync", "--dry-run"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn readme_configs_pass_check() {
    let readme =
        fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let blocks: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert!(blocks.len() >= 2, "the NUT and the certificate examples");
    let env = Env::new("");
    // The NUT example names the nut group and user, which `check` looks up.
    let nut = common::ensure_nut_user();
    for (i, yaml) in blocks.iter().enumerate() {
        let path = env.tmp.path().join(format!("readme-{i}.yaml"));
        fs::write(&path, yaml).unwrap();
        if !nut && yaml.contains("nut") {
            let out = hb(&path, &["check"]);
            assert_eq!(out.status.code(), Some(78), "{out:?}");
            continue;
        }
        check_passes(&path);
    }
}

/// Runs `cmd`, or says why it cannot (a failure under CI, which installs it).
fn tool_output(cmd: &mut std::process::Command, what: &str) -> Option<std::process::Output> {
    match cmd.output() {
        Ok(o) => Some(o),
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "CI must have {what}: {e}");
            eprintln!("SKIP: {what} is not installed ({e})");
            None
        }
    }
}

#[test]
fn man_pages_render_without_warnings() {
    let env = Env::new("");
    let dir = env.tmp.path().join("man");
    let out = env.run(&["man", "--out-dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let pages = common::list(&dir);
    for sub in [
        "run",
        "sync",
        "check",
        "status",
        "reload",
        "usb",
        "rules-lint",
        "completions",
        "man",
    ] {
        assert!(pages.contains(&format!("hostbridge-{sub}.1")), "{pages:?}");
    }
    assert!(
        !pages.iter().any(|p| p.contains("probe")),
        "hidden commands get no page"
    );
    for page in &pages {
        let path = dir.join(page);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.is_ascii(), "{page}: non-ASCII input needs preconv");
        let Some(o) = tool_output(
            std::process::Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(&path),
            "groff (groff-base)",
        ) else {
            return;
        };
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // What a reader sees, through man itself.
    let Some(o) = tool_output(
        std::process::Command::new("man")
            .arg("-l")
            .arg(dir.join("hostbridge.1"))
            .env("MANWIDTH", "100")
            .env("MANPAGER", "cat"),
        "man (man-db)",
    ) else {
        return;
    };
    let shown = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "EXIT STATUS",
        "hostbridge-usb(1)",
        "EX_CONFIG",
        "/etc/hostbridge/config.yaml",
        "HOSTBRIDGE_CONFIG_DIRS",
    ] {
        assert!(shown.contains(needle), "{needle:?} missing from:\n{shown}");
    }
    assert!(
        !shown.contains("hostbridge-help(1)"),
        "no page exists for it"
    );
    // `hostbridge man` alone prints the same main page.
    let stdout = env.run(&["man"]).stdout;
    assert_eq!(
        String::from_utf8_lossy(&stdout),
        fs::read_to_string(dir.join("hostbridge.1")).unwrap()
    );
}

#[test]
fn completions_load_in_bash_and_cover_the_subcommands() {
    let env = Env::new("");
    for shell in ["bash", "zsh", "fish", "elvish"] {
        let out = env.run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for sub in ["status", "usb", "lint"] {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let script = env.tmp.path().join("hostbridge.bash");
    fs::write(&script, env.run(&["completions", "bash"]).stdout).unwrap();
    // Load it in a real bash and ask what it completes after "hostbridge st".
    let probe = format!(
        "source {}; COMP_WORDS=(hostbridge st); COMP_CWORD=1; _hostbridge hostbridge st hostbridge; echo \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let Some(o) = tool_output(
        std::process::Command::new("bash").args(["-c", &probe]),
        "bash",
    ) else {
        return;
    };
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "status", "{o:?}");
    assert_eq!(env.run(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn a_read_only_destination_says_which_readwritepaths_to_add() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: needs root for a private read-only mount");
        return;
    }
    let env = Env::new("");
    env.put(
        "a.rules",
        "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0660\", GROUP=\"dialout\"\n",
    );
    let Some((code, text)) = common::sync_with_read_only_dest(&env) else {
        return;
    };
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "add `ReadWritePaths={}` in a drop-in",
            env.dest.display()
        )),
        "{text}"
    );
}

/// Issue 17: `check` runs the host lookups the daemon will run, and exits
/// 78 naming each name this host lacks: a group `allow_groups` allows, the
/// user a `usb-check` checks; and an `install_to` that is not a directory.
#[test]
fn check_exits_78_for_missing_groups_users_and_a_file_as_install_to() {
    let env = Env::new(
        "    allow_groups: [hb-no-such-group]\n    then:\n      - usb-check: { user: hb-no-such-user }\n",
    );
    fs::write(&env.dest, "a file, not a dir").unwrap();
    let out = env.run(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    for needle in [
        "allow_groups names \"hb-no-such-group\", which does not exist on this host",
        "usb-check user \"hb-no-such-user\" does not exist on this host",
        "exists and is not a directory",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
}

/// Issue 17: `check` also looks up the GROUP/OWNER names the rules files
/// now in the source use, as the daemon will: a name this host lacks is a
/// config error (78) naming the file, line and column; a file refused for
/// another reason (the container's to fix) is a warning, and alone leaves
/// the exit code 0.
#[test]
fn check_looks_up_the_names_the_current_source_files_use() {
    let env = Env::new("");
    env.put(
        "60-ups.rules",
        "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0660\", GROUP=\"hb-no-such-group\"\n",
    );
    let out = env.run(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    let want = format!(
        "config error: bridge test: the source file uses a name this host lacks: {}:1:56: error[group-unknown]: GROUP=\"hb-no-such-group\": no such group on this host",
        env.src.join("60-ups.rules").display()
    );
    assert!(err.contains(&want), "missing {want:?} in {err}");
    // The unit's ExecStartPre= leaves the source out: what a container
    // wrote never keeps the daemon from starting.
    let out = env.run(&["check", "--no-source"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("60-ups.rules"), "{err}");

    env.put(
        "60-ups.rules",
        "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0660\", RUN+=\"/bin/true\"\n",
    );
    let out = env.run(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let want = format!(
        "warning: bridge test: a sync would refuse this source file: {}:1:",
        env.src.join("60-ups.rules").display()
    );
    assert!(err.contains(&want), "missing {want:?} in {err}");
    assert!(err.contains("RUN"), "{err}");
}

/// Issue 17: `hostbridge usb` is a standalone diagnostic: it runs with no
/// config file, and says what it could not see instead of printing an
/// empty table.
#[test]
fn usb_needs_no_config_and_says_what_it_cannot_see() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-config.yaml");
    let usb_with = |sysfs: &std::path::Path, extra: &[&str]| {
        std::process::Command::new(common::bin())
            .env("HOSTBRIDGE_CONFIG_DIRS", "")
            .arg("--config")
            .arg(&missing)
            .args(["usb", "--sysfs-root"])
            .arg(sysfs)
            .args(extra)
            .output()
            .unwrap()
    };
    let usb = |sysfs: &std::path::Path| usb_with(sysfs, &[]);
    let out = usb(&tmp.path().join("nosys"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bus/usb/devices does not exist: no USB bus is visible here"),
        "{err}"
    );
    assert!(!err.contains("config error"), "{err}");
    // A script asking for JSON gets JSON, with the reason.
    let out = usb_with(&tmp.path().join("nosys"), &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        doc["error"]
            .as_str()
            .is_some_and(|e| e.contains("no USB bus is visible here")),
        "{doc}"
    );

    let sys = tmp.path().join("sys");
    fs::create_dir_all(sys.join("bus/usb/devices")).unwrap();
    let out = usb(&sys);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        text.contains("(no USB device is plugged in under "),
        "{text}"
    );
}

/// Issue 17: config errors say what was likely meant: "did you mean" for a
/// misspelt key or value, and what an indentation mistake looks like.
#[test]
fn config_errors_hint_at_the_likely_fix() {
    let cases: &[(&str, &str)] = &[
        ("    sourc: /x\n", "did you mean `source`?"),
        (
            "    then:\n      - udev-reloud\n",
            "did you mean `udev-reload`?",
        ),
        (
            "    then:\n      - udev-reload\n        - udev-trigger\n",
            "two list items ran together",
        ),
        (
            "    then:\n      - udev-reload\n     - udev-trigger\n",
            "check the indentation",
        ),
    ];
    for (extra, hint) in cases {
        let env = Env::new(extra);
        let out = env.run(&["check"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{extra}: {err}");
        assert!(err.contains(hint), "{extra}: missing {hint:?} in {err}");
    }
}

/// Issue 17: `rules lint` without `--bridge` checks with the default policy;
/// when the config has rules bridges (whose allow lists may give another
/// verdict), it says so and names them; with `--bridge` it is the daemon's
/// check and says nothing of the kind.
#[test]
fn lint_without_bridge_says_the_config_is_not_used() {
    let env = Env::new("    allow_groups: [dialout]\n");
    env.put("a.rules", "# a\n");
    let file = env.src.join("a.rules");
    let file = file.to_str().unwrap();
    let out = env.run(&["rules", "lint", "--no-host", file]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("checked with the default policy")
            && err.contains("--bridge NAME")
            && err.contains("(test)"),
        "{err}"
    );
    let out = env.run(&["rules", "lint", "--bridge", "test", file]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("default policy"), "{err}");
}
