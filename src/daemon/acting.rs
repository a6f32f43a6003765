//! Scheduling the owed actions across bridges: a bridge's actions wait
//! while another bridge naming the same target is still collecting
//! changes, then each target runs once for all of them (`core::act`
//! decides; `act::run_owed` runs them). Glue.

use std::sync::Arc;

use super::bridge::BridgeRt;
use super::{BridgeId, Daemon};
use crate::core::act::Activity;
use crate::sync::{Owed, run_owed};

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
    /// the same target is still collecting changes for.
    pub(super) fn run_owed_actions(&mut self) {
        if self.actions_task.is_some() || self.owed.is_empty() {
            return;
        }
        let busy: Vec<&[crate::config::Action]> = self
            .bridges
            .iter()
            .filter(|b| self.activity(b).collecting())
            .map(|b| b.bridge.then.as_slice())
            .collect();
        let (ready, wait) = crate::core::act::ready_now(
            std::mem::take(&mut self.owed),
            |(_, o)| o.bridge.then.as_slice(),
            &busy,
        );
        self.owed = wait;
        if ready.is_empty() {
            return;
        }
        let config = Arc::clone(&self.config);
        let tx = self.actions_tx.clone();
        self.actions_task = Some(tokio::spawn(async move {
            let (ids, mut owed): (Vec<BridgeId>, Vec<Owed>) = ready.into_iter().unzip();
            run_owed(&config, &mut owed).await;
            let _ = tx.send(ids.into_iter().zip(owed).collect());
        }));
    }

    pub(super) fn on_actions_done(&mut self, done: Vec<(BridgeId, Owed)>) {
        self.actions_task = None;
        for (id, o) in done {
            self.finish(id, Ok(o.report));
        }
        self.run_owed_actions();
        self.ready_if_reconciled();
    }
}
