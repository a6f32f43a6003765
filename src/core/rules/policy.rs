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

mod flow;
mod values;

pub use flow::ROOT_HUB_VENDOR;
use flow::*;
use values::*;
pub use values::{MAX_LINK_LEN, RESERVED_DEV_NAMES, symlink_allowed, symlink_prefix_problem};

use super::parse::{Key, Op, Rule, RulesFile, Token};
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
    let f = runs_code(t)
        .or_else(|| touches_the_host(t))
        .or_else(|| beyond_the_policy(t, policy));
    if let Some((rule, message)) = f {
        out.push(finding(t, rule, message));
    }
}

/// A forbidden token's rule id and why.
type Forbidden = Option<(&'static str, String)>;

/// RUN, PROGRAM, IMPORT: code run (or files read) as root.
fn runs_code(t: &Token) -> Forbidden {
    let v = &t.value;
    match t.key {
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
        _ => None,
    }
}

/// Keys that write sysfs or sysctls, rename, stat paths or label nodes.
fn touches_the_host(t: &Token) -> Forbidden {
    let v = &t.value;
    let assign = !t.op.is_match();
    match t.key {
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
        _ => None,
    }
}

/// OPTIONS, ENV, TAG and SYMLINK beyond what the policy allows.
fn beyond_the_policy(t: &Token, policy: &Policy) -> Forbidden {
    let v = &t.value;
    let assign = !t.op.is_match();
    match t.key {
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
            format!(
                "ENV{{…}}=\"{v}\" is built from device data at event time and cannot be checked"
            ),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
