//! Reads a bridge's source directory safely. Host layer.
//!
//! The source dir is written by a container, so every entry is hostile until
//! proven otherwise: the dir is opened with `O_NOFOLLOW`, entries are
//! `fstatat`'d without following links before anything is opened, opened
//! with `O_NOFOLLOW|O_NONBLOCK|O_NOCTTY` (a FIFO never blocks us, a tty never
//! becomes ours), re-checked with `fstat` on the open descriptor (the entry may
//! have been swapped in between), and read with a size cap.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::Dir;
use nix::fcntl::AtFlags;
use nix::sys::stat::{fstat, fstatat};

use super::fsx;
use crate::core::names::{NameVerdict, classify};
use crate::core::plan::{Digest, SourceFile, SourceView};

/// What a scan of the source found.
#[derive(Debug, Default)]
pub struct SourceScan {
    /// The planner's view: candidate names and their digests or skip reasons.
    pub view: SourceView,
    /// Entries whose names were rejected (not even candidates), with reasons.
    pub rejected: Vec<(String, String)>,
    /// Files whose content is installed in a rewritten form (the canonical
    /// form of a udev rules file); the view's digest is the rewritten one.
    pub rewritten: BTreeMap<String, Rewritten>,
}

/// A file installed as other bytes than its source's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// Digest of the source bytes that were judged.
    pub source: Digest,
    /// The bytes to install.
    pub content: Vec<u8>,
}

/// Decides whether a readable file may be synced: `Err(reason)` skips it,
/// `Ok(Some(bytes))` installs `bytes` in its place. Called with the name
/// and the content.
pub type Accept<'a> = dyn FnMut(&str, &[u8]) -> Result<Option<Vec<u8>>, String> + 'a;

/// Scans `dir`. Names in `still_open` are reported as skipped (a writer is
/// still on them); `accept` vets each readable file. A missing dir gives
/// `present: false`, not an error.
pub fn scan(
    dir: &Path,
    include: &[String],
    max_size: u64,
    still_open: &BTreeSet<String>,
    accept: &mut Accept<'_>,
) -> io::Result<SourceScan> {
    let dirfd = match fsx::open_dir_nofollow(dir) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => return Ok(SourceScan::default()),
        Err(e) => return Err(e),
    };
    let mut out = SourceScan {
        view: SourceView {
            present: true,
            files: BTreeMap::new(),
        },
        rejected: Vec::new(),
        rewritten: BTreeMap::new(),
    };
    let mut listing = Dir::from_fd(dirfd.try_clone()?)?;
    for entry in listing.iter() {
        let entry = entry?;
        let raw = entry.file_name().to_bytes();
        if raw == b"." || raw == b".." {
            continue;
        }
        match classify(raw, include) {
            NameVerdict::Candidate => {}
            NameVerdict::NotIncluded | NameVerdict::Hidden => continue,
            NameVerdict::Rejected(why) => {
                let shown = std::ffi::OsStr::from_bytes(raw)
                    .to_string_lossy()
                    .into_owned();
                out.rejected.push((shown, why.to_string()));
                continue;
            }
        }
        // classify() only accepts UTF-8 names.
        let name = String::from_utf8_lossy(raw).into_owned();
        let state = if still_open.contains(&name) {
            SourceFile::Skipped("still being written when max_wait expired".into())
        } else {
            match read_entry(&dirfd, &name, max_size)? {
                Ok((digest, bytes)) => match accept(&name, &bytes) {
                    Ok(None) => SourceFile::Ready(digest),
                    Ok(Some(content)) => {
                        let installed = fsx::digest(&content);
                        out.rewritten.insert(
                            name.clone(),
                            Rewritten {
                                source: digest,
                                content,
                            },
                        );
                        SourceFile::Ready(installed)
                    }
                    Err(why) => SourceFile::Skipped(why),
                },
                Err(why) => SourceFile::Skipped(why),
            }
        };
        out.view.files.insert(name, state);
    }
    Ok(out)
}

/// Reads one entry: `Ok(Ok((digest, bytes)))` for a usable file,
/// `Ok(Err(reason))` for one that must be skipped, `Err` for I/O failures
/// that affect the whole scan.
pub fn read_entry(
    dirfd: &OwnedFd,
    name: &str,
    max_size: u64,
) -> io::Result<Result<(Digest, Vec<u8>), String>> {
    let st = match fstatat(dirfd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(nix::errno::Errno::ENOENT) => return Ok(Err("vanished while reading".into())),
        Err(e) => return Ok(Err(format!("cannot stat: {e}"))),
    };
    if let Some(kind) = fsx::odd_kind(&st) {
        return Ok(Err(format!("is {kind}; only regular files are synced")));
    }
    if st.st_size as u64 > max_size {
        return Ok(Err(too_big(st.st_size as u64, max_size)));
    }
    let mut file = match fsx::open_file_at(dirfd, name) {
        Ok(f) => f,
        Err(e) => return Ok(Err(format!("cannot open: {e}"))),
    };
    // The entry may have been swapped for something else since fstatat.
    let st = fstat(&file)?;
    if let Some(kind) = fsx::odd_kind(&st) {
        return Ok(Err(format!("is {kind}; only regular files are synced")));
    }
    match fsx::read_limited(&mut file, max_size)? {
        Some(bytes) => Ok(Ok((fsx::digest(&bytes), bytes))),
        None => Ok(Err(too_big(st.st_size as u64, max_size))),
    }
}

fn too_big(size: u64, max: u64) -> String {
    format!("is {size} bytes, over the max_file_size limit of {max} bytes")
}
