//! The daemon loop: one `tokio::select!` over inotify events, sync
//! completions, status-socket requests, the next deadline and signals; each
//! branch calls one method. Syncs run as tasks so events keep flowing while
//! files are written and actions run; the settle machine marks such events
//! dirty. Bridges have stable ids so a config reload can add, replace and
//! remove them while events and syncs of old ones are still in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use inotify::EventOwned;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::{self, Bridge, Config};
use crate::core::settle::{Input, Settle};
use crate::core::status::{self, Health};
use crate::host::clock::unix_now;
use crate::host::notify;
use crate::host::socket::{self, Request, Wire};
use crate::host::state::Manifest;
use crate::host::watch::{self, Meaning, SourceWatch, Watching};
use crate::sync::{Owed, SyncOptions, SyncReport, run_owed, sync_files_async};

mod bridge;
mod hotplug;
mod report;

use bridge::{BridgeRt, Reader, SyncState};
use report::{describe, log_report, trigger};

/// How long to wait before retrying a watch that could not be added.
const WATCH_RETRY: Duration = Duration::from_secs(5);
/// How long shutdown waits for in-flight file installs.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

type BridgeId = u64;

enum Msg {
    Event(BridgeId, EventOwned),
    ReadFailed(BridgeId, std::io::Error),
}

/// The running daemon.
pub struct Daemon {
    config: Arc<Config>,
    config_loaded_at: u64,
    started_at: u64,
    reload_error: Option<String>,
    bridges: Vec<BridgeRt>,
    next_id: BridgeId,
    events_tx: mpsc::Sender<Msg>,
    events: mpsc::Receiver<Msg>,
    done_tx: mpsc::UnboundedSender<(BridgeId, Result<(SyncReport, Manifest)>)>,
    done_rx: mpsc::UnboundedReceiver<(BridgeId, Result<(SyncReport, Manifest)>)>,
    /// Synced bridges whose actions wait until no bridge sharing a target
    /// is mid-window, so each target is acted on once per burst.
    owed: Vec<(BridgeId, Owed)>,
    actions_tx: mpsc::UnboundedSender<Vec<(BridgeId, Owed)>>,
    actions_rx: mpsc::UnboundedReceiver<Vec<(BridgeId, Owed)>>,
    actions_task: Option<JoinHandle<()>>,
    starting: bool,
    watchdog: Option<(Duration, Instant)>,
    hotplug: hotplug::Hotplug,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<()> {
    let (listener, _bound) = socket::bind(&config.status_socket, config.status_group.as_deref())
        .with_context(|| {
            format!(
                "binding the status socket {}",
                config.status_socket.display()
            )
        })?;
    let (req_tx, mut requests) = mpsc::channel(16);
    let server = tokio::spawn(socket::serve(listener, req_tx));
    let mut d = Daemon::new(config);
    d.start();
    let result = d.serve(&mut requests).await;
    server.abort();
    result
    // `_bound` drops here: the socket file is removed.
}

impl Daemon {
    fn new(config: Config) -> Daemon {
        let (events_tx, events) = mpsc::channel(1024);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (actions_tx, actions_rx) = mpsc::unbounded_channel();
        Daemon {
            owed: Vec::new(),
            actions_tx,
            actions_rx,
            actions_task: None,
            config: Arc::new(config),
            config_loaded_at: unix_now(),
            started_at: unix_now(),
            reload_error: None,
            bridges: Vec::new(),
            next_id: 0,
            events_tx,
            events,
            done_tx,
            done_rx,
            starting: true,
            watchdog: notify::watchdog_interval().map(|i| (i, Instant::now() + i)),
            hotplug: hotplug::Hotplug::new(),
        }
    }

    /// Places every watch, then reconciles every bridge once. Watches come
    /// first so that nothing written during the startup sync is missed.
    fn start(&mut self) {
        info!(
            "hostbridge {} starting: {} bridges from {}",
            env!("CARGO_PKG_VERSION"),
            self.config.bridges.len(),
            self.config.path.display()
        );
        self.setup_hotplug();
        for b in self.config.bridges.clone() {
            self.add_bridge(b);
        }
        if self.bridges.is_empty() {
            self.ready();
        }
    }

