//! `hostbridge check`: validates the config and the host lookups it needs,
//! and describes what each bridge will do. Shell code.

use crate::config::{Action, Config};

use super::args::{EXIT_CONFIG, EXIT_OK};

/// Runs `check` on a loaded config; returns the exit code.
pub fn run(config: &Config) -> u8 {
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
        for (dir, why) in crate::host::fsx::swappable_ancestors(&b.source) {
            eprintln!(
                "hostbridge: warning: bridge {}: {} above the source is {why}: whoever writes there can rename the source away; bind-mount the source dir itself",
                b.name,
                dir.display()
            );
        }
    }
    for b in config.bridges.iter().filter(|b| b.source_owner.is_none()) {
        if let Some(fs) = crate::host::fsx::shares_fs_with_host_files(&b.source) {
            eprintln!(
                "hostbridge: warning: bridge {}: source {} is on the same file system as {fs}: a rootful container can hard-link host files into it; files with several links are refused, but one whose other name the host later replaced by rename is not; keep exports on their own file system (a tmpfs under /run) or set source_owner",
                b.name,
                b.source.display()
            );
        }
    }
    print!("{}", describe(config));
    EXIT_OK
}

/// Why the pid files of `b`'s signal actions cannot be trusted: a dir on
/// the way that another user owns or can write, or a symlink on the path.
fn pidfile_problems(b: &crate::config::Bridge) -> Vec<String> {
    let mut out = Vec::new();
    for a in &b.then {
        let crate::config::Action::Signal {
            target: crate::config::Target::Pidfile { path, .. },
            ..
        } = a
        else {
            continue;
        };
        let shown = path.display();
        if let Some((dir, why)) = crate::host::fsx::swappable_ancestors(path)
            .into_iter()
            .next()
        {
            out.push(format!(
                "bridge {}: pid file {shown} is in reach of another user ({} is {why}); only root may be able to write a pid file hostbridge acts on (use unit: for a service)",
                b.name,
                dir.display()
            ));
        }
        if let Some(dir) = path.parent()
            && let Err(e) = crate::host::fsx::open_dir_strict(dir)
            && e.raw_os_error() != Some(nix::libc::ENOENT)
        {
            out.push(format!("bridge {}: pid file {shown}: {e}", b.name));
        }
    }
    out
}

/// The text `hostbridge check` prints.
pub fn describe(c: &Config) -> String {
    let mut s = format!("config {} is valid\n", c.path.display());
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
        Action::Exec { argv, timeout } => format!(
            "{} (timeout {})",
            argv.join(" "),
            humantime::format_duration(*timeout)
        ),
    }
}
