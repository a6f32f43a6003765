//! File-name rules for source entries: the safe charset and `include` globs. Pure.
//!
//! A container chooses the names in its export dir, and those names become
//! file names in host directories such as `/run/udev/rules.d`. Only a small,
//! boring charset is accepted, hidden names are ignored (editors and
//! `rsync`/`cp --backup` write their temp files there), and the length is
//! capped so that hostbridge's own temp names always fit in `NAME_MAX`.

/// Longest accepted source name, in bytes. Leaves room under Linux's 255-byte
/// `NAME_MAX` for the temp-file prefix and suffix used during install.
pub(crate) const MAX_NAME_LEN: usize = 200;

/// Why a directory entry's name is not a candidate for syncing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameVerdict {
    /// The name is safe and matches an `include` pattern.
    Candidate,
    /// The name is safe but matches no `include` pattern: silently ignored.
    NotIncluded,
    /// Hidden (leading dot): editor and tool temp files live here; ignored quietly.
    Hidden,
    /// The name is unsafe or unusual; skipped with a warning giving the reason.
    Rejected(&'static str),
}

/// Classifies a raw directory-entry name against the safe charset and the
/// bridge's `include` patterns.
pub(crate) fn classify(raw: &[u8], include: &[String]) -> NameVerdict {
    match candidate(raw, include) {
        Ok(_) => NameVerdict::Candidate,
        Err(verdict) => verdict,
    }
}

/// [`classify`], with a candidate's name as text (checked once: a listing
/// classifies every entry of the source).
pub(crate) fn candidate<'r>(raw: &'r [u8], include: &[String]) -> Result<&'r str, NameVerdict> {
    let Ok(name) = std::str::from_utf8(raw) else {
        return Err(NameVerdict::Rejected("name is not valid UTF-8"));
    };
    if name.starts_with('.') {
        return Err(NameVerdict::Hidden);
    }
    if let Some(reason) = unsafe_reason(name) {
        return Err(NameVerdict::Rejected(reason));
    }
    if include.iter().any(|p| glob_match(p, name)) {
        Ok(name)
    } else {
        Err(NameVerdict::NotIncluded)
    }
}

/// Returns why `name` is not an acceptable file name, or `None` when it is.
/// Accepts `[A-Za-z0-9._+@-]`, 1..=[`MAX_NAME_LEN`] bytes, no leading dot.
pub(crate) fn unsafe_reason(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty name");
    }
    if name.len() > MAX_NAME_LEN {
        return Some("name longer than 200 bytes");
    }
    if name.starts_with('.') {
        return Some("hidden name (leading dot)");
    }
    // Byte by byte: a byte of a multi-byte character is not ASCII either.
    // A table, not a test of each class: a listing checks every name.
    if name.bytes().any(|b| !NAME_BYTES[usize::from(b)]) {
        return Some("name has characters outside [A-Za-z0-9._+@-]");
    }
    None
}

/// The bytes a name may hold: `[A-Za-z0-9._+@-]`.
const NAME_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'+' | b'@');
        b += 1;
    }
    t
};

/// Shell-style glob match supporting `*` (any run, possibly empty) and `?`
/// (one character). No character classes: include patterns are simple.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    // Names and patterns are ASCII nearly always: bytes are characters
    // then, and nothing is allocated (a scan matches every name).
    // The common pattern, `*.rules`: a suffix, one comparison.
    if let Some(suffix) = pattern.strip_prefix('*')
        && !suffix.bytes().any(|b| b == b'*' || b == b'?')
    {
        return name.ends_with(suffix);
    }
    if pattern.is_ascii() && name.is_ascii() {
        return glob_match_units(pattern.as_bytes(), name.as_bytes(), b'*', b'?');
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_match_units(&p, &n, '*', '?')
}

