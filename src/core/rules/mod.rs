//! udev rules: a parser that reads rules files the way systemd-udevd does
//! ([`parse`], for `trusted` sources), the allow-list reader for
//! `permissions-only` ones ([`strict`]) and their canonical form
//! ([`canon`]), and the security policy hostbridge applies to rules that
//! containers export ([`policy`]). Pure: text in, findings out.

pub mod canon;
pub mod host_checks;
pub mod parse;
pub mod policy;
pub mod strict;

use std::fmt;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing; does not block installing the file.
    Warning,
    /// Blocks installing the file.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A problem found in a rules file, located by line and column (1-based;
/// column 0 means "the whole line" or "the whole file" when line is 0).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Finding {
    /// Physical line in the file.
    pub line: u32,
    /// Byte column in that line.
    pub column: u32,
    /// Error or warning.
    pub severity: Severity,
    /// Stable identifier, e.g. `run`, `syntax` (listed in docs/security.md).
    pub rule: &'static str,
    /// What is wrong and why it matters.
    pub message: String,
}

impl Finding {
    /// Compiler-style rendering: `FILE:LINE:COL: error[rule]: message`
    /// (no position where there is none: a finding about the whole file).
    pub fn render(&self, file: &str) -> String {
        format!(
            "{}: {}[{}]: {}",
            crate::core::text::position(file, self.line.into(), self.column.into()),
            self.severity,
            self.rule,
            self.message
        )
    }
}

/// Whether any finding is an error.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

/// Parses `bytes` and applies `policy`: the pure part of linting a file.
/// Returns all findings, parser ones first, each group in file order.
pub fn lint(bytes: &[u8], policy: &policy::Policy) -> (parse::RulesFile, Vec<Finding>) {
    let file = match policy.mode {
        policy::PolicyMode::PermissionsOnly => strict::parse(bytes),
        policy::PolicyMode::Trusted => parse::parse(bytes),
    };
    let mut findings = file.findings.clone();
    findings.sort();
    findings.extend(policy::check(&file, policy));
    (file, findings)
}

/// What [`vet`] decided about one rules file.
#[derive(Debug, Clone)]
pub struct Vetted {
    /// The rules as hostbridge read them.
    pub file: parse::RulesFile,
    /// Every finding, parser ones first.
    pub findings: Vec<Finding>,
    /// The bytes to install when the file passed (no error findings): the
    /// canonical form ([`canon`]) under `permissions-only`, the source bytes
    /// unchanged under `trusted`. `None` when the file is refused.
    pub install: Option<Vec<u8>>,
}

/// Reads, checks and (when it passes) re-serialises the rules file `name`:
/// the whole pure decision about installing it. The host checks (group
/// lookups, shadowing, masking) come on top, in the host layer.
pub fn vet(name: &str, bytes: &[u8], policy: &policy::Policy) -> Vetted {
    let (file, mut findings) = lint(bytes, policy);
    let install = if has_errors(&findings) {
        None
    } else if policy.mode == policy::PolicyMode::Trusted {
        Some(bytes.to_vec())
    } else {
        match canon::render(name, bytes, &file) {
            Ok(b) => Some(b),
            Err(f) => {
                findings.push(f);
                None
            }
        }
    };
    Vetted {
        file,
        findings,
        install,
    }
}
