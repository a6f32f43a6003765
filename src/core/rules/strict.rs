//! The reader for `permissions-only` rules: a narrow allow-list grammar,
//! refusing with file:line:col whatever lies outside it instead of guessing
//! what udevd would make of it. Pure.
//!
//! Why a second reader: udevd's own reader has quirks (a CR or NUL ends a
//! line, `e"…"` takes C escapes, a malformed token drops the whole line, an
//! operator is silently corrected) and every quirk is a place where a
//! container could make the policy judge one thing and udevd run another.
//! This reader accepts only what has one obvious meaning; what it accepts is
//! re-serialised by [`super::canon`] and that, not the container's bytes, is
//! installed. The subset:
//!
//! * bytes: printable ASCII, tab and LF; comment lines may also hold UTF-8.
//!   No CR, no NUL, no other control byte anywhere.
//! * lines: `#` comments; a rule on one line, or continued with a trailing
//!   backslash onto rule lines (no comment or empty line inside, none at the
//!   end of the file); at most [`LINE_MAX`] bytes.
//! * tokens: `KEY[{attr}] OP "value"` separated by a comma and/or blanks;
//!   plain double-quoted values with no backslash and no `e`/`i` prefix;
//!   each key (with its attribute) at most once per line.
//! * keys: matches on ACTION, DEVPATH, KERNEL(S), SUBSYSTEM(S), DRIVER(S),
//!   ATTR(S){name}, ENV{name}, TAG(S); assignments MODE, GROUP, OWNER, TAG,
//!   SYMLINK, ENV{name}, OPTIONS, each with the one operator that means
//!   what it says; GOTO on a line of matches only; LABEL alone on its line.
//!
//! Everything that runs code, reads other files, writes sysfs or sysctls,
//! or can abort udevd's rule processing for every device (TEST, SYSCTL) is
//! not in the subset; the policy ([`super::policy`]) then judges what the
//! allowed keys do.

use std::collections::BTreeSet;

use super::Finding;
use super::parse::{Key, LineMap, Op, Rule, RulesFile, Token, err, quote_word, resolve_gotos};

/// Longest logical (joined) line accepted. udevd reads up to 16 KiB; a
/// permissions rule is far shorter, and the canonical form of a line this
/// long stays well under udevd's limit.
pub const LINE_MAX: usize = 4096;

/// Most rules in one file (NUT's, the largest real one, has about 130):
/// keeps the GOTO and label passes cheap on a hostile file.
pub const MAX_RULES: usize = 2000;

/// Reads a rules file under the allow-list grammar: bytes first (nothing
/// else is said about a file with a byte udevd reads differently), then
/// the logical lines, then the checks across the file.
pub fn parse(bytes: &[u8]) -> RulesFile {
    let mut out = RulesFile::default();
    let physical: Vec<&[u8]> = split_lines(bytes);
    out.physical_lines = physical.len() as u32;
    for (i, line) in physical.iter().enumerate() {
        if let Some(f) = check_bytes(i as u32 + 1, line) {
            out.findings.push(f);
        }
    }
    if !out.findings.is_empty() {
        // The structure of the file cannot be trusted past a byte udevd
        // reads differently; nothing else is worth saying.
        return out;
    }
    let mut joiner = Joiner::default();
    for (i, raw) in physical.iter().enumerate() {
        // Only ASCII (and UTF-8 in comments) is left.
        let raw = std::str::from_utf8(raw).unwrap_or_default();
        joiner.feed(i as u32 + 1, raw, &mut out);
    }
    if !joiner.logical.map.segments.is_empty() {
        out.findings.push(err(
            out.physical_lines,
            0,
            "continuation-at-eof",
            "the file ends after a line continuation; udevd ignores that line".into(),
        ));
    }
    if out.rules.len() > MAX_RULES {
        out.findings.push(err(
            0,
            0,
            "too-many-rules",
            format!(
                "{} rules; a permissions-only file holds at most {MAX_RULES}",
                out.rules.len()
            ),
        ));
        out.rules.clear();
    }
    resolve_gotos(&mut out);
    check_labels(&mut out);
    out.findings.sort();
    out
}

