//! Putting a plan in place: installs, replacements and prunes one by one, or
//! a whole generation at once (`swap: symlink-dir`), and the manifest after.
//! Glue over host/dest.rs and host/gendir.rs.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};

use super::SyncReport;
use super::admit;
use super::seen::Seeing;
use crate::config::{Bridge, Swap};
use crate::core::plan::{self, Op, Plan};
use crate::host::dest::DestDir;
use crate::host::gendir;
use crate::host::source::{self, Skip};
use crate::host::state::{Manifest, StateDir};

/// Owner and group of installed files (`None`: the config names none).
pub(crate) type Owner = (Option<nix::unistd::Uid>, Option<nix::unistd::Gid>);

/// Where a plan is put in place.
pub(super) struct Target<'a> {
    pub(super) bridge: &'a Bridge,
    pub(super) state: &'a StateDir,
    pub(super) dest: &'a DestDir,
    pub(super) owner: Owner,
}

/// The bytes to install, by name, as the scan kept them.
type Content = BTreeMap<String, Vec<u8>>;

/// Owner and group of installed files, looked up on the host now.
pub(crate) fn owner_ids(bridge: &Bridge) -> Result<Owner> {
    let Some(f) = &bridge.files else {
        return Ok((None, None));
    };
    let uid = f
        .owner
        .as_deref()
        .map(|n| crate::host::nss::user_id(n, "owner"))
        .transpose()?;
    let gid = f
        .group
        .as_deref()
        .map(|n| crate::host::nss::group(n, "group"))
        .transpose()?;
    Ok((uid, gid))
}

pub(super) fn open_existing(path: &Path) -> Result<Option<DestDir>> {
    let ctx = || format!("opening destination {}", path.display());
    match DestDir::open(path) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(ctx),
    }
}

pub(super) fn record_ops(report: &mut SyncReport, ops: &[Op]) {
    for op in ops {
        let list = match op {
            Op::Install { .. } => &mut report.installed,
            Op::Replace { .. } => &mut report.replaced,
            Op::Prune { .. } => &mut report.pruned,
        };
        list.push(op.name().to_string());
    }
}

/// Applies a plan: intent manifest first (so a crash never leaves a file we
/// wrote looking foreign), then the operations, then the final manifest.
/// One function so the crash-safety order is visible in one place.
pub(super) fn apply(
    t: &Target<'_>,
    plan: &Plan,
    content: &Content,
    seeing: &mut Seeing,
    manifest: &mut Manifest,
    report: &mut SyncReport,
) -> Result<()> {
    let bridge = t.bridge;
    let intent_left = save_intent(t, plan, manifest)?;

    if bridge
        .files
        .as_ref()
        .is_some_and(|f| f.swap == Swap::SymlinkDir)
    {
        return publish_generation(t, plan, content, seeing, manifest, report, intent_left)
            .map_err(|e| read_only_hint(e, &bridge.install_to));
    }
    let after = put_in_place(t, plan, content, seeing, manifest, report)?;
    *manifest = applied(bridge, manifest, report, seeing, after, intent_left);
    save_final(t, manifest)
}

/// The manifest after a plan was put in place: `after`'s entries, what
/// this sync saw of them, and the actions owed for what changed (or owed
/// already: a sync whose every operation failed or was held changed
/// nothing).
fn applied(
    bridge: &Bridge,
    before: &Manifest,
    report: &SyncReport,
    seeing: &Seeing,
    after: BTreeMap<String, plan::Owned>,
    intent_left: Option<crate::core::stamp::Stamp>,
) -> Manifest {
    let (actions_pending, changed) = owed_after(bridge, before, report);
    Manifest {
        destination: bridge.install_to.clone(),
        seen: seeing.for_files(&after),
        files: after,
        actions_pending,
        changed,
        left: intent_left,
        checks: before.checks,
        // The intent record was written in this version.
        write_whole: false,
        // A failed install leaves no entry at all: the next sync must not
        // look at the changed names alone.
        complete: before.complete && report.errors.is_empty(),
        listing: before.listing,
    }
}

