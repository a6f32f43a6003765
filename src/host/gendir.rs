//! Set-at-once installs into a destination ("symlink-dir" swap), the layout
//! Kubernetes uses for projected volumes. Host layer.
//!
//! ```text
//! dest/..2026_11_22_12_05_03.123456789/tls.crt   a generation: the whole set
//! dest/..2026_11_22_12_05_03.123456789/tls.key
//! dest/..data -> ..2026_11_22_12_05_03.123456789 the current generation
//! dest/tls.crt -> ..data/tls.crt                 what readers open
//! dest/tls.key -> ..data/tls.key
//! ```
//!
//! A new set is written into a fresh generation dir (each file fsynced),
//! then one `rename` of a new `..data` link over the old one swaps the whole
//! set. A reader that opens `tls.crt` and then `tls.key` can never get a
//! newer certificate with an older key; a reader that opens `..data` once and
//! reads both files relative to it always gets one consistent set. The
//! previous generation is kept (a reader may still be inside it); older ones
//! are removed.

use std::io::{self, Write};
use std::os::fd::OwnedFd;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat, renameat};
use nix::sys::stat::{Mode, fchmod, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fsync, symlinkat, unlinkat};

use super::dest::DestDir;
use super::fsx;
use crate::core::plan::DestFile;

/// Name of the link to the current generation.
pub(crate) const DATA: &str = "..data";

/// The content of one file in a new generation.
pub(crate) struct Entry<'a> {
    /// File name.
    pub(crate) name: &'a str,
    /// Content.
    pub(crate) bytes: &'a [u8],
}

/// Describes `name` as readers see it: through its `..data` link. A regular
/// file (from before symlink-dir was turned on) is described as itself.
pub(crate) fn describe(dest: &DestDir, name: &str, hash_limit: u64) -> io::Result<DestFile> {
    let fd = dest.fd();
    let st = match fstatat(fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(DestFile::Absent),
        Err(e) => return Err(e.into()),
    };
    if fsx::odd_kind(&st) != Some("a symlink") {
        return dest.describe(name, hash_limit);
    }
    let target = readlinkat(fd, name)?;
    if target.to_str() != Some(&format!("{DATA}/{name}")) {
        return Ok(DestFile::Other("a symlink not managed by hostbridge"));
    }
    let data = match open_current(dest) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => return Ok(DestFile::Absent),
        Err(e) => return Err(e),
    };
    DestDir::from_fd(data, dest.path().join(DATA)).describe(name, hash_limit)
}

