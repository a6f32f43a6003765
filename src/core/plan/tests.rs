//! Table tests of [`super`].
use super::*;

fn dg(b: u8) -> Digest {
    Digest([b; 32])
}
const WANT: Desired = Desired {
    mode: 0o644,
    prune: true,
    wait_for_content: false,
    uid: None,
    gid: None,
};

struct Case {
    what: &'static str,
    source: Option<SourceFile>,
    present: bool,
    owned: Option<Owned>,
    dest: DestFile,
    want: Desired,
    ops: Vec<Op>,
    owned_after: Option<Owned>,
    /// Which report list the name lands in, if not an op.
    note: &'static str,
}

fn file(b: u8, mode: u32) -> DestFile {
    DestFile::File {
        digest: Some(dg(b)),
        mode,
        uid: 0,
        gid: 0,
    }
}
fn own(b: u8) -> Option<Owned> {
    Some(Owned {
        digest: dg(b),
        mode: 0o644,
        uid: None,
        gid: None,
    })
}
/// `own(1)` with group `gid` set by the config.
fn own_as(gid: Option<u32>) -> Option<Owned> {
    own(1).map(|o| Owned { gid, ..o })
}
/// `own(1)` with owner and group root set by the config.
fn own_root() -> Option<Owned> {
    own(1).map(|o| Owned {
        uid: Some(0),
        gid: Some(0),
        ..o
    })
}
fn install(b: u8) -> Vec<Op> {
    vec![Op::Install {
        name: "x".into(),
        digest: dg(b),
    }]
}
fn replace(b: u8) -> Vec<Op> {
    vec![Op::Replace {
        name: "x".into(),
        digest: dg(b),
    }]
}

