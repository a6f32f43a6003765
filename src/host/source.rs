//! Reads a bridge's source directory safely. Host layer.
//!
//! The source dir is written by a container, so every entry is hostile until
//! proven otherwise:
//! - the dir is opened one component at a time with no symlink followed at
//!   any of them ([`fsx::open_dir_strict`]), so renaming an ancestor and
//!   leaving a symlink in its place points us nowhere;
//! - an entry is opened as an `O_PATH` descriptor first (nothing is opened
//!   for real, so a device node swapped in under its name is never opened),
//!   `fstat`'d, and only a regular file with one link (a hard link could be
//!   any file of the same filesystem) and, where the bridge says so, an
//!   allowed owner is reopened for reading, non-blocking and without a
//!   controlling terminal;
//! - reads are capped at the bridge's `max_file_size`.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::AtFlags;
use nix::sys::stat::{FileStat, fstat, fstatat};

use super::fsx;
use super::lease::{self, Lease};
use super::state::format::{self, Expect, Record, Records, StampText};
use super::state::{Known, Manifest, Seen};
use crate::core::budget::{Budget, Limits, claim_order};
use crate::core::names::{NameVerdict, candidate, classify};
use crate::core::plan::{Digest, SourceFile, SourceView};
use crate::core::stamp::{self, Stamp};

/// What a scan of the source found.
#[derive(Debug, Default)]
pub(crate) struct SourceScan {
    /// The planner's view: candidate names and their digests or skip reasons.
    pub(crate) view: SourceView,
    /// Entries whose names were rejected (not even candidates), with reasons.
    pub(crate) rejected: Vec<(String, String)>,
    /// New files past the bridge's `max_files`/`max_bytes`: not read, not
    /// in the view (they are not installed, so nothing changes for them);
    /// how many, the first few names, and why.
    pub(crate) over_budget: Option<OverBudget>,
    /// Set when the dir held more entries than a scan lists
    /// ([`listing_cap`]): the listing stopped, nothing was read, and the
    /// view is "no information" (nothing installed, nothing pruned).
    pub(crate) overflow: Option<String>,
    /// The bytes to install of the ready files the caller asked to keep
    /// ([`ScanSpec::keep`]): the source's bytes, or the form `accept`
    /// rewrote them to (the canonical form of a udev rules file, whose
    /// digest is then the view's). Installing these is installing exactly
    /// what was judged, without reading the source again.
    pub(crate) content: BTreeMap<String, Vec<u8>>,
    /// Files skipped for what may pass by itself (I/O errors, races).
    pub(crate) transient: Transient,
    /// What the scan saw of each ready file: read now, or taken from the
    /// last sync ([`Reuse`]). The next sync's [`Known`] comes from this
    /// (the `dest` side is the sync's to fill in).
    pub(crate) seen: BTreeMap<String, Seen>,
    /// Ready files taken from the last sync without being read: their
    /// bytes are not in `content`.
    pub(crate) reused: BTreeSet<String>,
    /// The dir's stamp just before it was listed, when settled: what
    /// [`crate::host::state::Manifest::listing`] records of a complete sync.
    pub(crate) listing: Option<Stamp>,
}

/// Which files a scan may take from the last sync instead of reading them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reuse<'a> {
    /// None: every file is read (startup, a rescan, `sync --full`).
    Nothing,
    /// A file whose stamp is the one recorded when it was read, settled
    /// ([`crate::core::stamp`]): one `fstatat` instead of a read (`sync`).
    Stamped(&'a Manifest),
    /// A file whose name is not in `changed`, without looking at it: the
    /// daemon's watch saw every change since the last sync, and `changed`
    /// holds every name it saw (an overflow or a lost watch is a rescan,
    /// which reads everything).
    Unchanged {
        /// What the last sync saw.
        known: &'a Manifest,
        /// The names the watch saw change since.
        changed: &'a BTreeSet<String>,
    },
}

/// Files a scan skipped for a passing reason, not a verdict.
#[derive(Debug, Default)]
pub(crate) struct Transient {
    /// Could not be read ([`Skip::Unreadable`]): the sync is tried again.
    pub(crate) unreadable: BTreeSet<String>,
    /// Vanished while read ([`Skip::Vanished`]): a race, not a fault; the
    /// event that removed it opens the next window.
    pub(crate) vanished: BTreeSet<String>,
    /// Modified moments before it was read ([`Skip::Recent`]): held, and
    /// looked at again once quiet.
    pub(crate) recent: BTreeSet<String>,
    /// Open for writing by another process ([`Skip::Writing`]): held; its
    /// writer's close opens the next window, and the daemon looks again
    /// with backoff for the holds no close ends
    /// ([`crate::core::retry::OpenRecheck`]).
    pub(crate) writing: BTreeSet<String>,
}

/// New files a scan left out for the bridge's bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OverBudget {
    /// How many.
    pub(crate) count: usize,
    /// The first few, in claim order.
    pub(crate) first: Vec<String>,
    /// Why (the first refusal's words).
    pub(crate) why: String,
}

impl OverBudget {
    /// One report entry for them all: (names, reason).
    pub(crate) fn entry(&self) -> (String, String) {
        let more = self.count - self.first.len();
        let names = if more == 0 {
            self.first.join(", ")
        } else {
            format!("{} and {more} more", self.first.join(", "))
        };
        (names, self.why.clone())
    }
}

/// Names listed one by one in a scan's rejections and bounds; the rest are
/// counted, so a flood of names is one log line, not one per name.
const LISTED: usize = 20;

