//! A udev rules parser that follows systemd-udevd's reader (udev-rules.c):
//! physical lines of at most 16 KiB (a longer one makes udevd refuse the
//! whole file), leading whitespace skipped, `#` lines ignored even inside a
//! continuation, a trailing backslash joining the next line, then
//! `KEY[{attr}] OP [e|i]"value"` tokens separated by commas and/or
//! whitespace. Values must be double-quoted; `\"` escapes a quote, and
//! `e"…"` strings take C escapes. A malformed or unknown token makes udevd
//! drop the whole line: that is an error here. What udevd only warns about
//! (an operator it silently corrects, an unknown OPTIONS value) is a warning.
//! Pure.

use super::{Finding, Severity};

/// udevd's line buffer (UDEV_LINE_SIZE).
pub const LINE_MAX: usize = 16 * 1024;

/// A key udev knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Key {
    Action,
    Devpath,
    Kernel,
    Kernels,
    Name,
    Symlink,
    Subsystem,
    Subsystems,
    Driver,
    Drivers,
    Attr,
    Attrs,
    Sysctl,
    Env,
    Const,
    Tag,
    Tags,
    Test,
    Program,
    Result,
    Import,
    Run,
    Options,
    Owner,
    Group,
    Mode,
    Seclabel,
    Label,
    Goto,
}

/// Every key with its spelling.
const KEYS: &[(&str, Key)] = &[
    ("ACTION", Key::Action),
    ("DEVPATH", Key::Devpath),
    ("KERNEL", Key::Kernel),
    ("KERNELS", Key::Kernels),
    ("NAME", Key::Name),
    ("SYMLINK", Key::Symlink),
    ("SUBSYSTEM", Key::Subsystem),
    ("SUBSYSTEMS", Key::Subsystems),
    ("DRIVER", Key::Driver),
    ("DRIVERS", Key::Drivers),
    ("ATTR", Key::Attr),
    ("ATTRS", Key::Attrs),
    ("SYSCTL", Key::Sysctl),
    ("ENV", Key::Env),
    ("CONST", Key::Const),
    ("TAG", Key::Tag),
    ("TAGS", Key::Tags),
    ("TEST", Key::Test),
    ("PROGRAM", Key::Program),
    ("RESULT", Key::Result),
    ("IMPORT", Key::Import),
    ("RUN", Key::Run),
    ("OPTIONS", Key::Options),
    ("OWNER", Key::Owner),
    ("GROUP", Key::Group),
    ("MODE", Key::Mode),
    ("SECLABEL", Key::Seclabel),
    ("LABEL", Key::Label),
    ("GOTO", Key::Goto),
];

impl Key {
    /// The key as written in rules files.
    pub fn as_str(self) -> &'static str {
        KEYS.iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(s, _)| s)
    }

    /// Looks up a key by its exact (upper-case) spelling.
    pub fn from_name(s: &str) -> Option<Key> {
        KEYS.iter().find(|(n, _)| *n == s).map(|(_, k)| *k)
    }
}

/// An operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `==`
    Match,
    /// `!=`
    NoMatch,
    /// `+=`
    Add,
    /// `-=`
    Remove,
    /// `=`
    Assign,
    /// `:=`
    AssignFinal,
}

impl Op {
    /// Whether this is `==` or `!=`.
    pub fn is_match(self) -> bool {
        matches!(self, Op::Match | Op::NoMatch)
    }

    /// The operator `s` starts with and its length, as udevd's
    /// parse_operator() reads it (two-character operators first).
    pub fn at_start(s: &str) -> Option<(Op, usize)> {
        [
            Op::Match,
            Op::NoMatch,
            Op::Add,
            Op::Remove,
            Op::AssignFinal,
            Op::Assign,
        ]
        .into_iter()
        .find(|op| s.starts_with(op.as_str()))
        .map(|op| (op, op.as_str().len()))
    }

    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Match => "==",
            Op::NoMatch => "!=",
            Op::Add => "+=",
            Op::Remove => "-=",
            Op::Assign => "=",
            Op::AssignFinal => ":=",
        }
    }
}

/// One `KEY{attr}OP"value"` token, after udev's operator corrections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The key.
    pub key: Key,
    /// The `{attr}` part, if any.
    pub attr: Option<String>,
    /// The operator (as udevd will apply it).
    pub op: Op,
    /// The unquoted, unescaped value.
    pub value: String,
    /// Whether the value had the `i` (case-insensitive) prefix.
    pub case_insensitive: bool,
    /// Physical line of the key.
    pub line: u32,
    /// Column of the key.
    pub column: u32,
    /// The token as written, for messages.
    pub text: String,
}

