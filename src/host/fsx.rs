//! Small `*at()` file helpers shared by the source reader and the installer.
//! Host layer: every function here does I/O and holds no policy.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, openat};
use nix::libc;
use nix::sys::stat::{FileStat, Mode, SFlag, fstat};

use crate::core::plan::Digest;

/// Opens a directory without following a symlink in its last component.
pub(crate) fn open_dir_nofollow(path: &Path) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok(fd)
}

/// Opens the directory at `path` one component at a time, from `/` (or the
/// working dir for a relative path), each component with
/// `O_NOFOLLOW|O_DIRECTORY` and checked to be a directory: a symlink at *any*
/// component is refused (`ELOOP`, the error names the component), and so is
/// `..`. This is how every path a container can reach is opened: a
/// container that can rename an ancestor of its source cannot point the
/// daemon at a directory of its choosing. (`openat2` with
/// `RESOLVE_NO_SYMLINKS` does the same in one call but cannot say which
/// component was the symlink, and needs Linux 5.6.)
pub(crate) fn open_dir_strict(path: &Path) -> io::Result<OwnedFd> {
    let path_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let start = if path.is_absolute() { "/" } else { "." };
    let mut fd = nix::fcntl::open(start, path_flags, Mode::empty())?;
    let mut walked = PathBuf::from(start);
    let mut parts = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .peekable();
    if parts.peek().is_none() {
        return Ok(nix::fcntl::open(
            start,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?);
    }
    while let Some(part) = parts.next() {
        let Component::Normal(name) = part else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: a \"..\" component is not allowed here", path.display()),
            ));
        };
        walked.push(name);
        let last = parts.peek().is_none();
        let flags = if last {
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
        } else {
            path_flags
        };
        let next = match openat(&fd, name, flags, Mode::empty()) {
            Ok(next) => next,
            Err(e @ (nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR)) => {
                return Err(not_a_dir(&walked, &fd, name, e));
            }
            Err(e) => return Err(e.into()),
        };
        // O_PATH|O_NOFOLLOW may hand back the symlink itself: check the type.
        let st = fstat(&next)?;
        if SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) != SFlag::S_IFDIR {
            return Err(not_a_dir(&walked, &fd, name, nix::errno::Errno::ENOTDIR));
        }
        fd = next;
    }
    Ok(fd)
}

/// The directories above `path` (its ancestors, from `/` down to its
/// parent) in which someone other than root can rename, replace or create
/// the next component ([`crate::core::trust`]), each with the reason. The
/// walk ends at a component that does not exist or is not a directory;
/// symlinks are not followed.
pub(crate) fn swappable_ancestors(path: &Path) -> Vec<(PathBuf, String)> {
    use crate::core::trust::{DirStat, others_can_swap};
    let mut chain: Vec<&Path> = path.ancestors().collect();
    chain.reverse(); // "/", "/a", "/a/b", …, path
    let mut out = Vec::new();
    for pair in chain.windows(2) {
        let (dir, child) = (pair[0], pair[1]);
        let Ok(st) = nix::sys::stat::lstat(dir) else {
            break;
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            break;
        }
        let child_uid = nix::sys::stat::lstat(child).ok().map(|c| c.st_uid);
        let d = DirStat {
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
            acl: has_access_acl(dir),
        };
        if let Some(why) = others_can_swap(d, child_uid, nix::unistd::geteuid().as_raw()) {
            out.push((dir.to_path_buf(), why));
        }
    }
    out
}

/// The first component of `path` that is a symlink, with where it points,
/// among the components that exist (what [`open_dir_strict`] would refuse).
pub(crate) fn symlink_on_path(path: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut chain: Vec<&Path> = path.ancestors().collect();
    chain.reverse();
    chain.into_iter().skip(1).find_map(|p| {
        let st = nix::sys::stat::lstat(p).ok()?;
        (st.st_mode & libc::S_IFMT == libc::S_IFLNK)
            .then(|| (p.to_path_buf(), std::fs::read_link(p).unwrap_or_default()))
    })
}

