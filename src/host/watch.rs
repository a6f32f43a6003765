//! inotify watches for one bridge's source directory. Host layer.
//!
//! Each bridge gets its own inotify instance ([`super::feed`]), so a queue
//! overflow or a lost watch concerns exactly one bridge. A file's or the
//! dir's permission change (`IN_ATTRIB`) is a change too: a file that could
//! not be read may be readable now. The watch is on the source dir itself
//! when it exists; otherwise on its nearest existing ancestor, waiting for the
//! next path component to appear (no polling). Every time the watch moves,
//! the bridge rescans, since files may have appeared before the new watch.
//!
//! The source dir is opened with no symlink followed at any component
//! ([`fsx::open_dir_strict`]) and the watch is placed on that very
//! descriptor (through `/proc/self/fd`), so it sits on the inode the path
//! names now; [`SourceWatch::replaced`] tells when the path has come to name
//! another one (an ancestor renamed away), and the daemon then watches anew.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use inotify::{Event, EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

use super::fsx;
use crate::core::names::{NameVerdict, classify};
use crate::core::settle::Input;

/// Events watched on the source dir.
fn source_mask() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ATTRIB
        | WatchMask::ONLYDIR
        | WatchMask::EXCL_UNLINK
}

/// Events watched on an ancestor while the source dir does not exist.
fn ancestor_mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
}

/// Where the watch currently sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Watching {
    /// On the source dir.
    Source,
    /// On an ancestor, waiting for `next` (a child name) to appear.
    Ancestor {
        /// The watched ancestor.
        dir: PathBuf,
        /// The child of `dir` on the way to the source.
        next: OsString,
    },
    /// Nowhere: adding a watch failed.
    Nothing,
}

/// What an inotify event means for the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Meaning {
    /// Feed this to the settle machine.
    Settle(Input),
    /// The watch must be re-established (then rescan).
    Rewatch,
    /// The kernel queue overflowed: events were lost; rewatch and rescan.
    Overflow,
    /// Nothing to do.
    Ignore,
}

/// The watch of one bridge.
#[derive(Debug)]
pub(crate) struct SourceWatch {
    source: PathBuf,
    include: Vec<String>,
    watches: Watches,
    current: Option<WatchDescriptor>,
    watching: Watching,
    /// (st_dev, st_ino) of the watched source dir.
    identity: Option<(u64, u64)>,
    /// Watches on the path components someone other than root can rename
    /// (the children of [`fsx::swappable_ancestors`]): any move or removal
    /// of one means the path may name another dir now.
    guards: Vec<WatchDescriptor>,
}

impl SourceWatch {
    /// A watch for `source` using the inotify instance behind `watches`.
    /// Nothing is watched until [`SourceWatch::resolve`].
    pub(crate) fn new(source: &Path, include: &[String], watches: Watches) -> SourceWatch {
        SourceWatch {
            source: source.to_path_buf(),
            include: include.to_vec(),
            watches,
            current: None,
            watching: Watching::Nothing,
            identity: None,
            guards: Vec::new(),
        }
    }

