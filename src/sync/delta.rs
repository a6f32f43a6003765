//! The daemon's sync of only the names its watch saw change, when the last
//! sync left the source as its manifest records it
//! ([`Manifest::complete`]): those names are read, planned and put in place
//! and the manifest's other entries stand as they are, so the sync costs
//! what changed, not what exists. Anything but plain installs, replacements
//! and removals takes the full way ([`super::sync_files`]), which finds it
//! again and says what it is. Glue, like its parent.

use std::collections::BTreeSet;

use anyhow::Result;

use super::checks::RulesChecker;
use super::report::SyncReport;
use super::seen::{self, Scope};
use super::{Planning, SyncOptions, Synced, apply, step};
use crate::config::{Bridge, Config};
use crate::core::plan::Digest;
use crate::host::source::{self, SourceScan};
use crate::host::state::{Loaded, Manifest, StateDir};

/// A window of at most this many names is always synced alone; a larger
/// one only while it is under a quarter of the files installed.
const SMALL: usize = 64;

/// What [`sync`] did: `Ok` the sync, done; `Err` the manifest as loaded,
/// for the full way (not a sync this way can do).
pub(super) type Delta = std::result::Result<Synced, Loaded>;

/// Whether a sync that ends with `report` after reading `scan` leaves the
/// source as its manifest will record it: every candidate ready and
/// installed, and nothing refused, held, kept, in conflict, left out for
/// the bounds, or to look at again. Then the next sync of the daemon may
/// look at the changed names only.
pub(super) fn clean(report: &SyncReport, scan: &SourceScan) -> bool {
    let t = &scan.transient;
    report.source_present
        && report.skipped.is_empty()
        && report.held.is_empty()
        && report.conflicts.is_empty()
        && report.kept.is_empty()
        && report.errors.is_empty()
        && report.unreadable.is_empty()
        && report.recheck.is_empty()
        && !report.set_held
        && !report.prune_held
        && scan.overflow.is_none()
        && scan.over_budget.is_none()
        && scan.rejected.is_empty()
        && t.unreadable.is_empty()
        && t.vanished.is_empty()
        && t.recent.is_empty()
        && t.writing.is_empty()
}

