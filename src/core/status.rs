//! The status model: what `hostbridge status` shows, the JSON the status
//! socket serves, and the Prometheus metrics derived from it. Pure: plain
//! data plus functions of it, with the current time passed in.

use serde::{Deserialize, Serialize};

/// Version of the JSON schema; bump on any incompatible change (the fixture
/// test in tests/status.rs pins it).
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// Overall or per-bridge health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Health {
    /// Everything as configured.
    Healthy,
    /// Running, but something needs attention (see `reason`).
    Degraded,
    /// Not working (e.g. the config was invalid at start).
    Failed,
}

/// The whole status document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Status {
    /// [`SCHEMA_VERSION`].
    pub(crate) schema_version: u32,
    /// Daemon-wide facts.
    pub(crate) daemon: Daemon,
    /// One entry per bridge, in config order.
    pub(crate) bridges: Vec<Bridge>,
}

/// Daemon-wide facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Daemon {
    /// hostbridge's version.
    pub(crate) version: String,
    /// Process id.
    pub(crate) pid: u32,
    /// Config file in use.
    pub(crate) config_path: String,
    /// When that config was loaded (Unix seconds).
    pub(crate) config_loaded_at: u64,
    /// When the daemon started (Unix seconds).
    pub(crate) started_at: u64,
    /// inotify watches in use.
    pub(crate) watches: usize,
    /// Errors logged since start.
    pub(crate) errors_since_start: u64,
    /// The last failed reload, if the latest reload failed.
    pub(crate) reload_error: Option<String>,
    /// Overall health (worst of the bridges, degraded by a failed reload).
    pub(crate) health: Health,
    /// USB hotplug re-checks: "on", `off: WHY`, or "not used" when no
    /// bridge has a `usb-check` action.
    #[serde(default)]
    pub(crate) hotplug: String,
}

/// One bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Bridge {
    /// Bridge name.
    pub(crate) name: String,
    /// Source dir.
    pub(crate) source: String,
    /// Destination dir.
    pub(crate) destination: String,
    /// Where the watch sits ("source", or the ancestor waited on).
    pub(crate) watching: String,
    /// Whether the source dir has been seen since the daemon started: a
    /// bridge waiting for a dir it has never seen is degraded (a typo in
    /// `source:`, or a container that has not run yet).
    #[serde(default)]
    pub(crate) source_seen: bool,
    /// Health of this bridge.
    pub(crate) health: Health,
    /// The first reason it is not healthy.
    pub(crate) reason: Option<String>,
    /// The last completed sync.
    pub(crate) last_sync: Option<Sync>,
    /// When the last successful sync finished (Unix seconds).
    pub(crate) last_success_at: Option<u64>,
    /// An open settle window, if any.
    pub(crate) pending: Option<Pending>,
    /// The sync running now, if any.
    #[serde(default)]
    pub(crate) syncing: Option<Syncing>,
    /// Counters since start.
    pub(crate) counters: Counters,
    /// The latest USB check of a bridge with a `usb-check` action (after a
    /// sync or on hotplug).
    #[serde(default)]
    pub(crate) usb: Option<Usb>,
    /// The latest run of the `usb-check`'s `on_replug` actions, if an
    /// expected device re-enumerated since the daemon started.
    #[serde(default)]
    pub(crate) replug: Option<Replug>,
    /// The certificate of a files bridge with `validate: tls-pair`, as last
    /// installed, and what its `verify` endpoint served.
    #[serde(default)]
    pub(crate) cert: Option<Cert>,
}

/// A files bridge's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cert {
    /// The file name (`tls.crt`).
    pub(crate) file: String,
    /// Serial, hex with colons.
    pub(crate) serial: String,
    /// Subject.
    pub(crate) subject: String,
    /// Not after (Unix seconds).
    pub(crate) not_after: i64,
    /// The `expiry_warning` window (seconds): closer to `not_after` than
    /// this degrades the bridge (the renewal is overdue).
    pub(crate) warn_within: u64,
    /// The latest `verify` of the endpoint, if the bridge has one.
    pub(crate) served: Option<Served>,
}