/// What makes a source file admissible, besides being a regular file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Admit {
    /// Largest file read, in bytes (`max_file_size`).
    pub(crate) max_size: u64,
    /// Owners a file may have (`source_owner`); `None`: any.
    pub(crate) owners: Option<Vec<u32>>,
    /// A file modified less than this before it is read is not taken yet
    /// ([`Skip::Recent`]): its writes may have come while no watch saw them
    /// (a source dir recreated and written before its new watch was
    /// placed), so only its own time says it has been quiet. `None`: any.
    pub(crate) quiet_for: Option<std::time::Duration>,
}

impl Admit {
    /// Why a file with this stat result may not be read, if it may not.
    fn refuse(&self, st: &FileStat) -> Option<String> {
        if let Some(kind) = fsx::odd_kind(st) {
            return Some(format!("is {kind}; only regular files are synced"));
        }
        if st.st_nlink > 1 {
            return Some(format!(
                "has {} hard links; refusing it (a hard link can be any file of the same filesystem, not the container's own)",
                st.st_nlink
            ));
        }
        if let Some(owners) = &self.owners
            && !owners.contains(&st.st_uid)
        {
            return Some(format!(
                "is owned by uid {}, not one of source_owner {owners:?}; refusing it",
                st.st_uid
            ));
        }
        if st.st_size as u64 > self.max_size {
            return Some(too_big(st.st_size as u64, self.max_size));
        }
        None
    }
}

/// Opens a source dir: no symlink at any component ([`fsx::open_dir_strict`]).
pub(crate) fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    fsx::open_dir_strict(dir)
}

/// Decides whether a readable file may be synced: `Err(reason)` skips it,
/// `Ok(Some(bytes))` installs `bytes` in its place. Called with the name
/// and the content.
pub(crate) type Accept<'a> = dyn FnMut(&str, &[u8]) -> Result<Option<Vec<u8>>, String> + 'a;

/// Which bytes a scan keeps: `keep(name, digest)` for a ready file, with
/// the digest of the bytes to install.
pub(crate) type Keep<'a> = dyn Fn(&str, &Digest) -> bool + 'a;

/// What a scan reads and how much.
pub(crate) struct ScanSpec<'a> {
    /// The bridge's `include` globs.
    pub(crate) include: &'a [String],
    /// What a file must be to be read.
    pub(crate) admit: &'a Admit,
    /// The bridge's export bounds.
    pub(crate) limits: Limits,
    /// Names installed now: they claim places in the budget first.
    pub(crate) installed: &'a BTreeSet<String>,
    /// Names a writer is still on (skipped, their installed copy kept).
    pub(crate) still_open: &'a BTreeSet<String>,
    /// Which ready files' bytes to keep in [`SourceScan::content`].
    pub(crate) keep: &'a Keep<'a>,
    /// Which files may be taken from the last sync unread.
    pub(crate) reuse: Reuse<'a>,
    /// Names always read, whatever `reuse` says (the TLS pair: its check
    /// needs the bytes).
    pub(crate) always_read: &'a [&'a str],
}

/// Scans `dir`, reading each admitted file once. Names in
/// `spec.still_open` are reported as skipped (a writer is still on them);
/// `accept` vets each readable file. At most `limits.max_files` files and
/// `limits.max_bytes` bytes are read, the `installed` ones first
/// ([`crate::core::budget`]). A missing dir gives `present: false`, not an
/// error.
pub(crate) fn scan(
    dir: &Path,
    spec: &ScanSpec<'_>,
    accept: &mut Accept<'_>,
) -> io::Result<SourceScan> {
    let ScanSpec {
        include,
        admit,
        limits,
        installed,
        still_open,
        keep,
        reuse,
        always_read,
    } = *spec;
    // What "settled" is measured against: no later than any read below.
    let read_at = super::clock::unix_now_ns();
    let dirfd = match open_dir(dir) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => return Ok(SourceScan::default()),
        Err(e) => return Err(e),
    };
    // Taken before the listing: a change of names after it changes the
    // dir's change time, so this stamp never stands for a later listing.
    let listing = fstat(&dirfd)
        .ok()
        .map(|st| stamp_of(&st))
        .filter(|st| stamp::settled(st, read_at) && stands_for_names(&dirfd, st));
    let cap = listing_cap(limits);
    let Some((candidates, rejected)) = list(&dirfd, include, cap)? else {
        // A flood: listing (and sorting) it all at every event is the cost
        // a container must not impose. Change nothing until it is back
        // under the cap.
        return Ok(SourceScan {
            overflow: Some(format!(
                "the source holds more than {cap} entries (max_files is {}); nothing is read or changed until it holds fewer",
                limits.max_files
            )),
            ..SourceScan::default()
        });
    };
    let mut out = SourceScan {
        view: SourceView {
            present: true,
            files: BTreeMap::new(),
        },
        rejected,
        listing,
        ..SourceScan::default()
    };
    let mut budget = Budget::new(limits);
    // Collected in claim order (two runs, each in name order), then built
    // in bulk: the sort finds the runs and merges them.
    let (mut files, mut seen_v, mut reused_v, mut content) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for name in claim_order(&candidates, installed) {
        let reused = (!still_open.contains(name) && !always_read.contains(&name))
            .then(|| reusable(&dirfd, name, admit, reuse))
            .flatten();
        let state = if still_open.contains(name) {
            SourceFile::Skipped("still being written when max_wait expired".into())
        } else if let Some(known) = reused {
            match budget
                .take_file()
                .and_then(|()| budget.take_bytes(known.seen.size.unwrap_or(0)))
            {
                Ok(()) => {
                    seen_v.push((name.to_string(), known.seen));
                    reused_v.push(name.to_string());
                    SourceFile::Ready(known.digest)
                }
                // Past the budget (lowered by a reload): as for a read file.
                Err(why) if installed.contains(name) => SourceFile::Skipped(why),
                Err(why) => {
                    over_budget(&mut out.over_budget, name, why);
                    continue;
                }
            }
        } else {
            let entry = Entry::At(&dirfd);
            match judge(entry, name, admit, &mut budget, accept, &mut out.transient)? {
                Ok((SourceFile::Ready(digest), Some((bytes, st)))) => {
                    let seen = Seen {
                        size: Some(st.size),
                        source: stamp::settled(&st, read_at).then_some(st),
                        dest: None,
                    };
                    seen_v.push((name.to_string(), seen));
                    if keep(name, &digest) {
                        content.push((name.to_string(), bytes));
                    }
                    SourceFile::Ready(digest)
                }
                Ok((state, _)) => state,
                // Past the budget, an installed file keeps its copy
                // (skipped); a new one is left out of the view altogether.
                Err(why) if installed.contains(name) => SourceFile::Skipped(why),
                Err(why) => {
                    over_budget(&mut out.over_budget, name, why);
                    continue;
                }
            }
        };
        files.push((name.to_string(), state));
    }
    out.view.files = files.into_iter().collect();
    out.seen = seen_v.into_iter().collect();
    out.reused = reused_v.into_iter().collect();
    out.content = content.into_iter().collect();
    Ok(out)
}

