//! The validated configuration: typed settings, the actions a bridge may
//! take, and every default. Pure data.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::Kind;
use crate::core::rules::policy::Policy;
use crate::core::settle::SettleTiming;

/// Default config file.
pub const DEFAULT_PATH: &str = "/etc/hostbridge/config.yaml";

/// Default `state_dir`.
pub const DEFAULT_STATE_DIR: &str = "/run/hostbridge";

/// Default `udevadm`.
pub const DEFAULT_UDEVADM: &str = "/usr/bin/udevadm";

/// Default `install_to` for `kind: udev-rules`.
pub const DEFAULT_UDEV_RULES_DIR: &str = "/run/udev/rules.d";

/// Default `settle.quiet`.
pub const DEFAULT_QUIET: Duration = Duration::from_millis(300);

/// Default `settle.max_wait`.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(10);

/// Default `max_file_size`.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1 << 20;

/// Default `max_files` of a udev-rules bridge: a NUT container ships one
/// rules file, a whole distribution about a hundred.
pub const DEFAULT_UDEV_MAX_FILES: usize = 64;

/// Default `max_bytes` of a udev-rules bridge: udevd holds every rule in
/// memory and re-reads them all on each reload (NUT's file is ~40 KiB).
pub const DEFAULT_UDEV_MAX_BYTES: u64 = 1 << 20;

/// Default `max_files` of a files bridge.
pub const DEFAULT_FILES_MAX_FILES: usize = 1000;

/// Default `max_bytes` of a files bridge (its destination is often /run,
/// which is RAM).
pub const DEFAULT_FILES_MAX_BYTES: u64 = 64 << 20;

/// Default `exec` timeout.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// Default `proc_root`.
pub const DEFAULT_PROC_ROOT: &str = "/proc";

/// Default `systemctl`.
pub const DEFAULT_SYSTEMCTL: &str = "/usr/bin/systemctl";

/// Default `podman`.
pub const DEFAULT_PODMAN: &str = "/usr/bin/podman";

/// Default `udev-trigger` `settle_timeout`.
pub const DEFAULT_SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default `etc_udev_rules_dir`.
pub const DEFAULT_ETC_UDEV_RULES_DIR: &str = "/etc/udev/rules.d";

/// Default `system_udev_rules_dirs`: where the OS ships its rules. A file
/// in /run/udev/rules.d with the same name replaces theirs.
pub const DEFAULT_SYSTEM_UDEV_RULES_DIRS: &[&str] = &[
    "/usr/local/lib/udev/rules.d",
    "/usr/lib/udev/rules.d",
    "/lib/udev/rules.d",
];

/// Mode of installed udev rules files.
pub const UDEV_RULES_MODE: u32 = 0o644;

/// A config error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", path.display())]
pub struct ConfigError {
    /// The config file.
    pub path: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: u64,
    /// 1-based column (0 when unknown).
    pub column: u64,
    /// What is wrong.
    pub message: String,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// See [`DEFAULT_STATE_DIR`].
    pub state_dir: PathBuf,
    /// See [`DEFAULT_UDEVADM`].
    pub udevadm: PathBuf,
    /// See [`DEFAULT_ETC_UDEV_RULES_DIR`].
    pub etc_udev_rules_dir: PathBuf,
    /// See [`DEFAULT_SYSTEM_UDEV_RULES_DIRS`].
    pub system_udev_rules_dirs: Vec<PathBuf>,
    /// See [`DEFAULT_PROC_ROOT`].
    pub proc_root: PathBuf,
    /// sysfs root for USB checks (`/sys`).
    pub sysfs_root: PathBuf,
    /// /dev root for USB checks (`/dev`).
    pub dev_root: PathBuf,
    /// `setpriv` for USB probes (`/usr/bin/setpriv`).
    pub setpriv: PathBuf,
    /// udevd's runtime dir (`/run/udev`): no `control` socket there means
    /// no udevd, so no USB hotplug re-checks.
    pub udev_run_dir: PathBuf,
    /// See [`DEFAULT_SYSTEMCTL`].
    pub systemctl: PathBuf,
    /// See [`DEFAULT_PODMAN`].
    pub podman: PathBuf,
    /// The status socket (default `<state_dir>/status.sock`).
    pub status_socket: PathBuf,
    /// Group that may read the status socket.
    pub status_group: Option<String>,
    /// Prometheus textfile written after each sync.
    pub metrics_file: Option<PathBuf>,
    /// The bridges, in file order.
    pub bridges: Vec<Bridge>,
    /// Drop-in dirs searched (see [`crate::config::load`]).
    pub dropin_dirs: Vec<PathBuf>,
    /// Drop-in fragments applied, in order.
    pub fragments: Vec<PathBuf>,
}

