//! Text that came from input (file names, rule text, a child's output), made
//! safe to print in a log line, a journal field or a terminal. Pure.

use std::borrow::Cow;

/// Where something is, compiler-style: `FILE:LINE:COL`, `FILE:LINE` when
/// the column is unknown (0), or just `FILE` when the line is too (a
/// finding about the whole file, a config file that cannot be read).
pub(crate) fn position(file: &str, line: u64, column: u64) -> String {
    match (line, column) {
        (0, _) => file.to_string(),
        (l, 0) => format!("{file}:{l}"),
        (l, c) => format!("{file}:{l}:{c}"),
    }
}

/// "1 file", "2 files": a count and its noun (regular plurals only).
pub(crate) fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `s` with every control character (newline, CR, ESC, DEL, the C1 range …)
/// and every bidirectional-override or zero-width format character written
/// as a visible escape, so text from a container can neither start a
/// forged log line, drive the terminal, nor reorder what is shown. Text
/// without any is returned as it is.
pub(crate) fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' // zero-width, LRM, RLM
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202a}'..='\u{202e}' // bidi embeddings and overrides
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            ("plain name.rules", "plain name.rules"),
            (
                "x\n2026 INFO installed fake",
                "x\\n2026 INFO installed fake",
            ),
            ("a\rb\tc", "a\\rb\\tc"),
            ("\x1b[2J", "\\x1b[2J"),
            ("\x7f\u{85}", "\\x7f\\x85"),
            ("évian ok", "évian ok"),
            ("abc\u{202e}lmth.exe", "abc\\u{202e}lmth.exe"),
            ("line\u{2028}sep", "line\\u{2028}sep"),
        ];
        for (input, want) in cases {
            assert_eq!(escape(input), want, "{input:?}");
        }
        assert!(matches!(escape("ok"), Cow::Borrowed(_)));
    }
}
