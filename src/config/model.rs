//! The validated configuration: typed settings, the actions a bridge may
//! take, and every default. Pure data.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::Kind;
use crate::core::rules::policy::Policy;
use crate::core::settle::SettleTiming;

/// Default config file.
pub(crate) const DEFAULT_PATH: &str = "/etc/hostbridge/config.yaml";

/// Default `state_dir`.
pub(crate) const DEFAULT_STATE_DIR: &str = "/run/hostbridge";

/// Default `udevadm`.
pub(crate) const DEFAULT_UDEVADM: &str = "/usr/bin/udevadm";

/// Default `install_to` for `kind: udev-rules`.
pub(crate) const DEFAULT_UDEV_RULES_DIR: &str = "/run/udev/rules.d";

/// Default `settle.quiet`.
pub(crate) const DEFAULT_QUIET: Duration = Duration::from_millis(300);

/// Default `settle.max_wait`.
pub(crate) const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(10);

/// Longest a `udevadm verify` of one file may run (it reads one small
/// file; a hung NSS lookup under `--resolve-names=early` must not hold a
/// sync for ever): past it the child is killed and the file refused.
pub(crate) const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(30);
/// A sync running longer than this is shown as stuck (its bridge degraded,
/// with the step it is at).
pub(crate) const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(60);
/// How long a source dir that was just (re)created and is still empty
/// waits for content before the files it no longer holds are pruned: a
/// container that recreates its export dir and refills it a moment later
/// must not empty the destination (and reload udev with no rules) between.
pub(crate) const DEFAULT_PRUNE_GRACE: Duration = Duration::from_secs(30);
/// Default `max_file_size`.
pub(crate) const DEFAULT_MAX_FILE_SIZE: u64 = 1 << 20;

/// Default `max_files` of a udev-rules bridge: a NUT container ships one
/// rules file, a whole distribution about a hundred.
pub(crate) const DEFAULT_UDEV_MAX_FILES: usize = 64;

/// Default `max_bytes` of a udev-rules bridge: udevd holds every rule in
/// memory and re-reads them all on each reload (NUT's file is ~40 KiB).
pub(crate) const DEFAULT_UDEV_MAX_BYTES: u64 = 1 << 20;

/// Default `max_files` of a files bridge.
pub(crate) const DEFAULT_FILES_MAX_FILES: usize = 1000;

/// Default `max_bytes` of a files bridge (its destination is often /run,
/// which is RAM).
pub(crate) const DEFAULT_FILES_MAX_BYTES: u64 = 64 << 20;

/// Default `exec` timeout.
pub(crate) const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// Default `proc_root`.
pub(crate) const DEFAULT_PROC_ROOT: &str = "/proc";

/// Default `systemctl`.
pub(crate) const DEFAULT_SYSTEMCTL: &str = "/usr/bin/systemctl";

/// Default `podman`.
pub(crate) const DEFAULT_PODMAN: &str = "/usr/bin/podman";

/// Default `udev-trigger` `settle_timeout`.
pub(crate) const DEFAULT_SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default `etc_udev_rules_dir`.
pub(crate) const DEFAULT_ETC_UDEV_RULES_DIR: &str = "/etc/udev/rules.d";

/// Default `system_udev_rules_dirs`: where the OS ships its rules. A file
/// in /run/udev/rules.d with the same name replaces theirs.
pub(crate) const DEFAULT_SYSTEM_UDEV_RULES_DIRS: &[&str] = &[
    "/usr/local/lib/udev/rules.d",
    "/usr/lib/udev/rules.d",
    "/lib/udev/rules.d",
];

/// Mode of installed udev rules files.
pub(crate) const UDEV_RULES_MODE: u32 = 0o644;

