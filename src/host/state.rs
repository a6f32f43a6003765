//! hostbridge's own state on disk: per-bridge manifests of installed files,
//! and the lock that serialises file changes. Host layer.
//!
//! Layout under `state_dir`:
//! - `lock`: `flock`ed while a sync changes files, so a `hostbridge sync` run
//!   by hand and the daemon never interleave;
//! - `bridges/<name>.manifest`: the manifest of one bridge (see [`Manifest`]
//!   and [`format`] for the file's lines); a `bridges/<name>.json` of an
//!   earlier version is read once and replaced;
//! - `bridges/<name>.intent`: the intent records appended by the daemon's
//!   syncs of changed names since the manifest was last written whole
//!   ([`format::intent`]), read with it, and removed by the next whole write;
//! - `bridges/<name>.listing`: the source dir's stamp when a complete sync
//!   listed it ([`Manifest::listing`], [`format::listing_file`]), bound to
//!   the manifest file it was saved with, and removed by the next write.
//!
//! A process keeps a copy of each manifest it saved ([`KEPT`]), so its next
//! sync takes that copy instead of parsing the file again, while the file
//! is the one it wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::Deserialize;

use super::dest::DestDir;
use crate::core::plan::{Digest, Owned};
use crate::core::stamp::Stamp;

pub(crate) mod format;

/// The version of the JSON manifests written before the line format.
const JSON_MANIFEST_VERSION: u32 = 1;

/// The manifests this process saved last, by file path, each as written,
/// with the stamp of the file it wrote in `left`. A load that finds that
/// same file there takes a copy instead of parsing it (a manifest is never
/// changed in place: every save is a new file, so a save by another
/// process, a `hostbridge sync` by hand, shows as another stamp). Only
/// manifests of at most [`KEPT_MAX`] files are kept, so what a daemon holds
/// after a large burst stays small.
static KEPT: Mutex<BTreeMap<PathBuf, Manifest>> = Mutex::new(BTreeMap::new());

/// The largest manifest kept in [`KEPT`], in files (about 2.5 MB).
const KEPT_MAX: usize = 16_384;

/// A manifest as loaded, with the bytes it was read from (`None`: no
/// manifest file of this version, or a copy kept by this process whose
/// file's stamp is `from`).
#[derive(Debug)]
pub(crate) struct Loaded {
    bytes: Option<Vec<u8>>,
    /// The intent records read with it ([`format::intent`]).
    intents: Option<Vec<u8>>,
    from: Option<Stamp>,
    /// The manifest.
    pub(crate) manifest: Manifest,
}

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
    /// What the last sync saw of each installed file, so the next need not
    /// read it again ([`Seen`]); only names in `files` are kept.
    pub(crate) seen: BTreeMap<String, Seen>,
    /// The stamp of the manifest file this sync left on disk (not written
    /// in it): the actions' end saves over that file only.
    pub(crate) left: Option<Stamp>,
    /// What the verdicts recorded in `seen` were made under (the bridge's
    /// checks and the host paths they look at, hashed): under other ones a
    /// sync reads everything ([`crate::sync::Scope::Full`]).
    pub(crate) checks: Option<Digest>,
    /// Read from a file of an earlier version, or with intent records
    /// after it: the next sync writes it whole, even with nothing to
    /// change (only the current version lets `hostbridge sync` find
    /// "nothing to change" without building it, and records are appended
    /// only after a manifest written whole, never after one cut short by
    /// a crash), and looks at every name to do so.
    pub(crate) write_whole: bool,
    /// Not written in the file: the sync that saved this manifest found
    /// the source as it records it, every candidate file installed and
    /// known, nothing refused, held, kept or left out. The daemon's next
    /// sync may then look at the names its watch saw change and nothing
    /// else ([`crate::sync::Scope::Changed`]). A manifest parsed from its
    /// file is not complete: its sync looks at every name once.
    pub(crate) complete: bool,
    /// The source dir's stamp just before the sync that made this
    /// manifest listed it (settled, [`crate::core::stamp`]), and the
    /// checksum of the candidate names it listed ([`format::names_sum`]),
    /// kept only with `complete`: the candidates were then exactly the
    /// files recorded, and no name was rejected. Every entry created,
    /// removed or renamed in a dir changes its change time, so a stat that
    /// gives this stamp again, with the files still of these names, means
    /// the same names, and `hostbridge sync` takes them from the manifest
    /// instead of listing the dir ([`crate::host::source::as_recorded`]).
    /// Saved beside the manifest file (`bridges/<name>.listing`, bound to
    /// it), which older versions do not read. The daemon's sync of changed
    /// names keeps it while it installs or removes no name (a content
    /// change), and drops it otherwise.
    pub(crate) listing: Option<(Stamp, u64)>,
}

