//! The parser and policy against real udev rules written by others: Debian's
//! packaged rules (systemd's own, NUT, SANE, libmtp, brltty, usb-modeswitch),
//! fetched by scripts/fetch-corpus into target/corpus (scripts/test runs it).
//! Without the corpus these tests skip with a reason, except under CI=true.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use hostbridge::core::rules::policy::{Policy, PolicyMode};
use hostbridge::core::rules::{self, Severity};

#[test]
fn every_corpus_file_parses_without_errors() {
    let Some(root) = common::corpus() else { return };
    let (mut files, mut lines, mut rules_count) = (0, 0, 0);
    for pkg in common::CORPUS_PACKAGES {
        let found = common::corpus_files(&root, pkg);
        if found.is_empty() {
            eprintln!("corpus: package {pkg} missing or without udev rules");
        }
        for path in found {
            let parsed = rules::parse::parse(&std::fs::read(&path).unwrap());
            let errors: Vec<String> = parsed
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .map(|f| f.render(&path.display().to_string()))
                .collect();
            assert!(errors.is_empty(), "{}", errors.join("\n"));
            files += 1;
            lines += parsed.physical_lines;
            rules_count += parsed.rules.len();
        }
    }
    println!("corpus: {files} files, {lines} lines, {rules_count} rules parsed, 0 errors");
    assert!(
        files >= 30,
        "expected systemd's rules and more, found {files} files"
    );
}

#[test]
fn verdicts_on_the_corpus() {
    let Some(root) = common::corpus() else { return };
    let strict = Policy {
        groups: vec!["nut".into()],
        ..Policy::default()
    };
    let trusted = Policy {
        mode: PolicyMode::Trusted,
        ..Policy::default()
    };
    let mut verdicts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut udev_ids: BTreeMap<&'static str, usize> = BTreeMap::new();
    for pkg in common::CORPUS_PACKAGES {
        for path in common::corpus_files(&root, pkg) {
            let bytes = std::fs::read(&path).unwrap();
            let (_, findings) = rules::lint(&bytes, &Policy::default());
            let pass = !rules::has_errors(&findings);
            let v = verdicts.entry(pkg).or_default();
            if pass {
                v.0 += 1
            } else {
                v.1 += 1
            }
            if *pkg == "udev" {
                findings
                    .iter()
                    .for_each(|f| *udev_ids.entry(f.rule).or_default() += 1);
            }
            let (_, t) = rules::lint(&bytes, &trusted);
            assert!(
                !rules::has_errors(&t),
                "{} fails under trusted",
                path.display()
            );
        }
    }
    for (pkg, (pass, fail)) in &verdicts {
        println!("corpus verdicts, permissions-only: {pkg}: {pass} pass, {fail} rejected");
    }
    println!("systemd's rules, finding ids: {udev_ids:?}");
    // The strict reader stops at a line's first refused token, so a line
    // with IMPORT and PROGRAM counts once, as import.
    for id in [
        "run",
        "import",
        "test",
        "env-write",
        "attr-write",
        "unconstrained-permission",
    ] {
        assert!(
            udev_ids.contains_key(id),
            "systemd's rules should trip {id}: {udev_ids:?}"
        );
    }
    // NUT's real file passes with GROUP limited to nut.
    let nut = common::corpus_files(&root, "nut-server");
    assert_eq!(nut.len(), 1);
    let (_, f) = rules::lint(&std::fs::read(&nut[0]).unwrap(), &strict);
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn nut_passes_the_lint_command_with_allow_group_nut() {
    let Some(root) = common::corpus() else { return };
    let nut = common::corpus_files(&root, "nut-server");
    let out = std::process::Command::new(common::bin())
        .args([
            "rules",
            "lint",
            "--policy",
            "permissions-only",
            "--allow-group",
            "nut",
            "--no-host",
        ])
        .arg(&nut[0])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let sysd = common::corpus_files(&root, "udev");
    let out = std::process::Command::new(common::bin())
        .args(["rules", "lint", "--no-host"])
        .args(&sysd)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("error[run]: RUN"), "{text}");
    let out = std::process::Command::new(common::bin())
        .args(["rules", "lint", "--policy", "trusted", "--no-host"])
        .args(&sysd)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
