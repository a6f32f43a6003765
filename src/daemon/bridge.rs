//! One bridge's runtime state in the daemon: its config, settle machine,
//! watch and reader, the sync in flight, and its status. The sync and the
//! reader are explicit states, not flags. Glue.

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::BridgeId;
use crate::config::Bridge;
use crate::core::grace::PruneGrace;
use crate::core::hotplug::UsbChecks;
use crate::core::replug::Backoff;
use crate::core::retry::{OpenRecheck, Retry};
use crate::core::settle::{Batch, Settle};
use crate::core::status;
use crate::host::feed::Feed;
use crate::host::watch::SourceWatch;
use crate::sync::Progress;

/// Where a bridge's file sync stands (the settle machine says when one is
/// due; this holds the task while it runs).
pub(super) enum SyncState {
    /// No sync of this bridge runs.
    Idle,
    /// A sync runs.
    Running {
        /// Its task (aborted when the bridge stops).
        task: JoinHandle<()>,
        /// "change during sync" was logged for it (said once per sync).
        told_dirty: bool,
        /// When it started (Unix seconds), for "syncing for 62 s".
        since: u64,
        /// The step it is at, as the sync's thread says it.
        progress: Arc<Progress>,
    },
    /// Its files are done; its actions are owed or running. Changes now
    /// still count as "during the sync" (they open a window once it ends).
    Acting {
        /// As in `Running`.
        told_dirty: bool,
        /// As in `Running`.
        since: u64,
    },
}

impl SyncState {
    /// Whether a sync task runs.
    pub(super) fn is_running(&self) -> bool {
        matches!(self, SyncState::Running { .. })
    }

    /// The files of the running sync are done: its actions come next.
    pub(super) fn files_done(&mut self) {
        let (told_dirty, since) = match self {
            SyncState::Running {
                told_dirty, since, ..
            }
            | SyncState::Acting { told_dirty, since } => (*told_dirty, *since),
            SyncState::Idle => (false, crate::host::clock::unix_now()),
        };
        *self = SyncState::Acting { told_dirty, since };
    }

    /// Marks a change during the sync; true the first time (to say so once).
    pub(super) fn tell_dirty(&mut self) -> bool {
        match self {
            SyncState::Running { told_dirty, .. } | SyncState::Acting { told_dirty, .. }
                if !*told_dirty =>
            {
                *told_dirty = true;
                true
            }
            _ => false,
        }
    }

    /// Since when and doing what, while a sync (or its actions) runs.
    pub(super) fn doing(&self) -> Option<(u64, String)> {
        match self {
            SyncState::Idle => None,
            SyncState::Running {
                since, progress, ..
            } => Some((*since, progress.get())),
            SyncState::Acting { since, .. } => Some((*since, "running its actions".into())),
        }
    }
}

/// The bridge's inotify instance, its watch and its reader task.
pub(super) enum Watch {
    /// Watching: events flow.
    Live {
        /// Where the watch sits and what its events mean.
        watch: SourceWatch,
        /// The instance (a sync drains it before it installs).
        feed: Arc<Feed>,
        /// The task reading it.
        task: JoinHandle<()>,
    },
    /// No instance: it could not be created (`fs.inotify.max_user_instances`)
    /// or its reader failed. Retried; the bridge still syncs.
    Down,
}

impl Watch {
    /// The instance, while live.
    pub(super) fn feed(&self) -> Option<&Arc<Feed>> {
        match self {
            Watch::Live { feed, .. } => Some(feed),
            Watch::Down => None,
        }
    }
}

/// A bridge as the daemon runs it.
pub(super) struct BridgeRt {
    pub(super) id: BridgeId,
    pub(super) bridge: Bridge,
    pub(super) settle: Settle,
    /// The next try after a failed watch or sync; the only timer outside a
    /// window.
    pub(super) retry: Retry,
    /// The next look at files held because a writer had them open.
    pub(super) open_recheck: OpenRecheck,
    /// The window that started the running sync (for the log line).
    pub(super) batch: Option<Batch>,
    pub(super) watch: Watch,
    pub(super) sync: SyncState,
    pub(super) status: status::Bridge,
    /// Its USB re-checks: one at a time, the events meanwhile owed.
    pub(super) usb: UsbChecks,
    /// The source dir last watched, (st_dev, st_ino): another one is a
    /// recreated dir, which starts a prune grace.
    pub(super) source_identity: Option<(u64, u64)>,
    /// Whether absences may prune yet.
    pub(super) grace: PruneGrace,
    /// Syncs started since the bridge was added (`hostbridge wait` waits
    /// for one started after its request).
    pub(super) syncs_started: u64,
    /// When its `on_replug` actions run.
    pub(super) replug: Backoff,
    /// Those actions while they run (aborted, with their child, when the
    /// bridge stops).
    pub(super) replug_task: Option<JoinHandle<()>>,
}

impl Drop for BridgeRt {
    fn drop(&mut self) {
        if let Watch::Live { task, .. } = &self.watch {
            task.abort();
        }
        if let Some(task) = &self.replug_task {
            task.abort();
        }
    }
}