/// Joins physical lines into logical ones (continuations) and reads each
/// complete one as a rule.
#[derive(Default)]
struct Joiner {
    logical: Logical,
    /// After an over-long line, udevd ignores the rest of its continuation.
    ignoring: bool,
}

impl Joiner {
    fn feed(&mut self, number: u32, raw: &str, out: &mut RulesFile) {
        let trimmed = raw.trim_start_matches([' ', '\t']);
        let col = (raw.len() - trimmed.len()) as u32 + 1;
        let continuing = !self.logical.map.segments.is_empty();
        if self.ignoring {
            self.ignoring = trimmed.ends_with('\\');
            return;
        }
        if trimmed.starts_with('#') {
            if continuing {
                out.findings.push(err(number, col, "continuation", "a comment line inside a continued line: udevd skips it and joins the lines around it; write the rule without it".into()));
            }
            return;
        }
        if continuing && trimmed.is_empty() {
            out.findings.push(err(
                number,
                1,
                "continuation",
                "an empty line ends the continued line above it; remove the trailing backslash"
                    .into(),
            ));
            self.logical = Logical::default();
            return;
        }
        let logical = &mut self.logical;
        logical.map.segments.push((logical.text.len(), number, col));
        logical.text.push_str(trimmed);
        if logical.text.len() >= LINE_MAX {
            out.findings.push(err(
                logical.map.segments[0].1,
                1,
                "line-too-long",
                format!(
                    "the rule is {} bytes long by here; a permissions rule must be shorter than {LINE_MAX} bytes",
                    logical.text.len()
                ),
            ));
            self.ignoring = logical.text.ends_with('\\');
            self.logical = Logical::default();
            return;
        }
        if logical.text.ends_with('\\') {
            logical.text.pop();
            return;
        }
        if !logical.text.is_empty()
            && let Some(rule) = parse_rule(logical, &mut out.findings)
        {
            out.rules.push(rule);
        }
        self.logical = Logical::default();
    }
}

/// Physical lines as udevd would see them if the file held no CR or NUL
/// (those are refused first): split at LF, without a last empty piece.
fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// The first byte of a physical line that is outside the subset.
fn check_bytes(number: u32, line: &[u8]) -> Option<Finding> {
    let comment = line
        .iter()
        .find(|&&b| b != b' ' && b != b'\t')
        .is_some_and(|&b| b == b'#');
    let (at, b) = line.iter().enumerate().find(|&(_, &b)| {
        matches!(b, b'\r' | 0) || (b < 0x20 && b != b'\t') || b == 0x7f || (b >= 0x80 && !comment)
    })?;
    let col = at as u32 + 1;
    Some(match b {
        b'\r' => err(number, col, "line-ending", "a carriage return (0x0d): udevd ends a line here (CR, CRLF and LFCR all end lines), so what follows is read as a new rule; save the file with LF line ends only".into()),
        0 => err(number, col, "line-ending", "a NUL byte: udevd ends a line here, so what follows is read as a new rule".into()),
        0x80.. => err(number, col, "non-ascii", format!("byte 0x{b:02x} outside a comment: rules are ASCII")),
        _ => err(number, col, "control-byte", format!("control byte 0x{b:02x}: not allowed in a rules file")),
    })
}

/// A logical line being assembled from physical ones.
#[derive(Default)]
struct Logical {
    text: String,
    map: LineMap,
}

impl Logical {
    fn pos(&self, offset: usize) -> (u32, u32) {
        self.map.pos(offset)
    }
}

/// The first byte at or after `i` that is not a blank.
fn skip_blanks(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t') {
        i += 1;
    }
    i
}

/// What a key may be used for under the subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// A match (`==`/`!=`) that can neither fail udevd's processing nor
    /// run anything.
    Match,
    /// MODE, GROUP, OWNER: `=` or `:=`.
    Grant,
    /// TAG, SYMLINK: `+=` only.
    Append,
    /// ENV{…}: `=` only.
    SetEnv,
    /// OPTIONS: `+=` or `=` (udevd treats them alike).
    Options,
    /// GOTO, LABEL: `=`.
    Flow,
}

