//! The settle (debounce) state machine for one bridge. Pure: the clock is a
//! parameter and nothing here does I/O.
//!
//! A bridge is in one of three phases:
//! - `Idle`: nothing pending, no deadline (the daemon arms no timer).
//! - `Waiting`: a window is open since the first relevant event. It fires when
//!   no event has arrived for `quiet` and no file is still being written, or
//!   at the latest `max_wait` after the first event.
//! - `Syncing`: a sync (and its actions) is running. Events seen now mark the
//!   bridge dirty, and a new window opens as soon as the sync finishes.
//!
//! A file that saw `IN_MODIFY` but not yet `IN_CLOSE_WRITE` is "open". Open
//! files hold the window open; if `max_wait` forces a sync while a file is
//! still open, that file is reported in [`Batch::still_open`] so the sync
//! keeps its last good copy, and its eventual close opens a new window.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Timing knobs of a settle window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettleTiming {
    /// How long the source must be quiet before a sync.
    pub quiet: Duration,
    /// Hard cap from the first event of a window to its sync.
    pub max_wait: Duration,
}

/// A filesystem observation, already filtered to names the bridge cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Data was written to the file (`IN_MODIFY`): it is open for writing.
    Write(String),
    /// A writer closed the file (`IN_CLOSE_WRITE`).
    Close(String),
    /// The name appeared or disappeared (create, delete, move in or out).
    Change(String),
    /// Per-file tracking is lost (queue overflow, dir replaced, watch
    /// re-established): sync the whole bridge and forget open-file state.
    Rescan,
}

/// What a due window hands to the sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Names that changed in this window (for logs; the sync always reads the
    /// whole source so nothing depends on this list being complete).
    pub changed: BTreeSet<String>,
    /// Files still being written when `max_wait` forced the sync: keep their
    /// installed copies untouched.
    pub still_open: BTreeSet<String>,
    /// Whether the window saw a [`Input::Rescan`].
    pub rescan: bool,
    /// Time from the first event of the window to the sync.
    pub waited: Duration,
    /// Whether `max_wait` (rather than quiet) ended the window.
    pub forced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Idle,
    Waiting {
        first: Instant,
        last: Instant,
        changed: BTreeSet<String>,
        rescan: bool,
    },
    Syncing {
        /// Whether events arrived during the sync.
        dirty: bool,
        changed: BTreeSet<String>,
        rescan: bool,
    },
}

/// Settle state of one bridge.
#[derive(Debug, Clone)]
pub struct Settle {
    timing: SettleTiming,
    phase: Phase,
    open: BTreeSet<String>,
}

impl Settle {
    /// A bridge with nothing pending.
    pub fn new(timing: SettleTiming) -> Self {
        Settle {
            timing,
            phase: Phase::Idle,
            open: BTreeSet::new(),
        }
    }

    /// Replaces the timing (config reload); an open window keeps its start.
    pub fn set_timing(&mut self, timing: SettleTiming) {
        self.timing = timing;
    }

    /// Records one observation made at `now`.
    pub fn observe(&mut self, now: Instant, input: Input) {
        let name = match &input {
            Input::Write(n) => {
                self.open.insert(n.clone());
                Some(n.clone())
            }
            Input::Close(n) | Input::Change(n) => {
                // A close ends a write; a delete or move-away means the name
                // no longer refers to the file being written.
                self.open.remove(n);
                Some(n.clone())
            }
            Input::Rescan => {
                self.open.clear();
                None
            }
        };
        let is_rescan = name.is_none();
        match &mut self.phase {
            Phase::Idle => {
                self.phase = Phase::Waiting {
                    first: now,
                    last: now,
                    changed: name.into_iter().collect(),
                    rescan: is_rescan,
                }
            }
            Phase::Waiting {
                last,
                changed,
                rescan,
                ..
            } => {
                *last = now;
                changed.extend(name);
                *rescan |= is_rescan;
            }
            Phase::Syncing {
                dirty,
                changed,
                rescan,
            } => {
                *dirty = true;
                changed.extend(name);
                *rescan |= is_rescan;
            }
        }
    }

    /// When the daemon must call [`Settle::poll`] next; `None` means no timer.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Waiting { first, last, .. } => {
                let cap = *first + self.timing.max_wait;
                if self.open.is_empty() {
                    Some((*last + self.timing.quiet).min(cap))
                } else {
                    Some(cap)
                }
            }
            Phase::Idle | Phase::Syncing { .. } => None,
        }
    }

    /// If the window is due at `now`, moves to `Syncing` and returns the batch.
    pub fn poll(&mut self, now: Instant) -> Option<Batch> {
        let deadline = self.deadline()?;
        if now < deadline {
            return None;
        }
        let Phase::Waiting {
            first,
            last,
            changed,
            rescan,
        } = std::mem::replace(&mut self.phase, Phase::Idle)
        else {
            return None;
        };
        let forced = !self.open.is_empty() || now.duration_since(last) < self.timing.quiet;
        self.phase = Phase::Syncing {
            dirty: false,
            changed: BTreeSet::new(),
            rescan: false,
        };
        Some(Batch {
            changed,
            still_open: self.open.clone(),
            rescan,
            waited: now.duration_since(first),
            forced,
        })
    }

    /// Starts a sync without a window (startup reconcile, `hostbridge sync`).
    /// Returns `false` if a sync is already running.
    pub fn begin_sync(&mut self) -> bool {
        if matches!(self.phase, Phase::Syncing { .. }) {
            return false;
        }
        self.phase = Phase::Syncing {
            dirty: false,
            changed: BTreeSet::new(),
            rescan: false,
        };
        true
    }

    /// The running sync ended at `now`. If events arrived meanwhile, a new
    /// window opens at once (timed from now, so writes still in flight get
    /// their quiet period); returns whether it did.
    pub fn finish_sync(&mut self, now: Instant) -> bool {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Syncing {
                dirty: true,
                changed,
                rescan,
            } => {
                self.phase = Phase::Waiting {
                    first: now,
                    last: now,
                    changed,
                    rescan,
                };
                true
            }
            Phase::Syncing { dirty: false, .. } => false,
            other => {
                self.phase = other;
                false
            }
        }
    }

    /// Whether a sync is running.
    pub fn is_syncing(&self) -> bool {
        matches!(self.phase, Phase::Syncing { .. })
    }

    /// Whether a window is open; returns its start and the names seen so far.
    pub fn pending(&self) -> Option<(Instant, &BTreeSet<String>)> {
        match &self.phase {
            Phase::Waiting { first, changed, .. } => Some((*first, changed)),
            _ => None,
        }
    }

    /// Files currently believed open for writing.
    pub fn open_files(&self) -> &BTreeSet<String> {
        &self.open
    }
}

