//! The command line's vocabulary: the clap definition, the exit codes and
//! the few helpers every subcommand shares (config loading, drop-in dirs,
//! the runtime). Imports no other `cmd` module.
//!
//! Exit codes: 0 ok, 1 failure, 2 usage error (clap), 65 (`sync`) refused
//! or held back (`EX_DATAERR`), 78 config error (`EX_CONFIG` from
//! sysexits.h).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};

/// Success.
pub(crate) const EXIT_OK: u8 = 0;
/// Something failed (a sync error, an action failure, a conflict).
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Bad command line.
pub(crate) const EXIT_USAGE: u8 = 2;
/// `sync`: nothing failed, but the source offers something that was not
/// installed for what it is (refused, a set held back for validation, a
/// file held for the next window): `EX_DATAERR`.
pub(crate) const EXIT_REFUSED: u8 = 65;
/// The config file is invalid (`EX_CONFIG`).
pub(crate) const EXIT_CONFIG: u8 = 78;

/// Bridges containers and the host: carries files that containers export
/// (udev rules, certificates) into host dirs, safely and atomically, and runs
/// the host actions that make them take effect.
#[derive(Debug, Parser)]
#[command(name = "hostbridge", version, max_term_width = 100)]
pub(crate) struct Cli {
    /// Config file.
    #[arg(long, short, global = true, value_name = "PATH", env = "HOSTBRIDGE_CONFIG", default_value = config::DEFAULT_PATH)]
    pub(crate) config: PathBuf,
    /// A drop-in dir of `*.yaml` fragments, lowest precedence first
    /// (repeatable; default /usr/lib/hostbridge/config.d, /etc/hostbridge/config.d,
    /// /run/hostbridge/config.d; or HOSTBRIDGE_CONFIG_DIRS, colon-separated,
    /// empty for none).
    #[arg(long = "config-dir", global = true, value_name = "DIR")]
    pub(crate) config_dirs: Vec<PathBuf>,
    /// Log debug details (or set HOSTBRIDGE_LOG, e.g. HOSTBRIDGE_LOG=debug).
    #[arg(long, short, global = true)]
    pub(crate) verbose: bool,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the daemon: reconcile every bridge, then watch and sync on change.
    Run,
    /// Reconcile once and exit (for ExecStartPre= and scripts).
    ///
    /// Exit codes: 0 everything in place (or nothing to do), 1 a failure (a
    /// file not installed, an action failed, a conflict), 2 usage, 65 a file
    /// refused or a set held back (nothing failed, but not all the source
    /// offers is installed), 78 config error.
    Sync {
        /// Only this bridge.
        #[arg(long, value_name = "NAME")]
        bridge: Option<String>,
        /// Print the plan without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Read and hash every source file and installed copy, not only
        /// those whose size, times or inode changed since the last sync.
        #[arg(long)]
        full: bool,
    },
    /// Validate the config and print what each bridge would watch and do.
    ///
    /// Runs every host lookup the daemon will run, including the GROUP and
    /// OWNER names the rules files now in each source use. Exit codes: 0
    /// valid, 78 config error or a name this host lacks.
    Check {
        /// Leave the source files out: what containers wrote must not keep
        /// the daemon from starting (the unit's ExecStartPre= uses this; the
        /// daemon refuses such files itself).
        #[arg(long)]
        no_source: bool,
    },
    /// Show what the running daemon did and whether the host is prepared.
    ///
    /// Exit codes: 0 healthy, 1 degraded, 2 usage (an unknown --bridge),
    /// 3 not running, 4 the daemon's answer could not be read (e.g.
    /// permission denied on the socket).
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
    /// Wait until a bridge has installed what its source holds now, run its
    /// actions (udev reload and trigger, and the rest), and found its USB
    /// devices usable: for a unit's ExecStartPre= (a container that exports
    /// files waits for them to take effect before it starts).
    ///
    /// The daemon first looks at the bridge's source anew, so files written
    /// just before are seen. Exit codes: 0 ready, 1 not ready by --timeout,
    /// an action failed, or the --image user cannot open a device, 2 usage,
    /// 65 a file was refused, skipped or in conflict (waiting will not help
    /// until it is written anew).
    Wait {
        /// The bridge to wait for.
        #[arg(long, value_name = "NAME")]
        bridge: String,
        /// A VID:PID that must be plugged in and usable as the bridge's
        /// usb-check sees it (repeatable), e.g. 051d:0002.
        #[arg(long, value_name = "VID:PID", value_parser = usb_id)]
        usb: Vec<String>,
        /// How long to wait, e.g. 60s or 2min.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
        timeout: std::time::Duration,
        /// Also check the USB devices as the container will see them: --user
        /// resolved in this image's own /etc/passwd and /etc/group (read with
        /// `podman run --rm --entrypoint /bin/cat IMAGE`), its ids against
        /// each device node as the host's udev left it.
        #[arg(long, value_name = "IMAGE")]
        image: Option<String>,
        /// The user in --image that opens the devices.
        #[arg(long, value_name = "NAME", default_value = "nut", requires = "image")]
        user: String,
        /// The status socket (default: from the config).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Ask the running daemon to reload its config (like SIGHUP) and report
    /// whether the new config was accepted.
    ///
    /// Exit codes: 0 reloaded, 1 the new config was rejected (the daemon
    /// keeps its running one), 3 not running, 4 the daemon's answer could
    /// not be read.
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
pub(crate) enum RulesCommand {
    /// Check rules files against the parser and the security policy, with
    /// compiler-style output: FILE:LINE:COL: error[rule-id]: message.
    /// Exit codes: 0 clean (warnings allowed), 1 errors found, 2 usage.
    Lint(LintArgs),
}

/// Options of `hostbridge rules lint`.
#[derive(Debug, clap::Args)]
pub(crate) struct LintArgs {
    /// The policy to apply.
    #[arg(long, value_enum, default_value = "permissions-only")]
    pub(crate) policy: LintPolicy,
    /// A group GROUP= may name (repeatable; default: any non-privileged group).
    #[arg(long = "allow-group", value_name = "GROUP")]
    pub(crate) allow_groups: Vec<String>,
    /// A user OWNER= may name (repeatable; default: any user).
    #[arg(long = "allow-owner", value_name = "USER")]
    pub(crate) allow_owners: Vec<String>,
    /// A subsystem permissions may be granted on (repeatable; replaces the default usb, usb_device, hidraw, tty, usbmisc).
    #[arg(long = "allow-subsystem", value_name = "SUBSYSTEM")]
    pub(crate) allow_subsystems: Vec<String>,
    /// A device property ENV{...}= may set (repeatable).
    #[arg(long = "allow-env", value_name = "NAME")]
    pub(crate) allow_env: Vec<String>,
    /// A name prefix under /dev that SYMLINK+= may create, e.g. `ups/` (repeatable).
    #[arg(long = "allow-symlink", value_name = "PREFIX")]
    pub(crate) allow_symlinks: Vec<String>,
    /// Check the files as the daemon checks this bridge of the config
    /// (--config): its policy, allow lists, host checks and udevadm verify.
    /// The policy flags below are then ignored.
    #[arg(long, value_name = "NAME")]
    pub(crate) bridge: Option<String>,
    /// Print what the daemon would install (the canonical form under
    /// permissions-only) to stdout; findings go to stderr.
    #[arg(long)]
    pub(crate) print: bool,
    /// Check against this host: GROUP/OWNER names exist and are system ids,
    /// no same-named file in --etc-rules-dir shadows the file or in the
    /// system rules dirs is masked by it, SYMLINK names are not already
    /// nodes in /dev; and run `udevadm verify` where it exists. On by
    /// default when run as root.
    #[arg(long, conflicts_with = "no_host")]
    pub(crate) host: bool,
    /// Skip the host checks (the default when not root).
    #[arg(long)]
    pub(crate) no_host: bool,
    /// A file name that may mask a system rules file of the same name (repeatable).
    #[arg(long = "allow-override", value_name = "NAME")]
    pub(crate) allow_override: Vec<String>,
    /// With --host: the directory whose files shadow installed ones.
    #[arg(long, value_name = "DIR", default_value = config::DEFAULT_ETC_UDEV_RULES_DIR)]
    pub(crate) etc_rules_dir: PathBuf,
    /// With --host: accept GROUP/OWNER names this host does not know.
    #[arg(long)]
    pub(crate) allow_unknown_groups: bool,
    /// With --host: accept GROUP/OWNER names with ids >= 1000.
    #[arg(long)]
    pub(crate) allow_non_system_groups: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: LintFormat,
    /// Rules files to check.
    #[arg(required = true, value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
}

/// `--policy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LintPolicy {
    /// Only MODE/GROUP/OWNER/TAG+="uaccess" on allowed, vendor-matched devices.
    PermissionsOnly,
    /// No policy: parser checks only.
    Trusted,
}

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LintFormat {
    /// `FILE:LINE:COL: severity[rule]: message`
    Text,
    /// A JSON array of findings.
    Json,
}

/// Parses `args`, runs the command and returns the exit code.
/// How `hostbridge status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusFormat {
    /// One screen for humans.
    Text,
    /// The status document.
    Json,
    /// Prometheus text format.
    Metrics,
}

