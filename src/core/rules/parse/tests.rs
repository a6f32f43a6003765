//! Parser tests: table-driven per key and operator, plus continuation,
//! quoting, escapes and GOTO/LABEL flow.

use super::*;

fn p(s: &str) -> RulesFile {
    parse(s.as_bytes())
}

/// (line, rule ids of errors) for a one-line file.
fn errors(s: &str) -> Vec<&'static str> {
    p(s).findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.rule)
        .collect()
}

fn warnings(s: &str) -> Vec<&'static str> {
    p(s).findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .map(|f| f.rule)
        .collect()
}

#[test]
fn every_key_with_its_operators() {
    // (line, expected error rule or "" for valid)
    let cases: &[(&str, &str)] = &[
        (r#"ACTION=="add""#, ""),
        (r#"ACTION="add""#, "invalid-operator"),
        (r#"ACTION{x}=="add""#, "invalid-attr"),
        (r#"DEVPATH=="/devices/*""#, ""),
        (r#"KERNEL!="sd*""#, ""),
        (r#"KERNELS=="1-1""#, ""),
        (r#"NAME=="eth0""#, ""),
        (r#"NAME="lan0""#, ""),
        (r#"NAME="%k""#, "invalid-value"),
        (r#"NAME-="x""#, "invalid-operator"),
        (r#"SYMLINK+="ups0""#, ""),
        (r#"SYMLINK=="ups*""#, ""),
        (r#"SUBSYSTEM=="usb""#, ""),
        (r#"SUBSYSTEM+="usb""#, "invalid-operator"),
        (r#"SUBSYSTEMS=="usb""#, ""),
        (r#"DRIVER=="usbhid""#, ""),
        (r#"DRIVERS=="usbhid""#, ""),
        (r#"ATTR{idVendor}=="051d""#, ""),
        (r#"ATTR{power/control}="auto""#, ""),
        (r#"ATTR=="x""#, "invalid-attr"),
        (r#"ATTR{x}-="y""#, "invalid-operator"),
        (r#"ATTRS{idVendor}=="051d""#, ""),
        (r#"ATTRS{idVendor}="051d""#, "invalid-operator"),
        (r#"SYSCTL{kernel/x}="1""#, ""),
        (r#"ENV{ID_X}=="1""#, ""),
        (r#"ENV{ID_X}="1""#, ""),
        (r#"ENV{DEVNAME}="x""#, "invalid-attr"),
        (r#"ENV="1""#, "invalid-attr"),
        (r#"CONST{arch}=="x86-64""#, ""),
        (r#"CONST{foo}=="x""#, "invalid-attr"),
        (r#"TAG+="uaccess""#, ""),
        (r#"TAG=="uaccess""#, ""),
        (r#"TAGS=="systemd""#, ""),
        (r#"TEST=="/dev/x""#, ""),
        (r#"TEST{0644}=="/dev/x""#, ""),
        (r#"TEST{rw}=="/dev/x""#, "invalid-attr"),
        (r#"TEST="/dev/x""#, "invalid-operator"),
        (r#"PROGRAM=="/bin/true""#, ""),
        (r#"PROGRAM="/bin/true""#, ""),
        (r#"RESULT=="x""#, ""),
        (r#"IMPORT{program}="x""#, ""),
        (r#"IMPORT{builtin}="usb_id""#, ""),
        (r#"IMPORT{file}="/x""#, ""),
        (r#"IMPORT{db}="X""#, ""),
        (r#"IMPORT{cmdline}="x""#, ""),
        (r#"IMPORT{parent}="X""#, ""),
        (r#"IMPORT{bogus}="x""#, "invalid-attr"),
        (r#"IMPORT="x""#, "invalid-attr"),
        (r#"RUN+="/bin/true""#, ""),
        (r#"RUN{program}+="/bin/true""#, ""),
        (r#"RUN{builtin}+="kmod load x""#, ""),
        (r#"RUN{shell}+="x""#, "invalid-attr"),
        (r#"RUN=="x""#, "invalid-operator"),
        (r#"OPTIONS+="link_priority=10""#, ""),
        (r#"OPTIONS=="x""#, "invalid-operator"),
        (r#"OWNER="nut""#, ""),
        (r#"OWNER=="nut""#, "invalid-operator"),
        (r#"GROUP="nut""#, ""),
        (r#"GROUP:="nut""#, ""),
        (r#"GROUP-="nut""#, "invalid-operator"),
        (r#"MODE="0664""#, ""),
        (r#"MODE{x}="0664""#, "invalid-attr"),
        (r#"SECLABEL{selinux}="x""#, ""),
        (r#"SECLABEL="x""#, "invalid-attr"),
        (r#"LABEL="x""#, ""),
        (r#"LABEL+="x""#, "invalid-operator"),
        (
            r#"GOTO="x"
LABEL="x""#,
            "",
        ),
        (r#"GOTO=="x""#, "invalid-operator"),
        (r#"action=="add""#, "unknown-key"),
        (r#"FOO=="bar""#, "unknown-key"),
        (r#"KERNEL==i"SD*""#, ""),
        (r#"MODE=i"0664""#, "invalid-prefix"),
    ];
    for (line, want) in cases {
        let got = errors(line);
        if want.is_empty() {
            assert!(got.is_empty(), "{line}: unexpected {got:?}");
        } else {
            assert_eq!(got, [*want], "{line}");
        }
    }
}

#[test]
fn operators_udev_corrects_are_warnings() {
    let cases: &[(&str, Op)] = &[
        (r#"GROUP+="nut""#, Op::Assign),
        (r#"MODE+="0664""#, Op::Assign),
        (r#"OWNER+="nut""#, Op::Assign),
        (r#"NAME+="x""#, Op::Assign),
        (r#"ENV{X}:="1""#, Op::Assign),
        (r#"TAG:="x""#, Op::Assign),
        (r#"ATTR{x}+="1""#, Op::Assign),
        (r#"SYSCTL{x}:="1""#, Op::Assign),
    ];
    for (line, op) in cases {
        assert_eq!(warnings(line), ["operator-assumed"], "{line}");
        assert_eq!(p(line).rules[0].tokens[0].op, *op, "{line}");
    }
    // PROGRAM and IMPORT with an assignment operator are matches.
    assert_eq!(p(r#"PROGRAM="x""#).rules[0].tokens[0].op, Op::Match);
    assert_eq!(warnings(r#"OPTIONS+="frobnicate""#), ["invalid-option"]);
}

#[test]
fn malformed_pairs_are_syntax_errors_with_columns() {
    let cases: &[(&str, u32)] = &[
        (r#"KERNEL=="sd*", MODE=0666"#, 21),
        (r#"KERNEL=="sd*"#, 9),
        (r#"KERNEL"#, 1),
        (r#"ATTR{idVendor=="051d""#, 5),
        (r#"KERNEL~"sd*""#, 1),
        (r#"ATTR{x}junk=="y""#, 8),
        (r#"KERNEL==ee"x""#, 9),
        (r#"KERNEL==e"\q""#, 11),
    ];
    for (line, col) in cases {
        let f = &p(line).findings;
        assert_eq!(f.len(), 1, "{line}: {f:?}");
        assert_eq!(
            (f[0].rule, f[0].line, f[0].column),
            ("syntax", 1, *col),
            "{line}: {}",
            f[0].message
        );
        assert!(p(line).rules.is_empty(), "{line}: udevd drops the line");
    }
}

#[test]
fn spacing_commas_and_quotes() {
    let f = p(r#"  RUN +="/bin/x a",GROUP = "nut"    MODE:="0660" ,, TAG+="a\"b""#);
    assert!(f.findings.is_empty(), "{:?}", f.findings);
    let t = &f.rules[0].tokens;
    assert_eq!(t.len(), 4);
    assert_eq!(
        (t[0].key, t[0].op, t[0].value.as_str(), t[0].column),
        (Key::Run, Op::Add, "/bin/x a", 3)
    );
    assert_eq!(
        (t[1].key, t[1].op, t[1].value.as_str()),
        (Key::Group, Op::Assign, "nut")
    );
    assert_eq!((t[2].key, t[2].op), (Key::Mode, Op::AssignFinal));
    assert_eq!(t[3].value, "a\"b");
    // Without `e`, other backslashes stay as written.
    assert_eq!(p(r#"RUN+="a\nb""#).rules[0].tokens[0].value, "a\\nb");
}

#[test]
fn escaped_strings() {
    let cases: &[(&str, &str)] = &[
        (r#"RUN+=e"a\nb""#, "a\nb"),
        (r#"RUN+=e"\x2fbin\x2fsh""#, "/bin/sh"),
        (r#"RUN+=e"\057bin""#, "/bin"),
        (r#"RUN+=e"\u0041\s\"q\"""#, "A \"q\""),
        (r#"KERNEL==ie"SD\x2a""#, "SD*"),
        (r#"KERNEL==ei"x""#, "x"),
    ];
    for (line, want) in cases {
        let f = p(line);
        assert!(f.findings.is_empty(), "{line}: {:?}", f.findings);
        assert_eq!(f.rules[0].tokens[0].value, *want, "{line}");
    }
    assert!(p(r#"KERNEL==ie"x""#).rules[0].tokens[0].case_insensitive);
    assert_eq!(errors(r#"RUN+=e"\x0""#), ["syntax"]);
    assert_eq!(errors(r#"RUN+=e"\000""#), ["syntax"]);
}

#[test]
fn comments_blank_lines_and_continuations() {
    let text = "# comment\n\n   # indented comment\nKERNEL==\"a\", \\\n   # a comment inside a continuation is skipped\n   MODE=\"0660\", \\\n\tGROUP=\"nut\"\nKERNEL==\"b\"\r\n";
    let f = p(text);
    assert!(f.findings.is_empty(), "{:?}", f.findings);
    assert_eq!(f.rules.len(), 2);
    assert_eq!(f.rules[0].line, 4);
    let t = &f.rules[0].tokens;
    assert_eq!(
        t.iter().map(|t| (t.line, t.column)).collect::<Vec<_>>(),
        [(4, 1), (6, 4), (7, 2)]
    );
    assert_eq!(f.rules[1].tokens[0].value, "b");
    assert_eq!(f.physical_lines, 8);
}

#[test]
fn continuation_errors_point_at_the_physical_line() {
    let f = p("KERNEL==\"a\", \\\n  MODE=0660\n");
    assert_eq!(
        (f.findings[0].rule, f.findings[0].line, f.findings[0].column),
        ("syntax", 2, 8)
    );
    let f = p("KERNEL==\"a\", \\\n");
    assert_eq!(f.findings[0].rule, "continuation-at-eof");
    // An empty line ends a continuation.
    let f = p("KERNEL==\"a\", \\\n\nMODE=\"0600\"\n");
    assert_eq!(f.rules.len(), 2);
}

#[test]
fn overlong_lines() {
    let long = format!("KERNEL==\"{}\"\n", "a".repeat(LINE_MAX));
    let f = p(&long);
    assert_eq!(f.findings[0].rule, "line-too-long");
    assert!(f.findings[0].message.contains("refuses the whole file"));
    let mut cont = String::new();
    for _ in 0..5 {
        cont.push_str(&format!("KERNEL==\"{}\", \\\n", "b".repeat(4000)));
    }
    cont.push_str("MODE=\"0600\"\nKERNEL==\"ok\"\n");
    let f = p(&cont);
    assert_eq!(
        f.findings.iter().map(|f| f.rule).collect::<Vec<_>>(),
        ["line-too-long"]
    );
    assert_eq!(f.rules.len(), 1, "the line after the dropped one is kept");
}

#[test]
fn goto_and_label_flow() {
    let f = p("GOTO=\"end\"\nKERNEL==\"a\", GOTO=\"mid\"\nLABEL=\"mid\"\nLABEL=\"end\"\n");
    assert!(f.findings.is_empty(), "{:?}", f.findings);
    assert_eq!(f.rules[0].goto, Some(("end".into(), 3)));
    assert_eq!(f.rules[1].goto, Some(("mid".into(), 2)));
    // Labels only count after the GOTO.
    let f = p("LABEL=\"x\"\nGOTO=\"x\"\n");
    assert_eq!(f.findings[0].rule, "goto-missing-label");
    assert_eq!(f.rules[1].goto, None);
    assert_eq!(
        warnings("GOTO=\"a\", GOTO=\"b\"\nLABEL=\"a\""),
        ["multiple-goto"]
    );
}

#[test]
fn not_utf8_is_an_error() {
    let f = parse(b"KERNEL==\"a\"\nKERNEL==\"\xff\"\n");
    assert_eq!((f.findings[0].rule, f.findings[0].line), ("encoding", 2));
}

#[test]
fn modes() {
    assert_eq!(parse_mode("664"), Some(0o664));
    assert_eq!(parse_mode("0664"), Some(0o664));
    assert_eq!(parse_mode("04755"), Some(0o4755));
    assert_eq!(parse_mode("17777"), None);
    assert_eq!(parse_mode("0x1ff"), None);
    assert_eq!(parse_mode("$attr{mode}"), None);
    assert_eq!(parse_mode(""), None);
}