/// First wait before a failed sync is tried again.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between tries of a sync that keeps failing.
pub const RETRY_MAX: Duration = Duration::from_secs(300);

/// How long to wait before trying again after `failures` failed syncs in a
/// row (1 s, 2 s, 4 s, … capped at 5 min); no wait is armed before the
/// first failure, so an idle bridge stays idle.
pub fn retry_backoff(failures: u32) -> Option<Duration> {
    let n = failures.checked_sub(1)?;
    let wait = RETRY_FIRST.saturating_mul(1u32.checked_shl(n.min(16)).unwrap_or(u32::MAX));
    Some(wait.min(RETRY_MAX))
}

/// When a bridge is tried again outside a settle window: after a failed
/// sync (with backoff) or a watch that could not be placed (at a fixed
/// interval). The only timer an idle daemon may have, and only in those
/// error states.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retry {
    /// Syncs in a row that failed to put files in place.
    failures: u32,
    /// When to try again, if a try is owed.
    at: Option<Instant>,
}

impl Retry {
    /// After a sync: a failure to put files in place arms the next try
    /// ([`retry_backoff`]) and returns the wait; success clears the count
    /// (an armed watch retry stays).
    pub fn after_sync(&mut self, files_failed: bool, now: Instant) -> Option<Duration> {
        self.failures = if files_failed {
            self.failures.saturating_add(1)
        } else {
            0
        };
        let wait = retry_backoff(self.failures)?;
        self.at = Some(now + wait);
        Some(wait)
    }

    /// A watch could not be placed: try again after `wait`.
    pub fn after_watch_failure(&mut self, now: Instant, wait: Duration) {
        self.at = Some(now + wait);
    }

    /// Whether a try is due at `now`; a due try is taken (disarmed).
    pub fn take_due(&mut self, now: Instant) -> bool {
        let due = self.at.is_some_and(|t| t <= now);
        if due {
            self.at = None;
        }
        due
    }

    /// The next try, if one is armed (for the loop's timer).
    pub fn deadline(&self) -> Option<Instant> {
        self.at
    }

    /// Failed syncs in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;

    /// (files failed?, expected wait in s, expected failure count), in order
    /// from a fresh bridge.
    #[test]
    fn retry_backs_off_while_failing_and_clears_on_success() {
        let t0 = Instant::now();
        let mut r = Retry::default();
        let table: &[(bool, Option<u64>, u32)] = &[
            (false, None, 0),
            (true, Some(1), 1),
            (true, Some(2), 2),
            (true, Some(4), 3),
            (false, None, 0),
            (true, Some(1), 1),
        ];
        for (i, &(failed, wait, count)) in table.iter().enumerate() {
            let got = r.after_sync(failed, t0);
            assert_eq!(got, wait.map(Duration::from_secs), "step {i}");
            assert_eq!(r.failures(), count, "step {i}");
            if let Some(w) = wait {
                assert_eq!(r.deadline(), Some(t0 + Duration::from_secs(w)), "step {i}");
            }
        }
    }

    #[test]
    fn a_try_is_due_once_and_nothing_is_armed_when_nothing_failed() {
        let t0 = Instant::now();
        let mut r = Retry::default();
        assert_eq!(r.deadline(), None, "idle stays idle");
        assert!(!r.take_due(t0 + Duration::from_secs(3600)));
        r.after_watch_failure(t0, Duration::from_secs(5));
        assert!(!r.take_due(t0 + Duration::from_secs(4)), "not yet");
        assert!(r.take_due(t0 + Duration::from_secs(5)), "due");
        assert!(!r.take_due(t0 + Duration::from_secs(6)), "taken once");
        assert_eq!(r.deadline(), None);
        // A success after a watch failure keeps the armed watch retry.
        r.after_watch_failure(t0, Duration::from_secs(5));
        assert_eq!(r.after_sync(false, t0), None);
        assert_eq!(r.deadline(), Some(t0 + Duration::from_secs(5)));
    }
}

#[cfg(test)]
mod tests {
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
                            let names: BTreeSet<String> =
                                names.iter().map(|n| n.to_string()).collect();
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

    #[test]
    fn retry_backoff_doubles_up_to_five_minutes() {
        let secs = |n| retry_backoff(n).map(|d| d.as_secs());
        assert_eq!(secs(0), None);
        assert_eq!(
            (1..=10).map(secs).collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 300].map(Some)
        );
        assert_eq!(secs(u32::MAX), Some(300));
    }
}