    /// Creates a bridge's watch and reader and starts its first sync.
    fn add_bridge(&mut self, b: Bridge) {
        let id = self.next_id;
        self.next_id += 1;
        if b.source_owner.is_none()
            && let Some(fs) = crate::host::fsx::shares_fs_with_host_files(&b.source)
        {
            warn!(
                "{}: source {} is on the same file system as {fs}: a rootful container can hard-link host files into it; files with several links are refused, but one whose other name the host later replaced by rename is not; keep exports on their own file system (a tmpfs under /run) or set source_owner",
                b.name,
                b.source.display()
            );
        }
        for (dir, why) in crate::host::fsx::swappable_ancestors(&b.source) {
            warn!(
                "{}: {} above the source is {why}: whoever writes there can rename the source away (hostbridge then follows no symlink and watches the new dir); bind-mount the source dir itself",
                b.name,
                dir.display()
            );
        }
        let (watch, reader) = match self.open_watch(id, &b) {
            Ok(w) => w,
            Err(e) => {
                error!(
                    "{}: cannot set up inotify: {e}; this bridge is not watched",
                    b.name
                );
                return;
            }
        };
        let status = status::Bridge {
            name: b.name.clone(),
            source: b.source.display().to_string(),
            destination: b.install_to.display().to_string(),
            watching: String::new(),
            health: Health::Healthy,
            reason: None,
            last_sync: None,
            last_success_at: None,
            pending: None,
            counters: status::Counters::default(),
            usb: None,
        };
        self.bridges.push(BridgeRt {
            id,
            settle: Settle::new(b.settle),
            bridge: b,
            watch,
            retry_at: None,
            failures: 0,
            batch: None,
            reader: Reader::Live(reader),
            sync: SyncState::Idle,
            status,
            usb_checking: false,
            usb_owed: Vec::new(),
        });
        let now = Instant::now();
        self.rewatch(id, now);
        if let Some(rt) = self.find(id) {
            rt.settle.begin_sync();
        }
        self.spawn_sync(
            id,
            SyncOptions {
                clean_temps: true,
                ..SyncOptions::default()
            },
        );
    }

    /// A fresh inotify instance for bridge `id`, its watch (not placed yet)
    /// and the task reading its events.
    fn open_watch(
        &self,
        id: BridgeId,
        b: &Bridge,
    ) -> std::io::Result<(SourceWatch, JoinHandle<()>)> {
        let stream = watch::new_instance()?.into_event_stream([0u8; 8192])?;
        let watch = SourceWatch::new(&b.source, &b.include, stream.watches());
        let reader = tokio::spawn(read_events(id, stream, self.events_tx.clone()));
        Ok((watch, reader))
    }

    fn find(&mut self, id: BridgeId) -> Option<&mut BridgeRt> {
        self.bridges.iter_mut().find(|b| b.id == id)
    }

    async fn serve(&mut self, requests: &mut mpsc::Receiver<Request>) -> Result<()> {
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
        loop {
            let deadline = self.next_deadline();
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(msg) = self.events.recv() => self.on_message(msg),
                Some((id, res)) = self.done_rx.recv() => self.on_sync_done(id, res),
                Some(done) = self.actions_rx.recv() => self.on_actions_done(done),
                Some(req) = requests.recv() => self.on_request(req),
                res = hotplug::ready(self.hotplug.monitor.as_mut()) => self.on_hotplug(res),
                Some(done) = self.hotplug.done_rx.recv() => self.on_usb_checked(done),
                () = sleep => self.on_timer(),
                _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => { let _ = self.reload("SIGHUP"); }
            }
        }
        self.shutdown().await;
        Ok(())
    }

    fn next_deadline(&self) -> Option<Instant> {
        let bridges = self
            .bridges
            .iter()
            .flat_map(|b| [b.settle.deadline(), b.retry_at]);
        bridges.chain([self.watchdog.map(|w| w.1)]).flatten().min()
    }

