//! The policy's checks of assigned values: SYMLINK names (length, charset,
//! names the system owns, `allow_symlinks`), OPTIONS, ENV and the names of
//! GROUP/OWNER, constrained like the grants themselves. Pure.

use super::*;
use crate::core::rules::Finding;
use crate::core::rules::parse::{Key, Token, parse_mode};

/// OPTIONS values allowed under `permissions-only`, and why they are safe:
/// `link_priority` and `string_escape` only shape symlink and name strings;
/// `db_persist` keeps a device's database entry across udevd restarts;
/// `watch`/`nowatch` toggle a close-after-write watch on the device's own node.
/// Refused: `static_node=` (applies permissions to a /dev node with no device
/// match at all), `log_level=` and `dump` (change what udevd logs).
pub(super) fn harmless_option(v: &str) -> bool {
    let priority = v.strip_prefix("link_priority=").is_some_and(|n| {
        let digits = n.strip_prefix('-').unwrap_or(n);
        (1..=9).contains(&digits.len()) && digits.bytes().all(|c| c.is_ascii_digit())
    });
    priority || matches!(v, "db_persist" | "watch" | "nowatch")
}

/// Names under /dev that no container rule may create or take over, even
/// under an `allow_symlinks` prefix: udevd replaces a link it does not own,
/// so `SYMLINK+="log"` would take over /dev/log. The first path component
/// is compared.
pub const RESERVED_DEV_NAMES: &[&str] = &[
    "log",
    "stdin",
    "stdout",
    "stderr",
    "fd",
    "core",
    "initctl",
    "kmsg",
    "console",
    "null",
    "zero",
    "full",
    "random",
    "urandom",
    "tty",
    "ptmx",
    "pts",
    "shm",
    "mqueue",
    "hugepages",
    "disk",
    "mapper",
    "block",
    "char",
    "bus",
    "input",
    "net",
    "dri",
    "snd",
    "serial",
    "v4l",
    "vfio",
    "cpu",
    "md",
    "bsg",
    "kvm",
    "fuse",
    "loop-control",
    "rtc",
    "watchdog",
    "mem",
    "kmem",
    "port",
    "btrfs-control",
    "vhost-net",
    "vhost-vsock",
    "tpm0",
    "tpmrm0",
    "hwrng",
    "root",
];

/// Longest SYMLINK value: udevd 252 copies "/dev/" + each name into a
/// 1024-byte buffer and, when a name of 1019–1023 bytes does not fit,
/// `continue`s without moving on (udev-rules.c, TK_A_DEVLINK): its worker
/// spins until the event times out. 255 is a file name's limit anyway.
pub const MAX_LINK_LEN: usize = 255;

/// Why a SYMLINK value may not be created, if it may not. udevd replaces
/// a link it does not own, so a name is a claim on /dev: only names under
/// an `allow_symlinks` prefix, never a reserved one, only of characters
/// udevd keeps as they are (it replaces others with `_`, so the link made
/// would not be the name checked), and short.
pub(super) fn symlink_problem(v: &str, allowed: &[String]) -> Option<String> {
    if v.len() > MAX_LINK_LEN {
        return Some(format!(
            "is {} bytes; links are at most {MAX_LINK_LEN}",
            v.len()
        ));
    }
    let names: Vec<&str> = v.split_whitespace().collect();
    if names.is_empty() {
        return Some("names no link".into());
    }
    for name in names {
        if name.contains(['%', '$']) {
            return Some("is built from device data at event time and cannot be checked".into());
        }
        // udev_replace_chars(): what is not alphanumeric or in "#+-.:=@_"
        // (nor '/', which separates components) becomes '_'.
        if !name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"#+-.:=@_/".contains(&c))
        {
            return Some("holds a character udevd would replace with '_'".into());
        }
        if let Some(why) = dev_name_problem(name) {
            return Some(format!("{why} (udevd replaces links it does not own)"));
        }
        if !symlink_allowed(name, allowed) {
            return Some(if allowed.is_empty() {
                "is not allowed: list a prefix such as \"ups/\" in the bridge's allow_symlinks"
                    .into()
            } else {
                format!("is outside allow_symlinks ({})", allowed.join(", "))
            });
        }
    }
    None
}

/// Why an `allow_symlinks` entry cannot be granted, if it cannot: it must
/// be a plain relative name under /dev (optionally ending in `/`) whose
/// first component is not a name the system owns.
pub fn symlink_prefix_problem(p: &str) -> Option<String> {
    let body = p.strip_suffix('/').unwrap_or(p);
    if !body
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"_.+-/".contains(&c))
    {
        return Some("is not a plain relative name under /dev such as \"ups/\"".into());
    }
    dev_name_problem(body)
}

/// Why `name` is not a plain relative name under /dev that the system
/// leaves free, if it is not: no leading or trailing `/`, no empty, `.` or
/// `..` component, and a first component not in [`RESERVED_DEV_NAMES`].
pub(super) fn dev_name_problem(name: &str) -> Option<String> {
    if name
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Some("is not a plain relative name under /dev".into());
    }
    let first = name.split('/').next().unwrap_or_default();
    RESERVED_DEV_NAMES
        .contains(&first)
        .then(|| format!("is under /dev/{first}, a name the system owns"))
}

