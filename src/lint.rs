//! `hostbridge rules lint`: the rules checks the daemon runs, on files given
//! on the command line. Shell code: reads files and prints findings.

use std::path::Path;

use serde::Serialize;

use crate::cli::{EXIT_FAILURE, EXIT_OK, LintArgs, LintFormat, LintPolicy};
use crate::core::rules::policy::{DEFAULT_SUBSYSTEMS, Policy, PolicyMode};
use crate::core::rules::{self, Finding, Severity};
use crate::host::preflight::{self, HostChecks};

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
pub fn policy(args: &LintArgs) -> Policy {
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

/// Lints every file; prints findings; returns the exit code.
pub fn run(args: &LintArgs) -> u8 {
    let policy = policy(args);
    let host = HostChecks {
        allow_unknown_groups: args.allow_unknown_groups,
        allow_non_system_groups: args.allow_non_system_groups,
        etc_rules_dir: Some(args.etc_rules_dir.clone()),
    };
    let mut all: Vec<(String, Finding)> = Vec::new();
    for path in &args.files {
        let shown = path.display().to_string();
        for f in lint_file(path, &policy, args.host.then_some(&host)) {
            all.push((shown.clone(), f));
        }
    }
    let errors = all
        .iter()
        .filter(|(_, f)| f.severity == Severity::Error)
        .count();
    match args.format {
        LintFormat::Text => {
            for (file, f) in &all {
                println!("{}", f.render(file));
            }
            eprintln!(
                "{} files: {errors} errors, {} warnings",
                args.files.len(),
                all.len() - errors
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
            println!(
                "{}",
                serde_json::to_string_pretty(&out).unwrap_or_else(|_| "[]".into())
            );
        }
    }
    if errors > 0 { EXIT_FAILURE } else { EXIT_OK }
}

/// All findings for one file (an unreadable file is one `io` error).
pub fn lint_file(path: &Path, policy: &Policy, host: Option<&HostChecks>) -> Vec<Finding> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            return vec![Finding {
                line: 0,
                column: 0,
                severity: Severity::Error,
                rule: "io",
                message: format!("cannot read: {e}"),
            }];
        }
    };
    let (file, mut findings) = rules::lint(&bytes, policy);
    if let Some(host) = host {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        findings.extend(preflight::check(&name, &file, host));
    }
    findings
}
