//! udev rules: a parser that reads rules files the way systemd-udevd does
//! ([`parse`]), and the security policy hostbridge applies to rules that
//! containers export ([`policy`]). Pure: text in, findings out.

pub mod parse;
pub mod policy;

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
    /// Compiler-style rendering: `FILE:LINE:COL: error[rule]: message`.
    pub fn render(&self, file: &str) -> String {
        format!(
            "{file}:{}:{}: {}[{}]: {}",
            self.line, self.column, self.severity, self.rule, self.message
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
    let file = parse::parse(bytes);
    let mut findings = file.findings.clone();
    findings.sort();
    findings.extend(policy::check(&file, policy));
    (file, findings)
}
