//! One reconcile of one bridge: scan the source, plan against the manifest
//! and the destination, apply atomically, then run the bridge's actions if
//! anything changed (or a previous run of them failed). Shell code: it glues
//! the pure planner to the host layer and holds no policy of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::{Action, Bridge, Config, FilesSettings, RulesChecks, Swap};
use crate::core::plan::{self, Desired, DestFile, Op, Plan};
use crate::core::rules::{self, Finding, Severity};
use crate::host::actions::{self, ActionOutcome};
use crate::host::dest::DestDir;
use crate::host::gendir;
use crate::host::preflight::{self, HostChecks};
use crate::host::source;
use crate::host::state::{Manifest, StateDir};

/// What a sync of one bridge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The bridge.
    pub bridge: String,
    /// Whether this was a dry run (nothing written, no action run).
    pub dry_run: bool,
    /// Whether the source dir existed.
    pub source_present: bool,
    /// Newly written files.
    pub installed: Vec<String>,
    /// Overwritten files.
    pub replaced: Vec<String>,
    /// Removed files.
    pub pruned: Vec<String>,
    /// Count of files already up to date.
    pub unchanged: usize,
    /// Source entries not synced, with reasons.
    pub skipped: Vec<(String, String)>,
    /// Destination names hostbridge does not own, with reasons.
    pub conflicts: Vec<(String, String)>,
    /// Owned files kept although their source is gone.
    pub kept: Vec<(String, String)>,
    /// Stale temp files removed from the destination.
    pub cleaned: Vec<String>,
    /// Operator-facing notes (e.g. a changed destination).
    pub notes: Vec<String>,
    /// Findings of the udev rules checks, by file (errors and warnings).
    pub findings: Vec<(String, Finding)>,
    /// Per-file failures.
    pub errors: Vec<String>,
    /// Actions run, in order.
    pub actions: Vec<ActionOutcome>,
}

impl SyncReport {
    /// Whether the destination changed.
    pub fn changed(&self) -> bool {
        !(self.installed.is_empty() && self.replaced.is_empty() && self.pruned.is_empty())
    }

    /// Whether everything went as planned (skips and conflicts are findings,
    /// not failures, but they make the bridge degraded).
    pub fn failed(&self) -> bool {
        !self.errors.is_empty() || self.actions.iter().any(|a| a.result.is_err())
    }

    /// One human line: "installed a.rules, b.rules; pruned c.rules".
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (verb, names) in [
            ("installed", &self.installed),
            ("replaced", &self.replaced),
            ("pruned", &self.pruned),
        ] {
            if !names.is_empty() {
                parts.push(format!("{verb} {}", list(names)));
            }
        }
        if parts.is_empty() {
            parts.push("nothing to change".into());
        }
        if self.unchanged > 0 {
            parts.push(format!("{} unchanged", self.unchanged));
        }
        for (label, n) in [
            ("skipped", self.skipped.len()),
            ("conflicts", self.conflicts.len()),
            ("errors", self.errors.len()),
        ] {
            if n > 0 {
                parts.push(format!("{n} {label}"));
            }
        }
        parts.join("; ")
    }

    /// How many destination files changed.
    pub fn change_count(&self) -> usize {
        self.installed.len() + self.replaced.len() + self.pruned.len()
    }
}

/// Lists up to five names, then "+N more".
fn list(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" (+{} more)", names.len() - SHOWN));
    }
    s
}

/// Options of one sync.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Files still being written: keep their installed copies.
    pub still_open: BTreeSet<String>,
    /// Plan only.
    pub dry_run: bool,
    /// Remove stale temp files from the destination first (startup).
    pub clean_temps: bool,
}

/// A bridge whose files changed and whose `then:` actions are owed.
#[derive(Debug, Clone)]
pub struct Owed {
    /// The bridge.
    pub bridge: Bridge,
    /// Its sync report (actions get filled in).
    pub report: SyncReport,
    /// Its manifest, saved again once the actions succeeded.
    pub manifest: Manifest,
}