/// A logical rule line that udevd would keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Physical line where the rule starts.
    pub line: u32,
    /// Match and assignment tokens (not LABEL/GOTO).
    pub tokens: Vec<Token>,
    /// `LABEL="…"` on this line.
    pub label: Option<String>,
    /// `GOTO="…"` on this line, with the index of the rule holding the label.
    pub goto: Option<(String, usize)>,
}

/// A parsed rules file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RulesFile {
    /// The rules udevd would keep, in order.
    pub rules: Vec<Rule>,
    /// Errors and warnings.
    pub findings: Vec<Finding>,
    /// Physical lines read.
    pub physical_lines: u32,
}

/// Maps offsets in a logical (joined) line back to physical positions.
#[derive(Default)]
pub(super) struct LineMap {
    /// (offset in logical line, physical line, column of that offset).
    pub(super) segments: Vec<(usize, u32, u32)>,
}

impl LineMap {
    /// The physical line and column of byte `offset` of the logical line.
    pub(super) fn pos(&self, offset: usize) -> (u32, u32) {
        let (start, line, column) = self
            .segments
            .iter()
            .rev()
            .find(|s| s.0 <= offset)
            .or(self.segments.first())
            .copied()
            .unwrap_or_default();
        (line, column + offset.saturating_sub(start) as u32)
    }
}

/// Parses a rules file's bytes.
///
/// Long on purpose: the loop follows udev-rules.c `udev_rules_parse_file`
/// step by step (line length, comments inside continuations, the over-long
/// continuation swallowed, the continuation at EOF), so the two can be read
/// side by side; cut into pieces it would no longer compare line for line.
pub fn parse(bytes: &[u8]) -> RulesFile {
    let mut out = RulesFile::default();
    let Ok(text) = std::str::from_utf8(bytes) else {
        let line = bytes
            .split(|&b| b == b'\n')
            .position(|l| std::str::from_utf8(l).is_err())
            .unwrap_or(0);
        out.findings.push(err(
            line as u32 + 1,
            0,
            "encoding",
            "the file is not valid UTF-8".into(),
        ));
        return out;
    };
    let mut logical = String::new();
    let mut map = LineMap {
        segments: Vec::new(),
    };
    let mut too_long = false;
    let mut number = 0u32;
    for raw in text.split_terminator('\n') {
        number += 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.len() >= LINE_MAX {
            out.findings.push(err(
                number,
                1,
                "line-too-long",
                format!("line is {} bytes; udevd reads lines of less than {LINE_MAX} bytes and refuses the whole file otherwise", raw.len()),
            ));
            return out;
        }
        let trimmed = raw.trim_start_matches([' ', '\t', '\r']);
        let col = (raw.len() - trimmed.len()) as u32 + 1;
        // Comment lines are skipped even in the middle of a continuation.
        if trimmed.starts_with('#') {
            continue;
        }
        if !too_long && !map.segments.is_empty() && logical.len() + trimmed.len() >= LINE_MAX {
            too_long = true;
        }
        if too_long {
            // Swallow the over-long line until its continuation ends.
            if !trimmed.ends_with('\\') {
                out.findings.push(err(
                    number,
                    0,
                    "line-too-long",
                    format!("continued line reaches {LINE_MAX} bytes; udevd ignores it"),
                ));
                logical.clear();
                map.segments.clear();
                too_long = false;
            }
            continue;
        }
        map.segments.push((logical.len(), number, col));
        logical.push_str(trimmed);
        if logical.ends_with('\\') {
            logical.pop();
            continue;
        }
        if !logical.is_empty()
            && let Some(rule) = parse_rule(&logical, &map, &mut out.findings)
        {
            out.rules.push(rule);
        }
        logical.clear();
        map.segments.clear();
    }
    out.physical_lines = number;
    if !map.segments.is_empty() || too_long {
        out.findings.push(err(
            number,
            0,
            "continuation-at-eof",
            "the file ends after a line continuation; udevd ignores that line".into(),
        ));
    }
    resolve_gotos(&mut out);
    out
}

/// An error finding.
pub(super) fn err(line: u32, column: u32, rule: &'static str, message: String) -> Finding {
    Finding {
        line,
        column,
        severity: Severity::Error,
        rule,
        message,
    }
}

