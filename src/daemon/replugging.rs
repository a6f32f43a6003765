//! The `usb-check`'s `on_replug` actions in the daemon: an expected USB
//! device that re-enumerated (seen by a hotplug re-check or a sync's
//! check) runs them, at once or when the backoff allows, one run at a time
//! per bridge. Glue: `core::replug` decides, `act::run_on_replug` runs.

use std::sync::Arc;
use std::time::Instant;

use tracing::{error, info, warn};

use super::{BridgeId, Daemon};
use crate::config::{Action, Bridge};
use crate::core::status::{ActionRun, Replug, Usb};
use crate::host::actions::ActionOutcome;
use crate::host::clock::unix_now;
use crate::host::notify;

/// A finished run: the bridge and its actions' outcomes.
pub(super) type Replugged = (BridgeId, Vec<ActionOutcome>);

/// The `usb-check`'s expected devices and `on_replug` actions of a bridge,
/// if it has any such actions.
fn on_replug_of(b: &Bridge) -> Option<(&[String], &[Action])> {
    b.then.iter().find_map(|a| match a {
        Action::UsbCheck {
            expect, on_replug, ..
        } if !on_replug.is_empty() => Some((expect.as_slice(), on_replug.as_slice())),
        _ => None,
    })
}

impl Daemon {
    /// Compares a USB check with the one before it; expected devices that
    /// arrived run the bridge's `on_replug` actions, now or once the
    /// backoff allows.
    pub(super) fn note_arrivals(&mut self, id: BridgeId, before: Option<&Usb>, after: &Usb) {
        let Some(b) = self.find(id) else { return };
        let Some((expect, _)) = on_replug_of(&b.bridge) else {
            return;
        };
        let expect = expect.to_vec();
        let what = crate::core::replug::arrived(&expect, before, after, &mut b.replug.unsettled);
        if what.is_empty() {
            return;
        }
        let now = Instant::now();
        let at = b.replug.arrived(now, what.clone());
        if at > now {
            let wait = at - now;
            if let Some(r) = &mut b.status.replug {
                r.next_at = Some(unix_now() + wait.as_secs());
            }
            warn!(
                bridge = b.bridge.name,
                "{}: {} re-enumerated; on_replug is held back {} (backoff: the last run was {} ago)",
                b.bridge.name,
                what.join(", "),
                humantime::format_duration(std::time::Duration::from_secs(wait.as_secs().max(1))),
                humantime::format_duration(std::time::Duration::from_secs(
                    b.status
                        .replug
                        .as_ref()
                        .map_or(0, |r| unix_now().saturating_sub(r.at))
                ))
            );
        }
        self.run_due_replug(id, now);
    }

    /// Starts bridge `id`'s `on_replug` actions if a run is due by `now`.
    pub(super) fn run_due_replug(&mut self, id: BridgeId, now: Instant) {
        let config = Arc::clone(&self.config);
        let tx = self.hotplug.replug_tx.clone();
        let Some(b) = self.find(id) else { return };
        let Some((_, actions)) = on_replug_of(&b.bridge) else {
            return;
        };
        let actions = actions.to_vec();
        let Some(due) = b.replug.take_due(now) else {
            return;
        };
        let name = b.bridge.name.clone();
        // A run the backoff held back acts only for what is still there.
        let what = crate::core::replug::still_there(&due, b.status.usb.as_ref());
        if what.is_empty() {
            b.replug.finished();
            if let Some(r) = &mut b.status.replug {
                r.next_at = None;
            }
            info!(
                bridge = name,
                "{name}: on_replug held back for {} not run: gone or not usable again",
                due.join(", ")
            );
            return;
        }
        let labels: Vec<&str> = actions.iter().map(Action::label).collect();
        info!(
            bridge = name,
            "{name}: {} re-enumerated: running on_replug ({})",
            what.join(", "),
            labels.join(", ")
        );
        b.status.replug = Some(Replug {
            at: unix_now(),
            devices: what.clone(),
            ok: None,
            actions: Vec::new(),
            next_at: None,
        });
        b.status.counters.replug_runs += 1;
        let task = tokio::spawn(async move {
            let out = crate::act::run_on_replug(&config, &name, &actions, what).await;
            let _ = tx.send((id, out));
        });
        b.replug_task = Some(task);
    }

    /// Records a finished run and starts one that became due meanwhile.
    pub(super) fn on_replug_done(&mut self, (id, outcomes): Replugged) {
        let Some(b) = self.find(id) else { return };
        b.replug.finished();
        b.replug_task = None;
        let name = b.bridge.name.clone();
        let runs: Vec<ActionRun> = outcomes
            .iter()
            .map(|o| ActionRun {
                action: o.action.into(),
                ok: o.result.is_ok(),
                detail: match &o.result {
                    Ok(out) => out.clone(),
                    Err(e) => e.clone(),
                },
            })
            .collect();
        let failed = runs.iter().filter(|r| !r.ok).count();
        b.status.counters.action_failures += failed as u64;
        let devices = b
            .status
            .replug
            .as_ref()
            .map(|r| r.devices.join(", "))
            .unwrap_or_default();
        for r in &runs {
            if r.ok {
                info!(bridge = name, "{name}: on_replug {} ok", r.action);
            } else {
                error!(
                    bridge = name,
                    "{name}: on_replug {} after {devices} failed: {}", r.action, r.detail
                );
            }
        }
        if let Some(rec) = &mut b.status.replug {
            rec.ok = Some(failed == 0);
            rec.actions = runs;
        }
        if !self.starting {
            notify::status(&self.status_line());
        }
        self.write_metrics();
        self.run_due_replug(id, Instant::now());
    }
}
