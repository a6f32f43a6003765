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

use crate::core::plan::{self, Digest, Owned};
use crate::core::stamp::Stamp;
use crate::host::source::{self, Known};
use crate::host::state::{Manifest, Seen};

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

/// The last sync's record of the files it installed from a source it read
/// ([`Known`]).
pub(crate) fn known(manifest: &Manifest) -> BTreeMap<String, Known> {
    manifest
        .seen
        .iter()
        .filter(|(_, s)| s.size.is_some())
        .filter_map(|(name, seen)| {
            let owned = manifest.files.get(name)?;
            Some((
                name.clone(),
                Known {
                    digest: owned.digest,
                    seen: *seen,
                },
            ))
        })
        .collect()
}

/// What `scope` lets a scan take unread, over `known`.
pub(crate) fn reuse<'a>(scope: &'a Scope, known: &'a BTreeMap<String, Known>) -> source::Reuse<'a> {
    match scope {
        Scope::Full => source::Reuse::Nothing,
        Scope::Stamped => source::Reuse::Stamped(known),
        Scope::Changed(changed) => source::Reuse::Unchanged { known, changed },
    }
}

/// What this sync saw, to record in the manifest it saves.
#[derive(Debug, Default)]
pub(crate) struct Seeing {
    /// Source files ready with this digest, not held: what was seen of them.
    pub(crate) source: BTreeMap<String, (Digest, Seen)>,
    /// Installed copies holding this digest, and their stamps.
    pub(crate) dest: BTreeMap<String, (Stamp, Digest)>,
}

impl Seeing {
    /// From a scan: its ready files that were not held.
    pub(crate) fn of_scan(scan: &source::SourceScan, held: &BTreeSet<String>) -> Seeing {
        let source = scan
            .view
            .files
            .iter()
            .filter(|(name, _)| !held.contains(*name))
            .filter_map(|(name, f)| match f {
                plan::SourceFile::Ready(d) => Some((name.clone(), (*d, *scan.seen.get(name)?))),
                plan::SourceFile::Skipped(_) => None,
            })
            .collect();
        Seeing {
            source,
            dest: BTreeMap::new(),
        }
    }

    /// The record for the files a manifest lists: each side only where
    /// what was seen holds the digest installed.
    pub(crate) fn for_files(&self, files: &BTreeMap<String, Owned>) -> BTreeMap<String, Seen> {
        files
            .iter()
            .filter_map(|(name, o)| {
                let src = self.source.get(name).filter(|(d, _)| *d == o.digest);
                let dest = self.dest.get(name).filter(|(_, d)| *d == o.digest);
                let seen = Seen {
                    size: src.and_then(|(_, s)| s.size),
                    source: src.and_then(|(_, s)| s.source),
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
    /// with other content (a failed replace keeps the old copy) or an
    /// installed copy seen before its replacement records nothing.
    #[test]
    fn only_what_holds_the_installed_digest_is_recorded() {
        let (old, new) = (Digest::of(b"old"), Digest::of(b"new"));
        let seen = |size| Seen {
            size: Some(size),
            source: Some(stamp(7)),
            dest: None,
        };
        let mut s = Seeing::default();
        s.source.insert("same.rules".into(), (old, seen(3)));
        s.source.insert("failed.rules".into(), (new, seen(3)));
        s.dest.insert("same.rules".into(), (stamp(9), old));
        s.dest.insert("replaced.rules".into(), (stamp(9), old));
        let files: BTreeMap<String, Owned> = [
            ("same.rules".to_string(), owned(old)),
            ("failed.rules".to_string(), owned(old)),
            ("replaced.rules".to_string(), owned(new)),
        ]
        .into();
        let out = s.for_files(&files);
        assert_eq!(
            out.get("same.rules"),
            Some(&Seen {
                size: Some(3),
                source: Some(stamp(7)),
                dest: Some(stamp(9)),
            })
        );
        assert_eq!(out.get("failed.rules"), None);
        assert_eq!(out.get("replaced.rules"), None);
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
        let k = known(&m);
        assert_eq!(k.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(k["a"].digest, d);
    }
}
