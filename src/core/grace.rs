//! Whether a bridge may prune now, after its source dir was (re)created.
//! Pure: the clock is passed in.
//!
//! A container that restarts may delete its export dir, create it again
//! empty and fill it a second later. Pruning by the empty dir would remove
//! every installed file (and reload udev with none of its rules) only to
//! install them again. So from the moment a source dir appears (a new dir
//! inode: at start, or recreated), its absences prune only once a sync has
//! seen it hold content, or once `prune_grace` has passed; a prune held
//! back arms one timer, at the end of the grace, and none otherwise.

use std::time::{Duration, Instant};

/// What a sync may do with files its source no longer holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum PruneGate {
    /// Prune as configured.
    #[default]
    Open,
    /// The source dir is new and has shown no content yet: prune only if
    /// this scan finds some.
    UntilContent,
}

/// The grace of one bridge's source dir.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PruneGrace {
    /// When the current source dir appeared, while it has shown no content.
    waiting_since: Option<Instant>,
    /// Set when a sync held a prune back: the end of the grace is due.
    held: bool,
}

impl PruneGrace {
    /// A new source dir was seen at `now`.
    pub(crate) fn appeared(&mut self, now: Instant) {
        self.waiting_since = Some(now);
        self.held = false;
    }

    /// The gate for a sync starting at `now`.
    pub(crate) fn gate(&self, now: Instant, grace: Duration) -> PruneGate {
        match self.waiting_since {
            Some(t) if now < t + grace => PruneGate::UntilContent,
            _ => PruneGate::Open,
        }
    }

    /// A sync ended: whether it saw content in the source, and whether it
    /// held a prune back.
    pub(crate) fn synced(&mut self, saw_content: bool, held_prune: bool) {
        if saw_content {
            self.waiting_since = None;
        }
        self.held = held_prune && self.waiting_since.is_some();
    }

    /// When a held prune becomes due (the daemon's timer), if one was held.
    pub(crate) fn deadline(&self, grace: Duration) -> Option<Instant> {
        self.waiting_since.filter(|_| self.held).map(|t| t + grace)
    }

    /// Takes a due end of grace at `now` (the sync it starts prunes).
    pub(crate) fn take_due(&mut self, now: Instant, grace: Duration) -> bool {
        let due = self.deadline(grace).is_some_and(|t| t <= now);
        if due {
            *self = PruneGrace::default();
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_new_empty_source_prunes_only_after_content_or_the_grace() {
        let t0 = Instant::now();
        let mut g = PruneGrace::default();
        assert_eq!(g.gate(t0, GRACE), PruneGate::Open, "a dir never seen new");
        assert_eq!(g.deadline(GRACE), None, "idle: no timer");

        // Recreated, still empty: the sync holds the prune; one timer.
        g.appeared(t0);
        assert_eq!(g.gate(t0 + s(1), GRACE), PruneGate::UntilContent);
        g.synced(false, true);
        assert_eq!(g.deadline(GRACE), Some(t0 + GRACE));
        assert!(!g.take_due(t0 + s(29), GRACE));
        assert!(g.take_due(t0 + s(30), GRACE));
        assert_eq!(g.gate(t0 + s(30), GRACE), PruneGate::Open);
        assert_eq!(g.deadline(GRACE), None);

        // Recreated and refilled: content opens the gate at once.
        g.appeared(t0);
        g.synced(true, false);
        assert_eq!(g.gate(t0 + s(1), GRACE), PruneGate::Open);
        assert_eq!(g.deadline(GRACE), None);

        // Empty but nothing to prune: no timer.
        g.appeared(t0);
        g.synced(false, false);
        assert_eq!(g.deadline(GRACE), None);
        assert_eq!(g.gate(t0 + s(1), GRACE), PruneGate::UntilContent);
        assert_eq!(g.gate(t0 + s(31), GRACE), PruneGate::Open);
    }
}
