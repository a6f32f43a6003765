//! The config file as written: serde structs mirroring the YAML, with value
//! types that validate themselves while parsing so that errors carry the
//! line and column of the offending value. Pure.

use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub(crate) use super::values::{
    AbsPath, BridgeName, Dur, FileMode, Pattern, SignalName, Size, Token,
};

/// Top level of `config.yaml` (and of each drop-in fragment). Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// Where manifests (and later the status socket) live. Default `/run/hostbridge`.
    pub(crate) state_dir: Option<AbsPath>,
    /// The `udevadm` binary. Default `/usr/bin/udevadm`.
    pub(crate) udevadm: Option<AbsPath>,
    /// Default settle timing for all bridges.
    pub(crate) settle: Option<RawSettle>,
    /// Default size cap for source files. Default 1 MiB.
    pub(crate) max_file_size: Option<Size>,
    /// The status socket. Default `<state_dir>/status.sock`.
    pub(crate) status_socket: Option<AbsPath>,
    /// Group allowed to read the status socket (mode 0660). Default: none (0600).
    pub(crate) status_group: Option<Token>,
    /// Prometheus textfile written after each sync. Default: none.
    pub(crate) metrics_file: Option<AbsPath>,
    /// The sysfs root for USB checks. Default `/sys`.
    pub(crate) sysfs_root: Option<AbsPath>,
    /// The /dev root for USB checks. Default `/dev`.
    pub(crate) dev_root: Option<AbsPath>,
    /// The `setpriv` binary for `probe: true`. Default `/usr/bin/setpriv`.
    pub(crate) setpriv: Option<AbsPath>,
    /// udevd's runtime dir; its `control` socket tells whether udevd runs
    /// (for USB hotplug re-checks). Default `/run/udev`.
    pub(crate) udev_run_dir: Option<AbsPath>,
    /// The proc filesystem, for `signal` targets. Default `/proc`.
    pub(crate) proc_root: Option<AbsPath>,
    /// The `systemctl` binary. Default `/usr/bin/systemctl`.
    pub(crate) systemctl: Option<AbsPath>,
    /// The `podman` binary. Default `/usr/bin/podman`.
    pub(crate) podman: Option<AbsPath>,
    /// Where a same-named rules file would shadow ours. Default `/etc/udev/rules.d`.
    pub(crate) etc_udev_rules_dir: Option<AbsPath>,
    /// The system's own rules dirs: a file installed under the same name as
    /// one of theirs masks it. Default `[/usr/local/lib/udev/rules.d,
    /// /usr/lib/udev/rules.d, /lib/udev/rules.d]`.
    pub(crate) system_udev_rules_dirs: Option<Vec<AbsPath>>,
    /// Longest a `udevadm verify` of one file may run. Default 30s.
    pub(crate) verify_timeout: Option<Dur>,
    /// A sync running longer than this makes its bridge degraded in
    /// status. Default 60s.
    pub(crate) stuck_after: Option<Dur>,
    /// The bridges.
    #[serde(default)]
    pub(crate) bridges: Vec<RawBridge>,
    /// The file the top-level `settle` came from (set after parsing).
    #[serde(skip)]
    pub(crate) settle_origin: PathBuf,
}

/// Settle timing; each field falls back to the level above.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSettle {
    /// Quiet period before a sync. Default 300ms.
    pub(crate) quiet: Option<Spanned<Dur>>,
    /// Hard cap from the first event to the sync. Default 10s.
    pub(crate) max_wait: Option<Spanned<Dur>>,
}

/// What kind of files a bridge carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// udev rules files, installed into `/run/udev/rules.d` by default.
    UdevRules,
    /// Any files (certificates, keys, configs); `install_to` is required.
    Files,
}

impl Kind {
    /// The name as written in the config.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::UdevRules => "udev-rules",
            Kind::Files => "files",
        }
    }
}

