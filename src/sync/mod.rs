//! One reconcile of one bridge: scan the source, check, plan against the
//! manifest and the destination, apply atomically. Glue: it calls the pure
//! planner and the host layer and holds no policy of its own. The report is
//! in `report`, the checks in `checks`, putting the plan in place in
//! `apply`; acting on the result is `crate::act`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::config::{Bridge, Config, Swap};
use crate::core::fresh::{Hold, Mark};
use crate::core::grace::PruneGate;
use crate::core::plan::{self, Desired, DestFile};
use crate::core::rules;
use crate::core::settle::Input;
use crate::host::dest::DestDir;
use crate::host::feed::Feed;
use crate::host::gendir;
use crate::host::source;
use crate::host::state::{Manifest, StateDir};

mod apply;
mod checks;
mod delta;
mod report;
mod seen;

pub(crate) use crate::act::{Owed, run_owed};
pub(crate) use apply::owner_ids;
pub(crate) use checks::{Verifier, host_checks, host_checks_in, source_warnings, vet_rules};
pub(crate) use report::SyncReport;
pub(crate) use seen::Scope;

use apply::{apply, open_existing, read_only_hint, record_ops};
use checks::{RulesChecker, set_checks};

/// What a sync gives back: its report, and the manifest as saved (`None`
/// when it found everything as recorded without building it, see
/// [`sync_files`]).
pub(crate) type Synced = (SyncReport, Option<Manifest>);

/// Options of one sync.
#[derive(Debug, Clone, Default)]
pub(crate) struct SyncOptions {
    /// Files still being written: keep their installed copies.
    pub(crate) still_open: BTreeSet<String>,
    /// Plan only.
    pub(crate) dry_run: bool,
    /// Remove stale temp files from the destination first (startup).
    pub(crate) clean_temps: bool,
    /// The daemon's: holds files that changed during the sync.
    pub(crate) guard: Option<Guard>,
    /// The daemon's: where the sync says what it is doing, for status.
    pub(crate) progress: Option<Arc<Progress>>,
    /// Whether absences may prune ([`crate::core::grace`]).
    pub(crate) prune_gate: PruneGate,
    /// The daemon's, outside the startup sync: a file modified less than
    /// this before it is read waits (its events may have been missed).
    pub(crate) quiet_for: Option<std::time::Duration>,
    /// Which files are read ([`Scope`]); every one by default.
    pub(crate) scope: Scope,
}

/// What a running sync is doing now ("udevadm verify 10-x.rules"): set by
/// the sync's thread at each step, read by the daemon for `status`, so a
/// stuck sync shows where it is stuck.
/// Also how the daemon tells a sync its bridge was stopped (a reload
/// replaced it): a task's abort does not stop a blocking thread.
#[derive(Debug, Default)]
pub(crate) struct Progress(std::sync::Mutex<String>, std::sync::atomic::AtomicBool);

