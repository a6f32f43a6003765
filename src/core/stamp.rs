//! What a file's metadata says about its content, so a sync need not read a
//! file it has already judged: a [`Stamp`] is recorded when a file is read
//! (or installed), and a later stat that gives the same stamp means the same
//! content. Pure: the stat is taken by the host layer, the clock passed in.
//!
//! Why a stamp can stand for the content: every write(2) to a file changes
//! its change time (ctime), which no process can set back (`utimensat`
//! sets the modification time only, and itself changes the ctime); a
//! replacement by rename is another inode. Writes through a shared mapping
//! are the exception (after the first, the times may stay), which is why
//! only a full sync reads what no event and no stamp shows. The catch is the clock's grain: a kernel takes
//! file times from a clock that ticks every few milliseconds, so a second
//! write of the same size within the tick of the read leaves the stamp as it
//! was. A stamp is therefore trusted only when the file had been quiet for
//! [`SETTLED`] when it was read ([`settled`], as git treats "racily clean"
//! index entries); a file read sooner is read again next time.

use std::time::Duration;

/// How long a file must have been unchanged when it was read for its stamp
/// to be trusted later: far above any kernel's timestamp grain (a jiffy, at
/// most 10 ms).
pub(crate) const SETTLED: Duration = Duration::from_secs(1);

/// A file's identity and the times its content last changed, from `stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Device of the file system.
    pub(crate) dev: u64,
    /// Inode number.
    pub(crate) ino: u64,
    /// Size in bytes.
    pub(crate) size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub(crate) mtime_ns: i64,
    /// Change time, nanoseconds since the epoch.
    pub(crate) ctime_ns: i64,
    /// Permission bits (with setuid, setgid, sticky).
    pub(crate) mode: u32,
    /// Owner.
    pub(crate) uid: u32,
    /// Group.
    pub(crate) gid: u32,
}

/// Whether a file stamped `stamp`, read at `read_at_ns` (nanoseconds since
/// the epoch, the wall clock), had been quiet long enough then for its
/// stamp to stand for its content ([`SETTLED`]). A time in the future
/// (a container can set any modification time; a clock stepped back) is not
/// settled.
pub(crate) fn settled(stamp: &Stamp, read_at_ns: i64) -> bool {
    let grain = SETTLED.as_nanos() as i64;
    [stamp.mtime_ns, stamp.ctime_ns]
        .into_iter()
        .all(|t| read_at_ns.saturating_sub(t) >= grain)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn at(mtime_s: i64, ctime_s: i64) -> Stamp {
        Stamp {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: mtime_s * S,
            ctime_ns: ctime_s * S,
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn a_stamp_is_settled_only_when_both_times_are_a_grain_old() {
        let now = 100 * S;
        let table = [
            // (mtime s, ctime s, settled at 100 s)
            (10, 10, true),
            (99, 99, true),
            (99, 100, false), // changed in the read's own second
            (100, 99, false),
            (10, 150, false), // a change time in the future: a stepped clock
            (150, 10, false), // a modification time set ahead by the writer
        ];
        for (m, c, want) in table {
            assert_eq!(settled(&at(m, c), now), want, "mtime {m}, ctime {c}");
        }
        // Just under a grain is not enough.
        let mut s = at(99, 99);
        s.ctime_ns = now - SETTLED.as_nanos() as i64 + 1;
        assert!(!settled(&s, now));
    }
}
