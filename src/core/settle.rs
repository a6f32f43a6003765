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
pub(crate) struct SettleTiming {
    /// How long the source must be quiet before a sync.
    pub(crate) quiet: Duration,
    /// Hard cap from the first event of a window to its sync.
    pub(crate) max_wait: Duration,
}

/// A filesystem observation, already filtered to names the bridge cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
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
pub(crate) struct Batch {
    /// Names that changed in this window: every candidate name an event
    /// named. The daemon's sync reads only these (and names it has no
    /// record of), so the list must be complete: anything that may have
    /// lost an event (an overflow, a replaced watch) is a rescan instead.
    pub(crate) changed: BTreeSet<String>,
    /// Files still being written when `max_wait` forced the sync: keep their
    /// installed copies untouched.
    pub(crate) still_open: BTreeSet<String>,
    /// Whether the window saw a [`Input::Rescan`].
    pub(crate) rescan: bool,
    /// Time from the first event of the window to the sync.
    pub(crate) waited: Duration,
    /// Whether `max_wait` (rather than quiet) ended the window.
    pub(crate) forced: bool,
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
pub(crate) struct Settle {
    timing: SettleTiming,
    phase: Phase,
    open: BTreeSet<String>,
}

impl Settle {
    /// A bridge with nothing pending.
    pub(crate) fn new(timing: SettleTiming) -> Self {
        Settle {
            timing,
            phase: Phase::Idle,
            open: BTreeSet::new(),
        }
    }

    /// Records one observation made at `now`.
    pub(crate) fn observe(&mut self, now: Instant, input: Input) {
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
    pub(crate) fn deadline(&self) -> Option<Instant> {
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
    pub(crate) fn poll(&mut self, now: Instant) -> Option<Batch> {
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
    pub(crate) fn begin_sync(&mut self) -> bool {
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
    pub(crate) fn finish_sync(&mut self, now: Instant) -> bool {
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
    pub(crate) fn is_syncing(&self) -> bool {
        matches!(self.phase, Phase::Syncing { .. })
    }

    /// Whether a window is open; returns its start and the names seen so far.
    pub(crate) fn pending(&self) -> Option<(Instant, &BTreeSet<String>)> {
        match &self.phase {
            Phase::Waiting { first, changed, .. } => Some((*first, changed)),
            _ => None,
        }
    }

    /// Files currently believed open for writing.
    #[cfg(test)]
    pub(crate) fn open_files(&self) -> &BTreeSet<String> {
        &self.open
    }
}

#[cfg(test)]
mod tests;
