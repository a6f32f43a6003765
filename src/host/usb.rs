//! Reads USB devices from sysfs and their nodes from /dev, under configurable
//! roots so tests use fake trees; looks users up on the host. Host layer.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::core::usb::{Device, Node, User};

fn attr(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// USB devices under `sysfs_root/bus/usb/devices` (interfaces skipped).
pub(crate) fn devices(sysfs_root: &Path) -> Vec<Device> {
    let dir = sysfs_root.join("bus/usb/devices");
    let mut out: Vec<Device> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(':') {
                return None; // an interface, not a device
            }
            let p = e.path();
            Some(Device {
                vendor: attr(&p, "idVendor")?.to_ascii_lowercase(),
                product: attr(&p, "idProduct")?.to_ascii_lowercase(),
                busnum: attr(&p, "busnum")?.parse().ok()?,
                devnum: attr(&p, "devnum")?.parse().ok()?,
                manufacturer: attr(&p, "manufacturer"),
                name: attr(&p, "product"),
                serial: attr(&p, "serial"),
                sysname: name,
            })
        })
        .collect();
    out.sort_by_key(|d| (d.busnum, d.devnum));
    out
}

/// The node `dev_root/bus/usb/BBB/DDD`, without following links.
pub(crate) fn node(dev_root: &Path, dev: &Device) -> Option<Node> {
    let path = dev_root.join(format!("bus/usb/{:03}/{:03}", dev.busnum, dev.devnum));
    let m = path.symlink_metadata().ok()?;
    let is_char = m.file_type().is_char_device();
    Some(Node {
        is_char,
        uid: m.uid(),
        gid: m.gid(),
        mode: m.mode() & 0o7777,
        rdev: is_char.then(|| m.rdev()),
    })
}

/// Longest the open probe of one node may take.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Really opens `node` read-write as `user` in a child process and reports
/// the result (`--probe`). The child is `setpriv` (util-linux, on Debian and
/// Fedora CoreOS) dropping to the user's uid, gid and supplementary groups
/// and then running `hostbridge __probe-open NODE`: std's `Command` cannot
/// set supplementary groups on stable Rust without unsafe code, which this
/// crate forbids.
pub(crate) fn probe(setpriv: &Path, user: &User, node: &Path) -> Result<(), String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find hostbridge's own binary: {e}"))?;
    let groups: Vec<String> = user.gids.iter().map(u32::to_string).collect();
    let primary = user.gids.first().copied().unwrap_or(user.uid);
    let mut cmd = super::child::command(setpriv);
    cmd.arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={primary}"))
        .arg(if groups.is_empty() {
            "--clear-groups".to_string()
        } else {
            format!("--groups={}", groups.join(","))
        })
        .args([
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ])
        .arg(exe)
        .arg("__probe-open")
        .arg(node);
    // An open of a device node is non-blocking, but a driver can still
    // stall it: the probe has a bound like every child.
    let out = super::child::output_within(cmd, PROBE_TIMEOUT)
        .map_err(|e| format!("cannot run {}: {e}", setpriv.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// The child side of [`probe`]: open `path` read-write (no create, no
/// controlling tty, non-blocking) and close it. Returns a message on failure.
pub(crate) fn probe_open(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOCTTY | nix::libc::O_NONBLOCK)
        .open(path)
        .map(drop)
        .map_err(|e| {
            format!(
                "uid {} cannot open {} read-write: {e}",
                nix::unistd::getuid(),
                path.display()
            )
        })
}
