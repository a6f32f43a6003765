//! Configuration: the YAML file parsed into raw serde structs ([`raw`]), then
//! checked and turned into typed settings. Parsing and validation are pure
//! ([`parse`]); only [`load`] reads a file.
//!
//! YAML is read with `serde-saphyr`: maintained (serde_yaml is archived),
//! pure Rust without unsafe code, honours `deny_unknown_fields`, and reports
//! line and column for every error, including errors raised by our own value
//! types. Checks that span several values (duplicate names, overlapping
//! destinations) use its `Spanned` wrapper to point at the right line too.

pub mod raw;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use crate::core::names::globs_overlap;
use crate::core::rules::policy::{DEFAULT_SUBSYSTEMS, Policy, PolicyMode};
use crate::core::settle::SettleTiming;
use raw::{Kind, RawAction, RawBridge, RawConfig, RawPolicy, RawSettle, Token};

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
    /// Drop-in dirs searched (see [`load`]).
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

/// Reads and validates the config file at `path`.
///
/// Then applies drop-in fragments, the FCOS convention zincati follows:
/// `*.yaml` files from `dirs` (typically [`DEFAULT_DROPIN_DIRS`]); for the
/// same file name a later dir wins; fragments apply in file-name order;
/// top-level keys a fragment sets replace earlier ones, and its bridges
/// replace earlier bridges of the same name or are added. The main file
/// may be missing when fragments exist.
pub fn load(path: &Path, dirs: &[PathBuf]) -> Result<Config, ConfigError> {
    let fragments = list_fragments(dirs)?;
    let mut raw = match std::fs::read_to_string(path) {
        Ok(text) => parse_raw(&text, path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !fragments.is_empty() => {
            RawConfig::default()
        }
        Err(e) => return Err(io_error(path, &e)),
    };
    for frag in &fragments {
        let text = std::fs::read_to_string(frag).map_err(|e| io_error(frag, &e))?;
        raw.merge(parse_raw(&text, frag)?);
    }
    let mut config = Validator { path }.config(raw)?;
    config.dropin_dirs = dirs.to_vec();
    config.fragments = fragments;
    Ok(config)
}

/// Default drop-in dirs, lowest precedence first.
pub const DEFAULT_DROPIN_DIRS: &[&str] = &[
    "/usr/lib/hostbridge/config.d",
    "/etc/hostbridge/config.d",
    "/run/hostbridge/config.d",
];

fn io_error(path: &Path, e: &std::io::Error) -> ConfigError {
    ConfigError {
        path: path.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read config: {e}"),
    }
}

/// The fragments to apply, in order (see [`load`]).
fn list_fragments(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut by_name: std::collections::BTreeMap<std::ffi::OsString, PathBuf> = Default::default();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(dir, &e)),
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|x| x == "yaml")
                && !entry.file_name().to_string_lossy().starts_with('.')
            {
                by_name.insert(entry.file_name(), p);
            }
        }
    }
    Ok(by_name.into_values().collect())
}

/// Parses and validates one config text (no drop-ins); `path` is used in messages.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let raw = parse_raw(text, path)?;
    Validator { path }.config(raw)
}

fn parse_raw(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    let mut raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| {
        let loc = e.location();
        ConfigError {
            path: path.to_path_buf(),
            line: loc.map_or(0, |l| l.line()),
            column: loc.map_or(0, |l| l.column()),
            message: strip_location_prefix(&e.without_snippet().to_string()),
        }
    })?;
    raw.set_origin(path);
    Ok(raw)
}

/// serde-saphyr prefixes messages with "error: line L column C: " and some
/// end with " at line L, column C"; we print `file:line:col:` ourselves, so
/// drop both.
fn strip_location_prefix(msg: &str) -> String {
    let rest = msg.strip_prefix("error: ").unwrap_or(msg);
    let rest = match rest.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((pos, tail)) if pos.contains(" column ") => tail,
        _ => rest,
    };
    match rest.rsplit_once(" at line ") {
        Some((head, pos)) if pos.contains(", column ") => head.to_string(),
        _ => rest.to_string(),
    }
}

struct Validator<'a> {
    path: &'a Path,
}