fn warn(line: u32, column: u32, rule: &'static str, message: String) -> Finding {
    Finding {
        severity: Severity::Warning,
        ..err(line, column, rule, message)
    }
}

/// A token as split from the line, before key-specific checks.
struct RawToken {
    key: String,
    attr: Option<String>,
    op: Op,
    value: String,
    case_insensitive: bool,
    start: usize,
    end: usize,
}

/// Parses one logical line; `None` if udevd would drop it (findings say why).
fn parse_rule(line: &str, map: &LineMap, findings: &mut Vec<Finding>) -> Option<Rule> {
    let (first_line, _) = map.pos(0);
    let mut rule = Rule {
        line: first_line,
        tokens: Vec::new(),
        label: None,
        goto: None,
    };
    let mut pos = 0;
    loop {
        let raw = match split_token(line, pos) {
            Ok(Some(t)) => t,
            Ok(None) => break,
            Err((at, msg)) => {
                let (l, c) = map.pos(at);
                findings.push(err(l, c, "syntax", format!("{msg}; udevd drops this line")));
                return None;
            }
        };
        pos = raw.end;
        let (l, c) = map.pos(raw.start);
        let text = line[raw.start..raw.end].to_string();
        if let Err(f) = add_token(&mut rule, raw, l, c, text, findings) {
            findings.push(f);
            return None;
        }
    }
    Some(rule)
}

/// Splits the next token starting at byte `pos`, as udevd's parse_line().
/// One function, like udevd's, so the two compare line for line.
fn split_token(line: &str, pos: usize) -> Result<Option<RawToken>, (usize, String)> {
    let b = line.as_bytes();
    let is_ws = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let mut i = pos;
    while i < b.len() && (is_ws(b[i]) || b[i] == b',') {
        i += 1;
    }
    if i >= b.len() {
        return Ok(None);
    }
    let start = i;
    while i < b.len() {
        let c = b[i];
        if is_ws(c) || c == b'=' || c == b'{' {
            break;
        }
        if b"+-!:".contains(&c) && b.get(i + 1) == Some(&b'=') {
            break;
        }
        i += 1;
    }
    if i >= b.len() {
        return Err((
            start,
            format!("{} has no operator and value", quote_word(&line[start..])),
        ));
    }
    let key = line[start..i].to_string();
    let mut attr = None;
    if b[i] == b'{' {
        let close = line[i + 1..]
            .find('}')
            .ok_or((i, "'{' without closing '}'".to_string()))?;
        attr = Some(line[i + 1..i + 1 + close].to_string());
        i += close + 2;
    }
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    let (op, len) = Op::at_start(&line[i..]).ok_or((
        i,
        format!(
            "expected an operator (==, !=, =, +=, -=, :=) after {}",
            quote_word(&key)
        ),
    ))?;
    i += len;
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    let (value, case_insensitive, end) = parse_value(line, i)?;
    Ok(Some(RawToken {
        key,
        attr,
        op,
        value,
        case_insensitive,
        start,
        end,
    }))
}

/// Parses `[e|i|ei|ie]"…"` at `i`; returns the value, the `i` flag and the end offset.
fn parse_value(line: &str, mut i: usize) -> Result<(String, bool, usize), (usize, String)> {
    let b = line.as_bytes();
    let (mut escaped, mut insensitive) = (false, false);
    let value_start = i;
    while i < b.len() && b[i] != b'"' && i < value_start + 2 {
        match b[i] {
            b'e' if !escaped => escaped = true,
            b'i' if !insensitive => insensitive = true,
            _ => break,
        }
        i += 1;
    }
    if b.get(i) != Some(&b'"') {
        return Err((value_start, "value must be in double quotes".into()));
    }
    i += 1;
    let body_start = i;
    let mut out = String::new();
    loop {
        match b.get(i) {
            None => return Err((body_start - 1, "unterminated quoted value".into())),
            Some(b'"') => break,
            Some(b'\\') if escaped => {
                if i + 1 >= b.len() {
                    return Err((body_start - 1, "unterminated quoted value".into()));
                }
                i += 2;
            }
            Some(b'\\') if b.get(i + 1) == Some(&b'"') => {
                out.push('"');
                i += 2;
                continue;
            }
            Some(_) => {
                let ch = line[i..].chars().next().unwrap_or('\u{fffd}');
                if !escaped {
                    out.push(ch);
                }
                i += ch.len_utf8();
                continue;
            }
        }
    }
    if escaped {
        out = unescape(&line[body_start..i]).map_err(|m| (body_start, m))?;
    }
    Ok((out, insensitive, i + 1))
}

