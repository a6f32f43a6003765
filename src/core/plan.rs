//! The sync planner: a pure diff of what the source offers, what hostbridge
//! owns (its manifest) and what the destination holds, into file operations.
//!
//! Rules, in the spirit of bootupd's "touch nothing you don't own":
//! - a valid source file whose content or mode differs from the destination
//!   is installed or replaced; identical content and mode write nothing;
//! - a destination file of the same name that hostbridge never installed is
//!   a conflict: reported, never overwritten;
//! - a source file that is skipped (unsafe, unreadable, still being written)
//!   never removes or changes the last good installed copy;
//! - with `prune`, an owned file whose source name is gone is removed, but
//!   only while the source directory itself exists: a vanished export dir
//!   (container restarting) is "no information", not "delete everything".

use std::collections::BTreeMap;
use std::fmt;

/// SHA-256 of a file's content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Digest(pub [u8; 32]);

impl Digest {
    /// The SHA-256 of `bytes`.
    pub(crate) fn of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest(sha2::Sha256::digest(bytes).into())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Digest {
    /// The 64 lowercase hex digits, without formatting machinery (the
    /// manifest writes one a line).
    pub(crate) fn hex(&self) -> [u8; 64] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = HEX[usize::from(b >> 4)];
            out[2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        out
    }

    /// From 64 lowercase hex digits, as [`Digest::hex`] writes them.
    pub(crate) fn from_hex(s: &[u8]) -> Option<Digest> {
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let pairs = s.as_chunks::<2>();
        if s.len() != 64 || !pairs.1.is_empty() {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, [hi, lo]) in out.iter_mut().zip(pairs.0) {
            *byte = nibble(*hi)? << 4 | nibble(*lo)?;
        }
        Some(Digest(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.hex()).map_err(|_| fmt::Error)?)
    }
}

impl std::str::FromStr for Digest {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::from_hex(s.to_ascii_lowercase().as_bytes()).ok_or("a digest is 64 hex digits")
    }
}

/// One source entry as read by the host layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SourceFile {
    /// A regular file within limits, with its content digest.
    Ready(Digest),
    /// Present but not usable; the reason names what is wrong.
    Skipped(String),
}

/// The source directory as read by the host layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SourceView {
    /// Whether the source directory exists (and could be opened).
    pub(crate) present: bool,
    /// Candidate names (already filtered by [`crate::core::names`]).
    pub(crate) files: BTreeMap<String, SourceFile>,
}

/// What hostbridge recorded installing under a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owned {
    /// Digest of the content installed.
    pub(crate) digest: Digest,
    /// Permission bits installed.
    pub(crate) mode: u32,
    /// Owner uid hostbridge set (`None`: the config named none).
    pub(crate) uid: Option<u32>,
    /// Group gid hostbridge set (`None`: the config named none).
    pub(crate) gid: Option<u32>,
}

/// A destination entry as seen by the host layer (without following links).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DestFile {
    /// Nothing under that name.
    Absent,
    /// A regular file; `digest` is `None` when it was too large to hash.
    File {
        /// Content digest, if hashed.
        digest: Option<Digest>,
        /// Permission bits.
        mode: u32,
        /// Owner uid.
        uid: u32,
        /// Group gid.
        gid: u32,
    },
    /// Something else (symlink, directory, device…), described for humans.
    Other(&'static str),
}

/// Per-bridge settings the planner needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Desired {
    /// Permission bits of installed files.
    pub(crate) mode: u32,
    /// Remove owned files whose source is gone.
    pub(crate) prune: bool,
    /// The source dir was just (re)created and holds nothing yet: its
    /// absences prune nothing for now ([`crate::core::grace`]).
    pub(crate) wait_for_content: bool,
    /// Owner uid of installed files, if the bridge sets one.
    pub(crate) uid: Option<u32>,
    /// Group gid of installed files, if the bridge sets one.
    pub(crate) gid: Option<u32>,
}

impl Desired {
    /// Whether an installed copy with these permission bits, owner and
    /// group, installed under the owner settings `installed_with` (the
    /// manifest's uid and gid), is what the bridge wants now: a changed
    /// mode or `owner:`/`group:` re-installs, and so does dropping one (the
    /// file goes back to root's).
    pub(crate) fn wants_copy(
        &self,
        (mode, uid, gid): (u32, u32, u32),
        installed_with: (Option<u32>, Option<u32>),
    ) -> bool {
        mode == self.mode
            && self.uid.is_none_or(|u| u == uid)
            && self.gid.is_none_or(|g| g == gid)
            && installed_with == (self.uid, self.gid)
    }
}

/// A change to make in the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Write a file that is not there (new, or an owned file someone removed).
    Install {
        /// Destination file name.
        name: String,
        /// Digest of the content to write.
        digest: Digest,
    },
    /// Overwrite an owned file whose content or mode differs.
    Replace {
        /// Destination file name.
        name: String,
        /// Digest of the content to write.
        digest: Digest,
    },
    /// Remove an owned file whose source is gone.
    Prune {
        /// Destination file name.
        name: String,
    },
}

impl Op {
    /// The destination file name this operation concerns.
    pub(crate) fn name(&self) -> &str {
        match self {
            Op::Install { name, .. } | Op::Replace { name, .. } | Op::Prune { name } => name,
        }
    }
}