/// Writes `entries` as a new generation, swaps `..data` to it, points a
/// top-level link at each entry, removes links in `gone`, and removes
/// generations older than the previous one.
pub(crate) fn publish(
    dest: &DestDir,
    entries: &[Entry<'_>],
    gone: &[String],
    mode: u32,
    owner: (Option<Uid>, Option<Gid>),
) -> io::Result<()> {
    let fd = dest.fd();
    let generation = generation_name();
    mkdirat(fd, generation.as_str(), Mode::from_bits_truncate(0o755))?;
    let gen_fd = fsx::open_dir_at(fd, &generation)?;
    for e in entries {
        let file = openat(
            &gen_fd,
            e.name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )?;
        let mut file = std::fs::File::from(file);
        file.write_all(e.bytes)?;
        if owner.0.is_some() || owner.1.is_some() {
            fchown(&file, owner.0, owner.1)?;
        }
        fchmod(&file, Mode::from_bits_truncate(mode))?;
        file.sync_all()?;
    }
    fsync(&gen_fd)?;
    let previous = readlinkat(fd, DATA).ok();
    point_data_at(fd, &generation)?;
    for e in entries {
        ensure_link(fd, e.name)?;
    }
    for name in gone {
        match fstatat(fd, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(_) => dest.remove(name)?,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    fsync(fd)?;
    let keep = [
        Some(generation),
        previous.and_then(|p| p.into_string().ok()),
    ];
    remove_old_generations(dest, &keep)
}

/// Points `..data` back at the generation before the current one (the
/// one [`publish`] keeps: the only other), by one rename as a swap does,
/// makes the links agree with it, and removes the generation rolled back
/// from, so a second roll back finds nothing (rather than the set that
/// just failed). Returns its name, or `None` when there is no earlier
/// generation. Chosen by what `publish` kept, not by comparing names, so a
/// wall clock stepped back cannot pick the wrong one.
pub(crate) fn roll_back(dest: &DestDir) -> io::Result<Option<String>> {
    let fd = dest.fd();
    let current = readlinkat(fd, DATA)?
        .into_string()
        .map_err(|t| io::Error::other(format!("{DATA} points at {t:?}")))?;
    // `publish` keeps one besides the current; more only after a crash
    // mid-cleanup, when the newest is the one it meant to keep.
    let Some(earlier) = generations(dest)?
        .into_iter()
        .filter(|n| *n != current)
        .max()
    else {
        return Ok(None);
    };
    point_data_at(fd, &earlier)?;
    reconcile_links(dest)?;
    remove_old_generations(dest, &[Some(earlier.clone())])?;
    fsync(fd)?;
    Ok(Some(earlier))
}

/// Points `..data` at `generation`: one rename of a fresh link over it, so
/// the whole set changes at once.
fn point_data_at(fd: &OwnedFd, generation: &str) -> io::Result<()> {
    let tmp_link = "..data_tmp";
    let _ = unlinkat(fd, tmp_link, UnlinkatFlags::NoRemoveDir);
    symlinkat(generation, fd, tmp_link)?;
    renameat(fd, tmp_link, fd, DATA)?;
    Ok(())
}

/// The names of the generation dirs in `dest`.
fn generations(dest: &DestDir) -> io::Result<Vec<String>> {
    let mut names = names_in(dest.fd())?;
    names.retain(|n| is_generation(n));
    Ok(names)
}

/// Opens the current generation dir: `..data` is read as a link and must
/// name a generation in this dir; nothing is followed blindly.
fn open_current(dest: &DestDir) -> io::Result<OwnedFd> {
    let target = readlinkat(dest.fd(), DATA)?;
    let name = target
        .to_str()
        .filter(|t| is_generation(t))
        .ok_or_else(|| {
            io::Error::other(format!("{DATA} points at {target:?}, not a generation"))
        })?;
    fsx::open_dir_at(dest.fd(), name)
}

/// `name -> ..data/name`, replacing whatever link or file was there.
fn ensure_link(fd: &OwnedFd, name: &str) -> io::Result<()> {
    let want = format!("{DATA}/{name}");
    if readlinkat(fd, name).is_ok_and(|t| t.to_str() == Some(want.as_str())) {
        return Ok(());
    }
    let tmp = format!("..link-{name}");
    let _ = unlinkat(fd, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    symlinkat(want.as_str(), fd, tmp.as_str())?;
    renameat(fd, tmp.as_str(), fd, name)?;
    Ok(())
}

fn generation_name() -> String {
    let now = super::clock::since_epoch();
    format!("..{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// Generation dirs are `..` followed by digits.
fn is_generation(name: &str) -> bool {
    name.strip_prefix("..")
        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
}

fn remove_old_generations(dest: &DestDir, keep: &[Option<String>]) -> io::Result<()> {
    let old = generations(dest)?
        .into_iter()
        .filter(|n| !keep.iter().flatten().any(|k| k == n));
    for name in old {
        let gen_fd = fsx::open_dir_at(dest.fd(), &name)?;
        for f in names_in(&gen_fd)? {
            let _ = unlinkat(&gen_fd, f.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        unlinkat(dest.fd(), name.as_str(), UnlinkatFlags::RemoveDir)?;
    }
    Ok(())
}

/// Makes the top-level links agree with the current generation, as a crash
/// between the `..data` swap and the link updates can leave them: a link
/// `NAME -> ..data/NAME` whose file the generation lacks is removed, a
/// file of the generation without its link gets one, and the temporary
/// links of an interrupted swap are removed. Returns what it did, one line
/// each. Nothing happens without a `..data` (not a symlink-dir destination
/// yet).
pub(crate) fn reconcile_links(dest: &DestDir) -> io::Result<Vec<String>> {
    let data = match open_current(dest) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let in_generation: std::collections::BTreeSet<String> = names_in(&data)?.into_iter().collect();
    let fd = dest.fd();
    let mut done = Vec::new();
    for name in names_in(fd)? {
        let managed = readlinkat(fd, name.as_str())
            .ok()
            .and_then(|t| t.into_string().ok())
            .and_then(|t| t.strip_prefix(&format!("{DATA}/")).map(str::to_owned));
        let stale_tmp = name == "..data_tmp" || name.starts_with("..link-");
        if stale_tmp && readlinkat(fd, name.as_str()).is_ok() {
            unlinkat(fd, name.as_str(), UnlinkatFlags::NoRemoveDir)?;
            done.push(format!("removed {name}, left by an interrupted swap"));
        } else if managed.as_deref() == Some(name.as_str()) && !in_generation.contains(&name) {
            unlinkat(fd, name.as_str(), UnlinkatFlags::NoRemoveDir)?;
            done.push(format!(
                "removed the link {name}: the current generation has no such file (an interrupted swap)"
            ));
        }
    }
    for name in &in_generation {
        match fstatat(fd, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => {
                ensure_link(fd, name)?;
                done.push(format!(
                    "linked {name} to the current generation (an interrupted swap)"
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !done.is_empty() {
        fsync(fd)?;
    }
    Ok(done)
}

/// The entries of a dir, without `.` and `..`.
fn names_in(fd: &OwnedFd) -> io::Result<Vec<String>> {
    let mut dir = Dir::from_fd(fd.try_clone()?)?;
    Ok(dir
        .iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().ok().map(str::to_owned))
        .filter(|n| n != "." && n != "..")
        .collect())
}

/// Reads the current content of `name` (through `..data`, or a plain file).
pub(crate) fn read_current(dest: &DestDir, name: &str, limit: u64) -> io::Result<Vec<u8>> {
    let is_link = readlinkat(dest.fd(), name).is_ok();
    let mut file = if is_link {
        let data = open_current(dest)?;
        fsx::open_file_at(&data, name)?
    } else {
        fsx::open_file_at(dest.fd(), name)?
    };
    fsx::read_limited(&mut file, limit)?
        .ok_or_else(|| io::Error::other(format!("{name} is larger than {limit} bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(dest: &DestDir, content: &[u8]) {
        let e = [Entry {
            name: "tls.crt",
            bytes: content,
        }];
        publish(dest, &e, &[], 0o644, (None, None)).unwrap();
    }

    #[test]
    fn a_roll_back_goes_to_the_kept_set_once() {
        let dir = tempfile::tempdir().unwrap();
        let dest = DestDir::open(dir.path()).unwrap();
        assert!(roll_back(&dest).is_err(), "no ..data yet");
        set(&dest, b"A");
        assert_eq!(
            roll_back(&dest).unwrap(),
            None,
            "nothing before the first set"
        );
        set(&dest, b"B");
        set(&dest, b"C");
        assert_eq!(std::fs::read(dir.path().join("tls.crt")).unwrap(), b"C");
        assert!(roll_back(&dest).unwrap().is_some());
        assert_eq!(std::fs::read(dir.path().join("tls.crt")).unwrap(), b"B");
        // The set rolled back from is gone: no second roll back to it.
        assert_eq!(roll_back(&dest).unwrap(), None);
        assert_eq!(std::fs::read(dir.path().join("tls.crt")).unwrap(), b"B");
        let gens = names_in(dest.fd())
            .unwrap()
            .into_iter()
            .filter(|n| is_generation(n))
            .count();
        assert_eq!(gens, 1);
    }
}
