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
//! udev did not set again; `revoke: report` only reports it.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::{Bridge, Config};
use crate::core::usb::Device;
use crate::host::dest::DestDir;
use crate::host::usb as host;
use crate::usb_check::{grant_for, installed_rules, name_of_gid, name_of_uid};

/// A node's state before hostbridge's rules first granted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The bridge whose rules granted it.
    pub bridge: String,
    /// sysfs name of the device.
    pub sysname: String,
    /// VID:PID.
    pub id: String,
    /// Owner uid, group gid and mode before the grant.
    pub uid: u32,
    /// See `uid`.
    pub gid: u32,
    /// See `uid`.
    pub mode: u32,
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
        0o644,
    )
    .with_context(|| format!("writing {}", path(config).display()))
}

/// Before new rules of `bridge` take effect: records the node state of every
/// present device they grant that is not recorded yet.
pub fn record(
    config: &Config,
    bridge: &str,
    files: &[(String, crate::core::rules::parse::RulesFile)],
) -> Result<()> {
    let mut records = load(config);
    let before = records.len();
    for d in host::devices(&config.sysfs_root) {
        if records.contains_key(&key(&d)) || grant_for(files, &d).rules.is_empty() {
            continue;
        }
        if let Some(n) = host::node(&config.dev_root, &d) {
            let r = Record {
                bridge: bridge.into(),
                sysname: d.sysname.clone(),
                id: d.id(),
                uid: n.uid,
                gid: n.gid,
                mode: n.mode & 0o7777,
            };
            records.insert(key(&d), r);
        }
    }
    if records.len() != before {
        save(config, &records)?;
    }
    Ok(())
}

/// After a sync of `bridge` and its actions: handles recorded devices its
/// installed rules no longer grant. Returns one note per device.
pub async fn revoke(config: &Config, bridge: &Bridge, restore: bool) -> Result<Vec<String>> {
    let mut records = load(config);
    let mine: Vec<(String, Record)> = records
        .iter()
        .filter(|(_, r)| r.bridge == bridge.name)
        .map(|(k, r)| (k.clone(), r.clone()))
        .collect();
    if mine.is_empty() {
        return Ok(Vec::new());
    }
    let files = installed_rules(config, None)?;
    let devices = host::devices(&config.sysfs_root);
    let mut notes = Vec::new();
    for (k, rec) in mine {
        let Some(dev) = devices.iter().find(|d| key(d) == k && d.id() == rec.id) else {
            records.remove(&k); // unplugged: it comes back fresh
            continue;
        };
        if !grant_for(&files, dev).rules.is_empty() {
            continue; // still granted
        }
        let syspath = config.sysfs_root.join("bus/usb/devices").join(&dev.sysname);
        let args = [
            "trigger".to_string(),
            "--action=add".to_string(),
            syspath.display().to_string(),
        ];
        let _ = crate::host::actions::run(&config.udevadm, &args, Duration::from_secs(30)).await;
        let _ = crate::host::actions::run(
            &config.udevadm,
            &["settle".into(), "--timeout=30".into()],
            Duration::from_secs(35),
        )
        .await;
        notes.push(revoke_one(config, dev, &rec, restore));
        records.remove(&k);
    }
    save(config, &records)?;
    Ok(notes)
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
    let node_path = config
        .dev_root
        .join(format!("bus/usb/{:03}/{:03}", dev.busnum, dev.devnum));
    let was = perms(rec.uid, rec.gid, rec.mode);
    let Some(now) = host::node(&config.dev_root, dev) else {
        return format!("revoked {}: {} is gone", rec.id, node_path.display());
    };
    let left = perms(now.uid, now.gid, now.mode);
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
    let done = nix::unistd::chown(&node_path, Some(rec.uid.into()), Some(rec.gid.into()))
        .map_err(std::io::Error::from)
        .and_then(|()| {
            std::fs::set_permissions(&node_path, std::fs::Permissions::from_mode(rec.mode))
        });
    match done {
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
