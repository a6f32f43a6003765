//! Whether another process has a source file open for writing, as the
//! kernel counts it, told with a read lease (`fcntl(F_SETLEASE, F_RDLCK)`).
//! Host layer, and one of the crate's two modules with `unsafe` (three
//! `fcntl` calls on a borrowed descriptor, none with a pointer).
//!
//! Events and times cannot tell a file mid-write from a finished one in
//! every case: a writer that opened it before the watch was placed sends
//! no event until it writes again, and a truncation (`O_TRUNC`,
//! `ftruncate`) makes the file short before its times change and before
//! its event is queued (on a busy ext4 that window lasts as long as the
//! journal makes it wait). The kernel's count of writers has no such gap:
//! an open for writing counts itself before it breaks a lease and long
//! before it truncates. So the reader takes a read lease on the descriptor
//! it reads through: the kernel grants it only while no one has the file
//! open for writing, and while it is held, an open for writing waits (the
//! kernel signals the holder to let go; here that signal is `SIGWINCH`,
//! which is ignored unless handled, so it costs nothing). Closing the
//! descriptor lets it go. A read made under a lease that is still held
//! after it is a state no writer was in.
//!
//! Where leases cannot be had (a filesystem without them, `fs.leases-enable`
//! off, a file owned by another uid without `CAP_LEASE`), the reader goes on
//! without, as before: events and times are then all it has. That is said
//! in the log, once per filesystem and cause. A lease counts the writers
//! this kernel knows of: on a network or FUSE filesystem (NFS, virtiofs) a
//! writer on another machine or in the server is not among them, and there
//! too only events and times tell.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Mutex;

use nix::libc;

/// `F_SETSIG` (linux/fcntl.h; not in the `libc` crate): the signal the
/// kernel sends a lease holder when an open must break the lease. 10 on
/// every architecture Rust builds for (parisc, which has 13, is not one).
const F_SETSIG: libc::c_int = 10;

/// What asking for a read lease found.
#[derive(Debug)]
pub(crate) enum Lease {
    /// Granted: no one has the file open for writing, and no one can
    /// until the descriptor is closed (or the lease broken: see
    /// [`still_held`]).
    Held,
    /// Not granted for a writer (`EAGAIN`): someone has the file open for
    /// writing, or another holder's lease on it is being broken (a write
    /// open is waiting for it, or just failed on it).
    Writer,
    /// Leases cannot be had for this file (a fact of its filesystem or of
    /// the daemon's rights: said once in the log per filesystem and cause).
    Unavailable,
    /// The kernel could not grant it now (out of memory, …): the file is
    /// not read this time.
    Failed(io::Error),
}

/// Asks for a read lease on `file`, which must be open read-only.
pub(crate) fn take(file: &File) -> Lease {
    let Err(e) = set_lease(file, libc::F_RDLCK) else {
        return Lease::Held;
    };
    match e.raw_os_error() {
        Some(libc::EAGAIN) => Lease::Writer,
        // No lease support (EINVAL: the filesystem, or fs.leases-enable=0),
        // no right to one (EACCES without CAP_LEASE, EPERM from a security
        // module), no call (ENOSYS): lasting facts, not this file's state.
        Some(libc::EINVAL | libc::EACCES | libc::EPERM | libc::ENOSYS) => {
            say_unavailable(file, &e);
            Lease::Unavailable
        }
        _ => Lease::Failed(e),
    }
}

/// Whether the lease [`take`] got on `file` is still held: `false` when an
/// open for writing broke it (the kernel took it back after
/// `lease-break-time`, or it is being broken now).
pub(crate) fn still_held(file: &File) -> bool {
    let fd = file.as_fd().as_raw_fd();
    // SAFETY: as in `set_lease`; F_GETLEASE takes no argument.
    #[allow(unsafe_code)]
    let kind = unsafe { libc::fcntl(fd, libc::F_GETLEASE) };
    kind == libc::F_RDLCK
}

/// Takes a write lease on `file` (as a container may on its own file):
/// a test's stand-in for a writer about to write.
#[cfg(test)]
pub(crate) fn take_write(file: &File) -> io::Result<()> {
    set_lease(file, libc::F_WRLCK)
}

/// `fcntl(F_SETLEASE, kind)` on `file`, its break signal set first.
fn set_lease(file: &File, kind: libc::c_int) -> io::Result<()> {
    let fd = file.as_fd().as_raw_fd();
    // SAFETY: `fd` is borrowed from `file` for the duration of the call;
    // F_SETSIG and F_SETLEASE take an integer argument, no pointer.
    // SIGWINCH's default action is to ignore it. (Never a real-time signal:
    // when its queue is full the kernel falls back to SIGIO, which kills.)
    #[allow(unsafe_code)]
    let set = unsafe {
        if libc::fcntl(fd, F_SETSIG, libc::SIGWINCH) == -1 {
            -1
        } else {
            libc::fcntl(fd, libc::F_SETLEASE, kind)
        }
    };
    if set == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Logs once per filesystem and cause that leases cannot be had there.
fn say_unavailable(file: &File, e: &io::Error) {
    /// Causes already said; a handful of filesystems at most, bounded
    /// all the same.
    static SAID: Mutex<Vec<(u64, i32)>> = Mutex::new(Vec::new());
    let dev = nix::sys::stat::fstat(file).map_or(0, |st| st.st_dev);
    let key = (dev, e.raw_os_error().unwrap_or(0));
    {
        let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
        if said.contains(&key) || said.len() >= 64 {
            return;
        }
        said.push(key);
    }
    let hint = match e.raw_os_error() {
        Some(libc::EACCES) => " (a file of another uid needs CAP_LEASE)",
        Some(libc::EINVAL) => " (the filesystem has none, or fs.leases-enable is 0)",
        _ => "",
    };
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    tracing::warn!(
        "cannot take a read lease on source files of device {major}:{minor}: {e}{hint}; a file a writer still has open is then told only by its events and times"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in a fresh dir, and a read-only descriptor of it holding a
    /// lease.
    fn leased_file() -> (tempfile::TempDir, std::path::PathBuf, File) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, "x").unwrap();
        let reader = File::open(&path).unwrap();
        assert!(matches!(take(&reader), Lease::Held));
        (tmp, path, reader)
    }

    /// The kernel's count of writers, as a lease sees it: none, one
    /// holding the file open without writing, none again once it closes.
    #[test]
    fn a_lease_is_granted_only_while_no_one_has_the_file_open_for_writing() {
        let (_tmp, path, reader) = leased_file();
        assert!(still_held(&reader));
        drop(reader);
        let writer = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let reader = File::open(&path).unwrap();
        assert!(matches!(take(&reader), Lease::Writer));
        drop(writer);
        assert!(matches!(take(&reader), Lease::Held));
    }

    /// An open for writing while the lease is held waits for it, and the
    /// holder sees the lease going (and is not killed by the kernel's
    /// signal); the writer's open completes once the holder closes.
    #[test]
    fn an_open_for_writing_breaks_a_held_lease_and_waits_for_its_close() {
        let (_tmp, path, reader) = leased_file();
        std::thread::scope(|s| {
            let writer = s.spawn(|| std::fs::OpenOptions::new().append(true).open(&path));
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while still_held(&reader) {
                assert!(std::time::Instant::now() < deadline, "never broken");
                std::thread::yield_now();
            }
            assert!(!writer.is_finished(), "the writer did not wait");
            drop(reader);
            writer.join().unwrap().unwrap();
        });
    }
}
