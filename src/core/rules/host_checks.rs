//! The host checks of a udev rules file, decided here with the host's
//! answers passed in ([`HostLookups`]), as `core::usb::verdict` does. Pure.
//!
//! Why these checks: udevd resolves GROUP and OWNER names when it loads the
//! rules. An unknown name makes it log "Unknown group … ignoring" and drop the
//! *whole line*, MODE included, so the device silently keeps its old
//! permissions. systemd 258 and 259 (Fedora CoreOS 43) also drop lines whose
//! group is not a system group (gid ≥ 1000). A file of the same name in
//! /etc/udev/rules.d replaces ours entirely; one of ours of the same name as
//! a system file masks it; a SYMLINK onto an existing node replaces it.

use std::path::{Path, PathBuf};

use super::parse::{Key, RulesFile};
use super::{Finding, Severity};

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

impl HostChecks {
    /// The checks for a `policy: trusted` bridge when `trusted`: its rules
    /// may name any group or user (the operator vouches for them), while
    /// masking, shadowing and SYMLINK targets still count.
    pub fn trusting(mut self, trusted: bool) -> HostChecks {
        if trusted {
            self.allow_unknown_groups = true;
            self.allow_non_system_groups = true;
        }
        self
    }
}

/// What the checks ask of the host; the real answers are in
/// `host::preflight::Host`, tests pass their own.
pub trait HostLookups {
    /// The gid of group `name`, if the host knows it.
    fn group_id(&self, name: &str) -> Option<u32>;
    /// The uid of user `name`, if the host knows it.
    fn user_id(&self, name: &str) -> Option<u32>;
    /// Whether `path` exists (a symlink counts, not followed).
    fn exists(&self, path: &Path) -> bool;
    /// Whether `path` exists as something other than a symlink.
    fn is_real(&self, path: &Path) -> bool;
}

