//! What a USB hotplug event means for a bridge with a `usb-check`: check
//! now, owe it to the re-check after the one running or the sync under
//! way, or drop it as the echo of the bridge's own trigger. Pure.

use super::usb::UsbEvent;

/// What to do with one event for one bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Re-check the bridge now.
    Check,
    /// Keep it for the re-check that follows the one running (or the sync).
    Owe,
    /// The echo of the bridge's own `udevadm trigger` during its sync (a
    /// synthetic event): the sync's own `usb-check`, run after `udevadm
    /// settle`, already sees its effect.
    Echo,
}

/// The fate of `ev` for a bridge that is `busy` (syncing, or owing its
/// actions) and/or `checking` (a re-check of it runs).
pub(crate) fn fate(ev: &UsbEvent, busy: bool, checking: bool) -> Fate {
    match (busy, checking) {
        (true, _) if ev.synthetic => Fate::Echo,
        (true, _) | (false, true) => Fate::Owe,
        (false, false) => Fate::Check,
    }
}

/// Adds `evs` to the owed events: each event once, at its latest place, so
/// one re-check covers them all in the order they last happened.
fn owe(owed: &mut Vec<UsbEvent>, evs: Vec<UsbEvent>) {
    for ev in evs {
        owed.retain(|o| *o != ev);
        owed.push(ev);
    }
}

/// A bridge's USB re-checks: whether one runs, and the events owed to the
/// next one (those that came while it ran, or while the bridge was busy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UsbChecks {
    running: bool,
    owed: Vec<UsbEvent>,
}

impl UsbChecks {
    /// Whether a re-check runs.
    pub(crate) fn running(&self) -> bool {
        self.running
    }

    /// Whether a re-check runs or is owed.
    pub(crate) fn idle(&self) -> bool {
        !self.running && self.owed.is_empty()
    }

    /// Owes `evs` to the next re-check ([`owe`]).
    pub(crate) fn owe(&mut self, evs: Vec<UsbEvent>) {
        owe(&mut self.owed, evs);
    }

    /// Starts a re-check for `evs`: `Some(evs)` to run now, `None` when one
    /// runs already (they are owed to the next).
    pub(crate) fn start(&mut self, evs: Vec<UsbEvent>) -> Option<Vec<UsbEvent>> {
        if self.running {
            self.owe(evs);
            return None;
        }
        self.running = true;
        Some(evs)
    }

    /// The running re-check is done.
    pub(crate) fn finished(&mut self) {
        self.running = false;
    }

    /// The owed events, taken, if the bridge is free for a re-check now
    /// (not `busy`, none running) and some are owed.
    pub(crate) fn take_owed(&mut self, busy: bool) -> Option<Vec<UsbEvent>> {
        if busy || self.running || self.owed.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut self.owed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str, devnum: u32, synthetic: bool) -> UsbEvent {
        UsbEvent {
            action: action.into(),
            busnum: 1,
            devnum,
            id: Some("051d:0002".into()),
            synthetic,
        }
    }

    #[test]
    fn fate_table() {
        // (synthetic, busy, checking) -> fate
        let cases = [
            (false, false, false, Fate::Check),
            (true, false, false, Fate::Check), // a trigger by someone else
            (false, false, true, Fate::Owe),
            (true, false, true, Fate::Owe),
            (false, true, false, Fate::Owe),
            (false, true, true, Fate::Owe),
            (true, true, false, Fate::Echo),
            (true, true, true, Fate::Echo),
        ];
        for (synthetic, busy, checking, want) in cases {
            assert_eq!(
                fate(&ev("add", 3, synthetic), busy, checking),
                want,
                "synthetic {synthetic} busy {busy} checking {checking}"
            );
        }
    }

    #[test]
    fn owed_events_are_kept_once_in_their_latest_order() {
        let mut owed = vec![];
        owe(&mut owed, vec![ev("add", 3, false), ev("add", 4, false)]);
        owe(&mut owed, vec![ev("add", 3, false), ev("remove", 4, false)]);
        assert_eq!(
            owed,
            [
                ev("add", 4, false),
                ev("add", 3, false),
                ev("remove", 4, false)
            ]
        );
    }

    #[test]
    fn usb_checks_run_one_at_a_time_and_owe_the_rest() {
        let (a, b) = (ev("add", 2, false), ev("remove", 3, false));
        let mut c = UsbChecks::default();
        assert_eq!(c.take_owed(false), None, "nothing owed");
        assert_eq!(
            c.start(vec![a.clone()]),
            Some(vec![a.clone()]),
            "free: runs"
        );
        assert!(c.running());
        assert_eq!(c.start(vec![b.clone()]), None, "one runs: owed");
        assert_eq!(c.take_owed(false), None, "still running");
        c.finished();
        assert_eq!(c.take_owed(true), None, "bridge busy: keeps them");
        assert_eq!(c.take_owed(false), Some(vec![b.clone()]));
        assert_eq!(c.take_owed(false), None, "taken once");
        // Owed while busy, then a repeat moves to its latest place.
        c.owe(vec![a.clone(), b.clone()]);
        c.owe(vec![a.clone()]);
        assert_eq!(c.take_owed(false), Some(vec![b, a]));
    }
}
