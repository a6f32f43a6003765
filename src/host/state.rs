//! hostbridge's own state on disk: per-bridge manifests of installed files,
//! and the lock that serialises file changes. Host layer.
//!
//! Layout under `state_dir`:
//! - `lock`: `flock`ed while a sync changes files, so a `hostbridge sync` run
//!   by hand and the daemon never interleave;
//! - `bridges/<name>.json`: the manifest of one bridge (see [`Manifest`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::dest::DestDir;
use crate::core::plan::{Digest, Owned};

const MANIFEST_VERSION: u32 = 1;

/// What one bridge has installed, and whether its actions still owe a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Manifest {
    /// The destination the files were installed into.
    pub(crate) destination: PathBuf,
    /// Installed files by name.
    pub(crate) files: BTreeMap<String, Owned>,
    /// Files changed but the `then:` actions have not yet succeeded.
    pub(crate) actions_pending: bool,
    /// The names installed, replaced or pruned since the actions last
    /// succeeded: what a retry's `HOSTBRIDGE_CHANGED` says.
    pub(crate) changed: BTreeSet<String>,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    destination: PathBuf,
    actions_pending: bool,
    /// Absent in manifests of versions before it was kept (and when empty).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    changed: BTreeSet<String>,
    files: BTreeMap<String, OnDiskFile>,
}

#[derive(Serialize, Deserialize)]
struct OnDiskFile {
    sha256: String,
    mode: u32,
    /// Owner and group set from the config; absent when it named none
    /// (and in manifests of versions before they were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gid: Option<u32>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// A state dir rooted at `root` (created on first write).
    pub(crate) fn new(root: &Path) -> StateDir {
        StateDir {
            root: root.to_path_buf(),
        }
    }

    /// Takes the exclusive file-change lock, waiting for a holder to finish.
    pub(crate) fn lock(&self) -> Result<Flock<File>> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("creating state dir {}", self.root.display()))?;
        let path = self.root.join("lock");
        // 0600: anyone who can open the lock file can flock it and stall
        // every sync (flock needs no write access).
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| io::Error::from(e))
            .with_context(|| format!("locking {}", path.display()))
    }

    fn manifest_path(&self, bridge: &str) -> PathBuf {
        self.root.join("bridges").join(format!("{bridge}.json"))
    }

    /// Loads a bridge's manifest; a missing file is an empty manifest.
    pub(crate) fn load(&self, bridge: &str) -> Result<Manifest> {
        let path = self.manifest_path(bridge);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        // Older versions wrote manifests 0644: tighten them on the way.
        if let Ok(m) = std::fs::symlink_metadata(&path)
            && m.is_file()
            && m.permissions().mode() & 0o077 != 0
        {
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        let disk: OnDisk = serde_json::from_slice(&text)
            .with_context(|| format!("parsing manifest {}", path.display()))?;
        anyhow::ensure!(
            disk.version == MANIFEST_VERSION,
            "manifest {} has version {}, expected {MANIFEST_VERSION}",
            path.display(),
            disk.version
        );
        let mut files = BTreeMap::new();
        for (name, f) in disk.files {
            let digest: Digest = f
                .sha256
                .parse()
                .map_err(|e| anyhow::anyhow!("manifest {}: {name}: {e}", path.display()))?;
            files.insert(
                name,
                Owned {
                    digest,
                    mode: f.mode,
                    uid: f.uid,
                    gid: f.gid,
                },
            );
        }
        Ok(Manifest {
            destination: disk.destination,
            files,
            actions_pending: disk.actions_pending,
            changed: disk.changed,
        })
    }

    /// Atomically replaces a bridge's manifest.
    pub(crate) fn save(&self, bridge: &str, m: &Manifest) -> Result<()> {
        let disk = OnDisk {
            version: MANIFEST_VERSION,
            destination: m.destination.clone(),
            actions_pending: m.actions_pending,
            changed: m.changed.clone(),
            files: m
                .files
                .iter()
                .map(|(n, o)| {
                    let f = OnDiskFile {
                        sha256: o.digest.to_string(),
                        mode: o.mode,
                        uid: o.uid,
                        gid: o.gid,
                    };
                    (n.clone(), f)
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&disk)?;
        let dir_path = self.root.join("bridges");
        let dir = DestDir::open_or_create(&dir_path)
            .with_context(|| format!("creating {}", dir_path.display()))?;
        dir.install(&format!("{bridge}.json"), &bytes, 0o600)
            .and_then(|()| dir.sync())
            .with_context(|| format!("writing {}", self.manifest_path(bridge).display()))
    }
}