impl Progress {
    /// The sync's bridge was stopped: it must change nothing (checked once
    /// it holds the state lock).
    pub(crate) fn cancel(&self) {
        self.1.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether [`Progress::cancel`] was called.
    pub(crate) fn cancelled(&self) -> bool {
        self.1.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The step now.
    pub(crate) fn set(&self, doing: impl Into<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = doing.into();
    }

    /// The step last set.
    pub(crate) fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Says the step, if the sync has a [`Progress`].
fn step(opts: &SyncOptions, doing: impl FnOnce() -> String) {
    if let Some(p) = &opts.progress {
        p.set(doing());
    }
}

/// What keeps a file written during a sync out of its install set: the
/// bridge's inotify feed and the mark taken before the sync read anything
/// ([`crate::core::fresh`]).
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    /// The bridge's inotify instance.
    pub(crate) feed: Arc<Feed>,
    /// Taken when the sync was started.
    pub(crate) mark: Mark,
}

/// The file phase on a blocking thread.
pub(crate) async fn sync_files_async(
    config: &Config,
    bridge: &Bridge,
    opts: SyncOptions,
) -> Result<Synced> {
    let state = StateDir::new(&config.state_dir);
    let (c, b) = (config.clone(), bridge.clone());
    tokio::task::spawn_blocking(move || sync_files(&c, &b, &state, &opts))
        .await
        .context("file sync task failed")?
}

/// The file part of a sync: scan → check → plan → apply, each a small step
/// below. Returns the report and the manifest as saved (`None` when the
/// sync found everything as the manifest file records it and did not build
/// it: nothing is owed then, [`seen::as_recorded`]). It is the one
/// place where the whole order of a sync (lock, hold, dry run, grants
/// before installs) can be read top to bottom, so it stays one function.
///
/// The scan (reads, the rules checks, `udevadm verify`) runs before the
/// state lock is taken: a slow or hung child holds up its own bridge, never
/// another's file changes. The plan is made under the lock from the
/// manifest as it is then.
pub(crate) fn sync_files(
    config: &Config,
    bridge: &Bridge,
    state: &StateDir,
    opts: &SyncOptions,
) -> Result<Synced> {
    let mut report = SyncReport {
        bridge: bridge.name.clone(),
        dry_run: opts.dry_run,
        ..SyncReport::default()
    };
    step(opts, || "reading the source".into());
    // What verdicts are made under; those recorded under others are not
    // taken (below, all is read).
    let checks = seen::checks_of(config, bridge);
    if let Some(count) = seen::as_recorded(bridge, state, opts, checks)? {
        report.unchanged = count;
        report.source_files = count;
        report.source_present = true;
        trusted_note(bridge, &mut report);
        return Ok((report, None));
    }
    let loaded = state.load_kept(&bridge.name)?;
    // The daemon's sync after a complete one looks at what changed only.
    let loaded = match delta::sync(config, bridge, state, opts, loaded, checks)? {
        Ok(synced) => return Ok(synced),
        Err(loaded) => loaded,
    };
    let fresh = Manifest::default();
    let before = if loaded.manifest.destination == bridge.install_to {
        &loaded.manifest
    } else {
        &fresh
    };
    let scoped;
    let opts = if before.checks == Some(checks) || opts.scope == Scope::Full {
        opts
    } else {
        scoped = SyncOptions {
            scope: Scope::Full,
            ..opts.clone()
        };
        &scoped
    };
    let (scan, mut accepted) = scan_source(config, bridge, before, opts, &mut report)?;
    // Every read is done: what changed meanwhile is known now.
    let held = opts
        .guard
        .as_ref()
        .map(|g| barrier(g, &scan.view, &mut report))
        .unwrap_or_default();
    step(opts, || "waiting for the state lock".into());
    let _lock = if opts.dry_run {
        None
    } else {
        Some(state.lock()?)
    };
    may_change(opts)?;
    step(opts, || "planning".into());
    // Parsed again only if another sync saved it meanwhile.
    let loaded = state.load_again(&bridge.name, loaded)?;
    let mut manifest = for_bridge(loaded.manifest, bridge, &mut report);
    // Said below, once this sync knows.
    manifest.complete = false;
    let checks_changed = manifest.checks != Some(checks);
    manifest.checks = Some(checks);
    // The destination is created only when there is something to install.
    // What a crash left in it is cleared first, whatever this sync holds.
    let dest = open_existing(&bridge.install_to)?;
    if let (Some(d), true) = (&dest, opts.clean_temps && !opts.dry_run) {
        report.cleaned = d.clean_stale_temps().context("removing stale temp files")?;
        if symlink_dir(bridge) {
            let fixed = gendir::reconcile_links(d).context("reconciling the generation links")?;
            report.notes.extend(fixed);
        }
    }
    if let Some(name) = held_set_member(bridge, &held) {
        // A set is installed whole or not at all.
        report.notes.push(format!(
            "holding the set: {name} changed while the sync ran; nothing was changed"
        ));
        report.set_held = true;
        forget_what_was_read(state, bridge, &scan, &mut manifest, opts.dry_run)?;
        return Ok((report, Some(manifest)));
    }
    if let Some(files) = &bridge.files
        && let Some(checks::SetHold { why, refused }) = set_checks(files, &scan, &mut report)
    {
        // Nothing changes until the set is complete and valid; the last good set stays.
        report
            .notes
            .push(format!("holding: {why}; nothing was changed"));
        report.set_held = refused;
        forget_what_was_read(state, bridge, &scan, &mut manifest, opts.dry_run)?;
        return Ok((report, Some(manifest)));
    }
    let owner = owner_ids(bridge)?;
    let planning = Planning {
        gate: opts.prune_gate,
        scope: &opts.scope,
    };
    let mut seeing = seen::Seeing::of_scan(&scan, &held);
    let plan = make_plan(
        bridge,
        &planning,
        &manifest,
        dest.as_ref(),
        owner,
        &mut seeing,
        &mut report,
    )?;
    races_are_not_faults(&scan.transient, &mut report);
    if let Some(name) = set_conflict(bridge, &report) {
        // A set is installed whole or not at all: one member in conflict
        // holds the others too (a new key beside a foreign certificate).
        report.notes.push(format!(
            "holding the set: {name} is in conflict; nothing was changed"
        ));
        report.set_held = true;
        report.cert = None;
        forget_what_was_read(state, bridge, &scan, &mut manifest, opts.dry_run)?;
        return Ok((report, Some(manifest)));
    }
    manifest.complete = delta::clean(&report, &scan) && held.is_empty();
    // The dir's names as this sync listed them, when they are exactly the
    // files it records (a listing newly known is worth a save).
    let listing = scan.listing.filter(|_| manifest.complete).map(|dir| {
        let names = scan.view.files.keys().map(|n| n.as_bytes());
        (dir, crate::host::state::format::names_sum(names))
    });
    let listing_new = listing.is_some() && listing != manifest.listing;
    manifest.listing = listing;
    if opts.dry_run {
        record_ops(&mut report, &plan.ops);
        return Ok((report, Some(manifest)));
    }
    if writes_unread(&plan, &scan) {
        // An installed copy was changed behind hostbridge's back and the
        // scan took its source unread (a rules file's installed form is
        // made only by judging it): once more, reading everything.
        drop(_lock);
        let full = SyncOptions {
            scope: Scope::Full,
            ..opts.clone()
        };
        return sync_files(config, bridge, state, &full);
    }
    for name in &held {
        accepted.remove(name);
    }
    if !plan.changes() {
        let seen = seeing.for_files(&plan.owned_after);
        if plan.owned_after != manifest.files
            || seen != manifest.seen
            || checks_changed
            || manifest.write_whole
        {
            // Entries for files already gone (removed behind hostbridge's
            // back, or by an interrupted swap): the manifest forgets them;
            // what this sync saw spares the next one the reads; and a file
            // of an earlier version is written in this one.
            manifest.files = plan.owned_after;
            manifest.seen = seen;
            manifest.write_whole = false;
            manifest.left = state.save(&bridge.name, &manifest)?;
        } else {
            // As its file holds it, now known complete or not.
            if let (true, Some(file)) = (listing_new, manifest.left)
                && !state.save_listing(&bridge.name, &manifest, &file)
            {
                manifest.listing = None;
            }
            state.remember(&bridge.name, &manifest);
        }
        return Ok((report, Some(manifest)));
    }
    if bridge.rules.is_some() {
        record_grants(config, bridge, &scan.view, accepted)?;
    }
    step(opts, || format!("installing {} changes", plan.ops.len()));
    let dest = match dest {
        Some(d) => d,
        None => create_dest(bridge)?,
    };
    let target = apply::Target {
        bridge,
        state,
        dest: &dest,
        owner,
    };
    apply(
        &target,
        &plan,
        &scan.content,
        &mut seeing,
        &mut manifest,
        &mut report,
    )?;
    Ok((report, Some(manifest)))
}

/// Whether a sync holding the state lock may still change anything: not
/// once hostbridge is stopping, nor once a reload replaced its bridge (the
/// new one syncs under its config, and this one must not undo that, nor
/// record verdicts of the old).
fn may_change(opts: &SyncOptions) -> Result<()> {
    if crate::host::child::stopping() {
        anyhow::bail!("hostbridge is stopping: nothing was changed");
    }
    if opts.progress.as_ref().is_some_and(|p| p.cancelled()) {
        anyhow::bail!("the bridge was replaced by a reload: nothing was changed");
    }
    Ok(())
}

/// A held set changes nothing, but the names this sync read (the daemon's:
/// those its watch saw change) must be read again by the next one, whose
/// window may not name them: their records are dropped (and saved, unless
/// this is a dry run). The records of files taken unread stand.
fn forget_what_was_read(
    state: &StateDir,
    bridge: &Bridge,
    scan: &source::SourceScan,
    manifest: &mut Manifest,
    dry_run: bool,
) -> Result<()> {
    let before = manifest.seen.len();
    manifest.seen.retain(|n, _| scan.reused.contains(n));
    if manifest.seen.len() != before && !dry_run {
        manifest.left = state.save(&bridge.name, manifest)?;
    }
    Ok(())
}

/// Whether the plan writes a file whose bytes the scan did not read (one
/// it took unread: such a file has no kept bytes).
fn writes_unread(plan: &plan::Plan, scan: &source::SourceScan) -> bool {
    plan.ops
        .iter()
        .any(|op| !matches!(op, plan::Op::Prune { .. }) && scan.reused.contains(op.name()))
}

/// A file that vanished while it was read, or that a writer still has
/// open, is held (its last good copy stays, its removal's or its writer's
/// close's event opens the next window), not reported as a skip that makes
/// the bridge degraded.
fn races_are_not_faults(transient: &source::Transient, report: &mut SyncReport) {
    let (held, skipped) = std::mem::take(&mut report.skipped)
        .into_iter()
        .partition(|(name, _)| {
            transient.vanished.contains(name)
                || transient.recent.contains(name)
                || transient.writing.contains(name)
        });
    // A file written moments ago, whose events may have been missed: the
    // daemon opens a window for it, which comes when it has been quiet.
    report.recheck.extend(
        transient
            .recent
            .iter()
            .map(|n| crate::core::settle::Input::Change(n.clone())),
    );
    report.held_open.clone_from(&transient.writing);
    report.skipped = skipped;
    report.held.extend::<Vec<_>>(held);
}

/// The barrier, once every read is done: each source file that changed
/// during the sync, or is open for writing, is held (its last good copy
/// stays; the event that changed it opens the next window). What was read
/// of it may be torn, so it is not judged either: its findings and skip
/// are dropped, and the report lists it as held. Returns the held names.
fn barrier(guard: &Guard, view: &plan::SourceView, report: &mut SyncReport) -> BTreeSet<String> {
    let names = view.files.keys().map(String::as_str);
    let held = guard.feed.holds(guard.mark, names);
    // The daemon opens a window for these, whatever it made of their events
    // (one on a watch it already replaced is not interpreted).
    for (name, why) in &held {
        match why {
            Hold::ChangedDuringSync => report.recheck.push(Input::Change(name.clone())),
            Hold::EventsLost => report.recheck.push(Input::Rescan),
            Hold::StillOpen => {} // its close is the event
        }
    }
    report.recheck.dedup();
    let names: BTreeSet<String> = held.iter().map(|(n, _)| n.clone()).collect();
    report.findings.retain(|(n, _)| !names.contains(n));
    report.skipped.retain(|(n, _)| !names.contains(n));
    report.unreadable.retain(|n| !names.contains(n));
    report.held.extend(
        held.into_iter()
            .map(|(n, why)| (n, why.reason().to_string())),
    );
    names
}

/// A held file that belongs to the bridge's set (`require:`, the TLS pair),
/// if any: the set is then held whole.
fn held_set_member<'h>(bridge: &Bridge, held: &'h BTreeSet<String>) -> Option<&'h String> {
    let files = bridge.files.as_ref()?;
    let pair = files.tls_pair.as_ref();
    held.iter().find(|n| {
        files.require.iter().any(|r| r == *n) || pair.is_some_and(|p| p.cert == **n || p.key == **n)
    })
}

