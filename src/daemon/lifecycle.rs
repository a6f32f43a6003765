//! The daemon's lifecycle beyond the loop: READY once the startup
//! reconcile is done, reloading the config (unchanged bridges keep their
//! state), stopping a bridge, and a bounded shutdown. Glue.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::{BridgeRt, Daemon, SHUTDOWN_GRACE, SyncState};
use crate::config;
use crate::host::clock::unix_now;
use crate::host::notify;

impl Daemon {
    /// Re-reads the config. A bad config keeps the old one running.
    /// Unchanged bridges keep their state and resync; changed ones are
    /// replaced; new ones start; removed ones stop.
    pub(super) fn reload(&mut self, why: &str) -> Result<(), String> {
        notify::reloading();
        let result = config::load(&self.config.path, &self.config.dropin_dirs);
        let new = match result {
            Ok(c) => c,
            Err(e) => {
                error!("{why}: config reload failed, keeping the running config: {e}");
                self.reload_error = Some(e.to_string());
                notify::ready(&self.status_line());
                return Err(e.to_string());
            }
        };
        let mut kept = Vec::new();
        let mut old = std::mem::take(&mut self.bridges);
        let mut to_add = Vec::new();
        for b in &new.bridges {
            match old.iter().position(|o| o.bridge.name == b.name) {
                Some(i) if old[i].bridge == *b => kept.push(old.remove(i)),
                Some(i) => {
                    info!("{}: config changed; restarting the bridge", b.name);
                    let gone = old.remove(i);
                    self.stop_bridge(gone);
                    to_add.push(b.clone());
                }
                None => {
                    info!("{}: new bridge", b.name);
                    to_add.push(b.clone());
                }
            }
        }
        for gone in old {
            info!(
                "{}: bridge removed from the config; installed files are left in place",
                gone.bridge.name
            );
            self.stop_bridge(gone);
        }
        self.bridges = kept;
        self.config = Arc::new(new);
        self.config_loaded_at = unix_now();
        self.reload_error = None;
        self.setup_hotplug();
        // A reload is also the operator's "try again now": unchanged bridges
        // place their watches again and resync (a fault that cleared is
        // healed without waiting for a retry or an event).
        let now = std::time::Instant::now();
        let kept: Vec<_> = self.bridges.iter().map(|b| b.id).collect();
        for id in kept {
            self.rewatch(id, now);
            self.observe(id, now, crate::core::settle::Input::Rescan);
        }
        for b in to_add {
            self.add_bridge(b);
        }
        // Keep config order.
        let order: Vec<String> = self.config.bridges.iter().map(|b| b.name.clone()).collect();
        self.bridges
            .sort_by_key(|b| order.iter().position(|n| *n == b.bridge.name));
        info!(
            "{why}: config reloaded: {}",
            crate::core::text::plural(self.bridges.len(), "bridge")
        );
        notify::ready(&self.status_line());
        // A stopped bridge may have been what owed actions were waiting for.
        self.run_owed_actions();
        self.ready_if_reconciled();
        Ok(())
    }

    /// Cancels a bridge's sync (if any), drops its owed actions (a replaced
    /// bridge's manifest still owes them and its restart runs them) and
    /// drops its watch.
    pub(super) fn stop_bridge(&mut self, b: BridgeRt) {
        if let SyncState::Running { task, progress, .. } = &b.sync {
            task.abort(); // its completion never arrives
            // Its blocking thread goes on: it must change nothing now.
            progress.cancel();
        }
        self.owed.retain(|(id, _)| *id != b.id);
    }

    /// Sends READY=1 once the startup reconcile (syncs and actions) is done.
    pub(super) fn ready_if_reconciled(&mut self) {
        if self.starting && self.running() == 0 && self.owed.is_empty() && self.acting.is_empty() {
            self.ready();
        }
    }

    pub(super) fn ready(&mut self) {
        self.starting = false;
        let plural = crate::core::text::plural;
        let st = self.snapshot();
        let bad: Vec<String> = st
            .bridges
            .iter()
            .filter(|b| b.health != crate::core::status::Health::Healthy)
            .map(|b| format!("{}: {}", b.name, b.reason.as_deref().unwrap_or("")))
            .collect();
        let done = plural(self.bridges.len(), "bridge");
        if bad.is_empty() {
            info!("ready: {done} reconciled, waiting for changes");
        } else {
            // READY=1 still goes out: the daemon serves every bridge, and a
            // unit that needs one bridge waits for it (`hostbridge wait`).
            warn!(
                "ready: {done} reconciled, {} degraded ({}); units that wait for it with `hostbridge wait` keep waiting; see hostbridge status",
                bad.len(),
                bad.join("; ")
            );
        }
        notify::ready(&self.status_line());
        self.write_metrics();
        self.verify_later();
    }

    /// Stops taking events, cancels pending windows and actions, and waits
    /// (bounded) for in-flight file installs, which always run to completion.
    pub(super) async fn shutdown(&mut self) {
        notify::stopping();
        // A child a sync waits on (a hung `udevadm verify`) is killed; a
        // sync that has not taken the state lock yet changes nothing.
        crate::host::child::stop_all();
        // Owed actions are skipped: their manifests still say so, and the
        // next start runs them.
        for g in self.acting.drain(..) {
            g.task.abort();
        }
        self.owed.clear();
        let tasks: Vec<JoinHandle<()>> = self
            .bridges
            .iter_mut()
            .filter_map(|b| match std::mem::replace(&mut b.sync, SyncState::Idle) {
                SyncState::Running { task, .. } => Some(task),
                SyncState::Idle | SyncState::Acting { .. } => None,
            })
            .collect();
        let busy = tasks.len();
        self.bridges.clear(); // drops watches and readers
        for t in &tasks {
            // Cancels an action (its child is killed); an install already
            // handed to the blocking pool still runs to its end.
            t.abort();
        }
        if busy > 0 {
            info!("waiting for {busy} in-flight syncs to finish their file installs");
            let _ = tokio::time::timeout(
                SHUTDOWN_GRACE,
                crate::sync::wait_idle(&self.config.state_dir),
            )
            .await;
        }
        info!("stopped");
    }
}
