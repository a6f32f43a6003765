//! Remembers the rules files that passed `udevadm verify` cleanly, by the
//! digest of what was verified and the udevadm binary that verified it, in
//! the state dir: a restart (a crash loop, a `hostbridge sync` by hand)
//! does not verify them again. Only clean passes are kept: a refusal or a
//! warning is found again each time, and hostbridge's own host checks
//! (groups, users) run on every sync whatever this says. Host layer.
//!
//! The file holds one line per pass, `UDEVADM DIGEST`; lines of another
//! udevadm build (an upgrade) are ignored, and a file grown past
//! [`MAX_BYTES`] is started afresh.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::core::plan::Digest;

/// Largest the file may grow (about 7,000 passes) before it starts afresh.
const MAX_BYTES: u64 = 1 << 20;

/// The passes of one udevadm build.
#[derive(Debug)]
pub(crate) struct Verified {
    path: PathBuf,
    /// The udevadm build: device, inode, size and mtime of its binary.
    build: String,
    /// Loaded on first use.
    passed: Mutex<Option<HashSet<String>>>,
}

impl Verified {
    /// The passes kept in `path` for the `udevadm` binary.
    pub(crate) fn new(path: PathBuf, udevadm: &Path) -> Verified {
        let build = std::fs::metadata(udevadm).map_or_else(
            |_| "unknown".to_string(),
            |m| {
                format!(
                    "{}.{}.{}.{}",
                    m.dev(),
                    m.ino(),
                    m.size(),
                    m.mtime_nsec() + m.mtime() * 1_000_000_000
                )
            },
        );
        Verified {
            path,
            build,
            passed: Mutex::new(None),
        }
    }

    /// Whether content with this digest passed cleanly before.
    pub(crate) fn passed(&self, digest: &Digest) -> bool {
        let mut passed = self.passed.lock().unwrap_or_else(|p| p.into_inner());
        passed
            .get_or_insert_with(|| self.load())
            .contains(&digest.to_string())
    }

    /// Records a clean pass (best effort: a failed write costs a verify).
    pub(crate) fn remember(&self, digest: &Digest) {
        let key = digest.to_string();
        let mut passed = self.passed.lock().unwrap_or_else(|p| p.into_inner());
        if !passed
            .get_or_insert_with(|| self.load())
            .insert(key.clone())
        {
            return;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&self.path);
        if let Ok(mut f) = file {
            // One write of one short line: appends do not interleave.
            let _ = f.write_all(format!("{} {key}\n", self.build).as_bytes());
        }
    }

    fn load(&self) -> HashSet<String> {
        let too_big = std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.len() > MAX_BYTES);
        if too_big {
            let _ = std::fs::remove_file(&self.path);
            return HashSet::new();
        }
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(build, _)| *build == self.build)
            .map(|(_, digest)| digest.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_is_remembered_across_instances_and_builds_are_kept_apart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("verified");
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let sh = Path::new("/bin/sh");
        let one = Verified::new(file.clone(), sh);
        assert!(!one.passed(&a));
        one.remember(&a);
        one.remember(&a);
        assert!(one.passed(&a));
        let again = Verified::new(file.clone(), sh);
        assert!(again.passed(&a), "kept across restarts");
        assert!(!again.passed(&b));
        assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 1);
        let other = Verified::new(file.clone(), Path::new("/bin/true"));
        assert!(!other.passed(&a), "another udevadm build verifies again");
    }
}