/// C-style unescaping as systemd's cunescape() does for `e"…"` values.
fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            return Err("dangling backslash".into());
        };
        let simple = match e {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '\\' | '"' | '\'' | '?' => Some(e),
            's' => Some(' '),
            _ => None,
        };
        if let Some(ch) = simple {
            out.push(ch);
            continue;
        }
        let (radix, digits) = match e {
            'x' => (16, 2),
            'u' => (16, 4),
            'U' => (16, 8),
            '0'..='7' => (8, 3),
            _ => return Err(format!("invalid escape '\\{e}'")),
        };
        let mut num = String::new();
        if radix == 8 {
            num.push(e);
        }
        while num.len() < digits {
            match chars.next() {
                Some(d) if d.is_digit(radix) => num.push(d),
                _ => return Err(format!("short escape '\\{e}{num}'")),
            }
        }
        let code =
            u32::from_str_radix(&num, radix).map_err(|_| format!("bad escape '\\{e}{num}'"))?;
        match char::from_u32(code) {
            Some('\0') | None => {
                return Err(format!("escape '\\{e}{num}' is not a usable character"));
            }
            Some(ch) => out.push(ch),
        }
    }
    Ok(out)
}

/// Properties udevd refuses to let ENV{…}= set (device_property_can_set).
const UNSETTABLE_ENV: &[&str] = &[
    "ACTION",
    "DEVLINKS",
    "DEVNAME",
    "DEVPATH",
    "DEVTYPE",
    "DRIVER",
    "IFINDEX",
    "MAJOR",
    "MINOR",
    "SEQNUM",
    "SUBSYSTEM",
    "TAGS",
    "CURRENT_TAGS",
    "USEC_INITIALIZED",
];

/// OPTIONS values udevd understands (others are ignored with a warning).
fn option_known(v: &str) -> bool {
    matches!(
        v,
        "dump"
            | "string_escape=none"
            | "string_escape=replace"
            | "db_persist"
            | "watch"
            | "nowatch"
    ) || v.starts_with("static_node=")
        || v.starts_with("link_priority=")
        || v.starts_with("log_level=")
}

/// Why udevd drops the whole line for an OPTIONS value it knows but
/// cannot parse (udev-rules.c: a failed `safe_atoi` or log level is an
/// error, not a warning), if it does.
fn option_drops_line(v: &str) -> Option<String> {
    if let Some(n) = v.strip_prefix("link_priority=")
        && n.parse::<i32>().is_err()
    {
        return Some(format!("link priority '{n}' is not an integer"));
    }
    let levels = [
        "reset", "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
    ];
    if let Some(l) = v.strip_prefix("log_level=")
        && !levels.contains(&l)
        && !l.parse::<u8>().is_ok_and(|n| n <= 7)
    {
        return Some(format!("log level '{l}' is not one udevd knows"));
    }
    None
}

/// Applies udevd's per-key checks (parse_token: the table in [`keys`],
/// then the checks of a key's value) and adds the token.
fn add_token(
    rule: &mut Rule,
    t: RawToken,
    line: u32,
    column: u32,
    text: String,
    findings: &mut Vec<Finding>,
) -> Result<(), Finding> {
    let Some(key) = Key::from_name(&t.key) else {
        let hint = if Key::from_name(&t.key.to_ascii_uppercase()).is_some() {
            " (keys are upper case)"
        } else {
            ""
        };
        return Err(err(
            line,
            column,
            "unknown-key",
            format!("unknown key '{}'{hint}; udevd drops this line", t.key),
        ));
    };
    if t.case_insensitive && !t.op.is_match() {
        return Err(err(
            line,
            column,
            "invalid-prefix",
            format!("the 'i' prefix is only valid with == or != ({})", t.key),
        ));
    }
    let at = keys::At { line, column };
    let op = keys::check(key, &t, at, findings)?;
    match key {
        Key::Name => name_has_effect(&t, op, at)?,
        Key::Env => env_settable(&t, op, at)?,
        Key::Options if !option_usable(&t, at, findings)? => return Ok(()),
        Key::Goto | Key::Label => {
            goto_or_label(rule, key, t, at, findings);
            return Ok(());
        }
        _ => {}
    }
    rule.tokens.push(Token {
        key,
        attr: t.attr,
        op,
        value: t.value,
        case_insensitive: t.case_insensitive,
        line,
        column,
        text,
    });
    Ok(())
}

