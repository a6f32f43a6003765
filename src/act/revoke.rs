//! Revoking USB grants when their rules go away. Shell code over the host
//! layer (sysfs, /dev, udevadm) and the state dir.
//!
//! udev never takes a grant back: after a rule giving a node `660 dialout`
//! is removed, `udevadm trigger --action=change` leaves `660 dialout`, and
//! `--action=add` gives `664 dialout` (verified with a real systemd-udevd,
//! see ../shared/vm-recipe). So hostbridge records each node's owner, group
//! and mode before its rules first grant the device (in
//! `state_dir/usb-grants.json`: /run, so a reboot — when devices come up
//! fresh anyway — clears it). When a sync leaves a recorded device with no
//! grant, hostbridge asks udev what a fresh plug-in gives (`udevadm trigger
//! --action=add` for just that device, then `udevadm settle`) and, with
//! `revoke: restore` (the default), puts back whatever of the recorded state
//! udev did not set again; `revoke: report` only reports it. A device
//! plugged in after its grant has no such state: it is recorded when the
//! bridge's rules next change, and revoking does what a fresh plug-in does:
//! owner and group root, then udev's `add` with the rules that remain.
//!
//! The grants file is changed only under the state dir's lock (the one a
//! sync holds while it changes files), so a revocation and another
//! bridge's sync never lose each other's records. A restore changes the
//! node through a descriptor opened without following links, and only if
//! it is still a char device with the recorded device number.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::act::usb::{grant_for, installed_rules, name_of_gid, name_of_uid};
use crate::config::{Bridge, Config};
use crate::core::usb::Device;
use crate::host::dest::DestDir;
use crate::host::state::StateDir;
use crate::host::usb as host;

/// A node's state before hostbridge's rules first granted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The bridge whose rules granted it.
    pub(crate) bridge: String,
    /// sysfs name of the device.
    pub(crate) sysname: String,
    /// VID:PID.
    pub(crate) id: String,
    /// Owner uid, group gid and mode before the grant.
    pub(crate) uid: u32,
    /// See `uid`.
    pub(crate) gid: u32,
    /// See `uid`.
    pub(crate) mode: u32,
    /// The node's device number (`st_rdev`) when recorded: a restore
    /// touches only this very node. Absent in records of older versions.
    #[serde(default)]
    pub(crate) rdev: Option<u64>,
    /// Plugged in after the grant: udev granted it on plug-in, before
    /// hostbridge could see its earlier state, so `uid`, `gid` and `mode`
    /// are what the rules gave. Revoking does what a fresh plug-in does:
    /// owner and group back to root (as the kernel creates nodes), then
    /// udev's `add` applies whatever rules remain.
    #[serde(default)]
    pub(crate) fresh: bool,
    /// The node already granted something before hostbridge's rules did
    /// (an owner or group other than root, or write for others): a grant of
    /// rules no longer there, such as the path-unit glue hostbridge
    /// replaces. Its `owner:group mode`, for the log. Such a state is never
    /// put back: revoking treats the device as `fresh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) inherited: Option<String>,
}

/// Whether a node's state before hostbridge's grant is itself a grant
/// (see [`Record::inherited`]): the kernel creates USB nodes root-owned,
/// and no udev default lets others write.
fn inherited_grant(uid: u32, gid: u32, mode: u32) -> bool {
    uid != 0 || gid != 0 || mode & 0o002 != 0
}

fn path(config: &Config) -> PathBuf {
    config.state_dir.join("usb-grants.json")
}

fn key(d: &Device) -> String {
    format!("{:03}/{:03}", d.busnum, d.devnum)
}

