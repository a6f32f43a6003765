//! The `permissions-only` policy for udev rules that containers export. Pure.
//!
//! A rules file is code that udevd runs as root. Under `permissions-only` a
//! file may only decide who can open USB-ish device nodes: MODE, GROUP, OWNER
//! and `TAG+="uaccess"` (and SYMLINK names), on lines that are provably
//! limited to allowed subsystems and to a vendor. Everything that executes,
//! writes sysfs or sysctls, renames, relabels, or sets properties other
//! than allowed ones is refused.
//!
//! "Provably limited" follows udevd's control flow: every rule runs in
//! order, and `GOTO` jumps forward to its `LABEL`. A forward data-flow pass
//! computes, for each rule, what is known on *every* path that reaches it:
//! the set of subsystems the device can be in and whether its vendor was
//! matched. Facts come from the rule's own positive matches
//! (`SUBSYSTEM=="usb"`, `ATTR{idVendor}=="051d"`), from jumps taken by
//! `SUBSYSTEM=="usb", GOTO="x"` into the label, and from falling through a
//! single-match guard such as `SUBSYSTEM!="usb", GOTO="end"`. A jump that
//! skips a guard therefore loses the guard's facts.

use std::collections::BTreeSet;

use super::parse::{Key, Op, Rule, RulesFile, Token, parse_mode};
use super::{Finding, Severity};

/// Default subsystems on which permissions may be granted.
pub const DEFAULT_SUBSYSTEMS: &[&str] = &["usb", "usb_device", "hidraw", "tty", "usbmisc"];

/// Groups that must never be granted device access: each is root-equivalent
/// or reads/writes things far beyond one UPS (disks, memory, logs, ttys,
/// input devices, VMs, containers).
pub const PRIVILEGED_GROUPS: &[&str] = &[
    "root",
    "wheel",
    "sudo",
    "admin",
    "adm",
    "disk",
    "kmem",
    "mem",
    "shadow",
    "systemd-journal",
    "tty",
    "input",
    "kvm",
    "docker",
    "lxd",
    "libvirt",
    "sys",
    "utmp",
    "staff",
];

/// OPTIONS values allowed under `permissions-only`, and why they are safe:
/// `link_priority` and `string_escape` only shape symlink and name strings;
/// `db_persist` keeps a device's database entry across udevd restarts;
/// `watch`/`nowatch` toggle a close-after-write watch on the device's own node.
/// Refused: `static_node=` (applies permissions to a /dev node with no device
/// match at all), `log_level=` and `dump` (change what udevd logs).
fn harmless_option(v: &str) -> bool {
    let priority = v.strip_prefix("link_priority=").is_some_and(|n| {
        let digits = n.strip_prefix('-').unwrap_or(n);
        (1..=9).contains(&digits.len()) && digits.bytes().all(|c| c.is_ascii_digit())
    });
    priority || matches!(v, "db_persist" | "watch" | "nowatch")
}

/// The vendor of the Linux Foundation's root hubs: a parent of every USB
/// device, so `ATTRS{idVendor}=="1d6b"` matches them all.
pub const ROOT_HUB_VENDOR: &str = "1d6b";

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

/// Whether the policy applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMode {
    /// Only permissions on allowed, vendor-matched devices.
    PermissionsOnly,
    /// No policy: the source is trusted like root.
    Trusted,
}

/// Policy settings of one bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// permissions-only or trusted.
    pub mode: PolicyMode,
    /// Subsystems on which permissions may be granted.
    pub subsystems: Vec<String>,
    /// Groups GROUP may name; empty means any non-privileged group.
    pub groups: Vec<String>,
    /// Users OWNER may name; empty means any user.
    pub owners: Vec<String>,
    /// Properties ENV{…} may set.
    pub env: Vec<String>,
    /// Name prefixes under /dev that SYMLINK+= may create: `ups/` allows
    /// `/dev/ups/…`, `ups` allows `/dev/ups` itself. Empty: no SYMLINK.
    pub symlinks: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: PolicyMode::PermissionsOnly,
            subsystems: DEFAULT_SUBSYSTEMS.iter().map(|s| s.to_string()).collect(),
            groups: Vec::new(),
            owners: Vec::new(),
            env: Vec::new(),
            symlinks: Vec::new(),
        }
    }
}