impl Manifest {
    /// What the last sync installed from the source file `name` and saw of
    /// it, when it read that file with the verdict installed.
    pub(crate) fn known(&self, name: &str) -> Option<Known> {
        let seen = *self.seen.get(name)?;
        seen.size?;
        Some(Known {
            digest: self.files.get(name)?.digest,
            seen,
        })
    }
}

/// What the last sync installed from a source file and saw of it: only
/// files whose source was read with the digest installed ([`Seen::size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Known {
    /// The digest its verdict was (the digest installed).
    pub(crate) digest: Digest,
    /// Its size and stamp then.
    pub(crate) seen: Seen,
}

/// What a sync saw of one installed file: the source it read and judged
/// (whose verdict was the digest installed), and the installed copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The source file's size when it was last read and its verdict was
    /// the digest installed (its share of `max_bytes`); `None`: the source
    /// was not seen so (the next sync reads it).
    pub(crate) size: Option<u64>,
    /// The source file's stamp when read, when it had settled by then
    /// ([`crate::core::stamp::settled`]).
    pub(crate) source: Option<Stamp>,
    /// The installed file's stamp, taken after hostbridge installed it or
    /// read it.
    pub(crate) dest: Option<Stamp>,
}

#[derive(Deserialize)]
struct OnDisk {
    version: u32,
    destination: PathBuf,
    actions_pending: bool,
    #[serde(default)]
    changed: BTreeSet<String>,
    files: BTreeMap<String, OnDiskFile>,
}

#[derive(Deserialize)]
struct OnDiskFile {
    sha256: String,
    mode: u32,
    #[serde(default)]
    uid: Option<u32>,
    #[serde(default)]
    gid: Option<u32>,
}

/// A file's bytes and the stamp of the file they were read from.
fn read_stamped(path: &Path) -> io::Result<(Vec<u8>, Stamp)> {
    use std::io::Read as _;
    let mut f = File::open(path)?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    let st = nix::sys::stat::fstat(&f)?;
    Ok((bytes, super::source::stamp_of(&st)))
}

/// A JSON manifest of the first version, as written before the line format.
fn from_json(text: &[u8], path: &Path) -> Result<Manifest> {
    let disk: OnDisk = serde_json::from_slice(text)
        .with_context(|| format!("parsing manifest {}", path.display()))?;
    anyhow::ensure!(
        disk.version == JSON_MANIFEST_VERSION,
        "manifest {} has version {}, expected {JSON_MANIFEST_VERSION}",
        path.display(),
        disk.version
    );
    let mut files = BTreeMap::new();
    for (name, f) in disk.files {
        let digest: Digest = f
            .sha256
            .parse()
            .map_err(|e| anyhow::anyhow!("manifest {}: {name}: {e}", path.display()))?;
        let owned = Owned {
            digest,
            mode: f.mode,
            uid: f.uid,
            gid: f.gid,
        };
        files.insert(name, owned);
    }
    Ok(Manifest {
        destination: disk.destination,
        files,
        actions_pending: disk.actions_pending,
        changed: disk.changed,
        seen: BTreeMap::new(),
        left: None,
        checks: None,
        write_whole: true,
        complete: false,
        listing: None,
    })
}

