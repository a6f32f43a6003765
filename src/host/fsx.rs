//! Small `*at()` file helpers shared by the source reader and the installer.
//! Host layer: every function here does I/O and holds no policy.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::{OFlag, openat};
use nix::libc;
use nix::sys::stat::{FileStat, Mode, SFlag};

use crate::core::plan::Digest;

/// Opens a directory without following a symlink in its last component.
pub fn open_dir_nofollow(path: &Path) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok(fd)
}

/// Opens the directory `name` inside `dir` without following a symlink.
pub fn open_dir_at(dir: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(openat(dir, name, flags, Mode::empty())?)
}

/// Opens `name` in `dir` for reading without following symlinks and without
/// blocking on FIFOs or acquiring a controlling terminal.
pub fn open_file_at(dir: &OwnedFd, name: &str) -> io::Result<File> {
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_CLOEXEC
        | OFlag::O_NOCTTY;
    Ok(File::from(openat(dir, name, flags, Mode::empty())?))
}

/// Describes a non-regular file type for humans (`None` for regular files).
pub fn odd_kind(st: &FileStat) -> Option<&'static str> {
    let kind = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
    match kind {
        SFlag::S_IFREG => None,
        SFlag::S_IFLNK => Some("a symlink"),
        SFlag::S_IFDIR => Some("a directory"),
        SFlag::S_IFIFO => Some("a FIFO"),
        SFlag::S_IFSOCK => Some("a socket"),
        SFlag::S_IFCHR => Some("a character device"),
        SFlag::S_IFBLK => Some("a block device"),
        _ => Some("an unknown file type"),
    }
}

/// Permission bits (including setuid/setgid/sticky) of a stat result.
pub fn perm_bits(st: &FileStat) -> u32 {
    st.st_mode & 0o7777
}

/// Reads at most `limit` bytes; returns `None` when the file holds more.
pub fn read_limited(file: &mut File, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= limit).then_some(buf))
}

/// SHA-256 of a byte slice.
pub fn digest(bytes: &[u8]) -> Digest {
    Digest::of(bytes)
}
