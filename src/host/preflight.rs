//! The host's side of the rules file checks: the real answers to
//! `core::rules::host_checks` (users and groups through NSS, as udevd
//! resolves them; paths not followed), and `udevadm verify` where it
//! exists. Host layer: the decisions are in the core.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::rules::host_checks::{self, HostLookups};
use crate::core::rules::parse::RulesFile;
use crate::core::rules::{Finding, Severity};

pub(crate) use crate::core::rules::host_checks::HostChecks;

/// The real host, for [`host_checks::check`]: users and groups through NSS
/// (as udevd resolves them), paths not followed. Each name is looked up
/// once per `Host` (one per sync): NSS opens and reads /etc/group for
/// every lookup, and many rules files name the same group. Likewise each
/// dir asked about (the /etc and system rules dirs, asked about every
/// rules file) is listed once per `Host`, not looked up by path a file at
/// a time.
#[derive(Default)]
pub(crate) struct Host {
    groups: Memo,
    users: Memo,
    dirs: Listings,
}

/// The names in each dir listed so far; `None`: it could not be listed
/// (missing, or no permission), so its paths are looked up one by one.
type Listings = std::sync::Mutex<
    std::collections::HashMap<PathBuf, Option<std::collections::HashSet<OsString>>>,
>;

/// Answers by name.
type Memo = std::sync::Mutex<std::collections::HashMap<String, Option<u32>>>;

fn memo(m: &Memo, name: &str, look: impl FnOnce(&str) -> Option<u32>) -> Option<u32> {
    let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(id) = m.get(name) {
        return *id;
    }
    let id = look(name);
    m.insert(name.to_string(), id);
    id
}

impl HostLookups for Host {
    fn group_id(&self, name: &str) -> Option<u32> {
        memo(&self.groups, name, super::nss::gid_of)
    }
    fn user_id(&self, name: &str) -> Option<u32> {
        memo(&self.users, name, super::nss::uid_of)
    }
    fn exists(&self, path: &Path) -> bool {
        if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
            let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
            // Asked for every rules file: the dir's path is copied only the
            // first time.
            if !dirs.contains_key(dir) {
                dirs.insert(dir.to_path_buf(), names_in(dir));
            }
            if let Some(Some(names)) = dirs.get(dir) {
                return names.contains(name);
            }
        }
        path.symlink_metadata().is_ok()
    }
    fn is_real(&self, path: &Path) -> bool {
        path.symlink_metadata()
            .is_ok_and(|m| !m.file_type().is_symlink())
    }
}

/// The names in `dir` (entries of any kind, as `lstat` sees them), or
/// `None` if it cannot be listed. Listed twice, and the names of both
/// kept: a listing is not atomic against a rename over an existing name
/// (a package manager putting a new copy of a system rules file in
/// place), which a file system may leave out of a listing running at that
/// moment; a name in place before and after is in at least one of two
/// listings unless it is replaced during each.
fn names_in(dir: &Path) -> Option<std::collections::HashSet<OsString>> {
    let list = |dir: &Path| -> std::io::Result<Vec<OsString>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect()
    };
    let mut names: std::collections::HashSet<OsString> = list(dir).ok()?.into_iter().collect();
    names.extend(list(dir).ok()?);
    Some(names)
}

/// Checks GROUP/OWNER names and shadowing for the rules file `name` against
/// this host ([`host_checks::check`] with `host`).
pub(crate) fn check(
    name: &str,
    file: &RulesFile,
    checks: &HostChecks,
    host: &Host,
) -> Vec<Finding> {
    host_checks::check(name, file, checks, host)
}

/// Whether `udevadm verify` exists (systemd ≥ 254).
pub(crate) fn verify_available(udevadm: &Path) -> bool {
    let mut cmd = super::child::command(udevadm);
    cmd.args(["verify", "--help"]);
    let probe = crate::config::DEFAULT_VERIFY_TIMEOUT;
    super::child::output_within(cmd, probe).is_ok_and(|o| o.status.success())
}

/// Runs `udevadm verify --resolve-names=early` on a candidate file and
/// turns its complaints into findings. The file must already be written to
/// `path`. Past `timeout` (`verify_timeout`) it is killed, and that is a
/// finding: the file is refused.
///
/// Names are resolved as udevd resolves them (early, at parse time): with
/// `--resolve-names=never`, verify ignores every GROUP=/OWNER= by name and
/// calls a line that only sets a group "no effect", which refused valid NUT
/// rules on systemd >= 254 (found by the VM test, scenario 6).
pub(crate) fn verify(udevadm: &Path, path: &Path, timeout: Duration) -> Vec<Finding> {
    let mut cmd = super::child::command(udevadm);
    cmd.args(["verify", "--resolve-names=early", "--no-summary"])
        .arg(path);
    let output = super::child::output_within(cmd, timeout);
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
pub(crate) fn parse_verify_output(text: &str, path: &Path) -> Vec<Finding> {
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
        let ids: Vec<&str> = check("x.rules", &file, &HostChecks::default(), &Host::default())
            .iter()
            .map(|f| f.rule)
            .collect();
        assert_eq!(ids, ["group-unknown", "owner-unknown"]);
        let lax = HostChecks {
            allow_unknown_groups: true,
            ..HostChecks::default()
        };
        assert!(check("x.rules", &file, &lax, &Host::default()).is_empty());
    }

    /// `exists` answers from one listing of the dir as `lstat` would, for
    /// every kind of entry, a dangling symlink included, and for a dir
    /// that is missing; a name made after the listing waits for the next
    /// `Host` (the next sync).
    #[test]
    fn exists_answers_from_a_listing_as_lstat_would() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("file.rules"), "").unwrap();
        std::fs::create_dir(d.join("dir.rules")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", d.join("dangling.rules")).unwrap();
        nix::unistd::mkfifo(&d.join("fifo.rules"), nix::sys::stat::Mode::S_IRUSR).unwrap();
        let host = Host::default();
        for name in [
            "file.rules",
            "dir.rules",
            "dangling.rules",
            "fifo.rules",
            "missing.rules",
        ] {
            let path = d.join(name);
            assert_eq!(
                host.exists(&path),
                path.symlink_metadata().is_ok(),
                "{name}"
            );
        }
        assert!(!host.exists(&d.join("no-such-dir/file.rules")));
        std::fs::write(d.join("later.rules"), "").unwrap();
        assert!(!host.exists(&d.join("later.rules")));
        assert!(Host::default().exists(&d.join("later.rules")));
    }

    #[test]
    fn shadowing_file_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("62-nut.rules"), "").unwrap();
        let checks = HostChecks {
            etc_rules_dir: Some(dir.path().to_path_buf()),
            ..HostChecks::default()
        };
        let f = check("62-nut.rules", &parse(b""), &checks, &Host::default());
        assert_eq!((f[0].rule, f[0].severity), ("shadowed", Severity::Warning));
        assert!(check("63-other.rules", &parse(b""), &checks, &Host::default()).is_empty());
    }
}
