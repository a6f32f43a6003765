//! The forward data-flow pass of the policy: what is known of the device
//! (its subsystems, whether its vendor was matched) on every path that
//! reaches each rule, following udevd's GOTO/LABEL control flow. Pure.

use std::collections::BTreeSet;

use crate::core::rules::parse::{Key, Op, Rule, Token};

/// The vendor of the Linux Foundation's root hubs: a parent of every USB
/// device, so `ATTRS{idVendor}=="1d6b"` matches them all.
pub const ROOT_HUB_VENDOR: &str = "1d6b";

/// The most subsystem names a fact may list; more is "not limited", which
/// only makes the policy stricter, and keeps the flow pass linear in the
/// file (a file of many long alternatives cannot make it quadratic).
pub(super) const MAX_KNOWN_SUBSYSTEMS: usize = 32;

/// What is known about the device on every path reaching a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Flow {
    /// No path reaches the rule.
    Unreachable,
    /// Facts that hold on all paths.
    Reached(Facts),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Facts {
    /// `Some(set)`: the device's subsystem is in `set`.
    pub(super) subsystems: Option<BTreeSet<String>>,
    /// The device's (or a parent's) vendor ID was matched.
    pub(super) vendor: bool,
}

impl Flow {
    /// Facts that hold on both paths.
    pub(super) fn meet(self, other: Flow) -> Flow {
        match (self, other) {
            (Flow::Unreachable, x) | (x, Flow::Unreachable) => x,
            (Flow::Reached(a), Flow::Reached(b)) => Flow::Reached(Facts {
                subsystems: match (a.subsystems, b.subsystems) {
                    (Some(x), Some(y)) => Some(x.union(&y).cloned().collect())
                        .filter(|s: &BTreeSet<String>| s.len() <= MAX_KNOWN_SUBSYSTEMS),
                    _ => None,
                },
                vendor: a.vendor && b.vendor,
            }),
        }
    }
}

impl Facts {
    /// Adds what all matches of a rule line (`tokens`) being true implies
    /// (for `!=`, what its negation being false implies is handled by
    /// [`Facts::assume_false`]).
    pub(super) fn assume_line(&mut self, tokens: &[Token]) {
        let hub_safe = excludes_hubs(tokens);
        for t in tokens.iter().filter(|t| t.op == Op::Match) {
            self.learn(t, hub_safe);
        }
    }

    /// Adds what `t` being false implies. Only SUBSYSTEM is learnt this
    /// way: udevd compares a device without a subsystem as "", so a false
    /// `SUBSYSTEM!="usb"` means the subsystem is usb. A false
    /// `ATTR{idVendor}!="051d"` proves nothing: udevd's ATTR and ATTRS
    /// matches are false for `==` and `!=` alike when the attribute is
    /// missing (udev-rules.c token_match_attr), so ttyS0 and disks fall
    /// through such a guard.
    pub(super) fn assume_false(&mut self, t: &Token) {
        if t.op == Op::NoMatch && t.key == Key::Subsystem {
            self.learn(t, false);
        }
    }

    /// Learns from `t` holding; `hub_safe`: its line excludes hubs from
    /// what ATTRS may match (see [`excludes_hubs`]).
    pub(super) fn learn(&mut self, t: &Token, hub_safe: bool) {
        let Some(values) = plain_alternatives(t) else {
            return;
        };
        match t.key {
            Key::Subsystem => {
                let set: BTreeSet<String> = values.into_iter().collect();
                self.subsystems = Some(match self.subsystems.take() {
                    Some(s) => s.intersection(&set).cloned().collect(),
                    None => set,
                })
                .filter(|s| s.len() <= MAX_KNOWN_SUBSYSTEMS);
            }
            Key::Attr if proves_vendor(t) => self.vendor = true,
            Key::Attrs if proves_vendor(t) && hub_safe => self.vendor = true,
            _ => {}
        }
    }
}

/// A 4-digit hex USB vendor or product ID.
pub(super) fn is_usb_id(v: &str) -> bool {
    v.len() == 4 && v.bytes().all(|c| c.is_ascii_hexdigit())
}

