//! Host checks of a udev rules file before it is installed. Host layer:
//! asks the host's user and group databases (through NSS, as udevd does),
//! looks for a file of the same name that would shadow it, and runs
//! `udevadm verify` where it exists.
//!
//! Why these checks: udevd resolves GROUP and OWNER names when it loads the
//! rules. An unknown name makes it log "Unknown group … ignoring" and drop the
//! *whole line*, MODE included, so the device silently keeps its old
//! permissions. systemd 258 and 259 (Fedora CoreOS 43) also drop lines whose
//! group is not a system group (gid ≥ 1000). And a file of the same name in
//! /etc/udev/rules.d replaces ours entirely.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::unistd::{Group, User};

use crate::core::rules::parse::{Key, RulesFile};
use crate::core::rules::{Finding, Severity};

/// First id of regular (non-system) users and groups.
pub const FIRST_REGULAR_ID: u32 = 1000;

/// What the host checks may accept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostChecks {
    /// Accept GROUP/OWNER names this host does not know.
    pub allow_unknown_groups: bool,
    /// Accept GROUP/OWNER names with ids ≥ 1000.
    pub allow_non_system_groups: bool,
    /// Dir whose same-named files shadow ours (`/etc/udev/rules.d`).
    pub etc_rules_dir: Option<PathBuf>,
    /// The system's rules dirs, whose same-named files ours would mask.
    pub system_rules_dirs: Vec<PathBuf>,
    /// Names that may mask a system file (`allow_override`).
    pub allow_override: Vec<String>,
    /// /dev, where a SYMLINK name must not already be a real node or dir.
    pub dev_root: Option<PathBuf>,
}

/// Checks GROUP/OWNER names and shadowing for the rules file `name`.
pub fn check(name: &str, file: &RulesFile, checks: &HostChecks) -> Vec<Finding> {
    let mut out = Vec::new();
    for t in file.rules.iter().flat_map(|r| &r.tokens) {
        let v = t.value.as_str();
        let literal =
            !v.is_empty() && !v.contains(['%', '$']) && !v.bytes().all(|c| c.is_ascii_digit());
        if !literal || t.op.is_match() {
            continue;
        }
        let (kind, id) = match t.key {
            Key::Group => (
                "group",
                Group::from_name(v).ok().flatten().map(|g| g.gid.as_raw()),
            ),
            Key::Owner => (
                "user",
                User::from_name(v).ok().flatten().map(|u| u.uid.as_raw()),
            ),
            _ => continue,
        };
        let key = t.key.as_str();
        let prefix = if t.key == Key::Group {
            "group"
        } else {
            "owner"
        };
        let found = |rule: &'static str, message: String| Finding {
            line: t.line,
            column: t.column,
            severity: Severity::Error,
            rule,
            message,
        };
        match id {
            None if !checks.allow_unknown_groups => out.push(found(
                if prefix == "group" { "group-unknown" } else { "owner-unknown" },
                format!("{key}=\"{v}\": no such {kind} on this host; udevd would drop this whole line (MODE included) and the device would keep its old permissions"),
            )),
            Some(id) if id >= FIRST_REGULAR_ID && !checks.allow_non_system_groups => out.push(found(
                if prefix == "group" { "group-non-system" } else { "owner-non-system" },
                format!("{key}=\"{v}\" has id {id} (not a system {kind}); systemd 258-259, as on Fedora CoreOS 43, drops such lines"),
            )),
            _ => {}
        }
    }
    for dir in &checks.system_rules_dirs {
        if dir.join(name).symlink_metadata().is_ok()
            && !checks.allow_override.iter().any(|n| n == name)
        {
            out.push(Finding {
                line: 0,
                column: 0,
                severity: Severity::Error,
                rule: "masks-system-rules",
                message: format!(
                    "{} exists: a file of the same name in /run/udev/rules.d replaces it, so installing this one would switch the system's rules off; rename the file, or list it in the bridge's allow_override if that is the intent",
                    dir.join(name).display()
                ),
            });
            break;
        }
    }
    if let Some(dev) = &checks.dev_root {
        out.extend(symlink_targets(file, dev));
    }
    if let Some(dir) = &checks.etc_rules_dir
        && dir.join(name).symlink_metadata().is_ok()
    {
        out.push(Finding {
            line: 0,
            column: 0,
            severity: Severity::Warning,
            rule: "shadowed",
            message: format!(
                "{} exists and takes precedence: udevd ignores the copy hostbridge installs",
                dir.join(name).display()
            ),
        });
    }
    out
}