/// Checks GROUP/OWNER names, masking, shadowing and SYMLINK targets of the
/// rules file `name`, asking `host`.
pub fn check(
    name: &str,
    file: &RulesFile,
    checks: &HostChecks,
    host: &dyn HostLookups,
) -> Vec<Finding> {
    let mut out = names_exist(file, checks, host);
    out.extend(masks_system_rules(name, checks, host));
    if let Some(dev) = &checks.dev_root {
        out.extend(symlink_targets(file, dev, host));
    }
    if let Some(dir) = &checks.etc_rules_dir
        && host.exists(&dir.join(name))
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

/// Every literal GROUP= and OWNER= names a system group or user of this
/// host (unless the bridge allows otherwise).
fn names_exist(file: &RulesFile, checks: &HostChecks, host: &dyn HostLookups) -> Vec<Finding> {
    let mut out = Vec::new();
    for t in file.rules.iter().flat_map(|r| &r.tokens) {
        let v = t.value.as_str();
        let literal =
            !v.is_empty() && !v.contains(['%', '$']) && !v.bytes().all(|c| c.is_ascii_digit());
        if !literal || t.op.is_match() {
            continue;
        }
        let (kind, id) = match t.key {
            Key::Group => ("group", host.group_id(v)),
            Key::Owner => ("user", host.user_id(v)),
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
    out
}

/// A file named like one of the system's rules files replaces it.
fn masks_system_rules(name: &str, checks: &HostChecks, host: &dyn HostLookups) -> Option<Finding> {
    for dir in &checks.system_rules_dirs {
        if host.exists(&dir.join(name)) && !checks.allow_override.iter().any(|n| n == name) {
            return Some(Finding {
                line: 0,
                column: 0,
                severity: Severity::Error,
                rule: "masks-system-rules",
                message: format!(
                    "{} exists: a file of the same name in /run/udev/rules.d replaces it, so installing this one would switch the system's rules off; rename the file, or list it in the bridge's allow_override if that is the intent",
                    dir.join(name).display()
                ),
            });
        }
    }
    None
}

/// SYMLINK names that already exist under `dev` as something other than a
/// symlink: udevd would replace a node or directory the system made.
fn symlink_targets(file: &RulesFile, dev: &Path, host: &dyn HostLookups) -> Vec<Finding> {
    let mut out = Vec::new();
    for t in file.rules.iter().flat_map(|r| &r.tokens) {
        if t.key != Key::Symlink || t.op.is_match() {
            continue;
        }
        for name in t.value.split_whitespace() {
            if host.is_real(&dev.join(name)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::parse::parse;

    /// A made-up host: groups and users by name, and the paths that exist
    /// (`true`: a real node or file, `false`: a symlink).
    struct Fake {
        ids: &'static [(&'static str, u32)],
        paths: &'static [(&'static str, bool)],
    }

    impl HostLookups for Fake {
        fn group_id(&self, name: &str) -> Option<u32> {
            self.ids.iter().find(|(n, _)| *n == name).map(|(_, id)| *id)
        }
        fn user_id(&self, name: &str) -> Option<u32> {
            self.group_id(name)
        }
        fn exists(&self, path: &Path) -> bool {
            self.paths.iter().any(|(p, _)| Path::new(p) == path)
        }
        fn is_real(&self, path: &Path) -> bool {
            self.paths
                .iter()
                .any(|(p, real)| Path::new(p) == path && *real)
        }
    }

    const HOST: Fake = Fake {
        ids: &[("nut", 57), ("root", 0), ("alice", 1000)],
        paths: &[
            ("/etc/udev/rules.d/62-shadowed.rules", true),
            ("/usr/lib/udev/rules.d/50-udev-default.rules", true),
            ("/dev/ups", true),
            ("/dev/old-link", false),
        ],
    };

    fn checks() -> HostChecks {
        HostChecks {
            etc_rules_dir: Some("/etc/udev/rules.d".into()),
            system_rules_dirs: vec!["/usr/lib/udev/rules.d".into()],
            dev_root: Some("/dev".into()),
            ..HostChecks::default()
        }
    }

    #[test]
    fn table() {
        // (file name, rules, rule ids found)
        let cases: &[(&str, &str, &[&str])] = &[
            ("62-nut.rules", "GROUP=\"nut\", OWNER=\"root\"", &[]),
            ("62-nut.rules", "GROUP=\"nosuch\"", &["group-unknown"]),
            ("62-nut.rules", "OWNER=\"nosuch\"", &["owner-unknown"]),
            ("62-nut.rules", "GROUP=\"alice\"", &["group-non-system"]),
            ("62-nut.rules", "OWNER=\"alice\"", &["owner-non-system"]),
            // Not literal names: numbers, substitutions, matches.
            ("62-nut.rules", "GROUP=\"1000\", OWNER=\"%E{X}\"", &[]),
            ("62-nut.rules", "GROUP==\"nosuch\", GROUP=\"nut\"", &[]),
            ("62-shadowed.rules", "", &["shadowed"]),
            ("50-udev-default.rules", "", &["masks-system-rules"]),
            ("62-nut.rules", "SYMLINK+=\"ups\"", &["symlink-exists"]),
            ("62-nut.rules", "SYMLINK+=\"old-link new-link\"", &[]),
        ];
        for (name, text, want) in cases {
            let file = parse(text.as_bytes());
            let got: Vec<&str> = check(name, &file, &checks(), &HOST)
                .iter()
                .map(|f| f.rule)
                .collect();
            assert_eq!(got, *want, "{name}: {text}");
        }
    }

    #[test]
    fn trusted_lifts_the_name_checks_only() {
        let file = parse(b"GROUP=\"nosuch\", OWNER=\"alice\", SYMLINK+=\"ups\"");
        let ids = |c: &HostChecks| -> Vec<&str> {
            check("50-udev-default.rules", &file, c, &HOST)
                .iter()
                .map(|f| f.rule)
                .collect()
        };
        assert_eq!(
            ids(&checks().trusting(false)),
            [
                "group-unknown",
                "owner-non-system",
                "masks-system-rules",
                "symlink-exists"
            ]
        );
        assert_eq!(
            ids(&checks().trusting(true)),
            ["masks-system-rules", "symlink-exists"]
        );
    }

    #[test]
    fn the_allow_settings_lift_their_checks() {
        let lax = HostChecks {
            allow_unknown_groups: true,
            allow_non_system_groups: true,
            allow_override: vec!["50-udev-default.rules".into()],
            ..checks()
        };
        for (name, text) in [
            ("62-nut.rules", "GROUP=\"nosuch\", OWNER=\"alice\""),
            ("50-udev-default.rules", ""),
        ] {
            assert!(
                check(name, &parse(text.as_bytes()), &lax, &HOST).is_empty(),
                "{name}"
            );
        }
    }
}
