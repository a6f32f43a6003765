//! `hostbridge check`: validates the config and the host lookups it needs,
//! and describes what each bridge will do. Shell code.

use crate::config::{Action, Config};

use super::args::{EXIT_CONFIG, EXIT_OK};

/// Runs `check` on a loaded config; returns the exit code. With
/// `no_source`, the files in the sources are not looked at.
pub(crate) fn run(config: &Config, no_source: bool) -> u8 {
    // Names the config leaves to the host: they must exist here.
    let mut missing: Vec<String> = config
        .bridges
        .iter()
        .filter_map(|b| {
            crate::sync::owner_ids(b)
                .err()
                .map(|e| format!("bridge {}: {e:#}", b.name))
        })
        .collect();
    if let Some(g) = &config.status_group
        && crate::host::nss::gid_of(g).is_none()
    {
        missing.push(format!("status_group {g:?} does not exist on this host"));
    }
    missing.extend(config.bridges.iter().flat_map(pidfile_problems));
    missing.extend(config.bridges.iter().flat_map(host_lookups));
    let mut refused = Vec::new();
    for b in config.bridges.iter().filter(|_| !no_source) {
        let (lacking, other) = source_lookups(config, b);
        missing.extend(lacking);
        refused.extend(other);
    }
    for b in &config.bridges {
        if let Some((link, to)) = crate::host::fsx::symlink_on_path(&b.source) {
            let real = std::fs::canonicalize(&b.source)
                .map(|p| format!(" (write {})", p.display()))
                .unwrap_or_default();
            missing.push(format!(
                "bridge {}: source {}: {} is a symlink (to {}); hostbridge follows no symlink on a source path: configure the real path{real}",
                b.name,
                b.source.display(),
                link.display(),
                to.display()
            ));
        }
    }
    for m in &missing {
        eprintln!("hostbridge: config error: {m}");
    }
    if !missing.is_empty() {
        return EXIT_CONFIG;
    }
    for b in &config.bridges {
        for w in crate::sync::source_warnings(b) {
            eprintln!("hostbridge: warning: bridge {}: {w}", b.name);
        }
    }
    for r in &refused {
        eprintln!("hostbridge: warning: {r}");
    }
    print!("{}", describe(config));
    EXIT_OK
}

/// What the daemon will look up on the host for `b` and not find here: the
/// groups and owners its policy allows (unless unknown names are allowed),
/// the users its `usb-check` actions check; and an `install_to` that exists
/// but is not a directory.
fn host_lookups(b: &crate::config::Bridge) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(rules) = b.rules.as_ref().filter(|r| !r.allow_unknown_groups) {
        for g in &rules.policy.groups {
            if crate::host::nss::gid_of(g).is_none() {
                out.push(format!(
                    "bridge {}: allow_groups names {g:?}, which does not exist on this host: every rule with GROUP=\"{g}\" would be refused",
                    b.name
                ));
            }
        }
        for u in &rules.policy.owners {
            if crate::host::nss::uid_of(u).is_none() {
                out.push(format!(
                    "bridge {}: allow_owners names {u:?}, which does not exist on this host",
                    b.name
                ));
            }
        }
    }
    for a in &b.then {
        if let Action::UsbCheck { user, .. } = a
            && crate::host::nss::uid_of(user).is_none()
        {
            out.push(format!(
                "bridge {}: usb-check user {user:?} does not exist on this host",
                b.name
            ));
        }
    }
    if let Ok(m) = std::fs::symlink_metadata(&b.install_to)
        && !m.is_dir()
    {
        out.push(format!(
            "bridge {}: install_to {} exists and is not a directory",
            b.name,
            b.install_to.display()
        ));
    }
    out
}

/// The rules findings about host lookups: a GROUP/OWNER name the host
/// lacks, or one that is not a system group or user.
const HOST_NAME_RULES: [&str; 4] = [
    "group-unknown",
    "owner-unknown",
    "group-non-system",
    "owner-non-system",
];

/// What the files in a rules bridge's source need of this host and it
/// lacks (the GROUP/OWNER names they use: config errors, since the daemon
/// would refuse those files until the host has them), and the files the
/// rules checks refuse for another reason (warnings: the container's to
/// fix, not the host's).
fn source_lookups(config: &Config, b: &crate::config::Bridge) -> (Vec<String>, Vec<String>) {
    let found = match crate::sync::source_findings(config, b) {
        Ok(f) => f,
        Err(e) => return (Vec::new(), vec![format!("bridge {}: {e:#}", b.name)]),
    };
    let mut lacking = Vec::new();
    let mut other = Vec::new();
    for (name, f) in found
        .iter()
        .filter(|(_, f)| f.severity == crate::core::rules::Severity::Error)
    {
        let shown = b.source.join(name).display().to_string();
        if HOST_NAME_RULES.contains(&f.rule) {
            lacking.push(format!(
                "bridge {}: the source file uses a name this host lacks: {}",
                b.name,
                f.render(&shown)
            ));
        } else {
            other.push(format!(
                "bridge {}: a sync would refuse this source file: {}",
                b.name,
                f.render(&shown)
            ));
        }
    }
    (lacking, other)
}

