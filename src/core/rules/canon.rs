//! The canonical form of an accepted `permissions-only` rules file: what
//! hostbridge installs instead of the container's bytes. Pure.
//!
//! udevd then reads exactly what the policy judged: one rule per line, LF
//! line ends, tokens as `KEY{attr}OP"value"` joined by `, `, matches first,
//! then assignments, then GOTO; plain values from a charset that needs no
//! quoting or escaping. Comments and continuations are dropped. Each rule
//! sits on the line where it starts in the source (the lines in between
//! are empty), so udevd's messages (`62-nut-usbups.rules:14 GROUP 120`)
//! point at the container's own line. Two comment lines at the end name the
//! source file and the SHA-256 of its bytes.

use super::parse::{Rule, RulesFile, Token};
use super::{Finding, Severity};

/// Renders `file`, read from `name` whose bytes were `source`.
///
/// Fails (a finding, so the file is refused) if a value or attribute holds
/// anything outside the canonical charset: the reader should have refused
/// it first; this is the second lock on the same door.
pub fn render(name: &str, source: &[u8], file: &RulesFile) -> Result<Vec<u8>, Finding> {
    let mut lines: Vec<String> = vec![String::new(); file.physical_lines as usize];
    for rule in &file.rules {
        let text = render_rule(rule)?;
        let at = (rule.line as usize).saturating_sub(1);
        if at >= lines.len() {
            lines.resize(at + 1, String::new());
        }
        lines[at] = text;
    }
    // Trailing empty lines carry nothing.
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    let digest = crate::core::plan::Digest::of(source);
    let shown: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+@-".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect();
    lines.push(format!(
        "# hostbridge: canonical form of {shown} (sha256 {digest}), read under permissions-only."
    ));
    lines.push(
        "# Rules keep their source line numbers; comments are dropped. hostbridge rewrites this file."
            .into(),
    );
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out.into_bytes())
}

/// One rule as a canonical line.
fn render_rule(rule: &Rule) -> Result<String, Finding> {
    if let Some(label) = &rule.label {
        check(rule.line, label, false)?;
        return Ok(format!("LABEL=\"{label}\""));
    }
    let mut parts = Vec::new();
    let matches = rule.tokens.iter().filter(|t| t.op.is_match());
    let assigns = rule.tokens.iter().filter(|t| !t.op.is_match());
    for t in matches.chain(assigns) {
        parts.push(render_token(t)?);
    }
    if let Some((label, _)) = &rule.goto {
        check(rule.line, label, false)?;
        parts.push(format!("GOTO=\"{label}\""));
    }
    let line = parts.join(", ");
    if line.len() >= super::parse::LINE_MAX {
        return Err(refuse(rule.line, "the rule is too long for udevd".into()));
    }
    Ok(line)
}

fn render_token(t: &Token) -> Result<String, Finding> {
    check(t.line, &t.value, true)?;
    let attr = match &t.attr {
        Some(a) if !a.is_empty() && a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') => {
            format!("{{{a}}}")
        }
        Some(a) => {
            return Err(refuse(
                t.line,
                format!("attribute '{a}' is not a plain name"),
            ));
        }
        None => String::new(),
    };
    Ok(format!(
        "{}{attr}{}\"{}\"",
        t.key.as_str(),
        t.op.as_str(),
        t.value
    ))
}

/// A value may hold printable ASCII other than `"`, `\`, `%`, `$` and `#`;
/// blanks only in match values (`blanks`).
fn check(line: u32, v: &str, blanks: bool) -> Result<(), Finding> {
    let bad = v
        .bytes()
        .find(|&c| !(c.is_ascii_graphic() || (blanks && c == b' ')) || b"\"\\%$#".contains(&c));
    match bad {
        None => Ok(()),
        Some(c) => Err(refuse(
            line,
            format!("byte 0x{c:02x} cannot be written in the canonical form"),
        )),
    }
}

fn refuse(line: u32, message: String) -> Finding {
    Finding {
        line,
        column: 0,
        severity: Severity::Error,
        rule: "canonical",
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::strict;

    fn canon(src: &str) -> String {
        let file = strict::parse(src.as_bytes());
        assert!(file.findings.is_empty(), "{:?}", file.findings);
        String::from_utf8(render("x.rules", src.as_bytes(), &file).unwrap()).unwrap()
    }

    #[test]
    fn rules_keep_their_lines_and_comments_go() {
        let out = canon(
            "# UPS\nACTION==\"remove\", GOTO=\"end\"\n\nSUBSYSTEM==\"usb\",ATTR{idVendor}==\"051d\"  MODE=\"0660\", GROUP=\"nut\"\nLABEL=\"end\"\n",
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "");
        assert_eq!(lines[1], "ACTION==\"remove\", GOTO=\"end\"");
        assert_eq!(lines[2], "");
        assert_eq!(
            lines[3],
            "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0660\", GROUP=\"nut\""
        );
        assert_eq!(lines[4], "LABEL=\"end\"");
        assert!(lines[5].starts_with("# hostbridge: canonical form of x.rules (sha256 "));
        assert_eq!(lines.len(), 7);
    }

    #[test]
    fn a_continued_rule_becomes_one_line_and_matches_come_first() {
        let out = canon("MODE=\"0660\", \\\n  SUBSYSTEM==\"usb\", \\\n ATTR{idVendor}==\"051d\"\n");
        assert_eq!(
            out.lines().next().unwrap(),
            "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0660\""
        );
        assert!(out.lines().nth(1).unwrap().starts_with("# hostbridge: "));
    }

    #[test]
    fn the_canonical_form_reads_back_to_the_same_rules() {
        let src = "SUBSYSTEM!=\"usb\", GOTO=\"e\"\nATTRS{idVendor}==\"0463|051d\", KERNEL==\"hiddev*\", MODE=\"0660\", GROUP=\"nut\", TAG+=\"uaccess\"\nLABEL=\"e\"\n";
        let once = canon(src);
        let twice = canon(&once);
        let body = |s: &str| {
            s.lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(body(&once), body(&twice));
        let a = strict::parse(src.as_bytes());
        let b = strict::parse(once.as_bytes());
        let strip = |f: &RulesFile| {
            f.rules
                .iter()
                .map(|r| {
                    (
                        r.line,
                        r.label.clone(),
                        r.goto.clone(),
                        r.tokens
                            .iter()
                            .map(|t| (t.key, t.attr.clone(), t.op, t.value.clone()))
                            .collect::<Vec<_>>(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&a), strip(&b));
    }

    #[test]
    fn an_unsafe_value_is_refused_even_if_the_reader_let_it_through() {
        let mut file =
            strict::parse(b"SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0660\"\n");
        file.rules[0].tokens[0].value = "usb\"\nRUN+=\"x".into();
        let e = render("x.rules", b"", &file).unwrap_err();
        assert_eq!(e.rule, "canonical");
    }
}