/// One bridge as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBridge {
    /// Unique name, `[a-z0-9_-]`, used in logs and state file names.
    pub(crate) name: Spanned<BridgeName>,
    /// The kind of files.
    pub(crate) kind: Kind,
    /// The exported dir a container writes into.
    pub(crate) source: Spanned<AbsPath>,
    /// Glob patterns of names to sync. Default `["*.rules"]` for udev-rules.
    pub(crate) include: Option<Spanned<Vec<Pattern>>>,
    /// Destination dir. Default `/run/udev/rules.d` for udev-rules.
    pub(crate) install_to: Option<Spanned<AbsPath>>,
    /// Remove installed files whose source is gone. Default true.
    pub(crate) prune: Option<bool>,
    /// How long a just (re)created, still empty source dir waits for
    /// content before its absence prunes. Default 30s.
    pub(crate) prune_grace: Option<Dur>,
    /// Per-bridge settle timing.
    pub(crate) settle: Option<RawSettle>,
    /// Per-bridge size cap.
    pub(crate) max_file_size: Option<Size>,
    /// Most files the source may export (default 64 for udev-rules, 1000
    /// for files).
    pub(crate) max_files: Option<usize>,
    /// Most bytes all the source's files may hold together (default 1 MiB
    /// for udev-rules, 64 MiB for files).
    pub(crate) max_bytes: Option<Size>,
    /// The uids a source file may be owned by. Default: any.
    pub(crate) source_owner: Option<Vec<u32>>,
    /// Actions run after a sync that changed something.
    #[serde(default)]
    pub(crate) then: Vec<RawAction>,
    /// udev rules policy: `permissions-only` (default) or `trusted`.
    pub(crate) policy: Option<RawPolicy>,
    /// Subsystems on which rules may grant permissions.
    pub(crate) allow_subsystems: Option<Vec<Token>>,
    /// Groups GROUP= may name (empty: any non-privileged group).
    pub(crate) allow_groups: Option<Vec<Token>>,
    /// Users OWNER= may name (empty: any user).
    pub(crate) allow_owners: Option<Vec<Token>>,
    /// Device properties ENV{…}= may set.
    pub(crate) allow_env: Option<Vec<Token>>,
    /// Name prefixes under /dev that SYMLINK+= may create (`ups/`: names
    /// under /dev/ups/; `ups`: /dev/ups itself). Default: none.
    pub(crate) allow_symlinks: Option<Vec<Token>>,
    /// Rules file names that may mask a system rules file of the same name.
    pub(crate) allow_override: Option<Vec<Token>>,
    /// Accept GROUP/OWNER names unknown on this host.
    pub(crate) allow_unknown_groups: Option<bool>,
    /// Accept GROUP/OWNER names with ids >= 1000.
    pub(crate) allow_non_system_groups: Option<bool>,
    /// udev-rules: what to do when a removed rule leaves a device's grant
    /// behind: `restore` (default) or `report`.
    pub(crate) revoke: Option<RawRevoke>,
    /// kind files: permission bits of installed files, e.g. "0640". Default "0644".
    pub(crate) mode: Option<FileMode>,
    /// kind files: owner of installed files. Default: root (unchanged).
    pub(crate) owner: Option<Token>,
    /// kind files: group of installed files. Default: root (unchanged).
    pub(crate) group: Option<Token>,
    /// kind files: nothing is installed until every one of these is present.
    pub(crate) require: Option<Vec<Pattern>>,
    /// kind files: checks on the set of files.
    pub(crate) validate: Option<RawValidate>,
    /// kind files: how a set is swapped in. Default symlink-dir with validate, else rename.
    pub(crate) swap: Option<RawSwap>,
    /// kind files: after the actions, check that a TLS endpoint serves the
    /// installed certificate.
    pub(crate) verify: Option<RawVerify>,
    /// kind files: what a failed `verify` does: `report` (default) or
    /// `rollback` (symlink-dir only).
    pub(crate) on_verify_fail: Option<RawOnVerifyFail>,
    /// The file this bridge came from (set after parsing).
    #[serde(skip)]
    pub(crate) origin: PathBuf,
}