/// The first line of an intent file: the manifest file its records follow,
/// by inode and change time (a manifest file is never changed in place,
/// and a new one is a new inode with its own change time).
fn base_line(manifest: Option<&Stamp>) -> String {
    match manifest {
        Some(st) => format!("base {:x}:{:x}\n", st.ino, st.ctime_ns),
        None => "base -\n".into(),
    }
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
        self.root.join("bridges").join(format!("{bridge}.manifest"))
    }

    fn intent_path(&self, bridge: &str) -> PathBuf {
        self.root.join("bridges").join(format!("{bridge}.intent"))
    }

    fn listing_path(&self, bridge: &str) -> PathBuf {
        self.root.join("bridges").join(format!("{bridge}.listing"))
    }

    /// What the listing file says ([`Manifest::listing`]), when it was
    /// written with the manifest file of stamp `manifest`.
    pub(crate) fn listing(&self, bridge: &str, manifest: &Stamp) -> Option<(Stamp, u64)> {
        let bytes = std::fs::read(self.listing_path(bridge)).ok()?;
        format::read_listing_file(&bytes, &base_line(Some(manifest)))
    }

    /// Where an earlier version kept the manifest.
    fn json_path(&self, bridge: &str) -> PathBuf {
        self.root.join("bridges").join(format!("{bridge}.json"))
    }

    /// Loads a bridge's manifest; a missing file is an empty manifest.
    /// A copy kept by this process is copied, and stays kept.
    pub(crate) fn load(&self, bridge: &str) -> Result<Manifest> {
        if let Some(m) = self.kept(bridge, &self.manifest_path(bridge), false) {
            return Ok(m);
        }
        Ok(self.load_kept(bridge)?.manifest)
    }

    /// Loads a bridge's manifest, keeping the bytes it was read from for
    /// [`StateDir::load_again`].
    pub(crate) fn load_kept(&self, bridge: &str) -> Result<Loaded> {
        let path = self.manifest_path(bridge);
        if let Some(manifest) = self.kept(bridge, &path, true) {
            return Ok(Loaded {
                bytes: None,
                intents: None,
                from: manifest.left,
                manifest,
            });
        }
        let mut loaded = match read_stamped(&path) {
            Ok((text, stamp)) => {
                let mut manifest = format::parse(&text)
                    .map_err(|e| anyhow::anyhow!("parsing manifest {}: {e}", path.display()))?;
                manifest.left = Some(stamp);
                // Taken for the names it was written with only.
                let names = format::names_sum(manifest.files.keys().map(|n| n.as_bytes()));
                manifest.listing = self.listing(bridge, &stamp).filter(|l| l.1 == names);
                Loaded {
                    bytes: Some(text),
                    intents: None,
                    from: None,
                    manifest,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Loaded {
                bytes: None,
                intents: None,
                from: None,
                manifest: self.load_json(bridge)?,
            },
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let intent_path = self.intent_path(bridge);
        match std::fs::read(&intent_path) {
            Ok(bytes) => {
                // Records appended after another manifest file than this
                // one (a crash between a whole write and their removal)
                // say nothing of it. Either way, the next sync writes the
                // manifest whole, which removes them.
                let (base, blocks) =
                    bytes.split_at(bytes.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1));
                if base == base_line(loaded.manifest.left.as_ref()).as_bytes() {
                    format::apply_intents(&mut loaded.manifest, blocks).map_err(|e| {
                        anyhow::anyhow!("parsing intent records {}: {e}", intent_path.display())
                    })?;
                }
                loaded.manifest.write_whole = true;
                loaded.intents = Some(bytes);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", intent_path.display())),
        }
        Ok(loaded)
    }

    /// Whether intent records follow the manifest file now.
    pub(crate) fn has_intents(&self, bridge: &str) -> bool {
        std::fs::symlink_metadata(self.intent_path(bridge)).is_ok()
    }

    /// Appends an intent record ([`format::intent`]) after the manifest
    /// file, durably (the file's `fsync`, and its dir's when it is new)
    /// before the caller changes anything it plans. The next whole write of
    /// the manifest removes the records.
    pub(crate) fn append_intent(&self, bridge: &str, block: &[u8]) -> Result<()> {
        use std::io::Write as _;
        let dir_path = self.root.join("bridges");
        let dir = DestDir::open_or_create(&dir_path)
            .with_context(|| format!("creating {}", dir_path.display()))?;
        let path = self.intent_path(bridge);
        // What was kept is no longer all there is to the manifest.
        Self::keep(self.manifest_path(bridge), None, None);
        let new = !self.has_intents(bridge);
        // A new file starts with the manifest file it follows.
        let base = if new {
            base_line(self.stamp(bridge).as_ref())
        } else {
            String::new()
        };
        let written = File::options()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(&[base.as_bytes(), block].concat())?;
                f.sync_all()
            })
            .and_then(|()| if new { dir.sync() } else { Ok(()) });
        written.with_context(|| format!("writing {}", path.display()))
    }

    /// A bridge's manifest file as it is, unparsed ([`format::records`]),
    /// and its stamp; `None` when there is none of this version's name.
    pub(crate) fn read_raw(&self, bridge: &str) -> Result<Option<(Vec<u8>, Stamp)>> {
        let path = self.manifest_path(bridge);
        match read_stamped(&path) {
            Ok(read) => Ok(Some(read)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Loads a bridge's manifest again (under the lock, after a load
    /// outside it): when the file holds the same bytes as `before` was read
    /// from, `before` is it, and is not parsed again.
    pub(crate) fn load_again(&self, bridge: &str, before: Loaded) -> Result<Loaded> {
        if before.from.is_some() {
            // A kept copy: the same file is still there, or this is parsed.
            if self.stamp(bridge) == before.from && !self.has_intents(bridge) {
                return Ok(before);
            }
            return self.load_kept(bridge);
        }
        let path = self.manifest_path(bridge);
        let intents = std::fs::read(self.intent_path(bridge)).ok();
        match (read_stamped(&path), before.bytes.as_deref()) {
            (Ok((now, stamp)), Some(was)) if now == was && intents == before.intents => {
                let mut same = before;
                same.manifest.left = Some(stamp);
                Ok(same)
            }
            _ => self.load_kept(bridge),
        }
    }

    /// The manifest this process saved last to `path`, if that file is
    /// still there ([`KEPT`]): copied, or with `take` taken. A sync takes
    /// it, and keeps it again when it saves, or when it finds nothing to
    /// save ([`StateDir::remember`]); one that does neither leaves the next
    /// load to parse the file.
    fn kept(&self, bridge: &str, path: &Path, take: bool) -> Option<Manifest> {
        let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        let m = kept.get(path)?;
        if m.left.is_none() || self.stamp(bridge) != m.left || self.has_intents(bridge) {
            kept.remove(path);
            return None;
        }
        if take {
            kept.remove(path)
        } else {
            Some(m.clone())
        }
    }

    /// Keeps `m` for this process's next load ([`KEPT`]) when it is the
    /// manifest as its file holds it: loaded from the file of stamp
    /// `m.left`, still there, and not changed since (a sync that found
    /// nothing to save).
    pub(crate) fn remember(&self, bridge: &str, m: &Manifest) {
        if m.left.is_some() && self.stamp(bridge) == m.left && !self.has_intents(bridge) {
            Self::keep(self.manifest_path(bridge), Some(m), m.left);
        }
    }

    /// Remembers `m` as saved to `path` in a file of stamp `left`
    /// ([`KEPT`]); `None` (or a large manifest) forgets what was kept.
    fn keep(path: PathBuf, m: Option<&Manifest>, left: Option<Stamp>) {
        let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        match m {
            Some(m) if left.is_some() && m.files.len() <= KEPT_MAX => {
                let mut copy = m.clone();
                copy.left = left;
                kept.insert(path, copy);
            }
            _ => {
                kept.remove(&path);
            }
        }
    }

    /// The JSON manifest of an earlier version, if there is one (the next
    /// save replaces it).
    fn load_json(&self, bridge: &str) -> Result<Manifest> {
        let path = self.json_path(bridge);
        match std::fs::read(&path) {
            Ok(text) => from_json(&text, &path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The stamp of a bridge's manifest file now, if there is one.
    pub(crate) fn stamp(&self, bridge: &str) -> Option<Stamp> {
        let dir = DestDir::open(&self.root.join("bridges")).ok()?;
        dir.stamp(format!("{bridge}.manifest").as_str())
    }

    /// Atomically replaces a bridge's manifest: one compact write, then the
    /// dir's fsync (the rename is durable before anything relies on it).
    /// Returns the new file's stamp (every save is a new inode).
    /// This process keeps a copy of it for its next load ([`KEPT`]).
    /// With a listing ([`Manifest::listing`]), the listing file is written
    /// after it, bound to it (a crash between leaves none: the next
    /// `hostbridge sync` lists the source).
    pub(crate) fn save(&self, bridge: &str, m: &Manifest) -> Result<Option<Stamp>> {
        let left = self.save_bytes(bridge, &format::write(m))?;
        if left.is_some_and(|st| !self.save_listing(bridge, m, &st)) {
            // Kept as on disk: without it (the next sync saves it again).
            let unlisted = Manifest {
                listing: None,
                ..m.clone()
            };
            Self::keep(self.manifest_path(bridge), Some(&unlisted), left);
        } else {
            Self::keep(self.manifest_path(bridge), Some(m), left);
        }
        Ok(left)
    }

    /// Writes `m`'s listing ([`Manifest::listing`], of a complete `m`)
    /// beside its manifest file, of stamp `file`, bound to it; `false` when
    /// that failed. Only a saving of work: without it, `hostbridge sync`
    /// lists the source.
    pub(crate) fn save_listing(&self, bridge: &str, m: &Manifest, file: &Stamp) -> bool {
        let (true, Some(listing)) = (m.complete, m.listing) else {
            return true;
        };
        let bytes = format::listing_file(&base_line(Some(file)), listing);
        let written = DestDir::open(&self.root.join("bridges"))
            .and_then(|d| d.install(&format!("{bridge}.listing"), &bytes, 0o600));
        if let Err(e) = &written {
            tracing::debug!("{bridge}: the listing was not saved: {e}");
        }
        written.is_ok()
    }

    /// [`StateDir::save`] of a manifest file's bytes ([`format`]).
    pub(crate) fn save_bytes(&self, bridge: &str, bytes: &[u8]) -> Result<Option<Stamp>> {
        // What was kept is no longer the file (nor is anything, should the
        // write fail midway).
        Self::keep(self.manifest_path(bridge), None, None);
        let dir_path = self.root.join("bridges");
        let dir = DestDir::open_or_create(&dir_path)
            .with_context(|| format!("creating {}", dir_path.display()))?;
        let name = format!("{bridge}.manifest");
        dir.install(&name, bytes, 0o600)
            .and_then(|()| dir.sync())
            .with_context(|| format!("writing {}", self.manifest_path(bridge).display()))?;
        // The JSON of an earlier version is superseded now, and so are the
        // intent records: the manifest written holds what they said (it
        // was loaded with them). Should a crash keep them, they are read
        // again over it, which owes the actions once more and drops what
        // was seen of their names: nothing is lost.
        let _ = std::fs::remove_file(self.json_path(bridge));
        let _ = std::fs::remove_file(self.intent_path(bridge));
        // Of another manifest file: it would not be taken, and is not kept.
        let _ = std::fs::remove_file(self.listing_path(bridge));
        Ok(dir.stamp(name.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &str) -> Manifest {
        let mut m = Manifest {
            destination: PathBuf::from("/run/udev/rules.d"),
            complete: true,
            ..Manifest::default()
        };
        let owned = Owned {
            digest: Digest::of(name.as_bytes()),
            mode: 0o644,
            uid: None,
            gid: None,
        };
        m.files.insert(name.into(), owned);
        m
    }

    /// A complete manifest's listing is saved beside it, bound to its file:
    /// read back for that file (and, parsed, for those names) only; a save
    /// without one removes it.
    #[test]
    fn a_listing_is_saved_with_its_manifest_file_and_only_read_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let names = format::names_sum([&b"a.rules"[..]]);
        let st = Stamp {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: 4,
            ctime_ns: 5,
            mode: 0o40755,
            uid: 0,
            gid: 0,
        };
        let mut m = manifest("a.rules");
        m.listing = Some((st, names));
        let left = state.save("b", &m).unwrap().unwrap();
        assert_eq!(state.listing("b", &left), Some((st, names)));
        // Parsed from its file (not the kept copy): taken with the names.
        let kept = state.load_kept("b").unwrap();
        assert_eq!(kept.manifest.listing, Some((st, names)));
        let parsed = state.load_kept("b").unwrap();
        assert!(!parsed.manifest.complete, "parsed, not the kept copy");
        assert_eq!(parsed.manifest.listing, Some((st, names)));

        // Another manifest file in its place: not its listing.
        let path = state.manifest_path("b");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format::write(&manifest("c.rules"))).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let other = state.stamp("b").unwrap();
        assert_eq!(state.listing("b", &other), None);
        assert_eq!(state.load_kept("b").unwrap().manifest.listing, None);

        // Not complete, or no listing: none saved, the old one removed.
        let mut incomplete = m.clone();
        incomplete.complete = false;
        let left = state.save("b", &incomplete).unwrap().unwrap();
        assert_eq!(state.listing("b", &left), None);
        assert!(!state.listing_path("b").exists());
    }

    /// A load takes the copy this process saved (`complete` is not in
    /// the file: only the copy has it) while that file is there, and
    /// parses the file once another process replaced it, or once this one
    /// wrote an intent record over it.
    #[test]
    fn a_kept_manifest_is_taken_only_while_its_file_is_the_one_saved() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let saved = manifest("a.rules");
        let left = state.save("b", &saved).unwrap();
        let loaded = state.load("b").unwrap();
        assert!(loaded.complete, "the kept copy");
        assert_eq!(loaded.left, left);
        assert_eq!(loaded.files, saved.files);

        // Another process's save: a new file in its place.
        let path = state.manifest_path("b");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format::write(&manifest("c.rules"))).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let loaded = state.load("b").unwrap();
        assert!(!loaded.complete, "parsed");
        assert!(loaded.files.contains_key("c.rules"), "{loaded:?}");

        // An intent record forgets the copy, and so is read as written.
        state.save("b", &saved).unwrap();
        let mut intent = manifest("d.rules");
        intent.complete = false;
        state.save_bytes("b", &format::write(&intent)).unwrap();
        let loaded = state.load("b").unwrap();
        assert!(loaded.files.contains_key("d.rules") && !loaded.complete);

        // A manifest as its file holds it is kept on request, not another.
        let mut as_read = state.load("b").unwrap();
        as_read.complete = true;
        state.remember("b", &as_read);
        assert!(state.load("b").unwrap().complete);
        as_read.left = None;
        as_read.complete = false;
        state.remember("b", &as_read);
        assert!(
            state.load("b").unwrap().complete,
            "not kept without its file"
        );

        // Intent records after it: read with it, even cut short, and the
        // manifest is then to be written whole, which removes them.
        let block = format::intent(true, [(&"e.rules".to_string(), None)].into_iter());
        state.append_intent("b", &block).unwrap();
        state.append_intent("b", &block[..4]).unwrap();
        let loaded = state.load("b").unwrap();
        assert!(loaded.write_whole && !loaded.complete && loaded.actions_pending);
        assert!(loaded.changed.contains("e.rules"));
        state.save("b", &loaded).unwrap();
        assert!(!state.has_intents("b"));

        // Records left after another manifest file (a crash between a whole
        // write and their removal) are not read over this one.
        state.append_intent("b", &block).unwrap();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format::write(&manifest("c.rules"))).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let loaded = state.load("b").unwrap();
        assert!(loaded.write_whole && !loaded.actions_pending, "{loaded:?}");
        assert!(loaded.changed.is_empty());
    }
}
