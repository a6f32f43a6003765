//! What a sync may skip: which source files it reads ([`Scope`]), and what
//! it records of each installed file for the next one ([`Seeing`]), so that
//! a sync costs what changed, not what exists. Glue over the manifest.
//!
//! The record per installed file ([`Seen`]) holds the source's size and
//! stamp when it was read with the verdict installed, and the installed
//! copy's stamp. A sync of the daemon, whose watch saw every change, takes
//! the files it did not see change as they were ([`Scope::Changed`]);
//! `hostbridge sync` takes those whose stamps are unchanged
//! ([`Scope::Stamped`]); startup, a rescan (an overflow, a replaced watch,
//! a reload, a retry) and `sync --full` read everything ([`Scope::Full`]).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};

use crate::config::{Bridge, Config, Swap};
use crate::core::plan::{self, Digest, Owned};
use crate::core::stamp::Stamp;
use crate::host::source;
use crate::host::state::{Manifest, Seen, StateDir, format};

/// Which source files a sync reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every file, and every installed copy is looked at.
    #[default]
    Full,
    /// A file whose stamp is the one recorded, settled, is not read; nor
    /// is an installed copy whose stamp is the one recorded.
    Stamped,
    /// Only the names the daemon's watch saw change are read, and only
    /// their installed copies looked at.
    Changed(BTreeSet<String>),
}

/// What the verdicts of a sync of `bridge` depend on, hashed: the bridge's
/// settings (its checks, policy, allow lists, include, bounds, owners,
/// TLS pair…) and the host paths its rules checks look at. A manifest
/// recorded under another digest is not trusted for skipping reads (a
/// tightened policy must judge every file again, even for `hostbridge
/// sync`, which reads the config anew without a reload). Not the file
/// that defines the bridge: the same bridge moved to a drop-in, or its
/// config named by another path (`--config config.yaml` in its dir), is
/// judged the same. And hostbridge's version: the rules built into it (the
/// names it refuses, its policy) may be others in another, whose
/// `hostbridge sync` then judges everything again.
pub(crate) fn checks_of(config: &Config, bridge: &Bridge) -> Digest {
    checks_under(config, bridge, env!("CARGO_PKG_VERSION"))
}

/// [`checks_of`] for hostbridge `version`.
fn checks_under(config: &Config, bridge: &Bridge, version: &str) -> Digest {
    let settings = Bridge {
        origin: std::path::PathBuf::new(),
        ..bridge.clone()
    };
    let text = format!(
        "hostbridge {version}\n{settings:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        config.etc_udev_rules_dir, config.system_udev_rules_dirs, config.dev_root, config.udevadm
    );
    Digest::of(text.as_bytes())
}

/// `hostbridge sync` with nothing to change, found without building the
/// scan, the plan and the manifest: `Some(count)` when the manifest file
/// says nothing is owed and its verdicts were made under today's checks,
/// and every file on both sides is as it records ([`source::as_recorded`]),
/// with the mode and owners the bridge wants. The plan would then change
/// nothing and the manifest would be saved as it is; any difference, or a
/// bridge whose set is checked as a whole (`require`, a TLS pair, a
/// symlink-dir swap), takes the full way. Reads and locks nothing: a
/// change under way shows as a difference.
pub(crate) fn as_recorded(
    bridge: &Bridge,
    state: &StateDir,
    opts: &super::SyncOptions,
    checks: Digest,
) -> Result<Option<usize>> {
    let daemons = opts.guard.is_some() || opts.quiet_for.is_some() || !opts.still_open.is_empty();
    if opts.scope != Scope::Stamped || whole_set(bridge) || daemons {
        return Ok(None);
    }
    // Intent records after the manifest file: it is not all there is.
    if state.has_intents(&bridge.name) {
        return Ok(None);
    }
    let Some((bytes, stamp)) = state.read_raw(&bridge.name)? else {
        return Ok(None);
    };
    let Some(records) = format::records(&bytes) else {
        return Ok(None);
    };
    if records.actions_pending
        || records.changed
        || records.checks != Some(checks)
        || records.destination != bridge.install_to.as_os_str().as_encoded_bytes()
    {
        return Ok(None);
    }
    // An owner that cannot be looked up is the full way's error to report.
    let (Ok(owner), Ok(Some(dest))) = (
        super::owner_ids(bridge),
        super::apply::open_existing(&bridge.install_to),
    ) else {
        return Ok(None);
    };
    // What the plan would find unchanged, with the manifest's entry as it
    // stands (its mode the bridge's).
    let desired = super::desired(bridge, owner, false);
    let wanted = |r: &format::Record, st: &Stamp| {
        r.mode == desired.mode
            && desired.wants_copy((st.mode & 0o7777, st.uid, st.gid), (r.uid, r.gid))
    };
    let spec = source::RecordedSpec {
        include: &bridge.include,
        admit: &super::admit(bridge),
        limits: super::limits(bridge),
        wanted: &wanted,
    };
    let listing = state.listing(&bridge.name, &stamp);
    source::as_recorded(&bridge.source, &dest, &spec, records, listing)
        .with_context(|| format!("reading source dir {}", bridge.source.display()))
}

