//! A user as a container sees it: resolved from the container image's own
//! `/etc/passwd` and `/etc/group` (not the host's, whose ids may differ), and
//! whether that user can open a device node the host's udev prepared. Pure:
//! texts and numbers in, a verdict out.

use super::usb::{Node, User, can_open};

/// Resolves `name` from the texts of an image's `/etc/passwd` and
/// `/etc/group`: its uid, primary gid and the gids of the groups that list
/// it. `Err` says what is missing.
pub(crate) fn resolve(passwd: &str, group: &str, name: &str) -> Result<User, String> {
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() == 7 && f[0] == name)
        .ok_or_else(|| format!("the image has no user {name:?} in /etc/passwd"))?;
    let uid = entry[2]
        .parse()
        .map_err(|_| format!("user {name:?} has uid {:?}", entry[2]))?;
    let gid: u32 = entry[3]
        .parse()
        .map_err(|_| format!("user {name:?} has gid {:?}", entry[3]))?;
    let mut gids = vec![gid];
    for f in group.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
        if f.len() == 4
            && f[3].split(',').any(|m| m == name)
            && let Ok(g) = f[2].parse()
            && !gids.contains(&g)
        {
            gids.push(g);
        }
    }
    Ok(User {
        name: name.to_string(),
        uid,
        gids,
    })
}

/// Splits the output of `cat /etc/passwd /etc/group` into the two files by
/// their field counts (7 and 4 colon-separated fields).
pub(crate) fn split_passwd_group(text: &str) -> (String, String) {
    let (mut passwd, mut group) = (String::new(), String::new());
    for l in text.lines() {
        let into = match l.split(':').count() {
            7 => &mut passwd,
            4 => &mut group,
            _ => continue,
        };
        into.push_str(l);
        into.push('\n');
    }
    (passwd, group)
}

/// Whether `who` (the container's user, `what` saying whose) can open the
/// node at `path` as the host's udev left it; `host_group` names the
/// node's gid on the host. `Err` says why not and which gid the rule must
/// grant.
pub(crate) fn judge(
    who: &User,
    what: &str,
    path: &str,
    node: &Node,
    host_group: &str,
) -> Result<(), String> {
    let Err(why) = can_open(who, node) else {
        return Ok(());
    };
    let ids = format!(
        "uid {}, gid {}{}",
        who.uid,
        who.gids[0],
        if who.gids.len() > 1 {
            format!(
                ", groups {}",
                who.gids[1..]
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        } else {
            String::new()
        }
    );
    let node_desc = format!(
        "{path} is uid {}, group {host_group} (gid {}) on this host, mode {:04o}",
        node.uid,
        node.gid,
        node.mode & 0o777
    );
    let fix = if node.mode & 0o060 == 0o060 {
        format!(
            "the rule's group must be a host group with gid {gid} (the container's): `groupmod -g {gid} {host_group}` on the host, then `systemctl restart systemd-udevd` (it resolves group names when it loads the rules) and `udevadm trigger --action=add --subsystem-match=usb`",
            gid = who.gids[0]
        )
    } else {
        "the rule must grant its group read and write (MODE=\"0660\" or \"0664\")".to_string()
    };
    Err(format!(
        "{what} ({ids}) cannot open it: {node_desc} ({why}); {fix}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        nut:x:101:101:Network UPS Tools:/var/lib/nut:/usr/sbin/nologin\n\
        odd:x:abc:1::/:/bin/false\n";
    const GROUP: &str = "root:x:0:\nnut:x:101:\ndialout:x:20:nut,root\nplugdev:x:46:someone\n";

    fn node(gid: u32, mode: u32) -> Node {
        Node {
            is_char: true,
            uid: 0,
            gid,
            mode,
            rdev: None,
        }
    }

    #[test]
    fn a_user_is_resolved_from_the_images_own_files() {
        let nut = resolve(PASSWD, GROUP, "nut").unwrap();
        assert_eq!((nut.uid, nut.gids.clone()), (101, vec![101, 20]));
        assert!(
            resolve(PASSWD, GROUP, "upsd")
                .unwrap_err()
                .contains("no user \"upsd\"")
        );
        assert!(
            resolve(PASSWD, GROUP, "odd")
                .unwrap_err()
                .contains("uid \"abc\"")
        );
        // Both files in one text, as `cat /etc/passwd /etc/group` prints them.
        let (p, g) = split_passwd_group(&format!("{PASSWD}{GROUP}"));
        assert_eq!(resolve(&p, &g, "nut").unwrap(), nut);
    }

    #[test]
    fn the_verdict_names_the_gid_the_rule_must_grant() {
        let nut = resolve(PASSWD, GROUP, "nut").unwrap();
        let path = "/dev/bus/usb/003/002";
        let what = "nut in the image";
        // The host's nut group has the container's gid: it opens.
        assert_eq!(judge(&nut, what, path, &node(101, 0o664), "nut"), Ok(()));
        // Or a group the container's user is in anyway.
        assert_eq!(judge(&nut, what, path, &node(20, 0o660), "dialout"), Ok(()));
        // The host's nut group has another gid.
        let why = judge(&nut, what, path, &node(990, 0o664), "nut").unwrap_err();
        assert!(
            why.starts_with("nut in the image (uid 101, gid 101, groups 20) cannot open it"),
            "{why}"
        );
        assert!(why.contains("group nut (gid 990)"), "{why}");
        assert!(why.contains("`groupmod -g 101 nut`"), "{why}");
        // A group without write.
        let why = judge(&nut, what, path, &node(101, 0o644), "nut").unwrap_err();
        assert!(why.contains("MODE=\"0660\""), "{why}");
        // Others may write: anyone opens it.
        assert_eq!(judge(&nut, what, path, &node(990, 0o666), "nut"), Ok(()));
    }
}