/// The bridge's manifest: a changed `install_to` starts a new one (the
/// files installed in the old place are left there, and the report says so).
fn for_bridge(manifest: Manifest, bridge: &Bridge, report: &mut SyncReport) -> Manifest {
    if manifest.destination == bridge.install_to {
        return manifest;
    }
    if !manifest.files.is_empty() {
        report.notes.push(format!(
            "install_to changed from {}; {} files installed there are left in place",
            manifest.destination.display(),
            manifest.files.len()
        ));
    }
    Manifest {
        destination: bridge.install_to.clone(),
        ..Manifest::default()
    }
}

/// Reads the source once: every admitted file is vetted (the rules checks
/// for a rules bridge) and the bytes to install are kept for the files the
/// apply step may write ([`keep`]). Returns the scan and the accepted rules
/// as parsed (for the grants recorded before an install).
fn scan_source(
    config: &Config,
    bridge: &Bridge,
    manifest: &Manifest,
    opts: &SyncOptions,
    report: &mut SyncReport,
) -> Result<(source::SourceScan, Accepted)> {
    let mut checker = RulesChecker::new(config, bridge, manifest, opts.progress.as_deref());
    trusted_note(bridge, report);
    let installed: BTreeSet<String> = manifest.files.keys().cloned().collect();
    let keep = |name: &str, digest: &plan::Digest| keep(bridge, manifest, name, digest);
    let spec = source::ScanSpec {
        include: &bridge.include,
        admit: &source::Admit {
            quiet_for: opts.quiet_for,
            ..admit(bridge)
        },
        limits: limits(bridge),
        installed: &installed,
        still_open: &opts.still_open,
        keep: &keep,
        reuse: seen::reuse(&opts.scope, manifest),
        always_read: &tls_pair_names(bridge),
    };
    let scan = source::scan(&bridge.source, &spec, &mut |name, bytes| {
        checker.accept(name, bytes)
    })
    .with_context(|| format!("reading source dir {}", bridge.source.display()))?;
    report.findings = std::mem::take(&mut checker.findings);
    report.source_present = scan.view.present || scan.overflow.is_some();
    if let Some(why) = &scan.overflow {
        report.skipped.push(("(source)".into(), why.clone()));
    }
    report.skipped.extend(scan.rejected.iter().cloned());
    report.unreadable = scan.transient.unreadable.iter().cloned().collect();
    report
        .skipped
        .extend(scan.over_budget.as_ref().map(source::OverBudget::entry));
    Ok((scan, checker.accepted))
}