/// The outcome of planning: operations plus everything worth reporting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// File operations, in name order.
    pub(crate) ops: Vec<Op>,
    /// How many names have their installed copy already matching.
    pub(crate) unchanged: usize,
    /// Source entries skipped, with the reason (an installed copy, if any, stays).
    pub(crate) skipped: Vec<(String, String)>,
    /// Names hostbridge will not touch because it does not own them.
    pub(crate) conflicts: Vec<(String, String)>,
    /// Owned files kept although their source is gone, with the reason.
    pub(crate) kept: Vec<(String, String)>,
    /// The manifest after the operations succeed.
    pub(crate) owned_after: BTreeMap<String, Owned>,
    /// Whether a prune was held back because the source dir is new and
    /// empty ([`Desired::wait_for_content`]).
    pub(crate) prune_held: bool,
}

impl Plan {
    /// Whether applying this plan changes the destination.
    pub(crate) fn changes(&self) -> bool {
        !self.ops.is_empty()
    }

    /// Takes `name`'s operation out of the plan: the destination keeps what
    /// it has, and the manifest after says what that is (`before`: what
    /// hostbridge had installed under the name, if anything).
    pub(crate) fn hold(&mut self, name: &str, before: Option<Owned>) {
        self.ops.retain(|op| op.name() != name);
        match before {
            Some(o) => self.owned_after.insert(name.to_string(), o),
            None => self.owned_after.remove(name),
        };
    }
}

/// Plans one sync. `dest` must describe every name in the source and in
/// `owned`; a missing entry is treated as [`DestFile::Absent`].
pub(crate) fn plan(
    source: &SourceView,
    owned: &BTreeMap<String, Owned>,
    dest: &BTreeMap<String, DestFile>,
    desired: Desired,
) -> Plan {
    let mut p = Plan {
        owned_after: owned.clone(),
        ..Plan::default()
    };
    // All three maps are in name order: one merged walk, no lookups.
    let (mut src, mut own, mut dst) = (
        source.files.iter().peekable(),
        owned.iter().peekable(),
        dest.iter().peekable(),
    );
    for name in union(source.files.keys(), owned.keys()) {
        let d = at(&mut dst, name).unwrap_or(&DestFile::Absent);
        let owned_here = at(&mut own, name);
        match at(&mut src, name) {
            Some(SourceFile::Ready(digest)) => {
                plan_ready(&mut p, name, *digest, owned_here, d, desired)
            }
            Some(SourceFile::Skipped(why)) => p.skipped.push((name.clone(), why.clone())),
            None => plan_gone(&mut p, name, source.present, d, desired),
        }
    }
    p
}

/// The value under `name` in a map walked in name order, `it` left past
/// every smaller name (names are asked for in increasing order).
pub(crate) fn at<'m, V>(
    it: &mut std::iter::Peekable<std::collections::btree_map::Iter<'m, String, V>>,
    name: &str,
) -> Option<&'m V> {
    while it.next_if(|(k, _)| k.as_str() < name).is_some() {}
    it.next_if(|(k, _)| k.as_str() == name).map(|(_, v)| v)
}

/// The names of two sorted key lists, each once, in order: a merge, not a
/// set built anew (a plan walks every name the source or manifest has).
pub(crate) fn union<'a>(
    a: impl Iterator<Item = &'a String>,
    b: impl Iterator<Item = &'a String>,
) -> impl Iterator<Item = &'a String> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x < y => a.next(),
        (Some(x), Some(y)) if x > y => b.next(),
        (Some(_), Some(_)) => {
            b.next();
            a.next()
        }
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

fn plan_ready(
    p: &mut Plan,
    name: &str,
    digest: Digest,
    owned: Option<&Owned>,
    d: &DestFile,
    want: Desired,
) {
    let entry = Owned {
        digest,
        mode: want.mode,
        uid: want.uid,
        gid: want.gid,
    };
    match (owned, d) {
        (_, DestFile::Other(what)) => {
            p.conflicts
                .push((name.into(), format!("destination is {what}")));
            return;
        }
        (None, DestFile::File { .. }) => {
            p.conflicts.push((
                name.into(),
                "destination file was not installed by hostbridge".into(),
            ));
            return;
        }
        (_, DestFile::Absent) => p.ops.push(Op::Install {
            name: name.into(),
            digest,
        }),
        (
            Some(owned),
            DestFile::File {
                digest: have,
                mode,
                uid,
                gid,
            },
        ) => {
            if *have == Some(digest) && want.wants_copy((*mode, *uid, *gid), (owned.uid, owned.gid))
            {
                p.unchanged += 1;
                // The manifest entry stands as it is (most names, most syncs).
                if *owned == entry {
                    return;
                }
            } else {
                p.ops.push(Op::Replace {
                    name: name.into(),
                    digest,
                });
            }
        }
    }
    p.owned_after.insert(name.into(), entry);
}

fn plan_gone(p: &mut Plan, name: &str, source_present: bool, d: &DestFile, want: Desired) {
    if !want.prune {
        p.kept
            .push((name.into(), "source removed; prune is off".into()));
    } else if !source_present {
        p.kept.push((
            name.into(),
            "source directory is missing; keeping installed copy".into(),
        ));
    } else if want.wait_for_content {
        p.kept.push((
            name.into(),
            "the source dir was just recreated and is empty; pruning waits for its content or prune_grace".into(),
        ));
        p.prune_held = true;
    } else {
        match d {
            DestFile::File { .. } => p.ops.push(Op::Prune { name: name.into() }),
            // Already gone, or replaced by something we do not own: forget it.
            DestFile::Absent | DestFile::Other(_) => {}
        }
        p.owned_after.remove(name);
    }
}

#[cfg(test)]
mod tests;