/// Every key in the subset: how it may be used, and whether it takes an
/// `{attribute}` (a plain `[A-Za-z0-9_]` name).
fn uses(key: Key, op: Op) -> Result<Use, (&'static str, String)> {
    use Key::*;
    let m = op.is_match();
    let forbidden = |id: &'static str, why: &str| Err((id, why.to_string()));
    match key {
        Action | Devpath | Kernel | Kernels | Subsystem | Subsystems | Driver | Drivers | Attrs
        | Tags
            if m =>
        {
            Ok(Use::Match)
        }
        Attr | Env | Tag if m => Ok(Use::Match),
        Mode | Group | Owner => Ok(Use::Grant),
        Tag | Symlink if !m => Ok(Use::Append),
        Env => Ok(Use::SetEnv),
        Options => Ok(Use::Options),
        Goto | Label => Ok(Use::Flow),
        Run => forbidden(
            "run",
            "RUN would execute a program as root on every matching uevent",
        ),
        Program => forbidden(
            "program",
            "PROGRAM would execute a program as root to match devices",
        ),
        Import => forbidden(
            "import",
            "IMPORT would run a program or read a file as root into device properties",
        ),
        Seclabel => forbidden(
            "seclabel",
            "SECLABEL would set a security label on the device node",
        ),
        Attr => forbidden("attr-write", "ATTR{…}= would write to a sysfs attribute"),
        Sysctl if m => forbidden(
            "sysctl-match",
            "SYSCTL{…}== reads a kernel parameter; a read error aborts udevd's rule processing for every device",
        ),
        Sysctl => forbidden("sysctl-write", "SYSCTL{…}= would set a kernel parameter"),
        Test => forbidden(
            "test",
            "TEST stats a path as root; a path udevd cannot resolve (a glob, a file where a directory is expected) aborts its rule processing for every device",
        ),
        Name if !m => forbidden("name", "NAME= would rename a network interface"),
        Name | Symlink | Const | Result => forbidden(
            "match-key",
            "this match key is not needed for device permissions and is not in the permissions-only subset",
        ),
        _ => forbidden("invalid-operator", "this key takes no such operator"),
    }
}

/// Whether `key`, in the subset, takes an `{attribute}`: only ATTR,
/// ATTRS and ENV do.
fn takes_attr(key: Key) -> bool {
    matches!(key, Key::Attr | Key::Attrs | Key::Env)
}

/// The operators allowed for a use, for messages and checks.
fn op_allowed(u: Use, op: Op) -> Result<(), &'static str> {
    let ok = match u {
        Use::Match => op.is_match(),
        Use::Grant => matches!(op, Op::Assign | Op::AssignFinal),
        Use::Append => op == Op::Add,
        Use::SetEnv => op == Op::Assign,
        Use::Options => matches!(op, Op::Add | Op::Assign),
        Use::Flow => op == Op::Assign,
    };
    if ok {
        return Ok(());
    }
    Err(match u {
        Use::Match => "takes only == and !=",
        Use::Grant => "takes only = and := (udevd silently reads += as =)",
        Use::Append => "takes only += here",
        Use::SetEnv => "takes only = here",
        Use::Options => "takes only += or =",
        Use::Flow => "takes only =",
    })
}

/// Characters a match value may hold: no quote, backslash, `%` or `$`.
fn match_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b" _.:/+*?[]!|=@,^~-".contains(&c)
}

/// Characters an assignment value may hold. `%` and `$` pass here so the
/// policy can name them (`group-dynamic` …); the policy refuses them.
fn assign_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"_.:/+@=%$-".contains(&c)
}

/// The sysfs attributes `ATTR{…}==`/`ATTRS{…}==` may read: USB descriptor
/// fields and strings the kernel keeps in memory. udevd reads a matched
/// attribute on every device a line is tried on, and `ATTRS` on each of
/// its parents too; some attributes (PCI `config` and `vpd`, EEPROMs,
/// sensors) do hardware I/O when read, which no container should make
/// udevd do on every event.
pub const MATCH_ATTRS: &[&str] = &[
    "idVendor",
    "idProduct",
    "bcdDevice",
    "bDeviceClass",
    "bDeviceSubClass",
    "bDeviceProtocol",
    "bInterfaceClass",
    "bInterfaceSubClass",
    "bInterfaceProtocol",
    "bInterfaceNumber",
    "bNumInterfaces",
    "bConfigurationValue",
    "manufacturer",
    "product",
    "serial",
    "interface",
    "busnum",
    "devnum",
    "devpath",
    "speed",
    "version",
];

