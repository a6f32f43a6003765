//! The shipped systemd unit, checked by systemd itself: `systemd-analyze
//! verify` (directives, commands, the man page it names) and
//! `systemd-analyze security --offline=true` (the exposure score recorded in
//! docs/security.md, and a justification there for every exposure left).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The score docs/security.md records; a higher one is a regression.
const DOCUMENTED_EXPOSURE: f64 = 2.6;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `systemd-analyze ARGS`, or None (a failure under CI) when it is missing.
fn analyze(args: &[&str], env: &[(&str, &Path)]) -> Option<Output> {
    let mut c = Command::new("systemd-analyze");
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    match c.output() {
        Ok(o) => Some(o),
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must have systemd-analyze (Debian's systemd package): {e}"
            );
            eprintln!("SKIP: systemd-analyze is not installed ({e})");
            None
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let ty = e.file_type().unwrap();
        let dest = to.join(e.file_name());
        if ty.is_dir() {
            copy_dir(&e.path(), &dest);
        } else if ty.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(e.path()).unwrap(), dest).unwrap();
        } else {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    // A root with what the unit refers to: the binary where it is
    // installed, /bin/kill, systemd's own units, and the man page.
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    for d in ["usr/local/bin", "usr/bin", "etc/systemd/system", "man"] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
    fs::copy(
        env!("CARGO_BIN_EXE_hostbridge"),
        r.join("usr/local/bin/hostbridge"),
    )
    .unwrap();
    let Ok(kill) = which("kill") else { return };
    fs::copy(kill, r.join("usr/bin/kill")).unwrap();
    let units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("sysinit.target").exists());
    let Some(units) = units else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have systemd's units"
        );
        eprintln!("SKIP: systemd's units are not installed");
        return;
    };
    copy_dir(units, &r.join("usr/lib/systemd/system"));
    fs::copy(
        root().join("units/hostbridge.service"),
        r.join("etc/systemd/system/hostbridge.service"),
    )
    .unwrap();
    let man = Command::new(env!("CARGO_BIN_EXE_hostbridge"))
        .args(["man", "--out-dir"])
        .arg(r.join("man/man1"))
        .status()
        .unwrap();
    assert!(man.success());
    let Some(out) = analyze(
        &[
            "verify",
            &format!("--root={}", r.display()),
            "/etc/systemd/system/hostbridge.service",
        ],
        &[("MANPATH", &r.join("man"))],
    ) else {
        return;
    };
    // Unknown directives are only warnings: any output is a failure.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

fn which(cmd: &str) -> Result<PathBuf, ()> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map_err(|_| ())?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if p.starts_with('/') {
        Ok(PathBuf::from(p))
    } else {
        eprintln!("SKIP: {cmd} not found");
        Err(())
    }
}

#[test]
fn exposure_is_as_documented_and_every_exposure_is_justified() {
    let unit = root().join("units/hostbridge.service");
    let Some(out) = analyze(
        &[
            "security",
            "--offline=true",
            "--no-pager",
            unit.to_str().unwrap(),
        ],
        &[],
    ) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for hostbridge.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{text}"));
    eprintln!("exposure: {score}");
    assert!(
        score <= DOCUMENTED_EXPOSURE,
        "exposure rose to {score} (documented {DOCUMENTED_EXPOSURE}):\n{text}"
    );
    // Pipes in table cells are escaped in the Markdown.
    let security = fs::read_to_string(root().join("docs/security.md"))
        .unwrap()
        .replace("\\|", "|");
    assert!(
        security.contains(&format!("{DOCUMENTED_EXPOSURE} OK")),
        "docs/security.md should record the score {DOCUMENTED_EXPOSURE} OK"
    );
    let unjustified: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("✗ "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|setting| !security.contains(&format!("`{setting}`")))
        .collect();
    assert!(
        unjustified.is_empty(),
        "exposures not justified in docs/security.md: {unjustified:?}"
    );
}