/// SYMLINK names that already exist under `dev` as something other than a
/// symlink: udevd would replace a node or directory the system made.
fn symlink_targets(file: &RulesFile, dev: &Path) -> Vec<Finding> {
    let mut out = Vec::new();
    for t in file.rules.iter().flat_map(|r| &r.tokens) {
        if t.key != Key::Symlink || t.op.is_match() {
            continue;
        }
        for name in t.value.split_whitespace() {
            let exists = dev
                .join(name)
                .symlink_metadata()
                .is_ok_and(|m| !m.file_type().is_symlink());
            if exists {
                out.push(Finding {
                    line: t.line,
                    column: t.column,
                    severity: Severity::Error,
                    rule: "symlink-exists",
                    message: format!(
                        "{} exists and is not a link: udevd would replace it",
                        dev.join(name).display()
                    ),
                });
            }
        }
    }
    out
}

/// Whether `udevadm verify` exists (systemd ≥ 254).
pub fn verify_available(udevadm: &Path) -> bool {
    super::child::command(udevadm)
        .args(["verify", "--help"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `udevadm verify --resolve-names=early` on a candidate file and
/// turns its complaints into findings. The file must already be written to
/// `path`.
///
/// Names are resolved as udevd resolves them (early, at parse time): with
/// `--resolve-names=never`, verify ignores every GROUP=/OWNER= by name and
/// calls a line that only sets a group "no effect", which refused valid NUT
/// rules on systemd >= 254 (found by the VM test, scenario 6).
pub fn verify(udevadm: &Path, path: &Path) -> Vec<Finding> {
    let output = super::child::command(udevadm)
        .args(["verify", "--resolve-names=early", "--no-summary"])
        .arg(path)
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            return vec![Finding {
                line: 0,
                column: 0,
                severity: Severity::Error,
                rule: "udevadm-verify",
                message: format!("cannot run {} verify: {e}", udevadm.display()),
            }];
        }
    };
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    let mut out = parse_verify_output(&text, path);
    if !output.status.success() && out.is_empty() {
        out.push(Finding {
            line: 0,
            column: 0,
            severity: Severity::Error,
            rule: "udevadm-verify",
            message: format!("udevadm verify failed ({}): {}", output.status, text.trim()),
        });
    }
    out
}

/// Parses `udevadm verify` lines of the form `PATH:LINE MESSAGE` (pure).
pub fn parse_verify_output(text: &str, path: &Path) -> Vec<Finding> {
    let prefix = format!("{}:", path.display());
    text.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix(&prefix)?;
            let (num, msg) = rest.split_once(' ')?;
            let line: u32 = num.parse().ok()?;
            let style = msg.starts_with("style:");
            Some(Finding {
                line,
                column: 0,
                severity: if style {
                    Severity::Warning
                } else {
                    Severity::Error
                },
                rule: "udevadm-verify",
                message: msg.trim().to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::parse::parse;

    #[test]
    fn verify_output_is_parsed() {
        let path = Path::new("/run/hostbridge/verify/x.rules");
        let text = "/run/hostbridge/verify/x.rules:3 Invalid key/value pair, ignoring.\n/run/hostbridge/verify/x.rules:5 style: a comma between tokens is expected.\nother noise\n";
        let f = parse_verify_output(text, path);
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].line, f[0].severity), (3, Severity::Error));
        assert_eq!(f[1].severity, Severity::Warning);
    }

    #[test]
    fn root_group_exists_and_made_up_ones_do_not() {
        let file = parse(b"SUBSYSTEM==\"usb\", GROUP=\"root\", OWNER=\"root\"\nGROUP=\"hb-no-such-group-x\"\nOWNER=\"hb-no-such-user-x\"\n");
        let ids: Vec<&str> = check("x.rules", &file, &HostChecks::default())
            .iter()
            .map(|f| f.rule)
            .collect();
        assert_eq!(ids, ["group-unknown", "owner-unknown"]);
        let lax = HostChecks {
            allow_unknown_groups: true,
            ..HostChecks::default()
        };
        assert!(check("x.rules", &file, &lax).is_empty());
    }

    #[test]
    fn shadowing_file_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("62-nut.rules"), "").unwrap();
        let checks = HostChecks {
            etc_rules_dir: Some(dir.path().to_path_buf()),
            ..HostChecks::default()
        };
        let f = check("62-nut.rules", &parse(b""), &checks);
        assert_eq!((f[0].rule, f[0].severity), ("shadowed", Severity::Warning));
        assert!(check("63-other.rules", &parse(b""), &checks).is_empty());
    }
}
