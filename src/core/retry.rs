//! When a bridge is tried again outside a settle window: the backoff after
//! failed syncs, the fixed retry of a watch, and the second look at files
//! held because a writer had them open. Pure (the clock is passed in).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// First wait before a failed sync is tried again.
pub(crate) const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between tries of a sync that keeps failing.
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(300);

/// How long to wait before trying again after `failures` failed syncs in a
/// row (1 s, 2 s, 4 s, … capped at 5 min); no wait is armed before the
/// first failure, so an idle bridge stays idle.
pub(crate) fn retry_backoff(failures: u32) -> Option<Duration> {
    let n = failures.checked_sub(1)?;
    let wait = RETRY_FIRST.saturating_mul(1u32.checked_shl(n.min(16)).unwrap_or(u32::MAX));
    Some(wait.min(RETRY_MAX))
}

/// When a bridge is tried again outside a settle window: after a failed
/// sync (with backoff) or a watch that could not be placed (at a fixed
/// interval). With [`OpenRecheck`], the only timers an idle daemon may
/// have, and only in those states.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Retry {
    /// Syncs in a row that failed to put files in place.
    failures: u32,
    /// When to try again, if a try is owed.
    at: Option<Instant>,
}

impl Retry {
    /// After a sync: a failure to put files in place arms the next try
    /// ([`retry_backoff`]) and returns the wait; success clears the count
    /// (an armed watch retry stays).
    pub(crate) fn after_sync(&mut self, files_failed: bool, now: Instant) -> Option<Duration> {
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
    pub(crate) fn after_watch_failure(&mut self, now: Instant, wait: Duration) {
        self.at = Some(now + wait);
    }

    /// Whether a try is due at `now`; a due try is taken (disarmed).
    pub(crate) fn take_due(&mut self, now: Instant) -> bool {
        let due = self.at.is_some_and(|t| t <= now);
        if due {
            self.at = None;
        }
        due
    }

    /// The next try, if one is armed (for the loop's timer).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.at
    }

    /// Failed syncs in a row.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }
}

/// When files held because a writer had them open are looked at again.
/// Such a file is normally taken at its writer's close, which is an event;
/// but the kernel also refuses a lease while another holder's lease is
/// being broken, or for a write open that then failed, and no event ever
/// follows those. So while a sync holds such files, they are looked at
/// again after a backoff (1 s, 2 s, 4 s, … 5 min, as [`retry_backoff`]):
/// a writer that keeps a file open costs a look every 5 minutes at most,
/// and a bridge that holds none arms nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OpenRecheck {
    /// Syncs in a row that held such files.
    looks: u32,
    /// When to look again, and at which names.
    due: Option<(Instant, BTreeSet<String>)>,
}

impl OpenRecheck {
    /// After a sync that held `open` (none: the schedule is cleared);
    /// returns the wait armed.
    pub(crate) fn after_sync(&mut self, open: &BTreeSet<String>, now: Instant) -> Option<Duration> {
        if open.is_empty() {
            *self = OpenRecheck::default();
            return None;
        }
        self.looks = self.looks.saturating_add(1);
        let wait = retry_backoff(self.looks)?;
        self.due = Some((now + wait, open.clone()));
        Some(wait)
    }

    /// The names to look at again, if that is due at `now` (taken once).
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<BTreeSet<String>> {
        match &self.due {
            Some((at, _)) if *at <= now => self.due.take().map(|(_, names)| names),
            _ => None,
        }
    }

    /// The next look, if one is armed (for the loop's timer).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.due.as_ref().map(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests {
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

    /// (names held open by a sync, expected wait in s): the looks back off
    /// while a file stays held, and a sync that holds none clears them.
    #[test]
    fn files_held_open_are_looked_at_again_with_backoff_until_none_is() {
        let t0 = Instant::now();
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let mut r = OpenRecheck::default();
        let table: &[(&[&str], Option<u64>)] = &[
            (&[], None),
            (&["a"], Some(1)),
            (&["a", "b"], Some(2)),
            (&["b"], Some(4)),
            (&[], None),
            (&["c"], Some(1)),
        ];
        for (i, &(held, wait)) in table.iter().enumerate() {
            let got = r.after_sync(&names(held), t0);
            assert_eq!(got, wait.map(Duration::from_secs), "step {i}");
            assert_eq!(r.deadline(), got.map(|w| t0 + w), "step {i}");
        }
        assert_eq!(r.take_due(t0), None, "not yet");
        assert_eq!(r.take_due(t0 + Duration::from_secs(1)), Some(names(&["c"])));
        assert_eq!(r.take_due(t0 + Duration::from_secs(2)), None, "taken once");
        assert_eq!(r.deadline(), None, "nothing armed until the next sync");
    }
}
