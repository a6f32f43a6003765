//! Table tests of the allow-list reader: each case is a file and the ids
//! it must be refused with (empty: accepted).

use super::*;

fn ids(src: &[u8]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = parse(src).findings.iter().map(|f| f.rule).collect();
    v.sort();
    v.dedup();
    v
}

const GRANT: &str = "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0660\", GROUP=\"nut\"";

#[test]
fn accepted_shapes() {
    let cases: &[&str] = &[
        GRANT,
        "SUBSYSTEM==\"usb\",ATTR{idVendor}==\"051d\",MODE=\"0660\"",
        "SUBSYSTEM == \"usb\" ATTR{idVendor} == \"051d\"\tMODE = \"0660\",",
        "  # a comment with UTF-8: Überspannung \u{2013} ok\nSUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0660\"",
        "ACTION!=\"add|change\", GOTO=\"end\"\nSUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0660\"\nLABEL=\"end\"",
        "GOTO=\"end\"\nLABEL=\"end\"",
        "SUBSYSTEM==\"usb\", \\\n   ATTR{idVendor}==\"051d\", MODE=\"0660\"",
        "KERNEL==\"hiddev[0-9]*\", ATTRS{idVendor}==\"051d\", MODE=\"0660\"",
        "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", OPTIONS+=\"link_priority=-10\", TAG+=\"uaccess\"",
        "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", ENV{ID_UPS}=\"1\"",
        "SUBSYSTEM==\"usb\", ATTR{product}==\"Back-UPS ES 700\", MODE:=\"0660\"",
        "",
        "\n\n# only comments\n",
    ];
    for c in cases {
        assert_eq!(ids(c.as_bytes()), Vec::<&str>::new(), "{c:?}");
    }
}