/// The daemon's scan of only the names its watch saw change (`changed`),
/// for a bridge whose last sync found the source as its manifest (`known`,
/// with `recorded`, the sum of the sizes it records of every file)
/// records it: every candidate installed and known, nothing refused or
/// left out ([`Manifest::complete`]). The candidates are then `known`'s
/// files and the changed names, so nothing is listed and no other file is
/// looked at: the unchanged files take their places in the budget as
/// recorded, and each changed name is judged as [`scan`] judges it, or is
/// gone. The view holds the changed names only.
///
/// `None` when a changed name is anything but a file to install, replace
/// or remove (a rejected name, one still being written, one past the
/// budget, refused, unreadable, vanished or changed while read, written
/// moments ago), or when the source dir cannot be opened: [`scan`] then
/// says what it is, as it would have without this one.
pub(crate) fn scan_changed(
    dir: &Path,
    changed: &BTreeSet<String>,
    (known, recorded): (&Manifest, u64),
    spec: &ScanSpec<'_>,
    accept: &mut Accept<'_>,
) -> io::Result<Option<SourceScan>> {
    let read_at = super::clock::unix_now_ns();
    if changed.len() > listing_cap(spec.limits) || !spec.always_read.is_empty() {
        return Ok(None);
    }
    let Ok(dirfd) = open_dir(dir) else {
        return Ok(None);
    };
    let mut budget = Budget::new(spec.limits);
    // The unchanged files take their places as the last sync recorded
    // them: the manifest's files and the bytes recorded for them
    // (`recorded`, every file's size summed by the caller), less the
    // changed names' (judged below).
    let (mut files, mut bytes) = (known.files.len(), recorded);
    for name in changed.iter().filter(|n| known.files.contains_key(*n)) {
        let Some(size) = known.seen.get(name).and_then(|s| s.size) else {
            return Ok(None);
        };
        files -= 1;
        bytes = bytes.saturating_sub(size);
    }
    if !budget.take_recorded(files, bytes) {
        return Ok(None);
    }
    let mut out = SourceScan {
        view: SourceView {
            present: true,
            files: BTreeMap::new(),
        },
        ..SourceScan::default()
    };
    let installed = changed.iter().filter(|n| known.files.contains_key(*n));
    let new = changed.iter().filter(|n| !known.files.contains_key(*n));
    for name in installed.chain(new) {
        // A name that is not UTF-8 reaches the daemon with U+FFFD in its
        // place: the listing says what it is.
        if name.contains(char::REPLACEMENT_CHARACTER) {
            return Ok(None);
        }
        match classify(name.as_bytes(), spec.include) {
            NameVerdict::Candidate => {}
            // Never installed (the include is among the checks the
            // manifest was made under): nothing to do.
            NameVerdict::NotIncluded | NameVerdict::Hidden if !known.files.contains_key(name) => {
                continue;
            }
            _ => return Ok(None),
        }
        if spec.still_open.contains(name) {
            return Ok(None);
        }
        // Opened once, to know whether it is there and to read it.
        let opened = match fsx::open_path_at(&dirfd, name) {
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => continue, // removed
            Err(_) => return Ok(None),
            Ok(fd) => Entry::Opened(fd),
        };
        let judged = judge(
            opened,
            name,
            spec.admit,
            &mut budget,
            accept,
            &mut out.transient,
        )?;
        let Ok((SourceFile::Ready(digest), Some((bytes, st)))) = judged else {
            return Ok(None);
        };
        let seen = Seen {
            size: Some(st.size),
            source: stamp::settled(&st, read_at).then_some(st),
            dest: None,
        };
        out.seen.insert(name.clone(), seen);
        if (spec.keep)(name, &digest) {
            out.content.insert(name.clone(), bytes);
        }
        out.view
            .files
            .insert(name.clone(), SourceFile::Ready(digest));
    }
    Ok(Some(out))
}

