//! When an expected USB device re-enumerates (unplugged and plugged back, a
//! hub or port reset that gives it a new device number), the bridge's
//! `usb-check` `on_replug` actions run, so a driver holding the old node
//! (or a container whose /dev was made at start) gets a fresh start: at most
//! once per backoff gap, which doubles while the device keeps flapping. Pure:
//! the checks and the clock are passed in.

use std::time::{Duration, Instant};

use super::status::{Usb, UsbDevice};

/// The least time between two runs of the `on_replug` actions.
pub(crate) const FIRST_GAP: Duration = Duration::from_secs(10);
/// The most it grows to while the device flaps.
pub(crate) const MAX_GAP: Duration = Duration::from_secs(300);

/// "051d:0002 at 003:004".
fn label(d: &UsbDevice) -> String {
    format!("{} at {}", d.id, d.bus_dev)
}

/// Expected devices that arrived: present and ok in `after` at a bus:dev
/// that `before` did not list for that VID:PID, as "051d:0002 at 003:004".
/// One that came at a new bus:dev but is not ok yet (its rules not applied,
/// a failed probe) is kept in `unsettled` and arrives once a later check
/// finds it ok at that bus:dev; one that is gone is forgotten. With no
/// earlier check (`before` is `None`: the first check since the daemon
/// started) nothing arrived: the driver started after it, or was running
/// already and is not hostbridge's to judge.
pub(crate) fn arrived(
    expect: &[String],
    before: Option<&Usb>,
    after: &Usb,
    unsettled: &mut Vec<String>,
) -> Vec<String> {
    let Some(before) = before else {
        unsettled.clear();
        return Vec::new();
    };
    let mut arrived = Vec::new();
    let mut still = Vec::new();
    for d in after
        .devices
        .iter()
        .filter(|d| expect.contains(&d.id) && d.bus_dev != "-")
    {
        let new = !before
            .devices
            .iter()
            .any(|b| b.id == d.id && b.bus_dev == d.bus_dev);
        if !new && !unsettled.contains(&label(d)) {
            continue;
        }
        if d.verdict == "ok" {
            arrived.push(label(d));
        } else {
            still.push(label(d));
        }
    }
    *unsettled = still;
    arrived
}

/// Of `what` (labels of arrivals), those still present and ok in `now`: a
/// run held back by the backoff acts only for those.
pub(crate) fn still_there(what: &[String], now: Option<&Usb>) -> Vec<String> {
    let ok: Vec<String> = now
        .map(|u| {
            u.devices
                .iter()
                .filter(|d| d.verdict == "ok")
                .map(label)
                .collect()
        })
        .unwrap_or_default();
    what.iter().filter(|w| ok.contains(w)).cloned().collect()
}

/// When the `on_replug` actions of one bridge run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// When they last started.
    last: Option<Instant>,
    /// The gap the next run keeps after `last` (zero: [`FIRST_GAP`]).
    gap: Duration,
    /// When the last arrival was seen.
    last_arrival: Option<Instant>,
    /// No arrival for [`CALM`] before the latest: the next run starts the
    /// gaps afresh.
    calm: bool,
    /// A run is due at this time, for these arrivals.
    due: Option<(Instant, Vec<String>)>,
    /// A run is under way.
    running: bool,
    /// Expected devices at a new bus:dev that were not ok yet
    /// ([`arrived`]).
    pub(crate) unsettled: Vec<String>,
}

/// With no arrival for this long, a device has stopped flapping.
pub(crate) const CALM: Duration = Duration::from_secs(600);

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
        if self
            .last_arrival
            .is_none_or(|t| now.duration_since(t) >= CALM)
        {
            self.calm = true;
        }
        self.last_arrival = Some(now);
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
    /// Each run after another doubles the gap (up to [`MAX_GAP`]): the
    /// device flaps. Once arrivals stopped for [`CALM`], the gap is
    /// [`FIRST_GAP`] again.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<Vec<String>> {
        let at = self.deadline()?;
        if at > now {
            return None;
        }
        let (_, what) = self.due.take()?;
        self.gap = if self.calm || self.last.is_none() {
            FIRST_GAP
        } else {
            (self.gap() * 2).min(MAX_GAP)
        };
        self.calm = false;
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