/// Whether `bridge`'s files are checked as a set (`require`, a TLS pair, a
/// symlink-dir swap): a sync that skips looking at some of them cannot
/// check the set.
pub(crate) fn whole_set(bridge: &Bridge) -> bool {
    bridge
        .files
        .as_ref()
        .is_some_and(|f| !f.require.is_empty() || f.tls_pair.is_some() || f.swap != Swap::Rename)
}

/// What `scope` lets a scan take unread, over `known`.
pub(crate) fn reuse<'a>(scope: &'a Scope, known: &'a Manifest) -> source::Reuse<'a> {
    match scope {
        Scope::Full => source::Reuse::Nothing,
        Scope::Stamped => source::Reuse::Stamped(known),
        Scope::Changed(changed) => source::Reuse::Unchanged { known, changed },
    }
}

/// What this sync saw, to record in the manifest it saves.
#[derive(Debug)]
pub(crate) struct Seeing<'a> {
    /// The scan: its ready files, and what it saw of them.
    pub(crate) scan: &'a source::SourceScan,
    /// Files the barrier held: what was read of them may be torn.
    pub(crate) held: &'a BTreeSet<String>,
    /// Installed copies holding this digest, and their stamps.
    pub(crate) dest: BTreeMap<String, (Stamp, Digest)>,
}