/// Whether the source and the destination hold exactly what `records`
/// says the last sync saw: the source lists no candidate but the files it
/// records and no rejected name, each file is admitted with the stamp
/// recorded when it was read (settled, [`crate::core::stamp`]) and fits the
/// budget, each installed copy has the stamp recorded for it, and
/// `wanted` takes each record. `Some(count)` then; `None` at the first
/// difference. One listing and a stat of each name on each side; nothing is
/// read. A sync that finds this has nothing to change: what a scan in
/// [`Reuse::Stamped`] and the plan would conclude, without building either.
pub(crate) fn as_recorded(
    dir: &Path,
    dest: &super::dest::DestDir,
    spec: &RecordedSpec<'_>,
    mut records: Records<'_>,
    listing: Option<(Stamp, u64)>,
) -> io::Result<Option<usize>> {
    let dirfd = match open_dir(dir) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    // The names in one buffer, each a span of it ending in a NUL (a stat
    // takes it as it is): no allocation and no copy a name.
    let (mut text, mut spans) = (Vec::new(), Vec::new());
    // The dir as it was when its candidates were exactly the files
    // recorded (none rejected): the names are the manifest's, in its order
    // (and the ones the line was written with).
    let unchanged = listing.is_some_and(|(was, names)| {
        fstat(&dirfd).is_ok_and(|st| stamp_of(&st) == was)
            && records.names(&mut |name| push_name(&mut text, &mut spans, name))
            && format::joined_names_sum(&text) == names
    });
    if !unchanged {
        text.clear();
        spans.clear();
        let listed = list_into(
            &dirfd,
            spec.include,
            listing_cap(spec.limits),
            &mut |name| push_name(&mut text, &mut spans, name.as_bytes()),
        )?;
        if listed.is_none_or(|rejected| !rejected.is_empty()) {
            return Ok(None);
        }
    }
    let at = |&(start, len): &(usize, usize)| &text[start..=start + len];
    let names: Vec<&CStr> = if unchanged {
        // In name order already: the manifest is written in it.
        spans
            .iter()
            .filter_map(|s| CStr::from_bytes_with_nul(at(s)).ok())
            .collect()
    } else {
        sorted(&spans, at)
    };
    if names.len() != spans.len() {
        return Ok(None);
    }
    // The stats of both sides are the cost of this path: the names and the
    // manifest's lines are cut in two at one name, and each half is looked
    // at on its own thread. Every name must still meet its own line, and
    // every line a name, as in one walk.
    let (first, second) = match records.split() {
        Some((rest, name)) => {
            let cut = names.partition_point(|n| n.to_bytes() < name);
            if names.get(cut).is_none_or(|n| n.to_bytes() != name) {
                return Ok(None);
            }
            let (a, b) = names.split_at(cut);
            ((a, records), Some((b, rest)))
        }
        None => ((&names[..], records), None),
    };
    let walk = |(names, records)| recorded_half(&dirfd, dest, spec, names, records);
    let (a, b) = std::thread::scope(|scope| {
        let b = second.map(|half| scope.spawn(|| walk(half)));
        let a = walk(first);
        (a, b.map(|b| b.join().ok().flatten()))
    });
    let (Some((files, bytes)), Some((more_files, more_bytes))) = (a, b.unwrap_or(Some((0, 0))))
    else {
        return Ok(None);
    };
    // The budget taken by the whole, as a walk in one piece would.
    let (files, bytes) = (files + more_files, bytes.checked_add(more_bytes));
    let fits = bytes.is_some_and(|b| Budget::new(spec.limits).take_recorded(files, b));
    Ok(fits.then_some(files))
}

/// Whether a dir's stamp `st` may stand for its names: its times have a
/// grain finer than a second (a file system that keeps whole seconds, or
/// two, as vfat does, could take a new name within the second of the
/// stamp), and the file system is a local one whose times come from this
/// host's clock (a network file system's come from its server's, and
/// FUSE's or 9p's may be cached apart from the listing). Elsewhere the
/// source is listed every time.
fn stands_for_names(dirfd: &OwnedFd, st: &Stamp) -> bool {
    use nix::sys::statfs::{
        BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, OVERLAYFS_SUPER_MAGIC, TMPFS_MAGIC, XFS_SUPER_MAGIC,
        fstatfs,
    };
    const SECOND: i64 = 1_000_000_000;
    let fine = st.mtime_ns % SECOND != 0 && st.ctime_ns % SECOND != 0;
    let local = [
        TMPFS_MAGIC,
        EXT4_SUPER_MAGIC,
        XFS_SUPER_MAGIC,
        BTRFS_SUPER_MAGIC,
        OVERLAYFS_SUPER_MAGIC,
    ];
    fine && fstatfs(dirfd).is_ok_and(|fs| local.contains(&fs.filesystem_type()))
}

/// Adds `name` to `text`, NUL-terminated, and its span to `spans`.
fn push_name(text: &mut Vec<u8>, spans: &mut Vec<(usize, usize)>, name: &[u8]) {
    spans.push((text.len(), name.len()));
    text.extend_from_slice(name);
    text.push(0);
}

