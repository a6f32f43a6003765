//! inotify watches for one bridge's source directory. Host layer.
//!
//! Each bridge gets its own inotify instance, so a queue overflow or a lost
//! watch concerns exactly one bridge. The watch is on the source dir itself
//! when it exists; otherwise on its nearest existing ancestor, waiting for the
//! next path component to appear (no polling). Every time the watch moves,
//! the bridge rescans, since files may have appeared before the new watch.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use inotify::{Event, EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

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
        | WatchMask::ONLYDIR
        | WatchMask::DONT_FOLLOW
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
pub enum Watching {
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
pub enum Meaning {
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
pub struct SourceWatch {
    source: PathBuf,
    include: Vec<String>,
    watches: Watches,
    current: Option<WatchDescriptor>,
    watching: Watching,
}

impl SourceWatch {
    /// A watch for `source` using the inotify instance behind `watches`.
    /// Nothing is watched until [`SourceWatch::resolve`].
    pub fn new(source: &Path, include: &[String], watches: Watches) -> SourceWatch {
        SourceWatch {
            source: source.to_path_buf(),
            include: include.to_vec(),
            watches,
            current: None,
            watching: Watching::Nothing,
        }
    }

    /// Where the watch sits now.
    pub fn watching(&self) -> &Watching {
        &self.watching
    }

    /// (Re-)places the watch on the source dir or its nearest existing
    /// ancestor. Errors carry an actionable message (inotify limits).
    pub fn resolve(&mut self) -> io::Result<&Watching> {
        if let Some(wd) = self.current.take() {
            // The watch may already be gone (dir deleted): that is fine.
            let _ = self.watches.remove(wd);
        }
        self.watching = Watching::Nothing;
        loop {
            if is_real_dir(&self.source) {
                self.current = Some(self.add(&self.source.clone(), source_mask())?);
                self.watching = Watching::Source;
                return Ok(&self.watching);
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

    fn add(&mut self, path: &Path, mask: WatchMask) -> io::Result<WatchDescriptor> {
        self.watches
            .add(path, mask)
            .map_err(|e| explain_watch_error(path, e))
    }

    /// Interprets one event of this bridge's inotify instance.
    pub fn interpret(&self, ev: &Event<OsString>) -> Meaning {
        if ev.mask.contains(EventMask::Q_OVERFLOW) {
            return Meaning::Overflow;
        }
        if self.current.as_ref() != Some(&ev.wd) {
            return Meaning::Ignore; // a watch we already replaced
        }
        let gone =
            EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED | EventMask::UNMOUNT;
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
            return Meaning::Ignore;
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
pub fn new_instance() -> io::Result<Inotify> {
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
