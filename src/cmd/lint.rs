//! `hostbridge rules lint`: the checks the daemon runs on a rules file, on
//! files given on the command line. Shell code: reads files, prints
//! findings (and with `--print` what would be installed).
//!
//! With `--bridge NAME` the verdict is the daemon's for that bridge: its
//! policy, allow lists, host checks and `udevadm verify` come from the
//! config. Without it, the policy comes from the flags, and the host checks
//! (GROUP/OWNER names on this host, shadowing, masking of system rules,
//! SYMLINK names already in /dev) run when `--host` is given or, by
//! default, when run as root (`--no-host` turns them off).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::args::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE, LintArgs, LintFormat, LintPolicy};
use crate::config::{self, Config, RulesChecks};
use crate::core::rules::policy::{DEFAULT_SUBSYSTEMS, Policy, PolicyMode};
use crate::core::rules::{Finding, Severity};
use crate::host::preflight::HostChecks;
use crate::sync::{Verifier, host_checks, host_checks_in, vet_rules};

#[derive(Serialize)]
struct JsonFinding<'a> {
    file: String,
    line: u32,
    column: u32,
    severity: String,
    rule: &'a str,
    message: &'a str,
}

/// The policy `args` describe.
pub(crate) fn policy(args: &LintArgs) -> Policy {
    Policy {
        mode: match args.policy {
            LintPolicy::PermissionsOnly => PolicyMode::PermissionsOnly,
            LintPolicy::Trusted => PolicyMode::Trusted,
        },
        subsystems: if args.allow_subsystems.is_empty() {
            DEFAULT_SUBSYSTEMS.iter().map(|s| s.to_string()).collect()
        } else {
            args.allow_subsystems.clone()
        },
        groups: args.allow_groups.clone(),
        owners: args.allow_owners.clone(),
        env: args.allow_env.clone(),
        symlinks: args.allow_symlinks.clone(),
    }
}

/// How one lint run checks files: the daemon's way for a bridge, or the
/// flags' way.
struct Checker {
    checks: RulesChecks,
    host: Option<HostChecks>,
    /// This run's host lookups (each name once).
    lookups: crate::host::preflight::Host,
    verifier: Option<Verifier>,
}

impl Checker {
    /// From a bridge of `config` (the daemon's verdict).
    fn for_bridge(config: &Config, name: &str) -> Result<Checker, String> {
        let bridge = config
            .bridges
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = config.bridges.iter().map(|b| b.name.as_str()).collect();
                format!(
                    "no bridge named {name:?} in the config; its bridges: {}",
                    names.join(", ")
                )
            })?;
        let checks = bridge
            .rules
            .clone()
            .ok_or_else(|| format!("bridge {name:?} is not a udev-rules bridge"))?;
        Ok(Checker {
            host: Some(host_checks(config, &checks)),
            lookups: Default::default(),
            verifier: Some(Verifier::of(config)),
            checks,
        })
    }

    /// From the flags.
    fn from_args(args: &LintArgs) -> Checker {
        let checks = RulesChecks {
            policy: policy(args),
            allow_unknown_groups: args.allow_unknown_groups,
            allow_non_system_groups: args.allow_non_system_groups,
            revoke_restore: true,
            allow_override: args.allow_override.clone(),
        };
        let host_on = !args.no_host && (args.host || nix::unistd::geteuid().is_root());
        let system: Vec<PathBuf> = config::DEFAULT_SYSTEM_UDEV_RULES_DIRS
            .iter()
            .map(PathBuf::from)
            .collect();
        let host = host_on
            .then(|| host_checks_in(&checks, &args.etc_rules_dir, &system, Path::new("/dev")));
        // verify stages a copy in a private dir of its own.
        let verifier = host_on.then(private_stage).flatten().map(|stage| Verifier {
            udevadm: config::DEFAULT_UDEVADM.into(),
            stage,
            timeout: config::DEFAULT_VERIFY_TIMEOUT,
            verified: None,
        });
        Checker {
            checks,
            host,
            lookups: Default::default(),
            verifier,
        }
    }

    /// Findings for one file, and the bytes the daemon would install.
    fn file(&self, path: &Path) -> (Vec<Finding>, Option<Vec<u8>>) {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                let f = Finding {
                    line: 0,
                    column: 0,
                    severity: Severity::Error,
                    rule: "io",
                    message: format!("cannot read: {e}"),
                };
                return (vec![f], None);
            }
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let vetted = vet_rules(
            self.verifier.as_ref(),
            &self.checks,
            self.host.as_ref().map(|h| (h, &self.lookups)),
            &name,
            &bytes,
            &|_| true,
        );
        (vetted.findings, vetted.install)
    }
}