impl<'a> Seeing<'a> {
    /// From a scan and the files the barrier held.
    pub(crate) fn of_scan(scan: &'a source::SourceScan, held: &'a BTreeSet<String>) -> Seeing<'a> {
        Seeing {
            scan,
            held,
            dest: BTreeMap::new(),
        }
    }

    /// The record for the files a manifest lists: each side only where
    /// what was seen holds the digest installed (a source ready with that
    /// digest and not held; an installed copy read or written with it).
    pub(crate) fn for_files(&self, files: &BTreeMap<String, Owned>) -> BTreeMap<String, Seen> {
        // Every map is in name order: one merged walk, no lookups.
        let mut view = self.scan.view.files.iter().peekable();
        let mut seen = self.scan.seen.iter().peekable();
        let mut dest = self.dest.iter().peekable();
        files
            .iter()
            .filter_map(|(name, o)| {
                let ready = plan::at(&mut view, name) == Some(&plan::SourceFile::Ready(o.digest))
                    && !self.held.contains(name);
                let src = plan::at(&mut seen, name).filter(|_| ready);
                let dest = plan::at(&mut dest, name).filter(|(_, d)| *d == o.digest);
                let seen = Seen {
                    size: src.and_then(|s| s.size),
                    source: src.and_then(|s| s.source),
                    dest: dest.map(|(st, _)| *st),
                };
                (seen != Seen::default()).then(|| (name.clone(), seen))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(ino: u64) -> Stamp {
        Stamp {
            dev: 1,
            ino,
            size: 4,
            mtime_ns: 0,
            ctime_ns: 0,
            mode: 0o100644,
            uid: 0,
            gid: 0,
        }
    }

    fn owned(d: Digest) -> Owned {
        Owned {
            digest: d,
            mode: 0o644,
            uid: None,
            gid: None,
        }
    }

    /// A record is kept only for the content installed: a source read
    /// with other content (a failed replace keeps the old copy), a held
    /// source, or an installed copy seen before its replacement records
    /// nothing.
    #[test]
    fn only_what_holds_the_installed_digest_is_recorded() {
        let (old, new) = (Digest::of(b"old"), Digest::of(b"new"));
        let seen = Seen {
            size: Some(3),
            source: Some(stamp(7)),
            dest: None,
        };
        let mut scan = source::SourceScan::default();
        for (name, d) in [("same", old), ("failed", new), ("held", old)] {
            scan.view
                .files
                .insert(name.into(), plan::SourceFile::Ready(d));
            scan.seen.insert(name.into(), seen);
        }
        let held: BTreeSet<String> = ["held".to_string()].into();
        let mut s = Seeing::of_scan(&scan, &held);
        s.dest.insert("same".into(), (stamp(9), old));
        s.dest.insert("replaced".into(), (stamp(9), old));
        let files: BTreeMap<String, Owned> = ["same", "failed", "held", "replaced"]
            .into_iter()
            .map(|n| {
                (
                    n.to_string(),
                    owned(if n == "replaced" { new } else { old }),
                )
            })
            .collect();
        let out = s.for_files(&files);
        assert_eq!(
            out.get("same"),
            Some(&Seen {
                size: Some(3),
                source: Some(stamp(7)),
                dest: Some(stamp(9)),
            })
        );
        assert_eq!(out.len(), 1, "{out:?}");
    }

    /// The checks are the bridge's settings, the host paths and
    /// hostbridge's version, not the file that defines it: the same config
    /// named by another path keeps its verdicts; a changed setting, or
    /// another version, does not.
    #[test]
    fn checks_are_of_the_settings_not_of_where_they_are_written() {
        let text = "bridges:\n  - name: b\n    kind: udev-rules\n    source: /run/s\n    install_to: /run/d\n";
        let at = |path: &str, text: &str| {
            let c = crate::config::parse(text, std::path::Path::new(path)).unwrap();
            checks_of(&c, &c.bridges[0])
        };
        let here = at("/etc/hostbridge/config.yaml", text);
        assert_eq!(here, at("config.yaml", text));
        assert_eq!(here, at("/etc/hostbridge/config.d/10-b.yaml", text));
        let other = text.replace("/run/s", "/run/t");
        assert_ne!(here, at("/etc/hostbridge/config.yaml", &other));
        // Another version of hostbridge may judge by other rules.
        let c = crate::config::parse(text, std::path::Path::new("/c.yaml")).unwrap();
        assert_eq!(
            here,
            checks_under(&c, &c.bridges[0], env!("CARGO_PKG_VERSION"))
        );
        assert_ne!(here, checks_under(&c, &c.bridges[0], "0.0.0-other"));
    }

    /// Only files whose source was seen with the installed digest are
    /// known: a record of the installed copy alone is not.
    #[test]
    fn known_needs_the_source_side() {
        let d = Digest::of(b"x");
        let mut m = Manifest::default();
        m.files.insert("a".into(), owned(d));
        m.files.insert("b".into(), owned(d));
        m.seen.insert(
            "a".into(),
            Seen {
                size: Some(1),
                source: None,
                dest: None,
            },
        );
        m.seen.insert(
            "b".into(),
            Seen {
                size: None,
                source: None,
                dest: Some(stamp(1)),
            },
        );
        assert_eq!(m.known("a").map(|k| k.digest), Some(d));
        assert_eq!(m.known("b"), None);
    }
}
