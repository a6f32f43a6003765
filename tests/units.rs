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

/// The Butane config as data (serde-saphyr, as the daemon reads YAML).
fn butane() -> serde_json::Value {
    let text = fs::read_to_string(root().join("units/examples/hostbridge.bu")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn file_entry<'a>(bu: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    bu["storage"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("the Butane config writes no {path}"))
}

fn repo_file(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap()
}

#[test]
fn butane_config_has_the_required_structure_and_embeds_the_repo_files() {
    let bu = butane();
    assert_eq!(bu["variant"], "fcos");
    assert!(bu["version"].as_str().unwrap().starts_with("1."));
    // The binary comes from a URL with a sha256 Ignition verifies.
    let bin = file_entry(&bu, "/usr/local/bin/hostbridge");
    assert!(
        bin["contents"]["source"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    let hash = bin["contents"]["verification"]["hash"].as_str().unwrap();
    let hex = hash.strip_prefix("sha256-").expect("sha256-HEX");
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hash}"
    );
    // 0755 is octal to Butane (YAML 1.1); a YAML 1.2 reader may see 755 or
    // the string "0755": any of them means executable.
    let mode = &bin["mode"];
    assert!(
        mode.as_f64().is_some_and(|m| m == 493.0 || m == 755.0) || mode == "0755",
        "mode {mode}"
    );
    // Every embedded file is the repository's own, byte for byte.
    for (path, rel) in [
        ("/etc/hostbridge/config.yaml", "units/examples/config.yaml"),
        (
            "/etc/containers/systemd/nut-server.container",
            "units/examples/nut-server.container",
        ),
        (
            "/etc/containers/systemd/fetchcert.container",
            "units/examples/fetchcert.container",
        ),
    ] {
        assert_eq!(
            file_entry(&bu, path)["contents"]["inline"]
                .as_str()
                .unwrap(),
            repo_file(rel),
            "{path} differs from {rel}"
        );
    }
    let units = bu["systemd"]["units"].as_array().unwrap();
    let unit = |name: &str| units.iter().find(|u| u["name"] == name).unwrap();
    let hb = unit("hostbridge.service");
    assert_eq!(hb["enabled"], true);
    assert_eq!(
        hb["contents"].as_str().unwrap(),
        repo_file("units/hostbridge.service")
    );
    assert_eq!(
        hb["dropins"][0]["contents"].as_str().unwrap(),
        repo_file("units/examples/hostbridge.service.d/10-loki-cert.conf")
    );
    let timer = unit("fetchcert.timer");
    assert_eq!(timer["enabled"], true);
    assert_eq!(
        timer["contents"].as_str().unwrap(),
        repo_file("units/examples/fetchcert.timer")
    );
    // NUT's group exists on the host, as a system group.
    let groups = bu["passwd"]["groups"].as_array().unwrap();
    assert!(
        groups
            .iter()
            .any(|g| g["name"] == "nut" && g["system"] == true)
    );
    // The loki-cert destination exists before the unit starts (ReadWritePaths=).
    let dirs = bu["storage"]["directories"].as_array().unwrap();
    assert!(dirs.iter().any(|d| d["path"] == "/etc/loki/tls"));
}

#[test]
fn the_fcos_example_config_passes_check() {
    let out = Command::new(env!("CARGO_BIN_EXE_hostbridge"))
        .arg("--config")
        .arg(root().join("units/examples/config.yaml"))
        .arg("check")
        .env("HOSTBRIDGE_CONFIG_DIRS", "")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bridge nut-udev") && text.contains("bridge loki-cert"),
        "{text}"
    );
}

/// `[Section]` → `Key=value` lines of a unit or quadlet file.
fn ini(rel: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in repo_file(rel).lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
        } else {
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{rel}: {line}"));
            out.push((section.clone(), k.to_string(), v.to_string()));
        }
    }
    out
}

fn has(entries: &[(String, String, String)], section: &str, key: &str, value: &str) -> bool {
    entries
        .iter()
        .any(|(s, k, v)| s == section && k == key && v == value)
}

#[test]
fn quadlets_are_wired_to_hostbridge() {
    // Structure only, fast and without podman: Debian 12's podman (4.3)
    // predates quadlet. The real generator runs on these files in the sid VM
    // guest (tests/vm.rs, scenario 7).
    let nut = ini("units/examples/nut-server.container");
    for (section, key, value) in [
        ("Unit", "Requires", "hostbridge.service"),
        ("Unit", "After", "hostbridge.service"),
        (
            "Container",
            "Volume",
            "/run/containers/nut/udev-rules:/export/udev-rules:z",
        ),
        ("Container", "AddDevice", "/dev/bus/usb"),
        (
            "Service",
            "ExecStartPre",
            "/usr/bin/mkdir -p /run/containers/nut/udev-rules",
        ),
        ("Install", "WantedBy", "multi-user.target"),
    ] {
        assert!(
            has(&nut, section, key, value),
            "nut-server.container lacks [{section}] {key}={value}"
        );
    }
    // The export dirs are the ones the example configs watch.
    let cfg = repo_file("units/examples/config.yaml");
    assert!(cfg.contains("source: /run/containers/nut/udev-rules"));
    assert!(cfg.contains("source: /run/containers/fetchcert/loki"));
    let fetch = ini("units/examples/fetchcert.container");
    assert!(has(
        &fetch,
        "Container",
        "Volume",
        "/run/containers/fetchcert/loki:/out:z"
    ));
    assert!(has(&fetch, "Service", "Type", "oneshot"));
    let timer = ini("units/examples/fetchcert.timer");
    assert!(has(&timer, "Timer", "OnCalendar", "daily"));
    assert!(has(&timer, "Install", "WantedBy", "timers.target"));
}