/// Whether a line's ATTRS matches cannot be met by a hub. `ATTRS{idVendor}`
/// is matched against the device and each of its parents in turn, and a
/// hub is a parent of everything plugged in below it: 2109 (VIA, the
/// Raspberry Pi 4's), 0424 and 05e3 hubs in docks and monitors would grant
/// every keyboard, key and disk behind them. udevd checks all ATTRS of one
/// line against the same parent (udev-rules.c,
/// udev_rule_apply_parent_token_to_event), so `ATTRS{bDeviceClass}!="09"`
/// beside it keeps that parent from being a hub (class 09), and since a
/// missing attribute fails `!=` too, it must be a USB device.
pub(super) fn excludes_hubs(tokens: &[Token]) -> bool {
    tokens.iter().any(|t| {
        t.key == Key::Attrs
            && t.attr.as_deref() == Some("bDeviceClass")
            && t.op == Op::NoMatch
            && t.value == "09"
    })
}

/// Whether `t` is an `ATTR{idVendor}`/`ATTRS{idVendor}` match at all.
pub(super) fn is_vendor_match(t: &Token) -> bool {
    matches!(t.key, Key::Attr | Key::Attrs) && t.attr.as_deref() == Some("idVendor")
}

/// A positive, exact vendor match: every `|` alternative a literal 4-hex
/// id, none empty, none the root hubs' vendor, compared case-sensitively
/// (a positive vendor match that is no catch-all).
pub(super) fn proves_vendor(t: &Token) -> bool {
    is_vendor_match(t) && t.op == Op::Match && catch_all_vendor(t).is_none()
}

/// Why a positive vendor match value is no constraint, if it is not one
/// (`None` too for anything that is not a positive vendor match).
pub(super) fn catch_all_vendor(t: &Token) -> Option<&'static str> {
    if !is_vendor_match(t) || t.op != Op::Match {
        return None;
    }
    let alts: Vec<&str> = t.value.split('|').collect();
    if alts.iter().any(|v| v.is_empty()) {
        Some("has an empty alternative, which matches an empty or missing value")
    } else if alts.iter().any(|v| v.contains(['*', '?', '['])) {
        Some("is a glob, which matches many vendors")
    } else if alts.iter().any(|v| v.eq_ignore_ascii_case(ROOT_HUB_VENDOR)) {
        Some("names 1d6b, the Linux Foundation root hubs: a parent of every USB device")
    } else if t.case_insensitive {
        Some("is case-insensitive")
    } else if !alts.iter().all(|v| is_usb_id(v)) {
        Some("is not a 4-digit hex vendor id")
    } else {
        None
    }
}

/// The `|` alternatives of a match value if all are plain, non-empty strings
/// (no globs): only those prove what a device is.
pub(super) fn plain_alternatives(t: &Token) -> Option<Vec<String>> {
    let values: Vec<String> = t
        .value
        .split('|')
        .map(|v| {
            if t.case_insensitive {
                v.to_ascii_lowercase()
            } else {
                v.to_string()
            }
        })
        .collect();
    let plain = values
        .iter()
        .all(|v| !v.is_empty() && !v.contains(['*', '?', '[']));
    plain.then_some(values)
}

/// The flow state on entry to each rule.
pub(super) fn flow(rules: &[Rule]) -> Vec<Flow> {
    let mut entry: Vec<Flow> = vec![Flow::Unreachable; rules.len()];
    if let Some(first) = entry.first_mut() {
        *first = Flow::Reached(Facts::default());
    }
    for i in 0..rules.len() {
        let Flow::Reached(in_facts) = entry[i].clone() else {
            // Unreachable rules pass nothing on by falling through.
            continue;
        };
        let rule = &rules[i];
        let matches: Vec<&Token> = rule.tokens.iter().filter(|t| t.op.is_match()).collect();
        let mut fall = Flow::Reached(in_facts.clone());
        if let Some((_, target)) = &rule.goto {
            let mut jumped = in_facts.clone();
            jumped.assume_line(&rule.tokens);
            entry[*target] = std::mem::replace(&mut entry[*target], Flow::Unreachable)
                .meet(Flow::Reached(jumped));
            fall = match matches.as_slice() {
                [] => Flow::Unreachable, // unconditional GOTO: nothing falls through
                [only] => {
                    let mut f = in_facts;
                    f.assume_false(only);
                    Flow::Reached(f)
                }
                _ => Flow::Reached(in_facts),
            };
        }
        if i + 1 < rules.len() {
            entry[i + 1] = std::mem::replace(&mut entry[i + 1], Flow::Unreachable).meet(fall);
        }
    }
    entry
}