/// What a `verify` found at the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Served {
    /// When (Unix seconds).
    pub(crate) at: u64,
    /// `host:port`.
    pub(crate) endpoint: String,
    /// Whether it serves the installed certificate.
    pub(crate) matches: bool,
    /// The serial it serves (`None`: nothing served there).
    pub(crate) serial: Option<String>,
    /// The subject it serves.
    pub(crate) subject: Option<String>,
    /// One line: "serving serial … (CN=…)", "serves serial …, not the
    /// installed …", "not serving: connection … refused".
    pub(crate) detail: String,
    /// Since when it has served the installed certificate (Unix seconds).
    pub(crate) since: Option<u64>,
}

impl Cert {
    /// Why the bridge needs attention because of its certificate, at
    /// `now`: expiring within the warning window, or not served.
    pub(crate) fn problem(&self, now: u64) -> Option<String> {
        if let Some(s) = self.served.as_ref().filter(|s| !s.matches) {
            return Some(format!("verify {}: {}", s.endpoint, s.detail));
        }
        let left = self.not_after - now as i64;
        (left < self.warn_within as i64).then(|| {
            if left <= 0 {
                format!("{}: serial {} has expired", self.file, self.serial)
            } else {
                format!(
                    "{}: serial {} expires in {} (within the expiry_warning window): the renewal is overdue",
                    self.file,
                    self.serial,
                    render::ago(left as u64, 0)
                )
            }
        })
    }
}

/// A run of `on_replug` actions (`core::replug`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Replug {
    /// When it started (Unix seconds).
    pub(crate) at: u64,
    /// The devices that arrived: "051d:0002 at 003:004".
    pub(crate) devices: Vec<String>,
    /// Whether every action succeeded; `None` while they run.
    pub(crate) ok: Option<bool>,
    /// The actions' results (a failed one ends the list).
    pub(crate) actions: Vec<ActionRun>,
    /// A further run the backoff holds back is due then (Unix seconds),
    /// for devices that arrived since.
    pub(crate) next_at: Option<u64>,
}

/// The latest USB check of a bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Usb {
    /// When it ran (Unix seconds).
    pub(crate) at: u64,
    /// "sync", or the hotplug event: "hotplug add 001:003".
    pub(crate) trigger: String,
    /// Whether every device that matters is ok.
    pub(crate) ok: bool,
    /// One line: "0627:0001 ok; 051d:0002 device-absent".
    pub(crate) summary: String,
    /// The user checked.
    pub(crate) user: String,
    /// Every present device, and expected ones that are absent.
    pub(crate) devices: Vec<UsbDevice>,
    /// When the check began (not shown): a check that began before the
    /// one recorded (a slow re-check overtaken by a sync's) never replaces
    /// it, nor counts as seeing a device arrive.
    #[serde(skip)]
    pub(crate) began: Option<std::time::Instant>,
}

impl Usb {
    /// Whether this check began before `other` (both known).
    pub(crate) fn older_than(&self, other: &Usb) -> bool {
        matches!((self.began, other.began), (Some(a), Some(b)) if a < b)
    }
}

/// One device in a USB check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UsbDevice {
    /// `BBB:DDD`, or "-" for an absent expected device.
    pub(crate) bus_dev: String,
    /// `VID:PID`.
    pub(crate) id: String,
    /// The device's product string.
    pub(crate) product: Option<String>,
    /// The node as `owner:group mode`, or "missing".
    pub(crate) node: String,
    /// The last rule (`file:line`) that grants it something.
    pub(crate) rule: Option<String>,
    /// ok, rules-not-applied, no-rule-matches, user-cannot-open, device-absent.
    pub(crate) verdict: String,
    /// Why, unless ok.
    pub(crate) reason: Option<String>,
}