/// [`apply`] of a plan made over the names in `names` only, and no other
/// (the daemon's sync of what its watch saw change, [`super::delta`]): its
/// intent record is appended after the manifest file (a few lines, not the
/// whole manifest again), then the same operations and final save, with
/// every other entry of the manifest as it stands. So a sync that changes
/// one file of 10,000 writes the manifest once, after the destination
/// changed (or at its actions' end).
pub(super) fn apply_changed(
    t: &Target<'_>,
    names: &BTreeSet<String>,
    plan: &Plan,
    content: &Content,
    seeing: &mut Seeing,
    manifest: &mut Manifest,
    report: &mut SyncReport,
) -> Result<()> {
    append_intent(t, plan)?;
    let after = put_in_place(t, plan, content, seeing, manifest, report)?;
    let (actions_pending, changed) = owed_after(t.bridge, manifest, report);
    let seen = seeing.for_files(&after);
    // Names installed or removed: the listing recorded is of other names
    // (the dir's stamp changed with them, so it would not be taken; it is
    // not kept either).
    if names
        .iter()
        .any(|n| manifest.files.contains_key(n) != after.contains_key(n))
    {
        manifest.listing = None;
    }
    patch(manifest, names, &after, &seen);
    manifest.actions_pending = actions_pending;
    manifest.changed = changed;
    // A failed operation leaves an entry whose source was not seen with
    // it: the next sync looks at every name again.
    manifest.complete &= report.errors.is_empty();
    save_final(t, manifest)
}

/// Sets the entries of `names` in `manifest` to those of `files` and
/// `seen` (a name in neither is dropped); whether any of them changed.
pub(super) fn patch(
    manifest: &mut Manifest,
    names: &BTreeSet<String>,
    files: &BTreeMap<String, plan::Owned>,
    seen: &BTreeMap<String, crate::host::state::Seen>,
) -> bool {
    let mut differs = false;
    for name in names {
        differs |= match files.get(name) {
            Some(o) => manifest.files.insert(name.clone(), *o) != Some(*o),
            None => manifest.files.remove(name).is_some(),
        };
        differs |= match seen.get(name) {
            Some(s) => manifest.seen.insert(name.clone(), *s) != Some(*s),
            None => manifest.seen.remove(name).is_some(),
        };
    }
    differs
}

/// The operations of a plan, one by one, then the destination's fsync:
/// what the manifest lists after them (the plan's, with the previous
/// entry of each operation that failed or was held).
fn put_in_place(
    t: &Target<'_>,
    plan: &Plan,
    content: &Content,
    seeing: &mut Seeing,
    manifest: &Manifest,
    report: &mut SyncReport,
) -> Result<BTreeMap<String, plan::Owned>> {
    let mut after = plan.owned_after.clone();
    for op in &plan.ops {
        let result = match op {
            Op::Install { name, digest } | Op::Replace { name, digest } => {
                match bytes_of(t.bridge, content, name, *digest) {
                    Ok(b) => t
                        .dest
                        .install_owned(name, &b, t.bridge.mode, t.owner)
                        .map(|st| {
                            // The new copy's stamp (the rename changed its ctime).
                            seeing.dest.insert(name.clone(), (st, *digest));
                        })
                        .map_err(|e| OpError::from(&e)),
                    Err(skip) => {
                        // The source side moved under the sync: held.
                        source_race(report, name, &skip);
                        keep_previous(&mut after, manifest, name);
                        continue;
                    }
                }
            }
            Op::Prune { name } => t.dest.remove(name).map_err(|e| OpError::from(&e)),
        };
        match result {
            Ok(()) => record_ops(report, std::slice::from_ref(op)),
            Err(e) => {
                let hint = if e.errno == Some(nix::libc::EROFS) {
                    sandbox_hint(&t.bridge.install_to)
                } else {
                    String::new()
                };
                report.errors.push(format!(
                    "{}: {}{hint}",
                    t.bridge.install_to.join(op.name()).display(),
                    e.message
                ));
                // The manifest says what is there: what was there before
                // this op, since the op did not happen.
                keep_previous(&mut after, manifest, op.name());
            }
        }
    }
    t.dest.sync().context("syncing destination dir")?;
    Ok(after)
}

/// Saves the manifest after the operations, unless the `then:` actions
/// are owed: their end saves it then (with whether they ran), over the
/// intent record, which until then says what a crash needs (the actions
/// owed, every name planned). So a sync writes the manifest twice.
fn save_final(t: &Target<'_>, manifest: &mut Manifest) -> Result<()> {
    if manifest.actions_pending && t.bridge.acts() {
        return Ok(());
    }
    manifest.left = t.state.save(&t.bridge.name, manifest)?;
    Ok(())
}

