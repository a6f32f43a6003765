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
            .map(|b| b.bridge.then.as_slice())
            .collect();
        let now = std::time::Instant::now();
        let (ready, wait) = crate::core::act::ready_now(
            std::mem::take(&mut self.owed),
            |(_, o)| o.bridge.then.as_slice(),
            |(_, o)| now >= o.since + 2 * o.bridge.settle.max_wait,
            &busy,
        );
        let running: Vec<&[Action]> = self.acting.iter().map(|g| g.actions.as_slice()).collect();
        let (groups, held) = crate::core::act::start_groups(
            ready,
            |(_, o)| o.bridge.then.as_slice(),
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
            .flat_map(|(_, o)| o.bridge.then.iter().cloned())
            .collect();
        let task = tokio::spawn(async move {
            let (ids, mut owed): (Vec<BridgeId>, Vec<Owed>) = group.into_iter().unzip();
            run_owed(&config, &mut owed).await;
            let _ = tx.send(ids.into_iter().zip(owed).collect());
        });
        self.acting.push(ActionGroup { ids, actions, task });
    }

    pub(super) fn on_actions_done(&mut self, done: Vec<(BridgeId, Owed)>) {
        let ids: Vec<BridgeId> = done.iter().map(|(id, _)| *id).collect();
        self.acting.retain(|g| g.ids != ids);
        for (id, o) in done {
            self.finish(id, Ok(o.report));
        }
        self.run_owed_actions();
        self.ready_if_reconciled();
    }
}