fn cases() -> Vec<Case> {
    let ready = |b| Some(SourceFile::Ready(dg(b)));
    let skipped = Some(SourceFile::Skipped("a symlink".into()));
    let base = |what, source, owned, dest, ops, owned_after, note| Case {
        what,
        source,
        present: true,
        owned,
        dest,
        want: WANT,
        ops,
        owned_after,
        note,
    };
    vec![
        base(
            "new file",
            ready(1),
            None,
            DestFile::Absent,
            install(1),
            own(1),
            "",
        ),
        base(
            "identical",
            ready(1),
            own(1),
            file(1, 0o644),
            vec![],
            own(1),
            "unchanged",
        ),
        base(
            "content changed",
            ready(2),
            own(1),
            file(1, 0o644),
            replace(2),
            own(2),
            "",
        ),
        base(
            "mode changed",
            ready(1),
            own(1),
            file(1, 0o600),
            replace(1),
            own(1),
            "",
        ),
        base(
            "owned, deleted by someone",
            ready(1),
            own(1),
            DestFile::Absent,
            install(1),
            own(1),
            "",
        ),
        base(
            "owned, edited by someone",
            ready(1),
            own(1),
            file(9, 0o644),
            replace(1),
            own(1),
            "",
        ),
        base(
            "dest too big to hash",
            ready(1),
            own(1),
            DestFile::File {
                digest: None,
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
            replace(1),
            own(1),
            "",
        ),
        base(
            "foreign file",
            ready(1),
            None,
            file(1, 0o644),
            vec![],
            None,
            "conflict",
        ),
        base(
            "dest is a symlink",
            ready(1),
            own(1),
            DestFile::Other("a symlink"),
            vec![],
            own(1),
            "conflict",
        ),
        base(
            "skipped keeps last good",
            skipped.clone(),
            own(1),
            file(1, 0o644),
            vec![],
            own(1),
            "skipped",
        ),
        base(
            "skipped, never installed",
            skipped,
            None,
            DestFile::Absent,
            vec![],
            None,
            "skipped",
        ),
        base(
            "source gone: prune",
            None,
            own(1),
            file(1, 0o644),
            vec![Op::Prune { name: "x".into() }],
            None,
            "",
        ),
        base(
            "source gone, dest gone: forget",
            None,
            own(1),
            DestFile::Absent,
            vec![],
            None,
            "",
        ),
        Case {
            present: false,
            ..base(
                "source dir missing: keep",
                None,
                own(1),
                file(1, 0o644),
                vec![],
                own(1),
                "kept",
            )
        },
        Case {
            want: Desired {
                wait_for_content: true,
                ..WANT
            },
            ..base(
                "source dir just recreated and empty: keep until content or grace",
                None,
                own(1),
                file(1, 0o644),
                vec![],
                own(1),
                "kept",
            )
        },
        Case {
            want: Desired {
                mode: 0o644,
                prune: false,
                wait_for_content: false,
                uid: None,
                gid: None,
            },
            ..base(
                "prune off: keep",
                None,
                own(1),
                file(1, 0o644),
                vec![],
                own(1),
                "kept",
            )
        },
        Case {
            want: Desired {
                gid: Some(7),
                ..WANT
            },
            ..base(
                "group changed in the config: replace",
                ready(1),
                own(1),
                file(1, 0o644),
                replace(1),
                own_as(Some(7)),
                "",
            )
        },
        base(
            "group dropped from the config: replace (back to root's)",
            ready(1),
            own_as(Some(7)),
            file(1, 0o644),
            replace(1),
            own(1),
            "",
        ),
        Case {
            want: Desired {
                uid: Some(0),
                gid: Some(0),
                ..WANT
            },
            ..base(
                "owner and group as set: unchanged",
                ready(1),
                own_root(),
                file(1, 0o644),
                vec![],
                own_root(),
                "unchanged",
            )
        },
    ]
}

#[test]
fn plan_table() {
    for c in cases() {
        let source = SourceView {
            present: c.present,
            files: c
                .source
                .iter()
                .map(|s| ("x".to_string(), s.clone()))
                .collect(),
        };
        let owned = c.owned.iter().map(|o| ("x".to_string(), *o)).collect();
        let dest = [("x".to_string(), c.dest.clone())].into();
        let p = plan(&source, &owned, &dest, c.want);
        assert_eq!(p.ops, c.ops, "{}", c.what);
        assert_eq!(p.owned_after.get("x").copied(), c.owned_after, "{}", c.what);
        let noted = |l: &[(String, String)]| l.iter().any(|(n, _)| n == "x");
        let got_note = if p.unchanged == 1 {
            "unchanged"
        } else if noted(&p.conflicts) {
            "conflict"
        } else if noted(&p.skipped) {
            "skipped"
        } else if noted(&p.kept) {
            "kept"
        } else {
            ""
        };
        assert_eq!(got_note, c.note, "{}", c.what);
        assert_eq!(p.changes(), !c.ops.is_empty(), "{}", c.what);
    }
}

#[test]
fn many_files_are_planned_in_name_order() {
    let source = SourceView {
        present: true,
        files: (0..5)
            .map(|i| (format!("{i}.rules"), SourceFile::Ready(dg(i))))
            .collect(),
    };
    let p = plan(&source, &BTreeMap::new(), &BTreeMap::new(), WANT);
    let names: Vec<&str> = p.ops.iter().map(Op::name).collect();
    assert_eq!(
        names,
        ["0.rules", "1.rules", "2.rules", "3.rules", "4.rules"]
    );
    assert_eq!(p.owned_after.len(), 5);
}

#[test]
fn digest_round_trips_through_hex() {
    let d = Digest([0xab; 32]);
    let s = d.to_string();
    assert_eq!(s.len(), 64);
    assert_eq!(s.parse::<Digest>(), Ok(d));
    assert!("zz".parse::<Digest>().is_err());
}

#[test]
fn union_walks_both_name_lists_once_in_order() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let table: &[(&[&str], &[&str], &[&str])] = &[
        (&["a", "c"], &["b", "c", "d"], &["a", "b", "c", "d"]),
        (&[], &["x"], &["x"]),
        (&["x"], &[], &["x"]),
        (&[], &[], &[]),
        (&["a", "b"], &["a", "b"], &["a", "b"]),
    ];
    for (a, b, want) in table {
        let (a, b) = (s(a), s(b));
        let got: Vec<&String> = union(a.iter(), b.iter()).collect();
        assert_eq!(got, want.iter().collect::<Vec<_>>(), "{a:?} {b:?}");
    }
}
