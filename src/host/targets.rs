//! Finding and signalling the processes a `signal` action names. Host layer.
//!
//! A pid file is read like any other untrusted file: no symlink at any
//! component of its path, no FIFOs (opened non-blocking), regular files
//! only, at most 64 bytes, a decimal pid above 1. It must lie where only
//! root can write: a pid file in a dir someone else can write could name
//! any process. The pid must be alive under the proc root and be the
//! configured process (`/proc/PID/comm` or the exe's file name), so a stale
//! pid file whose pid was reused by another program is refused instead of
//! signalling a stranger; and hostbridge never signals itself.

use std::io::Read;
use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::sys::stat::fstat;
use nix::unistd::Pid;

use super::fsx;

/// Whether `path` lies where only root can put a pid file: no dir on the
/// way that another user owns, can write or has an ACL on, and no symlink
/// on the way (a dir that does not exist yet is no error here). Used by
/// `hostbridge check` and by the action itself.
pub(crate) fn check_place(path: &Path) -> Result<(), String> {
    let shown = path.display();
    if let Some((d, why)) = fsx::swappable_ancestors(path).into_iter().next() {
        return Err(format!(
            "pid file {shown} is in reach of another user ({} is {why}); refusing it: only root may be able to write a pid file hostbridge acts on (use unit: for a service)",
            d.display()
        ));
    }
    if let Some(dir) = path.parent()
        && let Err(e) = fsx::open_dir_strict(dir)
        && e.raw_os_error() != Some(nix::libc::ENOENT)
    {
        return Err(format!("pid file {shown}: {e}"));
    }
    Ok(())
}

/// Reads a pid file safely; `Err` says what is wrong.
pub(crate) fn read_pidfile(path: &Path) -> Result<i32, String> {
    let shown = path.display();
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err(format!("{shown} is not a file path"));
    };
    check_place(path)?;
    let dirfd = fsx::open_dir_strict(dir).map_err(|e| format!("pid file {shown}: {e}"))?;
    let mut file = match fsx::open_file_at(&dirfd, name) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(format!("pid file {shown} is a symlink; refusing it"));
        }
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => {
            return Err(format!("pid file {shown} does not exist (not running?)"));
        }
        Err(e) => return Err(format!("pid file {shown}: {e}")),
    };
    let st = fstat(&file).map_err(|e| format!("pid file {shown}: {e}"))?;
    if let Some(kind) = fsx::odd_kind(&st) {
        return Err(format!("pid file {shown} is {kind}; refusing it"));
    }
    // Written by root and by root alone (or by the uid hostbridge runs as):
    // a service writing its pid file as another user is named by its unit.
    let me = nix::unistd::geteuid().as_raw();
    if (st.st_uid != 0 && st.st_uid != me) || st.st_mode & 0o022 != 0 {
        return Err(format!(
            "pid file {shown} is owned by uid {} with mode {:04o}; refusing it: only a root-owned pid file that no one else can write is trusted (use unit: for a service)",
            st.st_uid,
            st.st_mode & 0o7777
        ));
    }
    let mut text = String::new();
    (&mut file)
        .take(64)
        .read_to_string(&mut text)
        .map_err(|e| format!("pid file {shown}: {e}"))?;
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 1 => Ok(pid),
        _ => Err(format!(
            "pid file {shown} does not hold a decimal pid above 1"
        )),
    }
}

/// Whether `pid` exists under the proc root.
pub(crate) fn alive(proc_root: &Path, pid: i32) -> bool {
    proc_root.join(pid.to_string()).is_dir()
}

/// `comm` and exe file name of `pid` (either may be missing).
pub(crate) fn names(proc_root: &Path, pid: i32) -> (Option<String>, Option<String>) {
    let dir = proc_root.join(pid.to_string());
    let comm = std::fs::read_to_string(dir.join("comm"))
        .ok()
        .map(|s| s.trim().to_string());
    let exe = std::fs::read_link(dir.join("exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    (comm, exe)
}

/// Whether `pid` is the program `name` (by comm, which the kernel truncates
/// to 15 bytes, or by exe file name).
pub(crate) fn is_named(proc_root: &Path, pid: i32, name: &str) -> bool {
    let (comm, exe) = names(proc_root, pid);
    let short: String = name.chars().take(15).collect();
    comm.as_deref() == Some(short.as_str()) || exe.as_deref() == Some(name)
}

/// Every live pid named `name` under the proc root.
pub(crate) fn find_by_name(proc_root: &Path, name: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            pid > 1 && pid != std::process::id() as i32 && is_named(proc_root, pid, name)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Why a signal was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The process is gone (ESRCH): it exited since it was found.
    Gone,
    /// Refused or failed, with the words.
    Failed(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Gone => f.write_str("the process is gone"),
            SendError::Failed(why) => f.write_str(why),
        }
    }
}

impl From<SendError> for String {
    fn from(e: SendError) -> String {
        e.to_string()
    }
}

/// Sends `signal` ("SIGHUP") to `pid`; never to hostbridge itself or init.
pub(crate) fn send(pid: i32, signal: &str) -> Result<(), SendError> {
    if pid <= 1 || pid == std::process::id() as i32 {
        return Err(SendError::Failed(format!(
            "pid {pid} is hostbridge itself or init; not signalling it"
        )));
    }
    let sig: Signal = signal
        .parse()
        .map_err(|_| SendError::Failed(format!("unknown signal {signal}")))?;
    match kill(Pid::from_raw(pid), sig) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::ESRCH) => Err(SendError::Gone),
        Err(e) => Err(SendError::Failed(format!("kill -{signal} {pid}: {e}"))),
    }
}