/// The file phase on a blocking thread.
pub async fn sync_files_async(
    config: &Config,
    bridge: &Bridge,
    opts: SyncOptions,
) -> Result<(SyncReport, Manifest)> {
    let state = StateDir::new(&config.state_dir);
    let (c, b) = (config.clone(), bridge.clone());
    tokio::task::spawn_blocking(move || sync_files(&c, &b, &state, &opts))
        .await
        .context("file sync task failed")?
}

/// Runs the owed actions of several bridges together: each distinct action
/// once, in the order first listed, even when several bridges name it.
/// Bridges are taken in config order, whichever settled first, so the
/// `HOSTBRIDGE_BRIDGE` and `HOSTBRIDGE_CHANGED` an action sees do not depend
/// on timing. A
/// failed action skips the rest of its bridges' actions until their next
/// sync. Manifests of bridges whose actions all succeeded are saved with
/// nothing owed; a manifest that cannot be saved is an error in that
/// bridge's report (its actions run again at the next sync).
pub async fn run_owed(config: &Config, owed: &mut [Owed]) {
    // Indices in config order; `owed` itself keeps its order for the caller.
    let mut order: Vec<usize> = (0..owed.len()).collect();
    order.sort_by_key(|&i| {
        config
            .bridges
            .iter()
            .position(|b| b.name == owed[i].bridge.name)
            .unwrap_or(usize::MAX)
    });
    let mut plan: Vec<(Action, Vec<usize>)> = Vec::new();
    for &i in &order {
        for a in &owed[i].bridge.then {
            match plan.iter_mut().find(|(x, _)| x == a) {
                Some((_, who)) => who.push(i),
                None => plan.push((a.clone(), vec![i])),
            }
        }
    }
    let mut failed = vec![false; owed.len()];
    for (action, who) in plan {
        let live: Vec<usize> = who.into_iter().filter(|&i| !failed[i]).collect();
        if live.is_empty() {
            continue;
        }
        let who: Vec<&Owed> = live.iter().map(|&i| &owed[i]).collect();
        let outcome = run_one(config, &action, &who).await;
        for &i in &live {
            failed[i] |= outcome.result.is_err();
            owed[i].report.actions.push(outcome.clone());
        }
    }
    for (o, failed) in owed.iter_mut().zip(failed.iter_mut()) {
        let Some(checks) = &o.bridge.rules else {
            continue;
        };
        match crate::revoke::revoke(config, &o.bridge, checks.revoke_restore).await {
            Ok(notes) if notes.is_empty() => {}
            Ok(notes) => {
                o.report.notes.extend(notes);
                // The usb-check ran before the revocation: check again so
                // the status shows the nodes as they are now.
                let check = o
                    .bridge
                    .then
                    .iter()
                    .find(|a| matches!(a, Action::UsbCheck { .. }));
                let ran = o.report.actions.iter().any(|a| a.usb.is_some());
                if let Some(action) = check.filter(|_| ran) {
                    let outcome = run_one(config, action, &[&*o]).await;
                    *failed |= outcome.result.is_err();
                    match o
                        .report
                        .actions
                        .iter_mut()
                        .find(|a| a.action == outcome.action)
                    {
                        Some(a) => *a = outcome,
                        None => o.report.actions.push(outcome),
                    }
                }
            }
            Err(e) => o.report.errors.push(format!("revoking grants: {e:#}")),
        }
    }
    let state = StateDir::new(&config.state_dir);
    for (o, failed) in owed.iter_mut().zip(failed) {
        // An action is only skipped after one of the bridge's actions failed.
        if !failed {
            o.manifest.actions_pending = false;
            let (name, st, m) = (o.bridge.name.clone(), state.clone(), o.manifest.clone());
            let saved = tokio::task::spawn_blocking(move || st.save(&name, &m))
                .await
                .context("manifest task failed")
                .and_then(|r| r);
            if let Err(e) = saved {
                // Its actions ran; they run again at the next sync.
                o.report.errors.push(format!("{e:#}"));
            }
        }
    }
}

