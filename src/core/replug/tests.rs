//! `arrived` table-style, and the backoff as a timeline of arrivals and runs.

use super::*;
use crate::core::status::tests::{device, usb_with as usb};

#[test]
fn what_counts_as_an_arrival() {
    let ups = vec!["051d:0002".to_string()];
    let at = |bus_dev: &str| usb(1, vec![device("051d:0002", bus_dev, "ok")]);
    let cases: Vec<(&str, Option<Usb>, Usb, Vec<&str>)> = vec![
        ("first check since start", None, at("003:002"), vec![]),
        (
            "same device number",
            Some(at("003:002")),
            at("003:002"),
            vec![],
        ),
        (
            "new device number (unplug and plug seen as one)",
            Some(at("003:002")),
            at("003:003"),
            vec!["051d:0002 at 003:003"],
        ),
        (
            "back after being absent",
            Some(usb(1, vec![device("051d:0002", "-", "device-absent")])),
            at("003:004"),
            vec!["051d:0002 at 003:004"],
        ),
        (
            "back, but not usable: no restart can help",
            Some(at("003:002")),
            usb(1, vec![device("051d:0002", "003:003", "rules-not-applied")]),
            vec![],
        ),
        (
            "gone",
            Some(at("003:002")),
            usb(1, vec![device("051d:0002", "-", "device-absent")]),
            vec![],
        ),
        (
            "another device that is not expected",
            Some(at("003:002")),
            usb(
                1,
                vec![
                    device("051d:0002", "003:002", "ok"),
                    device("0463:ffff", "003:005", "ok"),
                ],
            ),
            vec![],
        ),
    ];
    for (what, before, after, want) in cases {
        assert_eq!(arrived(&ups, before.as_ref(), &after), want, "{what}");
    }
    // Two of the expected kind: only the new one arrived.
    let two = |a: &str, b: &str| {
        usb(
            1,
            vec![device("051d:0002", a, "ok"), device("051d:0002", b, "ok")],
        )
    };
    assert_eq!(
        arrived(
            &ups,
            Some(&two("001:002", "001:003")),
            &two("001:002", "001:007")
        ),
        vec!["051d:0002 at 001:007"]
    );
}

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn the_first_arrival_runs_at_once_and_a_flapping_device_backs_off() {
    let t0 = Instant::now();
    let mut b = Backoff::default();
    assert_eq!(b.deadline(), None);

    // First arrival: now.
    assert_eq!(b.arrived(t0, vec!["a".into()]), t0);
    assert_eq!(b.take_due(t0), Some(vec!["a".into()]));
    // While it runs, nothing is due, even an arrival's.
    assert_eq!(b.arrived(t0 + s(1), vec!["b".into()]), t0 + FIRST_GAP);
    assert_eq!(b.deadline(), None, "waits for the running one");
    assert_eq!(b.take_due(t0 + s(20)), None);
    b.finished();
    assert_eq!(b.deadline(), Some(t0 + FIRST_GAP));
    // Arrivals before the due run join it, each once.
    assert_eq!(
        b.arrived(t0 + s(2), vec!["b".into(), "c".into()]),
        t0 + FIRST_GAP
    );
    assert_eq!(b.take_due(t0 + s(9)), None, "not before the gap");
    assert_eq!(b.take_due(t0 + s(10)), Some(vec!["b".into(), "c".into()]));
    b.finished();

    // Flapping: each run within twice the gap doubles it.
    assert_eq!(b.arrived(t0 + s(11), vec!["d".into()]), t0 + s(30));
    assert_eq!(b.take_due(t0 + s(30)), Some(vec!["d".into()]));
    b.finished();
    assert_eq!(b.arrived(t0 + s(31), vec!["e".into()]), t0 + s(70));
    assert!(b.take_due(t0 + s(70)).is_some());
    b.finished();
    // ... up to MAX_GAP.
    let mut last = t0 + s(70);
    for _ in 0..10 {
        let at = b.arrived(last + s(1), vec!["f".into()]);
        assert!(at - last <= MAX_GAP);
        assert!(b.take_due(at).is_some());
        b.finished();
        last = at;
    }
    assert_eq!(b.arrived(last + s(1), vec!["g".into()]), last + MAX_GAP);
    assert!(b.take_due(last + MAX_GAP).is_some());
    b.finished();
    last += MAX_GAP;

    // Quiet for more than twice the gap: back to the first gap, and an
    // arrival after the gap runs at once.
    let calm = last + 2 * MAX_GAP + s(1);
    assert_eq!(b.arrived(calm, vec!["h".into()]), calm);
    assert!(b.take_due(calm).is_some());
    b.finished();
    assert_eq!(b.arrived(calm + s(1), vec!["i".into()]), calm + FIRST_GAP);
    assert_eq!(b.deadline(), Some(calm + FIRST_GAP));
}
