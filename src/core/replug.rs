//! When an expected USB device re-enumerates (unplugged and plugged back, a
//! hub or port reset that gives it a new device number), the bridge's
//! `usb-check` `on_replug` actions run, so a driver holding the old node
//! (or a container whose /dev was made at start) gets a fresh start: at most
//! once per backoff gap, which doubles while the device keeps flapping. Pure:
//! the checks and the clock are passed in.

use std::time::{Duration, Instant};

use super::status::Usb;

/// The least time between two runs of the `on_replug` actions.
pub(crate) const FIRST_GAP: Duration = Duration::from_secs(10);
/// The most it grows to while the device flaps.
pub(crate) const MAX_GAP: Duration = Duration::from_secs(300);

/// Expected devices that arrived: present and ok in `after` at a bus:dev
/// that `before` did not list for that VID:PID, as "051d:0002 at 003:004".
/// With no earlier check (`before` is `None`: the first check since the
/// daemon started) nothing arrived: the driver started after it, or was
/// running already and is not hostbridge's to judge.
pub(crate) fn arrived(expect: &[String], before: Option<&Usb>, after: &Usb) -> Vec<String> {
    let Some(before) = before else {
        return Vec::new();
    };
    after
        .devices
        .iter()
        .filter(|d| expect.contains(&d.id) && d.verdict == "ok" && d.bus_dev != "-")
        .filter(|d| {
            !before
                .devices
                .iter()
                .any(|b| b.id == d.id && b.bus_dev == d.bus_dev)
        })
        .map(|d| format!("{} at {}", d.id, d.bus_dev))
        .collect()
}

/// When the `on_replug` actions of one bridge run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// When they last started.
    last: Option<Instant>,
    /// The gap the next run keeps after `last` (zero: [`FIRST_GAP`]).
    gap: Duration,
    /// A run is due at this time, for these arrivals.
    due: Option<(Instant, Vec<String>)>,
    /// A run is under way.
    running: bool,
}

impl Backoff {
    fn gap(&self) -> Duration {
        if self.gap.is_zero() {
            FIRST_GAP
        } else {
            self.gap
        }
    }

    /// Devices arrived at `now`: returns when the actions run (`now`, or
    /// once the gap since the last run has passed). Arrivals before a due
    /// run are added to it: one run covers them all.
    pub(crate) fn arrived(&mut self, now: Instant, what: Vec<String>) -> Instant {
        if let Some((at, list)) = &mut self.due {
            for w in what {
                if !list.contains(&w) {
                    list.push(w);
                }
            }
            return *at;
        }
        let at = match self.last {
            Some(last) => now.max(last + self.gap()),
            None => now,
        };
        self.due = Some((at, what));
        at
    }

    /// When the next run is due; none while one runs (it waits for that).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.running {
            return None;
        }
        self.due.as_ref().map(|(at, _)| *at)
    }

    /// The arrivals a run due by `now` covers; the run counts as started.
    /// A run within twice the gap of the last one doubles the gap (up to
    /// [`MAX_GAP`]): the device flaps. One later sets it back to
    /// [`FIRST_GAP`].
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<Vec<String>> {
        let at = self.deadline()?;
        if at > now {
            return None;
        }
        let (_, what) = self.due.take()?;
        let flapping = self.last.is_some_and(|l| now < l + 2 * self.gap());
        self.gap = if flapping {
            (self.gap() * 2).min(MAX_GAP)
        } else {
            FIRST_GAP
        };
        self.last = Some(now);
        self.running = true;
        Some(what)
    }

    /// The run started by [`Backoff::take_due`] ended.
    pub(crate) fn finished(&mut self) {
        self.running = false;
    }
}

#[cfg(test)]
mod tests;
