//! `hostbridge rules lint` and the policy against an adversarial set of our
//! own (tests/rules/adversarial: every forbidden construct and tricks with
//! continuations, quotes, case, escapes and GOTO flow; each file names the
//! rule ids it must trip in a `# expect:` header) and the example rules the
//! project ships (rules/), which must pass.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use hostbridge::core::rules::policy::Policy;
use hostbridge::core::rules::{self, Severity};

fn error_ids(bytes: &[u8]) -> BTreeSet<&'static str> {
    let (_, f) = rules::lint(bytes, &Policy::default());
    f.iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.rule)
        .collect()
}

#[test]
fn adversarial_files_trip_exactly_the_expected_rules() {
    let files = common::rules_files_in("tests/rules/adversarial");
    assert!(files.len() >= 40);
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let header = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect:"))
            .expect("# expect: header");
        // Empty: a case only the host checks catch (e.g. masking).
        let want: BTreeSet<&str> = header
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .collect();
        let got = error_ids(text.as_bytes());
        if got != want {
            failures.push(format!("{}: want {want:?}, got {got:?}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!(
        "adversarial: {} files, each rejected with the expected rule ids",
        files.len()
    );
}

#[test]
fn a_one_mebibyte_line_is_rejected_without_trouble() {
    let mut text =
        String::from("SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0660\", KERNEL==\"");
    text.push_str(&"a".repeat(1 << 20));
    text.push_str("\"\n");
    assert_eq!(
        error_ids(text.as_bytes()),
        BTreeSet::from(["line-too-long"])
    );
    // And a continuation that grows past udevd's limit.
    let cont = "ATTR{idVendor}==\"051d\", \\\n".repeat(1000) + "MODE=\"0660\"\n";
    assert_eq!(
        error_ids(cont.as_bytes()),
        BTreeSet::from(["line-too-long"])
    );
}

#[test]
fn shipped_example_rules_pass() {
    let files = common::rules_files_in("rules");
    assert!(!files.is_empty());
    for path in files {
        let (_, f) = rules::lint(
            &std::fs::read(&path).unwrap(),
            &Policy {
                groups: vec!["nut".into()],
                ..Policy::default()
            },
        );
        assert!(f.is_empty(), "{}: {f:?}", path.display());
    }
}

#[test]
fn lint_command_output_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("62-good.rules");
    let bad = dir.path().join("63-bad.rules");
    std::fs::write(
        &good,
        "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0664\", GROUP=\"nut\"\n",
    )
    .unwrap();
    std::fs::write(
        &bad,
        "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", RUN+=\"/tmp/x\"\nGROUP+=\"nut\"\n",
    )
    .unwrap();
    // The policy alone: without --no-host, root would also look the nut
    // group up on this machine (tested below with --host).
    let lint = |args: &[&str]| {
        Command::new(common::bin())
            .args(["rules", "lint", "--no-host"])
            .args(args)
            .output()
            .unwrap()
    };

    let out = lint(&[good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());

    let out = lint(&[good.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let b = bad.display();
    assert!(
        text.contains(&format!(
            "{b}:1:43: error[run]: RUN+= would execute '/tmp/x' as root on every matching uevent"
        )),
        "{text}"
    );
    // permissions-only refuses what udevd would silently correct.
    assert!(
        text.contains(&format!(
            "{b}:2:1: error[operator-assumed]: GROUP+=\"nut\" takes only = and :="
        )),
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2 files: 2 errors, 0 warnings"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = lint(&["--format", "json", bad.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = json
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "run")
        .expect("a run finding");
    assert_eq!(
        (run["line"].as_u64(), run["column"].as_u64()),
        (Some(1), Some(43))
    );
    assert_eq!(run["severity"], "error");
    assert_eq!(run["file"], bad.display().to_string());

    // trusted reads it as udevd does: only a warning is left.
    let out = lint(&["--policy", "trusted", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "only the warning is left");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!(
        "{b}:2:1: warning[operator-assumed]: GROUP does not take '+='; udevd assumes '='"
    )));

    let out = lint(&["--allow-group", "dialout", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("error[group-not-allowed]"));

    let out = Command::new(common::bin())
        .args(["rules", "lint", "--host", good.to_str().unwrap()])
        .output()
        .unwrap();
    let has_nut = nix::unistd::Group::from_name("nut").unwrap().is_some();
    assert_eq!(out.status.code(), Some(if has_nut { 0 } else { 1 }));
    if !has_nut {
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .contains("error[group-unknown]: GROUP=\"nut\": no such group on this host")
        );
    }

    assert_eq!(
        lint(&[]).status.code(),
        Some(2),
        "no files is a usage error"
    );
    assert_eq!(
        lint(&["--policy", "lax", good.to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(lint(&["/nonexistent.rules"]).status.code(), Some(1));
}

#[test]
fn non_system_groups_are_caught_by_the_host_check() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP non_system_groups: needs root to create a group with gid >= 1000");
        return;
    }
    let name = "hb-test-regular";
    let _ = Command::new("groupdel").arg(name).output();
    let made = Command::new("groupadd").args(["-g", "4321", name]).output();
    if !made.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("SKIP non_system_groups: groupadd failed: {made:?}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("62-ups.rules");
    std::fs::write(
        &file,
        format!(
            "SUBSYSTEM==\"usb\", ATTR{{idVendor}}==\"051d\", MODE=\"0660\", GROUP=\"{name}\"\n"
        ),
    )
    .unwrap();
    let lint = |extra: &[&str]| {
        Command::new(common::bin())
            .args(["rules", "lint", "--host"])
            .args(extra)
            .arg(&file)
            .output()
            .unwrap()
    };
    let strict = lint(&[]);
    let lax = lint(&["--allow-non-system-groups"]);
    let _ = Command::new("groupdel").arg(name).output();
    assert_eq!(strict.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&strict.stdout).contains("error[group-non-system]: GROUP=\"hb-test-regular\" has id 4321 (not a system group); systemd 258-259"),
        "{}",
        String::from_utf8_lossy(&strict.stdout)
    );
    assert_eq!(
        lax.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&lax.stdout)
    );
}

fn lint_cmd(args: &[&str]) -> std::process::Output {
    Command::new(common::bin())
        .args(["rules", "lint"])
        .args(args)
        .env("HOSTBRIDGE_CONFIG_DIRS", "")
        .output()
        .unwrap()
}

#[test]
fn print_shows_what_would_be_installed() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("62-ups.rules");
    std::fs::write(
        &f,
        "# APC\nSUBSYSTEM==\"usb\",ATTR{idVendor}==\"051d\" \\\n  MODE=\"0660\", GROUP=\"nut\"\n",
    )
    .unwrap();
    let out = lint_cmd(&[
        "--no-host",
        "--allow-group",
        "nut",
        "--print",
        f.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "");
    assert_eq!(
        lines[1],
        "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0660\", GROUP=\"nut\""
    );
    assert!(lines[2].starts_with("# hostbridge: canonical form of 62-ups.rules (sha256 "));
    assert_eq!(
        text,
        common::canonical("62-ups.rules", &std::fs::read_to_string(&f).unwrap())
    );
    // A refused file prints nothing on stdout; the findings go to stderr.
    std::fs::write(
        &f,
        "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0660\"\n# x\rRUN+=\"/bin/sh\"\n",
    )
    .unwrap();
    let out = lint_cmd(&["--no-host", "--print", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(":2:4: error[line-ending]: a carriage return"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `hostbridge --config CFG rules lint --bridge BRIDGE FILE`.
fn lint_bridge(cfg: &Path, bridge: &str, file: &Path) -> std::process::Output {
    lint_cmd(&[
        "--config",
        cfg.to_str().unwrap(),
        "--bridge",
        bridge,
        file.to_str().unwrap(),
    ])
}

/// A config with one rules bridge and `extra` under it; system rules dir
/// and /dev are temp dirs.
fn bridge_config(dir: &Path, extra: &str) -> PathBuf {
    let sys = dir.join("system-rules");
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::write(sys.join("99-systemd.rules"), "TAG+=\"systemd\"\n").unwrap();
    let cfg = dir.join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {d}/state\nsystem_udev_rules_dirs: [{d}/system-rules]\ndev_root: {d}\netc_udev_rules_dir: {d}/etc\nbridges:\n  - name: ups\n    kind: udev-rules\n    source: {d}/export\n    install_to: {d}/rules.d\n    allow_unknown_groups: true\n{extra}",
            d = dir.display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn bridge_gives_the_daemons_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bridge_config(
        dir.path(),
        "    allow_groups: [nut]\n    allow_symlinks: [ups/]\n",
    );
    let f = dir.path().join("62-ups.rules");
    let link = "SUBSYSTEM==\"tty\", ATTRS{idVendor}==\"0403\", ATTRS{bDeviceClass}!=\"09\", GROUP=\"nut\", SYMLINK+=\"ups/serial0\"\n";
    std::fs::write(&f, link).unwrap();
    let by_bridge = lint_bridge(&cfg, "ups", &f);
    assert_eq!(
        by_bridge.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&by_bridge.stdout)
    );
    // Without the bridge, the flags' policy knows no allow_symlinks.
    let by_flags = lint_cmd(&["--no-host", "--allow-group", "nut", f.to_str().unwrap()]);
    assert_eq!(by_flags.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&by_flags.stdout).contains("error[symlink]"));
    // The bridge's allow_groups applies.
    std::fs::write(&f, link.replace("nut", "dialout")).unwrap();
    let out = lint_bridge(&cfg, "ups", &f);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("error[group-not-allowed]"));
    // A link name that is already a real node under dev_root is refused.
    std::fs::create_dir_all(dir.path().join("ups/serial0")).unwrap();
    std::fs::write(&f, link).unwrap();
    let out = lint_bridge(&cfg, "ups", &f);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("error[symlink-exists]"));
    // Unknown bridge: a usage error (2), as for `sync` and `status`,
    // naming the bridges there are.
    let out = lint_bridge(&cfg, "nope", &f);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no bridge named \"nope\" in the config; its bridges: ups"),
        "{err}"
    );
}

#[test]
fn a_file_that_would_mask_a_system_rules_file_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("99-systemd.rules");
    std::fs::write(
        &f,
        "# nothing: the system's TAG+=\"systemd\" would be gone\n",
    )
    .unwrap();
    let cfg = bridge_config(dir.path(), "");
    let out = lint_bridge(&cfg, "ups", &f);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("error[masks-system-rules]"), "{text}");
    let cfg = bridge_config(dir.path(), "    allow_override: [99-systemd.rules]\n");
    let out = lint_bridge(&cfg, "ups", &f);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_reserved_symlink_prefix_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["log", "disk/", "../x", "/ups"] {
        let cfg = bridge_config(dir.path(), &format!("    allow_symlinks: [\"{bad}\"]\n"));
        let out = Command::new(common::bin())
            .args(["--config", cfg.to_str().unwrap(), "check"])
            .env("HOSTBRIDGE_CONFIG_DIRS", "")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("allow_symlinks entry"),
            "{bad}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