/// Host dirs whose files a hard link from a source would expose.
const HOST_FILE_DIRS: [&str; 4] = ["/etc", "/root", "/var", "/"];

/// The first of `/etc`, `/root`, `/var` and `/` on the same file system as
/// `path` (or its nearest existing ancestor): files there can be
/// hard-linked into it.
pub(crate) fn shares_fs_with_host_files(path: &Path) -> Option<&'static str> {
    let dev = path
        .ancestors()
        .find_map(|p| nix::sys::stat::stat(p).ok())?
        .st_dev;
    HOST_FILE_DIRS
        .into_iter()
        .find(|d| nix::sys::stat::stat(*d).is_ok_and(|st| st.st_dev == dev))
}

/// Whether `path` (not followed) carries a POSIX access ACL.
fn has_access_acl(path: &Path) -> bool {
    rustix::fs::lgetxattr_query(path, "system.posix_acl_access").is_ok_and(|n| n > 0)
}

/// The error for a path component that is a symlink or not a directory.
fn not_a_dir(
    walked: &Path,
    parent: &OwnedFd,
    name: &std::ffi::OsStr,
    e: nix::errno::Errno,
) -> io::Error {
    let is_link = nix::sys::stat::fstatat(parent, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK);
    let msg = if is_link {
        let target = nix::fcntl::readlinkat(parent, name)
            .map(|t| format!(" (to {})", t.to_string_lossy()))
            .unwrap_or_default();
        format!(
            "{} is a symlink{target}; hostbridge follows no symlink on this path: configure the real path",
            walked.display()
        )
    } else {
        format!("{} is not a directory", walked.display())
    };
    io::Error::new(io::Error::from(e).kind(), msg)
}

/// Opens `name` in `dir` as an `O_PATH` descriptor (no symlink followed):
/// nothing is opened for real, so a device node or FIFO swapped in under the
/// name is never opened. `fstat` it, then [`reopen_for_reading`] if it is
/// what was wanted.
pub(crate) fn open_path_at(dir: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(openat(dir, name, flags, Mode::empty())?)
}

/// Opens the very inode behind an `O_PATH` descriptor for reading, through
/// `/proc/self/fd` (non-blocking, no controlling terminal). Call it only
/// after `fstat` said the descriptor is a regular file. The dir
/// `/proc/self/fd` is opened once and kept: a reopen then looks up the
/// descriptor's number in it alone, not `/proc`, `self` and `fd` again (a
/// burst reopens thousands of files). The dir is this process's: a forked
/// child that did not exec would reach its parent's descriptors through it
/// (hostbridge forks only to exec).
pub(crate) fn reopen_for_reading(path_fd: &OwnedFd) -> io::Result<File> {
    static PROC_FDS: std::sync::OnceLock<Option<OwnedFd>> = std::sync::OnceLock::new();
    let dir = PROC_FDS.get_or_init(|| {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        nix::fcntl::open("/proc/self/fd", flags, Mode::empty()).ok()
    });
    let n = path_fd.as_raw_fd().to_string();
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    let opened = match dir {
        Some(dir) => openat(dir, n.as_str(), flags, Mode::empty()),
        None => nix::fcntl::open(format!("/proc/self/fd/{n}").as_str(), flags, Mode::empty()),
    };
    let fd = opened.map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("reopening through /proc/self/fd/{n} (is /proc mounted?): {e}"),
        )
    })?;
    Ok(File::from(fd))
}

/// Opens the directory `name` inside `dir` without following a symlink.
pub(crate) fn open_dir_at(dir: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(openat(dir, name, flags, Mode::empty())?)
}

/// Opens `name` in `dir` for reading without following symlinks and without
/// blocking on FIFOs or acquiring a controlling terminal.
pub(crate) fn open_file_at(dir: &OwnedFd, name: &str) -> io::Result<File> {
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_CLOEXEC
        | OFlag::O_NOCTTY;
    Ok(File::from(openat(dir, name, flags, Mode::empty())?))
}

/// Describes a non-regular file type for humans (`None` for regular files).
pub(crate) fn odd_kind(st: &FileStat) -> Option<&'static str> {
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
pub(crate) fn perm_bits(st: &FileStat) -> u32 {
    st.st_mode & 0o7777
}