/// The names at `spans` (of a listing) in name order, as [`CStr`]s.
/// Sorted by each name's first 8 bytes as a number (zero-padded: a
/// shorter name comes first, as in name order), then by the whole name:
/// most comparisons are of two integers (ext4 lists in hash order, so this
/// sort is real work). A stable sort finds the runs a listing often is
/// (tmpfs lists newest first) and merges them. The NUL ends every name, so
/// it orders a name before the longer ones it begins.
fn sorted<'t>(spans: &[(usize, usize)], at: impl Fn(&(usize, usize)) -> &'t [u8]) -> Vec<&'t CStr> {
    let prefix = |span: &(usize, usize)| {
        let mut key = [0u8; 8];
        let name = &at(span)[..span.1];
        let n = name.len().min(8);
        key[..n].copy_from_slice(&name[..n]);
        u64::from_be_bytes(key)
    };
    let mut keyed: Vec<(u64, (usize, usize))> = spans.iter().map(|s| (prefix(s), *s)).collect();
    keyed.sort_by(|(ka, a), (kb, b)| ka.cmp(kb).then_with(|| at(a).cmp(at(b))));
    keyed
        .iter()
        .filter_map(|(_, s)| CStr::from_bytes_with_nul(at(s)).ok())
        .collect()
}

/// [`as_recorded`] for `names` against `records` (the same part of the
/// name order): each name's stats on both sides compared with its line, as
/// written. The count of files and their recorded bytes when every name
/// meets its line and every line a name; `None` at the first difference.
fn recorded_half(
    dirfd: &OwnedFd,
    dest: &super::dest::DestDir,
    spec: &RecordedSpec<'_>,
    names: &[&CStr],
    mut records: Records<'_>,
) -> Option<(usize, u64)> {
    // The manifest's lines are compared with the text of each stamp, made
    // in these two buffers.
    let (mut source_text, mut installed_text) = (StampText::empty(), StampText::empty());
    let mut bytes = 0u64;
    for name in names {
        // Each stat result taken where it lies: moved through `Option`
        // adapters it is copied at each step in a build for size.
        let st = fstatat(dirfd, *name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        if spec.admit.refuse(&st).is_some() {
            return None;
        }
        let source = stamp_of(&st);
        let installed = dest.stamp(*name)?;
        source_text.set(&source);
        installed_text.set(&installed);
        let expect = Expect {
            name: name.to_bytes(),
            source: source_text.as_bytes(),
            dest: installed_text.as_bytes(),
        };
        let r = records.next_as(&expect)?;
        if !(spec.wanted)(&r, &installed) {
            return None;
        }
        bytes = bytes.checked_add(r.size?)?;
    }
    // No file recorded that the source no longer lists.
    records.at_end().then_some((names.len(), bytes))
}

/// What [`as_recorded`] takes besides the records.
pub(crate) struct RecordedSpec<'a> {
    /// The bridge's `include` globs.
    pub(crate) include: &'a [String],
    /// What a file must be to be read.
    pub(crate) admit: &'a Admit,
    /// The bridge's export bounds.
    pub(crate) limits: Limits,
    /// Whether a record, and the installed copy's stamp now, are what the
    /// bridge installs today (its mode and owners).
    pub(crate) wanted: &'a (dyn Fn(&Record, &Stamp) -> bool + Sync),
}

/// A dir's candidate names, and its rejected names with why.
type Listing = (Vec<String>, Vec<(String, String)>);

/// The candidate names in the dir and the rejected ones (the first
/// [`LISTED`], then a count), or `None` when it holds more than `cap`
/// entries (the listing stops there).
fn list(dirfd: &OwnedFd, include: &[String], cap: usize) -> io::Result<Option<Listing>> {
    let mut candidates = Vec::new();
    let rejected = list_into(dirfd, include, cap, &mut |name| {
        candidates.push(name.to_owned());
    })?;
    Ok(rejected.map(|rejected| (candidates, rejected)))
}

/// [`list`], giving each candidate name to `take` as it is read (no
/// `String` each, where a caller keeps them otherwise); the rejected
/// names, or `None` past `cap` entries.
fn list_into(
    dirfd: &OwnedFd,
    include: &[String],
    cap: usize,
    take: &mut dyn FnMut(&str),
) -> io::Result<Option<Vec<(String, String)>>> {
    let mut rejected = Vec::new();
    let mut rejected_more = 0usize;
    // The entries are read in place from one buffer (no allocation an
    // entry), from the dir's start whatever read it before.
    rustix::fs::seek(dirfd, rustix::fs::SeekFrom::Start(0))?;
    let mut buf = Vec::with_capacity(32 * 1024);
    let mut listing = rustix::fs::RawDir::new(dirfd, buf.spare_capacity_mut());
    // `.` and `..` are among the entries read.
    let mut seen = 0usize;
    while let Some(entry) = listing.next() {
        if seen >= cap + 2 {
            return Ok(None);
        }
        seen += 1;
        let entry = entry?;
        let raw = entry.file_name().to_bytes();
        if raw == b"." || raw == b".." {
            continue;
        }
        match candidate(raw, include) {
            Ok(name) => take(name),
            Err(NameVerdict::NotIncluded | NameVerdict::Hidden) => {}
            Err(NameVerdict::Rejected(why)) if rejected.len() < LISTED => {
                let shown = std::ffi::OsStr::from_bytes(raw)
                    .to_string_lossy()
                    .into_owned();
                rejected.push((shown, why.to_string()));
            }
            Err(_) => rejected_more += 1,
        }
    }
    if rejected_more > 0 {
        rejected.push((
            format!("{rejected_more} more names"),
            "rejected as well (only the first are listed)".into(),
        ));
    }
    Ok(Some(rejected))
}

