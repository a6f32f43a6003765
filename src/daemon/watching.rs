//! The daemon's side of a bridge's watch: its inotify instance and reader
//! task, what each event means, and placing the watch again. Glue over
//! `host::watch`.

use std::time::Instant;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::{BridgeId, Daemon, Msg, Reader, WATCH_RETRY, describe};
use crate::config::Bridge;
use crate::core::settle::Input;
use crate::host::watch::{self, Meaning, SourceWatch, Watching};

impl Daemon {
    /// A fresh inotify instance for bridge `id`, its watch (not placed yet)
    /// and the task reading its events.
    pub(super) fn open_watch(
        &self,
        id: BridgeId,
        b: &Bridge,
    ) -> std::io::Result<(SourceWatch, JoinHandle<()>)> {
        let stream = watch::new_instance()?.into_event_stream([0u8; 8192])?;
        let watch = SourceWatch::new(&b.source, &b.include, stream.watches());
        let reader = tokio::spawn(read_events(id, stream, self.events_tx.clone()));
        Ok((watch, reader))
    }

    pub(super) fn on_message(&mut self, msg: Msg) {
        let now = Instant::now();
        match msg {
            Msg::Event(id, ev) => {
                let Some(rt) = self.find(id) else { return };
                match rt.watch.interpret(&ev) {
                    Meaning::Settle(input) => self.observe(id, now, input),
                    Meaning::Rewatch => {
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
            Msg::ReadFailed(id, e) => {
                let Some(rt) = self.find(id) else { return };
                error!(
                    "{}: reading inotify events failed: {e}; setting the watch up again in {}s",
                    rt.bridge.name,
                    WATCH_RETRY.as_secs()
                );
                rt.reader = Reader::Dead;
                rt.status.watching = format!("error: reading inotify events failed: {e}");
                rt.retry.after_watch_failure(now, WATCH_RETRY);
            }
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
        let dead = self
            .bridges
            .iter()
            .find(|b| b.id == id && matches!(b.reader, Reader::Dead));
        if let Some(b) = dead {
            match self.open_watch(id, &b.bridge) {
                Ok((watch, reader)) => {
                    let Some(b) = self.find(id) else { return };
                    (b.watch, b.reader) = (watch, Reader::Live(reader));
                }
                Err(e) => {
                    let Some(b) = self.find(id) else { return };
                    error!(
                        "{}: cannot set up inotify: {e}; retrying in {}s",
                        b.bridge.name,
                        WATCH_RETRY.as_secs()
                    );
                    b.status.watching = format!("error: {e}");
                    b.retry.after_watch_failure(now, WATCH_RETRY);
                    return;
                }
            }
        }
        let Some(b) = self.find(id) else { return };
        let name = &b.bridge.name;
        match b.watch.resolve() {
            Ok(Watching::Source) => {
                debug!("{name}: watching {}", b.bridge.source.display());
                b.status.watching = "source".into();
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

async fn read_events(
    id: BridgeId,
    mut stream: inotify::EventStream<[u8; 8192]>,
    tx: mpsc::Sender<Msg>,
) {
    while let Some(ev) = stream.next().await {
        let msg = match ev {
            Ok(ev) => Msg::Event(id, ev),
            Err(e) => {
                let _ = tx.send(Msg::ReadFailed(id, e)).await;
                return;
            }
        };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
    // The stream never ends on its own; if it does, the watch is set up anew.
    let e = std::io::Error::other("the inotify event stream ended");
    let _ = tx.send(Msg::ReadFailed(id, e)).await;
}