/// [`glob_match`] over characters of any unit.
fn glob_match_units<T: PartialEq + Copy>(p: &[T], n: &[T], any: T, one: T) -> bool {
    let (mut pi, mut ni) = (0, 0);
    // Position of the last `*` seen and the name position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(&c) if c == any => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == one || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == any)
}

/// Whether some name could match both globs. Used by config validation to
/// refuse two bridges that could install the same destination file.
pub(crate) fn globs_overlap(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // reach[i][j]: prefixes a[..i] and b[..j] can match a common string.
    let mut reach = vec![vec![false; b.len() + 1]; a.len() + 1];
    reach[0][0] = true;
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            if !reach[i][j] {
                continue;
            }
            // A `*` may match nothing: skip it.
            if a.get(i) == Some(&'*') {
                reach[i + 1][j] = true;
            }
            if b.get(j) == Some(&'*') {
                reach[i][j + 1] = true;
            }
            if let (Some(&x), Some(&y)) = (a.get(i), b.get(j)) {
                // Both consume one common character; a `*` may also stay put.
                if x == y || x == '?' || y == '?' || x == '*' || y == '*' {
                    reach[i + 1][j + 1] = true;
                    if x == '*' {
                        reach[i][j + 1] = true;
                    }
                    if y == '*' {
                        reach[i + 1][j] = true;
                    }
                }
            }
        }
    }
    reach[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn classify_table() {
        let rules = inc(&["*.rules"]);
        let cases: &[(&[u8], NameVerdict)] = &[
            (b"62-nut-usbups.rules", NameVerdict::Candidate),
            (b"README", NameVerdict::NotIncluded),
            (b"62-nut.rules.tmp", NameVerdict::NotIncluded),
            (b".62-nut.rules.swp", NameVerdict::Hidden),
            (b".hostbridge-1-2.tmp", NameVerdict::Hidden),
            (
                b"a b.rules",
                NameVerdict::Rejected("name has characters outside [A-Za-z0-9._+@-]"),
            ),
            (
                b"x.rules~",
                NameVerdict::Rejected("name has characters outside [A-Za-z0-9._+@-]"),
            ),
            (
                b"\xff\xfe.rules",
                NameVerdict::Rejected("name is not valid UTF-8"),
            ),
            (
                b"caf\xc3\xa9.rules",
                NameVerdict::Rejected("name has characters outside [A-Za-z0-9._+@-]"),
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(
                &classify(raw, &rules),
                want,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        let long = format!("{}.rules", "a".repeat(MAX_NAME_LEN));
        assert_eq!(
            classify(long.as_bytes(), &rules),
            NameVerdict::Rejected("name longer than 200 bytes")
        );
    }

    #[test]
    fn glob_match_table() {
        let cases = [
            ("*.rules", "62-nut.rules", true),
            ("*.rules", "62-nut.rules.bak", false),
            ("*.rules", ".rules", true),
            ("62-*-usb*.rules", "62-nut-usbups.rules", true),
            ("62-*-usb*.rules", "62-nut-ups.rules", false),
            ("tls.???", "tls.crt", true),
            ("tls.???", "tls.cert", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a*b*c", "abxbc", true),
            ("a*b*c", "acb", false),
            ("**x", "yx", true),
        ];
        for (p, n, want) in cases {
            assert_eq!(glob_match(p, n), want, "{p} vs {n}");
        }
    }

    #[test]
    fn globs_overlap_table() {
        let cases = [
            ("*.rules", "*.rules", true),
            ("*.rules", "62-*.rules", true),
            ("62-*.rules", "70-*.rules", false),
            ("62-*.rules", "*-nut.rules", true),
            ("tls.crt", "tls.key", false),
            ("tls.crt", "*.crt", true),
            ("tls.?rt", "tls.c*", true),
            ("a*", "*b", true),
            ("a", "b*", false),
            ("*.pem", "*.rules", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(globs_overlap(a, b), want, "{a} vs {b}");
            assert_eq!(globs_overlap(b, a), want, "{b} vs {a}");
        }
    }
}