/// What the last sync saw of `name`, when `reuse` lets the scan take it
/// unread: its name not among the changed ones (the daemon), or a stat now
/// that gives the stamp recorded when it was read (settled), of a file
/// still admitted.
fn reusable(dirfd: &OwnedFd, name: &str, admit: &Admit, reuse: Reuse<'_>) -> Option<Known> {
    match reuse {
        Reuse::Nothing => None,
        Reuse::Unchanged { known, changed } if !changed.contains(name) => known.known(name),
        Reuse::Unchanged { .. } => None,
        Reuse::Stamped(known) => {
            let k = known.known(name)?;
            let recorded = k.seen.source?;
            let st = fstatat(dirfd, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
            (admit.refuse(&st).is_none() && stamp_of(&st) == recorded).then_some(k)
        }
    }
}

/// The [`Stamp`] of a stat result.
pub(crate) fn stamp_of(st: &FileStat) -> Stamp {
    // Nanoseconds since 1970 fit 64 bits until 2262 (saturating beyond).
    let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
    Stamp {
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size.max(0) as u64,
        mtime_ns: ns(st.st_mtime, st.st_mtime_nsec),
        ctime_ns: ns(st.st_ctime, st.st_ctime_nsec),
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
    }
}

/// One candidate judged: its state and, when ready, the bytes to install
/// with the stamp of the file they were read from.
type Judged = (SourceFile, Option<(Vec<u8>, Stamp)>);

/// How [`judge`] gets at a candidate.
enum Entry<'a> {
    /// By its name in this dir, opened once its place in the budget is
    /// taken (a flood of names past `max_files` costs a listing, not an
    /// open each).
    At(&'a OwnedFd),
    /// Already opened ([`fsx::open_path_at`]) by a caller that needed to
    /// know first whether the name is there.
    Opened(OwnedFd),
}

/// One candidate: its place in the budget, then its read and its vetting.
/// `Ok(Err(why))`: past the budget (not read, or read and refused for its
/// size); `Ok(Ok(judged))` otherwise; `Err`: an I/O failure of the scan.
fn judge(
    entry: Entry<'_>,
    name: &str,
    admit: &Admit,
    budget: &mut Budget,
    accept: &mut Accept<'_>,
    races: &mut Transient,
) -> io::Result<Result<Judged, String>> {
    if let Err(why) = budget.take_file() {
        return Ok(Err(why));
    }
    let opened = match entry {
        Entry::At(dirfd) => fsx::open_path_at(dirfd, name),
        Entry::Opened(fd) => Ok(fd),
    };
    let mut past_budget = None;
    let read = read_opened(opened, admit, &mut |size| {
        let fits = budget.precheck_bytes(size);
        past_budget = fits.clone().err();
        fits.is_ok()
    })?;
    if let Some(why) = past_budget {
        return Ok(Err(why));
    }
    let (digest, bytes, st) = match read {
        Ok(read) => read,
        Err(skip) => {
            match skip {
                Skip::Unreadable(_) => races.unreadable.insert(name.to_string()),
                Skip::Vanished | Skip::Changed => races.vanished.insert(name.to_string()),
                Skip::Recent => races.recent.insert(name.to_string()),
                Skip::Writing => races.writing.insert(name.to_string()),
                Skip::Refused(_) => false,
            };
            return Ok(Ok((SourceFile::Skipped(skip.why()), None)));
        }
    };
    if let Err(why) = budget.take_bytes(bytes.len() as u64) {
        return Ok(Err(why));
    }
    Ok(Ok(match accept(name, &bytes) {
        Ok(None) => (SourceFile::Ready(digest), Some((bytes, st))),
        Ok(Some(content)) => (
            SourceFile::Ready(fsx::digest(&content)),
            Some((content, st)),
        ),
        Err(why) => (SourceFile::Skipped(why), None),
    }))
}

/// How many directory entries a scan lists at most: four times
/// `max_files`, and never fewer than 1000 (room for temp files, hidden
/// names and names no pattern includes).
pub(crate) fn listing_cap(limits: Limits) -> usize {
    limits.max_files.saturating_mul(4).max(1000)
}

fn over_budget(slot: &mut Option<OverBudget>, name: &str, why: String) {
    let o = slot.get_or_insert_with(|| OverBudget {
        count: 0,
        first: Vec::new(),
        why,
    });
    o.count += 1;
    if o.first.len() < LISTED {
        o.first.push(name.to_string());
    }
}

/// Why an entry was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Skip {
    /// What it is breaks a rule (kind, links, owner, size): it stays so
    /// until the container changes it, which is an event.
    Refused(String),
    /// It could not be read (EIO, EACCES from a FUSE source, EMFILE…): may
    /// pass by itself, so the sync is tried again.
    Unreadable(String),
    /// It was deleted while the scan read it: a race, and its event opens
    /// the next window.
    Vanished,
    /// It changed while it was read, or between the scan and a second
    /// read for an install: a race, and its event opens the next window.
    Changed,
    /// It was modified less than `quiet_for` before it was read: taken
    /// once it has been quiet that long (the daemon looks again).
    Recent,
    /// Another process has it open for writing, or tried to open it so
    /// while it was read ([`lease`]): taken once the writer closes it (its
    /// close is the event; the daemon also looks again, with backoff, for
    /// the cases that send none).
    Writing,
}