/// One validated bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    /// Unique name.
    pub name: String,
    /// The file that defined it (the main config or a drop-in).
    pub origin: PathBuf,
    /// Kind of files.
    pub kind: Kind,
    /// Watched source dir.
    pub source: PathBuf,
    /// Name patterns to sync.
    pub include: Vec<String>,
    /// Destination dir.
    pub install_to: PathBuf,
    /// Remove installed files whose source is gone.
    pub prune: bool,
    /// Permission bits of installed files.
    pub mode: u32,
    /// Settle timing.
    pub settle: SettleTiming,
    /// Size cap for source files.
    pub max_file_size: u64,
    /// Most files the source may export; beyond it, new files are refused.
    pub max_files: usize,
    /// Most bytes the exported files may hold together.
    pub max_bytes: u64,
    /// Uids a source file may be owned by (`None`: any).
    pub source_owner: Option<Vec<u32>>,
    /// Actions after a sync that changed something.
    pub then: Vec<Action>,
    /// Checks applied to udev rules files (kind `udev-rules`).
    pub rules: Option<RulesChecks>,
    /// Settings of kind `files`.
    pub files: Option<FilesSettings>,
}

/// Settings of a `kind: files` bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesSettings {
    /// Owner of installed files (name), if set.
    pub owner: Option<String>,
    /// Group of installed files (name), if set.
    pub group: Option<String>,
    /// Names that must all be present before anything is installed.
    pub require: Vec<String>,
    /// Certificate/key pair to validate.
    pub tls_pair: Option<TlsPair>,
    /// How the set is swapped in.
    pub swap: Swap,
}

/// `validate: { tls-pair: … }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPair {
    /// Certificate file name.
    pub cert: String,
    /// Key file name.
    pub key: String,
    /// Warn when expiring within this.
    pub expiry_warning: Duration,
}

/// How a files bridge swaps its set in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// Each file renamed into place on its own.
    Rename,
    /// Files are symlinks into `..data`; one rename swaps the set.
    SymlinkDir,
}

/// Default `expiry_warning` of `tls-pair`.
pub const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(7 * 86400);

/// Default `mode` of kind files.
pub const DEFAULT_FILES_MODE: u32 = 0o644;

/// How a udev-rules bridge checks files before installing them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesChecks {
    /// The pure policy.
    pub policy: Policy,
    /// Accept GROUP/OWNER names unknown on this host.
    pub allow_unknown_groups: bool,
    /// Accept GROUP/OWNER names with ids >= 1000.
    pub allow_non_system_groups: bool,
    /// Put back revoked grants (true) or only report them.
    pub revoke_restore: bool,
    /// File names that may mask a system rules file of the same name.
    pub allow_override: Vec<String>,
}

/// A validated action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
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
    },
    /// Run a program.
    Exec {
        /// Program and arguments.
        argv: Vec<String>,
        /// Killed after this.
        timeout: Duration,
    },
}

/// Whom a `signal` action signals.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
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
pub struct Trigger {
    /// `--subsystem-match`.
    pub subsystem: Option<String>,
    /// `--action`.
    pub action: &'static str,
    /// `--attr-match` pairs.
    pub attrs: Vec<(String, String)>,
    /// `udevadm settle --timeout`.
    pub settle_timeout: Duration,
}

impl Action {
    /// Short name for logs.
    pub fn label(&self) -> &'static str {
        match self {
            Action::UdevReload => "udev-reload",
            Action::UdevTrigger(_) => "udev-trigger",
            Action::Signal { .. } => "signal",
            Action::RestartUnit(_) => "restart-unit",
            Action::ReloadUnit(_) => "reload-unit",
            Action::Exec { .. } => "exec",
            Action::UsbCheck { .. } => "usb-check",
        }
    }
}