/// A rules bridge whose policy is `trusted` says so in every report.
fn trusted_note(bridge: &Bridge, report: &mut SyncReport) {
    if checks::trusted(bridge) {
        report
            .notes
            .push("policy is trusted: rules files are installed without security checks".into());
    }
}

/// What the rules checks say today of each file in a rules bridge's
/// source, as a sync would judge it but without `udevadm verify` and
/// without installing anything: `hostbridge check` reports the GROUP and
/// OWNER names they use that this host lacks. Empty for a files bridge or a
/// missing source; an unreadable source dir is an error.
pub(crate) fn source_findings(
    config: &Config,
    bridge: &Bridge,
) -> Result<Vec<(String, rules::Finding)>> {
    let Some(checks) = bridge.rules.as_ref() else {
        return Ok(Vec::new());
    };
    let host = host_checks(config, checks);
    let lookups = crate::host::preflight::Host::default();
    let none = BTreeSet::new();
    let spec = source::ScanSpec {
        include: &bridge.include,
        admit: &admit(bridge),
        limits: limits(bridge),
        installed: &none,
        still_open: &none,
        keep: &|_, _| false,
        reuse: source::Reuse::Nothing,
        always_read: &[],
    };
    let mut found = Vec::new();
    source::scan(&bridge.source, &spec, &mut |name, bytes| {
        let vetted = vet_rules(None, checks, Some((&host, &lookups)), name, bytes, &|_| {
            false
        });
        found.extend(vetted.findings.into_iter().map(|f| (name.to_string(), f)));
        Ok(None)
    })
    .with_context(|| format!("reading source dir {}", bridge.source.display()))?;
    Ok(found)
}