    /// (Re-)places the watch on the source dir or its nearest existing
    /// ancestor. Errors carry an actionable message (inotify limits).
    pub(crate) fn resolve(&mut self) -> io::Result<&Watching> {
        if let Some(wd) = self.current.take() {
            // The watch may already be gone (dir deleted): that is fine.
            let _ = self.watches.remove(wd);
        }
        for wd in std::mem::take(&mut self.guards) {
            let _ = self.watches.remove(wd);
        }
        self.watching = Watching::Nothing;
        self.identity = None;
        loop {
            match fsx::open_dir_strict(&self.source) {
                Ok(fd) => {
                    let st = nix::sys::stat::fstat(&fd)?;
                    // The watch goes on the inode just opened, not on
                    // whatever the path names by the time inotify looks.
                    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                    let wd = self
                        .watches
                        .add(&by_fd, source_mask())
                        .map_err(|e| explain_watch_error(&self.source, e))?;
                    self.current = Some(wd);
                    self.identity = Some((st.st_dev, st.st_ino));
                    self.watching = Watching::Source;
                    self.guard_ancestors();
                    return Ok(&self.watching);
                }
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
            let dir = nearest_existing_ancestor(&self.source);
            let next = next_component(&self.source, &dir);
            let wd = self.add(&dir, ancestor_mask())?;
            // The child may have appeared between the check and the watch:
            // then descend instead of waiting for an event that came too early.
            let child = dir.join(&next);
            let appeared = if child == self.source {
                is_real_dir(&child)
            } else {
                child.is_dir()
            };
            if appeared {
                let _ = self.watches.remove(wd);
                continue;
            }
            self.current = Some(wd);
            self.watching = Watching::Ancestor { dir, next };
            return Ok(&self.watching);
        }
    }

    /// Watches the components of the source path that someone other than
    /// root can rename, for their moves (best effort: one that cannot be
    /// watched is still caught after the next sync by [`Self::replaced`]).
    fn guard_ancestors(&mut self) {
        for (dir, _) in fsx::swappable_ancestors(&self.source) {
            let child = dir.join(next_component(&self.source, &dir));
            if child == self.source {
                continue; // watched itself, MOVE_SELF included
            }
            let Ok(fd) = fsx::open_dir_strict(&child) else {
                continue;
            };
            let by_fd = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
            let mask = WatchMask::MOVE_SELF | WatchMask::DELETE_SELF | WatchMask::ONLYDIR;
            if let Ok(wd) = self.watches.add(&by_fd, mask) {
                self.guards.push(wd);
            }
        }
    }

    /// (st_dev, st_ino) of the watched source dir, while it is watched.
    pub(crate) fn identity(&self) -> Option<(u64, u64)> {
        self.identity
    }

    /// Whether the source path no longer names the watched dir (it was
    /// renamed away, with an ancestor or on its own, and maybe replaced):
    /// then the watch must be placed again.
    pub(crate) fn replaced(&self) -> bool {
        let Some(watched) = self.identity else {
            return false;
        };
        match fsx::open_dir_strict(&self.source).and_then(|fd| Ok(nix::sys::stat::fstat(&fd)?)) {
            Ok(st) => (st.st_dev, st.st_ino) != watched,
            Err(_) => true,
        }
    }

    fn add(&mut self, path: &Path, mask: WatchMask) -> io::Result<WatchDescriptor> {
        self.watches
            .add(path, mask)
            .map_err(|e| explain_watch_error(path, e))
    }

    /// Interprets one event of this bridge's inotify instance.
    pub(crate) fn interpret(&self, ev: &Event<OsString>) -> Meaning {
        if ev.mask.contains(EventMask::Q_OVERFLOW) {
            return Meaning::Overflow;
        }
        let gone =
            EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED | EventMask::UNMOUNT;
        if self.guards.contains(&ev.wd) {
            return if ev.mask.intersects(gone) {
                Meaning::Rewatch
            } else {
                Meaning::Ignore
            };
        }
        if self.current.as_ref() != Some(&ev.wd) {
            return Meaning::Ignore; // a watch we already replaced
        }
        if ev.mask.intersects(gone) {
            return Meaning::Rewatch;
        }
        match &self.watching {
            Watching::Source => self.source_event(ev),
            Watching::Ancestor { next, .. } => match &ev.name {
                Some(n) if n == next => Meaning::Rewatch,
                _ => Meaning::Ignore,
            },
            Watching::Nothing => Meaning::Ignore,
        }
    }

    fn source_event(&self, ev: &Event<OsString>) -> Meaning {
        let Some(name) = &ev.name else {
            // The source dir's own mode or owner changed: what can be read
            // may have changed with it.
            return if ev.mask.contains(EventMask::ATTRIB) {
                Meaning::Settle(Input::Rescan)
            } else {
                Meaning::Ignore
            };
        };
        let raw = name.as_bytes();
        let name = match classify(raw, &self.include) {
            NameVerdict::Candidate => name.to_string_lossy().into_owned(),
            // Rejected names open a window too, so the sync reports them.
            NameVerdict::Rejected(_) => name.to_string_lossy().into_owned(),
            NameVerdict::Hidden | NameVerdict::NotIncluded => return Meaning::Ignore,
        };
        let input = if ev.mask.contains(EventMask::MODIFY) {
            Input::Write(name)
        } else if ev.mask.contains(EventMask::CLOSE_WRITE) {
            Input::Close(name)
        } else {
            Input::Change(name)
        };
        Meaning::Settle(input)
    }
}

/// A new inotify instance for one bridge.
pub(crate) fn new_instance() -> io::Result<Inotify> {
    Inotify::init().map_err(|e| match e.raw_os_error() {
        Some(nix::libc::EMFILE) => io::Error::new(
            e.kind(),
            "too many inotify instances: raise fs.inotify.max_user_instances (sysctl)",
        ),
        _ => e,
    })
}

fn explain_watch_error(path: &Path, e: io::Error) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(nix::libc::ENOSPC) => {
            "too many inotify watches: raise fs.inotify.max_user_watches (sysctl)"
        }
        Some(nix::libc::EMFILE) => "too many open files",
        Some(nix::libc::EACCES) => "permission denied",
        _ => "cannot watch",
    };
    io::Error::new(
        e.kind(),
        format!("watching {}: {hint}: {e}", path.display()),
    )
}

/// A directory that is not a symlink.
fn is_real_dir(path: &Path) -> bool {
    path.symlink_metadata().is_ok_and(|m| m.is_dir())
}

/// The deepest ancestor of `path` (strictly above it) that exists as a directory.
fn nearest_existing_ancestor(path: &Path) -> PathBuf {
    path.ancestors()
        .skip(1)
        .find(|p| p.is_dir())
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

/// The child of `ancestor` on the way down to `path`.
fn next_component(path: &Path, ancestor: &Path) -> OsString {
    path.strip_prefix(ancestor)
        .ok()
        .and_then(|rest| rest.components().next())
        .map(|c| c.as_os_str().to_os_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_helpers() {
        assert_eq!(next_component(Path::new("/a/b/c"), Path::new("/a")), "b");
        assert_eq!(next_component(Path::new("/a/b/c"), Path::new("/")), "a");
        assert_eq!(
            nearest_existing_ancestor(Path::new("/nonexistent-hb/x/y")),
            Path::new("/")
        );
    }
}