/// A config error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", crate::core::text::position(&path.display().to_string(), *line, *column))]
pub(crate) struct ConfigError {
    /// The config file.
    pub(crate) path: PathBuf,
    /// 1-based line (0 when unknown).
    pub(crate) line: u64,
    /// 1-based column (0 when unknown).
    pub(crate) column: u64,
    /// What is wrong.
    pub(crate) message: String,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    /// The file it was read from.
    pub(crate) path: PathBuf,
    /// See [`DEFAULT_STATE_DIR`].
    pub(crate) state_dir: PathBuf,
    /// See [`DEFAULT_UDEVADM`].
    pub(crate) udevadm: PathBuf,
    /// See [`DEFAULT_ETC_UDEV_RULES_DIR`].
    pub(crate) etc_udev_rules_dir: PathBuf,
    /// See [`DEFAULT_SYSTEM_UDEV_RULES_DIRS`].
    pub(crate) system_udev_rules_dirs: Vec<PathBuf>,
    /// See [`DEFAULT_PROC_ROOT`].
    pub(crate) proc_root: PathBuf,
    /// sysfs root for USB checks (`/sys`).
    pub(crate) sysfs_root: PathBuf,
    /// /dev root for USB checks (`/dev`).
    pub(crate) dev_root: PathBuf,
    /// `setpriv` for USB probes (`/usr/bin/setpriv`).
    pub(crate) setpriv: PathBuf,
    /// udevd's runtime dir (`/run/udev`): no `control` socket there means
    /// no udevd, so no USB hotplug re-checks.
    pub(crate) udev_run_dir: PathBuf,
    /// See [`DEFAULT_SYSTEMCTL`].
    pub(crate) systemctl: PathBuf,
    /// See [`DEFAULT_PODMAN`].
    pub(crate) podman: PathBuf,
    /// The status socket (default `<state_dir>/status.sock`).
    pub(crate) status_socket: PathBuf,
    /// Group that may read the status socket.
    pub(crate) status_group: Option<String>,
    /// Prometheus textfile written after each sync.
    pub(crate) metrics_file: Option<PathBuf>,
    /// See [`DEFAULT_VERIFY_TIMEOUT`].
    pub(crate) verify_timeout: Duration,
    /// See [`DEFAULT_STUCK_AFTER`].
    pub(crate) stuck_after: Duration,
    /// The bridges, in file order.
    pub(crate) bridges: Vec<Bridge>,
    /// Drop-in dirs searched (see [`crate::config::load`]).
    pub(crate) dropin_dirs: Vec<PathBuf>,
    /// Drop-in fragments applied, in order.
    pub(crate) fragments: Vec<PathBuf>,
}

/// One validated bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bridge {
    /// Unique name.
    pub(crate) name: String,
    /// The file that defined it (the main config or a drop-in).
    pub(crate) origin: PathBuf,
    /// Kind of files.
    pub(crate) kind: Kind,
    /// Watched source dir.
    pub(crate) source: PathBuf,
    /// Name patterns to sync.
    pub(crate) include: Vec<String>,
    /// Destination dir.
    pub(crate) install_to: PathBuf,
    /// Remove installed files whose source is gone.
    pub(crate) prune: bool,
    /// See [`DEFAULT_PRUNE_GRACE`].
    pub(crate) prune_grace: Duration,
    /// Permission bits of installed files.
    pub(crate) mode: u32,
    /// Settle timing.
    pub(crate) settle: SettleTiming,
    /// Size cap for source files.
    pub(crate) max_file_size: u64,
    /// Most files the source may export; beyond it, new files are refused.
    pub(crate) max_files: usize,
    /// Most bytes the exported files may hold together.
    pub(crate) max_bytes: u64,
    /// Uids a source file may be owned by (`None`: any).
    pub(crate) source_owner: Option<Vec<u32>>,
    /// Actions after a sync that changed something.
    pub(crate) then: Vec<Action>,
    /// What a group running this bridge's owed actions may act on: `then`
    /// and its `verify`'s `escalate` (the daemon holds these targets while
    /// the group runs).
    pub(crate) targets: Vec<Action>,
    /// Checks applied to udev rules files (kind `udev-rules`).
    pub(crate) rules: Option<RulesChecks>,
    /// Settings of kind `files`.
    pub(crate) files: Option<FilesSettings>,
}

