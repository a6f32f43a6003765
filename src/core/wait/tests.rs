//! `judge`, table-style: one bridge status each, and the verdict `wait`
//! must give.

use super::*;
use crate::core::status::tests::{bridge, device, sync, usb_with as usb};
use crate::core::status::{ActionRun, Finding, Note, Pending, Syncing};

fn action(name: &str, ok: bool) -> ActionRun {
    ActionRun {
        action: name.into(),
        ok,
        detail: if ok {
            String::new()
        } else {
            "exit 1: boom".into()
        },
    }
}

/// What kind of verdict, and a piece of its text.
fn kind(v: &Verdict) -> (&'static str, &str) {
    match v {
        Verdict::Ready(t) => ("ready", t),
        Verdict::NotYet(t) => ("not-yet", t),
        Verdict::Refused(t) => ("refused", t),
        Verdict::Failed(t) => ("failed", t),
    }
}

#[test]
fn each_state_of_a_bridge_gets_its_verdict() {
    let ups = "051d:0002".to_string();
    let mut cases: Vec<(&str, Bridge, Vec<String>, &str, &str)> = Vec::new();
    let ok = bridge("nut-udev", Some(sync(1000)));
    cases.push(("all well", ok.clone(), vec![], "ready", "4 files in place"));

    let mut b = ok.clone();
    b.last_sync = None;
    cases.push(("never synced", b, vec![], "not-yet", "no sync"));

    let mut b = ok.clone();
    b.syncing = Some(Syncing {
        since: 1000,
        doing: "udevadm verify 62-nut-usbups.rules".into(),
        stuck: false,
    });
    cases.push(("syncing", b, vec![], "not-yet", "udevadm verify"));

    let mut b = ok.clone();
    b.pending = Some(Pending {
        since_ms: 1,
        files: vec!["a.rules".into()],
    });
    cases.push(("window open", b, vec![], "not-yet", "settling (1 file)"));

    let mut b = ok.clone();
    b.source_seen = false;
    cases.push(("source unseen", b, vec![], "not-yet", "has not been seen"));

    let mut b = ok.clone();
    b.watching = "error: EACCES".into();
    cases.push(("watch broken", b, vec![], "not-yet", "EACCES"));

    let mut b = ok.clone();
    b.last_sync = Some(crate::core::status::Sync::failed_with(
        1000,
        "startup".into(),
        "ENOSPC".into(),
    ));
    cases.push(("sync failed", b, vec![], "not-yet", "retried: ENOSPC"));

    let mut s = sync(1000);
    s.findings.push(Finding {
        file: "62-nut-usbups.rules".into(),
        line: 7,
        column: 1,
        severity: "error".into(),
        rule: "run-key".into(),
        message: "RUN is not allowed".into(),
    });
    let mut b = ok.clone();
    b.last_sync = Some(s);
    cases.push((
        "refused rule",
        b,
        vec![],
        "refused",
        "62-nut-usbups.rules:7:1",
    ));

    let mut s = sync(1000);
    s.findings.push(Finding {
        file: "62-nut-usbups.rules".into(),
        line: 3,
        column: 1,
        severity: "warning".into(),
        rule: "style".into(),
        message: "a warning only".into(),
    });
    let mut b = ok.clone();
    b.last_sync = Some(s);
    cases.push(("a warning is no refusal", b, vec![], "ready", "in place"));

    let mut s = sync(1000);
    s.skipped.push(Note {
        file: "big.rules".into(),
        reason: "over max_file_size".into(),
    });
    let mut b = ok.clone();
    b.last_sync = Some(s);
    cases.push(("skipped", b, vec![], "refused", "skipped big.rules"));

    let mut s = sync(1000);
    s.conflicts.push(Note {
        file: "62-nut-usbups.rules".into(),
        reason: "not hostbridge's".into(),
    });
    let mut b = ok.clone();
    b.last_sync = Some(s);
    cases.push(("conflict", b, vec![], "refused", "conflict at"));

    let mut s = sync(1000);
    s.held.push(Note {
        file: "a.rules".into(),
        reason: "open for writing".into(),
    });
    let mut b = ok.clone();
    b.last_sync = Some(s);
    cases.push(("held", b, vec![], "not-yet", "a.rules is held"));

    let mut s = sync(1000);
    s.result = "failed".into(); // as a sync whose action failed is
    s.actions.push(action("udev-trigger", false));
    let mut b = ok.clone();
    b.last_sync = Some(s);
    cases.push(("action failed", b, vec![], "failed", "udev-trigger failed"));

    // USB: the sync's check, and a newer hotplug check that replaces it.
    let mut s = sync(1000);
    s.result = "failed".into();
    s.actions.push(action("usb-check", false));
    let mut b = ok.clone();
    b.last_sync = Some(s.clone());
    b.usb = Some(usb(
        1000,
        vec![device(&ups, "001:003", "rules-not-applied")],
    ));
    cases.push((
        "usb check failed",
        b.clone(),
        vec![],
        "not-yet",
        "rules-not-applied",
    ));
    b.usb = Some(usb(1005, vec![device(&ups, "001:004", "ok")]));
    cases.push((
        "a newer hotplug check is ok",
        b.clone(),
        vec![ups.clone()],
        "ready",
        "051d:0002 at 001:004 ok (root:nut 0660)",
    ));

    let mut b = ok.clone();
    b.usb = Some(usb(1000, vec![device(&ups, "-", "device-absent")]));
    cases.push((
        "expected device absent",
        b.clone(),
        vec![],
        "not-yet",
        "device-absent",
    ));
    cases.push((
        "asked device absent",
        b,
        vec![ups.clone()],
        "not-yet",
        "051d:0002 is not plugged in",
    ));

    let mut b = ok.clone();
    b.usb = Some(usb(1000, vec![device("0627:0001", "001:002", "ok")]));
    cases.push((
        "another device is ok, the asked one absent",
        b.clone(),
        vec![ups.clone()],
        "not-yet",
        "not plugged in",
    ));
    cases.push(("no device asked", b, vec![], "ready", "0627:0001 ok"));

    cases.push((
        "a device asked of a bridge never checked",
        ok.clone(),
        vec![ups.clone()],
        "not-yet",
        "no USB check has run",
    ));

    let mut b = ok.clone();
    b.usb = Some(usb(
        1000,
        vec![
            device(&ups, "001:003", "ok"),
            device(&ups, "001:005", "user-cannot-open"),
        ],
    ));
    cases.push((
        "one of two same devices unusable",
        b,
        vec![ups.clone()],
        "not-yet",
        "001:005: user-cannot-open",
    ));

    for (what, b, asked, want, text) in cases {
        let v = judge(&b, &asked);
        let (got, said) = kind(&v);
        assert_eq!(got, want, "{what}: {v:?}");
        assert!(said.contains(text), "{what}: {said:?} lacks {text:?}");
    }
}