/// The TLS pair's names: always read, since its check needs the bytes.
fn tls_pair_names(bridge: &Bridge) -> Vec<&str> {
    bridge
        .files
        .as_ref()
        .and_then(|f| f.tls_pair.as_ref())
        .map(|p| vec![p.cert.as_str(), p.key.as_str()])
        .unwrap_or_default()
}

/// The accepted rules files of a scan as parsed, by name.
type Accepted = BTreeMap<String, rules::parse::RulesFile>;

/// Whether a scan keeps the bytes of a ready file: those a sync may
/// install (content other than what the manifest says is installed), the
/// ones the set checks read (the TLS pair), and every file of a rules
/// bridge (small: `max_bytes` is 1 MiB by default, and a rules file's
/// installed form is its canonical one, which cannot be made again from a
/// later read without judging it again). A file not kept that the plan
/// still writes (an installed copy changed behind hostbridge's back) is
/// read again at install, and installed only if its digest is the one
/// planned.
fn keep(bridge: &Bridge, manifest: &Manifest, name: &str, digest: &plan::Digest) -> bool {
    bridge.rules.is_some()
        || manifest.files.get(name).is_none_or(|o| o.digest != *digest)
        || bridge
            .files
            .as_ref()
            .and_then(|f| f.tls_pair.as_ref())
            .is_some_and(|p| p.cert == name || p.key == name)
}