/// Counters of one bridge since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counters {
    /// Syncs that completed without error.
    pub(crate) syncs_ok: u64,
    /// Syncs that failed (I/O error or failed action).
    pub(crate) syncs_failed: u64,
    /// Files installed or replaced.
    pub(crate) files_installed: u64,
    /// Files pruned.
    pub(crate) files_pruned: u64,
    /// Failed actions.
    pub(crate) action_failures: u64,
    /// inotify queue overflows.
    pub(crate) overflows: u64,
    /// Runs of the `usb-check`'s `on_replug` actions.
    #[serde(default)]
    pub(crate) replug_runs: u64,
}

/// An open settle window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pending {
    /// When the window opened (Unix milliseconds).
    pub(crate) since_ms: u64,
    /// Names seen so far.
    pub(crate) files: Vec<String>,
}

/// A sync that is running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Syncing {
    /// When it started (Unix seconds).
    pub(crate) since: u64,
    /// The step it is at ("udevadm verify 10-x.rules").
    pub(crate) doing: String,
    /// Whether it has run longer than `stuck_after`: the bridge is then
    /// degraded, whatever its last sync said.
    pub(crate) stuck: bool,
}

impl Syncing {
    /// A sync started at `since` and at step `doing`, seen at `now`.
    pub(crate) fn at(since: u64, doing: String, now: u64, stuck_after: u64) -> Syncing {
        Syncing {
            since,
            doing,
            stuck: now.saturating_sub(since) > stuck_after,
        }
    }
}

/// A completed sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Sync {
    /// When it finished (Unix seconds).
    pub(crate) at: u64,
    /// Why it ran ("startup", "settled after 312 ms", …).
    pub(crate) trigger: String,
    /// "ok" or "failed".
    pub(crate) result: String,
    /// Newly installed files.
    pub(crate) installed: Vec<String>,
    /// Replaced files.
    pub(crate) replaced: Vec<String>,
    /// Pruned files.
    pub(crate) pruned: Vec<String>,
    /// Files already up to date.
    pub(crate) unchanged: usize,
    /// Skipped source entries.
    pub(crate) skipped: Vec<Note>,
    /// Files held out of the sync because they changed while it ran or
    /// were open for writing (a later window installs them).
    #[serde(default)]
    pub(crate) held: Vec<Note>,
    /// Destination names not owned by hostbridge.
    pub(crate) conflicts: Vec<Note>,
    /// Rules checks findings.
    pub(crate) findings: Vec<Finding>,
    /// Per-file errors and operator notes.
    pub(crate) errors: Vec<String>,
    /// Notes (trusted policy, changed destination).
    pub(crate) notes: Vec<String>,
    /// Actions run.
    pub(crate) actions: Vec<ActionRun>,
    /// How many each list had: a list keeps its first [`LISTED`] entries
    /// (a burst of 100,000 files is a count, not 100,000 names held for
    /// as long as the daemon runs). Absent in a status of an earlier
    /// version: the lists are whole then.
    #[serde(default)]
    pub(crate) totals: Totals,
}

/// The entries a [`Sync`] list keeps; the rest are counted in [`Totals`].
pub(crate) const LISTED: usize = 100;

/// How many entries each [`Sync`] list had before it was cut to [`LISTED`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Totals {
    /// Files installed.
    pub(crate) installed: usize,
    /// Files replaced.
    pub(crate) replaced: usize,
    /// Files pruned.
    pub(crate) pruned: usize,
    /// Source entries skipped.
    pub(crate) skipped: usize,
    /// Files held for the next window.
    pub(crate) held: usize,
}

/// A list cut to its first [`LISTED`] entries.
pub(crate) fn listed<T: Clone>(all: &[T]) -> Vec<T> {
    all[..all.len().min(LISTED)].to_vec()
}

/// A file with a reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Note {
    /// File name.
    pub(crate) file: String,
    /// Why.
    pub(crate) reason: String,
}