fn load(config: &Config) -> BTreeMap<String, Record> {
    std::fs::read(path(config))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save(config: &Config, records: &BTreeMap<String, Record>) -> Result<()> {
    let dir = DestDir::open_or_create(&config.state_dir)?;
    dir.install(
        "usb-grants.json",
        &serde_json::to_vec_pretty(records)?,
        0o600,
    )
    .with_context(|| format!("writing {}", path(config).display()))
}

/// Before new rules of `bridge` take effect: records the node state of every
/// present device they grant that is not recorded yet. A device the rules
/// installed now already grant, unrecorded, was plugged in after the grant:
/// it gets a `fresh` record. The caller holds the state lock (a per-file
/// `flock`: taking it again here would deadlock).
pub(crate) fn record(
    config: &Config,
    bridge: &str,
    files: &[(String, crate::core::rules::parse::RulesFile)],
) -> Result<()> {
    let mut records = load(config);
    let before = records.len();
    // Read (and parsed) only when a device not recorded yet is plugged in.
    let mut installed = None;
    for d in host::devices(&config.sysfs_root) {
        if records.contains_key(&key(&d)) {
            continue;
        }
        let installed = match &installed {
            Some(files) => files,
            None => installed.insert(installed_rules(config, Some(bridge))?),
        };
        let fresh = !grant_for(installed, &d).rules.is_empty();
        if !fresh && grant_for(files, &d).rules.is_empty() {
            continue;
        }
        if let Some(n) = host::node(&config.dev_root, &d) {
            let inherited = (!fresh && inherited_grant(n.uid, n.gid, n.mode))
                .then(|| perms(n.uid, n.gid, n.mode));
            let r = Record {
                bridge: bridge.into(),
                sysname: d.sysname.clone(),
                id: d.id(),
                uid: n.uid,
                gid: n.gid,
                mode: n.mode & 0o7777,
                rdev: n.rdev,
                fresh: fresh || inherited.is_some(),
                inherited,
            };
            records.insert(key(&d), r);
        }
    }
    if records.len() != before {
        save(config, &records)?;
    }
    Ok(())
}

/// A recorded device still plugged in, and for a `fresh` one how resetting
/// its owner went.
type Present = (Device, Option<std::io::Result<()>>);

/// After a sync of `bridge` and its actions: handles recorded devices its
/// installed rules no longer grant. Returns one note per device.
///
/// The lock is not held while udevadm runs: the records are read, the
/// add triggers run, and then, under the lock, the records are read again
/// and only the ones handled here are restored and removed.
pub(crate) async fn revoke(config: &Config, bridge: &Bridge, restore: bool) -> Result<Vec<String>> {
    let mine: Vec<(String, Record)> = load(config)
        .into_iter()
        .filter(|(_, r)| r.bridge == bridge.name)
        .collect();
    if mine.is_empty() {
        return Ok(Vec::new());
    }
    let files = installed_rules(config, None)?;
    let devices = host::devices(&config.sysfs_root);
    // Each record that needs handling, with its device if still plugged in.
    let mut todo: Vec<(String, Record, Option<Present>)> = Vec::new();
    for (k, rec) in mine {
        let Some(dev) = devices.iter().find(|d| key(d) == k && d.id() == rec.id) else {
            todo.push((k, rec, None)); // unplugged: it comes back fresh
            continue;
        };
        if !grant_for(&files, dev).rules.is_empty() {
            continue; // still granted
        }
        // Plugged in after the grant: as the kernel creates a node, owner
        // and group root; udev's `add` then applies the rules that remain.
        let reset = (rec.fresh && restore).then(|| reset_owner(config, dev, &rec));
        let syspath = config.sysfs_root.join("bus/usb/devices").join(&dev.sysname);
        let args = [
            "trigger".to_string(),
            "--action=add".to_string(),
            syspath.display().to_string(),
        ];
        let _ = crate::host::actions::run_command(&config.udevadm, &args, Duration::from_secs(30))
            .await;
        todo.push((k, rec, Some((dev.clone(), reset))));
    }
    if todo.iter().any(|(_, _, d)| d.is_some()) {
        let _ = crate::host::actions::run_command(
            &config.udevadm,
            &["settle".into(), "--timeout=30".into()],
            Duration::from_secs(35),
        )
        .await;
    }
    if todo.is_empty() {
        return Ok(Vec::new());
    }
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let _lock = StateDir::new(&config.state_dir).lock()?;
        let mut records = load(&config);
        // Rules installed meanwhile (another bridge's sync, or one by hand)
        // may grant the device again: decide on what is installed now.
        let files = installed_rules(&config, None)?;
        let mut notes = Vec::new();
        for (k, rec, dev) in todo {
            // Handled meanwhile (a `hostbridge sync` by hand), or re-recorded.
            if records.get(&k) != Some(&rec) {
                continue;
            }
            if let Some((dev, reset)) = dev {
                if !grant_for(&files, &dev).rules.is_empty() {
                    continue; // granted again: the record stays
                }
                notes.push(match reset {
                    Some(reset) => fresh_note(&config, &dev, &rec, reset),
                    None => revoke_one(&config, &dev, &rec, restore),
                });
            }
            records.remove(&k);
        }
        save(&config, &records)?;
        Ok(notes)
    })
    .await
    .context("revocation task failed")?
}

fn node_path(config: &Config, dev: &Device) -> PathBuf {
    config
        .dev_root
        .join(format!("bus/usb/{:03}/{:03}", dev.busnum, dev.devnum))
}