/// `NAME="%k"` or `NAME=""` does nothing, and udevd drops the line.
fn name_has_effect(t: &RawToken, op: Op, at: keys::At) -> Result<(), Finding> {
    if !op.is_match() && (t.value == "%k" || t.value.is_empty()) {
        return Err(err(
            at.line,
            at.column,
            "invalid-value",
            format!("NAME=\"{}\" has no effect; udevd drops this line", t.value),
        ));
    }
    Ok(())
}

/// Properties udevd never lets `ENV{…}=` set drop the line.
fn env_settable(t: &RawToken, op: Op, at: keys::At) -> Result<(), Finding> {
    let name = t.attr.as_deref().unwrap_or_default();
    if !op.is_match() && UNSETTABLE_ENV.contains(&name) {
        return Err(err(
            at.line,
            at.column,
            "invalid-attr",
            format!("ENV{{{name}}} cannot be set; udevd drops this line"),
        ));
    }
    Ok(())
}

/// An OPTIONS value: `Err` when udevd drops the line, `Ok(false)` when it
/// ignores the token (unknown value, with a warning), `Ok(true)` to keep it.
fn option_usable(t: &RawToken, at: keys::At, findings: &mut Vec<Finding>) -> Result<bool, Finding> {
    if let Some(why) = option_drops_line(&t.value) {
        return Err(err(
            at.line,
            at.column,
            "invalid-option",
            format!("{why}; udevd drops this line"),
        ));
    }
    if !option_known(&t.value) {
        findings.push(warn(
            at.line,
            at.column,
            "invalid-option",
            format!("OPTIONS value '{}' is unknown; udevd ignores it", t.value),
        ));
        return Ok(false);
    }
    Ok(true)
}

/// GOTO and LABEL are the rule's, not tokens; a second one on a line is
/// ignored (with a warning), as udevd does.
fn goto_or_label(
    rule: &mut Rule,
    key: Key,
    t: RawToken,
    at: keys::At,
    findings: &mut Vec<Finding>,
) {
    let (taken, what) = if key == Key::Goto {
        (rule.goto.is_some(), "multiple-goto")
    } else {
        (rule.label.is_some(), "multiple-label")
    };
    if taken {
        findings.push(warn(
            at.line,
            at.column,
            what,
            format!(
                "more than one {} on this line; udevd ignores the extra one",
                t.key
            ),
        ));
    } else if key == Key::Goto {
        rule.goto = Some((t.value, usize::MAX));
    } else {
        rule.label = Some(t.value);
    }
}

/// Parses an octal mode as udevd does (`664`, `0664`; at most 07777).
pub fn parse_mode(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
        return None;
    }
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

/// Links each GOTO to the first later rule with its LABEL; a GOTO without
/// one is an error (udevd ignores the GOTO, which may change the flow).
pub(super) fn resolve_gotos(file: &mut RulesFile) {
    for i in 0..file.rules.len() {
        let Some((label, _)) = file.rules[i].goto.clone() else {
            continue;
        };
        match (i + 1..file.rules.len())
            .find(|&j| file.rules[j].label.as_deref() == Some(label.as_str()))
        {
            Some(j) => file.rules[i].goto = Some((label, j)),
            None => {
                let line = file.rules[i].line;
                file.findings.push(err(
                    line,
                    0,
                    "goto-missing-label",
                    format!("GOTO=\"{label}\" has no LABEL after it; udevd ignores the GOTO"),
                ));
                file.rules[i].goto = None;
            }
        }
    }
}

/// A word of the file for a finding: quoted when it looks like a key or
/// value of a rules file (letters, digits, `_`, at most 32 bytes),
/// otherwise only its length. A finding may be read by more people than the
/// file (`status_group`), so it never echoes text that may not be rule
/// text at all, such as the hash in a line of `/etc/shadow`.
pub fn quote_word(word: &str) -> String {
    let plain = word.len() <= 32
        && !word.is_empty()
        && word.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if plain {
        format!("'{word}'")
    } else {
        format!("a {}-byte word that is no key", word.len())
    }
}

mod keys;

#[cfg(test)]
mod tests;
