//! Hints for config errors from the YAML parser: "did you mean" for an
//! unknown key or value, and what an indentation mistake looks like. Pure.

/// The parser's `message` with a hint appended, when one fits.
pub(crate) fn with_hint(message: &str) -> String {
    match hint(message) {
        Some(h) => format!("{message}; {h}"),
        None => message.to_string(),
    }
}

fn hint(message: &str) -> Option<String> {
    if let Some((got, choices)) = unknown(message) {
        if got.contains(" - ") || got.starts_with("- ") {
            return Some(
                "two list items ran together: each `- item` needs a line of its own, indented like the others".into(),
            );
        }
        let best = choices
            .iter()
            .map(|c| (distance(got, c), *c))
            .filter(|(d, c)| *d <= (c.len() / 3).max(2))
            .min()?;
        return Some(format!("did you mean `{}`?", best.1));
    }
    let indentation = [
        "did not find expected",
        "expected mapping start",
        "mapping values are not allowed",
        "expected block end",
    ];
    indentation.iter().any(|m| message.contains(m)).then(|| {
        "hint: check the indentation of this line and the one above it: the items of a list (`- `) line up under each other, and a bridge's keys line up under its `name:`".to_string()
    })
}

/// From "unknown field `X`, expected one of a, b" (or "unknown variant"),
/// the unknown word and the choices.
fn unknown(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (got, rest) = rest.split_once('`')?;
    let list = rest.split_once("expected one of ")?.1;
    let choices = list
        .split(", ")
        .map(|c| c.trim().trim_matches('`'))
        .filter(|c| !c.is_empty())
        .collect();
    Some((got, choices))
}

/// Edit distance (insertions, deletions, substitutions) between `a` and `b`.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_table() {
        let table: &[(&str, Option<&str>)] = &[
            (
                "unknown field `sourc`, expected one of name, kind, source, include",
                Some("did you mean `source`?"),
            ),
            (
                "unknown variant `filez`, expected one of udev-rules, files",
                Some("did you mean `files`?"),
            ),
            (
                "unknown variant `udev-reloud`, expected one of `udev-reload`, `udev-trigger`",
                Some("did you mean `udev-reload`?"),
            ),
            ("unknown field `zzzzzz`, expected one of name, kind", None),
            (
                "unknown variant `udev-reload - udev-trigger`, expected one of udev-reload",
                Some("two list items ran together"),
            ),
            (
                "while parsing a block mapping, did not find expected key",
                Some("check the indentation"),
            ),
            ("expected mapping start", Some("check the indentation")),
            ("a duration is 300ms, 10s", None),
        ];
        for (message, want) in table {
            let got = hint(message);
            match want {
                Some(w) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(w)),
                    "{message}: {got:?}"
                ),
                None => assert_eq!(got, None, "{message}"),
            }
        }
    }

    #[test]
    fn edit_distance() {
        assert_eq!(distance("sourc", "source"), 1);
        assert_eq!(distance("filez", "files"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