/// Why the pid files of `b`'s signal actions cannot be trusted: a dir on
/// the way that another user owns or can write, or a symlink on the path.
fn pidfile_problems(b: &crate::config::Bridge) -> Vec<String> {
    b.actions()
        .filter_map(|a| match a {
            crate::config::Action::Signal {
                target: crate::config::Target::Pidfile { path, .. },
                ..
            } => crate::host::targets::check_place(path).err(),
            _ => None,
        })
        .map(|e| format!("bridge {}: {e}", b.name))
        .collect()
}

/// The text `hostbridge check` prints.
pub(crate) fn describe(c: &Config) -> String {
    let mut s = if c.path.exists() || c.fragments.is_empty() {
        format!("config {} is valid\n", c.path.display())
    } else {
        format!(
            "config {} is absent; its drop-ins make a valid config\n",
            c.path.display()
        )
    };
    for f in &c.fragments {
        s += &format!("drop-in {}\n", f.display());
    }
    s += &format!(
        "state_dir: {}\nudevadm: {}\n",
        c.state_dir.display(),
        c.udevadm.display()
    );
    for b in &c.bridges {
        let exists = if b.source.is_dir() {
            ""
        } else {
            " (missing: will wait for it)"
        };
        s += &format!(
            "\nbridge {} ({}, from {}):\n",
            b.name,
            b.kind.as_str(),
            b.origin.display()
        );
        s += &format!(
            "  watch      {}{exists} for {}\n",
            b.source.display(),
            b.include.join(", ")
        );
        let owners: String = b
            .files
            .iter()
            .flat_map(|f| [("owner", &f.owner), ("group", &f.group)])
            .filter_map(|(k, v)| v.as_ref().map(|v| format!(", {k} {v}")))
            .collect();
        s += &format!(
            "  install to {} (mode {:04o}{owners}, prune {})\n",
            b.install_to.display(),
            b.mode,
            if b.prune { "on" } else { "off" }
        );
        s += &format!(
            "  settle     quiet {}, max_wait {}; files up to {} bytes\n",
            humantime::format_duration(b.settle.quiet),
            humantime::format_duration(b.settle.max_wait),
            b.max_file_size
        );
        if b.then.is_empty() {
            s += "  then       (nothing)\n";
        }
        for a in &b.then {
            s += &format!("  then       {}\n", action_command(c, a));
            if let Action::UsbCheck { on_replug, .. } = a {
                for r in on_replug {
                    s += &format!("  on replug  {}\n", action_command(c, r));
                }
            }
        }
        if let Some(v) = b.verify() {
            s += &format!(
                "  verify     {} serves the installed certificate (TLS handshake, SNI {}), within {}\n",
                v.endpoint,
                v.sni,
                humantime::format_duration(v.within)
            );
            for a in &v.escalate {
                s += &format!("  escalate   {}\n", action_command(c, a));
            }
        }
    }
    s
}

fn action_command(c: &Config, a: &Action) -> String {
    let udevadm = c.udevadm.display();
    match a {
        Action::UdevReload => format!("{udevadm} control --reload"),
        Action::UdevTrigger(t) => format!(
            "{udevadm} {} && {udevadm} settle --timeout={}",
            crate::host::actions::trigger_args(t).join(" "),
            t.settle_timeout.as_secs().max(1)
        ),
        Action::Signal { target, signal } => match target {
            crate::config::Target::Pidfile { path, process: p } => {
                format!("kill -{signal} <pid in {}, if it is {p}>", path.display())
            }
            crate::config::Target::Process(p) => {
                format!("kill -{signal} <every process named {p}>")
            }
            crate::config::Target::Unit(u) => format!(
                "{} kill --kill-whom=main --signal={signal} {u}",
                c.systemctl.display()
            ),
            crate::config::Target::Container(n) => format!(
                "{} kill --signal {} {n}",
                c.podman.display(),
                signal.trim_start_matches("SIG")
            ),
        },
        Action::RestartUnit(u) => format!("{} try-restart {u}", c.systemctl.display()),
        Action::UsbCheck { user, expect, .. } => format!(
            "check USB access for user {user}{}",
            if expect.is_empty() {
                String::new()
            } else {
                format!(", expecting {}", expect.join(", "))
            }
        ),
        Action::ReloadUnit(u) => format!("{} reload {u}", c.systemctl.display()),
        Action::HaproxyCert { socket, cert, .. } => format!(
            "set ssl cert {0} (its content) + commit ssl cert {0} on {1}",
            cert.display(),
            socket.display()
        ),
        Action::Http(h) => format!(
            "{} {}{} (expect HTTP {}, timeout {})",
            h.method,
            h.url,
            h.socket
                .as_ref()
                .map_or(String::new(), |s| format!(" via {}", s.display())),
            h.expect_status,
            humantime::format_duration(h.timeout)
        ),
        Action::Exec { argv, timeout } => format!(
            "{} (timeout {})",
            argv.join(" "),
            humantime::format_duration(*timeout)
        ),
    }
}