/// A rules finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Finding {
    /// File name.
    pub(crate) file: String,
    /// Line.
    pub(crate) line: u32,
    /// Column.
    pub(crate) column: u32,
    /// "error" or "warning".
    pub(crate) severity: String,
    /// Rule id.
    pub(crate) rule: String,
    /// Message.
    pub(crate) message: String,
}

impl Finding {
    /// `FILE:LINE:COL: severity[rule]: message` (no position where there
    /// is none).
    pub(crate) fn render(&self) -> String {
        format!(
            "{}: {}[{}]: {}",
            crate::core::text::position(&self.file, self.line.into(), self.column.into()),
            self.severity,
            self.rule,
            self.message
        )
    }
}

/// An action that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ActionRun {
    /// Action label.
    pub(crate) action: String,
    /// Whether it succeeded.
    pub(crate) ok: bool,
    /// Output (on success) or error with stderr excerpt.
    pub(crate) detail: String,
}

impl Sync {
    /// A sync that failed as a whole (before any file was handled).
    pub(crate) fn failed_with(at: u64, trigger: String, error: String) -> Sync {
        Sync {
            at,
            trigger,
            result: "failed".into(),
            installed: vec![],
            replaced: vec![],
            pruned: vec![],
            unchanged: 0,
            skipped: vec![],
            held: vec![],
            conflicts: vec![],
            findings: vec![],
            errors: vec![error],
            notes: vec![],
            actions: vec![],
            totals: Totals::default(),
        }
    }

    /// How many files it installed, replaced, pruned, skipped and held
    /// (the [`Totals`], or the lists' lengths in a status of an earlier
    /// version).
    pub(crate) fn counts(&self) -> Totals {
        let t = self.totals;
        Totals {
            installed: t.installed.max(self.installed.len()),
            replaced: t.replaced.max(self.replaced.len()),
            pruned: t.pruned.max(self.pruned.len()),
            skipped: t.skipped.max(self.skipped.len()),
            held: t.held.max(self.held.len()),
        }
    }

    /// Whether the sync itself failed.
    pub(crate) fn failed(&self) -> bool {
        self.result != "ok"
    }

    /// The first reason this sync leaves its bridge degraded, ignoring a
    /// failure of the action `skip` (one whose result a newer check
    /// replaced).
    pub(crate) fn first_problem_except(&self, skip: Option<&str>) -> Option<String> {
        let failed = self
            .actions
            .iter()
            .find(|a| !a.ok && Some(a.action.as_str()) != skip);
        if let Some(a) = failed {
            return Some(format!("{} failed: {}", a.action, a.detail));
        }
        if let Some(e) = self.errors.first() {
            return Some(e.clone());
        }
        if let Some(f) = self.findings.iter().find(|f| f.severity == "error") {
            return Some(f.render());
        }
        if let Some(n) = self.skipped.first() {
            return Some(format!("skipped {}: {}", n.file, n.reason));
        }
        if let Some(n) = self.conflicts.first() {
            return Some(format!("conflict {}: {}", n.file, n.reason));
        }
        self.findings.first().map(Finding::render)
    }
}

impl Bridge {
    /// Folds a finished sync into the bridge: counters, last sync, last
    /// success, and the USB check the sync ran (stamped with the sync's
    /// time, so a newer hotplug check replaces it).
    pub(crate) fn record(&mut self, sync: Sync, usb: Option<Usb>) {
        let c = &mut self.counters;
        if sync.failed() {
            c.syncs_failed += 1;
        } else {
            c.syncs_ok += 1;
            self.last_success_at = Some(sync.at);
        }
        let n = sync.counts();
        c.files_installed += (n.installed + n.replaced) as u64;
        c.files_pruned += n.pruned as u64;
        c.action_failures += sync.actions.iter().filter(|a| !a.ok).count() as u64;
        if let Some(mut usb) = usb
            && !self.usb.as_ref().is_some_and(|old| usb.older_than(old))
        {
            usb.at = sync.at;
            self.usb = Some(usb);
        }
        self.last_sync = Some(sync);
    }

