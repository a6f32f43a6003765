//! USB device checks for NUT: which installed rules grant a device, whether
//! udev applied them to its node, and whether a user can open it. Pure: the
//! host layer gathers devices, nodes and users; this decides.

use serde::{Deserialize, Serialize};

use crate::core::names::glob_match;
use crate::core::rules::parse::{Key, Op, RulesFile, parse_mode};

/// A USB device as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Device {
    /// sysfs name, e.g. `1-1`.
    pub(crate) sysname: String,
    /// `idVendor`, 4 hex digits.
    pub(crate) vendor: String,
    /// `idProduct`, 4 hex digits.
    pub(crate) product: String,
    /// `busnum`.
    pub(crate) busnum: u32,
    /// `devnum`.
    pub(crate) devnum: u32,
    /// `manufacturer`, if any.
    pub(crate) manufacturer: Option<String>,
    /// `product`, if any.
    pub(crate) name: Option<String>,
    /// `serial`, if any.
    pub(crate) serial: Option<String>,
}

impl Device {
    /// `VID:PID`.
    pub(crate) fn id(&self) -> String {
        format!("{}:{}", self.vendor, self.product)
    }
}

/// The device node as found under /dev.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Node {
    /// Whether it is a character device.
    pub(crate) is_char: bool,
    /// Owner uid.
    pub(crate) uid: u32,
    /// Group gid.
    pub(crate) gid: u32,
    /// Permission bits.
    pub(crate) mode: u32,
    /// Device number of a char device (for revocation; not reported).
    #[serde(skip)]
    pub(crate) rdev: Option<u64>,
}

/// What the matching rules ask for (the last assignment of each wins).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Grant {
    /// `file:line` of each matching rule.
    pub(crate) rules: Vec<String>,
    /// MODE, if set.
    pub(crate) mode: Option<u32>,
    /// GROUP, if set.
    pub(crate) group: Option<String>,
    /// OWNER, if set.
    pub(crate) owner: Option<String>,
}

/// A user as the host knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    /// Name.
    pub(crate) name: String,
    /// uid.
    pub(crate) uid: u32,
    /// Primary and supplementary gids.
    pub(crate) gids: Vec<u32>,
}

/// The verdict for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "kebab-case")]
pub(crate) enum Verdict {
    /// The rules apply and the user can open the node.
    Ok,
    /// Rules match but the node does not have what they ask for.
    RulesNotApplied(String),
    /// No installed rule lists this device.
    NoRuleMatches(String),
    /// The node is as the rules say, but the user still cannot open it.
    UserCannotOpen(String),
    /// An expected device is not plugged in.
    DeviceAbsent(String),
}

impl Verdict {
    /// Whether this is [`Verdict::Ok`].
    pub(crate) fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok)
    }
}

/// Whether `value` (a match value with `|` alternatives and globs) matches `actual`.
fn value_matches(value: &str, actual: &str) -> bool {
    value
        .split('|')
        .any(|alt| glob_match(&alt.to_ascii_lowercase(), &actual.to_ascii_lowercase()))
}

/// Collects what the rules in `file` (named `name`) grant a device with
/// this vendor and product: rules that assign MODE/GROUP/OWNER and whose
/// idVendor (and, if present, idProduct) matches select the device.
pub(crate) fn grants(name: &str, file: &RulesFile, vendor: &str, product: &str, into: &mut Grant) {
    for rule in &file.rules {
        let attr_is = |t: &&crate::core::rules::parse::Token, a: &str| {
            matches!(t.key, Key::Attr | Key::Attrs)
                && t.attr.as_deref() == Some(a)
                && t.op == Op::Match
        };
        let vendor_tok = rule.tokens.iter().find(|t| attr_is(t, "idVendor"));
        let Some(v) = vendor_tok else { continue };
        if !value_matches(&v.value, vendor) {
            continue;
        }
        if let Some(p) = rule.tokens.iter().find(|t| attr_is(t, "idProduct"))
            && !value_matches(&p.value, product)
        {
            continue;
        }
        let mut hit = false;
        for t in rule.tokens.iter().filter(|t| !t.op.is_match()) {
            match t.key {
                Key::Mode => {
                    into.mode = parse_mode(&t.value).or(into.mode);
                    hit = true;
                }
                Key::Group => {
                    into.group = Some(t.value.clone());
                    hit = true;
                }
                Key::Owner => {
                    into.owner = Some(t.value.clone());
                    hit = true;
                }
                _ => {}
            }
        }
        if hit {
            into.rules.push(format!("{name}:{}", rule.line));
        }
    }
}