/// Saves the intent record: the one write before the destination changes,
/// so a crash never leaves a file hostbridge wrote looking foreign. It
/// lists the old entries and every planned one ("actions owed" for all of
/// them), and no stamps for the names about to change (what was seen of
/// them says nothing of what a crash leaves there). Written from the
/// manifest and the plan as they are, not built as a copy of both.
fn save_intent(
    t: &Target<'_>,
    plan: &Plan,
    manifest: &Manifest,
) -> Result<Option<crate::core::stamp::Stamp>> {
    let changing: BTreeSet<&str> = plan.ops.iter().map(Op::name).collect();
    let mut head = Manifest {
        destination: manifest.destination.clone(),
        checks: manifest.checks,
        actions_pending: true,
        changed: manifest.changed.clone(),
        ..Manifest::default()
    };
    // Should it crash midway, the next run owes the actions for all of them.
    if t.bridge.acts() {
        head.changed.extend(changing.iter().map(|n| n.to_string()));
    }
    let (mut after, mut before, mut seen) = (
        plan.owned_after.iter().peekable(),
        manifest.files.iter().peekable(),
        manifest.seen.iter().peekable(),
    );
    let files = plan::union(manifest.files.keys(), plan.owned_after.keys()).filter_map(|name| {
        let planned = plan::at(&mut after, name);
        let had = plan::at(&mut before, name);
        planned.or(had).map(|o| (name, o))
    });
    let bytes = crate::host::state::format::write_parts(&head, files, |name| {
        let s = plan::at(&mut seen, name).copied();
        s.filter(|_| !changing.contains(name))
    });
    t.state.save_bytes(&t.bridge.name, &bytes)
}

/// The intent record of a plan over some names ([`apply_changed`]),
/// appended after the manifest file instead of rewriting it: for each
/// name about to change, its planned entry, or for a prune the entry as it
/// stands; the actions owed for them. What a crash leaves is then read as
/// [`save_intent`]'s whole record would say it.
fn append_intent(t: &Target<'_>, plan: &Plan) -> Result<()> {
    let planned = plan.ops.iter().map(|op| match op {
        Op::Install { name, .. } | Op::Replace { name, .. } => (name, plan.owned_after.get(name)),
        Op::Prune { name } => (name, None),
    });
    let block = crate::host::state::format::intent(t.bridge.acts(), planned);
    t.state.append_intent(&t.bridge.name, &block)
}

/// Records `name` in `after` as the manifest had it before a failed or
/// held op: its previous install, or nothing if it had none (a manifest
/// never lists a file that was not put in place).
fn keep_previous(after: &mut BTreeMap<String, plan::Owned>, manifest: &Manifest, name: &str) {
    match manifest.files.get(name) {
        Some(old) => after.insert(name.to_string(), *old),
        None => after.remove(name),
    };
}

/// What the `then:` actions are owed once the plan was applied
/// ([`crate::core::act::owed_after`]), from the manifest before it.
fn owed_after(bridge: &Bridge, before: &Manifest, report: &SyncReport) -> (bool, BTreeSet<String>) {
    crate::core::act::owed_after(
        bridge.acts(),
        (before.actions_pending, &before.changed),
        &report.changed_names(),
    )
}

/// What to do when a destination is read-only: under the shipped unit
/// (`ProtectSystem=strict`) that means a missing `ReadWritePaths=`.
pub(super) fn sandbox_hint(dir: &Path) -> String {
    format!(
        "; {} is read-only here: under hostbridge.service add `ReadWritePaths={}` in a drop-in (`systemctl edit hostbridge`, docs/deploy-fcos.md)",
        dir.display(),
        dir.display()
    )
}

/// Adds [`sandbox_hint`] to an error caused by a read-only file system.
pub(super) fn read_only_hint(e: anyhow::Error, dir: &Path) -> anyhow::Error {
    let rofs = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(nix::errno::Errno::EROFS as i32))
    });
    if rofs {
        let hint = sandbox_hint(dir);
        e.context(hint.trim_start_matches("; ").to_string())
    } else {
        e
    }
}