fn attr_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn label_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"_.-".contains(&c)
}

/// Why a line is outside the subset: where (a byte offset in the logical
/// line), the rule id and why; or a finding the policy worded.
enum Refusal {
    At(usize, &'static str, String),
    Said(Finding),
}

/// Reads one logical line; `None` (with findings) when it is outside the
/// subset.
fn parse_rule(line: &Logical, findings: &mut Vec<Finding>) -> Option<Rule> {
    match read_rule(line) {
        Ok(rule) => check_shape(&rule, line, findings).then_some(rule),
        Err(Refusal::At(at, id, message)) => {
            let (l, c) = line.pos(at);
            findings.push(err(l, c, id, message));
            None
        }
        Err(Refusal::Said(f)) => {
            findings.push(f);
            None
        }
    }
}

/// The tokens of a line, each lexed, checked against the subset, and said
/// once at most.
fn read_rule(line: &Logical) -> Result<Rule, Refusal> {
    let text = line.text.as_str();
    let mut rule = Rule {
        line: line.pos(0).0,
        tokens: Vec::new(),
        label: None,
        goto: None,
    };
    let mut shape: BTreeSet<(&'static str, Option<String>)> = BTreeSet::new();
    let mut i = 0;
    loop {
        i = separator(text.as_bytes(), i, rule_is_empty(&rule))?;
        if i >= text.len() {
            return Ok(rule);
        }
        let lexed = lex_token(text, i)?;
        i = lexed.end;
        let (l, c) = line.pos(lexed.start);
        let token = Token {
            key: lexed.key,
            attr: lexed.attr.as_ref().map(|(_, a)| a.clone()),
            op: lexed.op,
            value: lexed.value.clone(),
            case_insensitive: false,
            line: l,
            column: c,
            text: text[lexed.start..lexed.end].to_string(),
        };
        in_subset(&lexed, &token)?;
        if !shape.insert((lexed.key.as_str(), token.attr.clone())) {
            let said = lexed.start + lexed.key_len + token.attr.as_ref().map_or(0, |a| a.len() + 2);
            return Err(Refusal::At(
                lexed.start,
                "duplicate-key",
                format!(
                    "{} appears twice on this line; say it once",
                    &text[lexed.start..said]
                ),
            ));
        }
        match lexed.key {
            Key::Goto => rule.goto = Some((token.value, usize::MAX)),
            Key::Label => rule.label = Some(token.value),
            _ => rule.tokens.push(token),
        }
    }
}

/// Skips what separates tokens (a comma and/or blanks; nothing before the
/// first) from `i`; the offset of the next token, or the line's end.
fn separator(b: &[u8], i: usize, first: bool) -> Result<usize, Refusal> {
    let at = skip_blanks(b, i);
    let blank = at > i;
    if at < b.len() && b[at] == b',' && !first {
        return Ok(skip_blanks(b, at + 1));
    }
    if at < b.len() && !first && !blank {
        return Err(Refusal::At(
            at,
            "syntax",
            "expected ',' or a blank between tokens".into(),
        ));
    }
    Ok(at)
}

/// One token as written: `KEY[{attr}] OP "value"`.
struct Lexed {
    /// Offsets of its start, the end of its key, and past its end.
    start: usize,
    key_len: usize,
    end: usize,
    key: Key,
    /// The attribute's offset and text.
    attr: Option<(usize, String)>,
    op: Op,
    /// The value's offset and text.
    body: usize,
    value: String,
}

/// Lexes the token at `start` (udevd's reading, narrowed: a plain quoted
/// value with no backslash and no prefix).
fn lex_token(text: &str, start: usize) -> Result<Lexed, Refusal> {
    let b = text.as_bytes();
    let mut i = start;
    // The key: udevd ends it at a blank, '=', '{' or an operator.
    while i < b.len()
        && !matches!(b[i], b' ' | b'\t' | b'=' | b'{' | b',' | b'"')
        && !(b"+-!:".contains(&b[i]) && b.get(i + 1) == Some(&b'='))
    {
        i += 1;
    }
    let name = &text[start..i];
    let key = known_key(name, start)?;
    let mut attr = None;
    if b.get(i) == Some(&b'{') {
        let Some(close) = text[i + 1..].find('}') else {
            return Err(Refusal::At(
                i,
                "syntax",
                "'{' without a closing '}'; udevd drops this line".into(),
            ));
        };
        attr = Some((i + 1, text[i + 1..i + 1 + close].to_string()));
        i += close + 2;
    }
    i = skip_blanks(b, i);
    let Some((op, len)) = Op::at_start(&text[i..]) else {
        return Err(Refusal::At(
            i,
            "syntax",
            format!("expected an operator after '{name}'; udevd drops this line"),
        ));
    };
    i = skip_blanks(b, i + len);
    opening_quote(b, i)?;
    let body = i + 1;
    let Some(len) = text[body..].find('"') else {
        return Err(Refusal::At(i, "syntax", "unterminated quoted value".into()));
    };
    let value = &text[body..body + len];
    if let Some(at) = value.find('\\') {
        return Err(Refusal::At(body + at, "escape", "a backslash in a value: udevd reads \\\" as a quote; escapes are not in the permissions-only subset".into()));
    }
    Ok(Lexed {
        start,
        key_len: name.len(),
        end: body + len + 1,
        key,
        attr,
        op,
        body,
        value: value.to_string(),
    })
}

/// The key spelled `name` (at offset `at`), if udevd knows it.
fn known_key(name: &str, at: usize) -> Result<Key, Refusal> {
    if name.is_empty() {
        return Err(Refusal::At(
            at,
            "syntax",
            format!("expected a key at column {}", at + 1),
        ));
    }
    Key::from_name(name).ok_or_else(|| {
        let hint = if Key::from_name(&name.to_ascii_uppercase()).is_some() {
            " (keys are upper case)"
        } else {
            ""
        };
        Refusal::At(
            at,
            "unknown-key",
            format!(
                "unknown key {}{hint}; udevd drops this line",
                quote_word(name)
            ),
        )
    })
}

/// A value opens with a plain double quote: no `e"…"`, no `i"…"`.
fn opening_quote(b: &[u8], i: usize) -> Result<(), Refusal> {
    match b.get(i) {
        Some(b'"') => Ok(()),
        Some(b'e') if b.get(i + 1) == Some(&b'"') => Err(Refusal::At(i, "escape", "an e\"…\" value takes C escapes, which permissions-only rules do not use; write the value plainly".into())),
        Some(b'i') if b.get(i + 1) == Some(&b'"') => Err(Refusal::At(i, "value-prefix", "the i\"…\" (case-insensitive) prefix is not in the permissions-only subset (udev 252 drops such a line; newer versions read it)".into())),
        _ => Err(Refusal::At(
            i,
            "syntax",
            "value must be in double quotes; udevd drops this line".into(),
        )),
    }
}

/// Whether a lexed token is in the subset: its key's use and operator, its
/// attribute, and the characters of its value.
fn in_subset(lexed: &Lexed, token: &Token) -> Result<(), Refusal> {
    let (key, op, start) = (lexed.key, lexed.op, lexed.start);
    let use_ = uses(key, op).map_err(|(id, why)| {
        // The policy words what a forbidden key would do; this reader's
        // own words cover the rest.
        let mut said = Vec::new();
        super::policy::forbidden(token, &super::policy::Policy::default(), &mut said);
        match said.into_iter().find(|f| f.rule == id) {
            Some(f) => Refusal::Said(f),
            None => Refusal::Said(err(
                token.line,
                token.column,
                id,
                format!("{}: {why}", token.text),
            )),
        }
    })?;
    if let Err(why) = op_allowed(use_, op) {
        let id = if matches!(use_, Use::Grant) && op == Op::Add {
            "operator-assumed"
        } else if key == Key::Tag {
            "tag"
        } else if key == Key::Symlink {
            "symlink"
        } else if key == Key::Env {
            "env-write"
        } else {
            "invalid-operator"
        };
        return Err(Refusal::At(start, id, format!("{} {why}", token.text)));
    }
    attribute_in_subset(lexed)?;
    let value = lexed.value.as_str();
    let charset_ok = match use_ {
        Use::Match => value.bytes().all(match_char),
        Use::Flow => !value.is_empty() && value.bytes().all(label_char),
        _ => !value.is_empty() && value.bytes().all(assign_char),
    };
    if charset_ok {
        return Ok(());
    }
    let what = match use_ {
        Use::Match => "letters, digits, blanks and _.:/+*?[]!|=@,^~-",
        Use::Flow => "a non-empty name of letters, digits and _.-",
        _ => "a non-empty value of letters, digits and _.:/+@=- (no substitutions)",
    };
    Err(Refusal::At(
        lexed.body,
        "value-charset",
        format!("{}: the value may only hold {what}", token.text),
    ))
}

/// An attribute where the key takes one, a plain name, and for ATTR/ATTRS
/// one of [`MATCH_ATTRS`].
fn attribute_in_subset(lexed: &Lexed) -> Result<(), Refusal> {
    let key = lexed.key;
    if lexed.attr.is_some() != takes_attr(key) {
        return Err(Refusal::At(
            lexed.start,
            "invalid-attr",
            format!(
                "{} has an invalid or missing {{attribute}}; udevd drops this line",
                key.as_str()
            ),
        ));
    }
    let Some((at, a)) = &lexed.attr else {
        return Ok(());
    };
    if a.is_empty() || !a.bytes().all(attr_char) {
        return Err(Refusal::At(
            *at,
            "invalid-attr",
            format!("attribute name '{a}' is not a plain name ([A-Za-z0-9_])"),
        ));
    }
    if matches!(key, Key::Attr | Key::Attrs) && !MATCH_ATTRS.contains(&a.as_str()) {
        return Err(Refusal::At(
            *at,
            "attr-name",
            format!(
                "{}{{{a}}}: only USB descriptor attributes may be matched ({}); reading others on every device can do hardware I/O",
                key.as_str(),
                MATCH_ATTRS.join(", ")
            ),
        ));
    }
    Ok(())
}

fn rule_is_empty(rule: &Rule) -> bool {
    rule.tokens.is_empty() && rule.label.is_none() && rule.goto.is_none()
}

/// LABEL stands alone; GOTO sits on a line of matches only; a line does
/// something.
fn check_shape(rule: &Rule, line: &Logical, findings: &mut Vec<Finding>) -> bool {
    let (l, _) = line.pos(0);
    let assigns = rule.tokens.iter().any(|t| !t.op.is_match());
    let problem = if rule.label.is_some() && (!rule.tokens.is_empty() || rule.goto.is_some()) {
        Some(("goto-shape", "LABEL must stand alone on its line"))
    } else if rule.goto.is_some() && assigns {
        Some((
            "goto-shape",
            "GOTO may only follow matches on its line; put assignments on a line of their own",
        ))
    } else if rule.label.is_none() && rule.goto.is_none() && !assigns {
        Some((
            "no-effect",
            "the line only matches and assigns nothing; udevd ignores it",
        ))
    } else {
        None
    };
    if let Some((id, msg)) = problem {
        findings.push(err(l, 1, id, msg.into()));
        return false;
    }
    true
}

/// Each LABEL once: with two, which one a GOTO reaches depends on reading
/// order details; say it once.
fn check_labels(file: &mut RulesFile) {
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut found = Vec::new();
    for r in &file.rules {
        if let Some(l) = r.label.as_deref()
            && !seen.insert(l)
        {
            found.push(err(
                r.line,
                1,
                "duplicate-label",
                format!("LABEL=\"{l}\" appears twice in the file"),
            ));
        }
    }
    file.findings.extend(found);
}

#[cfg(test)]
mod tests;