/// `revoke:` of a udev-rules bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawRevoke {
    /// Put back the owner, group and mode recorded before the grant.
    Restore,
    /// Only report what was left behind.
    Report,
}

/// `validate:` of a files bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawValidate {
    /// A certificate and its private key must match.
    #[serde(rename = "tls-pair")]
    pub(crate) tls_pair: Option<RawTlsPair>,
}

/// `on_verify_fail:` of a files bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawOnVerifyFail {
    /// Say so; the new set stays.
    Report,
    /// Swap the previous generation back in.
    Rollback,
}

/// `verify:` of a files bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVerify {
    /// `host:port` of the TLS endpoint that must serve the certificate.
    #[serde(rename = "tls-endpoint")]
    pub(crate) tls_endpoint: Token,
    /// The server name sent (SNI). Default: the endpoint's host.
    pub(crate) sni: Option<Token>,
    /// How long the service may take to serve it. Default 30s.
    pub(crate) within: Option<Dur>,
    /// Run once when it is not served by then, then verify again.
    #[serde(default)]
    pub(crate) escalate: Vec<RawAction>,
}

/// `validate: { tls-pair: … }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTlsPair {
    /// The certificate file name (PEM; a chain may follow the leaf).
    pub(crate) cert: Pattern,
    /// The private key file name (PEM).
    pub(crate) key: Pattern,
    /// Warn when the certificate expires within this. Default 14 days.
    pub(crate) expiry_warning: Option<Dur>,
}

/// `swap:` of a files bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawSwap {
    /// Each file is renamed into place on its own.
    Rename,
    /// Files are links into `..data`, one rename swaps the whole set.
    SymlinkDir,
}

/// The `policy:` of a udev-rules bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawPolicy {
    /// Only permissions on allowed, vendor-matched devices.
    PermissionsOnly,
    /// No policy checks (logged at every sync).
    Trusted,
}

impl RawConfig {
    /// Records `path` as the origin of everything in this file.
    pub(crate) fn set_origin(&mut self, path: &std::path::Path) {
        self.settle_origin = path.to_path_buf();
        for b in &mut self.bridges {
            b.origin = path.to_path_buf();
        }
    }

    /// Applies a drop-in fragment: top-level keys it sets replace ours;
    /// its bridges replace ours of the same name, or are appended.
    pub(crate) fn merge(&mut self, frag: RawConfig) {
        if frag.settle.is_some() {
            self.settle_origin = frag.settle_origin.clone();
        }
        // Destructured without `..`: a new top-level key cannot be forgotten.
        macro_rules! take {
            ($($f:ident),*) => {{
                let RawConfig { $($f,)* bridges, settle_origin: _ } = frag;
                $( if $f.is_some() { self.$f = $f; } )*
                bridges
            }};
        }
        let bridges = take!(
            state_dir,
            udevadm,
            settle,
            max_file_size,
            status_socket,
            status_group,
            metrics_file,
            sysfs_root,
            dev_root,
            setpriv,
            udev_run_dir,
            proc_root,
            systemctl,
            podman,
            etc_udev_rules_dir,
            system_udev_rules_dirs,
            verify_timeout,
            stuck_after
        );
        for b in bridges {
            match self
                .bridges
                .iter_mut()
                .find(|o| o.name.value == b.name.value)
            {
                Some(slot) => *slot = b,
                None => self.bridges.push(b),
            }
        }
    }
}

/// An action in a bridge's `then:` list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawAction {
    /// `udevadm control --reload`.
    UdevReload,
    /// `udevadm trigger …` then `udevadm settle`.
    UdevTrigger(RawTrigger),
    /// Send a signal to a process, a unit's main process or a container.
    Signal(RawSignal),
    /// `systemctl try-restart UNIT`.
    RestartUnit(Token),
    /// `systemctl reload UNIT`.
    ReloadUnit(Token),
    /// Run a program (no shell).
    Exec(RawExec),
    /// Check that the USB devices the rules grant are accessible.
    UsbCheck(RawUsbCheck),
    /// An HTTP request to a reload endpoint.
    Http(RawHttp),
    /// A certificate into HAProxy through its runtime API.
    HaproxyCert(RawHaproxyCert),
}