fn perms(uid: u32, gid: u32, mode: u32) -> String {
    format!(
        "{}:{} {:04o}",
        name_of_uid(uid),
        name_of_gid(gid),
        mode & 0o777
    )
}

fn revoke_one(config: &Config, dev: &Device, rec: &Record, restore: bool) -> String {
    let node_path = node_path(config, dev);
    let Some(now) = host::node(&config.dev_root, dev) else {
        return format!("revoked {}: {} is gone", rec.id, node_path.display());
    };
    let was = perms(rec.uid, rec.gid, rec.mode);
    let left = perms(now.uid, now.gid, now.mode);
    if rec.fresh {
        // Only with `revoke: report`: a restore of a fresh record is reset
        // before udev's add instead (see `fresh_note`).
        return format!(
            "revoked {}: {} still has {left} (plugged in after the grant, so nothing was recorded before it); revoke: report leaves it",
            rec.id,
            node_path.display()
        );
    }
    if left == was {
        return format!(
            "revoked {}: udev put {} back to {was} itself",
            rec.id,
            node_path.display()
        );
    }
    if !restore {
        return format!(
            "revoked {}: {} still has {left} (before the grant: {was}); revoke: report leaves it",
            rec.id,
            node_path.display()
        );
    }
    match restore_node(&node_path, rec) {
        Ok(()) => format!(
            "revoked {}: restored {} to {was} (udev left {left})",
            rec.id,
            node_path.display()
        ),
        Err(e) => format!(
            "revoked {}: restoring {} to {was} failed: {e}",
            rec.id,
            node_path.display()
        ),
    }
}

/// Gives a `fresh` device's node owner and group root, keeping its mode
/// (through [`restore_node`]: no links, only the recorded device).
fn reset_owner(config: &Config, dev: &Device, rec: &Record) -> std::io::Result<()> {
    let mode = host::node(&config.dev_root, dev)
        .ok_or_else(|| std::io::Error::other("it is gone"))?
        .mode;
    let root = Record {
        uid: 0,
        gid: 0,
        mode,
        ..rec.clone()
    };
    restore_node(&node_path(config, dev), &root)
}

/// What revoking a `fresh` device did: reset owner and group, then udev's
/// `add` gave the node what it has now.
fn fresh_note(config: &Config, dev: &Device, rec: &Record, reset: std::io::Result<()>) -> String {
    let node_path = node_path(config, dev);
    let now = host::node(&config.dev_root, dev)
        .map_or_else(|| "nothing (gone)".into(), |n| perms(n.uid, n.gid, n.mode));
    let why = match &rec.inherited {
        Some(was) => format!(
            "before hostbridge's grant it had {was}, a grant of rules no longer installed (an earlier glue's?), which is not put back"
        ),
        None => "plugged in after the grant".to_string(),
    };
    match reset {
        Ok(()) => format!(
            "revoked {}: {why}, so reset {} to root:root as a fresh node and let udev's add apply the remaining rules: {now}",
            rec.id,
            node_path.display()
        ),
        Err(e) => format!(
            "revoked {}: resetting {} to root:root failed: {e}; it has {now}",
            rec.id,
            node_path.display()
        ),
    }
}

/// Puts back the recorded owner, group and mode of the node at `path`:
/// opened with `O_PATH | O_NOFOLLOW`, checked to be a char device with the
/// recorded device number, and changed through that descriptor, so a link
/// or another file put in its place is never touched.
fn restore_node(path: &Path, rec: &Record) -> std::io::Result<()> {
    use nix::fcntl::{AtFlags, OFlag, open};
    use nix::sys::stat::{Mode, SFlag, fstat};
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = open(path, flags, Mode::empty())?;
    let st = fstat(&fd)?;
    let is_char = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    if !is_char {
        return Err(std::io::Error::other(
            "it is not a char device (left alone)",
        ));
    }
    if rec.rdev.is_some_and(|r| r != st.st_rdev) {
        return Err(std::io::Error::other(
            "it is another device than the one recorded (left alone)",
        ));
    }
    // chmod has no AT_EMPTY_PATH form before Linux 6.6 (fchmodat2), and an
    // O_PATH descriptor refuses fchmod: go through its /proc/self/fd link,
    // which names this inode whatever happens to the path. First, so that
    // without /proc nothing is changed at all.
    let link = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    std::fs::set_permissions(link, std::fs::Permissions::from_mode(rec.mode))?;
    nix::unistd::fchownat(
        &fd,
        "",
        Some(rec.uid.into()),
        Some(rec.gid.into()),
        AtFlags::AT_EMPTY_PATH,
    )?;
    Ok(())
}