impl Skip {
    /// The words for the report.
    pub(crate) fn why(&self) -> String {
        match self {
            Skip::Refused(why) | Skip::Unreadable(why) => why.clone(),
            Skip::Vanished => {
                "vanished while it was read (a race; the next sync sees what is there)".into()
            }
            Skip::Changed => {
                "changed while the sync ran (a race; the next sync installs it)".into()
            }
            Skip::Recent => {
                "written moments ago: taken once it has been quiet for the settle time".into()
            }
            Skip::Writing => {
                "open for writing by another process: taken once its writer closes it".into()
            }
        }
    }
}

/// Reads one entry: `Ok(Ok((digest, bytes)))` for a usable file,
/// `Ok(Err(skip))` for one that must be skipped, `Err` for I/O failures
/// that affect the whole scan.
pub(crate) fn read_entry(
    dirfd: &OwnedFd,
    name: &str,
    admit: &Admit,
) -> io::Result<Result<(Digest, Vec<u8>), Skip>> {
    Ok(read_stamped(dirfd, name, admit, &mut |_| true)?.map(|(d, b, _)| (d, b)))
}

/// A file read: its digest, its bytes, and its stamp.
type Read = (Digest, Vec<u8>, Stamp);

/// [`read_entry`], also giving the stamp of the file read (unchanged from
/// before the read to after it).
/// `fits(size)` is asked once the file's size is known, before it is read:
/// `false` stops there (the caller's budget says why).
fn read_stamped(
    dirfd: &OwnedFd,
    name: &str,
    admit: &Admit,
    fits: &mut dyn FnMut(u64) -> bool,
) -> io::Result<Result<Read, Skip>> {
    read_opened(fsx::open_path_at(dirfd, name), admit, fits)
}

/// [`read_stamped`] of the entry `opened` is (or failed to be) opened as,
/// with [`fsx::open_path_at`]: the caller that needs to know first whether
/// the name is there at all opens it once, for both.
fn read_opened(
    opened: io::Result<OwnedFd>,
    admit: &Admit,
    fits: &mut dyn FnMut(u64) -> bool,
) -> io::Result<Result<Read, Skip>> {
    // The name may be swapped (rename, RENAME_EXCHANGE) at any moment: take
    // a descriptor that opens nothing, judge the inode it names, and open
    // only that inode, only if it is a plain file. (Not even on a nodev
    // mount is an entry opened at once: a FIFO would be opened, and a
    // writer blocked on it woken.)
    let handle = match opened {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => return Ok(Err(Skip::Vanished)),
        Err(e) => return Ok(Err(Skip::Unreadable(format!("cannot open: {e}")))),
    };
    let st = fstat(&handle)?;
    if let Some(why) = admit.refuse(&st) {
        return Ok(Err(Skip::Refused(why)));
    }
    if !fits(st.st_size as u64) {
        return Ok(Err(Skip::Refused("past the bridge's budget".into())));
    }
    if let Some(quiet) = admit.quiet_for
        && modified_within(&st, quiet)
    {
        return Ok(Err(Skip::Recent));
    }
    let mut file = match fsx::reopen_for_reading(&handle) {
        Ok(f) => f,
        // Opened without blocking: a write lease its owner holds on it
        // (a container may take one on its own file) answers EAGAIN. Its
        // owner is writing, or about to.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Err(Skip::Writing)),
        Err(e) => return Ok(Err(Skip::Unreadable(format!("cannot open: {e}")))),
    };
    // A writer still on it (one its events did not show: opened before the
    // watch, or mid-truncation) is waited for; while the lease is held, no
    // writer can start.
    let leased = match lease::take(&file) {
        Lease::Held => true,
        Lease::Writer => return Ok(Err(Skip::Writing)),
        Lease::Unavailable => false,
        Lease::Failed(e) => {
            return Ok(Err(Skip::Unreadable(format!(
                "cannot take a read lease: {e}"
            ))));
        }
    };
    let read = fsx::read_sized(&mut file, st.st_size as u64, admit.max_size);
    // Written to while it was read (also without a watch, or through a
    // mapping that sends no event): what was read may be torn.
    let changed = fstat(&file).map_or(true, |now| !same_content_stamp(&st, &now));
    // An open for writing came while it was read (it waits for the lease,
    // or failed on it): the writer is on it now, or was.
    let broken = leased && !lease::still_held(&file);
    // The lease goes with the descriptor: a writer waiting for it waits no
    // longer than the read.
    drop(file);
    match read {
        Ok(Some(_)) if changed => Ok(Err(Skip::Changed)),
        Ok(Some(_)) if broken => Ok(Err(Skip::Writing)),
        Ok(Some(bytes)) => Ok(Ok((fsx::digest(&bytes), bytes, stamp_of(&st)))),
        Ok(None) => Ok(Err(Skip::Refused(too_big(
            st.st_size as u64,
            admit.max_size,
        )))),
        // One file's read failing (EIO from a FUSE source) is that file's
        // problem: the others are still synced, and it is tried again.
        Err(e) => Ok(Err(Skip::Unreadable(format!("cannot read: {e}")))),
    }
}

/// Whether the file was modified (or its inode changed) less than `quiet`
/// ago by the wall clock. A time in the future says nothing (a container
/// can set any time): not recent, or such a file would never be taken.
fn modified_within(st: &FileStat, quiet: std::time::Duration) -> bool {
    let stamp = |s: i64, ns: i64| {
        std::time::UNIX_EPOCH
            + std::time::Duration::new(s.max(0) as u64, ns.clamp(0, 999_999_999) as u32)
    };
    let now = std::time::SystemTime::now();
    [
        stamp(st.st_mtime, st.st_mtime_nsec),
        stamp(st.st_ctime, st.st_ctime_nsec),
    ]
    .into_iter()
    .any(|t| now.duration_since(t).is_ok_and(|age| age < quiet))
}