/// Reads at most `limit` bytes; returns `None` when the file holds more.
pub(crate) fn read_limited(file: &mut File, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= limit).then_some(buf))
}

/// [`read_limited`] of a regular file `fstat` said is `size` bytes: a
/// read that gives exactly that many bytes and asks for more is its end
/// (for a regular file a short read is the end of file), so a small file
/// is one read, not a read and a read that finds the end. The caller
/// checks the file's stamp after the read, which a write meanwhile changes.
pub(crate) fn read_sized(file: &mut File, size: u64, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let want = size.min(limit).saturating_add(1);
    let mut buf = vec![0u8; usize::try_from(want).unwrap_or(usize::MAX).min(1 << 20)];
    let mut got = 0;
    loop {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                if got as u64 == size && got < buf.len() {
                    break;
                }
                if got == buf.len() {
                    // Larger than it said, or past the first MiB: the rest.
                    buf.truncate(got);
                    let rest = limit.saturating_add(1).saturating_sub(got as u64);
                    file.take(rest).read_to_end(&mut buf)?;
                    got = buf.len();
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok((got as u64 <= limit).then_some(buf))
}

/// SHA-256 of a byte slice.
pub(crate) fn digest(bytes: &[u8]) -> Digest {
    Digest::of(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_open_refuses_a_symlink_at_any_component_and_names_it() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real/inner");
        std::fs::create_dir_all(&real).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("real"), tmp.path().join("link")).unwrap();
        assert!(open_dir_strict(&real).is_ok());
        assert!(open_dir_strict(Path::new("/")).is_ok());
        let e = open_dir_strict(&tmp.path().join("link/inner")).unwrap_err();
        assert!(e.to_string().contains("link is a symlink (to "), "{e}");
        let e = open_dir_strict(&tmp.path().join("link")).unwrap_err();
        assert!(e.to_string().contains("is a symlink"), "{e}");
        let e = open_dir_strict(&tmp.path().join("real/inner/../inner")).unwrap_err();
        assert!(e.to_string().contains("\"..\""), "{e}");
        std::fs::write(tmp.path().join("file"), "x").unwrap();
        let e = open_dir_strict(&tmp.path().join("file/x")).unwrap_err();
        assert!(e.to_string().contains("is not a directory"), "{e}");
        let e = open_dir_strict(&tmp.path().join("missing/x")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn a_path_descriptor_reopens_only_its_own_inode() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a"), "first").unwrap();
        let dir = open_dir_strict(tmp.path()).unwrap();
        let handle = open_path_at(&dir, "a").unwrap();
        // The name now names another file; the descriptor still the first.
        std::fs::write(tmp.path().join("b"), "second").unwrap();
        std::fs::rename(tmp.path().join("b"), tmp.path().join("a")).unwrap();
        let mut f = reopen_for_reading(&handle).unwrap();
        assert_eq!(read_limited(&mut f, 100).unwrap().unwrap(), b"first");
    }

    /// One read for a file of the size it said; a file that grew, or one
    /// over the limit, is read on (and its size said so).
    #[test]
    fn a_sized_read_takes_what_the_file_holds() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        for (content, said, limit, want) in [
            (&b""[..], 0, 10, Some(&b""[..])),
            (b"abc", 3, 10, Some(b"abc")),
            (b"abcdef", 3, 10, Some(b"abcdef")),
            (b"abc", 9, 10, Some(b"abc")),
            (b"abcdef", 6, 5, None),
            (b"abcdef", 3, 5, None),
        ] {
            std::fs::write(&path, content).unwrap();
            let mut f = File::open(&path).unwrap();
            let got = read_sized(&mut f, said, limit).unwrap();
            assert_eq!(got.as_deref(), want, "{content:?} said {said}");
        }
        let big = vec![7u8; (1 << 20) + 5];
        std::fs::write(&path, &big).unwrap();
        let mut f = File::open(&path).unwrap();
        assert_eq!(
            read_sized(&mut f, big.len() as u64, 1 << 21).unwrap(),
            Some(big)
        );
    }
}
