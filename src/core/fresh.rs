//! Whether the bytes a sync read of a file are still the file's latest,
//! closed state when it is about to install them. Pure: fed the bridge's
//! inotify events in kernel order; the clock plays no part.
//!
//! The rule (issue 16): a sync takes a [`Mark`] before it reads anything.
//! Once every read is done, the host layer drains every event the kernel
//! queued until then into [`Seen`] (the barrier: an event is queued by the
//! write that causes it, before that write returns). A file is then held
//! out of the install set, its last good copy kept, when
//! - its content changed after the mark (a write, or the name coming to
//!   name another file: what was read may be a torn state; the event opens
//!   the next window, which installs it); a writer's close alone changes
//!   nothing (all it wrote came before), nor does a change of mode, owner
//!   or times, or
//! - it is open for writing: an `IN_MODIFY` or `IN_CREATE` with no
//!   `IN_CLOSE_WRITE` (nor a delete or rename of the name) since: a writer
//!   is mid-file, or has created it and not written yet, or
//! - events were lost (queue overflow, the watched dir replaced) after the
//!   mark: nothing can be proven, every file is held.
//!
//! So a file is installed only if its last change predates the read and
//! left it closed. What this cannot see — a writer that opened the file
//! before the watch was placed and never writes again, and the instant
//! between a change and its event being queued (for a write, right after
//! the copy in the same system call; for a truncation, after the file is
//! already short) — the reader asks the kernel instead: it reads under a
//! read lease, which is not granted while anyone has the file open for
//! writing (`host/lease.rs`).

use std::collections::{HashMap, HashSet};

use super::settle::Input;

/// Most names [`Seen`] tracks between two marks; past it, it forgets them
/// and counts a loss (every file of the running sync is held), so a
/// container creating names without end costs no memory.
pub(crate) const TRACKED: usize = 16 * 1024;

/// A point in a bridge's event stream, taken when a sync starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Mark(u64);

/// Why a file is held out of a sync's install set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// An event for it arrived after the sync's mark.
    ChangedDuringSync,
    /// A writer has it open (modified, not closed).
    StillOpen,
    /// Events were lost after the mark.
    EventsLost,
}

impl Hold {
    /// The words for the sync report.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Hold::ChangedDuringSync => {
                "changed while the sync ran: held, the next window installs it"
            }
            Hold::StillOpen => "still open for writing: held until the writer closes it",
            Hold::EventsLost => "inotify events were lost during the sync: held for a rescan",
        }
    }
}

/// What the events of one bridge said, in order: the last event per name
/// since the latest mark, the names open for writing, and the last loss.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Events recorded so far (the clock of this stream).
    count: u64,
    /// The last event per name, since the latest [`Seen::mark`] (older
    /// entries can only predate every mark still in use: they are dropped).
    last: HashMap<String, u64>,
    /// Names modified and not closed since.
    open: HashSet<String>,
    /// The event count at the latest loss, if any.
    lost_at: Option<u64>,
}

impl Seen {
    /// Records one event.
    pub(crate) fn record(&mut self, input: &Input) {
        self.count += 1;
        if self.last.len() >= TRACKED || self.open.len() >= TRACKED {
            self.last.clear();
            self.open.clear();
            self.lost_at = Some(self.count);
        }
        match input {
            Input::Write(n) => {
                self.open.insert(n.clone());
                self.last.insert(n.clone(), self.count);
            }
            // The writer is done; its data came with its writes. (A stray
            // close, of a descriptor a forked child inherited, is no
            // change either.)
            Input::Close(n) => {
                self.open.remove(n);
            }
            Input::Change(n) => {
                self.open.remove(n);
                self.last.insert(n.clone(), self.count);
            }
            Input::Rescan => {
                // Closes may have been among the lost events: an open name
                // that stays open forever would be held forever.
                self.open.clear();
                self.lost_at = Some(self.count);
            }
        }
    }

    /// A mark for a sync starting now. One sync per bridge runs at a time,
    /// so events before it matter to no one: they are forgotten.
    pub(crate) fn mark(&mut self) -> Mark {
        // A new map: one a burst grew would keep its room while idle.
        self.last = HashMap::new();
        Mark(self.count)
    }

