//! One bridge from the raw config to the typed one: its keys checked
//! against its kind, defaults by kind, its policy settings, and the checks
//! of a bridge against itself and the bridges before it. Pure.

use std::path::Path;

use serde_saphyr::Location;

use super::actions::action;
use super::model::*;
use super::raw::{self, Kind, RawBridge, RawPolicy, Token};
use super::validate::Validator;
use crate::core::names::globs_overlap;
use crate::core::rules::policy::{DEFAULT_SUBSYSTEMS, Policy, PolicyMode};
use crate::core::settle::SettleTiming;

impl Validator<'_> {
    /// One bridge: its keys, its values with their defaults by kind, and
    /// the checks of the bridge against itself.
    pub(super) fn bridge(
        &self,
        mut rb: RawBridge,
        defaults: SettleTiming,
        max_size: u64,
    ) -> Result<(Bridge, RawLocs), ConfigError> {
        let origin = rb.origin.clone();
        self.kind_keys(&rb, &origin)?;
        let files = match rb.kind {
            Kind::Files => Some(files_settings(&mut rb).map_err(|e| {
                let name = &rb.name.value.0;
                self.err(
                    &origin,
                    &rb.name.referenced,
                    format!("bridge {name:?}: {e}"),
                )
            })?),
            Kind::UdevRules => None,
        };
        let settle = self.settle(
            &origin,
            &rb.settle.take().unwrap_or_default(),
            Some(defaults),
        )?;
        let (include, include_at) = self.include(&mut rb)?;
        let (install_to, install_at) = self.install_to(&mut rb)?;
        let locs = RawLocs {
            name: rb.name.referenced,
            source: rb.source.referenced,
            include: include_at,
            install_to: install_at,
        };
        let then = std::mem::take(&mut rb.then)
            .into_iter()
            .map(action)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                let name = &rb.name.value.0;
                self.err(&origin, &locs.name, format!("bridge {name:?}: then: {e}"))
            })?;
        let (max_files, max_bytes) = bounds(&rb);
        let mut b = Bridge {
            name: rb.name.value.0.clone(),
            kind: rb.kind,
            source: rb.source.value.0.clone(),
            include,
            install_to,
            prune: rb.prune.unwrap_or(true),
            prune_grace: rb.prune_grace.map_or(DEFAULT_PRUNE_GRACE, |d| d.0),
            mode: match rb.kind {
                Kind::UdevRules => UDEV_RULES_MODE,
                Kind::Files => rb.mode.map_or(DEFAULT_FILES_MODE, |m| m.0),
            },
            settle,
            max_file_size: rb.max_file_size.map_or(max_size, |s| s.0),
            max_files,
            max_bytes,
            source_owner: rb.source_owner.take(),
            targets: Vec::new(),
            then,
            files,
            rules: (rb.kind == Kind::UdevRules).then(|| rules_checks(&mut rb)),
            origin,
        };
        let escalate = b.verify().into_iter().flat_map(|v| &v.escalate);
        b.targets = b.then.iter().chain(escalate).cloned().collect();
        self.own_checks(&b, &locs)?;
        Ok((b, locs))
    }

    /// `include`: the bridge's patterns (at least one), or its kind's.
    fn include(&self, rb: &mut RawBridge) -> Result<(Vec<String>, Location), ConfigError> {
        let Some(include) = rb.include.take() else {
            return Ok((default_include(rb.kind), rb.name.referenced));
        };
        if include.value.is_empty() {
            return Err(self.err(
                &rb.origin,
                &include.referenced,
                "include must list at least one pattern".into(),
            ));
        }
        let patterns = include.value.into_iter().map(|p| p.0).collect();
        Ok((patterns, include.referenced))
    }

    /// `install_to`: required for a files bridge, `/run/udev/rules.d` by
    /// default for udev rules.
    fn install_to(
        &self,
        rb: &mut RawBridge,
    ) -> Result<(std::path::PathBuf, Location), ConfigError> {
        match (rb.install_to.take(), rb.kind) {
            (Some(s), _) => Ok((s.value.0, s.referenced)),
            (None, Kind::UdevRules) => Ok((DEFAULT_UDEV_RULES_DIR.into(), rb.name.referenced)),
            (None, Kind::Files) => Err(self.err(
                &rb.origin,
                &rb.name.referenced,
                format!(
                    "bridge {:?} of kind files needs install_to",
                    rb.name.value.0
                ),
            )),
        }
    }

    /// A bridge against itself: source and destination apart, and every
    /// `allow_symlinks` prefix usable.
    fn own_checks(&self, b: &Bridge, locs: &RawLocs) -> Result<(), ConfigError> {
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
        Ok(())
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
            ("verify", rb.verify.is_some()),
            ("on_verify_fail", rb.on_verify_fail.is_some()),
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
    pub(super) fn against_others(
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

/// Where in the file a bridge's values were written (for later checks).
pub(super) struct RawLocs {
    pub(super) name: Location,
    source: Location,
    include: Location,
    install_to: Location,
}

/// `max_files` and `max_bytes`, or their kind's defaults.
fn bounds(rb: &RawBridge) -> (usize, u64) {
    let (files, bytes) = match rb.kind {
        Kind::UdevRules => (DEFAULT_UDEV_MAX_FILES, DEFAULT_UDEV_MAX_BYTES),
        Kind::Files => (DEFAULT_FILES_MAX_FILES, DEFAULT_FILES_MAX_BYTES),
    };
    (
        rb.max_files.unwrap_or(files),
        rb.max_bytes.map_or(bytes, |s| s.0),
    )
}

/// A rules bridge's policy and host-check settings.
fn rules_checks(rb: &mut RawBridge) -> RulesChecks {
    let listed = |v: &mut Option<Vec<Token>>| v.take().map(words).unwrap_or_default();
    RulesChecks {
        policy: Policy {
            mode: match rb.policy {
                Some(RawPolicy::Trusted) => PolicyMode::Trusted,
                _ => PolicyMode::PermissionsOnly,
            },
            subsystems: rb.allow_subsystems.take().map_or_else(
                || DEFAULT_SUBSYSTEMS.iter().map(|s| s.to_string()).collect(),
                words,
            ),
            groups: listed(&mut rb.allow_groups),
            owners: listed(&mut rb.allow_owners),
            env: listed(&mut rb.allow_env),
            symlinks: listed(&mut rb.allow_symlinks),
        },
        allow_override: listed(&mut rb.allow_override),
        allow_unknown_groups: rb.allow_unknown_groups.unwrap_or(false),
        allow_non_system_groups: rb.allow_non_system_groups.unwrap_or(false),
        revoke_restore: rb.revoke != Some(raw::RawRevoke::Report),
    }
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

fn files_settings(rb: &mut RawBridge) -> Result<FilesSettings, String> {
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
    let rollback = rb.on_verify_fail == Some(raw::RawOnVerifyFail::Rollback);
    let verify = match rb.verify.take() {
        None if rb.on_verify_fail.is_some() => {
            return Err("on_verify_fail needs verify:".into());
        }
        None => None,
        Some(_) if tls_pair.is_none() => {
            return Err(
                "verify needs validate: { tls-pair: … } (the certificate it compares with)".into(),
            );
        }
        Some(_) if rollback && swap != Swap::SymlinkDir => {
            return Err(
                "on_verify_fail: rollback needs swap: symlink-dir (only it keeps the previous set)"
                    .into(),
            );
        }
        Some(v) => Some(Verify {
            rollback,
            ..verify(v)?
        }),
    };
    Ok(FilesSettings {
        owner: rb.owner.as_ref().map(|t| t.0.clone()),
        group: rb.group.as_ref().map(|t| t.0.clone()),
        require: rb.require.iter().flatten().map(|p| p.0.clone()).collect(),
        tls_pair,
        swap,
        verify,
    })
}

/// `verify:`: the endpoint is `host:port` (`[v6]:port` for IPv6); the
/// server name defaults to its host.
fn verify(v: raw::RawVerify) -> Result<Verify, String> {
    let endpoint = v.tls_endpoint.0;
    let host = match crate::core::http::split_authority(&endpoint) {
        Ok((host, Some(port))) if port.parse::<u16>().is_ok_and(|p| p > 0) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        _ => {
            return Err(format!(
                "verify: tls-endpoint {endpoint:?} is not host:port (e.g. \"127.0.0.1:8443\")"
            ));
        }
    };
    Ok(Verify {
        endpoint,
        sni: v.sni.map_or(host, |s| s.0),
        within: v.within.map_or(DEFAULT_VERIFY_WITHIN, |d| d.0),
        escalate: super::actions::service_actions(v.escalate, "verify: escalate")?,
        rollback: false,
    })
}
