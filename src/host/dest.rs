//! Atomic installs into a destination directory. Host layer.
//!
//! Recipe (afterburn/bootupd): write a temp file *in the destination* whose
//! name udev and most readers ignore (`.hostbridge-*.tmp`: hidden, and not
//! ending in `.rules`), set its mode, fsync it, `renameat` it over the final
//! name, and fsync the directory once per batch. A crash leaves at worst a
//! stale temp file, never a partial file under a final name; stale temps are
//! removed at startup. All operations are relative to the directory's file
//! descriptor and take plain names, so nothing is ever written outside it.

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{Mode, fchmod, fstat, fstatat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fsync, unlinkat};

use super::fsx;
use crate::core::plan::{DestFile, Digest};
use crate::core::stamp::Stamp;

/// Prefix of hostbridge's temp files; see the module docs.
pub(crate) const TEMP_PREFIX: &str = ".hostbridge-";
/// Suffix of hostbridge's temp files.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An open destination directory.
#[derive(Debug)]
pub(crate) struct DestDir {
    fd: OwnedFd,
    path: PathBuf,
    /// Whether a file created here gets the mode asked for, less the umask
    /// (no default ACL): asked at the first install ([`DestDir::created_as`]).
    plain_modes: std::sync::OnceLock<bool>,
    /// Whether the dir is on tmpfs, whose `fsync` does nothing (its files
    /// live in memory and end with it): asked at the first flush.
    in_memory: std::sync::OnceLock<bool>,
}