/// How a sync plans, besides what it read: the prune gate of a new source
/// dir, and which installed copies it looks at ([`Scope`]).
struct Planning<'a> {
    gate: PruneGate,
    scope: &'a Scope,
}

/// What the destination holds under every name the source or the manifest
/// knows, then the plan (and the re-judging of kept rules copies). The
/// scan and the files the barrier held are `seeing`'s.
fn make_plan(
    bridge: &Bridge,
    planning: &Planning<'_>,
    manifest: &Manifest,
    dest: Option<&DestDir>,
    owner: apply::Owner,
    seeing: &mut seen::Seeing,
    report: &mut SyncReport,
) -> Result<plan::Plan> {
    let (scan, held, scope) = (seeing.scan, seeing.held, planning.scope);
    let view = &scan.view;
    let symlink_dir = symlink_dir(bridge);
    // Built in name order, then in bulk.
    let mut dest_state = Vec::new();
    // Every map is in name order: one merged walk, no lookups.
    let (mut owned_at, mut seen_at) = (
        manifest.files.iter().peekable(),
        manifest.seen.iter().peekable(),
    );
    let mut reused = scan.reused.iter().peekable();
    for name in plan::union(view.files.keys(), manifest.files.keys()) {
        let owned = plan::at(&mut owned_at, name);
        let known = owned
            .zip(plan::at(&mut seen_at, name).and_then(|s| s.dest))
            .map(|(o, st)| (st, o.digest));
        while reused.next_if(|r| r.as_str() < name.as_str()).is_some() {}
        let was_reused = reused.next_if(|r| *r == name).is_some();
        // The daemon's sync: a file its watch did not see change, taken
        // unread, has its installed copy as the last sync left it.
        if let (Scope::Changed(_), Some((st, digest)), true) = (scope, known, was_reused) {
            let d = DestFile::File {
                digest: Some(digest),
                mode: st.mode & 0o7777,
                uid: st.uid,
                gid: st.gid,
            };
            dest_state.push((name.clone(), d));
            seeing.dest.insert(name.clone(), (st, digest));
            continue;
        }
        let looked = match dest {
            Some(d) if symlink_dir => {
                gendir::describe(d, name, bridge.max_file_size).map(|f| (f, None))
            }
            Some(d) => d.describe_known(
                name,
                bridge.max_file_size,
                known.filter(|_| *scope != Scope::Full),
            ),
            None => Ok((DestFile::Absent, None)),
        }
        .with_context(|| format!("inspecting {}", bridge.install_to.join(name).display()))?;
        if let (
            DestFile::File {
                digest: Some(d), ..
            },
            Some(st),
        ) = &looked
        {
            seeing.dest.insert(name.clone(), (*st, *d));
        }
        dest_state.push((name.clone(), looked.0));
    }
    let wait_for_content = planning.gate == PruneGate::UntilContent && view.files.is_empty();
    let desired = desired(bridge, owner, wait_for_content);
    let dest_state: BTreeMap<String, DestFile> = dest_state.into_iter().collect();
    let mut plan = plan::plan(view, &manifest.files, &dest_state, desired);
    // Held files keep their installed copies, which are then judged under
    // today's policy like any other kept copy (a hold never shields one).
    for name in held {
        plan.hold(name, manifest.files.get(name).copied());
    }
    if let (Some(checks), Some(d)) = (&bridge.rules, dest) {
        revoke_unsafe_copies(bridge, checks, d, view, held, &mut plan, report);
    }
    report.unchanged = plan.unchanged;
    report.skipped.extend(plan.skipped.iter().cloned());
    report.conflicts.clone_from(&plan.conflicts);
    report.kept.clone_from(&plan.kept);
    report.prune_held = plan.prune_held;
    report.source_files = view.files.len();
    Ok(plan)
}

/// The bridge's destination, created (when a sync has something to
/// install there and it is missing).
fn create_dest(bridge: &Bridge) -> Result<DestDir> {
    DestDir::open_or_create(&bridge.install_to)
        .with_context(|| format!("creating destination {}", bridge.install_to.display()))
        .map_err(|e| read_only_hint(e, &bridge.install_to))
}