/// Decides the verdict. `gid_of`/`uid_of` resolve names on the host.
pub(crate) fn verdict(
    dev: &Device,
    node: Option<&Node>,
    grant: &Grant,
    user: &User,
    gid_of: &dyn Fn(&str) -> Option<u32>,
    uid_of: &dyn Fn(&str) -> Option<u32>,
) -> Verdict {
    if grant.rules.is_empty() {
        return Verdict::NoRuleMatches(format!(
            "no installed rule lists {}; NUT's rules do not cover this device",
            dev.id()
        ));
    }
    let path = format!("/dev/bus/usb/{:03}/{:03}", dev.busnum, dev.devnum);
    let trigger = format!(
        "udevadm trigger --action=add --subsystem-match=usb --attr-match=idVendor={}",
        dev.vendor
    );
    let Some(node) = node else {
        return Verdict::RulesNotApplied(format!(
            "{path} does not exist; is systemd-udevd running?"
        ));
    };
    if !node.is_char {
        return Verdict::RulesNotApplied(format!("{path} is not a character device"));
    }
    let wrong = match applied(node, grant, gid_of, uid_of) {
        Ok(wrong) => wrong,
        Err(why) => return Verdict::RulesNotApplied(why),
    };
    if !wrong.is_empty() {
        return Verdict::RulesNotApplied(format!(
            "{path} has {}; run `{trigger}`",
            wrong.join(", ")
        ));
    }
    if let Err(why) = can_open(user, node) {
        return Verdict::UserCannotOpen(why);
    }
    Verdict::Ok
}

/// How the node differs from what the rules grant (empty: as granted);
/// `Err` when a granted name does not exist, so udevd dropped the rule.
fn applied(
    node: &Node,
    grant: &Grant,
    gid_of: &dyn Fn(&str) -> Option<u32>,
    uid_of: &dyn Fn(&str) -> Option<u32>,
) -> Result<Vec<String>, String> {
    let mut wrong = Vec::new();
    if let Some(m) = grant.mode
        && node.mode & 0o777 != m & 0o777
    {
        wrong.push(format!("mode {:04o} (rules: {:04o})", node.mode & 0o777, m));
    }
    let dropped = |what: &str, name: &str| {
        format!("{what}=\"{name}\" does not exist on this host; udevd dropped the rule")
    };
    if let Some(g) = &grant.group {
        match gid_of(g) {
            Some(gid) if gid == node.gid => {}
            Some(_) => wrong.push(format!("group gid {} (rules: {g})", node.gid)),
            None => return Err(dropped("GROUP", g)),
        }
    }
    if let Some(o) = &grant.owner {
        match uid_of(o) {
            Some(uid) if uid == node.uid => {}
            Some(_) => wrong.push(format!("owner uid {} (rules: {o})", node.uid)),
            None => return Err(dropped("OWNER", o)),
        }
    }
    Ok(wrong)
}

/// Whether `user` may open the node for reading and writing, and if not why.
pub(crate) fn can_open(user: &User, node: &Node) -> Result<(), String> {
    let bits = if user.uid == 0 {
        0o6
    } else if user.uid == node.uid {
        (node.mode >> 6) & 0o7
    } else if user.gids.contains(&node.gid) {
        (node.mode >> 3) & 0o7
    } else {
        node.mode & 0o7
    };
    if bits & 0o6 == 0o6 {
        return Ok(());
    }
    Err(if user.uid != node.uid && !user.gids.contains(&node.gid) {
        format!(
            "user {} is not in the node's group (gid {}) and others may not read and write",
            user.name, node.gid
        )
    } else {
        format!(
            "the node's mode {:04o} does not give user {} read and write",
            node.mode & 0o777,
            user.name
        )
    })
}