    /// Records a sync's certificate (the pair it validated) and what its
    /// `verify` found: the served record stays with the certificate it
    /// was made for, and `since` carries over while the same certificate
    /// keeps being served.
    pub(crate) fn note_cert(&mut self, cert: Option<Cert>, served: Option<Served>) {
        if let Some(mut c) = cert {
            if let Some(old) = self.cert.take().filter(|o| o.serial == c.serial) {
                c.served = old.served;
            }
            self.cert = Some(c);
        }
        let (Some(c), Some(mut s)) = (self.cert.as_mut(), served) else {
            return;
        };
        if s.matches {
            let before = c
                .served
                .as_ref()
                .filter(|o| o.matches && o.serial == s.serial)
                .and_then(|o| o.since);
            s.since = before.or(Some(s.at));
        }
        c.served = Some(s);
    }

    /// Sets `health` and `reason` from the watch, the last sync and the
    /// latest USB check. A USB check at or after the last sync supersedes
    /// that sync's `usb-check` action result (a device plugged in later).
    pub(crate) fn assess(&mut self, now: u64) {
        let never_seen =
            !self.source_seen && self.watching.starts_with("waiting for the source dir");
        let watch_problem = if self.watching.starts_with("error") {
            Some(self.watching.clone())
        } else if never_seen {
            Some(format!(
                "{}; nothing has been seen at {} since start (a typo in source:, or its container has not run yet)",
                self.watching, self.source
            ))
        } else {
            None
        };
        let usb_newer = match (&self.usb, &self.last_sync) {
            (Some(u), Some(s)) => u.at >= s.at,
            (Some(_), None) => true,
            _ => false,
        };
        let skip = usb_newer.then_some("usb-check");
        let usb_problem = self
            .usb
            .as_ref()
            .filter(|u| usb_newer && !u.ok)
            .map(|u| format!("usb-check: {}", u.summary));
        let stuck = self
            .syncing
            .as_ref()
            .filter(|s| s.stuck)
            .map(|s| format!("syncing for {} s: {}", now.saturating_sub(s.since), s.doing));
        let replug_problem = self
            .replug
            .as_ref()
            .filter(|r| r.ok == Some(false))
            .map(|r| {
                let failed = r.actions.iter().find(|a| !a.ok);
                format!(
                    "on_replug after {}: {} failed: {} (runs again at the next replug)",
                    r.devices.join(", "),
                    failed.map_or("an action", |a| a.action.as_str()),
                    failed.map_or("", |a| a.detail.as_str())
                )
            });
        let reason = watch_problem
            .or(stuck)
            .or_else(|| {
                self.last_sync
                    .as_ref()
                    .and_then(|s| s.first_problem_except(skip))
            })
            .or(usb_problem)
            .or(replug_problem)
            .or_else(|| self.cert.as_ref().and_then(|c| c.problem(now)));
        self.health = if reason.is_some() {
            Health::Degraded
        } else {
            Health::Healthy
        };
        self.reason = reason;
    }
}

impl Status {
    /// Sets the daemon's overall health from the bridges and the last
    /// reload, as of `now` (Unix seconds).
    pub(crate) fn assess(&mut self, now: u64) {
        for b in &mut self.bridges {
            b.assess(now);
        }
        let worst = self
            .bridges
            .iter()
            .map(|b| b.health)
            .max()
            .unwrap_or(Health::Healthy);
        self.daemon.health = if self.daemon.reload_error.is_some() {
            worst.max(Health::Degraded)
        } else {
            worst
        };
    }

    /// Keeps only the bridge `name` (for `--bridge`); false if there is none.
    pub(crate) fn narrow(&mut self, name: &str) -> bool {
        self.bridges.retain(|b| b.name == name);
        !self.bridges.is_empty()
    }
}

mod render;
pub(crate) use render::{metrics, render, summary};

#[cfg(test)]
pub(crate) mod tests;
