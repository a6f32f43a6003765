//! What the daemon says about itself: the log lines of a sync, the
//! `STATUS=` line for systemd, the status document the socket serves, and
//! the metrics file. Glue over `core::status`.

use tracing::{error, info, warn};

use super::Daemon;
use crate::core::settle::{Batch, Input};
use crate::core::status::{self, Health, Status};
use crate::core::text::plural;
use crate::host::clock::{unix_ms_at, unix_now};
use crate::host::dest::DestDir;
use crate::sync::SyncReport;

impl Daemon {
    /// The `STATUS=` line: "3 bridges ok; last: nut-udev installed 1 file",
    /// or, while a bridge is not healthy, "degraded: 1 of 3 bridges;
    /// nut-udev: REASON; last: …": READY=1 is never sent as if all were well.
    pub(super) fn status_line(&self) -> String {
        let st = self.snapshot();
        let n = st.bridges.len();
        let mut bad = st.bridges.iter().filter(|b| b.health != Health::Healthy);
        let mut line = match bad.next() {
            None => format!("{} ok", plural(n, "bridge")),
            Some(b) => format!(
                "degraded: {} of {}; {}: {}",
                1 + bad.count(),
                plural(n, "bridge"),
                b.name,
                b.reason.as_deref().unwrap_or("unknown reason")
            ),
        };
        let latest = st
            .bridges
            .iter()
            .filter_map(|b| b.last_sync.as_ref().map(|s| (b, s)))
            .max_by_key(|(_, s)| s.at);
        if let Some((b, s)) = latest {
            line += &format!("; last: {} {}", b.name, status::summary(s));
        }
        if self.reload_error.is_some() {
            line += "; last reload failed";
        }
        line
    }

    /// The status document as of now.
    pub(super) fn snapshot(&self) -> Status {
        let now = unix_now();
        let mut st = Status {
            schema_version: status::SCHEMA_VERSION,
            daemon: status::Daemon {
                version: env!("CARGO_PKG_VERSION").into(),
                pid: std::process::id(),
                config_path: self.config.path.display().to_string(),
                config_loaded_at: self.config_loaded_at,
                started_at: self.started_at,
                watches: self
                    .bridges
                    .iter()
                    .filter(|b| !b.status.watching.starts_with("error"))
                    .count(),
                errors_since_start: crate::logging::errors_logged(),
                reload_error: self.reload_error.clone(),
                health: Health::Healthy,
                hotplug: self.hotplug.state.clone(),
            },
            bridges: self
                .bridges
                .iter()
                .map(|b| {
                    let mut s = b.status.clone();
                    s.pending = b.settle.pending().map(|(since, files)| status::Pending {
                        since_ms: unix_ms_at(since),
                        files: files.iter().cloned().collect(),
                    });
                    s.syncing = b.sync.doing().map(|(since, doing)| {
                        status::Syncing::at(since, doing, now, self.config.stuck_after.as_secs())
                    });
                    s
                })
                .collect(),
        };
        st.assess(now);
        st
    }

    /// Writes the Prometheus textfile, if one is configured.
    pub(super) fn write_metrics(&self) {
        let Some(path) = &self.config.metrics_file else {
            return;
        };
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return;
        };
        let text = status::metrics(&self.snapshot());
        let written = DestDir::open(dir).and_then(|d| d.install(name, text.as_bytes(), 0o644));
        if let Err(e) = written {
            warn!("writing metrics to {}: {e}", path.display());
        }
    }
}

/// Why a sync ran, for its log line.
pub(super) fn trigger(batch: Option<&Batch>) -> String {
    match batch {
        Some(b) if b.forced => format!("forced by max_wait after {} ms", b.waited.as_millis()),
        Some(b) => format!("settled after {} ms", b.waited.as_millis()),
        None => "startup reconcile".into(),
    }
}

/// The file an event is about, for the "change during sync" line.
pub(super) fn describe(input: &Input) -> String {
    match input {
        Input::Write(n) | Input::Close(n) | Input::Change(n) => n.clone(),
        Input::Rescan => "rescan".into(),
    }
}

/// Logs one line per decision, then one per finding. Fields become
/// journal fields under journald (BRIDGE, FILE, ACTION, RESULT).
pub(super) fn log_report(r: &SyncReport, why: &str) {
    let name = r.bridge.as_str();
    let result = if r.failed() { "failed" } else { "ok" };
    if r.changed() {
        info!(
            bridge = name,
            result,
            "{name}: {why}, {} changed: {}",
            plural(r.change_count(), "file"),
            r.summary()
        );
    } else {
        info!(bridge = name, result, "{name}: {why}: {}", r.summary());
    }
    if !r.source_present && r.kept.is_empty() {
        warn!(
            bridge = name,
            "{name}: the source dir does not exist (yet); nothing is installed from it until it appears"
        );
    } else if !r.source_present {
        warn!(
            bridge = name,
            "{name}: the source dir is missing; the {} installed from it are kept until it returns",
            plural(r.kept.len(), "file")
        );
    }
    for n in &r.notes {
        warn!(bridge = name, "{name}: {n}");
    }
    if r.prune_held {
        info!(
            bridge = name,
            "{name}: the source dir was just recreated and is empty; pruning waits for its content or prune_grace ({} installed files kept)",
            r.kept.len()
        );
    }
    log_files(r);
    for e in &r.errors {
        error!(bridge = name, "{name}: {e}");
    }
    log_actions(r);
}

/// One line per file the sync said something about: temp files cleaned,
/// findings, skips and conflicts.
fn log_files(r: &SyncReport) {
    let name = r.bridge.as_str();
    for f in &r.cleaned {
        info!(
            bridge = name,
            file = f.as_str(),
            "{name}: removed stale temp file {f} left by an earlier run"
        );
    }
    for (f, finding) in &r.findings {
        let line = finding.render(f);
        match finding.severity {
            crate::core::rules::Severity::Error => error!(
                bridge = name,
                file = f.as_str(),
                rule = finding.rule,
                "{name}: {line}"
            ),
            crate::core::rules::Severity::Warning => warn!(
                bridge = name,
                file = f.as_str(),
                rule = finding.rule,
                "{name}: {line}"
            ),
        }
    }
    for (f, why) in &r.skipped {
        warn!(
            bridge = name,
            file = f.as_str(),
            "{name}: skipped {f}: {why}"
        );
    }
    for (f, why) in &r.held {
        info!(bridge = name, file = f.as_str(), "{name}: held {f}: {why}");
    }
    for (f, why) in &r.conflicts {
        warn!(
            bridge = name,
            file = f.as_str(),
            "{name}: not touching {f}: {why}"
        );
    }
}

/// One line per action run, with its output or error.
fn log_actions(r: &SyncReport) {
    log_outcomes(&r.bridge, &r.actions);
}

/// One log line per action outcome of bridge `name`.
pub(super) fn log_outcomes(name: &str, actions: &[crate::host::actions::ActionOutcome]) {
    for a in actions {
        let action = a.action;
        match &a.result {
            Ok(out) if out.is_empty() => {
                info!(bridge = name, action, result = "ok", "{name}: {action} ok")
            }
            Ok(out) => info!(
                bridge = name,
                action,
                result = "ok",
                "{name}: {action} ok: {out}"
            ),
            Err(e) => error!(
                bridge = name,
                action,
                result = "failed",
                "{name}: {action} failed (retried on the next sync): {e}"
            ),
        }
    }
}
