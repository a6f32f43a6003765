//! Whether a directory on a path is in someone else's hands: who besides
//! root can rename, replace or create entries in it. Pure: decides from
//! stat data passed in.
//!
//! A directory is out of root's sole control when it is owned by another
//! uid, or carries an access ACL (which can grant anyone write access
//! behind plain mode bits), or is group-writable (even by group root: a
//! non-root process with gid 0 is common), or world-writable; the sticky bit (`/tmp`) takes that back for an
//! entry owned by root, which only root may then rename or delete. "Root"
//! is uid 0 and the uid hostbridge runs as (the same, but for tests run
//! unprivileged).

/// What is known of one directory on the way down a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirStat {
    /// Owner uid.
    pub(crate) uid: u32,
    /// Group gid.
    pub(crate) gid: u32,
    /// Permission bits (with sticky).
    pub(crate) mode: u32,
    /// Whether it carries a POSIX access ACL.
    pub(crate) acl: bool,
}

/// Why `dir` lets someone other than root (or `me`, the uid hostbridge
/// runs as) change which inode its entry `child_uid` (the owner of the next
/// component, `None` if it does not exist) is, or `None` if only they can.
pub(crate) fn others_can_swap(dir: DirStat, child_uid: Option<u32>, me: u32) -> Option<String> {
    let ours = |uid: u32| uid == 0 || uid == me;
    if !ours(dir.uid) {
        return Some(format!("owned by uid {}", dir.uid));
    }
    if dir.acl {
        return Some("given an access ACL (which may let others write)".into());
    }
    // Group root too: non-root processes with gid 0 are common (images
    // built to run as "1001:0").
    let group_writable = dir.mode & 0o020 != 0;
    let world_writable = dir.mode & 0o002 != 0;
    if !group_writable && !world_writable {
        return None;
    }
    let sticky = dir.mode & 0o1000 != 0;
    if sticky && child_uid.is_some_and(ours) {
        return None;
    }
    Some(if world_writable {
        format!("writable by everyone (mode {:04o})", dir.mode)
    } else {
        format!("writable by group {} (mode {:04o})", dir.gid, dir.mode)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(uid: u32, gid: u32, mode: u32) -> DirStat {
        DirStat {
            uid,
            gid,
            mode,
            acl: false,
        }
    }

    #[test]
    fn table() {
        let cases: &[(DirStat, Option<u32>, Option<&str>)] = &[
            (d(0, 0, 0o755), Some(0), None),
            (d(0, 0, 0o775), Some(0), Some("writable by group 0")),
            (d(1000, 1000, 0o755), Some(0), Some("owned by uid 1000")),
            (d(0, 100, 0o775), Some(0), Some("writable by group 100")),
            (d(0, 0, 0o777), Some(0), Some("writable by everyone")),
            (d(0, 0, 0o1777), Some(0), None), // /tmp, root's entry
            (d(0, 0, 0o1777), Some(1000), Some("writable by everyone")),
            (d(0, 0, 0o1777), None, Some("writable by everyone")),
            (d(500, 500, 0o755), Some(0), None), // our own uid (unprivileged run)
            (d(0, 0, 0o1777), Some(500), None),
            (
                DirStat {
                    acl: true,
                    ..d(0, 0, 0o755)
                },
                Some(0),
                Some("access ACL"),
            ),
        ];
        for (dir, child, want) in cases {
            let got = others_can_swap(*dir, *child, 500);
            match want {
                None => assert_eq!(got, None, "{dir:?} {child:?}"),
                Some(w) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(w)),
                    "{dir:?} {child:?}: {got:?}"
                ),
            }
        }
    }
}
