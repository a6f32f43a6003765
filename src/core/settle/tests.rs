//! Table tests of [`super`].
use super::*;

const QUIET: Duration = Duration::from_millis(300);
const MAX: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One step of a table-driven scenario: at time `t` (ms after t0), feed an
/// input, or (with `None`) poll and expect a batch or not.
enum Step {
    In(u64, Input),
    /// Poll at `t`; expect `Some(changed names, forced)` or `None`.
    Poll(u64, Option<(&'static [&'static str], bool)>),
    /// Expect the deadline to be `t0 + t` (or no deadline).
    Deadline(Option<u64>),
    /// The running sync finishes at `t`; expect whether a window reopened.
    Finish(u64, bool),
}
use Step::*;

fn w(n: &str) -> Input {
    Input::Write(n.into())
}
fn c(n: &str) -> Input {
    Input::Close(n.into())
}
fn ch(n: &str) -> Input {
    Input::Change(n.into())
}

fn run(steps: &[Step]) {
    let t0 = Instant::now();
    let mut s = Settle::new(SettleTiming {
        quiet: QUIET,
        max_wait: MAX,
    });
    for (i, step) in steps.iter().enumerate() {
        match step {
            In(t, input) => s.observe(t0 + ms(*t), input.clone()),
            Poll(t, want) => {
                let got = s.poll(t0 + ms(*t));
                match (want, got) {
                    (None, None) => {}
                    (Some((names, forced)), Some(b)) => {
                        let names: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
                        assert_eq!(b.changed, names, "step {i}");
                        assert_eq!(b.forced, *forced, "step {i} forced");
                    }
                    (want, got) => panic!("step {i}: want {:?}, got {got:?}", want.is_some()),
                }
            }
            Deadline(want) => {
                assert_eq!(s.deadline(), want.map(|t| t0 + ms(t)), "step {i}")
            }
            Finish(t, want) => assert_eq!(s.finish_sync(t0 + ms(*t)), *want, "step {i}"),
        }
    }
}

#[test]
fn idle_has_no_deadline() {
    run(&[Deadline(None), Poll(100_000, None)]);
}

#[test]
fn single_write_settles_after_quiet() {
    run(&[
        In(0, w("a.rules")),
        In(5, c("a.rules")),
        Deadline(Some(305)),
        Poll(304, None),
        Poll(305, Some((&["a.rules"], false))),
        Deadline(None),
        Finish(400, false),
        Deadline(None),
    ]);
}

#[test]
fn every_event_resets_quiet() {
    run(&[
        In(0, ch("a.rules")),
        In(200, ch("b.rules")),
        Poll(300, None),
        In(400, ch("c.rules")),
        Deadline(Some(700)),
        Poll(699, None),
        Poll(700, Some((&["a.rules", "b.rules", "c.rules"], false))),
    ]);
}

#[test]
fn max_wait_caps_a_continuous_stream() {
    let mut steps: Vec<Step> = (0..60).map(|i| In(i * 200, ch("a.rules"))).collect();
    steps.push(Poll(9_999, None));
    steps.push(Poll(10_000, Some((&["a.rules"], true))));
    run(&steps);
}

#[test]
fn open_file_holds_window_until_close() {
    run(&[
        In(0, w("slow.rules")),
        Deadline(Some(10_000)),
        Poll(2_000, None),
        In(2_500, w("slow.rules")),
        In(3_000, c("slow.rules")),
        Deadline(Some(3_300)),
        Poll(3_300, Some((&["slow.rules"], false))),
    ]);
}

#[test]
fn open_file_at_max_wait_is_reported_and_close_reopens() {
    let t0 = Instant::now();
    let mut s = Settle::new(SettleTiming {
        quiet: QUIET,
        max_wait: MAX,
    });
    s.observe(t0, w("stuck.rules"));
    s.observe(t0 + ms(10), c("done.rules"));
    let b = s.poll(t0 + MAX).expect("forced at max_wait");
    assert!(b.forced);
    assert_eq!(b.still_open.iter().collect::<Vec<_>>(), ["stuck.rules"]);
    assert!(!s.finish_sync(t0 + ms(10_050)), "nothing new: back to idle");
    assert_eq!(s.deadline(), None, "an open file alone arms no timer");
    s.observe(t0 + ms(20_000), c("stuck.rules"));
    assert_eq!(s.deadline(), Some(t0 + ms(20_300)));
    let b = s.poll(t0 + ms(20_300)).expect("close reopened a window");
    assert!(b.still_open.is_empty());
}

#[test]
fn delete_of_open_file_releases_it() {
    run(&[
        In(0, w("a.rules")),
        In(100, ch("a.rules")),
        Deadline(Some(400)),
        Poll(400, Some((&["a.rules"], false))),
    ]);
}

#[test]
fn events_during_sync_mark_dirty_and_reopen() {
    run(&[
        In(0, ch("a.rules")),
        Poll(300, Some((&["a.rules"], false))),
        In(350, w("b.rules")),
        In(360, c("b.rules")),
        Deadline(None),
        Finish(1_000, true),
        Deadline(Some(1_300)),
        Poll(1_300, Some((&["b.rules"], false))),
        Finish(1_400, false),
    ]);
}

#[test]
fn write_in_progress_across_sync_end_still_holds() {
    run(&[
        In(0, ch("a.rules")),
        Poll(300, Some((&["a.rules"], false))),
        In(350, w("b.rules")),
        Finish(400, true),
        Deadline(Some(10_400)),
        Poll(5_000, None),
        In(5_000, c("b.rules")),
        Poll(5_300, Some((&["b.rules"], false))),
    ]);
}

#[test]
fn rescan_clears_open_state_and_is_reported() {
    let t0 = Instant::now();
    let mut s = Settle::new(SettleTiming {
        quiet: QUIET,
        max_wait: MAX,
    });
    s.observe(t0, w("a.rules"));
    s.observe(t0 + ms(1), Input::Rescan);
    assert!(s.open_files().is_empty());
    let b = s.poll(t0 + ms(301)).expect("due after quiet");
    assert!(b.rescan);
    assert_eq!(b.waited, ms(301));
}

#[test]
fn begin_sync_is_exclusive() {
    let t0 = Instant::now();
    let mut s = Settle::new(SettleTiming {
        quiet: QUIET,
        max_wait: MAX,
    });
    assert!(s.begin_sync());
    assert!(!s.begin_sync());
    assert!(s.is_syncing());
    assert_eq!(s.poll(t0 + MAX * 2), None);
    assert!(!s.finish_sync(t0));
    assert!(!s.is_syncing());
}

#[test]
fn finish_without_sync_is_a_no_op() {
    let t0 = Instant::now();
    let mut s = Settle::new(SettleTiming {
        quiet: QUIET,
        max_wait: MAX,
    });
    s.observe(t0, ch("a.rules"));
    assert!(!s.finish_sync(t0));
    assert!(s.pending().is_some());
}
