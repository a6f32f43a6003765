//! The command line: argument parsing, dispatch, output and exit codes.
//!
//! Exit codes: 0 ok, 1 failure, 2 usage error (clap), 78 config error
//! (`EX_CONFIG` from sysexits.h).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Action, Config};
use crate::sync::{Owed, SyncOptions, SyncReport, run_owed, sync_files_async};

/// Success.
pub const EXIT_OK: u8 = 0;
/// Something failed (a sync error, an action failure, a conflict).
pub const EXIT_FAILURE: u8 = 1;
/// Bad command line.
pub const EXIT_USAGE: u8 = 2;
/// The config file is invalid (`EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;

/// Bridges containers and the host: carries files that containers export
/// (udev rules, certificates) into host dirs, safely and atomically, and runs
/// the host actions that make them take effect.
#[derive(Debug, Parser)]
#[command(name = "hostbridge", version, max_term_width = 100)]
pub struct Cli {
    /// Config file.
    #[arg(long, short, global = true, value_name = "PATH", env = "HOSTBRIDGE_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// A drop-in dir of `*.yaml` fragments, lowest precedence first
    /// (repeatable; default /usr/lib/hostbridge/config.d, /etc/hostbridge/config.d,
    /// /run/hostbridge/config.d; or HOSTBRIDGE_CONFIG_DIRS, colon-separated,
    /// empty for none).
    #[arg(long = "config-dir", global = true, value_name = "DIR")]
    pub config_dirs: Vec<PathBuf>,
    /// Log debug details (or set HOSTBRIDGE_LOG, e.g. HOSTBRIDGE_LOG=debug).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: reconcile every bridge, then watch and sync on change.
    Run,
    /// Reconcile once and exit (for ExecStartPre= and scripts).
    Sync {
        /// Only this bridge.
        #[arg(long, value_name = "NAME")]
        bridge: Option<String>,
        /// Print the plan without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate the config and print what each bridge would watch and do.
    Check,
    /// Show what the running daemon did and whether the host is prepared.
    /// Exit codes: 0 healthy, 1 degraded, 3 not running, 4 unknown error.
    Status {
        /// Print the status document as JSON (with a schema_version).
        #[arg(long, conflicts_with = "metrics")]
        json: bool,
        /// Print Prometheus metrics (text exposition format).
        #[arg(long)]
        metrics: bool,
        /// Only this bridge.
        #[arg(long, value_name = "NAME")]
        bridge: Option<String>,
        /// The status socket (default: from the config, else /run/hostbridge/status.sock).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Ask the running daemon to reload its config (like SIGHUP) and report
    /// whether the new config was accepted.
    Reload {
        /// The status socket (default: from the config).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Check the USB devices NUT needs: which installed rule grants each
    /// device, its node's owner, group and mode, and whether the user can open
    /// it. Exit 0 when every granted device is usable, 1 otherwise.
    Usb {
        /// The user that must open the devices.
        #[arg(long, default_value = "nut")]
        user: String,
        /// A VID:PID that must be plugged in (repeatable), e.g. 051d:0002.
        #[arg(long, value_name = "VID:PID")]
        expect: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// sysfs root (default: the config's sysfs_root, /sys).
        #[arg(long, value_name = "PATH")]
        sysfs_root: Option<PathBuf>,
        /// /dev root (default: the config's dev_root, /dev).
        #[arg(long, value_name = "PATH")]
        dev_root: Option<PathBuf>,
        /// Also really open each granted node as the user (via setpriv).
        #[arg(long)]
        probe: bool,
    },
    /// Internal: the unprivileged child of `usb --probe`.
    #[command(name = "__probe-open", hide = true)]
    ProbeOpen {
        /// The node to open.
        path: PathBuf,
    },
    /// udev rules tools.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Print a shell completion script, e.g.
    /// `hostbridge completions bash > /etc/bash_completion.d/hostbridge`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page hostbridge(1) in roff (`hostbridge man | man -l -`),
    /// or write it and one page per subcommand into a dir.
    Man {
        /// Write hostbridge.1, hostbridge-run.1, ... into this dir instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

/// `hostbridge rules ...`
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check rules files against the parser and the security policy, with
    /// compiler-style output: FILE:LINE:COL: error[rule-id]: message.
    /// Exit codes: 0 clean (warnings allowed), 1 errors found, 2 usage.
    Lint(LintArgs),
}

/// Options of `hostbridge rules lint`.
#[derive(Debug, clap::Args)]
pub struct LintArgs {
    /// The policy to apply.
    #[arg(long, value_enum, default_value = "permissions-only")]
    pub policy: LintPolicy,
    /// A group GROUP= may name (repeatable; default: any non-privileged group).
    #[arg(long = "allow-group", value_name = "GROUP")]
    pub allow_groups: Vec<String>,
    /// A user OWNER= may name (repeatable; default: any user).
    #[arg(long = "allow-owner", value_name = "USER")]
    pub allow_owners: Vec<String>,
    /// A subsystem permissions may be granted on (repeatable; replaces the default usb, usb_device, hidraw, tty, usbmisc).
    #[arg(long = "allow-subsystem", value_name = "SUBSYSTEM")]
    pub allow_subsystems: Vec<String>,
    /// A device property ENV{...}= may set (repeatable).
    #[arg(long = "allow-env", value_name = "NAME")]
    pub allow_env: Vec<String>,
    /// A name prefix under /dev that SYMLINK+= may create, e.g. `ups/` (repeatable).
    #[arg(long = "allow-symlink", value_name = "PREFIX")]
    pub allow_symlinks: Vec<String>,
    /// Check the files as the daemon checks this bridge of the config
    /// (--config): its policy, allow lists, host checks and udevadm verify.
    /// The policy flags below are then ignored.
    #[arg(long, value_name = "NAME")]
    pub bridge: Option<String>,
    /// Print what the daemon would install (the canonical form under
    /// permissions-only) to stdout; findings go to stderr.
    #[arg(long)]
    pub print: bool,
    /// Check against this host: GROUP/OWNER names exist and are system ids,
    /// no same-named file in --etc-rules-dir shadows the file or in the
    /// system rules dirs is masked by it, SYMLINK names are not already
    /// nodes in /dev; and run `udevadm verify` where it exists. On by
    /// default when run as root.
    #[arg(long, conflicts_with = "no_host")]
    pub host: bool,
    /// Skip the host checks (the default when not root).
    #[arg(long)]
    pub no_host: bool,
    /// A file name that may mask a system rules file of the same name (repeatable).
    #[arg(long = "allow-override", value_name = "NAME")]
    pub allow_override: Vec<String>,
    /// With --host: the directory whose files shadow installed ones.
    #[arg(long, value_name = "DIR", default_value = config::DEFAULT_ETC_UDEV_RULES_DIR)]
    pub etc_rules_dir: PathBuf,
    /// With --host: accept GROUP/OWNER names this host does not know.
    #[arg(long)]
    pub allow_unknown_groups: bool,
    /// With --host: accept GROUP/OWNER names with ids >= 1000.
    #[arg(long)]
    pub allow_non_system_groups: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: LintFormat,
    /// Rules files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// `--policy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LintPolicy {
    /// Only MODE/GROUP/OWNER/TAG+="uaccess" on allowed, vendor-matched devices.
    PermissionsOnly,
    /// No policy: parser checks only.
    Trusted,
}

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LintFormat {
    /// `FILE:LINE:COL: severity[rule]: message`
    Text,
    /// A JSON array of findings.
    Json,
}

/// Parses `args`, runs the command and returns the exit code.
pub fn main<I: IntoIterator<Item = OsString>>(args: I) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    crate::logging::init(cli.verbose);
    ExitCode::from(dispatch(&cli))
}

fn dispatch(cli: &Cli) -> u8 {
    match &cli.command {
        Command::Rules(RulesCommand::Lint(args)) => {
            if args.bridge.is_none() {
                return crate::lint::run(args, None);
            }
            return match config::load(&cli.config, &dropin_dirs(cli)) {
                Ok(c) => crate::lint::run(args, Some(&c)),
                Err(e) => {
                    eprintln!("hostbridge: config error: {e}");
                    EXIT_CONFIG
                }
            };
        }
        Command::Completions { .. } | Command::Man { .. } => {
            let written = match &cli.command {
                Command::Completions { shell } => crate::manpage::completions(*shell),
                Command::Man { out_dir: Some(dir) } => crate::manpage::write_pages(dir),
                _ => crate::manpage::main_page(&mut std::io::stdout().lock()),
            };
            return match written {
                // A closed pipe (`| head`) is the reader's choice, not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
                Ok(()) => EXIT_OK,
                Err(e) => {
                    eprintln!("hostbridge: writing to stdout or the dir: {e}");
                    EXIT_FAILURE
                }
            };
        }
        Command::Status {
            json,
            metrics,
            bridge,
            socket,
        } => {
            let format = if *json {
                StatusFormat::Json
            } else if *metrics {
                StatusFormat::Metrics
            } else {
                StatusFormat::Text
            };
            return crate::status_cmd::status(&socket_path(cli, socket), format, bridge.as_deref());
        }
        Command::Reload { socket } => return crate::status_cmd::reload(&socket_path(cli, socket)),
        Command::ProbeOpen { path } => {
            return match crate::host::usb::probe_open(path) {
                Ok(()) => EXIT_OK,
                Err(e) => {
                    eprintln!("{e}");
                    EXIT_FAILURE
                }
            };
        }
        _ => {}
    }
    let config = match config::load(&cli.config, &dropin_dirs(cli)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hostbridge: config error: {e}");
            return EXIT_CONFIG;
        }
    };
    match &cli.command {
        Command::Check => {
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
                && nix::unistd::Group::from_name(g).ok().flatten().is_none()
            {
                missing.push(format!("status_group {g:?} does not exist on this host"));
            }
            missing.extend(config.bridges.iter().flat_map(pidfile_problems));
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
            print!("{}", describe(&config));
            EXIT_OK
        }
        Command::Run => in_runtime(async { crate::daemon::run(config).await.map(|()| EXIT_OK) }),
        // Handled before the config is loaded: they need no valid config.
        Command::Rules(_)
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::Status { .. }
        | Command::Reload { .. }
        | Command::ProbeOpen { .. } => EXIT_USAGE,
        Command::Usb {
            user,
            expect,
            json,
            sysfs_root,
            dev_root,
            probe,
        } => {
            let mut config = config;
            if let Some(p) = sysfs_root {
                config.sysfs_root = p.clone();
            }
            if let Some(p) = dev_root {
                config.dev_root = p.clone();
            }
            let expect: Vec<String> = expect.iter().map(|e| e.to_ascii_lowercase()).collect();
            match crate::usb_check::check(&config, user, &expect, *probe) {
                Ok(r) => {
                    if *json {
                        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                    } else {
                        print!("{}", crate::usb_check::render(&r));
                    }
                    if r.ok(&expect) { EXIT_OK } else { EXIT_FAILURE }
                }
                Err(e) => {
                    eprintln!("hostbridge usb: {e:#}");
                    EXIT_FAILURE
                }
            }
        }
        Command::Sync { bridge, dry_run } => {
            in_runtime(sync_once(config, bridge.as_deref(), *dry_run))
        }
    }
}

/// How `hostbridge status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    /// One screen for humans.
    Text,
    /// The status document.
    Json,
    /// Prometheus text format.
    Metrics,
}

/// Drop-in dirs: `--config-dir`, else `HOSTBRIDGE_CONFIG_DIRS`, else the defaults.
fn dropin_dirs(cli: &Cli) -> Vec<PathBuf> {
    if !cli.config_dirs.is_empty() {
        return cli.config_dirs.clone();
    }
    match std::env::var_os("HOSTBRIDGE_CONFIG_DIRS") {
        Some(v) => std::env::split_paths(&v)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        None => config::DEFAULT_DROPIN_DIRS
            .iter()
            .map(PathBuf::from)
            .collect(),
    }
}

/// The socket to talk to: `--socket`, else the config's, else the default.
fn socket_path(cli: &Cli, explicit: &Option<PathBuf>) -> PathBuf {
    if let Some(p) = explicit {
        return p.clone();
    }
    match config::load(&cli.config, &dropin_dirs(cli)) {
        Ok(c) => c.status_socket,
        Err(_) => config::status_socket_hint(&cli.config),
    }
}

/// Runs `fut` on a current-thread runtime; maps errors to exit code 1.
fn in_runtime<F: std::future::Future<Output = anyhow::Result<u8>>>(fut: F) -> u8 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Blocking threads (file syncs) exit soon after a burst: idle is idle.
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .build();
    let result = match rt {
        Ok(rt) => rt.block_on(fut),
        Err(e) => Err(anyhow::Error::from(e).context("starting the async runtime")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hostbridge: error: {e:#}");
            EXIT_FAILURE
        }
    }
}

async fn sync_once(config: Config, only: Option<&str>, dry_run: bool) -> anyhow::Result<u8> {
    if let Some(name) = only
        && !config.bridges.iter().any(|b| b.name == name)
    {
        eprintln!(
            "hostbridge: no bridge named {name:?} in {}",
            config.path.display()
        );
        return Ok(EXIT_USAGE);
    }
    // Files first, bridge by bridge; then the owed actions together, so a
    // target several bridges name is acted on once (as in the daemon).
    let mut results: Vec<(String, anyhow::Result<SyncReport>)> = Vec::new();
    let mut owed: Vec<(usize, Owed)> = Vec::new();
    for b in config
        .bridges
        .iter()
        .filter(|b| only.is_none_or(|n| n == b.name))
    {
        let opts = SyncOptions {
            dry_run,
            clean_temps: true,
            ..SyncOptions::default()
        };
        match sync_files_async(&config, b, opts).await {
            Ok((report, manifest)) if !dry_run && manifest.actions_pending => {
                owed.push((
                    results.len(),
                    Owed {
                        bridge: b.clone(),
                        report,
                        manifest,
                    },
                ));
                // Filled in once the actions ran.
                results.push((b.name.clone(), Err(anyhow::anyhow!("actions did not run"))));
            }
            Ok((report, _)) => results.push((b.name.clone(), Ok(report))),
            Err(e) => results.push((b.name.clone(), Err(e))),
        }
    }
    if !owed.is_empty() {
        let (slots, mut owed): (Vec<usize>, Vec<Owed>) = owed.into_iter().unzip();
        run_owed(&config, &mut owed).await;
        for (i, o) in slots.into_iter().zip(owed) {
            results[i].1 = Ok(o.report);
        }
    }
    let mut code = EXIT_OK;
    for (name, res) in results {
        match res {
            Ok(r) => {
                print!("{}", render_report(&r));
                if r.failed() || !r.conflicts.is_empty() {
                    code = EXIT_FAILURE;
                }
            }
            Err(e) => {
                println!("{name}: error: {e:#}");
                code = EXIT_FAILURE;
            }
        }
    }
    Ok(code)
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

/// The text `hostbridge sync` prints for one bridge.
pub fn render_report(r: &SyncReport) -> String {
    let mut s = String::new();
    let head = if r.dry_run { "plan" } else { "synced" };
    line(&mut s, &format!("{}: {head}: {}", r.bridge, r.summary()));
    let lines = [
        ("+ install", &r.installed),
        ("~ replace", &r.replaced),
        ("- prune", &r.pruned),
    ];
    for (sign, names) in lines {
        for n in names {
            line(&mut s, &format!("  {sign} {n}"));
        }
    }
    for (label, list) in [
        ("skip", &r.skipped),
        ("conflict", &r.conflicts),
        ("keep", &r.kept),
    ] {
        for (n, why) in list {
            line(&mut s, &format!("  ! {label} {n}: {why}"));
        }
    }
    for (f, finding) in &r.findings {
        line(&mut s, &format!("  {}", finding.render(f)));
    }
    for n in r.notes.iter().chain(&r.errors) {
        line(&mut s, &format!("  ! {n}"));
    }
    for a in &r.actions {
        match &a.result {
            Ok(_) => line(&mut s, &format!("  ran {}", a.action)),
            Err(e) => line(&mut s, &format!("  ! {} failed: {e}", a.action)),
        }
    }
    s
}

/// Appends one line of `hostbridge sync` output, escaped: the text holds
/// file names and rule text from the container.
fn line(out: &mut String, text: &str) {
    out.push_str(&crate::core::text::escape(text));
    out.push('\n');
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_subcommands() {
        let cli = Cli::try_parse_from([
            "hostbridge",
            "--config",
            "/x.yaml",
            "sync",
            "--bridge",
            "a",
            "--dry-run",
        ])
        .unwrap();
        assert_eq!(cli.config, PathBuf::from("/x.yaml"));
        assert!(
            matches!(cli.command, Command::Sync { bridge: Some(ref b), dry_run: true } if b == "a")
        );
        assert!(Cli::try_parse_from(["hostbridge", "bogus"]).is_err());
    }
}