/// Runs `action` once for the bridges `who` (their names and changed files
/// in its environment).
async fn run_one(config: &Config, action: &Action, who: &[&Owed]) -> actions::ActionOutcome {
    let ctx = actions::ActionCtx {
        udevadm: config.udevadm.clone(),
        systemctl: config.systemctl.clone(),
        podman: config.podman.clone(),
        proc_root: config.proc_root.clone(),
        bridge: who
            .iter()
            .map(|o| o.bridge.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
        changed: who.iter().flat_map(|o| o.report.changed_names()).collect(),
        config: std::sync::Arc::new(config.clone()),
    };
    actions::run_all(std::slice::from_ref(action), &ctx)
        .await
        .remove(0)
}

impl SyncReport {
    /// Names installed, replaced or pruned.
    pub fn changed_names(&self) -> Vec<String> {
        self.installed
            .iter()
            .chain(&self.replaced)
            .chain(&self.pruned)
            .cloned()
            .collect()
    }
}

/// The file part of a sync. Returns the report and the manifest as saved.
pub fn sync_files(
    config: &Config,
    bridge: &Bridge,
    state: &StateDir,
    opts: &SyncOptions,
) -> Result<(SyncReport, Manifest)> {
    let _lock = if opts.dry_run {
        None
    } else {
        Some(state.lock()?)
    };
    let mut report = SyncReport {
        bridge: bridge.name.clone(),
        dry_run: opts.dry_run,
        ..SyncReport::default()
    };
    let mut manifest = state.load(&bridge.name)?;
    if manifest.destination != bridge.install_to {
        if !manifest.files.is_empty() {
            report.notes.push(format!(
                "install_to changed from {}; {} files installed there are left in place",
                manifest.destination.display(),
                manifest.files.len()
            ));
        }
        manifest = Manifest {
            destination: bridge.install_to.clone(),
            ..Manifest::default()
        };
    }
    let mut checker = RulesChecker::new(config, bridge, &manifest);
    if checker.trusted() {
        report
            .notes
            .push("policy is trusted: rules files are installed without security checks".into());
    }
    let mut accept = |name: &str, bytes: &[u8]| checker.accept(name, bytes);
    let installed: BTreeSet<String> = manifest.files.keys().cloned().collect();
    let scan = source::scan(
        &bridge.source,
        &bridge.include,
        &admit(bridge),
        (limits(bridge), &installed),
        &opts.still_open,
        &mut accept,
    )
    .with_context(|| format!("reading source dir {}", bridge.source.display()))?;
    report.findings = checker.findings;
    report.source_present = scan.view.present;
    report.skipped.extend(scan.rejected.iter().cloned());
    report
        .skipped
        .extend(scan.over_budget.as_ref().map(source::OverBudget::entry));
    if let Some(files) = &bridge.files
        && let Some(why) = set_checks(bridge, files, &scan.view, &mut report)
    {
        // Nothing changes until the set is complete and valid; the last good set stays.
        report
            .notes
            .push(format!("holding: {why}; nothing was changed"));
        return Ok((report, manifest));
    }
    let symlink_dir = bridge
        .files
        .as_ref()
        .is_some_and(|f| f.swap == Swap::SymlinkDir);

    // The destination is created only when there is something to install.
    let dest = open_existing(&bridge.install_to)?;
    if let (Some(d), true) = (&dest, opts.clean_temps && !opts.dry_run) {
        report.cleaned = d.clean_stale_temps().context("removing stale temp files")?;
    }
    let names: BTreeSet<&String> = scan
        .view
        .files
        .keys()
        .chain(manifest.files.keys())
        .collect();
    let mut dest_state = std::collections::BTreeMap::new();
    for name in names {
        let d = match &dest {
            Some(d) if symlink_dir => gendir::describe(d, name, bridge.max_file_size)
                .with_context(|| {
                    format!("inspecting {}", bridge.install_to.join(name).display())
                })?,
            Some(d) => d.describe(name, bridge.max_file_size).with_context(|| {
                format!("inspecting {}", bridge.install_to.join(name).display())
            })?,
            None => DestFile::Absent,
        };
        dest_state.insert(name.clone(), d);
    }
    let owner = owner_ids(bridge)?;
    let desired = Desired {
        mode: bridge.mode,
        prune: bridge.prune,
        uid: owner.0.map(nix::unistd::Uid::as_raw),
        gid: owner.1.map(nix::unistd::Gid::as_raw),
    };
    let plan = plan::plan(&scan.view, &manifest.files, &dest_state, desired);
    report.unchanged = plan.unchanged.len();
    report.skipped.extend(plan.skipped.iter().cloned());
    report.conflicts.clone_from(&plan.conflicts);
    report.kept.clone_from(&plan.kept);
    if opts.dry_run {
        record_ops(&mut report, &plan.ops);
        return Ok((report, manifest));
    }
    if plan.changes() && bridge.rules.is_some() {
        record_grants(config, bridge, &scan)?;
    }
    if plan.changes() {
        let dest = match dest {
            Some(d) => d,
            None => DestDir::open_or_create(&bridge.install_to)
                .with_context(|| format!("creating destination {}", bridge.install_to.display()))
                .map_err(|e| read_only_hint(e, &bridge.install_to))?,
        };
        apply(
            bridge,
            state,
            &dest,
            &plan,
            &scan.rewritten,
            owner,
            &mut manifest,
            &mut report,
        )?;
    }
    Ok((report, manifest))
}

/// What a source file must be to be read at all.
fn admit(bridge: &Bridge) -> source::Admit {
    source::Admit {
        max_size: bridge.max_file_size,
        owners: bridge.source_owner.clone(),
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
/// (see [`crate::revoke`]).
fn record_grants(config: &Config, bridge: &Bridge, scan: &source::SourceScan) -> Result<()> {
    let Ok(dir) = source::open_dir(&bridge.source) else {
        return Ok(());
    };
    let mut files = Vec::new();
    for (name, f) in &scan.view.files {
        let plan::SourceFile::Ready(_) = f else {
            continue;
        };
        // What will be installed: the canonical form where there is one.
        if let Some(r) = scan.rewritten.get(name) {
            files.push((name.clone(), rules::parse::parse(&r.content)));
        } else if let Ok(Ok((_, bytes))) = source::read_entry(&dir, name, &admit(bridge)) {
            files.push((name.clone(), rules::parse::parse(&bytes)));
        }
    }
    crate::revoke::record(config, &bridge.name, &files)
}

/// Set-level checks of a files bridge: every `require`d file present and
/// usable, and the TLS pair valid. Returns why the sync must hold.
fn set_checks(
    bridge: &Bridge,
    files: &FilesSettings,
    view: &plan::SourceView,
    report: &mut SyncReport,
) -> Option<String> {
    for r in &files.require {
        match view.files.get(r) {
            None => return Some(format!("waiting for {r} (require)")),
            Some(plan::SourceFile::Skipped(why)) => {
                return Some(format!("{r} is not usable: {why}"));
            }
            Some(plan::SourceFile::Ready(_)) => {}
        }
    }
    let pair = files.tls_pair.as_ref()?;
    let (cert, key) = (pair.cert.as_str(), pair.key.as_str());
    let read = |name: &str| -> Result<Vec<u8>, String> {
        let Some(plan::SourceFile::Ready(want)) = view.files.get(name) else {
            return Err(format!("waiting for {name} (tls-pair)"));
        };
        let dir = source::open_dir(&bridge.source).map_err(|e| e.to_string())?;
        match source::read_entry(&dir, name, &admit(bridge)) {
            Ok(Ok((d, bytes))) if d == *want => Ok(bytes),
            Ok(Ok(_)) => Err(format!(
                "{name} changed during the sync; the next sync checks it"
            )),
            Ok(Err(why)) => Err(format!("{name}: {why}")),
            Err(e) => Err(format!("{name}: {e}")),
        }
    };
    let (cert_pem, key_pem) = match (read(cert), read(key)) {
        (Ok(c), Ok(k)) => (c, k),
        (Err(e), _) | (_, Err(e)) => return Some(e),
    };
    let finding = |severity, message: String| {
        (
            cert.to_string(),
            Finding {
                line: 0,
                column: 0,
                severity,
                rule: "tls-pair",
                message,
            },
        )
    };
    match crate::core::tls::check_pair(&cert_pem, &key_pem, unix_now(), pair.expiry_warning) {
        Ok(info) => {
            if let Some(w) = info.expiry_warning {
                report
                    .findings
                    .push(finding(Severity::Warning, format!("{cert} and {key}: {w}")));
            }
            None
        }
        Err(e) => {
            report
                .findings
                .push(finding(Severity::Error, format!("{cert} and {key}: {e}")));
            Some(format!("{cert} and {key} failed validation"))
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Owner and group of installed files, looked up on the host now.
pub fn owner_ids(bridge: &Bridge) -> Result<(Option<nix::unistd::Uid>, Option<nix::unistd::Gid>)> {
    let Some(f) = &bridge.files else {
        return Ok((None, None));
    };
    let uid = match &f.owner {
        Some(n) => Some(
            nix::unistd::User::from_name(n)?
                .ok_or_else(|| anyhow::anyhow!("owner {n:?} does not exist on this host"))?
                .uid,
        ),
        None => None,
    };
    let gid = match &f.group {
        Some(n) => Some(
            nix::unistd::Group::from_name(n)?
                .ok_or_else(|| anyhow::anyhow!("group {n:?} does not exist on this host"))?
                .gid,
        ),
        None => None,
    };
    Ok((uid, gid))
}

fn open_existing(path: &Path) -> Result<Option<DestDir>> {
    let ctx = || format!("opening destination {}", path.display());
    match DestDir::open(path) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(ctx),
    }
}

fn record_ops(report: &mut SyncReport, ops: &[Op]) {
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
#[allow(clippy::too_many_arguments)]
fn apply(
    bridge: &Bridge,
    state: &StateDir,
    dest: &DestDir,
    plan: &Plan,
    rewritten: &BTreeMap<String, source::Rewritten>,
    owner: (Option<nix::unistd::Uid>, Option<nix::unistd::Gid>),
    manifest: &mut Manifest,
    report: &mut SyncReport,
) -> Result<()> {
    let mut intent = manifest.clone();
    intent
        .files
        .extend(plan.owned_after.iter().map(|(n, o)| (n.clone(), *o)));
    intent.actions_pending = true;
    state.save(&bridge.name, &intent)?;

    if bridge
        .files
        .as_ref()
        .is_some_and(|f| f.swap == Swap::SymlinkDir)
    {
        return publish_generation(
            bridge,
            state,
            dest,
            plan,
            manifest,
            report,
            owner,
            intent.actions_pending,
        )
        .map_err(|e| read_only_hint(e, &bridge.install_to));
    }
    let mut after = plan.owned_after.clone();
    let src = source::open_dir(&bridge.source).ok();
    for op in &plan.ops {
        let result = match op {
            Op::Install { name, digest } | Op::Replace { name, digest } => install_one(
                bridge,
                src.as_ref(),
                dest,
                name,
                (*digest, rewritten.get(name)),
                owner,
            ),
            Op::Prune { name } => dest.remove(name).map_err(|e| e.to_string()),
        };
        match result {
            Ok(()) => record_ops(report, std::slice::from_ref(op)),
            Err(e) => {
                let hint = if e.contains(&format!("os error {}", nix::errno::Errno::EROFS as i32)) {
                    sandbox_hint(&bridge.install_to)
                } else {
                    String::new()
                };
                report.errors.push(format!(
                    "{}: {e}{hint}",
                    bridge.install_to.join(op.name()).display()
                ));
                if let (Op::Prune { name }, Some(old)) = (op, manifest.files.get(op.name())) {
                    after.insert(name.clone(), *old);
                }
            }
        }
    }
    dest.sync().context("syncing destination dir")?;
    *manifest = Manifest {
        destination: bridge.install_to.clone(),
        files: after,
        actions_pending: intent.actions_pending,
    };
    state.save(&bridge.name, manifest)
}

/// What to do when a destination is read-only: under the shipped unit
/// (`ProtectSystem=strict`) that means a missing `ReadWritePaths=`.
fn sandbox_hint(dir: &Path) -> String {
    format!(
        "; {} is read-only here: under hostbridge.service add `ReadWritePaths={}` in a drop-in (`systemctl edit hostbridge`, docs/deploy-fcos.md)",
        dir.display(),
        dir.display()
    )
}

/// Adds [`sandbox_hint`] to an error caused by a read-only file system.
fn read_only_hint(e: anyhow::Error, dir: &Path) -> anyhow::Error {
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
/// changed files from the source (digest-checked), unchanged and kept ones
/// from the current generation. Any failure leaves the current set in place.
#[allow(clippy::too_many_arguments)]
fn publish_generation(
    bridge: &Bridge,
    state: &StateDir,
    dest: &DestDir,
    plan: &Plan,
    manifest: &mut Manifest,
    report: &mut SyncReport,
    owner: (Option<nix::unistd::Uid>, Option<nix::unistd::Gid>),
    actions_pending: bool,
) -> Result<()> {
    let src = source::open_dir(&bridge.source).context("opening the source dir")?;
    let mut contents: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, owned) in &plan.owned_after {
        let changed = plan
            .ops
            .iter()
            .any(|op| op.name() == name && !matches!(op, Op::Prune { .. }));
        let bytes = if changed {
            match source::read_entry(&src, name, &admit(bridge))? {
                Ok((d, b)) if d == owned.digest => b,
                Ok(_) => {
                    anyhow::bail!("{name} changed during the sync; the next sync publishes it")
                }
                Err(why) => anyhow::bail!("{name}: {why}"),
            }
        } else {
            gendir::read_current(dest, name, bridge.max_file_size)
                .with_context(|| format!("reading the installed {name}"))?
        };
        contents.push((name.clone(), bytes));
    }
    let entries: Vec<gendir::Entry> = contents
        .iter()
        .map(|(n, b)| gendir::Entry { name: n, bytes: b })
        .collect();
    let gone: Vec<String> = plan
        .ops
        .iter()
        .filter(|op| matches!(op, Op::Prune { .. }))
        .map(|op| op.name().to_string())
        .collect();
    gendir::publish(dest, &entries, &gone, bridge.mode, owner).with_context(|| {
        format!(
            "publishing a new generation in {}",
            bridge.install_to.display()
        )
    })?;
    record_ops(report, &plan.ops);
    *manifest = Manifest {
        destination: bridge.install_to.clone(),
        files: plan.owned_after.clone(),
        actions_pending,
    };
    state.save(&bridge.name, manifest)
}

/// Re-reads a source file and installs it if it still has the planned
/// content; a file that changed since the scan is left for the next window.
fn install_one(
    bridge: &Bridge,
    src: Option<&std::os::fd::OwnedFd>,
    dest: &DestDir,
    name: &str,
    (want, rewritten): (plan::Digest, Option<&source::Rewritten>),
    owner: (Option<nix::unistd::Uid>, Option<nix::unistd::Gid>),
) -> Result<(), String> {
    let src = src.ok_or("source dir vanished during sync")?;
    let (digest, bytes) = match source::read_entry(src, name, &admit(bridge)) {
        Ok(Ok(found)) => found,
        Ok(Err(why)) => return Err(why),
        Err(e) => return Err(e.to_string()),
    };
    // A rewritten file installs the bytes that were judged, provided the
    // source still holds what they were made from.
    let (judged, bytes) = match rewritten {
        Some(r) => (r.source, r.content.as_slice()),
        None => (want, bytes.as_slice()),
    };
    if digest != judged {
        return Err("source changed during sync; the next sync picks it up".into());
    }
    dest.install_owned(name, bytes, bridge.mode, owner)
        .map_err(|e| e.to_string())
}

/// Vets udev rules files during a scan: parser, policy, host checks, and
/// `udevadm verify` for content not installed before. Collects findings.
struct RulesChecker<'a> {
    verifier: Verifier,
    checks: Option<&'a RulesChecks>,
    host: HostChecks,
    installed: &'a Manifest,
    findings: Vec<(String, Finding)>,
}

/// The host checks the daemon runs for a rules bridge: the same for
/// `hostbridge rules lint --bridge`.
pub fn host_checks(config: &Config, checks: &RulesChecks) -> HostChecks {
    host_checks_in(
        checks,
        &config.etc_udev_rules_dir,
        &config.system_udev_rules_dirs,
        &config.dev_root,
    )
}

/// The host checks for `checks` against the given /etc rules dir, system
/// rules dirs and /dev (the config's, or `rules lint`'s defaults).
pub fn host_checks_in(
    checks: &RulesChecks,
    etc_rules_dir: &Path,
    system_rules_dirs: &[PathBuf],
    dev_root: &Path,
) -> HostChecks {
    // A trusted source may name any group; shadowing and masking still count.
    let trusted = checks.policy.mode == rules::policy::PolicyMode::Trusted;
    HostChecks {
        allow_unknown_groups: trusted || checks.allow_unknown_groups,
        allow_non_system_groups: trusted || checks.allow_non_system_groups,
        etc_rules_dir: Some(etc_rules_dir.to_path_buf()),
        system_rules_dirs: system_rules_dirs.to_vec(),
        allow_override: checks.allow_override.clone(),
        dev_root: Some(dev_root.to_path_buf()),
    }
}

/// Everything the daemon decides about one rules file of a bridge: the
/// pure vetting, then the host checks (when `host`), then `udevadm verify`
/// on what would be installed (when `verifier`, `run_verify` says so for
/// those bytes, and there is no error so far). Returns the findings and the
/// bytes to install (`None`: refused).
pub fn vet_rules(
    verifier: Option<&Verifier>,
    checks: &RulesChecks,
    host: Option<&HostChecks>,
    name: &str,
    bytes: &[u8],
    run_verify: &dyn Fn(&[u8]) -> bool,
) -> (Vec<Finding>, Option<Vec<u8>>) {
    let vetted = rules::vet(name, bytes, &checks.policy);
    let mut found = vetted.findings;
    if let Some(host) = host {
        found.extend(preflight::check(name, &vetted.file, host));
    }
    if let (Some(install), Some(verifier)) = (&vetted.install, verifier)
        && !rules::has_errors(&found)
        && run_verify(install)
    {
        found.extend(verifier.verify(name, install));
    }
    let install = vetted.install.filter(|_| !rules::has_errors(&found));
    (found, install)
}

impl<'a> RulesChecker<'a> {
    fn new(config: &'a Config, bridge: &'a Bridge, installed: &'a Manifest) -> Self {
        let checks = bridge.rules.as_ref();
        RulesChecker {
            verifier: Verifier::of(config),
            checks,
            host: checks.map(|c| host_checks(config, c)).unwrap_or_default(),
            installed,
            findings: Vec::new(),
        }
    }

    fn trusted(&self) -> bool {
        self.checks
            .is_some_and(|c| c.policy.mode == rules::policy::PolicyMode::Trusted)
    }

    /// Vets one file; `Ok(Some(bytes))` when what is installed is its
    /// canonical form (permissions-only), `Ok(None)` for the bytes as they
    /// are (trusted, or not a rules bridge).
    fn accept(&mut self, name: &str, bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let Some(checks) = self.checks else {
            return Ok(None);
        };
        // udevadm verify runs on content not installed before.
        let installed = self.installed.files.get(name).map(|o| o.digest);
        let new_content = |b: &[u8]| installed.is_none_or(|d| d != crate::host::fsx::digest(b));
        let (found, install) = vet_rules(
            Some(&self.verifier),
            checks,
            Some(&self.host),
            name,
            bytes,
            &new_content,
        );
        let first_error = found
            .iter()
            .find(|f| f.severity == Severity::Error)
            .map(|f| f.render(name));
        let errors = found
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        self.findings
            .extend(found.into_iter().map(|f| (name.to_string(), f)));
        match first_error {
            Some(first) => Err(format!(
                "rejected by the rules checks ({errors} errors; first: {first})"
            )),
            None if checks.policy.mode == rules::policy::PolicyMode::Trusted => Ok(None),
            None => Ok(install),
        }
    }
}

/// Where and with what `udevadm verify` runs.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The udevadm binary.
    pub udevadm: PathBuf,
    /// A root-owned dir to stage candidates in (`STATE_DIR/verify`).
    pub stage: PathBuf,
}

impl Verifier {
    /// The daemon's: `udevadm` and a stage under `state_dir`.
    pub fn of(config: &Config) -> Verifier {
        Verifier {
            udevadm: config.udevadm.clone(),
            stage: config.state_dir.join("verify"),
        }
    }

    /// Runs `udevadm verify` on a candidate staged in [`Verifier::stage`],
    /// if udevadm has the verb; the answer to that is probed once per
    /// process.
    pub fn verify(&self, name: &str, bytes: &[u8]) -> Vec<Finding> {
        let (udevadm, dir) = (&self.udevadm, &self.stage);
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let available = *AVAILABLE.get_or_init(|| {
        let yes = preflight::verify_available(udevadm);
        if !yes {
            tracing::info!("`{} verify` is not available (no udevadm, or systemd < 254): rules are checked by hostbridge's own parser only", udevadm.display());
        }
        yes
    });
        if !available {
            return Vec::new();
        }
        let written = DestDir::open_or_create(dir).and_then(|d| d.install(name, bytes, 0o600));
        if let Err(e) = written {
            return vec![Finding {
                line: 0,
                column: 0,
                severity: Severity::Error,
                rule: "udevadm-verify",
                message: format!(
                    "cannot stage the file for udevadm verify in {}: {e}",
                    dir.display()
                ),
            }];
        }
        let path = dir.join(name);
        let found = preflight::verify(udevadm, &path);
        let _ = std::fs::remove_file(&path);
        found
    }
}

impl SyncReport {
    /// The status model's view of this report; `trigger` says why it ran
    /// and `at` is the Unix time it finished.
    pub fn to_status(&self, trigger: &str, at: u64) -> crate::core::status::Sync {
        use crate::core::status as st;
        let notes = |v: &[(String, String)]| -> Vec<st::Note> {
            v.iter()
                .map(|(f, r)| st::Note {
                    file: f.clone(),
                    reason: r.clone(),
                })
                .collect()
        };
        st::Sync {
            at,
            trigger: trigger.to_string(),
            result: if self.failed() { "failed" } else { "ok" }.into(),
            installed: self.installed.clone(),
            replaced: self.replaced.clone(),
            pruned: self.pruned.clone(),
            unchanged: self.unchanged,
            skipped: notes(&self.skipped),
            conflicts: notes(&self.conflicts),
            findings: self
                .findings
                .iter()
                .map(|(file, f)| st::Finding {
                    file: file.clone(),
                    line: f.line,
                    column: f.column,
                    severity: f.severity.to_string(),
                    rule: f.rule.to_string(),
                    message: f.message.clone(),
                })
                .collect(),
            errors: self.errors.clone(),
            notes: self.notes.clone(),
            actions: self
                .actions
                .iter()
                .map(|a| st::ActionRun {
                    action: a.action.to_string(),
                    ok: a.result.is_ok(),
                    detail: match &a.result {
                        Ok(s) | Err(s) => s.clone(),
                    },
                })
                .collect(),
        }
    }
}

/// Waits until no sync of this process (or any other hostbridge using the
/// same state dir) is changing files: file changes hold the state-dir lock.
pub async fn wait_idle(state_dir: &Path) {
    let state = StateDir::new(state_dir);
    let _ = tokio::task::spawn_blocking(move || state.lock().map(drop)).await;
}