/// Drop-in dirs: `--config-dir`, else `HOSTBRIDGE_CONFIG_DIRS`, else the defaults.
pub(crate) fn dropin_dirs(cli: &Cli) -> Vec<PathBuf> {
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
pub(crate) fn socket_path(cli: &Cli, explicit: &Option<PathBuf>) -> PathBuf {
    if let Some(p) = explicit {
        return p.clone();
    }
    match config::load(&cli.config, &dropin_dirs(cli)) {
        Ok(c) => c.status_socket,
        Err(_) => config::status_socket_hint(&cli.config),
    }
}

/// `VID:PID`, four hex digits each, lowercased.
fn usb_id(s: &str) -> Result<String, String> {
    let ok = s.len() == 9
        && s.as_bytes()[4] == b':'
        && s.bytes()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_hexdigit());
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "{s:?} is not VID:PID (four hex digits each, e.g. 051d:0002)"
        ))
    }
}

/// A duration such as `60s`, `2min` or `1m 30s`.
fn duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

/// How long the runtime waits, at exit, for blocking tasks still running.
const SHUTDOWN_BOUND: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs `fut` on a current-thread runtime; maps errors to exit code 1.
pub(crate) fn in_runtime<F: std::future::Future<Output = anyhow::Result<u8>>>(fut: F) -> u8 {
    // Before any thread exists.
    crate::host::heap::tune();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Blocking threads (file syncs) exit soon after a burst: idle is idle.
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .build();
    let result = match rt {
        Ok(rt) => {
            let result = rt.block_on(fut);
            // A blocking task still running (a file sync's thread) is not
            // waited for without end: exit is bounded.
            rt.shutdown_timeout(SHUTDOWN_BOUND);
            result
        }
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

/// Loads the config named on the command line, or says why not (exit 78).
pub(crate) fn load_config(cli: &Cli) -> Result<Config, u8> {
    config::load(&cli.config, &dropin_dirs(cli)).map_err(|e| {
        eprintln!("hostbridge: config error: {e}");
        EXIT_CONFIG
    })
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
            matches!(cli.command, Command::Sync { bridge: Some(ref b), dry_run: true, .. } if b == "a")
        );
        assert!(Cli::try_parse_from(["hostbridge", "bogus"]).is_err());
    }
}
