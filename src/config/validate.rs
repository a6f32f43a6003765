//! From the raw config to the typed one: the global settings, settle
//! timings, and the pid-file cross-check (each bridge is `bridge.rs`), with
//! an error with file:line:col for every refusal. Pure.

use std::path::{Path, PathBuf};

use serde_saphyr::Location;

use super::bridge::RawLocs;
use super::model::*;
use super::raw::{RawConfig, RawSettle};
use crate::core::settle::SettleTiming;

pub(super) struct Validator<'a> {
    pub(super) path: &'a Path,
}

impl Validator<'_> {
    pub(super) fn err(&self, path: &Path, at: &Location, message: String) -> ConfigError {
        ConfigError {
            path: path.to_path_buf(),
            line: at.line(),
            column: at.column(),
            message,
        }
    }

    pub(super) fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
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
        self.haproxy_paths(&bridges)?;
        Ok(Config {
            path: self.path.to_path_buf(),
            status_socket: raw
                .status_socket
                .map_or_else(|| state_dir.join("status.sock"), |p| p.0),
            status_group: raw.status_group.map(|t| t.0),
            metrics_file: raw.metrics_file.map(|p| p.0),
            verify_timeout: raw.verify_timeout.map_or(DEFAULT_VERIFY_TIMEOUT, |d| d.0),
            stuck_after: raw.stuck_after.map_or(DEFAULT_STUCK_AFTER, |d| d.0),
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

    pub(super) fn settle(
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
            for a in b.actions() {
                let Action::Signal {
                    target: Target::Pidfile { path, .. },
                    ..
                } = a
                else {
                    continue;
                };
                // A source is written by a container, and so in effect is an
                // install_to: hostbridge puts the container's files there.
                let inside = bridges
                    .iter()
                    .find_map(|(o, _)| {
                        [("source", &o.source), ("install_to", &o.install_to)]
                            .into_iter()
                            .find(|(_, dir)| path.starts_with(dir))
                            .map(|(what, dir)| {
                                format!(
                                    "lies inside bridge {:?}'s {what} {}, whose files come from a container; \
                                     use unit: or container: to name the service instead",
                                    o.name,
                                    dir.display()
                                )
                            })
                    })
                    .or_else(|| {
                        path.starts_with(state_dir)
                            .then(|| format!("lies inside the state_dir {}", state_dir.display()))
                    });
                if let Some(why) = inside {
                    return Err(self.err(
                        &b.origin,
                        &locs.name,
                        format!("bridge {:?}: pidfile {} {why}", b.name, path.display()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `haproxy-cert`'s PEM must be a file a files bridge installs (read
    /// through its destination, never a path a container chose), and its
    /// socket must lie outside every source and install_to.
    fn haproxy_paths(&self, bridges: &[(Bridge, RawLocs)]) -> Result<(), ConfigError> {
        for (b, locs) in bridges {
            for a in b.actions() {
                let Action::HaproxyCert { socket, cert, .. } = a else {
                    continue;
                };
                let installed = bridges.iter().any(|(o, _)| {
                    o.files.is_some()
                        && cert.parent() == Some(o.install_to.as_path())
                        && cert.file_name().is_some()
                });
                let why = if !installed {
                    Some(format!(
                        "haproxy-cert: cert {} is not a file a files bridge installs (its dir must be a files bridge's install_to)",
                        cert.display()
                    ))
                } else {
                    bridges
                        .iter()
                        .find(|(o, _)| socket.starts_with(&o.source) || socket.starts_with(&o.install_to))
                        .map(|(o, _)| {
                            format!(
                                "haproxy-cert: socket {} lies inside bridge {:?}'s dirs, whose files come from a container",
                                socket.display(),
                                o.name
                            )
                        })
                };
                if let Some(why) = why {
                    return Err(self.err(
                        &b.origin,
                        &locs.name,
                        format!("bridge {:?}: {why}", b.name),
                    ));
                }
            }
        }
        Ok(())
    }
}
