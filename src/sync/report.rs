//! What one sync did: the report the daemon logs, records in the status and
//! `hostbridge sync` prints. Pure data and its wording.

use crate::core::rules::Finding;
use crate::host::actions::ActionOutcome;

/// What a sync of one bridge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SyncReport {
    /// The bridge.
    pub(crate) bridge: String,
    /// Whether this was a dry run (nothing written, no action run).
    pub(crate) dry_run: bool,
    /// Whether the source dir existed.
    pub(crate) source_present: bool,
    /// Newly written files.
    pub(crate) installed: Vec<String>,
    /// Overwritten files.
    pub(crate) replaced: Vec<String>,
    /// Removed files.
    pub(crate) pruned: Vec<String>,
    /// Count of files already up to date.
    pub(crate) unchanged: usize,
    /// Source entries not synced, with reasons.
    pub(crate) skipped: Vec<(String, String)>,
    /// Destination names hostbridge does not own, with reasons.
    pub(crate) conflicts: Vec<(String, String)>,
    /// Owned files kept although their source is gone.
    pub(crate) kept: Vec<(String, String)>,
    /// Files held out of this sync (changed while it ran, or open for
    /// writing): their last good copies stay, a later window installs them.
    pub(crate) held: Vec<(String, String)>,
    /// Stale temp files removed from the destination.
    pub(crate) cleaned: Vec<String>,
    /// Operator-facing notes (e.g. a changed destination).
    pub(crate) notes: Vec<String>,
    /// Findings of the udev rules checks, by file (errors and warnings).
    pub(crate) findings: Vec<(String, Finding)>,
    /// Per-file failures.
    pub(crate) errors: Vec<String>,
    /// What the daemon must look at again after this sync: files held
    /// because they changed during it, or a rescan if events were lost.
    pub(crate) recheck: Vec<crate::core::settle::Input>,
    /// Files held because a writer had them open when read: the daemon
    /// looks at them again with backoff ([`crate::core::retry::OpenRecheck`]).
    pub(crate) held_open: std::collections::BTreeSet<String>,
    /// Whether the whole set (`require`, the TLS pair) was held back.
    pub(crate) set_held: bool,
    /// Whether a prune was held back: the source dir is new and empty.
    pub(crate) prune_held: bool,
    /// Candidate files the source held (0: empty, or missing).
    pub(crate) source_files: usize,
    /// Source files that could not be read (I/O errors, not verdicts):
    /// the sync is tried again with backoff.
    pub(crate) unreadable: Vec<String>,
    /// Actions run, in order.
    pub(crate) actions: Vec<ActionOutcome>,
    /// The certificate of a valid TLS pair this sync read (`tls-pair`).
    pub(crate) cert: Option<crate::core::status::Cert>,
    /// What the `verify` step found after the actions.
    pub(crate) served: Option<crate::core::status::Served>,
}

impl SyncReport {
    /// Whether the sync must be tried again without waiting for an event:
    /// a file could not be put in place, or one could not be read.
    pub(crate) fn needs_retry(&self) -> bool {
        !self.errors.is_empty() || !self.unreadable.is_empty()
    }

    /// Whether something the source offers was not installed for what it
    /// is: a refusal (policy, name, kind, owner, size), a set held back for
    /// failing validation, or a file held for the next window.
    pub(crate) fn refused(&self) -> bool {
        !self.skipped.is_empty()
            || !self.held.is_empty()
            || self.set_held
            || self
                .findings
                .iter()
                .any(|(_, f)| f.severity == crate::core::rules::Severity::Error)
    }

    /// Whether the destination changed.
    pub(crate) fn changed(&self) -> bool {
        !(self.installed.is_empty() && self.replaced.is_empty() && self.pruned.is_empty())
    }

    /// Whether everything went as planned (skips and conflicts are findings,
    /// not failures, but they make the bridge degraded).
    pub(crate) fn failed(&self) -> bool {
        !self.errors.is_empty() || self.actions.iter().any(|a| a.result.is_err())
    }

    /// One human line: "installed a.rules, b.rules; pruned c.rules".
    pub(crate) fn summary(&self) -> String {
        let mut parts = Vec::new();
        let verbs = if self.dry_run {
            ["would install", "would replace", "would prune"]
        } else {
            ["installed", "replaced", "pruned"]
        };
        for (verb, names) in verbs
            .into_iter()
            .zip([&self.installed, &self.replaced, &self.pruned])
        {
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
        if !self.skipped.is_empty() {
            parts.push(format!("{} skipped", self.skipped.len()));
        }
        if !self.held.is_empty() {
            parts.push(format!("{} held for the next window", self.held.len()));
        }
        for (noun, n) in [
            ("conflict", self.conflicts.len()),
            ("error", self.errors.len()),
        ] {
            if n > 0 {
                parts.push(crate::core::text::plural(n, noun));
            }
        }
        parts.join("; ")
    }

    /// How many destination files changed.
    pub(crate) fn change_count(&self) -> usize {
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

impl SyncReport {
    /// Names installed, replaced or pruned.
    pub(crate) fn changed_names(&self) -> Vec<String> {
        self.installed
            .iter()
            .chain(&self.replaced)
            .chain(&self.pruned)
            .cloned()
            .collect()
    }
}

impl SyncReport {
    /// The status model's view of this report; `trigger` says why it ran
    /// and `at` is the Unix time it finished.
    pub(crate) fn to_status(&self, trigger: &str, at: u64) -> crate::core::status::Sync {
        use crate::core::status as st;
        let notes = |v: &[(String, String)]| -> Vec<st::Note> {
            v.iter()
                .take(st::LISTED)
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
            installed: st::listed(&self.installed),
            replaced: st::listed(&self.replaced),
            pruned: st::listed(&self.pruned),
            unchanged: self.unchanged,
            skipped: notes(&self.skipped),
            held: notes(&self.held),
            conflicts: notes(&self.conflicts),
            findings: self
                .findings
                .iter()
                .take(st::LISTED)
                .map(|(file, f)| st::Finding {
                    file: file.clone(),
                    line: f.line,
                    column: f.column,
                    severity: f.severity.to_string(),
                    rule: f.rule.to_string(),
                    message: f.message.clone(),
                })
                .collect(),
            errors: st::listed(&self.errors),
            notes: st::listed(&self.notes),
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
            totals: st::Totals {
                installed: self.installed.len(),
                replaced: self.replaced.len(),
                pruned: self.pruned.len(),
                skipped: self.skipped.len(),
                held: self.held.len(),
            },
        }
    }
}