/// A new dir of our own (0700) under the temp dir to stage candidates for
/// `udevadm verify`: created here, never one that already exists, so
/// nobody else can swap the staged file for a link or a FIFO before verify
/// reads it. `None` (verify skipped, said on stderr) when none can be made.
fn private_stage() -> Option<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    for n in 0..16 {
        let p = std::env::temp_dir().join(format!("hostbridge-lint-{}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => return Some(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                eprintln!(
                    "hostbridge: udevadm verify skipped: cannot create {}: {e}",
                    p.display()
                );
                return None;
            }
        }
    }
    eprintln!("hostbridge: udevadm verify skipped: no private dir could be made in the temp dir");
    None
}

/// Lints every file; prints findings; returns the exit code. `config` is
/// the loaded config when `--bridge` is given.
pub(crate) fn run(args: &LintArgs, config: Option<&Config>) -> u8 {
    let checker = match (config, &args.bridge) {
        (Some(c), Some(name)) => match Checker::for_bridge(c, name) {
            Ok(ch) => ch,
            Err(e) => {
                // A name the config does not have: a usage error, as for
                // `sync --bridge` and `status --bridge`.
                eprintln!("hostbridge rules lint: {e}");
                return EXIT_USAGE;
            }
        },
        _ => Checker::from_args(args),
    };
    let mut all: Vec<(String, Finding)> = Vec::new();
    let mut printed = Vec::new();
    for path in &args.files {
        let shown = path.display().to_string();
        let (found, install) = checker.file(path);
        all.extend(found.into_iter().map(|f| (shown.clone(), f)));
        if let Some(b) = install {
            printed.push(b);
        }
    }
    if let Some(stage) = checker.verifier.as_ref().map(|v| &v.stage)
        && config.is_none()
    {
        let _ = std::fs::remove_dir(stage);
    }
    let errors = all
        .iter()
        .filter(|(_, f)| f.severity == Severity::Error)
        .count();
    print_findings(args, &all, errors);
    if args.print && errors == 0 {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for b in &printed {
            let _ = out.write_all(b);
        }
    }
    if errors > 0 { EXIT_FAILURE } else { EXIT_OK }
}

/// The findings, as text or JSON: on stdout, or on stderr with `--print`
/// (stdout then carries the installed form).
fn print_findings(args: &LintArgs, all: &[(String, Finding)], errors: usize) {
    match args.format {
        LintFormat::Text => {
            for (file, f) in all {
                let line = crate::logging::escape_for_terminal(&f.render(file));
                if args.print {
                    eprintln!("{line}");
                } else {
                    println!("{line}");
                }
            }
            use crate::core::text::plural;
            eprintln!(
                "{}: {}, {}",
                plural(args.files.len(), "file"),
                plural(errors, "error"),
                plural(all.len() - errors, "warning")
            );
        }
        LintFormat::Json => {
            let out: Vec<JsonFinding> = all
                .iter()
                .map(|(file, f)| JsonFinding {
                    file: file.clone(),
                    line: f.line,
                    column: f.column,
                    severity: f.severity.to_string(),
                    rule: f.rule,
                    message: &f.message,
                })
                .collect();
            let text = serde_json::to_string_pretty(&out).unwrap_or_else(|_| "[]".into());
            if args.print {
                eprintln!("{text}");
            } else {
                println!("{text}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_verify_stage_is_never_a_dir_that_was_already_there() {
        let taken = std::env::temp_dir().join(format!("hostbridge-lint-{}-0", std::process::id()));
        std::fs::create_dir_all(&taken).unwrap();
        let stage = private_stage().unwrap();
        assert_ne!(stage, taken);
        let mode = std::fs::metadata(&stage).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::remove_dir(&stage).unwrap();
        std::fs::remove_dir(&taken).unwrap();
    }
}