impl Validator<'_> {
    fn err(&self, path: &Path, at: &Location, message: String) -> ConfigError {
        ConfigError {
            path: path.to_path_buf(),
            line: at.line(),
            column: at.column(),
            message,
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let defaults = self.settle(&raw.settle_origin, &raw.settle.unwrap_or_default(), None)?;
        let max_file_size = raw.max_file_size.map_or(DEFAULT_MAX_FILE_SIZE, |s| s.0);
        let mut bridges: Vec<(Bridge, RawLocs)> = Vec::new();
        for rb in raw.bridges {
            let (b, locs) = self.bridge(rb, defaults, max_file_size)?;
            self.against_others(&b, &locs, &bridges)?;
            bridges.push((b, locs));
        }
        let state_dir: PathBuf = raw
            .state_dir
            .map_or_else(|| DEFAULT_STATE_DIR.into(), |p| p.0);
        self.pidfiles_outside_sources(&bridges, &state_dir)?;
        Ok(Config {
            path: self.path.to_path_buf(),
            status_socket: raw
                .status_socket
                .map_or_else(|| state_dir.join("status.sock"), |p| p.0),
            status_group: raw.status_group.map(|t| t.0),
            metrics_file: raw.metrics_file.map(|p| p.0),
            state_dir,
            udevadm: raw.udevadm.map_or_else(|| DEFAULT_UDEVADM.into(), |p| p.0),
            etc_udev_rules_dir: raw
                .etc_udev_rules_dir
                .map_or_else(|| DEFAULT_ETC_UDEV_RULES_DIR.into(), |p| p.0),
            system_udev_rules_dirs: raw.system_udev_rules_dirs.map_or_else(
                || {
                    DEFAULT_SYSTEM_UDEV_RULES_DIRS
                        .iter()
                        .map(PathBuf::from)
                        .collect()
                },
                |v| v.into_iter().map(|p| p.0).collect(),
            ),
            proc_root: raw
                .proc_root
                .map_or_else(|| DEFAULT_PROC_ROOT.into(), |p| p.0),
            sysfs_root: raw.sysfs_root.map_or_else(|| "/sys".into(), |p| p.0),
            dev_root: raw.dev_root.map_or_else(|| "/dev".into(), |p| p.0),
            setpriv: raw
                .setpriv
                .map_or_else(|| "/usr/bin/setpriv".into(), |p| p.0),
            udev_run_dir: raw.udev_run_dir.map_or_else(|| "/run/udev".into(), |p| p.0),
            systemctl: raw
                .systemctl
                .map_or_else(|| DEFAULT_SYSTEMCTL.into(), |p| p.0),
            podman: raw.podman.map_or_else(|| DEFAULT_PODMAN.into(), |p| p.0),
            bridges: bridges.into_iter().map(|(b, _)| b).collect(),
            dropin_dirs: Vec::new(),
            fragments: Vec::new(),
        })
    }

    fn settle(
        &self,
        origin: &Path,
        raw: &RawSettle,
        base: Option<SettleTiming>,
    ) -> Result<SettleTiming, ConfigError> {
        let quiet = raw.quiet.as_ref().map(|s| s.value.0);
        let max_wait = raw.max_wait.as_ref().map(|s| s.value.0);
        let t = SettleTiming {
            quiet: quiet.or(base.map(|b| b.quiet)).unwrap_or(DEFAULT_QUIET),
            max_wait: max_wait
                .or(base.map(|b| b.max_wait))
                .unwrap_or(DEFAULT_MAX_WAIT),
        };
        if t.max_wait < t.quiet {
            let at = raw
                .max_wait
                .as_ref()
                .or(raw.quiet.as_ref())
                .map(|s| s.referenced)
                .unwrap_or(Location::UNKNOWN);
            return Err(self.err(
                origin,
                &at,
                format!(
                    "settle.max_wait ({}) is shorter than settle.quiet ({})",
                    humantime::format_duration(t.max_wait),
                    humantime::format_duration(t.quiet)
                ),
            ));
        }
        Ok(t)
    }

    fn bridge(
        &self,
        rb: RawBridge,
        defaults: SettleTiming,
        max_size: u64,
    ) -> Result<(Bridge, RawLocs), ConfigError> {
        let origin = rb.origin.clone();
        self.kind_keys(&rb, &origin)?;
        let files = (rb.kind == Kind::Files).then(|| files_settings(&rb));
        let settle = self.settle(&origin, &rb.settle.unwrap_or_default(), Some(defaults))?;
        let (include, include_at) = match rb.include {
            Some(Spanned {
                value, referenced, ..
            }) => {
                if value.is_empty() {
                    return Err(self.err(
                        &origin,
                        &referenced,
                        "include must list at least one pattern".into(),
                    ));
                }
                (value.into_iter().map(|p| p.0).collect(), referenced)
            }
            None => (default_include(rb.kind), rb.name.referenced),
        };
        let (install_to, install_at) = match (rb.install_to, rb.kind) {
            (Some(s), _) => (s.value.0, s.referenced),
            (None, Kind::UdevRules) => (DEFAULT_UDEV_RULES_DIR.into(), rb.name.referenced),
            (None, Kind::Files) => {
                return Err(self.err(
                    &origin,
                    &rb.name.referenced,
                    format!(
                        "bridge {:?} of kind files needs install_to",
                        rb.name.value.0
                    ),
                ));
            }
        };
        let locs = RawLocs {
            name: rb.name.referenced,
            source: rb.source.referenced,
            include: include_at,
            install_to: install_at,
        };
        let name_for_errors = rb.name.value.0.clone();
        let then = rb
            .then
            .into_iter()
            .map(action)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                self.err(
                    &origin,
                    &locs.name,
                    format!("bridge {name_for_errors:?}: then: {e}"),
                )
            })?;
        let b = Bridge {
            origin,
            name: rb.name.value.0,
            kind: rb.kind,
            source: rb.source.value.0,
            include,
            install_to,
            prune: rb.prune.unwrap_or(true),
            mode: match rb.kind {
                Kind::UdevRules => UDEV_RULES_MODE,
                Kind::Files => rb.mode.map_or(DEFAULT_FILES_MODE, |m| m.0),
            },
            settle,
            max_file_size: rb.max_file_size.map_or(max_size, |s| s.0),
            max_files: rb.max_files.unwrap_or(match rb.kind {
                Kind::UdevRules => DEFAULT_UDEV_MAX_FILES,
                Kind::Files => DEFAULT_FILES_MAX_FILES,
            }),
            max_bytes: rb.max_bytes.map_or(
                match rb.kind {
                    Kind::UdevRules => DEFAULT_UDEV_MAX_BYTES,
                    Kind::Files => DEFAULT_FILES_MAX_BYTES,
                },
                |s| s.0,
            ),
            source_owner: rb.source_owner,
            then,
            files,
            rules: (rb.kind == Kind::UdevRules).then(|| RulesChecks {
                policy: Policy {
                    mode: match rb.policy {
                        Some(RawPolicy::Trusted) => PolicyMode::Trusted,
                        _ => PolicyMode::PermissionsOnly,
                    },
                    subsystems: rb.allow_subsystems.map_or_else(
                        || DEFAULT_SUBSYSTEMS.iter().map(|s| s.to_string()).collect(),
                        words,
                    ),
                    groups: rb.allow_groups.map(words).unwrap_or_default(),
                    owners: rb.allow_owners.map(words).unwrap_or_default(),
                    env: rb.allow_env.map(words).unwrap_or_default(),
                    symlinks: rb.allow_symlinks.map(words).unwrap_or_default(),
                },
                allow_override: rb.allow_override.map(words).unwrap_or_default(),
                allow_unknown_groups: rb.allow_unknown_groups.unwrap_or(false),
                allow_non_system_groups: rb.allow_non_system_groups.unwrap_or(false),
                revoke_restore: rb.revoke != Some(raw::RawRevoke::Report),
            }),
        };
        if b.install_to.starts_with(&b.source) || b.source.starts_with(&b.install_to) {
            return Err(self.err(&b.origin, &locs.install_to, format!(
                "install_to {} and source {} overlap; the destination must be outside the exported dir",
                b.install_to.display(),
                b.source.display()
            )));
        }
        let prefixes = b.rules.iter().flat_map(|r| &r.policy.symlinks);
        for p in prefixes {
            if let Some(why) = crate::core::rules::policy::symlink_prefix_problem(p) {
                return Err(self.err(
                    &b.origin,
                    &locs.name,
                    format!("bridge {:?}: allow_symlinks entry {p:?} {why}", b.name),
                ));
            }
        }
        Ok((b, locs))
    }

    /// Refuses keys that belong to the other kind.
    fn kind_keys(&self, rb: &RawBridge, origin: &Path) -> Result<(), ConfigError> {
        let files_only = [
            ("mode", rb.mode.is_some()),
            ("owner", rb.owner.is_some()),
            ("group", rb.group.is_some()),
            ("require", rb.require.is_some()),
            ("validate", rb.validate.is_some()),
            ("swap", rb.swap.is_some()),
        ];
        let rules_only = [
            ("policy", rb.policy.is_some()),
            ("allow_subsystems", rb.allow_subsystems.is_some()),
            ("allow_groups", rb.allow_groups.is_some()),
            ("allow_owners", rb.allow_owners.is_some()),
            ("allow_env", rb.allow_env.is_some()),
            ("allow_symlinks", rb.allow_symlinks.is_some()),
            ("allow_override", rb.allow_override.is_some()),
            ("allow_unknown_groups", rb.allow_unknown_groups.is_some()),
            (
                "allow_non_system_groups",
                rb.allow_non_system_groups.is_some(),
            ),
        ];
        let (wrong, other) = match rb.kind {
            Kind::UdevRules => (&files_only[..], "files"),
            Kind::Files => (&rules_only[..], "udev-rules"),
        };
        if let Some((key, _)) = wrong.iter().find(|(_, set)| *set) {
            return Err(self.err(
                origin,
                &rb.name.referenced,
                format!(
                    "bridge {:?}: `{key}` only applies to kind {other}",
                    rb.name.value.0
                ),
            ));
        }
        Ok(())
    }

    /// Checks a new bridge against the ones before it.
    fn against_others(
        &self,
        b: &Bridge,
        locs: &RawLocs,
        prev: &[(Bridge, RawLocs)],
    ) -> Result<(), ConfigError> {
        for (o, _) in prev {
            if o.name == b.name {
                return Err(self.err(
                    &b.origin,
                    &locs.name,
                    format!("duplicate bridge name {:?}", b.name),
                ));
            }
            if o.install_to.starts_with(&b.source) || b.source.starts_with(&o.install_to) {
                return Err(self.err(
                    &b.origin,
                    &locs.source,
                    format!(
                        "source {} overlaps bridge {:?}'s install_to {}",
                        b.source.display(),
                        o.name,
                        o.install_to.display()
                    ),
                ));
            }
            if b.install_to.starts_with(&o.source) || o.source.starts_with(&b.install_to) {
                return Err(self.err(
                    &b.origin,
                    &locs.install_to,
                    format!(
                        "install_to {} overlaps bridge {:?}'s source {}",
                        b.install_to.display(),
                        o.name,
                        o.source.display()
                    ),
                ));
            }
            if o.install_to == b.install_to {
                let clash = b.include.iter().find_map(|p| {
                    o.include
                        .iter()
                        .find(|q| globs_overlap(p, q))
                        .map(|q| (p, q))
                });
                if let Some((p, q)) = clash {
                    return Err(self.err(&b.origin, &locs.include, format!(
                        "bridges {:?} and {:?} both install into {} and their include patterns {p:?} and {q:?} \
                         can match the same file; give them disjoint include patterns",
                        o.name,
                        b.name,
                        b.install_to.display()
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Validator<'_> {
    /// A pid file inside any bridge's source or install_to holds what a
    /// container wrote: it could name any process, hostbridge's own
    /// included. Nor may it lie in the state dir.
    fn pidfiles_outside_sources(
        &self,
        bridges: &[(Bridge, RawLocs)],
        state_dir: &Path,
    ) -> Result<(), ConfigError> {
        for (b, locs) in bridges {
            for a in &b.then {
                let Action::Signal {
                    target: Target::Pidfile { path, .. },
                    ..
                } = a
                else {
                    continue;
                };
                // A source is written by a container, and so in effect is an
                // install_to: hostbridge puts the container's files there.
                let inside = bridges.iter().find_map(|(o, _)| {
                    if path.starts_with(&o.source) {
                        Some((o, "source", &o.source))
                    } else if path.starts_with(&o.install_to) {
                        Some((o, "install_to", &o.install_to))
                    } else {
                        None
                    }
                });
                if let Some((o, what, dir)) = inside {
                    return Err(self.err(
                        &b.origin,
                        &locs.name,
                        format!(
                            "bridge {:?}: pidfile {} lies inside bridge {:?}'s {what} {}, whose files come from a container; \
                             use unit: or container: to name the service instead",
                            b.name,
                            path.display(),
                            o.name,
                            dir.display()
                        ),
                    ));
                }
                if path.starts_with(state_dir) {
                    return Err(self.err(
                        &b.origin,
                        &locs.name,
                        format!(
                            "bridge {:?}: pidfile {} lies inside the state_dir {}",
                            b.name,
                            path.display(),
                            state_dir.display()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Where in the file a bridge's values were written (for later checks).
struct RawLocs {
    name: Location,
    source: Location,
    include: Location,
    install_to: Location,
}

fn words(tokens: Vec<Token>) -> Vec<String> {
    tokens.into_iter().map(|t| t.0).collect()
}

fn default_include(kind: Kind) -> Vec<String> {
    match kind {
        Kind::UdevRules => vec!["*.rules".into()],
        Kind::Files => vec!["*".into()],
    }
}

fn files_settings(rb: &RawBridge) -> FilesSettings {
    let tls_pair = rb
        .validate
        .as_ref()
        .and_then(|v| v.tls_pair.as_ref())
        .map(|t| TlsPair {
            cert: t.cert.0.clone(),
            key: t.key.0.clone(),
            expiry_warning: t.expiry_warning.map_or(DEFAULT_EXPIRY_WARNING, |d| d.0),
        });
    let swap = match rb.swap {
        Some(raw::RawSwap::Rename) => Swap::Rename,
        Some(raw::RawSwap::SymlinkDir) => Swap::SymlinkDir,
        None if tls_pair.is_some() => Swap::SymlinkDir,
        None => Swap::Rename,
    };
    FilesSettings {
        owner: rb.owner.as_ref().map(|t| t.0.clone()),
        group: rb.group.as_ref().map(|t| t.0.clone()),
        require: rb.require.iter().flatten().map(|p| p.0.clone()).collect(),
        tls_pair,
        swap,
    }
}

fn action(raw: RawAction) -> Result<Action, String> {
    Ok(match raw {
        RawAction::UdevReload => Action::UdevReload,
        RawAction::Signal(s) => {
            let target = match (s.pidfile, s.process, s.unit, s.container) {
                (Some(_), None, None, None) => return Err(
                    "signal with a pidfile needs process: too (the program the pid must be); a pid file alone could name any process".into()
                ),
                (Some(p), Some(process), None, None) => Target::Pidfile { path: p.0, process: process.0 },
                (None, Some(p), None, None) => Target::Process(p.0),
                (None, None, Some(u), None) => Target::Unit(u.0),
                (None, None, None, Some(c)) => Target::Container(c.0),
                _ => return Err("signal needs exactly one of pidfile (with process), process, unit or container".into()),
            };
            Action::Signal {
                target,
                signal: s.signal.0,
            }
        }
        RawAction::RestartUnit(u) => Action::RestartUnit(u.0),
        RawAction::UsbCheck(u) => Action::UsbCheck {
            user: u.user.map_or_else(|| "nut".into(), |t| t.0),
            expect: u
                .expect
                .into_iter()
                .map(|t| t.0.to_ascii_lowercase())
                .collect(),
            probe: u.probe.unwrap_or(false),
        },
        RawAction::ReloadUnit(u) => Action::ReloadUnit(u.0),
        RawAction::Exec(e) => {
            if e.argv.first().is_none_or(|p| !p.starts_with('/')) {
                return Err("exec argv must start with an absolute program path".into());
            }
            Action::Exec {
                argv: e.argv,
                timeout: e.timeout.map_or(DEFAULT_EXEC_TIMEOUT, |d| d.0),
            }
        }
        RawAction::UdevTrigger(t) => Action::UdevTrigger(Trigger {
            subsystem: t.subsystem.map(|s| s.0),
            action: t.action.map_or("change", |a| a.as_str()),
            attrs: t.attrs.into_iter().map(|(k, v)| (k.0, v.0)).collect(),
            settle_timeout: t.settle_timeout.map_or(DEFAULT_SETTLE_TIMEOUT, |d| d.0),
        }),
    })
}

#[cfg(test)]
mod tests;

/// The status socket named by the config at `path`, read leniently so that
/// `hostbridge status` still finds the daemon while the file on disk is
/// broken (the daemon keeps running its previous config then).
pub fn status_socket_hint(path: &Path) -> PathBuf {
    #[derive(serde::Deserialize)]
    struct Hint {
        state_dir: Option<PathBuf>,
        status_socket: Option<PathBuf>,
    }
    let hint = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_saphyr::from_str::<Hint>(&t).ok());
    match hint {
        Some(Hint {
            status_socket: Some(s),
            ..
        }) if s.is_absolute() => s,
        Some(Hint {
            state_dir: Some(d), ..
        }) if d.is_absolute() => d.join("status.sock"),
        _ => PathBuf::from(DEFAULT_STATE_DIR).join("status.sock"),
    }
}