/// What the plan wants of the installed files: the bridge's mode, prune
/// and owners (looked up), and whether absences wait for content.
fn desired(bridge: &Bridge, owner: apply::Owner, wait_for_content: bool) -> Desired {
    Desired {
        mode: bridge.mode,
        prune: bridge.prune,
        wait_for_content,
        uid: owner.0.map(nix::unistd::Uid::as_raw),
        gid: owner.1.map(nix::unistd::Gid::as_raw),
    }
}

/// An installed rules file whose source did not pass this sync keeps its
/// last good copy, but that copy was judged under the policy of its day:
/// it is judged again under today's, and removed when it breaks it (a
/// tightened `allow_groups` or `allow_symlinks` must not leave a grant
/// behind, whatever the source holds or however many entries it lists).
/// Pure policy only: a host lookup that fails today is not a reason.
fn revoke_unsafe_copies(
    bridge: &Bridge,
    checks: &crate::config::RulesChecks,
    dest: &DestDir,
    view: &plan::SourceView,
    held: &BTreeSet<String>,
    plan: &mut plan::Plan,
    report: &mut SyncReport,
) {
    if checks.policy.mode == rules::policy::PolicyMode::Trusted {
        return;
    }
    let kept: Vec<String> = plan
        .owned_after
        .keys()
        .filter(|n| {
            held.contains(*n) || !matches!(view.files.get(*n), Some(plan::SourceFile::Ready(_)))
        })
        .filter(|n| !plan.ops.iter().any(|op| op.name() == n.as_str()))
        .cloned()
        .collect();
    for name in kept {
        let Ok(bytes) = gendir::read_current(dest, &name, bridge.max_file_size) else {
            continue;
        };
        let errors: Vec<rules::Finding> = rules::vet(&name, &bytes, &checks.policy)
            .findings
            .into_iter()
            .filter(|f| f.severity == rules::Severity::Error)
            .collect();
        if errors.is_empty() {
            continue;
        }
        report.notes.push(format!(
            "removing the installed {name}: it breaks the bridge's current policy"
        ));
        report
            .findings
            .extend(errors.into_iter().map(|f| (name.clone(), f)));
        plan.kept.retain(|(n, _)| *n != name);
        plan.owned_after.remove(&name);
        plan.ops.push(plan::Op::Prune { name });
    }
    plan.ops.sort_by(|a, b| a.name().cmp(b.name()));
}

/// Whether the bridge installs its set at once (`swap: symlink-dir`).
fn symlink_dir(bridge: &Bridge) -> bool {
    bridge
        .files
        .as_ref()
        .is_some_and(|f| f.swap == Swap::SymlinkDir)
}

/// What a source file must be to be read at all.
fn admit(bridge: &Bridge) -> source::Admit {
    source::Admit {
        max_size: bridge.max_file_size,
        owners: bridge.source_owner.clone(),
        quiet_for: None,
    }
}

/// How much the bridge's source may export.
fn limits(bridge: &Bridge) -> crate::core::budget::Limits {
    crate::core::budget::Limits {
        max_files: bridge.max_files,
        max_bytes: bridge.max_bytes,
    }
}

/// Records the node state of devices the source's rules are about to grant
/// (see [`crate::act::revoke`]), from the rules as the scan parsed them.
fn record_grants(
    config: &Config,
    bridge: &Bridge,
    view: &plan::SourceView,
    mut accepted: Accepted,
) -> Result<()> {
    let files: Vec<(String, rules::parse::RulesFile)> = view
        .files
        .iter()
        .filter(|(_, f)| matches!(f, plan::SourceFile::Ready(_)))
        .filter_map(|(name, _)| accepted.remove_entry(name))
        .collect();
    crate::act::revoke::record(config, &bridge.name, &files)
}

/// Now, in Unix seconds, as the certificate checks take it.
fn unix_now() -> i64 {
    crate::host::clock::unix_now() as i64
}

/// Waits until no sync of this process (or any other hostbridge using the
/// same state dir) is changing files: file changes hold the state-dir lock.
pub(crate) async fn wait_idle(state_dir: &Path) {
    let state = StateDir::new(state_dir);
    let _ = tokio::task::spawn_blocking(move || state.lock().map(drop)).await;
}

/// The first member in conflict of a bridge whose files are a set (kind
/// files with `require`, a TLS pair or the symlink-dir swap).
fn set_conflict(bridge: &Bridge, report: &SyncReport) -> Option<String> {
    seen::whole_set(bridge)
        .then(|| report.conflicts.first().map(|(n, _)| n.clone()))
        .flatten()
}
