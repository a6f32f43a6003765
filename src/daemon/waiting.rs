//! `hostbridge wait`'s requests: each has its bridge look at its source
//! anew (a rescan, and a USB re-check where the bridge has a `usb-check`),
//! and is answered with the bridge's status once a sync started after the
//! request has finished and nothing is left to run. Judging that status is
//! the client's (`core::wait`). Glue.

use std::time::Instant;

use tokio::sync::oneshot;
use tracing::info;

use super::{BridgeId, Daemon};
use crate::core::settle::Input;
use crate::core::usb::UsbEvent;

/// A `wait` request not answered yet.
pub(super) struct Waiter {
    /// The bridge waited on.
    id: BridgeId,
    /// Its count of started syncs when asked: a later one saw the source
    /// as it was then, or later.
    after: u64,
    /// Where the answer goes.
    reply: oneshot::Sender<String>,
}

impl Daemon {
    /// Takes a `wait` request for the bridge `name`.
    pub(super) fn on_wait(&mut self, name: &str, reply: oneshot::Sender<String>) {
        let Some(id) = self
            .bridges
            .iter()
            .find(|b| b.bridge.name == name)
            .map(|b| b.id)
        else {
            let names: Vec<&str> = self
                .bridges
                .iter()
                .map(|b| b.bridge.name.as_str())
                .collect();
            let error = format!(
                "no bridge named {name:?} in {} (bridges: {})",
                self.config.path.display(),
                names.join(", ")
            );
            let _ = reply.send(serde_json::json!({"ok": false, "error": error}).to_string());
            return;
        };
        let Some(b) = self.find(id) else { return };
        info!(
            "{}: `hostbridge wait` asked; looking at the source anew",
            b.bridge.name
        );
        let after = b.syncs_started;
        if super::hotplug::usb_check_of(&b.bridge).is_some() {
            // Checked once the sync is done (run_owed_usb_check): a device
            // plugged in while the daemon was stopped, or a node changed
            // behind it, is seen as it is now.
            b.usb.owe(vec![UsbEvent::asked()]);
        }
        self.observe(id, Instant::now(), Input::Rescan);
        self.waiters.push(Waiter { id, after, reply });
    }

    /// Answers every waiter whose bridge is done: a sync started after the
    /// request has finished, no window is open, nothing is owed or running.
    /// Waiters whose client hung up are dropped.
    pub(super) fn answer_waiters(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let mut snapshot = None;
        for w in std::mem::take(&mut self.waiters) {
            if w.reply.is_closed() {
                continue;
            }
            let Some(b) = self.bridges.iter().find(|b| b.id == w.id) else {
                let error = "the bridge was removed or replaced by a config reload; ask again";
                let _ = w
                    .reply
                    .send(serde_json::json!({"ok": false, "error": error}).to_string());
                continue;
            };
            let act = self.activity(b);
            let done = b.syncs_started > w.after
                && !act.window_open
                && !act.syncing
                && !act.owes_actions
                && !b.sync.is_running()
                && b.usb.idle();
            if !done {
                self.waiters.push(w);
                continue;
            }
            let st = snapshot.get_or_insert_with(|| self.snapshot());
            let bridge = st.bridges.iter().find(|s| s.name == b.bridge.name);
            let answer = serde_json::json!({"ok": true, "bridge": bridge});
            let _ = w.reply.send(answer.to_string());
        }
    }
}