/// Settings of a `kind: files` bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilesSettings {
    /// Owner of installed files (name), if set.
    pub(crate) owner: Option<String>,
    /// Group of installed files (name), if set.
    pub(crate) group: Option<String>,
    /// Names that must all be present before anything is installed.
    pub(crate) require: Vec<String>,
    /// Certificate/key pair to validate.
    pub(crate) tls_pair: Option<TlsPair>,
    /// How the set is swapped in.
    pub(crate) swap: Swap,
    /// Check the service serves the installed certificate.
    pub(crate) verify: Option<Verify>,
}

/// `verify:` of a files bridge: after its actions, a TLS handshake with
/// `endpoint` must present the certificate of the bridge's `tls-pair`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verify {
    /// `host:port`.
    pub(crate) endpoint: String,
    /// The server name sent (an IP address: none).
    pub(crate) sni: String,
    /// How long to keep trying.
    pub(crate) within: Duration,
    /// Actions run once when it is not served within `within`.
    pub(crate) escalate: Vec<Action>,
    /// `on_verify_fail: rollback`: swap the previous generation back in.
    pub(crate) rollback: bool,
}

/// Default `within` of `verify`.
pub(crate) const DEFAULT_VERIFY_WITHIN: Duration = Duration::from_secs(30);

/// `validate: { tls-pair: … }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsPair {
    /// Certificate file name.
    pub(crate) cert: String,
    /// Key file name.
    pub(crate) key: String,
    /// Warn when expiring within this.
    pub(crate) expiry_warning: Duration,
}

/// How a files bridge swaps its set in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Swap {
    /// Each file renamed into place on its own.
    Rename,
    /// Files are symlinks into `..data`; one rename swaps the set.
    SymlinkDir,
}

/// Default `expiry_warning` of `tls-pair`.
pub(crate) const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86400);

/// Default `mode` of kind files.
pub(crate) const DEFAULT_FILES_MODE: u32 = 0o644;

/// How a udev-rules bridge checks files before installing them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RulesChecks {
    /// The pure policy.
    pub(crate) policy: Policy,
    /// Accept GROUP/OWNER names unknown on this host.
    pub(crate) allow_unknown_groups: bool,
    /// Accept GROUP/OWNER names with ids >= 1000.
    pub(crate) allow_non_system_groups: bool,
    /// Put back revoked grants (true) or only report them.
    pub(crate) revoke_restore: bool,
    /// File names that may mask a system rules file of the same name.
    pub(crate) allow_override: Vec<String>,
}

/// A validated action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// `udevadm control --reload`.
    UdevReload,
    /// `udevadm trigger` + `udevadm settle`.
    UdevTrigger(Trigger),
    /// Send `signal` (e.g. "SIGHUP") to a target.
    Signal {
        /// Whom.
        target: Target,
        /// Which signal, as "SIGHUP".
        signal: String,
    },
    /// `systemctl try-restart UNIT`.
    RestartUnit(String),
    /// `systemctl reload UNIT`.
    ReloadUnit(String),
    /// Check USB device access for `user`, expecting these VID:PIDs.
    UsbCheck {
        /// The user.
        user: String,
        /// Expected VID:PIDs (lower case).
        expect: Vec<String>,
        /// Really open each node as the user.
        probe: bool,
        /// Run when an expected device re-enumerates and is ok
        /// (`core::replug`); never udev actions or another usb-check.
        on_replug: Vec<Action>,
    },
    /// An HTTP request to a reload endpoint, over TCP or a Unix socket.
    Http(HttpAction),
    /// `set ssl cert` + `commit ssl cert` on HAProxy's stats socket.
    HaproxyCert {
        /// The stats socket.
        socket: PathBuf,
        /// The PEM file, also HAProxy's name for the certificate.
        cert: PathBuf,
        /// Each command's bound.
        timeout: Duration,
    },
    /// Run a program.
    Exec {
        /// Program and arguments.
        argv: Vec<String>,
        /// Killed after this.
        timeout: Duration,
    },
}