/// Whether two stats of one file show the same content: size, and the
/// modification and change times to the nanosecond.
fn same_content_stamp(a: &FileStat, b: &FileStat) -> bool {
    (
        a.st_size,
        a.st_mtime,
        a.st_mtime_nsec,
        a.st_ctime,
        a.st_ctime_nsec,
    ) == (
        b.st_size,
        b.st_mtime,
        b.st_mtime_nsec,
        b.st_ctime,
        b.st_ctime_nsec,
    )
}

fn too_big(size: u64, max: u64) -> String {
    format!("is {size} bytes, over the max_file_size limit of {max} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain file is read; a symlink, a FIFO and a hard-linked file are
    /// refused with what they are (and the FIFO is never opened); a missing
    /// one has vanished; one past the budget is not read.
    #[test]
    fn an_entry_is_judged_on_a_descriptor_that_opens_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("plain"), "x\n").unwrap();
        std::os::unix::fs::symlink(d.join("plain"), d.join("link")).unwrap();
        nix::unistd::mkfifo(
            &d.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        std::fs::write(d.join("linked"), "y\n").unwrap();
        std::fs::hard_link(d.join("linked"), d.join("linked2")).unwrap();
        let dirfd = open_dir(d).unwrap();
        let admit = Admit {
            max_size: 100,
            owners: None,
            quiet_for: None,
        };
        let judged = |name: &str| read_stamped(&dirfd, name, &admit, &mut |_| true).unwrap();
        let (_, bytes, _) = judged("plain").unwrap();
        assert_eq!(bytes, b"x\n");
        for (name, what) in [
            ("link", "symlink"),
            ("fifo", "FIFO"),
            ("linked", "hard links"),
        ] {
            match judged(name) {
                Err(Skip::Refused(why)) => assert!(why.contains(what), "{name}: {why}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert_eq!(judged("missing").unwrap_err(), Skip::Vanished);
        let past = read_stamped(&dirfd, "plain", &admit, &mut |_| false).unwrap();
        assert!(matches!(past, Err(Skip::Refused(_))), "{past:?}");
    }

    /// A file whose owner holds a write lease on it (a container may, on
    /// its own file) is held as being written, not reported unreadable:
    /// the reader's open does not wait for the lease, it is refused.
    #[test]
    fn a_file_under_its_owners_write_lease_is_held_as_written() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f"), "x\n").unwrap();
        let owner = std::fs::File::open(tmp.path().join("f")).unwrap();
        super::lease::take_write(&owner).unwrap();
        let dirfd = open_dir(tmp.path()).unwrap();
        let admit = Admit {
            max_size: 100,
            owners: None,
            quiet_for: None,
        };
        let read = read_stamped(&dirfd, "f", &admit, &mut |_| true).unwrap();
        assert_eq!(read.map(|_| ()), Err(Skip::Writing));
        drop(owner);
        let read = read_stamped(&dirfd, "f", &admit, &mut |_| true).unwrap();
        assert_eq!(read.map(|(_, bytes, _)| bytes), Ok(b"x\n".to_vec()));
    }

    /// A writer that truncates and rewrites a file in a loop, never leaving
    /// it short once closed: every read the reader accepts is the whole
    /// content. (A truncation makes the file short before its times change
    /// and before its event is queued: only the kernel's count of writers
    /// says one is on it.)
    #[test]
    fn a_read_accepted_while_a_writer_loops_is_always_whole() {
        use std::io::Write;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        const ROUNDS: usize = 200;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let whole: Vec<u8> = (0..64 << 10).map(|i: u32| b'a' + (i % 26) as u8).collect();
        std::fs::write(&path, &whole).unwrap();
        let dirfd = open_dir(tmp.path()).unwrap();
        let admit = Admit {
            max_size: 1 << 20,
            owners: None,
            quiet_for: None,
        };
        let (stop, accepted) = (AtomicBool::new(false), AtomicUsize::new(0));
        let (torn, held) = std::thread::scope(|s| {
            s.spawn(|| {
                for round in 0..ROUNDS {
                    let mut f = std::fs::File::create(&path).unwrap();
                    f.write_all(&whole).unwrap();
                    drop(f);
                    // The next round starts once this one's file was read
                    // whole: the reader meets both closed and open states.
                    while accepted.load(Ordering::Acquire) <= round {
                        if stop.load(Ordering::Acquire) {
                            return;
                        }
                        std::thread::yield_now();
                    }
                }
                stop.store(true, Ordering::Release);
            });
            let (mut torn, mut held) = (None, 0);
            while !stop.load(Ordering::Acquire) {
                match read_stamped(&dirfd, "f", &admit, &mut |_| true).unwrap() {
                    Ok((_, bytes, _)) if bytes != whole => {
                        torn = Some(bytes.len());
                        stop.store(true, Ordering::Release);
                    }
                    Ok(_) => _ = accepted.fetch_add(1, Ordering::AcqRel),
                    Err(_) => held += 1,
                }
            }
            (torn, held)
        });
        assert_eq!(torn, None, "a torn read (its length) was accepted");
        let accepted = accepted.into_inner();
        assert!(accepted >= ROUNDS, "{accepted} reads accepted");
        eprintln!("accepted {accepted} whole reads, held {held} while written");
    }
}