#[test]
fn refused_shapes() {
    let cases: &[(&[u8], &[&str])] = &[
        // Line reading: udevd ends lines at CR and NUL.
        (b"SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0660\"\n# x\rRUN+=\"/bin/sh\"\n", &["line-ending"]),
        (b"# x\0RUN+=\"/bin/sh\"\n", &["line-ending"]),
        (b"SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE=\"0660\"\r\n", &["line-ending"]),
        (b"# \x1b[2J\n", &["control-byte"]),
        (b"SUBSYSTEM==\"usb\xc3\xa9\", MODE=\"0660\"\n", &["non-ascii"]),
        // Escapes and prefixes.
        (b"SUBSYSTEM==\"usb\", ATTR{idVendor}==e\"\\x30\\x35\\x31\\x64\", MODE=\"0660\"\n", &["escape"]),
        (b"SUBSYSTEM==\"us\\\"b\", MODE=\"0660\"\n", &["escape"]),
        (b"SUBSYSTEM==i\"USB\", MODE=\"0660\"\n", &["value-prefix"]),
        (b"SUBSYSTEM==usb, MODE=\"0660\"\n", &["syntax"]),
        // Dropped lines are refused, never modelled as "probably fine".
        (b"SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", OPTIONS+=\"link_priority=x\", MODE=\"0660\"\n", &[]),
        (b"subsystem==\"usb\", MODE=\"0660\"\n", &["unknown-key"]),
        (b"SUBSYSTEM==\"usb\" ATTR {idVendor}==\"051d\", MODE=\"0660\"\n", &["syntax"]),
        (b"SUBSYSTEM==\"usb\"ATTR{idVendor}==\"051d\", MODE=\"0660\"\n", &["syntax"]),
        (b"SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", MODE+=\"0660\"\n", &["operator-assumed"]),
        (b"SUBSYSTEM=\"usb\", MODE=\"0660\"\n", &["invalid-operator"]),
        (b"SUBSYSTEM==\"usb\", SUBSYSTEM==\"tty\", MODE=\"0660\"\n", &["duplicate-key"]),
        (b"SUBSYSTEM==\"usb\"\n", &["no-effect"]),
        (b"SUBSYSTEM==\"usb\", MODE=\"0660\", GOTO=\"x\"\nLABEL=\"x\"\n", &["goto-shape"]),
        (b"LABEL=\"x\", MODE=\"0660\"\n", &["goto-shape"]),
        (b"GOTO=\"x\"\n", &["goto-missing-label"]),
        (b"LABEL=\"x\"\nGOTO=\"x\"\n", &["goto-missing-label"]),
        (b"GOTO=\"x\"\nLABEL=\"x\"\nLABEL=\"x\"\n", &["duplicate-label"]),
        (b"ENV{x y}==\"1\", MODE=\"0660\"\n", &["invalid-attr"]),
        (b"ATTRS{[dmi/id]sys_vendor}==\"x\", MODE=\"0660\"\n", &["invalid-attr"]),
        (b"ATTR{idVendor%k}==\"x\", MODE=\"0660\"\n", &["invalid-attr"]),
        // Only USB descriptor attributes: others may do hardware I/O.
        (b"ATTRS{config}==\"x\", GOTO=\"e\"\nLABEL=\"e\"\n", &["attr-name"]),
        (b"ATTR{vpd}==\"x\", MODE=\"0660\"\n", &["attr-name"]),
        (b"SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", GROUP=\"{x}\"\n", &["value-charset"]),
        (b"KERNEL{x}==\"x\", MODE=\"0660\"\n", &["invalid-attr"]),
        (b"SUBSYSTEM==\"usb%k\", MODE=\"0660\"\n", &["value-charset"]),
        (b"SUBSYSTEM==\"usb\", GROUP=\"nut nut\"\n", &["value-charset"]),
        (b"SUBSYSTEM==\"usb\", MODE=\"\"\n", &["value-charset"]),
        // Keys outside the subset.
        (b"RUN+=\"/bin/sh\"\n", &["run"]),
        (b"RUN{builtin}+=\"kmod load x\"\n", &["run"]),
        (b"PROGRAM==\"/bin/x\", MODE=\"0660\"\n", &["program"]),
        (b"IMPORT{program}=\"/bin/x\", MODE=\"0660\"\n", &["import"]),
        (b"TEST==\"/sys/*/x\", MODE=\"0660\"\n", &["test"]),
        (b"TEST{0644}==\"/x\", MODE=\"0660\"\n", &["test"]),
        (b"SYSCTL{kernel/x}==\"1\", MODE=\"0660\"\n", &["sysctl-match"]),
        (b"SYSCTL{kernel/x}=\"1\"\n", &["sysctl-write"]),
        (b"ATTR{power/control}=\"on\"\n", &["attr-write"]),
        (b"NAME=\"eth9\"\n", &["name"]),
        (b"CONST{virt}==\"kvm\", MODE=\"0660\"\n", &["match-key"]),
        (b"RESULT==\"x\", MODE=\"0660\"\n", &["match-key"]),
        (b"SECLABEL{selinux}=\"x\"\n", &["seclabel"]),
        (b"TAG=\"uaccess\"\n", &["tag"]),
        (b"SYMLINK=\"ups\"\n", &["symlink"]),
        // Continuations that cannot be normalised.
        (b"SUBSYSTEM==\"usb\", \\\n# hidden\nMODE=\"0660\"\n", &["continuation"]),
        (b"SUBSYSTEM==\"usb\", \\\n\nMODE=\"0660\"\n", &["continuation"]),
        (b"SUBSYSTEM==\"usb\", MODE=\"0660\" \\\n", &["continuation-at-eof"]),
    ];
    for (src, want) in cases {
        assert_eq!(
            ids(src),
            want.to_vec(),
            "{:?}",
            String::from_utf8_lossy(src)
        );
    }
}

#[test]
fn an_options_value_is_the_policys_to_judge() {
    // The reader takes any OPTIONS value in the charset; the policy allows
    // only the exact forms it knows (tested in policy/tests.rs).
    let f = parse(b"SUBSYSTEM==\"usb\", ATTR{idVendor}==\"051d\", OPTIONS+=\"link_priority=x\"\n");
    assert_eq!(f.rules[0].tokens[2].value, "link_priority=x");
}

#[test]
fn findings_point_at_the_physical_line_and_column() {
    let f = parse(b"# c\nSUBSYSTEM==\"usb\", \\\n   RUN+=\"x\"\n");
    assert_eq!((f.findings[0].line, f.findings[0].column), (3, 4));
    let f = parse(b"ok\nGROUP=\"nut\"\r\n");
    assert_eq!((f.findings[0].line, f.findings[0].column), (2, 12));
}

#[test]
fn an_overlong_rule_is_refused() {
    let long = format!("SUBSYSTEM==\"{}\", MODE=\"0660\"\n", "a".repeat(LINE_MAX));
    assert_eq!(ids(long.as_bytes()), ["line-too-long"]);
}
