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
        let mut unsettled = Vec::new();
        assert_eq!(
            arrived(&ups, before.as_ref(), &after, &mut unsettled),
            want,
            "{what}"
        );
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
            &two("001:002", "001:007"),
            &mut Vec::new()
        ),
        vec!["051d:0002 at 001:007"]
    );
}

#[test]
fn a_device_that_comes_back_unusable_arrives_once_it_is_ok() {
    let ups = vec!["051d:0002".to_string()];
    let at = |bus_dev: &str, verdict: &str| usb(1, vec![device("051d:0002", bus_dev, verdict)]);
    let mut unsettled = Vec::new();
    // Back at 003:003 while its rules are not applied: nothing yet.
    let (old, bad) = (at("003:002", "ok"), at("003:003", "rules-not-applied"));
    assert!(arrived(&ups, Some(&old), &bad, &mut unsettled).is_empty());
    assert_eq!(unsettled, vec!["051d:0002 at 003:003"]);
    // Still not: still waiting.
    assert!(arrived(&ups, Some(&bad), &bad, &mut unsettled).is_empty());
    assert_eq!(unsettled.len(), 1);
    // The rules come back: ok at the same bus:dev, so it arrives now, once.
    let good = at("003:003", "ok");
    assert_eq!(
        arrived(&ups, Some(&bad), &good, &mut unsettled),
        vec!["051d:0002 at 003:003"]
    );
    assert!(unsettled.is_empty());
    assert!(arrived(&ups, Some(&good), &good, &mut unsettled).is_empty());
    // One that is gone before it became ok is forgotten.
    assert!(
        arrived(
            &ups,
            Some(&good),
            &at("003:004", "user-cannot-open"),
            &mut unsettled
        )
        .is_empty()
    );
    let gone = usb(1, vec![device("051d:0002", "-", "device-absent")]);
    assert!(arrived(&ups, Some(&good), &gone, &mut unsettled).is_empty());
    assert!(unsettled.is_empty());
}

#[test]
fn a_held_back_run_acts_only_for_devices_still_there() {
    let what = vec!["051d:0002 at 003:003".to_string()];
    let now = |bus_dev: &str, verdict: &str| usb(1, vec![device("051d:0002", bus_dev, verdict)]);
    assert_eq!(still_there(&what, Some(&now("003:003", "ok"))), what);
    assert!(still_there(&what, Some(&now("003:004", "ok"))).is_empty());
    assert!(still_there(&what, Some(&now("003:003", "user-cannot-open"))).is_empty());
    assert!(still_there(&what, None).is_empty());
}

#[test]
fn a_device_replugged_every_20_s_is_restarted_ever_more_rarely() {
    let t0 = Instant::now();
    let mut b = Backoff::default();
    let mut runs = Vec::new();
    for i in 0..90u64 {
        let now = t0 + s(20 * i);
        b.arrived(now, vec![format!("at {i}")]);
        // Whatever became due before the next arrival runs (and ends).
        let mut t = now;
        while t < now + s(20) {
            if b.take_due(t).is_some() {
                runs.push(t.duration_since(t0).as_secs());
                b.finished();
            }
            t += s(1);
        }
    }
    // 30 minutes of flapping: the gaps double to MAX_GAP, not a run per replug.
    assert!(runs.len() <= 12, "{runs:?}");
    let gaps: Vec<u64> = runs.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().rev().take(2).all(|g| *g >= MAX_GAP.as_secs()),
        "{gaps:?}"
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
