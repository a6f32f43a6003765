//! When a bridge is tried again outside a settle window: the backoff after
//! failed syncs and the fixed retry of a watch. Pure (the clock is passed
//! in).

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
/// interval). The only timer an idle daemon may have, and only in those
/// error states.
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
}
