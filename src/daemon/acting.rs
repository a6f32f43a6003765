//! Scheduling the owed actions across bridges: a bridge's actions wait
//! while another bridge naming the same target is still collecting
//! changes, then each target runs once for all of them; groups of bridges
//! with no target in common run side by side (`core::act` decides;
//! `act::run_owed` runs them). Glue.

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::bridge::BridgeRt;
use super::{BridgeId, Daemon};
use crate::config::Action;
use crate::core::act::Activity;
use crate::sync::{Owed, run_owed};

/// The owed actions of some bridges, running as one task.
pub(super) struct ActionGroup {
    /// The bridges, in the order the task reports them back.
    pub(super) ids: Vec<BridgeId>,
    /// Their actions (the targets this group holds while it runs).
    pub(super) actions: Vec<Action>,
    /// The task (aborted at shutdown: its children are killed).
    pub(super) task: JoinHandle<()>,
    /// Whether it verifies (not while the daemon starts: READY must not
    /// wait for a service that starts after it).
    pub(super) verify: bool,
}

impl Daemon {
    /// Where bridge `b` stands: the one answer to "is it busy".
    pub(super) fn activity(&self, b: &BridgeRt) -> Activity {
        Activity {
            window_open: b.settle.pending().is_some(),
            syncing: b.settle.is_syncing(),
            owes_actions: self.owed.iter().any(|(id, _)| *id == b.id),
        }
    }

    /// Starts the owed actions of every bridge that no other bridge naming
    /// the same target is still collecting changes for, in groups by
    /// target: each group runs as its own task, so one hung action holds up
    /// only the bridges that share its target (`core::act::start_groups`).
    pub(super) fn run_owed_actions(&mut self) {
        if self.owed.is_empty() {
            return;
        }
        let busy: Vec<&[Action]> = self
            .bridges
            .iter()
            .filter(|b| self.activity(b).collecting())
            .map(|b| b.bridge.targets.as_slice())
            .collect();
        let now = std::time::Instant::now();
        let (ready, wait) = crate::core::act::ready_now(
            std::mem::take(&mut self.owed),
            |(_, o)| o.bridge.targets.as_slice(),
            |(_, o)| now >= o.since + 2 * o.bridge.settle.max_wait,
            &busy,
        );
        let running: Vec<&[Action]> = self.acting.iter().map(|g| g.actions.as_slice()).collect();
        let (groups, held) = crate::core::act::start_groups(
            ready,
            |(_, o)| o.bridge.targets.as_slice(),
            Action::same_target,
            &running,
        );
        self.owed = wait;
        self.owed.extend(held);
        for group in groups {
            self.start_group(group);
        }
    }

    fn start_group(&mut self, group: Vec<(BridgeId, Owed)>) {
        let config = Arc::clone(&self.config);
        let tx = self.actions_tx.clone();
        let ids: Vec<BridgeId> = group.iter().map(|(id, _)| *id).collect();
        let actions: Vec<Action> = group
            .iter()
            .flat_map(|(_, o)| o.bridge.targets.iter().cloned())
            .collect();
        let verify = !self.starting;
        let task = tokio::spawn(async move {
            let (ids, mut owed): (Vec<BridgeId>, Vec<Owed>) = group.into_iter().unzip();
            run_owed(&config, &mut owed, verify).await;
            let _ = tx.send(ids.into_iter().zip(owed).collect());
        });
        self.acting.push(ActionGroup {
            ids,
            actions,
            task,
            verify,
        });
    }

    pub(super) fn on_actions_done(&mut self, done: Vec<(BridgeId, Owed)>) {
        let ids: Vec<BridgeId> = done.iter().map(|(id, _)| *id).collect();
        let verified = self
            .acting
            .iter()
            .find(|g| g.ids == ids)
            .is_none_or(|g| g.verify);
        self.acting.retain(|g| g.ids != ids);
        for (id, o) in done {
            if !verified && o.bridge.verify().is_some() && !o.report.failed() {
                // Verified once READY is out (`verify_later`).
                self.verify_later.push((id, o.clone()));
            }
            self.finish(id, Ok(o.report));
        }
        self.run_owed_actions();
        self.ready_if_reconciled();
    }
}

impl Daemon {
    /// Runs the `verify` steps the startup's actions left for after READY,
    /// each as its own task.
    pub(super) fn verify_later(&mut self) {
        for (id, o) in std::mem::take(&mut self.verify_later) {
            let config = Arc::clone(&self.config);
            let tx = self.verified_tx.clone();
            tokio::spawn(async move {
                let mut owed = [o];
                let before = owed[0].report.actions.len();
                crate::act::verify::verify_after(&config, &mut owed, &mut [false]).await;
                let [mut o] = owed;
                o.report.actions.drain(..before);
                let _ = tx.send((id, o.report));
            });
        }
    }

    /// Records a verify run after READY: its outcomes join the bridge's
    /// last sync, and what was served its certificate.
    pub(super) fn on_verified(&mut self, (id, report): (BridgeId, crate::sync::SyncReport)) {
        let Some(b) = self.find(id) else { return };
        super::report::log_outcomes(&b.bridge.name, &report.actions);
        if let Some(sync) = &mut b.status.last_sync {
            let runs = report.to_status("", 0).actions;
            let failed = runs.iter().filter(|a| !a.ok).count();
            b.status.counters.action_failures += failed as u64;
            if failed > 0 {
                // Its files were counted a success when they were done.
                sync.result = "failed".into();
            }
            sync.actions.extend(runs);
        }
        b.status
            .note_cert(report.cert.clone(), report.served.clone());
        crate::host::notify::status(&self.status_line());
        self.write_metrics();
    }
}