impl Bridge {
    /// Whether a change owes the bridge anything after its files are in
    /// place: `then:` actions, or a `verify` (which runs after them).
    pub(crate) fn acts(&self) -> bool {
        !self.then.is_empty() || self.verify().is_some()
    }

    /// The `verify` of a files bridge.
    pub(crate) fn verify(&self) -> Option<&Verify> {
        self.files.as_ref().and_then(|f| f.verify.as_ref())
    }

    /// Every action the bridge may run: its `then:` list, after each
    /// `usb-check` its `on_replug` actions, and its `verify`'s `escalate`
    /// (checks of actions, such as where a pid file may lie, must see all).
    pub(crate) fn actions(&self) -> impl Iterator<Item = &Action> {
        let escalate = self.verify().into_iter().flat_map(|v| &v.escalate);
        self.then
            .iter()
            .flat_map(|a| {
                let nested = match a {
                    Action::UsbCheck { on_replug, .. } => on_replug.as_slice(),
                    _ => &[],
                };
                std::iter::once(a).chain(nested)
            })
            .chain(escalate)
    }
}

impl Action {
    /// Whether two actions act on the same thing, so they never run at once
    /// (the daemon runs actions on different targets side by side): every
    /// udev action acts on udevd (a USB check reads what its trigger did);
    /// a reload and a restart of one unit act on that unit.
    pub(crate) fn same_target(&self, other: &Action) -> bool {
        use Action::*;
        match (self, other) {
            (
                UdevReload | UdevTrigger(_) | UsbCheck { .. },
                UdevReload | UdevTrigger(_) | UsbCheck { .. },
            ) => true,
            (RestartUnit(a) | ReloadUnit(a), RestartUnit(b) | ReloadUnit(b)) => a == b,
            _ => self == other,
        }
    }
}

/// `http:`: one request, no body; the answer's status must be
/// `expect_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpAction {
    /// The URL as written.
    pub(crate) url: String,
    /// It, parsed.
    pub(crate) parsed: crate::core::http::Url,
    /// A Unix socket to send it to instead.
    pub(crate) socket: Option<PathBuf>,
    /// `POST`, `PUT`, `GET`, …
    pub(crate) method: String,
    /// The status that means it worked.
    pub(crate) expect_status: u16,
    /// The whole exchange's bound.
    pub(crate) timeout: Duration,
}

/// Default `timeout` of `http`.
pub(crate) const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Whom a `signal` action signals.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    /// The pid in a pid file, checked to be the process `process`.
    Pidfile {
        /// The pid file.
        path: PathBuf,
        /// The process the pid must be (comm or exe name): a pid file can
        /// be stale or forged, so it never names a process on its own.
        process: String,
    },
    /// Every process with this name.
    Process(String),
    /// A systemd unit's main process.
    Unit(String),
    /// A podman container.
    Container(String),
}

/// Arguments of `udev-trigger`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trigger {
    /// `--subsystem-match`.
    pub(crate) subsystem: Option<String>,
    /// `--action`.
    pub(crate) action: &'static str,
    /// `--attr-match` pairs.
    pub(crate) attrs: Vec<(String, String)>,
    /// `udevadm settle --timeout`.
    pub(crate) settle_timeout: Duration,
}

impl Action {
    /// Short name for logs.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Action::UdevReload => "udev-reload",
            Action::UdevTrigger(_) => "udev-trigger",
            Action::Signal { .. } => "signal",
            Action::RestartUnit(_) => "restart-unit",
            Action::ReloadUnit(_) => "reload-unit",
            Action::Exec { .. } => "exec",
            Action::UsbCheck { .. } => "usb-check",
            Action::Http(_) => "http",
            Action::HaproxyCert { .. } => "haproxy-cert",
        }
    }
}