impl DestDir {
    /// Opens `path`, creating it (and missing parents) with mode 0755 first.
    pub(crate) fn open_or_create(path: &Path) -> io::Result<DestDir> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)?;
        Self::open(path)
    }

    /// Opens an existing `path` (its last component must not be a symlink).
    pub(crate) fn open(path: &Path) -> io::Result<DestDir> {
        Ok(DestDir::from_fd(
            fsx::open_dir_nofollow(path)?,
            path.to_path_buf(),
        ))
    }

    /// Wraps an already open directory.
    pub(crate) fn from_fd(fd: OwnedFd, path: PathBuf) -> DestDir {
        DestDir {
            fd,
            path,
            plain_modes: std::sync::OnceLock::new(),
            in_memory: std::sync::OnceLock::new(),
        }
    }

    /// The directory's descriptor.
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The directory's path, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Describes the entry `name` without following links. Regular files up
    /// to `hash_limit` bytes are hashed; larger ones get no digest.
    pub(crate) fn describe(&self, name: &str, hash_limit: u64) -> io::Result<DestFile> {
        Ok(self.describe_known(name, hash_limit, None)?.0)
    }

    /// Like [`DestDir::describe`], but a file whose stamp is the one
    /// `known` recorded is taken to hold `known`'s digest without being
    /// read (hostbridge wrote it, or read it, and nothing has written it
    /// since). Also gives the stamp of a regular file.
    pub(crate) fn describe_known(
        &self,
        name: &str,
        hash_limit: u64,
        known: Option<(Stamp, Digest)>,
    ) -> io::Result<(DestFile, Option<Stamp>)> {
        let st = match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok((DestFile::Absent, None)),
            Err(e) => return Err(e.into()),
        };
        if let Some(kind) = fsx::odd_kind(&st) {
            return Ok((DestFile::Other(kind), None));
        }
        let stamp = super::source::stamp_of(&st);
        let digest = match known {
            Some((s, d)) if s == stamp => Some(d),
            _ => {
                let mut file = fsx::open_file_at(&self.fd, name)?;
                fsx::read_limited(&mut file, hash_limit)?.map(|b| fsx::digest(&b))
            }
        };
        let file = DestFile::File {
            digest,
            mode: fsx::perm_bits(&st),
            uid: st.st_uid,
            gid: st.st_gid,
        };
        Ok((file, Some(stamp)))
    }

    /// The stamp of the regular file `name` (after an install), if it is one.
    pub(crate) fn stamp<P: ?Sized + nix::NixPath>(&self, name: &P) -> Option<Stamp> {
        let st = fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        fsx::odd_kind(&st)
            .is_none()
            .then(|| super::source::stamp_of(&st))
    }

    /// Atomically places `bytes` under `name` with permission bits `mode`.
    pub(crate) fn install(&self, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
        self.install_owned(name, bytes, mode, (None, None))
            .map(|_| ())
    }

    /// Like [`DestDir::install`], also setting owner and group (before the
    /// rename, so the file never appears with the wrong owner). Gives the
    /// installed file's stamp, taken through its descriptor after the
    /// rename (which changed its ctime).
    pub(crate) fn install_owned(
        &self,
        name: &str,
        bytes: &[u8],
        mode: u32,
        owner: (Option<Uid>, Option<Gid>),
    ) -> io::Result<Stamp> {
        // The pid asked once: a burst installs thousands of files.
        static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        let temp = format!(
            "{TEMP_PREFIX}{}-{}{TEMP_SUFFIX}",
            PID.get_or_init(std::process::id),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        // Created with its mode when that is what creating gives (one
        // syscall less a file: a burst installs thousands), else 0600 and
        // set below. Not when an owner or group is set: until the chown the
        // file would be open to the group it was created with.
        let exact = owner.0.is_none() && owner.1.is_none() && self.created_as(mode);
        let create_mode = if exact { mode } else { 0o600 };
        let fd = openat(
            &self.fd,
            temp.as_str(),
            flags,
            Mode::from_bits_truncate(create_mode),
        )?;
        let result = (|| -> io::Result<Stamp> {
            let mut file = std::fs::File::from(fd);
            file.write_all(bytes)?;
            if owner.0.is_some() || owner.1.is_some() {
                fchown(&file, owner.0, owner.1)?;
            }
            if !exact {
                fchmod(&file, Mode::from_bits_truncate(mode))?;
            }
            if !self.in_memory() {
                file.sync_all()?;
            }
            renameat(&self.fd, temp.as_str(), &self.fd, name)?;
            Ok(super::source::stamp_of(&fstat(&file)?))
        })();
        if result.is_err() {
            let _ = unlinkat(&self.fd, temp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        result
    }

    /// Whether a file created here with `mode` has exactly that mode: only
    /// permission bits, none the process umask takes away, and no default
    /// ACL on the dir (which would replace the umask) on a file system that
    /// has POSIX ACLs.
    fn created_as(&self, mode: u32) -> bool {
        let plain = *self.plain_modes.get_or_init(|| {
            // Only a file system that says "no such attribute": one that
            // has no POSIX ACLs (NFSv4, CIFS) may still give a new file
            // rights its mode does not show.
            matches!(
                rustix::fs::fgetxattr_query(&self.fd, "system.posix_acl_default"),
                Err(rustix::io::Errno::NODATA) | Ok(0)
            )
        });
        plain && mode & !0o777 == 0 && umask().is_some_and(|u| mode & u == 0)
    }

    /// Removes `name`; a name that is already gone is success.
    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Flushes renames and unlinks in this directory to stable storage.
    pub(crate) fn sync(&self) -> io::Result<()> {
        if self.in_memory() {
            return Ok(());
        }
        Ok(fsync(&self.fd)?)
    }

    /// Whether the dir is on tmpfs (`/run`, where udev rules and the state
    /// live on a host): there `fsync` is a no-op, so a burst of installs
    /// skips thousands of calls that would flush nothing. Asked once.
    fn in_memory(&self) -> bool {
        *self.in_memory.get_or_init(|| {
            nix::sys::statfs::fstatfs(&self.fd)
                .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
        })
    }

    /// Removes temp files left by a crashed run; returns their names.
    pub(crate) fn clean_stale_temps(&self) -> io::Result<Vec<String>> {
        let mut removed = Vec::new();
        let mut dir = Dir::from_fd(self.fd.try_clone()?)?;
        let names: Vec<String> = dir
            .iter()
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_owned))
            .filter(|n| n.starts_with(TEMP_PREFIX) && n.ends_with(TEMP_SUFFIX))
            .collect();
        for name in names {
            self.remove(&name)?;
            removed.push(name);
        }
        Ok(removed)
    }
}

/// The process's umask, read once from /proc (`umask(2)` can only be read
/// by setting it, which races other threads creating files).
fn umask() -> Option<u32> {
    static UMASK: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// An installed file has the mode asked for, whether it was created
    /// with it (no umask bit in the way) or set after (a mode the umask
    /// takes bits from).
    #[test]
    fn an_installed_file_has_exactly_its_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let d = DestDir::open(tmp.path()).unwrap();
        for mode in [0o644, 0o640, 0o600, 0o666, 0o777, 0o400] {
            let name = format!("f{mode:o}");
            d.install(&name, b"x", mode).unwrap();
            let got = std::fs::metadata(tmp.path().join(&name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(got & 0o7777, mode, "{name}");
        }
        // With a group set: created 0600, chowned, then given its mode.
        let gid = nix::unistd::Gid::current();
        d.install_owned("grouped", b"x", 0o640, (None, Some(gid)))
            .unwrap();
        let m = std::fs::metadata(tmp.path().join("grouped")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o640);
        assert_eq!(std::os::unix::fs::MetadataExt::gid(&m), gid.as_raw());
        if umask().is_some_and(|u| u & 0o022 != 0) {
            assert!(d.created_as(0o644) && !d.created_as(0o666));
        }
    }
}