/// The changed names, when this sync may look at them alone: the daemon's
/// (a [`Scope::Changed`] window with nothing still open), a bridge not
/// checked as a set, and a manifest left complete under today's checks
/// for this destination, each of whose entries was seen on both sides.
/// (A source dir that has shown no content yet prunes nothing: the plan of
/// the changed names alone may take it for empty and keep a removed file,
/// which is not plain, and the full way decides.)
/// With them, the bytes the manifest's files take of the budget, as
/// recorded (summed in the walk that finds each seen on both sides).
fn changed_only<'o>(
    bridge: &Bridge,
    opts: &'o SyncOptions,
    m: &Manifest,
    checks: Digest,
) -> std::result::Result<(&'o BTreeSet<String>, u64), &'static str> {
    let Scope::Changed(changed) = &opts.scope else {
        return Err("not a sync of a window's changes");
    };
    let mut recorded = 0u64;
    let seen_whole = m.seen.values().all(|s| {
        recorded = recorded.saturating_add(s.size.unwrap_or(0));
        s.size.is_some() && s.dest.is_some()
    });
    let why = if !m.complete {
        "the last sync did not leave the source as its manifest records it"
    } else if m.write_whole {
        "the manifest is written whole first (an earlier version, or intent records after it)"
    } else if m.destination != bridge.install_to || m.checks != Some(checks) {
        "the manifest was made under other settings"
    } else if m.seen.len() != m.files.len() // `seen` holds names of `files` only
        || !seen_whole
    {
        "a file of the manifest was not seen on both sides"
    } else if opts.dry_run || opts.clean_temps || !opts.still_open.is_empty() {
        "a dry run, a start, or a file still being written"
    } else if seen::whole_set(bridge) {
        "the bridge's files are checked as a set"
    } else if changed.len() > SMALL && changed.len() * 4 > m.files.len() {
        // A burst: the full way builds its maps in bulk, and costs less.
        "most names changed"
    } else {
        return Ok((changed, recorded));
    };
    Err(why)
}

/// The sync of the changed names alone, in the order of the full way: the
/// reads, then the barrier, then under the state lock the plan and the
/// intent record before any change. `Full` as soon as something is not
/// plain (before anything is changed).
pub(super) fn sync(
    config: &Config,
    bridge: &Bridge,
    state: &StateDir,
    opts: &SyncOptions,
    loaded: Loaded,
    checks: Digest,
) -> Result<Delta> {
    let (changed, recorded) = match changed_only(bridge, opts, &loaded.manifest, checks) {
        Ok(only) => only,
        Err(why) => return full(bridge, why, loaded),
    };
    let mut report = SyncReport {
        bridge: bridge.name.clone(),
        source_present: true,
        ..SyncReport::default()
    };
    super::trusted_note(bridge, &mut report);
    let (scan, accepted) = {
        let known = &loaded.manifest;
        let mut checker = RulesChecker::new(config, bridge, known, opts.progress.as_deref());
        let keep = |name: &str, digest: &Digest| super::keep(bridge, known, name, digest);
        let none = BTreeSet::new();
        let spec = source::ScanSpec {
            include: &bridge.include,
            admit: &source::Admit {
                quiet_for: opts.quiet_for,
                ..super::admit(bridge)
            },
            limits: super::limits(bridge),
            installed: &none,
            still_open: &opts.still_open,
            keep: &keep,
            reuse: source::Reuse::Nothing,
            always_read: &[],
        };
        let accept = &mut |n: &str, b: &[u8]| checker.accept(n, b);
        let scan = source::scan_changed(&bridge.source, changed, (known, recorded), &spec, accept)?;
        let Some(scan) = scan else {
            return full(
                bridge,
                "a changed name is not a plain file to install",
                loaded,
            );
        };
        report.findings = std::mem::take(&mut checker.findings);
        (scan, checker.accepted)
    };
    let held = opts
        .guard
        .as_ref()
        .map(|g| super::barrier(g, &scan.view, &mut report))
        .unwrap_or_default();
    if !held.is_empty() || !report.recheck.is_empty() {
        return full(bridge, "a file changed while it was read", loaded);
    }
    step(opts, || "waiting for the state lock".into());
    let lock = state.lock()?;
    super::may_change(opts)?;
    step(opts, || "planning".into());
    // Another process may have saved the manifest meanwhile.
    let loaded = state.load_again(&bridge.name, loaded)?;
    if let Err(why) = changed_only(bridge, opts, &loaded.manifest, checks) {
        drop(lock);
        return full(bridge, why, loaded);
    }
    let dest = match apply::open_existing(&bridge.install_to)? {
        Some(dest) => dest,
        // Created when there is something to install, as the full way does.
        None if !scan.view.files.is_empty() => super::create_dest(bridge)?,
        None => {
            drop(lock);
            return full(bridge, "the destination is missing", loaded);
        }
    };
    let owner = apply::owner_ids(bridge)?;
    // After a complete sync every entry was installed with the owner and
    // group the bridge's names resolved to then: resolved to other ids now
    // (a group recreated), every installed copy is to be looked at again.
    let wanted = super::desired(bridge, owner, false);
    if loaded
        .manifest
        .files
        .values()
        .next()
        .is_some_and(|o| (o.uid, o.gid) != (wanted.uid, wanted.gid))
    {
        drop(lock);
        return full(
            bridge,
            "the owner or group resolves to other ids now",
            loaded,
        );
    }
    // The manifest's entries for the changed names: the plan's whole world.
    let narrow = narrowed(&loaded.manifest, changed);
    let planning = Planning {
        gate: opts.prune_gate,
        scope: &opts.scope,
    };
    let mut seeing = seen::Seeing::of_scan(&scan, &held);
    let plan = super::make_plan(
        bridge,
        &planning,
        &narrow,
        Some(&dest),
        owner,
        &mut seeing,
        &mut report,
    )?;
    if !clean(&report, &scan) {
        drop(lock);
        return full(
            bridge,
            "a changed name is not a plain install or removal",
            loaded,
        );
    }
    let mut manifest = loaded.manifest;
    let others = manifest.files.len() - narrow.files.len();
    report.unchanged += others;
    report.source_files = others + scan.view.files.len();
    if !plan.changes() {
        // Written again with the same content, or touched: what was seen.
        let seen = seeing.for_files(&plan.owned_after);
        if apply::patch(&mut manifest, changed, &plan.owned_after, &seen) {
            manifest.left = state.save(&bridge.name, &manifest)?;
        } else {
            state.remember(&bridge.name, &manifest);
        }
        return Ok(Ok((report, Some(manifest))));
    }
    if bridge.rules.is_some() {
        super::record_grants(config, bridge, &scan.view, accepted)?;
    }
    step(opts, || format!("installing {} changes", plan.ops.len()));
    let target = apply::Target {
        bridge,
        state,
        dest: &dest,
        owner,
    };
    apply::apply_changed(
        &target,
        changed,
        &plan,
        &scan.content,
        &mut seeing,
        &mut manifest,
        &mut report,
    )?;
    Ok(Ok((report, Some(manifest))))
}

/// The full way's turn, and why (with `HOSTBRIDGE_LOG=debug`).
fn full(bridge: &Bridge, why: &str, loaded: Loaded) -> Result<Delta> {
    tracing::debug!("{}: reading every name ({why})", bridge.name);
    Ok(Err(loaded))
}

/// `m` with the entries of `names` only (and its destination and checks).
fn narrowed(m: &Manifest, names: &BTreeSet<String>) -> Manifest {
    let pick = |n: &String| m.files.get(n).map(|o| (n.clone(), *o));
    Manifest {
        destination: m.destination.clone(),
        files: names.iter().filter_map(pick).collect(),
        seen: names
            .iter()
            .filter_map(|n| m.seen.get(n).map(|s| (n.clone(), *s)))
            .collect(),
        checks: m.checks,
        ..Manifest::default()
    }
}