    /// Whether `name` must be held out of the install set of the sync that
    /// took `mark`, given every event up to now.
    pub(crate) fn hold(&self, mark: Mark, name: &str) -> Option<Hold> {
        if self.lost_at.is_some_and(|at| at > mark.0) {
            Some(Hold::EventsLost)
        } else if self.last.get(name).is_some_and(|&at| at > mark.0) {
            Some(Hold::ChangedDuringSync)
        } else if self.open.contains(name) {
            Some(Hold::StillOpen)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(n: &str) -> Input {
        Input::Write(n.into())
    }
    fn c(n: &str) -> Input {
        Input::Close(n.into())
    }
    fn ch(n: &str) -> Input {
        Input::Change(n.into())
    }

    /// (events before the mark, events after it, expected hold of "a").
    #[test]
    fn a_file_is_installed_only_when_its_last_event_predates_the_read_and_left_it_closed() {
        let table: &[(&[Input], &[Input], Option<Hold>)] = &[
            (&[], &[], None),
            // Written and closed before the sync: what was read is final.
            (&[w("a"), c("a")], &[], None),
            (&[ch("a")], &[], None),
            // A writer mid-file when the sync read it (the torn read).
            (&[ch("a"), w("a")], &[], Some(Hold::StillOpen)),
            // Truncated and rewritten during the sync: the case.
            (&[w("a"), c("a")], &[w("a")], Some(Hold::ChangedDuringSync)),
            (&[], &[w("a"), c("a")], Some(Hold::ChangedDuringSync)),
            // Written before the read, closed after it: the read was whole.
            (&[ch("a"), w("a")], &[c("a")], None),
            // A stray close (a forked child's inherited descriptor).
            (&[w("a"), c("a")], &[c("a")], None),
            (&[], &[ch("a")], Some(Hold::ChangedDuringSync)),
            // A rename over it or a delete during the sync.
            (&[w("a")], &[ch("a")], Some(Hold::ChangedDuringSync)),
            // Other names do not hold it.
            (&[], &[w("b"), c("b"), ch("c")], None),
            // Lost events after the mark hold everything; before it, nothing
            // (the sync started after the loss, its reads are newer).
            (&[], &[Input::Rescan], Some(Hold::EventsLost)),
            (&[w("a"), Input::Rescan], &[], None),
            // A close that ends a write before the mark: installable.
            (&[w("a"), w("a"), c("a")], &[ch("b")], None),
        ];
        for (i, (before, after, want)) in table.iter().enumerate() {
            let mut s = Seen::default();
            before.iter().for_each(|e| s.record(e));
            let mark = s.mark();
            after.iter().for_each(|e| s.record(e));
            assert_eq!(s.hold(mark, "a"), *want, "row {i}");
        }
    }

    #[test]
    fn too_many_names_count_as_a_loss_not_as_memory() {
        let mut s = Seen::default();
        let mark = s.mark();
        for i in 0..3 * TRACKED {
            s.record(&w(&format!("f{i}")));
        }
        assert!(s.last.len() <= TRACKED && s.open.len() <= TRACKED);
        assert_eq!(s.hold(mark, "other"), Some(Hold::EventsLost));
    }

    #[test]
    fn a_mark_forgets_what_no_sync_can_ask_about() {
        let mut s = Seen::default();
        for i in 0..1000 {
            s.record(&ch(&format!("f{i}")));
        }
        let mark = s.mark();
        assert!(s.last.is_empty(), "names before the mark are dropped");
        assert_eq!(s.hold(mark, "f1"), None);
        s.record(&w("f1"));
        assert_eq!(s.hold(mark, "f1"), Some(Hold::ChangedDuringSync));
        // The next sync's mark is after that write; the file is still open.
        let next = s.mark();
        assert_eq!(s.hold(next, "f1"), Some(Hold::StillOpen));
        s.record(&c("f1"));
        let after_close = s.mark();
        assert_eq!(s.hold(after_close, "f1"), None);
    }
}
