//! From the raw config to the typed one: each value checked, cross-checks
//! between bridges (names, overlapping dirs, pid files), and an error with
//! file:line:col for every refusal. Pure.

use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};

use super::actions::action;
use super::model::*;
use super::raw::{self, Kind, RawBridge, RawConfig, RawPolicy, RawSettle, Token};
use crate::core::names::globs_overlap;
use crate::core::rules::policy::{DEFAULT_SUBSYSTEMS, Policy, PolicyMode};
use crate::core::settle::SettleTiming;

pub(super) struct Validator<'a> {
    pub(super) path: &'a Path,
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
