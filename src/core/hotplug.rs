//! What a USB hotplug event means for a bridge with a `usb-check`: check
//! now, owe it to the re-check after the one running or the sync under
//! way, or drop it as the echo of the bridge's own trigger. Pure.

use super::usb::UsbEvent;

/// What to do with one event for one bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
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
pub fn fate(ev: &UsbEvent, busy: bool, checking: bool) -> Fate {
    match (busy, checking) {
        (true, _) if ev.synthetic => Fate::Echo,
        (true, _) | (false, true) => Fate::Owe,
        (false, false) => Fate::Check,
    }
}

/// Adds `evs` to the owed events: each event once, at its latest place, so
/// one re-check covers them all in the order they last happened.
pub fn owe(owed: &mut Vec<UsbEvent>, evs: Vec<UsbEvent>) {
    for ev in evs {
        owed.retain(|o| *o != ev);
        owed.push(ev);
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
}