/// `haproxy-cert: { socket, cert, timeout }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHaproxyCert {
    /// HAProxy's stats socket (`stats socket … level admin`).
    pub(crate) socket: AbsPath,
    /// The PEM (certificate and key) as HAProxy's config names it (`crt`).
    pub(crate) cert: AbsPath,
    /// Default 10s a command.
    pub(crate) timeout: Option<Dur>,
}

/// `http: { url, socket, method, expect_status, timeout }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    /// `http://host[:port]/path`.
    pub(crate) url: Token,
    /// A Unix socket to send it to instead of the URL's host.
    pub(crate) socket: Option<AbsPath>,
    /// Default POST.
    pub(crate) method: Option<Token>,
    /// Default 200.
    pub(crate) expect_status: Option<u16>,
    /// Default 10s.
    pub(crate) timeout: Option<Dur>,
}

/// `usb-check: { user, expect, probe, on_replug }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUsbCheck {
    /// The user that must open the devices. Default `nut`.
    pub(crate) user: Option<Token>,
    /// VID:PIDs that must be plugged in, e.g. "051d:0002".
    #[serde(default)]
    pub(crate) expect: Vec<Token>,
    /// Also really open each node as the user. Default false.
    pub(crate) probe: Option<bool>,
    /// Actions when an expected device re-enumerates (a new device
    /// number): restart-unit, reload-unit, signal, http or exec.
    #[serde(default)]
    pub(crate) on_replug: Vec<RawAction>,
}

/// `signal: { … }`: one target and a signal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSignal {
    /// A pid file (regular file holding a decimal pid of a live process).
    pub(crate) pidfile: Option<AbsPath>,
    /// A process name (`/proc/PID/comm` or the exe's name); with `pidfile`,
    /// the pid must be this program.
    pub(crate) process: Option<Token>,
    /// A systemd unit: `systemctl kill --kill-whom=main`.
    pub(crate) unit: Option<Token>,
    /// A podman container: `podman kill --signal`.
    pub(crate) container: Option<Token>,
    /// The signal, e.g. `HUP` or `SIGUSR1`.
    pub(crate) signal: SignalName,
}

/// `exec: { argv: [...], timeout: 30s }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExec {
    /// Program and arguments; the program is an absolute path.
    pub(crate) argv: Vec<String>,
    /// Killed after this. Default 30s.
    pub(crate) timeout: Option<Dur>,
}

/// Arguments of `udev-trigger`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrigger {
    /// `--subsystem-match`. Default: none (all subsystems).
    pub(crate) subsystem: Option<Token>,
    /// `--action`. Default `change`.
    pub(crate) action: Option<UeventAction>,
    /// `--attr-match NAME=VALUE` pairs.
    #[serde(default)]
    pub(crate) attrs: std::collections::BTreeMap<Token, Token>,
    /// Timeout of the following `udevadm settle`. Default 30s.
    pub(crate) settle_timeout: Option<Dur>,
}

/// A uevent action udevadm accepts for `--action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub(crate) enum UeventAction {
    Add,
    Remove,
    Change,
    Move,
    Online,
    Offline,
    Bind,
    Unbind,
}

impl UeventAction {
    /// The word udevadm expects.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            UeventAction::Add => "add",
            UeventAction::Remove => "remove",
            UeventAction::Change => "change",
            UeventAction::Move => "move",
            UeventAction::Online => "online",
            UeventAction::Offline => "offline",
            UeventAction::Bind => "bind",
            UeventAction::Unbind => "unbind",
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::values::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("7 B"), Ok(7));
        assert!(parse_size("1MB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }
}
