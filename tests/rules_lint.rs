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

fn files_in(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rules"))
        .collect();
    v.sort();
    v
}

fn error_ids(bytes: &[u8]) -> BTreeSet<&'static str> {
    let (_, f) = rules::lint(bytes, &Policy::default());
    f.iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.rule)
        .collect()
}

#[test]
fn adversarial_files_trip_exactly_the_expected_rules() {
    let files = files_in("tests/rules/adversarial");
    assert!(files.len() >= 40);
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let header = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .expect("# expect: header");
        let want: BTreeSet<&str> = header.split(',').map(str::trim).collect();
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
    let files = files_in("rules");
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
    let lint = |args: &[&str]| {
        Command::new(common::bin())
            .args(["rules", "lint"])
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
    assert!(
        text.contains(&format!(
            "{b}:2:1: warning[operator-assumed]: GROUP does not take '+='; udevd assumes '='"
        )),
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2 files: 2 errors, 1 warnings"),
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

    let out = lint(&["--policy", "trusted", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "only the warning is left");

    let out = lint(&["--allow-group", "dialout", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("error[group-not-allowed]"));

    let out = lint(&["--host", good.to_str().unwrap()]);
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