    fn on_message(&mut self, msg: Msg) {
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
                rt.retry_at = Some(now + WATCH_RETRY);
            }
        }
    }

    fn observe(&mut self, id: BridgeId, now: Instant, input: Input) {
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
    fn rewatch(&mut self, id: BridgeId, now: Instant) {
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
                    b.retry_at = Some(now + WATCH_RETRY);
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
                b.retry_at = Some(now + WATCH_RETRY);
            }
        }
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if let Some((interval, at)) = self.watchdog
            && at <= now
        {
            notify::watchdog();
            self.watchdog = Some((interval, now + interval));
        }
        let ids: Vec<BridgeId> = self.bridges.iter().map(|b| b.id).collect();
        for id in ids {
            let Some(b) = self.find(id) else { continue };
            if b.retry_at.is_some_and(|t| t <= now) {
                b.retry_at = None;
                self.rewatch(id, now);
                self.observe(id, now, Input::Rescan);
            }
            let Some(b) = self.find(id) else { continue };
            if let Some(batch) = b.settle.poll(now) {
                let opts = SyncOptions {
                    still_open: batch.still_open.clone(),
                    ..SyncOptions::default()
                };
                b.batch = Some(batch);
                self.spawn_sync(id, opts);
            }
        }
    }

    fn spawn_sync(&mut self, id: BridgeId, opts: SyncOptions) {
        let config = Arc::clone(&self.config);
        let done = self.done_tx.clone();
        let Some(b) = self.find(id) else { return };
        let bridge = b.bridge.clone();
        let task = tokio::spawn(async move {
            let res = sync_files_async(&config, &bridge, opts).await;
            let _ = done.send((id, res));
        });
        b.sync = SyncState::Running {
            task,
            told_dirty: false,
        };
    }

    /// Syncs running now (derived, never counted by hand).
    fn running(&self) -> usize {
        self.bridges.iter().filter(|b| b.sync.is_running()).count()
    }

    fn on_sync_done(&mut self, id: BridgeId, res: Result<(SyncReport, Manifest)>) {
        // A stopped bridge is gone (its completion may still have been
        // queued): then nothing below finds it.
        if let Some(b) = self.find(id) {
            b.sync.files_done();
        }
        if let Some(b) = self.find(id) {
            // The bridge stays "syncing" until its actions ran: events
            // meanwhile mark it dirty and open a window once it is done.
            match res {
                Ok((report, manifest)) if manifest.actions_pending && !b.bridge.then.is_empty() => {
                    let bridge = b.bridge.clone();
                    // A newer sync of the same bridge replaces an owed one.
                    self.owed.retain(|(o, _)| *o != id);
                    self.owed.push((
                        id,
                        Owed {
                            bridge,
                            report,
                            manifest,
                        },
                    ));
                }
                Ok((report, _)) => self.finish(id, Ok(report)),
                Err(e) => self.finish(id, Err(e)),
            }
        }
        self.run_owed_actions();
        self.ready_if_reconciled();
    }

    /// Starts the owed actions of every bridge that no other bridge naming
    /// the same target is still collecting changes for.
    fn run_owed_actions(&mut self) {
        if self.actions_task.is_some() || self.owed.is_empty() {
            return;
        }
        let busy: Vec<&[crate::config::Action]> = self
            .bridges
            .iter()
            .filter(|b| {
                (b.settle.pending().is_some() || b.settle.is_syncing())
                    && !self.owed.iter().any(|(id, _)| *id == b.id)
            })
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

    fn on_actions_done(&mut self, done: Vec<(BridgeId, Owed)>) {
        self.actions_task = None;
        for (id, o) in done {
            self.finish(id, Ok(o.report));
        }
        self.run_owed_actions();
        self.ready_if_reconciled();
    }

    /// Logs a completed sync (files and actions) and records it in the status.
    fn finish(&mut self, id: BridgeId, res: Result<SyncReport>) {
        // Events our own trigger caused are queued by now (udevd sends them
        // before `udevadm settle` returns): take them while still syncing.
        self.drain_hotplug();
        let Some(b) = self.find(id) else { return };
        b.sync = SyncState::Idle;
        if b.settle.finish_sync(Instant::now()) {
            debug!(
                "{}: new window opened for changes made during the sync",
                b.bridge.name
            );
        }
        let trigger = trigger(b.batch.take().as_ref());
        // A sync that could not put its files in place (ENOSPC, EROFS, EIO,
        // EMFILE, …) is tried again with backoff, not left until the next
        // event; a failing action alone is not (it is retried with the next
        // change, and a permanent one must not loop).
        let files_failed = match &res {
            Ok(r) => !r.errors.is_empty(),
            Err(_) => true,
        };
        b.failures = if files_failed {
            b.failures.saturating_add(1)
        } else {
            0
        };
        if let Some(wait) = crate::core::settle::retry_backoff(b.failures) {
            warn!(
                "{}: sync failed {} time(s) in a row; trying again in {}",
                b.bridge.name,
                b.failures,
                humantime::format_duration(wait)
            );
            b.retry_at = Some(Instant::now() + wait);
        }
        match res {
            Ok(report) => {
                log_report(&report, &trigger);
                let usb = report.actions.iter().find_map(|a| a.usb.clone());
                b.status.record(report.to_status(&trigger, unix_now()), usb);
            }
            Err(e) => {
                error!("{}: sync failed: {e:#}", b.bridge.name);
                let failed = status::Sync::failed_with(unix_now(), trigger, format!("{e:#}"));
                b.status.record(failed, None);
            }
        }
        if b.watch.replaced() {
            warn!(
                "{}: the source path {} names another dir than the one watched (renamed away?); watching it anew",
                b.bridge.name,
                b.bridge.source.display()
            );
            let now = Instant::now();
            self.rewatch(id, now);
            self.observe(id, now, Input::Rescan);
        }
        if !self.starting {
            notify::status(&self.status_line());
        }
        self.write_metrics();
        self.run_owed_usb_check(id);
    }

    fn ready(&mut self) {
        self.starting = false;
        info!(
            "ready: {} bridges reconciled, waiting for changes",
            self.bridges.len()
        );
        notify::ready(&self.status_line());
        self.write_metrics();
    }

    fn on_request(&mut self, req: Request) {
        let answer = match req.what {
            Wire::Status => serde_json::to_string(&self.snapshot()).unwrap_or_default(),
            Wire::Reload => match self.reload("reload request") {
                Ok(()) => r#"{"ok":true}"#.to_string(),
                Err(e) => serde_json::json!({"ok": false, "error": e}).to_string(),
            },
        };
        let _ = req.reply.send(answer);
    }

    /// Re-reads the config. A bad config keeps the old one running.
    /// Unchanged bridges keep their watches and state; changed ones are
    /// replaced; new ones start; removed ones stop.
    fn reload(&mut self, why: &str) -> Result<(), String> {
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
        for b in to_add {
            self.add_bridge(b);
        }
        // Keep config order.
        let order: Vec<String> = self.config.bridges.iter().map(|b| b.name.clone()).collect();
        self.bridges
            .sort_by_key(|b| order.iter().position(|n| *n == b.bridge.name));
        info!("{why}: config reloaded: {} bridges", self.bridges.len());
        notify::ready(&self.status_line());
        // A stopped bridge may have been what owed actions were waiting for.
        self.run_owed_actions();
        self.ready_if_reconciled();
        Ok(())
    }

    /// Cancels a bridge's sync (if any), drops its owed actions (a replaced
    /// bridge's manifest still owes them and its restart runs them) and
    /// drops its watch.
    fn stop_bridge(&mut self, b: BridgeRt) {
        if let SyncState::Running { task, .. } = &b.sync {
            task.abort(); // its completion never arrives
        }
        self.owed.retain(|(id, _)| *id != b.id);
    }

    /// Sends READY=1 once the startup reconcile (syncs and actions) is done.
    fn ready_if_reconciled(&mut self) {
        if self.starting
            && self.running() == 0
            && self.owed.is_empty()
            && self.actions_task.is_none()
        {
            self.ready();
        }
    }

    /// Stops taking events, cancels pending windows and actions, and waits
    /// (bounded) for in-flight file installs, which always run to completion.
    async fn shutdown(&mut self) {
        notify::stopping();
        // Owed actions are skipped: their manifests still say so, and the
        // next start runs them.
        if let Some(t) = self.actions_task.take() {
            t.abort();
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