/// Whether `name` lies under one of the `allowed` prefixes (`ups/` covers
/// `ups/x`; `ups` is the name `ups` itself).
pub fn symlink_allowed(name: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|p| match p.strip_suffix('/') {
        Some(dir) => name
            .strip_prefix(dir)
            .is_some_and(|r| r.len() > 1 && r.starts_with('/')),
        None => name == p,
    })
}

/// A grant (or link, option, property) must sit on a line limited to
/// allowed subsystems and to a vendor.
/// `via_hub`: the line's ATTRS{idVendor} would prove the vendor if hubs
/// were excluded (said in the message).
pub(super) fn constrained(
    t: &Token,
    facts: &Facts,
    via_hub: bool,
    policy: &Policy,
    out: &mut Vec<Finding>,
) {
    let allowed = |s: &String| policy.subsystems.contains(s);
    let what = if t.key == Key::Tag {
        "TAG+=\"uaccess\"".to_string()
    } else {
        t.text.clone()
    };
    match &facts.subsystems {
        Some(set) if !set.is_empty() && set.iter().all(allowed) => {}
        Some(set) if !set.is_empty() => {
            let bad: Vec<&str> = set
                .iter()
                .filter(|s| !allowed(s))
                .map(String::as_str)
                .collect();
            out.push(finding(
                t,
                "unconstrained-permission",
                format!(
                    "{what} may apply to subsystem {} outside allow_subsystems ({})",
                    bad.join(", "),
                    policy.subsystems.join(", ")
                ),
            ));
            return;
        }
        _ => {
            out.push(finding(t, "unconstrained-permission", format!(
                "{what} is not limited to allowed subsystems ({}): add SUBSYSTEM==\"…\" to the line or a guard such as SUBSYSTEM!=\"usb\", GOTO=\"…_end\" before it",
                policy.subsystems.join(", ")
            )));
            return;
        }
    }
    if !facts.vendor && via_hub {
        out.push(finding(t, "no-vendor-match", format!("{what}: ATTRS{{idVendor}} also matches a hub above the device, and so every device plugged in behind a hub of that vendor; add ATTRS{{bDeviceClass}}!=\"09\" to the line (udevd matches all ATTRS of a line against the same parent, which then cannot be a hub)")));
    } else if !facts.vendor {
        out.push(finding(t, "no-vendor-match", format!("{what} is not limited to a vendor: add ATTR{{idVendor}}==\"xxxx\" to the line (or ATTRS{{idVendor}}==\"xxxx\" with ATTRS{{bDeviceClass}}!=\"09\")")));
    }
}

/// MODE, GROUP and OWNER values.
pub(super) fn value_checks(t: &Token, policy: &Policy, out: &mut Vec<Finding>) {
    let v = t.value.as_str();
    match t.key {
        Key::Mode => match parse_mode(v) {
            None => out.push(finding(
                t,
                "mode-dynamic",
                format!("MODE=\"{v}\" is not a literal octal mode and cannot be checked"),
            )),
            Some(m) if m & 0o002 != 0 => out.push(finding(
                t,
                "mode-world-writable",
                format!("MODE=\"{v}\" lets every user write to the device"),
            )),
            Some(m) if m & 0o7000 != 0 => out.push(finding(
                t,
                "mode-special-bits",
                format!("MODE=\"{v}\" sets setuid, setgid or sticky bits on a device node"),
            )),
            Some(_) => {}
        },
        Key::Group => name_checks(t, "group", &policy.groups, PRIVILEGED_GROUPS, out),
        Key::Owner if v != "root" => name_checks(t, "owner", &policy.owners, &[], out),
        _ => {}
    }
}

pub(super) fn name_checks(
    t: &Token,
    kind: &'static str,
    allow: &[String],
    privileged: &[&str],
    out: &mut Vec<Finding>,
) {
    let v = t.value.as_str();
    let (dynamic, numeric, privileged_id, not_allowed) = match kind {
        "group" => (
            "group-dynamic",
            "group-numeric",
            "group-privileged",
            "group-not-allowed",
        ),
        _ => (
            "owner-dynamic",
            "owner-numeric",
            "owner-privileged",
            "owner-not-allowed",
        ),
    };
    let key = t.key.as_str();
    if v.contains(['%', '$']) {
        out.push(finding(
            t,
            dynamic,
            format!("{key}=\"{v}\" is built from device data at event time and cannot be checked"),
        ));
    } else if !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()) {
        out.push(finding(
            t,
            numeric,
            format!("{key}=\"{v}\" is a numeric id; name the {kind} so it can be checked"),
        ));
    } else if privileged.contains(&v) {
        out.push(finding(
            t,
            privileged_id,
            format!("{key}=\"{v}\" grants the device to a privileged {kind}"),
        ));
    } else if !allow.is_empty() && !allow.iter().any(|a| a == v) {
        out.push(finding(
            t,
            not_allowed,
            format!(
                "{key}=\"{v}\" is not in allow_{kind}s ({})",
                allow.join(", ")
            ),
        ));
    }
}
