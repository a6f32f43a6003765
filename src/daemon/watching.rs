//! The daemon's side of a bridge's watch: its inotify instance and reader
//! task, what each event means, and placing the watch again. Glue over
//! `host::feed` and `host::watch`.

use std::time::Instant;

use std::sync::Arc;

use tracing::{debug, error, info, warn};

use super::bridge::Watch;
use super::{BridgeId, Daemon, WATCH_RETRY, describe};
use crate::config::Bridge;
use crate::core::settle::Input;
use crate::host::feed::{Delivery, Feed};
use crate::host::watch::{Meaning, SourceWatch, Watching};

impl Daemon {
    /// A fresh inotify instance for bridge `id`, its watch (not placed yet)
    /// and the task reading its events.
    pub(super) fn open_watch(&self, id: BridgeId, b: &Bridge) -> std::io::Result<Watch> {
        let (feed, watches) = Feed::new(id, &b.include)?;
        let watch = SourceWatch::new(&b.source, &b.include, watches);
        let task = tokio::spawn(Arc::clone(&feed).read(self.events_tx.clone()));
        Ok(Watch::Live { watch, feed, task })
    }

    pub(super) fn on_event(&mut self, (id, ev): Delivery) {
        let now = Instant::now();
        let Some(rt) = self.find(id) else { return };
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                error!(
                    "{}: reading inotify events failed: {e}; setting the watch up again in {}s",
                    rt.bridge.name,
                    WATCH_RETRY.as_secs()
                );
                rt.watch = Watch::Down;
                rt.status.watching = format!("error: reading inotify events failed: {e}");
                rt.retry.after_watch_failure(now, WATCH_RETRY);
                return;
            }
        };
        let Watch::Live { watch, .. } = &rt.watch else {
            return; // an event of an instance already dropped
        };
        match watch.interpret(&ev) {
            Meaning::Settle(input) => self.observe(id, now, input),
            Meaning::Rewatch => {
                // The dir went away, moved, or appeared: whatever the path
                // names next is a new dir (inode numbers are reused, so its
                // identity alone cannot say so).
                rt.source_identity = None;
                self.rewatch(id, now);
                self.observe(id, now, Input::Rescan);
            }
            Meaning::Overflow => {
                rt.status.counters.overflows += 1;
                warn!(
                    "{}: inotify queue overflowed (fs.inotify.max_queued_events); events were lost, rescanning the source",
                    rt.bridge.name
                );
                self.rewatch(id, now);
                self.observe(id, now, Input::Rescan);
            }
            Meaning::Ignore => {}
        }
    }

    pub(super) fn observe(&mut self, id: BridgeId, now: Instant, input: Input) {
        let Some(b) = self.find(id) else { return };
        if b.sync.tell_dirty() {
            info!(
                "{}: change during sync ({}); syncing again when it ends",
                b.bridge.name,
                describe(&input)
            );
        }
        debug!("{}: event: {input:?}", b.bridge.name);
        b.settle.observe(now, input);
    }

    /// Re-places the watch of bridge `id`; on failure, schedules a retry.
    pub(super) fn rewatch(&mut self, id: BridgeId, now: Instant) {
        let down = self
            .bridges
            .iter()
            .find(|b| b.id == id && matches!(b.watch, Watch::Down));
        if let Some(b) = down {
            match self.open_watch(id, &b.bridge) {
                Ok(watch) => {
                    let Some(b) = self.find(id) else { return };
                    b.watch = watch;
                }
                Err(e) => {
                    let Some(b) = self.find(id) else { return };
                    let watching = format!("error: cannot set up inotify: {e}");
                    // Said once per cause, not at every retry.
                    if b.status.watching != watching {
                        error!(
                            "{}: cannot set up inotify: {e}; the bridge syncs without watching and retries every {}s",
                            b.bridge.name,
                            WATCH_RETRY.as_secs()
                        );
                    }
                    b.status.watching = watching;
                    b.retry.after_watch_failure(now, WATCH_RETRY);
                    return;
                }
            }
        }
        let Some(b) = self.find(id) else { return };
        let name = &b.bridge.name;
        let Watch::Live { watch, .. } = &mut b.watch else {
            return;
        };
        match watch.resolve() {
            Ok(Watching::Source) => {
                debug!("{name}: watching {}", b.bridge.source.display());
                b.status.watching = "source".into();
                let identity = watch.identity();
                if identity != b.source_identity {
                    // A dir not seen before (start, or recreated): its
                    // emptiness prunes nothing until content or the grace.
                    b.source_identity = identity;
                    b.grace.appeared(now);
                }
            }
            Ok(Watching::Ancestor { dir, next }) => {
                info!(
                    "{name}: source {} does not exist yet; watching {} for {:?} to appear",
                    b.bridge.source.display(),
                    dir.display(),
                    next
                );
                b.status.watching = format!(
                    "waiting for the source dir to appear (watching {})",
                    dir.display()
                );
            }
            Ok(Watching::Nothing) => {}
            Err(e) => {
                let watching = format!("error: {e}");
                // Said once per cause, not at every retry.
                if b.status.watching != watching {
                    error!("{name}: {e}; retrying every {}s", WATCH_RETRY.as_secs());
                }
                b.status.watching = watching;
                b.retry.after_watch_failure(now, WATCH_RETRY);
            }
        }
    }
}