/// Publishes the whole planned set as a new generation (symlink-dir swap):
/// changed files as the scan read them, unchanged and kept ones from the
/// current generation. Any failure leaves the current set in place.
fn publish_generation(
    t: &Target<'_>,
    plan: &Plan,
    content: &Content,
    seeing: &Seeing,
    manifest: &mut Manifest,
    report: &mut SyncReport,
    intent_left: Option<crate::core::stamp::Stamp>,
) -> Result<()> {
    let bridge = t.bridge;
    let mut contents: Vec<(String, Cow<'_, [u8]>)> = Vec::new();
    let mut after = plan.owned_after.clone();
    let mut ops: Vec<Op> = plan.ops.clone();
    for (name, owned) in &plan.owned_after {
        let changed = plan
            .ops
            .iter()
            .any(|op| op.name() == name && !matches!(op, Op::Prune { .. }));
        let mut from_source = None;
        if changed {
            match bytes_of(bridge, content, name, owned.digest) {
                Ok(b) => from_source = Some(b),
                Err(skip) => {
                    // Held: the generation keeps what it had under the name.
                    source_race(report, name, &skip);
                    keep_previous(&mut after, manifest, name);
                    ops.retain(|op| op.name() != name);
                    if !after.contains_key(name) {
                        continue;
                    }
                }
            }
        }
        let bytes = match from_source {
            Some(b) => b,
            None => Cow::Owned(
                gendir::read_current(t.dest, name, bridge.max_file_size)
                    .with_context(|| format!("reading the installed {name}"))?,
            ),
        };
        contents.push((name.clone(), bytes));
    }
    if ops.is_empty() {
        // Everything was held: the manifest goes back to what is there.
        manifest.left = t.state.save(&bridge.name, manifest)?;
        return Ok(());
    }
    let entries: Vec<gendir::Entry> = contents
        .iter()
        .map(|(n, b)| gendir::Entry { name: n, bytes: b })
        .collect();
    let gone: Vec<String> = ops
        .iter()
        .filter(|op| matches!(op, Op::Prune { .. }))
        .map(|op| op.name().to_string())
        .collect();
    gendir::publish(t.dest, &entries, &gone, bridge.mode, t.owner).with_context(|| {
        format!(
            "publishing a new generation in {}",
            bridge.install_to.display()
        )
    })?;
    record_ops(report, &ops);
    *manifest = applied(bridge, manifest, report, seeing, after, intent_left);
    save_final(t, manifest)
}

/// The bytes to install under `name`: the ones the scan read and judged,
/// or (for a file whose bytes the scan did not keep: its installed copy
/// was changed behind hostbridge's back) the source read again, if it
/// still has the planned digest; a file that changed or vanished since the
/// scan is left for the next window (its event opens it).
fn bytes_of<'c>(
    bridge: &Bridge,
    content: &'c Content,
    name: &str,
    want: plan::Digest,
) -> Result<Cow<'c, [u8]>, Skip> {
    if let Some(bytes) = content.get(name) {
        return Ok(Cow::Borrowed(bytes));
    }
    let unreadable = |e: std::io::Error| Skip::Unreadable(format!("cannot read the source: {e}"));
    let src = source::open_dir(&bridge.source).map_err(unreadable)?;
    match source::read_entry(&src, name, &admit(bridge)) {
        Ok(Ok((digest, bytes))) if digest == want => Ok(Cow::Owned(bytes)),
        Ok(Ok(_)) => Err(Skip::Changed),
        Ok(Err(skip)) => Err(skip),
        Err(e) => Err(unreadable(e)),
    }
}

/// Reports a file whose source moved under the sync (changed, vanished,
/// unreadable on the second read) as held, under its source name; one
/// that could not be read also asks for a retry.
fn source_race(report: &mut SyncReport, name: &str, skip: &Skip) {
    if let Skip::Unreadable(_) = skip {
        report.unreadable.push(name.to_string());
    }
    report.held.push((name.to_string(), skip.why()));
}

/// Why one install or prune failed: the words, and the errno when the
/// destination refused it (a caller branches on EROFS).
#[derive(Debug)]
pub(super) struct OpError {
    message: String,
    errno: Option<i32>,
}

impl From<String> for OpError {
    fn from(message: String) -> OpError {
        OpError {
            message,
            errno: None,
        }
    }
}

impl From<&str> for OpError {
    fn from(message: &str) -> OpError {
        OpError::from(message.to_string())
    }
}

impl From<&std::io::Error> for OpError {
    fn from(e: &std::io::Error) -> OpError {
        OpError {
            message: e.to_string(),
            errno: e.raw_os_error(),
        }
    }
}