/// A udev event for a USB device (devtype `usb_device`), as the monitor
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsbEvent {
    /// `add`, `change`, `remove`, …
    pub(crate) action: String,
    /// `BUSNUM`.
    pub(crate) busnum: u32,
    /// `DEVNUM`.
    pub(crate) devnum: u32,
    /// `VID:PID` from `PRODUCT`, if the event carries it.
    pub(crate) id: Option<String>,
    /// Made by `udevadm trigger` (or any write to a `uevent` file): the
    /// kernel marks such events with `SYNTH_UUID`; real plug-ins lack it.
    pub(crate) synthetic: bool,
}

/// The action of [`UsbEvent::lost`].
const LOST: &str = "lost";
/// The action of [`UsbEvent::asked`].
const ASKED: &str = "asked";

impl UsbEvent {
    /// Not a device event: the monitor's socket overflowed and events were
    /// dropped, so every device must be looked at again.
    pub(crate) fn lost() -> UsbEvent {
        UsbEvent {
            action: LOST.into(),
            busnum: 0,
            devnum: 0,
            id: None,
            synthetic: false,
        }
    }

    /// Whether this is [`UsbEvent::lost`].
    pub(crate) fn is_lost(&self) -> bool {
        self.action == LOST
    }

    /// Not a device event: `hostbridge wait` asks for a check of every
    /// device as they are now.
    pub(crate) fn asked() -> UsbEvent {
        UsbEvent {
            action: ASKED.into(),
            ..UsbEvent::lost()
        }
    }

    /// Whether every device must be looked at ([`UsbEvent::lost`],
    /// [`UsbEvent::asked`]) rather than one.
    pub(crate) fn is_whole(&self) -> bool {
        self.is_lost() || self.action == ASKED
    }

    /// `BBB:DDD`, as the status model shows devices.
    pub(crate) fn bus_dev(&self) -> String {
        format!("{:03}:{:03}", self.busnum, self.devnum)
    }

    /// "add 001:003", for the status trigger and logs.
    pub(crate) fn label(&self) -> String {
        if self.is_lost() {
            return "lost events".into();
        }
        if self.action == ASKED {
            return "hostbridge wait".into();
        }
        format!("{} {}", self.action, self.bus_dev())
    }

    /// Whether a re-check is worth running: devices appearing, changing or
    /// going away; not driver bind/unbind, which follow an add.
    pub(crate) fn wants_check(&self) -> bool {
        matches!(
            self.action.as_str(),
            "add" | "change" | "remove" | LOST | ASKED
        )
    }
}

/// Parses the `PRODUCT` property of a USB uevent (`vid/pid/bcdDevice` in
/// hex without leading zeros, e.g. `51d/2/1`) into `051d:0002`.
pub(crate) fn product_id(product: &str) -> Option<String> {
    let mut parts = product.split('/');
    let vid = u16::from_str_radix(parts.next()?, 16).ok()?;
    let pid = u16::from_str_radix(parts.next()?, 16).ok()?;
    Some(format!("{vid:04x}:{pid:04x}"))
}

/// Whether a hotplug event concerns a bridge's USB check: events were lost,
/// or its device is expected, or was or now is listed by the check (a rule
/// grants it).
/// `before` and `after` are the `BBB:DDD` of the devices listed.
pub(crate) fn event_concerns(
    ev: &UsbEvent,
    expect: &[String],
    before: &[String],
    after: &[String],
) -> bool {
    let bus_dev = ev.bus_dev();
    ev.is_whole()
        || ev.id.as_ref().is_some_and(|id| expect.contains(id))
        || before.contains(&bus_dev)
        || after.contains(&bus_dev)
}

#[cfg(test)]
mod tests;