/// The most subsystem names a fact may list; more is "not limited", which
/// only makes the policy stricter, and keeps the flow pass linear in the
/// file (a file of many long alternatives cannot make it quadratic).
const MAX_KNOWN_SUBSYSTEMS: usize = 32;

/// What is known about the device on every path reaching a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Flow {
    /// No path reaches the rule.
    Unreachable,
    /// Facts that hold on all paths.
    Reached(Facts),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Facts {
    /// `Some(set)`: the device's subsystem is in `set`.
    subsystems: Option<BTreeSet<String>>,
    /// The device's (or a parent's) vendor ID was matched.
    vendor: bool,
}

impl Flow {
    /// Facts that hold on both paths.
    fn meet(self, other: Flow) -> Flow {
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
    fn assume_line(&mut self, tokens: &[Token]) {
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
    fn assume_false(&mut self, t: &Token) {
        if t.op == Op::NoMatch && t.key == Key::Subsystem {
            self.learn(t, false);
        }
    }

    /// Learns from `t` holding; `hub_safe`: its line excludes hubs from
    /// what ATTRS may match (see [`excludes_hubs`]).
    fn learn(&mut self, t: &Token, hub_safe: bool) {
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
fn is_usb_id(v: &str) -> bool {
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
fn excludes_hubs(tokens: &[Token]) -> bool {
    tokens.iter().any(|t| {
        t.key == Key::Attrs
            && t.attr.as_deref() == Some("bDeviceClass")
            && t.op == Op::NoMatch
            && t.value == "09"
    })
}

/// Whether `t` is an `ATTR{idVendor}`/`ATTRS{idVendor}` match at all.
fn is_vendor_match(t: &Token) -> bool {
    matches!(t.key, Key::Attr | Key::Attrs) && t.attr.as_deref() == Some("idVendor")
}

/// A positive, exact vendor match: every `|` alternative a literal 4-hex
/// id, none empty, none the root hubs' vendor, compared case-sensitively
/// (a positive vendor match that is no catch-all).
fn proves_vendor(t: &Token) -> bool {
    is_vendor_match(t) && t.op == Op::Match && catch_all_vendor(t).is_none()
}

/// Why a positive vendor match value is no constraint, if it is not one
/// (`None` too for anything that is not a positive vendor match).
fn catch_all_vendor(t: &Token) -> Option<&'static str> {
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
fn plain_alternatives(t: &Token) -> Option<Vec<String>> {
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

/// Checks a parsed file; returns the policy findings (none when trusted).
pub fn check(file: &RulesFile, policy: &Policy) -> Vec<Finding> {
    if policy.mode == PolicyMode::Trusted {
        return Vec::new();
    }
    let flows = flow(&file.rules);
    let mut out = Vec::new();
    for (rule, flow) in file.rules.iter().zip(flows) {
        check_rule(rule, flow, policy, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// The flow state on entry to each rule.
fn flow(rules: &[Rule]) -> Vec<Flow> {
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

fn finding(t: &Token, rule: &'static str, message: String) -> Finding {
    Finding {
        line: t.line,
        column: t.column,
        severity: Severity::Error,
        rule,
        message,
    }
}

fn check_rule(rule: &Rule, flow: Flow, policy: &Policy, out: &mut Vec<Finding>) {
    // What holds when this rule's assignments apply: its own matches
    // succeeded. A rule the flow says is unreachable is still checked, on
    // its own line's facts alone: the flow analysis may only narrow what a
    // guard proves, never exempt a line.
    let mut facts = match flow {
        Flow::Reached(f) => f,
        Flow::Unreachable => Facts::default(),
    };
    facts.assume_line(&rule.tokens);
    // The line's own ATTRS vendor would prove it but for hubs.
    let via_hub = rule
        .tokens
        .iter()
        .any(|t| t.key == Key::Attrs && proves_vendor(t))
        && !excludes_hubs(&rule.tokens);
    for t in &rule.tokens {
        forbidden(t, policy, out);
        if let Some(why) = catch_all_vendor(t) {
            out.push(finding(
                t,
                "catch-all-vendor",
                format!("{} {why}; it proves no vendor", t.text),
            ));
        }
        if t.op.is_match() {
            continue;
        }
        let grants = match t.key {
            Key::Mode | Key::Group | Key::Owner => true,
            Key::Tag => t.op == Op::Add && t.value == "uaccess",
            _ => false,
        };
        if grants {
            value_checks(t, policy, out);
        }
        // Links, OPTIONS and ENV reach beyond the node: a link is a claim on
        // /dev, watch/nowatch and db_persist change how udevd treats the
        // device, link_priority decides who wins a shared link, ENV feeds
        // later rules. They are held to the same subsystem and vendor as a
        // grant.
        if grants || matches!(t.key, Key::Symlink | Key::Options | Key::Env) {
            constrained(t, &facts, via_hub, policy, out);
        }
    }
}

/// Keys refused on any line.
pub(super) fn forbidden(t: &Token, policy: &Policy, out: &mut Vec<Finding>) {
    let v = &t.value;
    let assign = !t.op.is_match();
    let f = match t.key {
        Key::Run if t.attr.as_deref() == Some("builtin") => Some((
            "run",
            format!("RUN{{builtin}} would run udev builtin '{v}' as root on every matching uevent"),
        )),
        Key::Run => Some((
            "run",
            format!(
                "RUN{} would execute '{v}' as root on every matching uevent",
                t.op.as_str()
            ),
        )),
        Key::Program => Some((
            "program",
            format!("PROGRAM would execute '{v}' as root to match devices"),
        )),
        Key::Import => {
            let kind = t.attr.as_deref().unwrap_or_default();
            let why = match kind {
                "program" => format!(
                    "would execute '{v}' as root and import its output as device properties"
                ),
                "file" => format!("would read '{v}' as root into device properties"),
                _ => format!("imports device properties from '{kind}' ('{v}')"),
            };
            Some(("import", format!("IMPORT{{{kind}}} {why}")))
        }
        Key::Sysctl if assign => Some((
            "sysctl-write",
            format!(
                "SYSCTL{{{}}}= would set a kernel parameter to '{v}'",
                t.attr.as_deref().unwrap_or_default()
            ),
        )),
        Key::Attr if assign => Some((
            "attr-write",
            format!(
                "ATTR{{{}}}= would write '{v}' to a sysfs attribute",
                t.attr.as_deref().unwrap_or_default()
            ),
        )),
        Key::Name if assign => Some((
            "name",
            format!("NAME= would rename a network interface to '{v}'"),
        )),
        Key::Test => Some((
            "test",
            format!("TEST==\"{v}\" stats a path as root; one udevd cannot resolve aborts its rule processing for every device"),
        )),
        Key::Sysctl if !assign => Some((
            "sysctl-match",
            "SYSCTL{…}== reads a kernel parameter; a read error aborts udevd's rule processing for every device".to_string(),
        )),
        Key::Seclabel => Some((
            "seclabel",
            "SECLABEL would set a security label on the device node".to_string(),
        )),
        Key::Options if !harmless_option(v) => Some((
            "options",
            format!(
                "OPTIONS=\"{v}\" is not allowed (static_node applies permissions with no device match; log_level and dump change udevd's logging)"
            ),
        )),
        Key::Env
            if assign
                && !policy
                    .env
                    .iter()
                    .any(|e| Some(e.as_str()) == t.attr.as_deref()) =>
        {
            Some((
                "env-write",
                format!(
                    "ENV{{{}}}= would set a device property that other rules and services act on (e.g. SYSTEMD_WANTS starts units); allow it with allow_env",
                    t.attr.as_deref().unwrap_or_default()
                ),
            ))
        }
        Key::Tag if assign && !(t.op == Op::Add && v == "uaccess") => Some((
            "tag",
            format!(
                "TAG{}\"{v}\" is not allowed; only TAG+=\"uaccess\" is",
                t.op.as_str()
            ),
        )),
        Key::Symlink if assign => symlink_problem(v, &policy.symlinks)
            .map(|why| ("symlink", format!("SYMLINK \"{v}\" {why}"))),
        Key::Env if assign && v.contains(['%', '$']) => Some((
            "env-write",
            format!("ENV{{…}}=\"{v}\" is built from device data at event time and cannot be checked"),
        )),
        _ => None,
    };
    if let Some((rule, message)) = f {
        out.push(finding(t, rule, message));
    }
}

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
fn symlink_problem(v: &str, allowed: &[String]) -> Option<String> {
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
fn dev_name_problem(name: &str) -> Option<String> {
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
fn constrained(t: &Token, facts: &Facts, via_hub: bool, policy: &Policy, out: &mut Vec<Finding>) {
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
fn value_checks(t: &Token, policy: &Policy, out: &mut Vec<Finding>) {
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

fn name_checks(
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

#[cfg(test)]
mod tests;
