//! Users and groups, as the host's NSS knows them (what udevd and the
//! kernel see): the one place hostbridge asks. Host layer.

use std::ffi::CString;

use nix::unistd::{Gid, Group, Uid, User as NixUser, getgrouplist};

use crate::core::usb::User;

/// gid of a group name, if the host knows it.
pub(crate) fn gid_of(name: &str) -> Option<u32> {
    Group::from_name(name).ok()?.map(|g| g.gid.as_raw())
}

/// uid of a user name, if the host knows it.
pub(crate) fn uid_of(name: &str) -> Option<u32> {
    NixUser::from_name(name).ok()?.map(|u| u.uid.as_raw())
}

/// The group `name`, or an error saying it does not exist (or why the
/// lookup failed).
pub(crate) fn group(name: &str, what: &str) -> std::io::Result<Gid> {
    Group::from_name(name)?.map(|g| g.gid).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{what} {name:?} does not exist on this host"),
        )
    })
}

/// The user `name`, or an error saying it does not exist.
pub(crate) fn user_id(name: &str, what: &str) -> std::io::Result<Uid> {
    NixUser::from_name(name)?.map(|u| u.uid).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{what} {name:?} does not exist on this host"),
        )
    })
}

/// A user with all their groups.
pub(crate) fn user(name: &str) -> Option<User> {
    let u = NixUser::from_name(name).ok()??;
    let cname = CString::new(name).ok()?;
    let gids = getgrouplist(&cname, u.gid)
        .ok()?
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    Some(User {
        name: name.to_string(),
        uid: u.uid.as_raw(),
        gids,
    })
}

/// The name of `uid`, or the number when the host has none.
pub(crate) fn name_of_uid(uid: u32) -> String {
    NixUser::from_uid(uid.into())
        .ok()
        .flatten()
        .map_or(uid.to_string(), |u| u.name)
}

/// The name of `gid`, or the number when the host has none.
pub(crate) fn name_of_gid(gid: u32) -> String {
    Group::from_gid(gid.into())
        .ok()
        .flatten()
        .map_or(gid.to_string(), |g| g.name)
}
